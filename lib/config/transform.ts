/**
 * Transforms of a model's weights before (or instead of) quantization: their options, normalized
 * and checked here once (lib/pipeline/transform.ts applies them; its header says what each does).
 */
import { optionError } from '../errors';
import { checkBool, checkInt, checkKnownKeys, checkNumber, checkObject, checkOneOf, invalidOption } from './validate';

/** QuaRot-style rotation (see the file header). */
export interface RotateTransform {
  kind: 'rotate';
  /** Seed of the random signs of every rotation (R1, R2, R4 use seed, seed + 1, seed + 2). @default 1 */
  seed?: number;
  /** Rotate V/O per head (R2). @default true */
  heads?: boolean;
  /** Rotate down_proj's input online (R4; lowbit's runtime only). @default false */
  down?: boolean;
}

/** SmoothQuant (see the file header). Needs calibration data. */
export interface SmoothQuantTransform {
  kind: 'smoothquant';
  /**
   * Migration strength α in (0, 1), or `'search'`: per layer, the α of `grid` whose smoothed and
   * quantized block (weights RTN at the run's quantizer, activations per-token dynamic at the run's
   * activation bits) is closest to the full-precision block on the calibration windows. @default 0.5
   */
  alpha?: number | 'search';
  /** The candidates of `alpha: 'search'`, each in (0, 1). @default 0.1, 0.2, …, 0.9 */
  grid?: number[];
  /**
   * The activation bits `alpha: 'search'` simulates (2…8, per token). @default the recipe's
   * activation bits, else 8
   */
  actBits?: number;
  /** Which inputs are smoothed. @default ['qkv', 'gate_up', 'o', 'down'] */
  inputs?: ('qkv' | 'gate_up' | 'o' | 'down')[];
}

export type Transform = RotateTransform | SmoothQuantTransform;

export const SMOOTH_INPUTS = ['qkv', 'gate_up', 'o', 'down'] as const;

/** The default candidates of SmoothQuant's per-layer α search. */
export const SMOOTH_GRID: readonly number[] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/** Check transforms (API objects or CLI strings `rotate`, `rotate:down`, `smoothquant`, `smoothquant:0.6`, `smoothquant:search`). */
export function normalizeTransforms(v: unknown): Transform[] {
  if (!Array.isArray(v)) throw invalidOption('transforms', 'an array of transforms ({kind: "rotate" | "smoothquant", …} or "rotate", "smoothquant:α")', v);
  const out: Transform[] = v.map((t, i) => {
    const name = `transforms[${i}]`;
    if (typeof t === 'string') return parseTransform(t, name);
    const o = checkObject(name, t as Transform, 'a transform object');
    const kind = checkOneOf(`${name}.kind`, o.kind, ['rotate', 'smoothquant'] as const);
    if (kind === 'rotate') {
      const r = o as RotateTransform;
      checkKnownKeys(name, r, ['kind', 'seed', 'heads', 'down']);
      return { kind, seed: r.seed === undefined ? 1 : checkInt(`${name}.seed`, r.seed, 0, 2 ** 31), heads: r.heads === undefined ? true : checkBool(`${name}.heads`, r.heads), down: r.down === undefined ? false : checkBool(`${name}.down`, r.down) };
    }
    const s = o as SmoothQuantTransform;
    checkKnownKeys(name, s, ['kind', 'alpha', 'grid', 'actBits', 'inputs']);
    const alpha = s.alpha === 'search' ? 'search' : checkAlpha(`${name}.alpha`, s.alpha ?? 0.5);
    for (const k of ['grid', 'actBits'] as const) {
      if (s[k] !== undefined && alpha !== 'search') throw optionError(`${name}.${k}`, `${name}.${k}: only the α search (alpha: 'search') uses ${k} (alpha is ${alpha})`);
    }
    return { kind, alpha, ...(alpha === 'search' ? { grid: checkGrid(`${name}.grid`, s.grid ?? SMOOTH_GRID) } : {}), ...(s.actBits !== undefined ? { actBits: checkInt(`${name}.actBits`, s.actBits, 2, 8) } : {}), inputs: s.inputs === undefined ? [...SMOOTH_INPUTS] : checkInputs(`${name}.inputs`, s.inputs) };
  });
  const kinds = out.map((t) => t.kind);
  if (new Set(kinds).size !== kinds.length) throw optionError('transforms', `transforms: each transform at most once, received ${kinds.join(', ')}`);
  if (kinds.includes('rotate') && kinds.includes('smoothquant')) {
    throw optionError('transforms', 'transforms: rotate folds the RMSNorm gains into the linears that read them, which undoes smoothquant\'s scaling of those inputs; use one of them');
  }
  return out;
}

function checkAlpha(name: string, a: unknown): number {
  const x = checkNumber(name, a, 0, 1);
  if (!(x > 0 && x < 1)) throw invalidOption(name, 'a migration strength α in (0, 1)', a);
  return x;
}

function checkGrid(name: string, v: unknown): number[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > 99) throw invalidOption(name, 'an array of 1 to 99 values of α in (0, 1)', v);
  return [...new Set(v.map((a, i) => checkAlpha(`${name}[${i}]`, a)))].sort((a, b) => a - b);
}

function checkInputs(name: string, v: unknown): SmoothQuantTransform['inputs'] {
  if (!Array.isArray(v) || v.length === 0) throw invalidOption(name, `a non-empty array of ${SMOOTH_INPUTS.join(', ')}`, v);
  return v.map((x) => checkOneOf(name, x as (typeof SMOOTH_INPUTS)[number], SMOOTH_INPUTS));
}

function parseTransform(s: string, name: string): Transform {
  const [kind, ...args] = s.split(':');
  if (kind === 'rotate') {
    const t: RotateTransform = { kind: 'rotate', seed: 1, heads: true, down: false };
    for (const a of args) {
      if (a === 'down') t.down = true;
      else if (a === 'noheads') t.heads = false;
      else if (/^seed=\d+$/.test(a)) t.seed = checkInt(`${name}.seed`, Number(a.slice(5)), 0, 2 ** 31);
      else throw invalidOption(name, 'rotate[:down][:noheads][:seed=N]', s);
    }
    return t;
  }
  if (kind === 'smoothquant') {
    if (args.length > 1) throw invalidOption(name, 'smoothquant[:α | :search]', s);
    if (args[0] === 'search') return { kind: 'smoothquant', alpha: 'search', grid: [...SMOOTH_GRID], inputs: [...SMOOTH_INPUTS] };
    return { kind: 'smoothquant', alpha: checkAlpha(`${name}.alpha`, args.length ? Number(args[0]) : 0.5), inputs: [...SMOOTH_INPUTS] };
  }
  throw invalidOption(name, 'rotate[:down] or smoothquant[:α | :search]', s);
}

