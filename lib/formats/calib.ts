/**
 * Calibration data files: a UTF-8 text file, a JSONL file (one JSON object per line with a `text`
 * string or an `input_ids` array of token ids; one kind per file), or a directory of `.txt` files
 * (read in name order). Every reader returns the records and the sha256 of the bytes it read, so a
 * run records exactly which data calibrated it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { LowbitError, badFormat, toLowbitError } from '../errors';
import { jsonDepth, MAX_JSON_DEPTH } from './json';

/** Calibration data as read. */
export interface CalibrationData {
  /** 'text' (one file), 'jsonl' (records), 'dir' (.txt files), 'texts' (strings from the API). */
  kind: 'text' | 'jsonl' | 'dir' | 'texts';
  /** The text records (joined with a blank line before tokenizing), or null when `ids` holds the data. */
  texts: string[] | null;
  /** Pre-tokenized records (JSONL `input_ids`), or null. */
  ids: number[][] | null;
  /** Records read (1 for a text file). */
  records: number;
  /** Bytes of data read. */
  bytes: number;
  /** sha256 of the data as read (for a directory: of the files' bytes in name order). */
  sha256: string;
}

/**
 * Largest calibration input read, per file and per directory in total: 2^29 − 24 bytes (just under
 * 512 MiB), the longest string V8 can hold, so the text can always be decoded (a guard against a
 * wrong path, not a limit of the method). It was 2^31, which no string can hold: a 600 MB file was
 * read whole, then failed decoding with a plain Error (ERR_STRING_TOO_LONG).
 */
export const MAX_CALIB_BYTES = 2 ** 29 - 24;

function readUtf8(file: string, limit = MAX_CALIB_BYTES): Buffer {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new LowbitError('LOWBIT_NOT_FOUND', `calibration: cannot read ${file}`, { option: 'calib', file });
  }
  if (st.size > limit) {
    const all = limit === MAX_CALIB_BYTES ? '' : ` (with the files before it in the directory, ${MAX_CALIB_BYTES - limit + st.size} bytes)`;
    throw badFormat(file, `${st.size} bytes of calibration data${all} is above the ${MAX_CALIB_BYTES}-byte limit`);
  }
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw toLowbitError(e, `calibration: cannot read ${file}`);
  }
}

function parseJsonl(file: string, buf: Buffer): { texts: string[] | null; ids: number[][] | null; records: number } {
  const texts: string[] = [];
  const ids: number[][] = [];
  const lines = buf.toString('utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    if (jsonDepth(line).depth > MAX_JSON_DEPTH) throw badFormat(file, `line ${i + 1}: JSON nested more than ${MAX_JSON_DEPTH} levels deep`, { line: i + 1 });
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw badFormat(file, `line ${i + 1}: not JSON (${(e as Error).message})`, { line: i + 1 });
    }
    if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) throw badFormat(file, `line ${i + 1}: expected an object with "text" or "input_ids"`, { line: i + 1 });
    const r = rec as { text?: unknown; input_ids?: unknown };
    if (typeof r.text === 'string') {
      if (ids.length) throw badFormat(file, `line ${i + 1}: a "text" record after "input_ids" records (one kind per file)`, { line: i + 1 });
      texts.push(r.text);
    } else if (Array.isArray(r.input_ids)) {
      if (texts.length) throw badFormat(file, `line ${i + 1}: an "input_ids" record after "text" records (one kind per file)`, { line: i + 1 });
      if (!r.input_ids.every((v): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 31)) {
        throw badFormat(file, `line ${i + 1}: "input_ids" must be non-negative integer token ids`, { line: i + 1 });
      }
      ids.push(r.input_ids);
    } else {
      throw badFormat(file, `line ${i + 1}: no "text" string or "input_ids" array`, { line: i + 1 });
    }
  }
  const records = texts.length + ids.length;
  if (records === 0) throw badFormat(file, 'no records (expected one JSON object per line with "text" or "input_ids")');
  return { texts: ids.length ? null : texts, ids: ids.length ? ids : null, records };
}

/** Read calibration data from a file or a directory of .txt files. */
export function readCalibrationFile(p: string): CalibrationData {
  const abs = path.resolve(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new LowbitError('LOWBIT_NOT_FOUND', `calibration: cannot read ${abs}`, { option: 'calib', file: abs });
  }
  const hash = createHash('sha256');
  if (st.isDirectory()) {
    const files = fs.readdirSync(abs).filter((f) => f.endsWith('.txt')).sort();
    if (files.length === 0) throw badFormat(abs, 'a calibration directory must hold .txt files; it has none');
    const texts: string[] = [];
    let bytes = 0;
    for (const f of files) {
      const b = readUtf8(path.join(abs, f), MAX_CALIB_BYTES - bytes); // the limit holds for the files together
      hash.update(b);
      bytes += b.length;
      texts.push(b.toString('utf8'));
    }
    return { kind: 'dir', texts, ids: null, records: files.length, bytes, sha256: hash.digest('hex') };
  }
  const buf = readUtf8(abs);
  hash.update(buf);
  const sha256 = hash.digest('hex');
  if (/\.jsonl$/i.test(abs)) return { kind: 'jsonl', ...parseJsonl(abs, buf), bytes: buf.length, sha256 };
  return { kind: 'text', texts: [buf.toString('utf8')], ids: null, records: 1, bytes: buf.length, sha256 };
}

/** Calibration data given as strings (the API's `calibration.texts`, or `calibration.text`). */
export function calibrationTexts(texts: string[], kind: 'text' | 'texts'): CalibrationData {
  const hash = createHash('sha256');
  let bytes = 0;
  for (const t of texts) {
    const b = Buffer.from(t, 'utf8');
    hash.update(b);
    bytes += b.length;
  }
  return { kind, texts, ids: null, records: texts.length, bytes, sha256: hash.digest('hex') };
}
