/**
 * Hugging Face ids resolved from a fake cache laid out as huggingface_hub lays it out (refs/<branch>
 * → commit, snapshots/<commit>/): HF_HUB_CACHE before HF_HOME/hub before ~/.cache, branches, tags
 * and commit hashes, and the error that lists every place looked at. Nothing here downloads.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hfCacheDirs, looksLikeRepoId, resolveRepoId } from '../../lib/formats/hf-cache';
import { throwsCode } from '../helpers/errors';

function fakeRepo(cache: string, id: string, refs: Record<string, string>, commits: string[]): void {
  const repo = path.join(cache, `models--${id.replace('/', '--')}`);
  for (const [ref, commit] of Object.entries(refs)) {
    fs.mkdirSync(path.dirname(path.join(repo, 'refs', ref)), { recursive: true });
    fs.writeFileSync(path.join(repo, 'refs', ref), `${commit}\n`);
  }
  for (const c of commits) {
    fs.mkdirSync(path.join(repo, 'snapshots', c), { recursive: true });
    fs.writeFileSync(path.join(repo, 'snapshots', c, 'config.json'), '{}');
  }
}

describe('Hugging Face ids from the local cache', function () {
  let root: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-hfcache-'));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('looksLikeRepoId: org/name[@rev] that is not a local path', function () {
    assert.ok(looksLikeRepoId('TinyLlama/TinyLlama-1.1B-Chat-v1.0'));
    assert.ok(looksLikeRepoId('meta-llama/Llama-2-7b-hf@main'));
    assert.ok(!looksLikeRepoId('./models/x'));
    assert.ok(!looksLikeRepoId('model.gguf'));
    assert.ok(!looksLikeRepoId('a/b/c'));
  });

  it('cache order: HF_HUB_CACHE, then HF_HOME/hub, then ~/.cache/huggingface/hub', function () {
    const dirs = hfCacheDirs({ HF_HUB_CACHE: '/a', HF_HOME: '/b' });
    assert.deepEqual(dirs.map((d) => d.dir), ['/a', path.join('/b', 'hub'), path.join(os.homedir(), '.cache', 'huggingface', 'hub')]);
    assert.equal(hfCacheDirs({}).length, 1);
  });

  it('branches, tags and commit hashes resolve to their snapshot; the first cache that has the model wins', function () {
    const hub = path.join(root, 'hub'), home = path.join(root, 'home');
    fakeRepo(hub, 'org/model', { main: 'c0ffee01', 'tags/v1': 'beef0002' }, ['c0ffee01', 'beef0002']);
    fakeRepo(path.join(home, 'hub'), 'org/other', { main: 'aaaa0003' }, ['aaaa0003']);
    const env = { HF_HUB_CACHE: hub, HF_HOME: home };
    assert.equal(resolveRepoId('org/model', env), path.join(hub, 'models--org--model', 'snapshots', 'c0ffee01'));
    assert.equal(resolveRepoId('org/model@main', env), path.join(hub, 'models--org--model', 'snapshots', 'c0ffee01'));
    assert.equal(resolveRepoId('org/model@tags/v1', env), path.join(hub, 'models--org--model', 'snapshots', 'beef0002'));
    assert.equal(resolveRepoId('org/model@beef0002', env), path.join(hub, 'models--org--model', 'snapshots', 'beef0002'));
    assert.equal(resolveRepoId('org/other', env), path.join(home, 'hub', 'models--org--other', 'snapshots', 'aaaa0003'));
  });

  it('not cached: LOWBIT_NOT_FOUND listing every cache and what was missing; bad ids are LOWBIT_INVALID_OPTION', function () {
    const hub = path.join(root, 'hub2');
    fakeRepo(hub, 'org/model', { main: 'dead0004' }, []); // a ref whose snapshot is gone
    throwsCode(() => resolveRepoId('org/model', { HF_HUB_CACHE: hub }), 'LOWBIT_NOT_FOUND',
      'not in the local Hugging Face cache', `HF_HUB_CACHE (${hub}): models--org--model has no snapshot for "main" (refs/main → dead0004)`, 'fetch it with --download');
    throwsCode(() => resolveRepoId('nobody/nothing', { HF_HUB_CACHE: hub, HF_HOME: path.join(root, 'h') }), 'LOWBIT_NOT_FOUND',
      `HF_HUB_CACHE (${hub}): no models--nobody--nothing`, `HF_HOME/hub (${path.join(root, 'h', 'hub')}): no models--nobody--nothing`, '~/.cache/huggingface/hub');
    throwsCode(() => resolveRepoId('not an id'), 'LOWBIT_INVALID_OPTION', 'model: expected a path or a Hugging Face id');
  });
});
