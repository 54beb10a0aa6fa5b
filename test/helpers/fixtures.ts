/** Locates ../shared/fixtures (or LOWBIT_FIXTURES); tests skip with a message when absent. */
import * as fs from 'node:fs';
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
