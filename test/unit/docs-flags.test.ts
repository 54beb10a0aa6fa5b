/**
 * The documentation names only flags that exist: every `lowbit <command> … --flag` written in
 * README.md or docs/*.md (in a code block, or in the code spans of a line) must be a flag of that
 * command, as the compiled CLI's own `--help` lists it. So a renamed or removed flag fails here,
 * naming the file, the line and the flag, instead of staying in the docs.
 *
 * What counts as a use:
 * - a code block line (with its `\` continuation lines) that runs `lowbit <command>` (also `npx lowbit`,
 *   `node bin/lowbit.js`): the `--flags` after the command, up to the next command (`&&`, `;`, ` | `);
 * - a prose line: its code spans, in order. A span that runs `lowbit <command>` opens that command,
 *   whose flags are those in the span and in the spans after it on the line, until a span that runs
 *   another program (`npm …`, `node …`) or another `lowbit` command;
 * - a table with a "CLI" or "CLI flag" column: the flags in that column belong to the command of the
 *   nearest code block above the table that runs `lowbit <command>`.
 * After `lowbit submit … --`, the words are a command line of the command named next (its flags are
 * checked against that command).
 * A word after `lowbit` that is not a command counts only when flags follow it (then it is an unknown
 * command). `--help` and `--version` are valid everywhere. A flag written with a variadic value
 * (`--include <pattern...>`) must be variadic in the CLI too.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../../lib/native';
import { lowbit } from '../helpers/cli';

/** One flag the docs attribute to a command. */
interface FlagUse {
  file: string;
  line: number;
  command: string;
  flag: string;
  /** The value placeholder written after the flag (`<pattern...>`), when there is one. */
  value: string | null;
}

/** A command's flags as its help lists them: flag → whether it takes several values. */
type CommandFlags = Map<string, { variadic: boolean }>;

const LOWBIT_CMD = /(?<![\w@/.-])(?:bin\/)?lowbit(?:\.js)?[ \t]+([a-z][a-z0-9-]*)/g;
const FLAG = /(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =](<[^>]*>))?/g;
const OTHER_PROGRAM = /^\s*(?:npm|npx(?!\s+lowbit)|node(?!\s+(?:\S*\/)?bin\/lowbit)|bash|sh|cmake|cmake-js|git|python3?|mocha|tsc|eslint|nvcc|apt-get|vllm|llama-\S+)\b/;
const ALWAYS = new Set(['--help', '--version']);

/** The flags in `text`, with their value placeholders. */
function flagsIn(text: string): { flag: string; value: string | null }[] {
  return [...text.matchAll(FLAG)].map((m) => ({ flag: m[1], value: m.at(2) ?? null }));
}

/**
 * The `lowbit` commands run in one piece of code (a code block's logical line, or a code span) and
 * the flags of each. `open`: the command the piece leaves open for the code spans after it (null
 * when it ends with another program); `lastCommand`: the last `lowbit` command in it.
 */
function scanCode(code: string): { uses: { command: string; flag: string; value: string | null }[]; open: string | null; lastCommand: string | null } {
  const uses: { command: string; flag: string; value: string | null }[] = [];
  let open: string | null = null, lastCommand: string | null = null;
  // each shell command of the line on its own
  for (const part of code.split(/&&|\|\||;| \| /)) {
    const matches = [...part.matchAll(LOWBIT_CMD)];
    for (let i = 0; i < matches.length; i++) {
      const m = matches[i];
      const to = i + 1 < matches.length ? matches[i + 1].index : part.length;
      const seg = part.slice(m.index + m[0].length, to);
      // `lowbit submit … -- <command> …`: what follows the bare `--` is a command line of that command
      const inner = m[1] === 'submit' ? /(?:^|\s)--\s+([a-z][a-z0-9-]*)/.exec(seg) : null;
      for (const f of flagsIn(inner ? seg.slice(0, inner.index) : seg)) uses.push({ command: m[1], ...f });
      if (inner) for (const f of flagsIn(seg.slice(inner.index + inner[0].length))) uses.push({ command: inner[1], ...f });
      open = lastCommand = inner ? inner[1] : m[1];
    }
    if (matches.length === 0 && OTHER_PROGRAM.test(part)) open = null;
  }
  return { uses, open, lastCommand };
}

/** The markdown cells of a table row (`| a | b |`), escaped pipes kept inside their cell. */
function cells(row: string): string[] {
  return row.trim().replace(/^\|/, '').replace(/\|$/, '').split(/(?<!\\)\|/).map((c) => c.trim());
}

/** Every flag `text` (one markdown file, named `file`) attributes to a `lowbit` command. */
function docFlagUses(text: string, file: string): FlagUse[] {
  const out: FlagUse[] = [];
  const lines = text.split('\n');
  let fence: string | null = null;
  /** The command of the latest code block line that ran one (the context of a table's CLI column). */
  let blockCommand: string | null = null;
  /** The CLI column of the table being read, or null. */
  let cliColumn: number | null = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fenceMark = /^\s*(`{3,}|~{3,})/.exec(line);
    if (fenceMark) {
      if (fence === null) fence = fenceMark[1];
      else if (fenceMark[1].startsWith(fence)) fence = null;
      cliColumn = null;
      continue;
    }
    if (fence !== null) {
      // a shell line continued with `\`: read it whole, reported at its first line
      let code = line;
      const at = i;
      while (code.endsWith('\\') && i + 1 < lines.length) code = code.slice(0, -1) + ' ' + lines[++i];
      const { uses, lastCommand } = scanCode(code);
      for (const u of uses) out.push({ file, line: at + 1, ...u });
      if (lastCommand !== null) blockCommand = lastCommand;
      continue;
    }
    if (/^\s*\|/.test(line)) {
      const row = cells(line);
      if (cliColumn === null && i + 1 < lines.length && /^\s*\|[\s|:-]+\|\s*$/.test(lines[i + 1])) {
        // a table header: does it have a CLI column?
        const c = row.findIndex((h) => /^CLI( flag)?$/i.test(h));
        cliColumn = c >= 0 ? c : -1;
        i++; // the separator row
        continue;
      }
      if (cliColumn !== null && cliColumn >= 0 && cliColumn < row.length) {
        const flags = flagsIn(row[cliColumn]);
        for (const f of flags) out.push({ file, line: i + 1, command: blockCommand ?? '(no lowbit command above this table)', ...f });
      }
    } else {
      cliColumn = null;
    }
    // prose (table rows included): the code spans of the line, in order
    let open: string | null = null;
    for (const span of line.matchAll(/`([^`]+)`/g)) {
      const code = span[1];
      const scanned = scanCode(code);
      if (scanned.lastCommand !== null) {
        for (const u of scanned.uses) out.push({ file, line: i + 1, ...u });
        open = scanned.open;
        continue;
      }
      if (OTHER_PROGRAM.test(code)) {
        open = null;
        continue;
      }
      if (open !== null) for (const f of flagsIn(code)) out.push({ file, line: i + 1, command: open, ...f });
    }
  }
  return out;
}

/** What is wrong with each use, given the commands' flags (empty when nothing is). */
function flagProblems(uses: FlagUse[], commands: ReadonlyMap<string, CommandFlags>): string[] {
  const problems: string[] = [];
  for (const u of uses) {
    const where = `${u.file}:${u.line}`;
    const flags = commands.get(u.command);
    if (!flags) {
      problems.push(`${where}: "lowbit ${u.command}" is not a lowbit command (flag ${u.flag}; commands: ${[...commands.keys()].join(', ')})`);
      continue;
    }
    if (ALWAYS.has(u.flag)) continue;
    const f = flags.get(u.flag);
    if (!f) {
      problems.push(`${where}: lowbit ${u.command} has no flag ${u.flag} (its flags: ${[...flags.keys()].join(' ')})`);
      continue;
    }
    if (u.value?.includes('...') && !f.variadic) problems.push(`${where}: lowbit ${u.command} ${u.flag} takes one value, the docs write ${u.flag} ${u.value}`);
  }
  return problems;
}

/** The sections of a commander help text: heading ("Options", "Commands") → its entry lines. */
function helpSection(help: string, heading: string): string[] {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => l.trim() === `${heading}:`);
  if (start < 0) return [];
  const out: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (l.trim() === '') break;
    out.push(l);
  }
  return out;
}

/** Run `lowbit …args --help` and return its text. */
function help(...args: string[]): string {
  const r = lowbit(...args, '--help');
  assert.equal(r.code, 0, `lowbit ${[...args, '--help'].join(' ')} exited with ${String(r.code)}: ${r.stderr}`);
  return r.stdout;
}

/** Every command of the CLI and its flags, from `lowbit --help` and `lowbit <command> --help`. */
function cliFlags(): Map<string, CommandFlags> {
  const commands = new Map<string, CommandFlags>();
  // entry lines start with two spaces; the wrapped lines of a description are indented further
  const names = helpSection(help(), 'Commands').map((l) => /^ {2}([a-z][a-z0-9-]*)\b/.exec(l)?.[1]).filter((n): n is string => n !== undefined && n !== 'help');
  for (const name of names) {
    const flags: CommandFlags = new Map();
    for (const l of helpSection(help(name), 'Options')) {
      const m = /^ {2}(?:-[A-Za-z], )?(--[a-z][a-z0-9-]*)((?: ?[<[][^>\]]*[>\]])*)/.exec(l);
      if (m) flags.set(m[1], { variadic: m[2].includes('...') });
    }
    commands.set(name, flags);
  }
  return commands;
}

describe('docs: every lowbit flag they name exists', function () {
  const root = packageRoot();
  const files = ['README.md', ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
  let commands: Map<string, CommandFlags>;

  before(function () {
    commands = cliFlags();
  });

  it('reads the command list and each command\'s flags from the CLI\'s help', function () {
    for (const c of ['quantize', 'generate', 'eval', 'inspect', 'doctor', 'demo', 'bench']) assert.ok(commands.has(c), `lowbit --help lists ${c}`);
    const q = commands.get('quantize');
    assert.ok(q, 'lowbit quantize --help');
    for (const f of ['--calib', '--allow-requantize', '--threads', '--out']) assert.ok(q.has(f), `quantize --help lists ${f}`);
    assert.equal(q.get('--include')?.variadic, true);
    assert.equal(q.get('--tokenizer')?.variadic, false);
    assert.ok(commands.get('generate')?.has('--no-packed'), 'generate --help lists --no-packed');
  });

  it('finds flags in code blocks, continuation lines, code spans and CLI columns, and names what is wrong', function () {
    const md = [
      'Run `lowbit generate m --steps 8` or `lowbit generate` with `--max-tokens 4`, not `npm run bench -- --quick`.',
      '```sh',
      'lowbit frobnicate --fast',
      'npx lowbit doctor --json   # doctor',
      'node bin/lowbit.js eval m --text t --tokenizer <file...>',
      'lowbit quantize m --method gptq \\',
      '  --calib c.txt --bogus-flag --out q && node x.js --ignored',
      '```',
      '| API | CLI flag |',
      '|---|---|',
      '| `bits` | `--bits <n>` |',
      '| `nope` | `--not-a-quantize-flag` |',
      'The `lowbit: <CODE>` prefix and `lowbit native addon missing` name no command.',
    ].join('\n');
    const uses = docFlagUses(md, 'x.md');
    assert.deepEqual(uses.map((u) => `${u.line} ${u.command} ${u.flag}`), [
      '1 generate --steps', '1 generate --max-tokens',
      '3 frobnicate --fast', '4 doctor --json', '5 eval --text', '5 eval --tokenizer',
      '6 quantize --method', '6 quantize --calib', '6 quantize --bogus-flag', '6 quantize --out',
      '11 quantize --bits', '12 quantize --not-a-quantize-flag',
    ]);
    const problems = flagProblems(uses, commands);
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.match(problems[0], /^x\.md:3: "lowbit frobnicate" is not a lowbit command/);
    assert.match(problems[1], /^x\.md:5: lowbit eval --tokenizer takes one value, the docs write --tokenizer <file\.\.\.>/);
    assert.match(problems[2], /^x\.md:6: lowbit quantize has no flag --bogus-flag/);
    assert.match(problems[3], /^x\.md:12: lowbit quantize has no flag --not-a-quantize-flag/);
  });

  it('README.md and docs/*.md name only flags their command has', function () {
    const uses = files.flatMap((f) => docFlagUses(fs.readFileSync(path.join(root, f), 'utf8'), f));
    // the scanner must see the docs' commands (a broken scanner would pass with nothing to check)
    assert.ok(uses.length > 50, `only ${uses.length} flag uses found in ${files.join(', ')}`);
    for (const c of ['quantize', 'generate', 'eval', 'bench']) assert.ok(uses.some((u) => u.command === c), `no use of lowbit ${c} found`);
    const problems = flagProblems(uses, commands);
    assert.deepEqual(problems, [], `${problems.length} flag(s) in the docs that the CLI does not have:\n${problems.join('\n')}`);
  });
});
