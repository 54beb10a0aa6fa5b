#!/usr/bin/env node
'use strict';
// Thin launcher: the CLI lives in dist/lib/cli (compiled from lib/cli/*.ts).
require('../dist/lib/cli/main.js').main(process.argv).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`lowbit: internal error: ${err && err.stack || err}\n`); process.exitCode = 70; });
