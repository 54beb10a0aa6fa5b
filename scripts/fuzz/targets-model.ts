/**
 * Model-file targets: safetensors checkpoints (single and sharded), config.json, GGUF and llama2.c.
 * Each `make` mutates one valid seed in one structure-aware way (or two); each `run` pushes the
 * result through the public API the way a user would, reading every tensor it accepts.
 */
import * as path from 'node:path';
import {
  openSafetensors, readSafetensorsHeader, openModel, inspectModel, readHfConfig, readGguf, ggufLlamaConfig, ggufVocab,
  decodeGgml, readLlama2cModel, Tokenizer,
} from '../../lib/index';
import type { FuzzRng } from './rng';
import type { Corpus, FileSet } from './seeds';
import { SEED_SHAPE } from './seeds';
import type { CaseContext, FuzzTarget } from './types';
import { JObj, JRaw, concat, damageText, deepNest, fromTree, mutateTree, toTree, mutateJson, BAD_UTF8, type JNode } from './json-mutate';
import { cutNear, flipBits, junk, lieI32, lieU32, lieU64, plantNonFinite, withI32, withU32, withU64 } from './bytes';
import { VT, arrayBytes, keyOf, parseGguf, scalarBytes, stringBytes, tensorBytes, writeGgufDoc, type GgufDoc } from './gguf-layout';
import { TEXTS, fullModelSteps } from './steps';

const u64At = (b: Uint8Array, at: number) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64LE(at);

// ---------------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------------

/** A safetensors file as header text and data section. */
function splitSafetensors(b: Uint8Array): { header: string; data: Uint8Array } {
  const n = Number(u64At(b, 0));
  return { header: Buffer.from(b.subarray(8, 8 + n)).toString('utf8').trimEnd(), data: b.subarray(8 + n) };
}

/** u64 length + header bytes (padded with spaces to 8-byte alignment when `pad`) + data. */
function joinSafetensors(header: Uint8Array, data: Uint8Array, pad: boolean): Uint8Array {
  const n = pad ? Math.ceil((header.length + 8) / 8) * 8 - 8 : header.length;
  const h = new Uint8Array(n).fill(0x20);
  h.set(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(n));
  return concat(len, h, data);
}

const DTYPE_PICKS: JNode[] = ['F32', 'F16', 'BF16', 'I8', 'U8', 'I32', 'F64', 'I64', 'BOOL', 'F8_E4M3', 'F8_E8M0', 'C64', 'f16', '', 'Q4_0', 7, null];

/** One tensor-aware edit of a safetensors header tree; returns what it did. */
function tensorOp(rng: FuzzRng, root: JObj, dataSize: number): string {
  const tensors = root.entries.filter(([k, v]) => k !== '__metadata__' && v instanceof JObj);
  if (tensors.length === 0) return 'no tensor to edit';
  const [name, infoNode] = rng.pick(tensors);
  const info = infoNode as JObj;
  const field = (k: string): [string, JNode] | undefined => info.entries.find((e) => e[0] === k);
  const set = (k: string, v: JNode) => {
    const f = field(k);
    if (f) f[1] = v;
    else info.entries.push([k, v]);
  };
  const offs = field('data_offsets')?.[1];
  const [begin, end] = Array.isArray(offs) && typeof offs[0] === 'number' && typeof offs[1] === 'number' ? [offs[0], offs[1]] : [0, 0];
  const t = `tensor "${name}"`;
  switch (rng.int(11)) {
    case 0: {
      const other = rng.pick(tensors)[1] as JObj;
      const o = other.entries.find((e) => e[0] === 'data_offsets');
      if (o) set('data_offsets', JSON.parse(JSON.stringify(o[1])) as JNode);
      return `${t}: data_offsets copied from another tensor (overlap)`;
    }
    case 1: {
      const k = rng.pick([1, 4, 1 << 20]);
      set('data_offsets', rng.chance(0.5) ? [begin, dataSize + k] : [dataSize, dataSize + (end - begin)]);
      return `${t}: data_offsets past the end of the data (${dataSize} bytes)`;
    }
    case 2: {
      const shape = rng.pick<JNode>([[4294967296, 4294967296], [67108864, 67108864, 67108864], [9007199254740991, 2], [new JRaw('18446744073709551617')], [9007199254740992], [2147483648, 2]]);
      set('shape', shape);
      return `${t}: shape := ${fromTree(shape)} (element count overflows)`;
    }
    case 3: {
      const sh = field('shape')?.[1];
      set('shape', Array.isArray(sh) ? [0, ...sh.slice(1)] : [0]);
      if (rng.chance(0.5)) set('data_offsets', [begin, begin]);
      return `${t}: a dimension of 0`;
    }
    case 4: {
      const bad = rng.pick<JNode>([-1, 1.5, '4', null, new JRaw('-0'), new JRaw('1e400'), true]);
      const sh = field('shape')?.[1];
      set('shape', Array.isArray(sh) && sh.length > 0 ? [bad, ...sh.slice(1)] : [bad]);
      return `${t}: shape[0] := ${fromTree(bad)}`;
    }
    case 5: {
      const d = rng.pick(DTYPE_PICKS);
      set('dtype', d);
      return `${t}: dtype := ${fromTree(d)}`;
    }
    case 6: {
      const idx = root.entries.findIndex((e) => e[0] === name);
      const others = tensors.filter(([k]) => k !== name).map(([k]) => k);
      const newName = rng.pick(['__metadata__', '', others.length ? rng.pick(others) : name, `${name}\u0000`, 'x'.repeat(rng.pick([300, 1 << 20]))]);
      root.entries[idx][0] = newName;
      return `${t} renamed to ${JSON.stringify(newName.length > 40 ? `${newName.slice(0, 10)}… (${newName.length} chars)` : newName)}`;
    }
    case 7: {
      const v = rng.pick<JNode>([[end, begin], [begin], [begin, end, 0], [-8, end], [begin + 0.5, end], [String(begin), end], [new JRaw('18446744073709551616'), end], new JObj([['0', begin]]), null]);
      set('data_offsets', v);
      return `${t}: data_offsets := ${fromTree(v)}`;
    }
    case 8: {
      set('shape', rng.pick<JNode>([[], [1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], new Array<JNode>(1000).fill(1)]));
      return `${t}: shape rank changed`;
    }
    case 9: {
      const k = rng.pick([1, 2, 8]);
      for (const [, v] of tensors) {
        const o = (v as JObj).entries.find((e) => e[0] === 'data_offsets');
        if (o && Array.isArray(o[1])) o[1] = o[1].map((x) => (typeof x === 'number' ? x + k : x));
      }
      return `every data_offsets shifted by ${k}`;
    }
    default: {
      const meta = root.entries.find((e) => e[0] === '__metadata__');
      const v = rng.pick<JNode>([new JObj([['format', 5]]), new JObj([['x', new JObj([['y', 1]])]]), 'pt', [], deepNest(rng.pick([65, 100_000]), 'object')]);
      if (meta) meta[1] = v;
      else root.entries.unshift(['__metadata__', v]);
      return `__metadata__ := ${fromTree(v).slice(0, 40)}`;
    }
  }
}

/** One mutation of a safetensors file. */
function mutateSafetensorsFile(rng: FuzzRng, b: Uint8Array): { bytes: Uint8Array; mutation: string } {
  const { header, data } = splitSafetensors(b);
  const n = Number(u64At(b, 0));
  const op = rng.int(100);
  if (op < 12) {
    const v = lieU64(rng, BigInt(n), b.length, 8);
    return { bytes: withU64(b, 0, v), mutation: `header length ${n} → ${v}` };
  }
  if (op < 50) {
    const root = toTree(header) as JObj;
    let mutation: string;
    let text: string;
    if (rng.chance(0.55)) {
      mutation = tensorOp(rng, root, data.length);
      if (rng.chance(0.15)) mutation += `; ${tensorOp(rng, root, data.length)}`;
      text = fromTree(root);
    } else ({ text, mutation } = mutateTree(rng, root));
    return { bytes: joinSafetensors(Buffer.from(text, 'utf8'), data, rng.chance(0.7)), mutation: `header: ${mutation}` };
  }
  if (op < 60) {
    const d = damageText(rng, Buffer.from(header, 'utf8'));
    return { bytes: joinSafetensors(d.bytes, data, rng.chance(0.5)), mutation: `header text: ${d.mutation}` };
  }
  if (op < 75) {
    const h = JSON.parse(header) as Record<string, { data_offsets?: number[] }>;
    const bounds = [0, 1, 7, 8, 9, 8 + n - 1, 8 + n];
    for (const [k, v] of Object.entries(h)) if (k !== '__metadata__' && v.data_offsets) bounds.push(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]);
    if (rng.chance(0.2)) {
      const j = junk(rng);
      return { bytes: concat(b, j), mutation: `${j.length} bytes appended` };
    }
    const at = cutNear(rng, bounds, b.length);
    return { bytes: b.slice(0, at), mutation: `truncated at byte ${at} of ${b.length}` };
  }
  if (op < 87) {
    const inHeader = rng.chance(0.6);
    const f = flipBits(rng, b, rng.range(1, 8), inHeader ? 0 : 8 + n, inHeader ? 8 + n : b.length);
    return { bytes: f.bytes, mutation: `bytes changed at ${f.where.join(', ')}` };
  }
  // NaN / Inf in a float tensor's data
  const h = JSON.parse(header) as Record<string, { dtype?: string; data_offsets?: number[] }>;
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  const name = rng.pick(names);
  const t = h[name];
  const out = b.slice();
  const size = t.dtype === 'F32' ? 4 : 2;
  const count = ((t.data_offsets?.[1] ?? 0) - (t.data_offsets?.[0] ?? 0)) / size;
  const idx = count > 0 ? rng.int(count) : 0;
  const what = count > 0 ? plantNonFinite(rng, out, t.dtype ?? 'F32', 8 + n + (t.data_offsets?.[0] ?? 0), idx) : null;
  return { bytes: out, mutation: what ? `${what} planted in "${name}"[${idx}]` : 'no float data to change' };
}

/** Sharded-checkpoint mutations: the index (weight_map) or the set of shard files. */
function mutateSharded(rng: FuzzRng, files: FileSet): string {
  const indexPath = 'model/model.safetensors.index.json';
  const index = files.get(indexPath);
  const shards = [...files.keys()].filter((f) => f.endsWith('.safetensors'));
  if (!index) return 'no index';
  const op = rng.int(4);
  if (op === 0) {
    const m = mutateJson(rng, Buffer.from(index).toString('utf8'));
    files.set(indexPath, m.bytes);
    return `index: ${m.mutation}`;
  }
  if (op === 1) {
    const idx = JSON.parse(Buffer.from(index).toString('utf8')) as { weight_map: Record<string, unknown> };
    const names = Object.keys(idx.weight_map);
    const name = rng.pick(names);
    const v = rng.pick<unknown>(['../evil.safetensors', 'config.json', 'missing.safetensors', '', '/etc/passwd', 5, null, 'model.safetensors.index.json', path.basename(rng.pick(shards)), 'a\\b.safetensors', '.', '..']);
    const map = new Map(Object.entries(idx.weight_map));
    const edit = rng.int(5);
    if (edit === 0) map.delete(name);
    else if (edit === 1) map.set(`extra.${name}`, map.get(name));
    else map.set(name, v);
    files.set(indexPath, Buffer.from(JSON.stringify({ ...idx, weight_map: Object.fromEntries(map) }), 'utf8'));
    return `index: weight_map "${name}" ${edit === 0 ? 'removed' : edit === 1 ? 'listed twice under two names' : `:= ${JSON.stringify(v)}`}`;
  }
  if (op === 2) {
    const s = rng.pick(shards);
    files.delete(s);
    return `shard ${s} removed`;
  }
  const a = rng.pick(shards), b = rng.pick(shards);
  const x = files.get(a) as Uint8Array;
  files.set(a, files.get(b) as Uint8Array);
  files.set(b, x);
  return `shards ${a} and ${b} swapped`;
}

/** Open a safetensors path, read every tensor's bytes and f32 values (lengths checked), close. */
async function readAllSafetensors(ctx: CaseContext, p: string): Promise<void> {
  const r = await ctx.probe('openSafetensors', () => openSafetensors(p));
  if (!r) return;
  try {
    for (const name of r.names()) {
      const info = r.info(name);
      const b = await ctx.probe(`bytes("${name}")`, () => r.bytes(name));
      if (b && b.byteLength !== info.byteLength) ctx.wrong(`bytes("${name}")`, `${b.byteLength} bytes, the header says ${info.byteLength}`);
      const f = await ctx.probe(`toFloat32("${name}")`, () => r.toFloat32(name));
      const numel = info.shape.reduce((a, d) => a * d, 1);
      if (f && f.length !== numel) ctx.wrong(`toFloat32("${name}")`, `${f.length} values for shape [${info.shape.join(', ')}]`);
      r.release(name);
    }
    await ctx.probe('totalBytes', () => r.totalBytes());
  } finally {
    r.close();
  }
}

async function modelDirSteps(ctx: CaseContext): Promise<void> {
  const dir = path.join(ctx.dir, 'model');
  const m = await ctx.probe('openModel', () => openModel(dir));
  m?.close();
  await ctx.probe('inspectModel', () => inspectModel(dir));
  if (ctx.full) await fullModelSteps(ctx, dir);
}

/**
 * File-system shapes a downloaded model can have: a dangling symlink (a Hugging Face cache whose
 * blob is missing), a symlink loop, a directory where a file should be, a link to the wrong file.
 */
function mutateFsShape(rng: FuzzRng, files: FileSet, c: { dirs: string[]; links: [string, string][] }, file: string): string {
  switch (rng.int(4)) {
    case 0:
      files.delete(file);
      c.links.push([file, '../blobs/missing-blob']);
      return `${file} is a dangling symlink`;
    case 1:
      files.delete(file);
      c.links.push([file, path.basename(file)]);
      return `${file} is a symlink to itself (a loop)`;
    case 2:
      files.delete(file);
      c.dirs.push(file);
      return `${file} is a directory`;
    default:
      c.links.push(['model/extra.bin', 'nowhere']);
      return 'a dangling symlink model/extra.bin beside the files';
  }
}

export const safetensorsTarget: FuzzTarget = {
  name: 'safetensors',
  make(rng, corpus) {
    const sharded = rng.chance(0.3);
    const files: FileSet = new Map(sharded ? corpus.hfSharded : corpus.hfSingle);
    let mutation: string;
    if (rng.chance(0.04)) {
      const fsShape = { dirs: [] as string[], links: [] as [string, string][] };
      mutation = mutateFsShape(rng, files, fsShape, rng.pick([...files.keys()].filter((f) => f !== 'model/config.json')));
      return { files, mutation, entry: 'model', ...fsShape };
    }
    if (sharded && rng.chance(0.25)) mutation = mutateSharded(rng, files);
    else {
      const target = rng.pick([...files.keys()].filter((f) => f.endsWith('.safetensors')));
      const m = mutateSafetensorsFile(rng, files.get(target) as Uint8Array);
      files.set(target, m.bytes);
      mutation = `${path.basename(target)}: ${m.mutation}`;
    }
    const entry = rng.chance(0.6) ? 'model' : sharded ? 'model/model.safetensors.index.json' : 'model/model.safetensors';
    return { files, mutation, entry };
  },
  async run(c, ctx) {
    await readAllSafetensors(ctx, ctx.entry);
    for (const f of c.files.keys()) {
      if (f.endsWith('.safetensors')) await ctx.probe(`readSafetensorsHeader(${path.basename(f)})`, () => readSafetensorsHeader(path.join(ctx.dir, f)));
    }
    await modelDirSteps(ctx);
  },
};

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

/** Valid JSON whose values disagree with the stored tensors, or name what lowbit does not load. */
const CONFIG_EDITS: [string, JNode][] = [
  ['hidden_size', 64], ['hidden_size', 16], ['intermediate_size', 128], ['num_hidden_layers', 2], ['num_hidden_layers', 1e9],
  ['num_hidden_layers', 1e308], ['num_attention_heads', 8], ['num_attention_heads', 3], ['num_key_value_heads', 4], ['num_key_value_heads', 3],
  ['head_dim', 16], ['head_dim', 7], ['head_dim', 1e15], ['vocab_size', 301], ['vocab_size', 2 ** 31], ['vocab_size', 1e300], ['max_position_embeddings', 1],
  ['max_position_embeddings', 2 ** 31], ['max_position_embeddings', 1e300], ['tie_word_embeddings', true], ['torch_dtype', 'bfloat16'], ['torch_dtype', 'float8'],
  ['dtype', 'float32'], ['architectures', ['MistralForCausalLM']], ['architectures', ['Qwen2ForCausalLM']], ['architectures', ['GPT2LMHeadModel']],
  ['model_type', 'qwen2'], ['rope_theta', 0], ['rms_norm_eps', 1e-300], ['attention_bias', true], ['bos_token_id', 300], ['eos_token_id', [2, 1e9]],
  ['quantization_config', new JObj([['quant_method', 'gptq'], ['bits', 4], ['group_size', 32], ['desc_act', false], ['sym', true]])],
  ['quantization_config', new JObj([['quant_method', 'awq'], ['bits', 3]])], ['quantization_config', 'x'], ['quantization_config', new JObj([['bits', new JRaw('1e400')]])],
  ['rope_scaling', new JObj([['type', 'linear'], ['factor', 2]])], ['rope_parameters', new JObj([['rope_theta', -1]])],
];

export const configTarget: FuzzTarget = {
  name: 'config',
  make(rng, corpus) {
    const files: FileSet = new Map(corpus.hfSingle);
    const text = Buffer.from(files.get('model/config.json') as Uint8Array).toString('utf8');
    let mutation: string;
    if (rng.chance(0.04)) {
      const fsShape = { dirs: [] as string[], links: [] as [string, string][] };
      mutation = mutateFsShape(rng, files, fsShape, 'model/config.json');
      return { files, mutation, entry: 'model', ...fsShape };
    }
    if (rng.chance(0.3)) {
      const root = toTree(text) as JObj;
      const [key, value] = rng.pick(CONFIG_EDITS);
      const e = root.entries.find((x) => x[0] === key);
      if (e) e[1] = value;
      else root.entries.push([key, value]);
      files.set('model/config.json', Buffer.from(fromTree(root), 'utf8'));
      mutation = `config.json: ${key} := ${fromTree(value)}`;
    } else {
      const m = mutateJson(rng, text);
      files.set('model/config.json', m.bytes);
      mutation = `config.json: ${m.mutation}`;
    }
    return { files, mutation, entry: 'model' };
  },
  async run(_c, ctx) {
    await ctx.probe('readHfConfig', () => readHfConfig(ctx.entry));
    await modelDirSteps(ctx);
  },
};

// ---------------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------------

/** The STRING elements of an ARRAY value. */
function stringItems(raw: Uint8Array): Uint8Array[] {
  const n = Number(u64At(raw, 4));
  const out: Uint8Array[] = [];
  let p = 12;
  for (let i = 0; i < n; i++) {
    const l = Number(u64At(raw, p));
    out.push(raw.slice(p + 8, p + 8 + l));
    p += 8 + l;
  }
  return out;
}

function stringArray(items: Uint8Array[]): Uint8Array {
  return arrayBytes(VT.STRING, items.length, concat(...items.map(stringBytes)));
}

const U32_EDGES = [0, 1, 2, 3, 5, 7, 31, 64, 1000, 65536, 2 ** 31, 2 ** 32 - 1];

/** One structural edit of a GGUF document; returns what it did. */
function ggufOp(rng: FuzzRng, doc: GgufDoc): string {
  const kvAt = (key: string) => doc.kvs.findIndex((kv) => keyOf(kv) === key);
  const pickKv = () => rng.int(doc.kvs.length);
  const pickTi = () => rng.int(doc.tis.length);
  switch (rng.int(20)) {
    case 0: doc.version = rng.pick([0, 1, 4, 0x03000000, 0x00030000, 0xffffffff]); return `version := 0x${doc.version.toString(16)}`;
    case 1: doc.magic = rng.pick([0x47475546, 0x4c4d4747, 0, 0x46554746]); return `magic := 0x${doc.magic.toString(16)}`;
    case 2: {
      const i = pickKv();
      const kv = doc.kvs[i];
      if (kv.type === VT.STRING) kv.value = stringBytes(rng.chance(0.5) ? new Uint8Array(0) : Buffer.from('x'.repeat(rng.pick([1, 1 << 20]))));
      else if (kv.type === VT.ARRAY) kv.value = arrayBytes(VT.UINT8, 0, new Uint8Array(0));
      else kv.value = scalarBytes(kv.type, rng.pick(U32_EDGES));
      return `key "${keyOf(kv)}": value replaced`;
    }
    case 3: {
      const llama = doc.kvs.filter((kv) => keyOf(kv).startsWith('llama.') || (keyOf(kv).startsWith('tokenizer.ggml.') && kv.type === VT.UINT32));
      const kv = rng.pick(llama);
      const v = rng.pick(U32_EDGES);
      kv.value = kv.type === VT.FLOAT32 ? scalarBytes(VT.FLOAT32, rng.pick([0, -1, NaN, Infinity, 1e-45])) : scalarBytes(kv.type, v);
      return `key "${keyOf(kv)}" := ${kv.type === VT.FLOAT32 ? 'an edge float' : v}`;
    }
    case 4: {
      const kv = doc.kvs[pickKv()];
      const was = kv.type;
      kv.type = rng.pick([0, 1, 2, 4, 6, 7, 8, 9, 10, 12, 13, 255, 0xffffffff]);
      return `key "${keyOf(kv)}": value type ${was} → ${kv.type} (bytes unchanged)`;
    }
    case 5: {
      const type = rng.pick([VT.UINT32, VT.UINT32, VT.UINT64, VT.INT32, VT.STRING]);
      const v = rng.pick([0, 1, 2, 3, 8, 16, 64, 4096, 2 ** 31, 2 ** 32 - 1]);
      const value = type === VT.STRING ? stringBytes(Buffer.from('32')) : scalarBytes(type, v);
      const i = kvAt('general.alignment');
      const kv = { key: new Uint8Array(Buffer.from('general.alignment')), type, value };
      if (i >= 0) doc.kvs[i] = kv;
      else doc.kvs.splice(rng.int(doc.kvs.length + 1), 0, kv);
      if (type !== VT.STRING && v > 0 && (v & (v - 1)) === 0 && v <= 4096) doc.alignment = v;
      return `general.alignment := ${type === VT.STRING ? '"32" (STRING)' : `${v} (type ${type})`}`;
    }
    case 6: {
      const a = doc.kvs[pickKv()], b = doc.kvs[pickKv()];
      b.key = a.key.slice();
      return `duplicate key "${keyOf(a)}"`;
    }
    case 7: {
      const a = doc.tis[pickTi()], b = doc.tis[pickTi()];
      b.name = a.name.slice();
      return `duplicate tensor name "${Buffer.from(a.name).toString()}"`;
    }
    case 8: {
      const seq = Uint8Array.from(rng.pick(BAD_UTF8));
      if (rng.chance(0.5)) {
        const kv = doc.kvs[pickKv()];
        kv.key = concat(kv.key.subarray(0, 1), seq, kv.key.subarray(1));
        return `invalid UTF-8 in key "${keyOf(kv)}"`;
      }
      if (rng.chance(0.5)) {
        const t = doc.tis[pickTi()];
        t.name = concat(seq, t.name);
        return 'invalid UTF-8 in a tensor name';
      }
      const i = kvAt('tokenizer.ggml.tokens');
      if (i < 0) return 'no tokens';
      const items = stringItems(doc.kvs[i].value);
      const j = rng.int(items.length);
      items[j] = concat(items[j], seq);
      doc.kvs[i].value = stringArray(items);
      return `invalid UTF-8 in token ${j}`;
    }
    case 9: {
      const i = rng.chance(0.5) ? pickKv() : Math.max(0, kvAt(rng.pick(['general.architecture', 'llama.embedding_length', 'tokenizer.ggml.tokens', 'llama.attention.head_count'])));
      const [kv] = doc.kvs.splice(i, 1);
      return `key "${keyOf(kv)}" removed`;
    }
    case 10: {
      const [t] = doc.tis.splice(pickTi(), 1);
      return `tensor info "${Buffer.from(t.name).toString()}" removed (data kept)`;
    }
    case 11: {
      const t = doc.tis[pickTi()];
      const was = t.type;
      t.type = rng.pick([0, 1, 2, 3, 8, 12, 14, 30, 6, 24, 39, 99, 0xffffffff]);
      return `tensor "${Buffer.from(t.name).toString()}": ggml type ${was} → ${t.type}`;
    }
    case 12: {
      const t = doc.tis[pickTi()];
      const name = Buffer.from(t.name).toString();
      if (rng.chance(0.25)) {
        t.ne = rng.pick([[2n ** 32n, 2n ** 32n, 2n ** 32n], [2n ** 62n, 4n], [32n, 2n ** 63n - 1n], [2n ** 53n + 1n], [32n, 0n, 2n ** 60n], [32n, 2n ** 64n - 1n]]);
        return `tensor "${name}": ne := [${t.ne.join(', ')}] (element count overflows)`;
      }
      if (rng.chance(0.2) && t.ne.length >= 2) {
        t.ne = [t.ne[1], t.ne[0], ...t.ne.slice(2)];
        return `tensor "${name}": ne[0] and ne[1] swapped`;
      }
      const d = rng.int(Math.max(1, t.ne.length));
      const v = rng.pick([0n, 1n, 2n, 3n, 31n, 33n, 256n, 2n ** 31n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 64n - 1n]);
      if (t.ne.length === 0) t.ne = [v];
      else t.ne[d] = v;
      return `tensor "${name}": ne[${d}] := ${v}`;
    }
    case 13: {
      const t = doc.tis[pickTi()];
      const op = rng.int(4);
      if (op === 0) t.ne.push(1n);
      else if (op === 1) t.ne.push(2n ** 40n);
      else if (op === 2) t.ne.pop();
      else t.ne = [32n, 1n, 1n, 1n, 1n];
      return `tensor "${Buffer.from(t.name).toString()}": n_dims := ${t.ne.length}`;
    }
    case 14: {
      const i = pickTi();
      const t = doc.tis[i];
      const prev = i > 0 ? doc.tis[i - 1].offset : 0n;
      const v = rng.pick([t.offset + 1n, t.offset + BigInt(doc.alignment), prev, 2n ** 63n, BigInt(doc.data.length), t.offset - 32n, 2n ** 64n - 32n]);
      t.offset = v;
      return `tensor "${Buffer.from(t.name).toString()}": offset := ${v}`;
    }
    case 15: {
      const key = rng.pick(['tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type', 'tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id']);
      const i = kvAt(key);
      if (i < 0) return `no ${key}`;
      const kv = doc.kvs[i];
      if (key === 'tokenizer.ggml.tokens') {
        const items = stringItems(kv.value);
        if (rng.chance(0.5)) items.pop();
        else items.push(Buffer.from('extra'));
        kv.value = stringArray(items);
        return `${key}: ${items.length} tokens`;
      }
      if (kv.type === VT.ARRAY) {
        const n = Number(u64At(kv.value, 4));
        kv.value = rng.chance(0.5) ? arrayBytes(VT.FLOAT64, n, new Uint8Array(8 * n)) : arrayBytes(VT.INT8, n, new Uint8Array(n));
        return `${key}: element type changed`;
      }
      const v = rng.pick([SEED_SHAPE.vocabSize, SEED_SHAPE.vocabSize - 1, 2 ** 32 - 1, 0]);
      kv.value = scalarBytes(VT.UINT32, v);
      return `${key} := ${v}`;
    }
    case 16: {
      if (rng.chance(0.5)) doc.kvs.reverse();
      else doc.tis.reverse();
      return 'KV or tensor info order reversed';
    }
    case 17: {
      const i = kvAt('tokenizer.ggml.tokens');
      if (i < 0) return 'no tokens';
      const raw = doc.kvs[i].value;
      doc.kvs[i].value = concat(scalarBytes(VT.UINT32, rng.pick([VT.ARRAY, 13, VT.BOOL])), raw.subarray(4));
      return 'tokenizer.ggml.tokens: element type := ARRAY/13/BOOL';
    }
    case 18: {
      const i = kvAt(rng.pick(['tokenizer.ggml.model', 'general.architecture']));
      if (i < 0) return 'no such key';
      const v = rng.pick(['gpt2', '', 'llama\u0000', 'LLAMA']);
      doc.kvs[i].value = stringBytes(Buffer.from(v));
      return `key "${keyOf(doc.kvs[i])}" := ${JSON.stringify(v)}`;
    }
    default: {
      // a value type whose value bytes do not match: the next field is read from the wrong place
      const kv = doc.kvs[pickKv()];
      kv.value = kv.value.subarray(0, Math.max(0, kv.value.length - rng.pick([1, 4, 8])));
      return `key "${keyOf(kv)}": value shortened`;
    }
  }
}

function mutateGguf(rng: FuzzRng, seed: Uint8Array): { bytes: Uint8Array; mutation: string } {
  const doc = parseGguf(seed);
  const op = rng.int(100);
  if (op < 25) {
    const w = writeGgufDoc(doc);
    const f = rng.pick(w.fields);
    const buf = Buffer.from(w.bytes.buffer, w.bytes.byteOffset, w.bytes.byteLength);
    if (f.size === 8) {
      const truth = buf.readBigUInt64LE(f.at);
      const v = lieU64(rng, truth, w.bytes.length, f.at);
      return { bytes: withU64(w.bytes, f.at, v), mutation: `${f.label}: ${f.role} ${truth} → ${v}` };
    }
    const truth = buf.readUInt32LE(f.at);
    const v = lieU32(rng, truth);
    return { bytes: withU32(w.bytes, f.at, v), mutation: `${f.label}: ${f.role} ${truth} → ${v}` };
  }
  if (op < 60) {
    let mutation = ggufOp(rng, doc);
    if (rng.chance(0.15)) mutation += `; ${ggufOp(rng, doc)}`;
    return { bytes: writeGgufDoc(doc).bytes, mutation };
  }
  const w = writeGgufDoc(doc);
  if (op < 75) {
    const bounds = [0, 4, 8, 16, 24, w.dataStart];
    for (const f of w.fields) bounds.push(f.at, f.at + f.size);
    for (const t of doc.tis) bounds.push(w.dataStart + Number(t.offset), w.dataStart + Number(t.offset) + tensorBytes(t));
    if (rng.chance(0.15)) {
      const j = junk(rng);
      return { bytes: concat(w.bytes, j), mutation: `${j.length} bytes appended` };
    }
    const at = cutNear(rng, bounds, w.bytes.length);
    return { bytes: w.bytes.slice(0, at), mutation: `truncated at byte ${at} of ${w.bytes.length}` };
  }
  if (op < 88) {
    const inHeader = rng.chance(0.7);
    const f = flipBits(rng, w.bytes, rng.range(1, 8), inHeader ? 0 : w.dataStart, inHeader ? w.dataStart : w.bytes.length);
    return { bytes: f.bytes, mutation: `bytes changed at ${f.where.join(', ')}` };
  }
  const floats = doc.tis.filter((t) => t.type === 0 || t.type === 1);
  if (floats.length === 0) return { bytes: w.bytes, mutation: 'unchanged (no float tensor)' };
  const t = rng.pick(floats);
  const numel = t.ne.reduce((a, b) => a * Number(b), 1);
  const out = w.bytes.slice();
  const idx = rng.int(numel);
  const what = plantNonFinite(rng, out, t.type === 0 ? 'F32' : 'F16', w.dataStart + Number(t.offset), idx);
  return { bytes: out, mutation: `${what ?? '?'} planted in "${Buffer.from(t.name).toString()}"[${idx}]` };
}

/** Encode every text (BOS and EOS), check the ids, decode them back, print a few pieces. */
export async function tokenizerSteps(ctx: CaseContext, tok: Tokenizer): Promise<void> {
  for (const text of TEXTS) {
    const ids = await ctx.probe('encode', () => tok.encode(text, { bos: true, eos: true }));
    if (!ids) continue;
    const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= tok.size);
    if (bad !== undefined) ctx.wrong('encode', `id ${bad} outside the vocabulary of ${tok.size}`);
    await ctx.probe('decode', () => tok.decode(ids));
    for (let i = 1; i < Math.min(ids.length, 4); i++) await ctx.probe('printedPiece', () => tok.printedPiece(ids[i - 1], ids[i]));
  }
}

const DECODABLE = new Set(['Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q6_K']);

export const ggufTarget: FuzzTarget = {
  name: 'gguf',
  make(rng, corpus) {
    const k = rng.int(corpus.gguf.length);
    const m = mutateGguf(rng, corpus.gguf[k]);
    return { files: new Map([['model.gguf', m.bytes]]), mutation: `seed ${k}: ${m.mutation}`, entry: 'model.gguf', quantized: k === 0 };
  },
  async run(c, ctx) {
    const g = await ctx.probe('readGguf', () => readGguf(ctx.entry));
    if (g) {
      try {
        await ctx.probe('ggufLlamaConfig', () => ggufLlamaConfig(g));
        await ctx.probe('ggufVocab', () => ggufVocab(g));
        const tok = await ctx.probe('Tokenizer.fromGguf', () => Tokenizer.fromGguf(g));
        if (tok) await tokenizerSteps(ctx, tok);
        for (const t of g.tensors) {
          const b = await ctx.probe(`bytes("${t.name}")`, () => g.bytes(t.name));
          if (b && b.byteLength !== t.byteLength) ctx.wrong(`bytes("${t.name}")`, `${b.byteLength} bytes, the header says ${t.byteLength}`);
          let f: Float32Array | undefined;
          if (t.typeName === 'F32' || t.typeName === 'F16' || t.typeName === 'BF16') f = await ctx.probe(`tensorF32("${t.name}")`, () => g.tensorF32(t.name));
          else if (b && DECODABLE.has(t.typeName)) f = await ctx.probe(`decodeGgml("${t.name}")`, () => decodeGgml(t.typeName as 'Q8_0', b, t.numel));
          if (f && f.length !== t.numel) ctx.wrong(`decode("${t.name}")`, `${f.length} values for ${t.numel} elements`);
        }
      } finally {
        g.close();
      }
    }
    await ctx.probe('inspectModel', () => inspectModel(ctx.entry));
    if (ctx.full) await fullModelSteps(ctx, ctx.entry, { allowRequantize: c.quantized === true });
  },
};

// ---------------------------------------------------------------------------------------------
// llama2.c
// ---------------------------------------------------------------------------------------------

const FIELD_NAMES = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];

function mutateLlama2c(rng: FuzzRng, corpus: Corpus): { bytes: Uint8Array; mutation: string } {
  const seed = rng.pick(corpus.llama2c);
  const b = seed.bytes;
  const fieldsAt = seed.version === 0 ? 0 : 8;
  const tag = `v${seed.version}${seed.shared ? '' : ' unshared'}`;
  const op = rng.int(100);
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (op < 45) {
    let out = b;
    const edits: string[] = [];
    const n = rng.chance(0.2) ? 2 : 1;
    for (let k = 0; k < n; k++) {
      const i = rng.int(7);
      const truth = buf.readInt32LE(fieldsAt + 4 * i);
      const v = lieI32(rng, truth);
      out = withI32(out, fieldsAt + 4 * i, v);
      edits.push(`${FIELD_NAMES[i]} ${truth} → ${v}`);
    }
    return { bytes: out, mutation: `${tag}: ${edits.join(', ')}` };
  }
  if (op < 52 && seed.version === 1) {
    const which = rng.int(3);
    if (which === 0) {
      const v = rng.pick([0, 2, 3, -1, 0x7fffffff]);
      return { bytes: withI32(b, 4, v), mutation: `${tag}: version := ${v}` };
    }
    if (which === 1) {
      const v = rng.pick([2, 255, 0x80]);
      const out = b.slice();
      out[36] = v;
      return { bytes: out, mutation: `${tag}: shared_classifier := ${v}` };
    }
    return { bytes: b.slice(LLAMA2C_V1_SKIP), mutation: `${tag}: the first ${LLAMA2C_V1_SKIP} header bytes removed` };
  }
  if (op < 67) {
    if (rng.chance(0.2)) {
      const j = junk(rng);
      return { bytes: concat(b, j), mutation: `${tag}: ${j.length} bytes appended` };
    }
    const inner = [0, 4, 8, 12, 27, 28, 36, 37, 255, 256];
    const at = cutNear(rng, [...inner, ...seed.boundaries], b.length);
    return { bytes: b.slice(0, at), mutation: `${tag}: truncated at byte ${at} of ${b.length}` };
  }
  if (op < 82) {
    const header = seed.version === 0 ? 28 : 256;
    const inHeader = rng.chance(0.6);
    const f = flipBits(rng, b, rng.range(1, 6), inHeader ? 0 : header, inHeader ? header : b.length);
    return { bytes: f.bytes, mutation: `${tag}: bytes changed at ${f.where.join(', ')}` };
  }
  if (op < 92) {
    const out = b.slice();
    const header = seed.version === 0 ? 28 : 256;
    const idx = rng.int((b.length - header) / 4);
    const what = plantNonFinite(rng, out, 'F32', header, idx);
    return { bytes: out, mutation: `${tag}: ${what ?? '?'} planted at float ${idx}` };
  }
  // the other layout's header on the same body
  if (seed.version === 0) {
    const h = Buffer.alloc(256);
    h.writeUInt32LE(0x616b3432, 0);
    h.writeInt32LE(1, 4);
    Buffer.from(b.subarray(0, 28)).copy(h, 8);
    h[36] = 1;
    return { bytes: concat(h, b.subarray(28)), mutation: `${tag}: header rewritten as v1` };
  }
  return { bytes: concat(b.subarray(8, 36), b.subarray(256)), mutation: `${tag}: header rewritten as v0` };
}

/** Bytes of the v1 header removed by the "lost magic" mutation (the body then starts mid-header). */
const LLAMA2C_V1_SKIP = 8;

export const llama2cTarget: FuzzTarget = {
  name: 'llama2c',
  make(rng, corpus) {
    const m = mutateLlama2c(rng, corpus);
    return { files: new Map([['model.bin', m.bytes], ['tokenizer.bin', corpus.tokenizerBin]]), mutation: m.mutation, entry: 'model.bin' };
  },
  async run(_c, ctx) {
    const m = await ctx.probe('readLlama2cModel', () => readLlama2cModel(ctx.entry));
    if (m) {
      for (const [name, t] of m.tensors) {
        const shape = m.shapes.get(name);
        const numel = shape?.reduce((a, d) => a * d, 1);
        if (numel !== t.length) ctx.wrong('readLlama2cModel', `${name}: ${t.length} values for shape [${shape?.join(', ') ?? '?'}]`);
      }
    }
    await ctx.probe('inspectModel', () => inspectModel(ctx.entry));
    if (ctx.full) await fullModelSteps(ctx, ctx.entry);
  },
};
