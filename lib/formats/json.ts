/**
 * Reading JSON files lowbit does not write itself (config.json, tokenizer.json,
 * tokenizer_config.json, model.safetensors.index.json, calibration JSONL lines) with limits that
 * hold before anything large is allocated: a size cap checked against the file's size before it is
 * read, strict UTF-8, and a nesting-depth cap checked by a scan before `JSON.parse`. Without the
 * depth cap a file of `[[[[…` parses fine (V8's parser is iterative) and then throws a RangeError
 * (stack overflow) later, wherever the value is copied, stringified or walked.
 */
import * as fs from 'node:fs';
import { LowbitError, badFormat, formatBytes, toLowbitError } from '../errors';

/**
 * Deepest nesting of arrays and objects accepted in a JSON file lowbit reads. Real files stay far
 * below it (config.json 3–4 levels, tokenizer.json about 6), and every consumer walks at most this
 * deep, far from any stack limit.
 */
export const MAX_JSON_DEPTH = 64;

/** Largest config-like JSON file read (config.json, tokenizer_config.json, an index): 100 MB, the safetensors header limit. */
export const MAX_JSON_FILE_BYTES = 100_000_000;

/**
 * Largest tokenizer.json read: 500 MiB. A JS string holds at most 2^29 − 24 UTF-16 units, so a
 * larger UTF-8 file could not even be decoded (real tokenizer.json files are 2–35 MB).
 */
export const MAX_TOKENIZER_JSON_BYTES = 500 * 2 ** 20;

/**
 * The nesting depth of JSON text (0 for a scalar), scanning no further than one level past `max`;
 * strings (with their escapes) are skipped. Returns the depth and the offset where it was reached.
 */
export function jsonDepth(text: string, max = MAX_JSON_DEPTH): { depth: number; at: number } {
  let depth = 0;
  let deepest = 0;
  let at = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        at = i;
        if (deepest > max) break;
      }
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    }
  }
  return { depth: deepest, at };
}

/**
 * Parse JSON text of `file` (`what`, when given, names the part, e.g. "line 3"): LOWBIT_BAD_FORMAT
 * naming the file for invalid JSON or nesting deeper than {@link MAX_JSON_DEPTH}.
 */
export function parseJsonText(file: string, text: string, what?: string): unknown {
  const where = what === undefined ? '' : `${what}: `;
  const { depth, at } = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) {
    throw badFormat(file, `${where}JSON nested more than ${MAX_JSON_DEPTH} levels deep (level ${MAX_JSON_DEPTH + 1} at offset ${at}); lowbit reads at most ${MAX_JSON_DEPTH}`, { depth: MAX_JSON_DEPTH + 1 });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw badFormat(file, `${where}invalid JSON: ${(e as Error).message}`);
  }
}

/** UTF-8 bytes as text (a byte-order mark kept, so JSON.parse refuses it as Python's json does); invalid UTF-8 is LOWBIT_BAD_FORMAT naming the file. */
export function decodeUtf8(file: string, bytes: Uint8Array, what = 'the file'): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw badFormat(file, `${what} (${bytes.length} bytes) is not valid UTF-8`);
  }
}

/**
 * Read and parse a JSON file: its size is checked against `maxBytes` before it is read
 * (LOWBIT_BAD_FORMAT with both numbers), then strict UTF-8, depth and syntax as above. A missing
 * file is LOWBIT_NOT_FOUND, other file-system failures LOWBIT_IO, each naming the path.
 */
export function readJsonFile(file: string, maxBytes = MAX_JSON_FILE_BYTES): unknown {
  let bytes: Buffer;
  try {
    const st = fs.statSync(file);
    if (st.isDirectory()) throw new LowbitError('LOWBIT_IO', `${file}: is a directory, expected a JSON file`, { file });
    if (st.size > maxBytes) throw badFormat(file, `${st.size} bytes (${formatBytes(st.size)}) is more than the ${maxBytes}-byte (${formatBytes(maxBytes)}) limit for this file`, { size: st.size });
    bytes = fs.readFileSync(file);
  } catch (e) {
    if (e instanceof LowbitError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new LowbitError('LOWBIT_NOT_FOUND', `${file}: no such file`, { file }, { cause: e });
    throw toLowbitError(e, file);
  }
  return parseJsonText(file, decodeUtf8(file, bytes));
}
