#!/usr/bin/env node
// npm's install step for lowbit. A prebuilt addon that matches this platform (prebuilds/<platform>-<arch>/,
// shipped in the package; found the way lib/native.ts loads it, with node-gyp-build) needs no compiler:
// nothing is built. Otherwise the addon is built from source with node-gyp, and this says so first.
'use strict';
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
let found = null;
try {
  found = require('node-gyp-build').path(root);
} catch {
  found = null; // no local build and no matching prebuild
}
if (found && process.env.LOWBIT_BUILD_FROM_SOURCE !== '1') {
  const kind = found.includes(`${path.sep}prebuilds${path.sep}`) ? 'prebuilt' : 'already built';
  console.log(`lowbit: native addon ${path.relative(root, found)} (${kind}); nothing to compile`);
  process.exit(0);
}
console.log(`lowbit: ${found ? 'LOWBIT_BUILD_FROM_SOURCE=1' : `no prebuilt addon for ${process.platform}-${process.arch}`}: ` +
  'building from source with node-gyp (needs Python 3, make and a C++17 compiler; see docs/TROUBLESHOOTING.md)');
// npm puts its bundled node-gyp on PATH for install scripts
const r = spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit', shell: true });
process.exit(r.status ?? 1);
