/**
 * formats/safetensors: the §9 byte-exact vector, writer rules (§2.2), sharding, lazy producers,
 * atomicity, and one malformed file per reader rule of §2.3.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openSafetensors, readSafetensorsHeader, writeSafetensors, type TensorEntry } from '../../lib/formats/safetensors';
import { DTYPES, DTYPE_SIZES, type Dtype } from '../../lib/formats/dtype';
import * as native from '../../lib/native';
import { isCode } from '../helpers/errors';

const VECTOR_HEADER = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

function seq(n: number, start = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (start + i * 7) & 0xff;
  return b;
}

describe('formats/safetensors', () => {
  let tmp: string;
  let n = 0;
  /** A fresh sub-directory of this suite's temp directory. */
  const fresh = () => {
    const d = path.join(tmp, `case-${n++}`);
    fs.mkdirSync(d);
    return d;
  };

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-test-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Write a hand-made file: u64 header length (or `len`), header text (or bytes), data. */
  function craft(name: string, header: string | Uint8Array, data: Uint8Array | number = 0, len?: bigint): string {
    const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : Buffer.from(header);
    const l = Buffer.alloc(8);
    l.writeBigUInt64LE(len ?? BigInt(h.length));
    const d = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
    const file = path.join(fresh(), name);
    fs.writeFileSync(file, Buffer.concat([l, h, d]));
    return file;
  }

  describe('writer', () => {
    it('writes the §9 vector byte for byte', async () => {
      const dir = fresh();
      const r = await writeSafetensors(dir, [{ name: 'a', dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) }]);
      assert.deepEqual(r, { files: [path.join(dir, 'model.safetensors')], totalBytes: 8, index: null });
      const want = Buffer.concat([
        Buffer.from('5800000000000000', 'hex'),
        Buffer.from(VECTOR_HEADER + '   ', 'utf8'),
        Buffer.from('0000803f00000040', 'hex'),
      ]);
      assert.equal(VECTOR_HEADER.length, 85);
      assert.equal(want.length, 104);
      assert.deepEqual(fs.readFileSync(r.files[0]), want);
      assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
    });

    it('orders by descending element size then name, pads to 8, keeps metadata order', async () => {
      const dir = fresh();
      const tensors: TensorEntry[] = [
        { name: 'b8', dtype: 'U8', shape: [3], data: seq(3) },
        { name: 'z16', dtype: 'F16', shape: [1], data: seq(2) },
        { name: 'a16', dtype: 'BF16', shape: [2], data: seq(4) },
        { name: '10', dtype: 'F64', shape: [], data: seq(8) }, // integer-like name keeps its place
        { name: 'c32', dtype: 'F32', shape: [1], data: seq(4) },
      ];
      const r = await writeSafetensors(dir, tensors, { metadata: { producer: 'lowbit-test', format: 'pt' } });
      const buf = fs.readFileSync(r.files[0]);
      const len = Number(buf.readBigUInt64LE(0));
      assert.equal((8 + len) % 8, 0);
      const text = buf.subarray(8, 8 + len).toString('utf8');
      assert.match(text, /^\{"__metadata__":\{"format":"pt","producer":"lowbit-test"\},"10":/);
      assert.ok(/^[^ ]*} *$/.test(text), 'compact JSON padded with trailing spaces only');
      const h = readSafetensorsHeader(r.files[0]);
      assert.deepEqual(h.tensors.map((t) => t.name), ['10', 'c32', 'a16', 'z16', 'b8']);
      assert.deepEqual(h.tensors.map((t) => t.offset - h.dataOffset), [0, 8, 12, 16, 18]);
      for (const t of h.tensors) assert.equal((t.offset - h.dataOffset) % DTYPE_SIZES[t.dtype], 0, `${t.name} aligned`);
      assert.deepEqual(h.metadata, { format: 'pt', producer: 'lowbit-test' });
    });

    it('round-trips every dtype, a 0-rank tensor and zero-size tensors', async () => {
      const dir = fresh();
      const tensors: TensorEntry[] = DTYPES.map((dtype, i) => ({
        name: `t.${dtype}`, dtype, shape: [2, 3], data: seq(6 * DTYPE_SIZES[dtype], i),
      }));
      tensors.push({ name: 'scalar', dtype: 'F32', shape: [], data: f32Bytes([7.5]) });
      tensors.push({ name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint8Array(0) });
      tensors.push({ name: 'empty2', dtype: 'I64', shape: [3, 0], data: new Uint8Array(0) });
      const r = await writeSafetensors(dir, tensors);
      const rd = openSafetensors(dir);
      try {
        assert.deepEqual(rd.names().slice().sort(), tensors.map((t) => t.name).sort());
        for (const t of tensors) {
          const info = rd.info(t.name);
          assert.equal(info.dtype, t.dtype);
          assert.deepEqual(info.shape, t.shape);
          assert.equal(info.file, r.files[0]);
          assert.deepEqual(Buffer.from(rd.bytes(t.name)), Buffer.from(t.data as Uint8Array), t.name);
        }
        assert.deepEqual([...rd.toFloat32('scalar')], [7.5]);
        assert.equal(rd.toFloat32('empty').length, 0);
        assert.deepEqual([...rd.toFloat32('t.U8')], [...seq(6, DTYPES.indexOf('U8'))]);
        assert.equal(rd.totalBytes(), tensors.reduce((s, t) => s + (t.data as Uint8Array).byteLength, 0));
        assert.equal(r.totalBytes, rd.totalBytes());
        assert.deepEqual(rd.metadata, { format: 'pt' });
        assert.ok(rd.has('scalar') && !rd.has('nope'));
      } finally {
        rd.close();
      }
    });

    it('shards at tensor boundaries and writes the index', async () => {
      const dir = fresh();
      const tensors: TensorEntry[] = [
        { name: 'w.a', dtype: 'F32', shape: [4], data: seq(16, 1) },
        { name: 'w.b', dtype: 'F32', shape: [4], data: seq(16, 2) },
        { name: 'w.big', dtype: 'F32', shape: [10], data: seq(40, 3) }, // larger than the limit: alone
        { name: 'w.c', dtype: 'U8', shape: [10], data: seq(10, 4) },
      ];
      const r = await writeSafetensors(dir, tensors, { maxShardBytes: 32 });
      const names = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
      assert.deepEqual(r.files, names.map((f) => path.join(dir, f)));
      assert.equal(r.index, path.join(dir, 'model.safetensors.index.json'));
      assert.equal(r.totalBytes, 82);
      assert.deepEqual(fs.readdirSync(dir).sort(), [...names, 'model.safetensors.index.json'].sort());
      const index: unknown = JSON.parse(fs.readFileSync(r.index, 'utf8'));
      assert.deepEqual(index, {
        metadata: { total_size: 82 },
        weight_map: { 'w.a': names[0], 'w.b': names[0], 'w.big': names[1], 'w.c': names[2] },
      });
      // Each shard is a complete safetensors file on its own.
      assert.deepEqual(readSafetensorsHeader(r.files[0]).tensors.map((t) => t.name), ['w.a', 'w.b']);
      assert.deepEqual(readSafetensorsHeader(r.files[1]).tensors.map((t) => t.name), ['w.big']);
      for (const where of [dir, r.index]) {
        const rd = openSafetensors(where);
        try {
          assert.deepEqual(rd.files, r.files);
          assert.deepEqual(rd.names().slice().sort(), ['w.a', 'w.b', 'w.big', 'w.c']);
          for (const t of tensors) assert.deepEqual(Buffer.from(rd.bytes(t.name)), Buffer.from(t.data as Uint8Array));
          assert.equal(rd.info('w.c').file, r.files[2]);
          assert.equal(rd.totalBytes(), 82);
        } finally {
          rd.close();
        }
      }
    });

    it('replaces a previous checkpoint of the other layout in the same directory', async () => {
      const dir = fresh();
      const t = (v: number): TensorEntry[] => [
        { name: 'x', dtype: 'U8', shape: [8], data: seq(8, v) },
        { name: 'y', dtype: 'U8', shape: [8], data: seq(8, v + 1) },
      ];
      fs.writeFileSync(path.join(dir, 'notes.txt'), 'keep me');
      await writeSafetensors(dir, t(1), { maxShardBytes: 8 });
      await writeSafetensors(dir, t(2));
      assert.deepEqual(fs.readdirSync(dir).sort(), ['model.safetensors', 'notes.txt']);
      await writeSafetensors(dir, t(3), { maxShardBytes: 8 });
      assert.deepEqual(fs.readdirSync(dir).sort(), [
        'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'notes.txt',
      ]);
      const rd = openSafetensors(dir);
      assert.deepEqual(Buffer.from(rd.bytes('y')), Buffer.from(seq(8, 4)));
      rd.close();
    });

    it('calls lazy producers once each, in file order, sync or async', async () => {
      const dir = fresh();
      const calls: string[] = [];
      const lazy = (name: string, dtype: Dtype, count: number, async_: boolean): TensorEntry => ({
        name, dtype, shape: [count],
        data: async_
          ? async () => {
            calls.push(name);
            await new Promise((r) => setImmediate(r));
            return seq(count * DTYPE_SIZES[dtype], name.length);
          }
          : () => {
            calls.push(name);
            return seq(count * DTYPE_SIZES[dtype], name.length);
          },
      });
      const r = await writeSafetensors(dir, [lazy('small', 'U8', 5, false), lazy('mid', 'F16', 3, true), lazy('large', 'F32', 2, true)], { baseName: 'weights' });
      assert.deepEqual(calls, ['large', 'mid', 'small']);
      assert.deepEqual(r.files, [path.join(dir, 'weights.safetensors')]);
      const h = readSafetensorsHeader(r.files[0]);
      const buf = fs.readFileSync(r.files[0]);
      for (const t of h.tensors) {
        assert.deepEqual(buf.subarray(t.offset, t.offset + t.byteLength), Buffer.from(seq(t.byteLength, t.name.length)));
      }
    });

    it('leaves neither final nor temp files when a producer throws mid-way', async () => {
      const dir = fresh();
      const boom = new Error('producer failed');
      const tensors: TensorEntry[] = [
        { name: 'a', dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) },
        { name: 'b', dtype: 'F32', shape: [2], data: () => { throw boom; } },
        { name: 'c', dtype: 'U8', shape: [4], data: seq(4) },
      ];
      await assert.rejects(writeSafetensors(dir, tensors), (e) => e === boom);
      assert.deepEqual(fs.readdirSync(dir), []);
      // Also when sharded: the first shard was complete but must not appear.
      await assert.rejects(writeSafetensors(dir, tensors, { maxShardBytes: 8 }), (e) => e === boom);
      assert.deepEqual(fs.readdirSync(dir), []);
    });

    it('keeps an existing checkpoint intact when a rewrite fails', async () => {
      const dir = fresh();
      await writeSafetensors(dir, [{ name: 'a', dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) }]);
      const before = fs.readFileSync(path.join(dir, 'model.safetensors'));
      await assert.rejects(
        writeSafetensors(dir, [{ name: 'a', dtype: 'F32', shape: [2], data: () => seq(7) }]),
        isCode('LOWBIT_SHAPE_MISMATCH', 'a', '7 bytes', 'needs 8'),
      );
      assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
      assert.deepEqual(fs.readFileSync(path.join(dir, 'model.safetensors')), before);
    });

    it('rejects eager data of the wrong length before writing anything', async () => {
      const dir = path.join(fresh(), 'not-created');
      await assert.rejects(
        writeSafetensors(dir, [{ name: 'w', dtype: 'BF16', shape: [2, 2], data: seq(6) }]),
        isCode('LOWBIT_SHAPE_MISMATCH', 'w', 'BF16 [2, 2] needs 8'),
      );
      assert.ok(!fs.existsSync(dir));
    });

    it('validates entries and options', async () => {
      const dir = fresh();
      const ok = (name = 'a'): TensorEntry => ({ name, dtype: 'U8', shape: [1], data: seq(1) });
      const bad: [string, () => Promise<unknown>, string][] = [
        ['duplicate', () => writeSafetensors(dir, [ok(), ok()]), 'tensors[1].name'],
        ['unknown dtype', () => writeSafetensors(dir, [{ ...ok(), dtype: 'F17' as Dtype }]), 'a: dtype'],
        ['negative dim', () => writeSafetensors(dir, [{ ...ok(), shape: [-1] }]), 'a: shape[0]'],
        ['fractional dim', () => writeSafetensors(dir, [{ ...ok(), shape: [1.5] }]), 'a: shape[0]'],
        ['shape not array', () => writeSafetensors(dir, [{ ...ok(), shape: 3 as unknown as number[] }]), 'a: shape'],
        ['reserved name', () => writeSafetensors(dir, [ok('__metadata__')]), 'tensors[0].name'],
        ['data type', () => writeSafetensors(dir, [{ ...ok(), data: [1] as unknown as Uint8Array }]), 'a: data'],
        ['metadata value', () => writeSafetensors(dir, [ok()], { metadata: { n: 3 as unknown as string } }), 'metadata.n'],
        ['metadata format', () => writeSafetensors(dir, [ok()], { metadata: { format: 'np' } }), 'metadata.format'],
        ['maxShardBytes', () => writeSafetensors(dir, [ok()], { maxShardBytes: 0 }), 'maxShardBytes'],
        ['baseName', () => writeSafetensors(dir, [ok()], { baseName: '../x' }), 'baseName'],
        ['tensors', () => writeSafetensors(dir, {} as TensorEntry[]), 'tensors'],
      ];
      for (const [what, fn, fragment] of bad) {
        await assert.rejects(fn(), isCode('LOWBIT_INVALID_OPTION', fragment), what);
      }
      await assert.rejects(
        writeSafetensors(dir, [{ ...ok(), data: () => 'x' as unknown as Uint8Array }]),
        isCode('LOWBIT_INVALID_OPTION', 'producer'),
      );
      assert.deepEqual(fs.readdirSync(dir), []);
    });

    it('honours an abort signal and writes nothing', async () => {
      const dir = fresh();
      const ac = new AbortController();
      const tensors: TensorEntry[] = [
        { name: 'a', dtype: 'F32', shape: [1], data: () => { ac.abort(); return f32Bytes([1]); } },
        { name: 'b', dtype: 'U8', shape: [1], data: seq(1) },
      ];
      await assert.rejects(writeSafetensors(dir, tensors, { signal: ac.signal }), isCode('LOWBIT_ABORTED'));
      await assert.rejects(writeSafetensors(dir, tensors, { signal: ac.signal }), isCode('LOWBIT_ABORTED'));
      assert.deepEqual(fs.readdirSync(dir), []);
    });

    it('reports a target that is a file as LOWBIT_IO naming it', async () => {
      const file = path.join(fresh(), 'plain');
      fs.writeFileSync(file, 'x');
      await assert.rejects(writeSafetensors(file, [{ name: 'a', dtype: 'U8', shape: [1], data: seq(1) }]), isCode('LOWBIT_IO', 'plain'));
    });
  });

  describe('reader', () => {
    it('reads the §9 vector with absolute offsets', () => {
      const file = craft('vector.safetensors', VECTOR_HEADER + '   ', f32Bytes([1, 2]));
      const h = readSafetensorsHeader(file);
      assert.equal(h.headerLength, 88);
      assert.equal(h.dataOffset, 96);
      assert.equal(h.fileSize, 104);
      const rd = openSafetensors(file);
      assert.deepEqual(rd.info('a'), { name: 'a', dtype: 'F32', shape: [2], file, offset: 96, byteLength: 8 });
      assert.deepEqual([...rd.toFloat32('a')], [1, 2]);
      const out = new Float32Array(2);
      assert.equal(rd.toFloat32('a', out), out);
      assert.deepEqual(rd.metadata, { format: 'pt' });
      rd.close();
      rd.close(); // idempotent
      assert.throws(() => rd.bytes('a'), isCode('LOWBIT_DISPOSED'));
      assert.throws(() => rd.names(), isCode('LOWBIT_DISPOSED'));
    });

    it('accepts an empty header, no metadata, unaligned data and header whitespace', () => {
      const empty = openSafetensors(craft('empty.safetensors', '{}'));
      assert.deepEqual(empty.names(), []);
      assert.deepEqual(empty.metadata, {});
      assert.equal(empty.totalBytes(), 0);
      empty.close();
      // Header of 57 bytes: data starts at 65, so the F16 tensor is unaligned in the file.
      const file = craft('odd.safetensors', '{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}   ', new Uint8Array([0, 0x3c, 0, 0xc0]));
      const rd = openSafetensors(file);
      assert.equal(rd.info('h').offset % 2, 1);
      assert.deepEqual([...rd.toFloat32('h')], [1, -2]);
      rd.close();
    });

    it('reports unknown tensors and missing paths as LOWBIT_NOT_FOUND', () => {
      const file = craft('v.safetensors', VECTOR_HEADER, f32Bytes([1, 2]));
      const rd = openSafetensors(file);
      assert.throws(() => rd.info('b'), isCode('LOWBIT_NOT_FOUND', '"b"', 'v.safetensors'));
      assert.throws(() => rd.bytes('b'), isCode('LOWBIT_NOT_FOUND', '"b"'));
      rd.close();
      const missing = path.join(tmp, 'nope.safetensors');
      assert.throws(() => openSafetensors(missing), isCode('LOWBIT_NOT_FOUND', 'nope.safetensors'));
      assert.throws(() => readSafetensorsHeader(missing), isCode('LOWBIT_NOT_FOUND', 'nope.safetensors'));
      const dir = fresh();
      assert.throws(() => openSafetensors(dir), isCode('LOWBIT_NOT_FOUND', dir, 'model.safetensors'));
    });

    const T = (name: string, dtype: string, shape: unknown, offs: unknown) =>
      `${JSON.stringify(name)}:{"dtype":${JSON.stringify(dtype)},"shape":${JSON.stringify(shape)},"data_offsets":${JSON.stringify(offs)}}`;

    // [case, file maker, fragments the message must contain besides the file name]
    const malformed: [string, () => string, string[]][] = [
      ['truncated file (< 8 bytes)', () => { const f = path.join(fresh(), 'short.safetensors'); fs.writeFileSync(f, Buffer.alloc(5)); return f; }, ['5 bytes']],
      ['header length beyond the file', () => craft('beyond.safetensors', '{}', 0, 1000n), ['header length 1000', 'file size']],
      ['header length > 1e8', () => craft('huge.safetensors', '{}', 0, 100_000_001n), ['100000001', '100000000']],
      ['header not starting with {', () => craft('notobj.safetensors', ' {}'), ["'{'", '0x20']],
      ['invalid UTF-8', () => craft('utf8.safetensors', Buffer.concat([Buffer.from('{"a'), Buffer.from([0xff, 0xfe]), Buffer.from('":1}')])), ['UTF-8']],
      ['bad JSON', () => craft('json.safetensors', '{"a":{"dtype":"F32",}}'), ['not valid JSON']],
      ['unknown dtype', () => craft('dtype.safetensors', `{${T('w.q', 'F17', [1], [0, 4])}}`, 4), ['"w.q"', 'F17']],
      ['negative shape', () => craft('negshape.safetensors', `{${T('w.n', 'F32', [-1], [0, 4])}}`, 4), ['"w.n"', 'shape[0]', '-1']],
      ['fractional shape', () => craft('fracshape.safetensors', `{${T('w.f', 'F32', [1.5], [0, 4])}}`, 4), ['"w.f"', 'shape[0]']],
      ['shape not an array', () => craft('shapeobj.safetensors', `{${T('w.s', 'F32', 4, [0, 16])}}`, 16), ['"w.s"', 'shape']],
      ['data_offsets malformed', () => craft('offs3.safetensors', `{${T('w.o', 'F32', [1], [0, 4, 8])}}`, 4), ['"w.o"', 'data_offsets']],
      ['END before BEGIN', () => craft('endbegin.safetensors', `{${T('w.e', 'U8', [0], [4, 0])}}`, 4), ['"w.e"', '[4, 0]']],
      ['size mismatch', () => craft('size.safetensors', `{${T('a', 'F32', [2], [0, 12])}}`, 12), ['tensor "a": data_offsets [0, 12] cover 12 bytes but F32 [2] needs 8']],
      ['offsets out of range', () => craft('range.safetensors', `{${T('w.r', 'F32', [2], [0, 8])}}`, 4), ['"w.r"', 'past the end', '4 bytes']],
      ['overlapping offsets', () => craft('overlap.safetensors', `{${T('w.1', 'F32', [2], [0, 8])},${T('w.2', 'F32', [1], [4, 8])}}`, 8), ['"w.2"', 'overlap', '"w.1"']],
      ['a hole', () => craft('hole.safetensors', `{${T('w.1', 'F32', [1], [0, 4])},${T('w.2', 'F32', [1], [8, 12])}}`, 12), ['"w.2"', 'hole of 4 bytes', '"w.1"']],
      ['a hole at the start', () => craft('hole0.safetensors', `{${T('w.z', 'F32', [1], [4, 8])}}`, 8), ['"w.z"', 'hole']],
      ['trailing bytes', () => craft('trail.safetensors', `{${T('w.t', 'F32', [1], [0, 4])}}`, 6), ['2 trailing bytes', '"w.t"']],
      ['duplicate tensor name', () => craft('dup.safetensors', `{${T('w.d', 'F32', [1], [0, 4])},${T('w.d', 'F32', [1], [4, 8])}}`, 8), ['duplicate tensor name "w.d"']],
      ['duplicate name via escapes', () => craft('dupesc.safetensors', `{${T('ab', 'U8', [1], [0, 1])},"a\\u0062":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), ['"ab"']],
      ['duplicate field in a tensor', () => craft('dupfield.safetensors', '{"w.f":{"dtype":"F32","dtype":"U8","shape":[4],"data_offsets":[0,4]}}', 4), ['"w.f"', '"dtype"']],
      ['non-string metadata', () => craft('meta.safetensors', '{"__metadata__":{"format":"pt","step":3}}'), ['__metadata__', '"step"', '3 (number)']],
      ['metadata not an object', () => craft('meta2.safetensors', '{"__metadata__":"pt"}'), ['__metadata__']],
      ['tensor entry not an object', () => craft('entry.safetensors', '{"w.x":[1,2]}'), ['"w.x"']],
    ];
    for (const [what, make, fragments] of malformed) {
      it(`rejects ${what} with LOWBIT_BAD_FORMAT naming the file`, () => {
        const file = make();
        const base = path.basename(file);
        assert.throws(() => readSafetensorsHeader(file), isCode('LOWBIT_BAD_FORMAT', file, ...fragments));
        assert.throws(() => openSafetensors(file), isCode('LOWBIT_BAD_FORMAT', base, ...fragments));
      });
    }

    it('reports dtypes valid in safetensors but unsupported by lowbit as LOWBIT_UNSUPPORTED', () => {
      const file = craft('f4.safetensors', `{${T('w.4', 'F4', [2], [0, 1])}}`, 1);
      assert.throws(() => openSafetensors(file), isCode('LOWBIT_UNSUPPORTED', 'f4.safetensors', '"w.4"', 'F4'));
    });
  });

  describe('native mapping (stubbed: the addon may not be built)', () => {
    const mod = native as unknown as { openMapping: typeof native.openMapping };
    const real = native.openMapping;
    afterEach(() => {
      mod.openMapping = real;
    });

    it('returns zero-copy views of a mapping opened once per file and closed by close()', async () => {
      const dir = fresh();
      await writeSafetensors(dir, [
        { name: 'x', dtype: 'F32', shape: [2], data: f32Bytes([3, 4]) },
        { name: 'y', dtype: 'U8', shape: [3], data: seq(3) },
      ], { maxShardBytes: 4 });
      const opened: string[] = [];
      const views: ArrayBuffer[] = [];
      let closed = 0;
      mod.openMapping = (file: string) => {
        opened.push(file);
        const buf = fs.readFileSync(file);
        return {
          size: buf.length,
          release: () => undefined,
          view: (offset: number, length: number) => {
            const ab = buf.buffer.slice(buf.byteOffset + offset, buf.byteOffset + offset + length);
            views.push(ab);
            return ab;
          },
          close: () => { closed++; },
        };
      };
      const rd = openSafetensors(dir);
      assert.deepEqual(opened, [], 'opening must not map anything');
      const x = rd.bytes('x');
      assert.equal(x.buffer, views[0]);
      assert.deepEqual([...rd.toFloat32('x')], [3, 4]);
      assert.deepEqual([...rd.bytes('y')], [...seq(3)]);
      assert.deepEqual(opened, [rd.info('x').file, rd.info('y').file]);
      rd.close();
      assert.equal(closed, 2);
    });

    it('falls back to plain reads when mapping or viewing throws', async () => {
      const dir = fresh();
      await writeSafetensors(dir, [{ name: 'x', dtype: 'U8', shape: [4], data: seq(4, 9) }]);
      mod.openMapping = () => { throw new Error('mmap failed'); };
      let rd = openSafetensors(dir);
      assert.deepEqual([...rd.bytes('x')], [...seq(4, 9)]);
      rd.close();
      mod.openMapping = () => ({ size: 0, view: () => { throw new Error('bad view'); }, release: () => undefined, close: () => undefined });
      rd = openSafetensors(dir);
      assert.deepEqual([...rd.bytes('x')], [...seq(4, 9)]);
      rd.close();
      mod.openMapping = () => null;
      rd = openSafetensors(dir);
      assert.deepEqual([...rd.bytes('x')], [...seq(4, 9)]);
      rd.close();
    });
  });

  describe('sharded reader validation', () => {
    /** Two valid shards + an index whose weight_map is `map`. */
    function shardedDir(map: Record<string, string>, extra?: (dir: string) => void): string {
      const dir = fresh();
      const s1 = '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}';
      const s2 = '{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"c":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}';
      for (const [f, h] of [['s-1.safetensors', s1], ['s-2.safetensors', s2]]) {
        const l = Buffer.alloc(8);
        l.writeBigUInt64LE(BigInt(Buffer.byteLength(h)));
        fs.writeFileSync(path.join(dir, f), Buffer.concat([l, Buffer.from(h), Buffer.from([1, 2])]));
      }
      fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 4 }, weight_map: map }));
      extra?.(dir);
      return dir;
    }

    it('opens a consistent index', () => {
      const rd = openSafetensors(shardedDir({ a: 's-1.safetensors', b: 's-2.safetensors', c: 's-2.safetensors' }));
      assert.deepEqual(rd.names(), ['a', 'b', 'c']);
      assert.deepEqual([...rd.bytes('c')], [2]);
      rd.close();
    });

    it('rejects an index naming a missing shard', () => {
      const dir = shardedDir({ a: 's-1.safetensors', b: 's-2.safetensors', c: 's-2.safetensors', d: 's-3.safetensors' });
      assert.throws(() => openSafetensors(dir), isCode('LOWBIT_NOT_FOUND', 'model.safetensors.index.json', 's-3.safetensors', '"d"'));
    });

    it('rejects a tensor missing from the shard the index names', () => {
      const dir = shardedDir({ a: 's-1.safetensors', b: 's-2.safetensors', c: 's-2.safetensors', zz: 's-1.safetensors' });
      assert.throws(() => openSafetensors(dir), isCode('LOWBIT_BAD_FORMAT', 'model.safetensors.index.json', '"zz"', 's-1.safetensors'));
    });

    it('rejects a shard holding a tensor absent from the index', () => {
      const dir = shardedDir({ a: 's-1.safetensors', b: 's-2.safetensors' });
      assert.throws(() => openSafetensors(dir), isCode('LOWBIT_BAD_FORMAT', 's-2.safetensors', '"c"', 'not listed'));
    });

    it('rejects a tensor stored in two shards, or in another shard than listed', () => {
      const dup = shardedDir({ a: 's-1.safetensors', b: 's-2.safetensors', c: 's-2.safetensors' }, (dir) => {
        const h = '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
        const l = Buffer.alloc(8);
        l.writeBigUInt64LE(BigInt(h.length));
        fs.writeFileSync(path.join(dir, 's-3.safetensors'), Buffer.concat([l, Buffer.from(h), Buffer.from([9])]));
        const idx = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
        idx.weight_map.z = 's-3.safetensors';
        fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(idx));
      });
      assert.throws(() => openSafetensors(dup), isCode('LOWBIT_BAD_FORMAT', 's-3.safetensors', '"a"', 's-1.safetensors'));
      const moved = shardedDir({ a: 's-1.safetensors', b: 's-1.safetensors', c: 's-2.safetensors' });
      assert.throws(() => openSafetensors(moved), isCode('LOWBIT_BAD_FORMAT', 's-2.safetensors', '"b"'));
    });

    it('rejects a malformed index and shard paths outside the directory', () => {
      const notJson = shardedDir({}, (dir) => { fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": '); });
      assert.throws(() => openSafetensors(notJson), isCode('LOWBIT_BAD_FORMAT', 'model.safetensors.index.json', 'JSON'));
      const noMap = shardedDir({}, (dir) => { fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"metadata":{}}'); });
      assert.throws(() => openSafetensors(noMap), isCode('LOWBIT_BAD_FORMAT', 'weight_map'));
      const escape = shardedDir({ a: '../s-1.safetensors' });
      assert.throws(() => openSafetensors(escape), isCode('LOWBIT_BAD_FORMAT', '"a"', '../s-1.safetensors'));
      const twice = shardedDir({}, (dir) => { fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map":{"a":"s-1.safetensors","a":"s-2.safetensors"}}'); });
      assert.throws(() => openSafetensors(twice), isCode('LOWBIT_BAD_FORMAT', '"a"', 'twice'));
    });
  });
});
