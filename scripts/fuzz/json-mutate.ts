/**
 * Structure-aware JSON mutations: a JSON text is parsed into a tree that keeps every object's
 * entries in order (so duplicate keys and a "__proto__" key survive), one node or one spot of the
 * text is changed, and the tree is written back. Raw nodes carry text JSON.parse reads in its own
 * way (`1e400` is Infinity, `9007199254740993` rounds, `-0`), or text that is not JSON at all.
 */
import type { FuzzRng } from './rng';

/** An object, entries in order (keys may repeat). */
export class JObj {
  constructor(public entries: [string, JNode][]) {}
}

/** Text written as it is. */
export class JRaw {
  constructor(public text: string) {}
}

/** A JSON tree node. */
export type JNode = null | boolean | number | string | JNode[] | JObj | JRaw;

/** Parse JSON text into a tree (the text must be valid JSON). Iterative, so very deep values are fine. */
export function toTree(text: string): JNode {
  const root: { value: JNode } = { value: null };
  // (value, where to put its node)
  const stack: [unknown, (n: JNode) => void][] = [[JSON.parse(text), (n) => { root.value = n; }]];
  while (stack.length > 0) {
    const [v, put] = stack.pop() as [unknown, (n: JNode) => void];
    if (Array.isArray(v)) {
      const arr: JNode[] = new Array<JNode>(v.length).fill(null);
      put(arr);
      v.forEach((x: unknown, i) => stack.push([x, (n) => { arr[i] = n; }]));
    } else if (v !== null && typeof v === 'object') {
      const obj = new JObj(Object.keys(v).map((k) => [k, null]));
      put(obj);
      Object.values(v as Record<string, unknown>).forEach((x, i) => stack.push([x, (n) => { obj.entries[i][1] = n; }]));
    } else put(v as JNode);
  }
  return root.value;
}

/** Write a tree as compact JSON text. Iterative, so very deep trees are fine. */
export function fromTree(root: JNode): string {
  const out: string[] = [];
  const stack: (JNode | { close: string } | { sep: string })[] = [root];
  while (stack.length > 0) {
    const n = stack.pop() as JNode | { close: string } | { sep: string };
    if (n instanceof JRaw) out.push(n.text);
    else if (n instanceof JObj) {
      out.push('{');
      stack.push({ close: '}' });
      for (let i = n.entries.length - 1; i >= 0; i--) {
        stack.push(n.entries[i][1]);
        stack.push({ sep: `${i > 0 ? ',' : ''}${JSON.stringify(n.entries[i][0])}:` });
      }
    } else if (Array.isArray(n)) {
      out.push('[');
      stack.push({ close: ']' });
      for (let i = n.length - 1; i >= 0; i--) {
        stack.push(n[i]);
        if (i > 0) stack.push({ sep: ',' });
      }
    } else if (n !== null && typeof n === 'object') {
      out.push('close' in n ? n.close : n.sep);
    } else out.push(JSON.stringify(n));
  }
  return out.join('');
}

/** A node's place: its parent container and the index in it (entries index for objects). */
interface Slot {
  parent: JNode[] | JObj | null;
  index: number;
  path: string;
  node: JNode;
}

/** Every node of the tree with its place, root first (the first `limit` in document order). */
function slots(root: JNode, limit = 20000): Slot[] {
  const out: Slot[] = [{ parent: null, index: 0, path: '$', node: root }];
  for (let i = 0; i < out.length && out.length < limit; i++) {
    const { node, path } = out[i];
    if (node instanceof JObj) node.entries.forEach(([k, v], j) => out.push({ parent: node, index: j, path: `${path}.${k}`, node: v }));
    else if (Array.isArray(node)) node.forEach((v, j) => out.push({ parent: node, index: j, path: `${path}[${j}]`, node: v }));
  }
  return out;
}

function put(root: { value: JNode }, s: Slot, v: JNode): void {
  if (s.parent === null) root.value = v;
  else if (s.parent instanceof JObj) s.parent.entries[s.index][1] = v;
  else s.parent[s.index] = v;
}

/** Deeply nested arrays or objects, `depth` levels. */
export function deepNest(depth: number, kind: 'array' | 'object'): JRaw {
  return kind === 'array' ? new JRaw('['.repeat(depth) + ']'.repeat(depth)) : new JRaw('{"a":'.repeat(depth) + '0' + '}'.repeat(depth));
}

/** Values that break readers that trust JSON: wrong types, edge numbers, huge or deep values. */
export function nastyValue(rng: FuzzRng): { value: JNode; what: string } {
  const k = rng.int(26);
  switch (k) {
    case 0: return { value: null, what: 'null' };
    case 1: return { value: rng.chance(0.5), what: 'a boolean' };
    case 2: return { value: 0, what: '0' };
    case 3: return { value: -1, what: '-1' };
    case 4: return { value: new JRaw('-0'), what: '-0' };
    case 5: return { value: 1.5, what: '1.5' };
    case 6: return { value: new JRaw('1e400'), what: '1e400 (Infinity)' };
    case 7: return { value: new JRaw('-1e400'), what: '-1e400 (-Infinity)' };
    case 8: return { value: new JRaw('9007199254740993'), what: '2^53 + 1' };
    case 9: return { value: new JRaw('18446744073709551616'), what: '2^64' };
    case 10: return { value: 4294967296, what: '2^32' };
    case 11: return { value: 2147483648, what: '2^31' };
    case 12: return { value: -2147483649, what: '-2^31 - 1' };
    case 13: return { value: '', what: 'an empty string' };
    case 14: return { value: '32', what: 'the string "32"' };
    case 15: return { value: 'x'.repeat(rng.chance(0.1) ? 1_000_000 : rng.pick([100, 10_000])), what: 'a long string' };
    case 16: return { value: '\u0000\ud800', what: 'a string with NUL and a lone surrogate' };
    case 17: return { value: [], what: 'an empty array' };
    case 18: return { value: new JObj([]), what: 'an empty object' };
    case 19: return { value: [1, 2, 3], what: '[1, 2, 3]' };
    case 20: {
      const d = rng.chance(0.1) ? 100_000 : rng.pick([65, 200, 5000]);
      const kind = rng.chance(0.5) ? 'array' : 'object';
      return { value: deepNest(d, kind), what: `${kind}s nested ${d} deep` };
    }
    case 21: {
      const n = rng.chance(0.1) ? 100_000 : 1000;
      return { value: new JObj(Array.from({ length: n }, (_, i) => [`k${i}`, i])), what: `an object of ${n} keys` };
    }
    case 22: {
      const n = rng.chance(0.1) ? 200_000 : 1000;
      return { value: new JRaw(`[${new Array<string>(n).fill('0').join(',')}]`), what: `an array of ${n} zeros` };
    }
    case 23: return { value: 1e308, what: '1e308' };
    case 24: return { value: new JRaw('1.0'), what: '1.0' };
    default: return { value: -1e-320, what: 'a negative subnormal' };
  }
}

/** Interesting keys to add to an object. */
const KEYS = ['__proto__', 'constructor', 'toString', '', 'hasOwnProperty', '__metadata__', 'a'];

/** Invalid UTF-8 sequences (lone continuation, overlong, surrogate, cut multi-byte, 0xFF). */
export const BAD_UTF8: readonly (readonly number[])[] = [[0xff], [0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe6, 0x97], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfe, 0xff]];

/** One structure-aware mutation of a JSON tree (the tree is changed in place; returns its text and a description). */
export function mutateTree(rng: FuzzRng, tree: JNode): { text: string; mutation: string } {
  const holder = { value: tree };
  const all = slots(tree);
  const s = rng.pick(all);
  const op = rng.int(8);
  let mutation: string;
  if (op <= 2) {
    const { value, what } = nastyValue(rng);
    put(holder, s, value);
    mutation = `${s.path} := ${what}`;
  } else if (op === 3 && s.parent instanceof JObj) {
    const [k] = s.parent.entries[s.index];
    s.parent.entries.splice(s.index, 1);
    mutation = `delete ${s.path} (key "${k}")`;
  } else if (op === 4 && s.parent instanceof JObj) {
    const e = s.parent.entries[s.index];
    const copy: [string, JNode] = [e[0], rng.chance(0.5) ? e[1] : nastyValue(rng).value];
    s.parent.entries.splice(rng.int(s.parent.entries.length + 1), 0, copy);
    mutation = `duplicate key "${e[0]}" at ${s.path}`;
  } else if (op === 5 && s.node instanceof JObj) {
    const key = rng.pick(KEYS);
    const { value, what } = nastyValue(rng);
    s.node.entries.splice(rng.int(s.node.entries.length + 1), 0, [key, value]);
    mutation = `${s.path}: add key "${key}" := ${what}`;
  } else if (op === 6) {
    // the same value in another type: a number as a string, a string as a number, an array wrapped
    const n = s.node;
    const v: JNode = typeof n === 'number' ? String(n) : typeof n === 'string' ? (Number(n) || 7) : Array.isArray(n) ? new JObj(n.map((x, i) => [String(i), x])) : n instanceof JObj ? n.entries.map(([, x]) => x) : [n];
    put(holder, s, v);
    mutation = `${s.path}: retyped`;
  } else {
    const wrap = rng.int(3);
    put(holder, s, wrap === 0 ? [s.node] : wrap === 1 ? new JObj([['value', s.node]]) : deepNest(rng.pick([65, 1000]), 'array'));
    mutation = `${s.path}: ${wrap === 0 ? 'wrapped in an array' : wrap === 1 ? 'wrapped in an object' : 'replaced by deep nesting'}`;
  }
  return { text: fromTree(holder.value), mutation };
}

/** Text-level damage to JSON bytes: truncation, invalid UTF-8 inside a string, BOM, NUL, trailing junk. */
export function damageText(rng: FuzzRng, bytes: Uint8Array): { bytes: Uint8Array; mutation: string } {
  const op = rng.int(6);
  if (op === 0 || bytes.length === 0) {
    const at = rng.chance(0.3) ? rng.pick([0, 1, Math.max(0, bytes.length - 1)]) : rng.int(bytes.length + 1);
    return { bytes: bytes.slice(0, at), mutation: `JSON text cut at byte ${at} of ${bytes.length}` };
  }
  if (op === 1) {
    // invalid UTF-8 right after an opening quote, i.e. inside a key or a string value
    const quotes: number[] = [];
    for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x22) quotes.push(i);
    const at = quotes.length ? rng.pick(quotes) + 1 : rng.int(bytes.length);
    const seq = rng.pick(BAD_UTF8);
    return { bytes: splice(bytes, at, 0, Uint8Array.from(seq)), mutation: `invalid UTF-8 [${seq.map((b) => b.toString(16)).join(' ')}] inserted at byte ${at}` };
  }
  if (op === 2) return { bytes: concat(Uint8Array.of(0xef, 0xbb, 0xbf), bytes), mutation: 'UTF-8 BOM prefixed' };
  if (op === 3) {
    const at = rng.int(bytes.length);
    return { bytes: splice(bytes, at, 0, Uint8Array.of(0)), mutation: `NUL byte inserted at ${at}` };
  }
  if (op === 4) {
    const junk = rng.pick(['x', '}', ' {}', '\u0000', ',']);
    return { bytes: concat(bytes, Buffer.from(junk, 'utf8')), mutation: `trailing ${JSON.stringify(junk)}` };
  }
  const n = rng.range(1, 4);
  const out = bytes.slice();
  const where: number[] = [];
  for (let i = 0; i < n; i++) {
    const at = rng.int(out.length);
    out[at] ^= 1 << rng.int(8);
    where.push(at);
  }
  return { bytes: out, mutation: `bit flips at bytes ${where.join(', ')}` };
}

/** A copy of `a` with `del` bytes at `at` replaced by `ins`. */
export function splice(a: Uint8Array, at: number, del: number, ins: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length - del + ins.length);
  out.set(a.subarray(0, at), 0);
  out.set(ins, at);
  out.set(a.subarray(at + del), at + ins.length);
  return out;
}

/** Byte arrays joined. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** One JSON mutation of `text`: mostly structure-aware (70 %), else text-level damage. */
export function mutateJson(rng: FuzzRng, text: string): { bytes: Uint8Array; mutation: string } {
  if (rng.chance(0.7)) {
    const { text: t, mutation } = mutateTree(rng, toTree(text));
    // sometimes a second structural change on top
    if (rng.chance(0.2)) {
      const second = mutateTree(rng, toTree(validOr(t)));
      if (second.text !== t) return { bytes: Buffer.from(second.text, 'utf8'), mutation: `${mutation}; ${second.mutation}` };
    }
    return { bytes: Buffer.from(t, 'utf8'), mutation };
  }
  return damageText(rng, Buffer.from(text, 'utf8'));
}

/** `t` if it parses (raw nodes may make it invalid), else `null` as text. */
function validOr(t: string): string {
  try {
    JSON.parse(t);
    return t;
  } catch {
    return 'null';
  }
}
