/**
 * Every model source a quantize run accepts, as the Hugging Face directory the methods work on:
 * an HF directory (or a .safetensors file in one) is used as it is; a llama2.c checkpoint or a
 * GGUF file is converted into a staging directory beside the output (q/k rows in rotate-half
 * order, its vocabulary as tokenizer.bin, so every output carries it), which is removed when the
 * run ends, whatever happens. A GGUF file whose weights are already quantized is refused unless
 * `allowRequantize` (it would round twice), as llama.cpp's quantize does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LowbitError, optionError, toLowbitError } from '../errors';
import { detectModelSource, type ModelSource } from '../formats/source';
import { readLlama2cModel } from '../formats/llama2c';
import { readGguf } from '../formats/gguf';
import { writeHfFromGguf, writeHfFromLlama2c } from '../formats/convert';
import { claimStaging } from '../formats/output';

/** A source ready for the pipeline. */
export interface StagedSource {
  source: ModelSource;
  /** The HF directory to quantize. */
  dir: string;
  /** A tokenizer file found next to a llama2.c source (copied into the staged directory). */
  tokenizer: string | null;
  /** Remove what staging wrote (nothing for an HF directory). */
  cleanup(): void;
}

/** Stage `p` (any source kind) as an HF directory beside `out`. */
export async function stageQuantizeSource(p: string, out: string, opts: { allowRequantize: boolean; tokenizer: string | null; signal?: AbortSignal }): Promise<StagedSource> {
  const source = detectModelSource(p);
  if (source.kind !== 'gguf' && opts.allowRequantize) {
    // refused before anything is converted
    throw optionError('allowRequantize', `allowRequantize: applies to a GGUF source with quantized weights; ${source.path} is a ${source.kind === 'hf-dir' ? 'Hugging Face directory' : 'llama2.c checkpoint'}`);
  }
  if (source.kind === 'hf-dir') {
    return { source, dir: source.dir ?? source.path, tokenizer: null, cleanup: () => undefined };
  }
  const outAbs = path.resolve(out);
  const dir = path.join(path.dirname(outAbs), `.${path.basename(outAbs)}.source-${randomBytes(6).toString('hex')}`);
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    fs.mkdirSync(path.dirname(outAbs), { recursive: true });
    // owned, so that a later run removes it if this process is killed before its cleanup
    fs.mkdirSync(dir);
    claimStaging(dir);
    if (source.kind === 'gguf') {
      const g = readGguf(source.path);
      try {
        await writeHfFromGguf(g, dir, { dequantize: opts.allowRequantize, signal: opts.signal });
      } finally {
        g.close();
      }
      return { source, dir, tokenizer: null, cleanup };
    }
    const m = readLlama2cModel(source.path);
    await writeHfFromLlama2c(m, dir, 'F32');
    // llama2.c keeps its vocabulary apart: the one given, or tokenizer.bin next to the model
    const tok = opts.tokenizer ?? (fs.existsSync(path.join(path.dirname(source.path), 'tokenizer.bin')) ? path.join(path.dirname(source.path), 'tokenizer.bin') : null);
    if (tok) {
      try {
        fs.copyFileSync(tok, path.join(dir, 'tokenizer.bin'));
      } catch (e) {
        throw toLowbitError(e, `${tok}: cannot read the tokenizer`);
      }
    }
    return { source, dir, tokenizer: tok, cleanup };
  } catch (e) {
    cleanup();
    if (e instanceof LowbitError) throw e;
    throw toLowbitError(e, `${source.path}: cannot stage the model for quantization`);
  }
}
