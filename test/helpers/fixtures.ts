/** Locates ../shared/fixtures (or LOWBIT_FIXTURES); tests skip with a message when absent. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export function fixturesDir(): string | null {
  const candidates = [
    process.env.LOWBIT_FIXTURES,
    path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'fixtures'), // dist/test/helpers -> ../shared
    path.resolve(process.cwd(), '..', 'shared', 'fixtures'),
  ].filter((x): x is string => !!x);
  for (const c of candidates) if (fs.existsSync(path.join(c, 'stories260K'))) return c;
  return null;
}

export const NO_FIXTURES = 'fixtures not found (set LOWBIT_FIXTURES or place ../shared/fixtures beside the checkout)';

/** One run.c generation of stories260K/expected.json. */
export interface ExpectedGeneration {
  id: string;
  prompt: string;
  steps: number;
  temperature: number;
  topp: number;
  seed: number;
  expected_text: string;
  prompt_ids: number[];
  expected_ids: number[];
  stopped_by: string;
}

/** One tokenizer case of stories260K/expected.json. */
export interface ExpectedEncoding {
  text: string;
  bos: boolean;
  expected_ids: number[];
}

/** stories260K/expected.json: the outputs of llama2.c's run.c for the fixture model, as data. */
export interface ExpectedJson {
  generate: ExpectedGeneration[];
  encode: ExpectedEncoding[];
}

/** `<dir>/expected.json`, dir being the stories260K fixture folder. */
export function readExpected(dir: string): ExpectedJson {
  return JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as ExpectedJson;
}

/** The stories260K fixture and a scratch directory, for a describe block that needs both. */
export interface Stories260K {
  /** The scratch directory (made before the block's tests, removed after). */
  dir: () => string;
  bin: () => string;
  tok: () => string;
  /** tinystories-calib.txt's path. */
  calibFile: () => string;
  /** tinystories-dev.txt's text. */
  dev: () => string;
}

/**
 * Call inside a `describe`: skips the block with a message when the fixtures are absent, and makes
 * (and afterwards removes) a scratch directory named `lowbit-<prefix>-…`.
 */
export function useStories260K(prefix: string): Stories260K {
  const fx = fixturesDir();
  let dir = '';
  before(function () {
    if (!fx) {
      console.log(`      (skipped: ${NO_FIXTURES})`);
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `lowbit-${prefix}-`));
  });
  after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });
  const at = (...p: string[]) => path.join(fx ?? '', ...p);
  return {
    dir: () => dir, bin: () => at('stories260K', 'stories260K.bin'), tok: () => at('stories260K', 'tok512.bin'),
    calibFile: () => at('text', 'tinystories-calib.txt'), dev: () => fs.readFileSync(at('text', 'tinystories-dev.txt'), 'utf8'),
  };
}
