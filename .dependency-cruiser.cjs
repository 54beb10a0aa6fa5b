/**
 * lowbit's dependency rules: the executable half of docs/ARCHITECTURE.md.
 *
 * lib/ is layered; a room may import only rooms below it (and itself):
 *
 *   cli        parsing, printing, exit codes
 *   queue      the job queue on BullMQ + Redis: job data, enqueue/cancel, the worker and its sandboxed processor
 *   pipeline   plan → calibrate → quantize → write → evaluate; drives methods
 *   methods    one file per quantization method behind one interface
 *   train      the training engine's loop: parameters, AdamW, schedules, checkpoints (QAT builds on it)
 *   runtime    the model, tokenizers, sampler, evaluation, calibration hooks
 *   ops        the typed face of each native op family
 *   formats    file readers and writers (byte-exact)
 *   config     every user option normalized and validated, the one error builder
 *   (root)     errors.ts, version.ts, native.ts — the package's floor; index.ts is the public entry
 *
 * Only lib/ops/ and lib/formats/ (the codecs' native helpers) load lib/native.ts; lib/index.ts
 * re-exports a few of its switches (setKernelMode, hasAddon, loadAttempts).
 */
const ROOMS = ['config', 'formats', 'ops', 'runtime', 'train', 'methods', 'pipeline', 'queue', 'cli'];

const upward = ROOMS.map((room, i) => {
  const above = ROOMS.slice(i + 1);
  return {
    name: `no-upward-from-${room}`,
    comment: `lib/${room}/ may import only rooms below it (${ROOMS.slice(0, i).join(', ') || 'the root files'}), never ${above.join(', ')}`,
    severity: 'error',
    from: { path: `^lib/${room}/` },
    to: { path: `^lib/(${above.join('|')})/` },
  };
}).filter((r) => r.to.path !== '^lib/()/');

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import cycles anywhere (a type-only cycle counts too: it is a layering error)',
      severity: 'error',
      from: { path: '^(lib|scripts|test)/' },
      to: { circular: true },
    },
    ...upward,
    {
      name: 'root-files-are-the-floor',
      comment: 'errors.ts, version.ts and native.ts import nothing of lib/ but each other',
      severity: 'error',
      from: { path: '^lib/(errors|version|native)\\.ts$' },
      to: { path: '^lib/(config|formats|ops|runtime|train|methods|pipeline|queue|cli)/|^lib/index\\.ts$' },
    },
    {
      name: 'native-only-through-ops-and-formats',
      comment: 'the addon is reached through lib/ops/ (and the format codecs\' native helpers), nowhere else',
      severity: 'error',
      from: { path: '^lib/', pathNot: '^lib/(ops/|formats/|native\\.ts$|index\\.ts$)' },
      to: { path: '^lib/native\\.ts$' },
    },
    {
      name: 'lib-root-holds-entry-points-only',
      comment: 'lib/ root holds only index.ts, native.ts, errors.ts and version.ts; everything else lives in a room',
      severity: 'error',
      from: { path: '^lib/[^/]+\\.ts$', pathNot: '^lib/(index|native|errors|version)\\.ts$' },
      to: {},
    },
    {
      name: 'nothing-imports-the-entry-point',
      comment: 'lib/index.ts is the public surface; library code imports the room that owns a symbol',
      severity: 'error',
      from: { path: '^lib/', pathNot: '^lib/index\\.ts$' },
      to: { path: '^lib/index\\.ts$' },
    },
    {
      name: 'lib-does-not-import-tests-or-scripts',
      comment: 'the library never reaches into scripts/ or test/ (the bench runs as a child process)',
      severity: 'error',
      from: { path: '^lib/' },
      to: { path: '^(scripts|test)/' },
    },
    {
      name: 'examples-use-the-package',
      comment: 'examples/ import only the published package (\'lowbit\') and node: modules, as a user copying them would',
      severity: 'error',
      from: { path: '^examples/' },
      to: { path: '^(lib|scripts|test)/', pathNot: '^lib/index\\.ts$' },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules|build)' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
