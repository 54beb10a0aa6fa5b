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
