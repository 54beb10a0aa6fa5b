#!/usr/bin/env bash
# npm run test:peer — install node-llama-cpp (not a dependency of lowbit: its optional CUDA/Vulkan
# binaries would weigh on every install) into node_modules without saving it, then run the peer test:
# GGUF files lowbit writes, loaded by node-llama-cpp, give the same greedy text and perplexity.
set -euo pipefail
cd "$(dirname "$0")/.."
npm install --no-save --ignore-scripts --omit=optional node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1
npm run build:ts
npx mocha --no-config --timeout 600000 dist/test/e2e/llamacpp-peer.test.js
