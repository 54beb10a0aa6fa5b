/**
 * Downloading from the Hub is not testable here (no test may reach it): what is checked is which
 * files are fetched, and that an unreachable hub (a closed port on the loopback) is a typed
 * LOWBIT_IO error naming the model, with nothing written into the cache.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { downloadModel, wantedRepoFile } from '../../lib/pipeline/download';
import { rejectsCode } from '../helpers/errors';

describe('Hub download (offline checks)', function () {
  it('fetches the safetensors model, its config and tokenizer files, nothing else', function () {
    for (const f of ['config.json', 'model.safetensors', 'model-00001-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer.model',
      'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) assert.ok(wantedRepoFile(f), f);
    for (const f of ['pytorch_model.bin', 'README.md', 'onnx/model.onnx', 'original/consolidated.00.pth', 'subdir/model.safetensors', '.gitattributes']) assert.ok(!wantedRepoFile(f), f);
  });

  it('an unreachable hub is LOWBIT_IO naming the model; a bad id is LOWBIT_INVALID_OPTION; the cache stays empty', async function () {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-dl-'));
    try {
      await rejectsCode(downloadModel('org/model', { hubUrl: 'http://127.0.0.1:9', cacheDir }), 'LOWBIT_IO', 'org/model: cannot list the repository on the Hub');
      await rejectsCode(downloadModel('not an id', { cacheDir }), 'LOWBIT_INVALID_OPTION', 'model: expected a Hugging Face id');
      assert.deepEqual(fs.readdirSync(cacheDir), []);
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});
