// onapi_models.test.js: model mapping and provider keys (SPEC §2): the first
// models[] entry in file order that matches wins, globs with * and ?, a
// target without `model` passes the requested name through, the caller sees
// the public name in `model` of every protocol's answer; several api_keys of a
// provider are rotated request by request, whatever the provider's protocol.
import assert from 'node:assert/strict';
import test, { before, beforeEach } from 'node:test';
import { PROVIDER_KEY, assertAlive, gatewayConfig, httpRequest, startMock, startSluice } from './lib/harness.js';
import { CALLERS, PROTOS, TOKENS, clientsFor, newId, providerBase, run } from './lib/onapi.js';

const T = { timeout: 30_000 };
const KEYS = ['sk-rot-a', 'sk-rot-b', 'sk-rot-c'];
const TYPE = { openai: 'openai', anthropic: 'anthropic', gemini: 'gemini' };
let mock, gw, clients;

before(async () => {
  mock = await startMock({ args: ['--tokens', String(TOKENS)] });
  const providers = PROTOS.flatMap((p) => [
    `- name: ${p}
  type: ${TYPE[p]}
  base_url: ${providerBase(mock, p)}
  api_keys: ["${PROVIDER_KEY}"]`,
    `- name: ${p}-rot
  type: ${TYPE[p]}
  base_url: ${providerBase(mock, p)}
  api_keys: [${KEYS.map((k) => `"${k}"`).join(', ')}]`,
  ]).join('\n');
  // Order matters: "glob-special" comes after "glob-*" and is never reached;
  // "exact-one" comes before "exact-*" and wins for its own name.
  const models = `
- name: exact-one
  targets: [ { provider: openai, model: up-exact-one } ]
- name: "exact-*"
  targets: [ { provider: anthropic, model: up-exact-glob } ]
- name: "glob-*"
  targets: [ { provider: gemini, model: up-glob } ]
- name: glob-special
  targets: [ { provider: openai, model: never-used } ]
- name: "q?-model"
  targets: [ { provider: anthropic, model: up-q } ]
- name: "pass-openai-*"
  targets: [ { provider: openai } ]
- name: "pass-anthropic-*"
  targets: [ { provider: anthropic } ]
- name: "pass-gemini-*"
  targets: [ { provider: gemini } ]
${PROTOS.map((p) => `- name: rot-${p}\n  targets: [ { provider: ${p}-rot, model: up-rot-${p} } ]`).join('\n')}`;
  gw = await startSluice({
    // One worker: key rotation is per worker, so consecutive requests see consecutive keys.
    config: (p) => gatewayConfig({ ...p, mockPort: mock.port, workers: 1, extraProviders: providers, extraModels: models }),
  });
  clients = clientsFor(gw);
});
beforeEach(() => assertAlive(gw, mock));

async function upstreamWith(marker) {
  const found = (await mock.requests()).filter((r) => (r.body ?? '').includes(marker));
  assert.equal(found.length, 1, `expected one upstream request containing ${marker}, got ${found.length}`);
  return found[0];
}

/** The model name the upstream was asked for: in the body (OpenAI, Anthropic) or the path (Gemini). */
function upstreamModel(up) {
  const m = /^\/v1beta\/models\/([^:]+):/.exec(up.path);
  return m ? decodeURIComponent(m[1]) : JSON.parse(up.body).model;
}

const MAPPING = [
  { model: 'exact-one', provider: 'openai', upstream: 'up-exact-one', why: 'an exact name before a glob that also matches' },
  { model: 'exact-two', provider: 'anthropic', upstream: 'up-exact-glob', why: 'the glob after it' },
  { model: 'glob-special', provider: 'gemini', upstream: 'up-glob', why: 'first match in file order: the earlier glob' },
  { model: 'glob-', provider: 'gemini', upstream: 'up-glob', why: '* matches the empty string' },
  { model: 'q1-model', provider: 'anthropic', upstream: 'up-q', why: '? matches one character' },
  { model: 'pass-openai-x.1', provider: 'openai', upstream: 'pass-openai-x.1', why: 'pass-through name' },
  { model: 'pass-anthropic-claude', provider: 'anthropic', upstream: 'pass-anthropic-claude', why: 'pass-through name' },
  { model: 'pass-gemini-flash', provider: 'gemini', upstream: 'pass-gemini-flash', why: 'pass-through name in the URL' },
];

for (const caller of CALLERS) {
  test(`${caller} caller: model mapping (first match, globs, pass-through) and the public name back`, T, async () => {
    for (const m of MAPPING) {
      const marker = newId(`map-${caller}`);
      const res = await run(clients, caller, m.model, { id: marker, prompt: marker });
      assert.equal(res.model, m.model, `${m.model}: the caller sees the public name`);
      const up = await upstreamWith(marker);
      assert.equal(upstreamModel(up), m.upstream, `${m.model} (${m.why}): upstream model`);
      const line = gw.stdoutLines.find((l) => l.request_id === marker);
      assert.equal(line?.provider, m.provider, `${m.model} (${m.why}): provider`);
      assert.equal(line.model, m.model);
      assert.equal(line.upstream_model, m.upstream);
    }
  });
}

test('models with no match: 404 model_not_found in the caller\'s protocol', T, async () => {
  await assert.rejects(run(clients, 'openai', 'q12-model', { id: newId('nf') }), (e) => e.status === 404 && e.code === 'model_not_found');
  await assert.rejects(run(clients, 'anthropic', 'nothing-here', { id: newId('nf') }), (e) => e.status === 404 && e.error?.error?.type === 'not_found_error');
  const r = await httpRequest(`${gw.url}/v1beta/models/nothing-here:generateContent`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] },
  });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.status, 'NOT_FOUND');
});

test('x-sluice-provider and x-sluice-model name the target that answered', T, async () => {
  const r = await httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: { model: 'glob-abc', messages: [{ role: 'user', content: 'hi' }] },
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-sluice-provider'), 'gemini');
  assert.equal(r.headers.get('x-sluice-model'), 'up-glob');
  assert.equal(r.json.model, 'glob-abc');
});

// ---- keys ----

const KEY_HEADER = { openai: 'authorization', anthropic: 'x-api-key', gemini: 'x-goog-api-key' };

for (const target of PROTOS) {
  test(`several api_keys of a ${target} provider are rotated`, T, async () => {
    const used = [];
    for (let i = 0; i < 2 * KEYS.length; i++) {
      const marker = newId(`rot-${target}`);
      await run(clients, CALLERS[i % CALLERS.length], `rot-${target}`, { id: marker, prompt: marker, stream: i % 2 === 1 });
      const v = (await upstreamWith(marker)).headers[KEY_HEADER[target]];
      used.push(target === 'openai' ? v.replace(/^Bearer /, '') : v);
    }
    for (let i = 1; i < used.length; i++) assert.notEqual(used[i], used[i - 1], `consecutive requests used different keys: ${used}`);
    assert.deepEqual([...new Set(used)].sort(), KEYS, `every key used: ${used}`);
    // A fixed cycle: request i and i + 3 used the same key.
    for (let i = 0; i < KEYS.length; i++) assert.equal(used[i], used[i + KEYS.length]);
  });
}

test('the gateway stops cleanly', T, async () => {
  assert.equal(await gw.stop(), 0);
});
