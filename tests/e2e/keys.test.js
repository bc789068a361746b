// keys.test.js: several api_keys per provider, rotated; a key answered 401/403
// or 429 is benched for a cool-down (honouring retry-after) and the request
// moves on to the next key at once (issue 3 item 5, issue 4; SPEC §2
// providers[].api_keys / key_cooldown_ms; docs/resilience.md "Keys").
//
// sluice-mock judges keys itself (--key-status KEY=STATUS[:RETRY_AFTER_S],
// docs/mock.md "Keys") and records every request with its headers, so each
// caller's response can be matched (by x-request-id, which sluice forwards)
// with the upstream attempts it cost and the key each one used. One worker:
// keys rotate and are benched per worker. No timing assertions: waits are
// bounded, and the one bound involving time is a lower bound on the
// cool-down, which a slow machine can only make easier to meet.
import assert from 'node:assert/strict';
import test, { before } from 'node:test';
import { performance } from 'node:perf_hooks';
import { httpRequest, startMock, startSluice, waitFor } from './lib/harness.js';

const T = { timeout: 60_000 };
const LONG = 600000; // key_cooldown_ms: a benched key stays out for the whole file
const RETRY_AFTER_S = 2;

const RULES = {
  'sk-rotate-bad': 401,
  'sk-limited-busy': `429:${RETRY_AFTER_S}`,
  'sk-allbad-a': 401,
  'sk-allbad-b': 403,
  'sk-anth-bad': 401,
  'sk-gem-bad': 403,
};

let mock;
let gw;

function provider(name, type, base, keys) {
  const k = keys.map((x) => `"${x}"`).join(', ');
  return `  - { name: ${name}, type: ${type}, base_url: "${base}", api_keys: [${k}], key_cooldown_ms: ${LONG} }\n`;
}

function config({ port, adminPort }) {
  const v1 = `${mock.url}/v1`;
  return `
server:
  listen: ["127.0.0.1:${port}"]
  admin_listen: "127.0.0.1:${adminPort}"
  workers: 1
providers:
${provider('rotate', 'openai-compatible', v1, ['sk-rotate-bad', 'sk-rotate-good'])}\
${provider('limited', 'openai-compatible', v1, ['sk-limited-busy', 'sk-limited-good'])}\
${provider('allbad', 'openai-compatible', v1, ['sk-allbad-a', 'sk-allbad-b'])}\
${provider('anth', 'anthropic', v1, ['sk-anth-bad', 'sk-anth-good'])}\
${provider('gem', 'gemini', `${mock.url}/v1beta`, ['sk-gem-bad', 'sk-gem-good'])}\
models:
  - { name: rotate, targets: [ { provider: rotate, model: up-rotate } ] }
  - { name: limited, targets: [ { provider: limited, model: up-limited } ] }
  - { name: allbad, targets: [ { provider: allbad, model: up-allbad } ] }
  - { name: anth, targets: [ { provider: anth, model: up-anth } ] }
  - { name: gem, targets: [ { provider: gem, model: up-gem } ] }
`;
}

before(async () => {
  const args = ['--tokens', '4'];
  for (const [k, v] of Object.entries(RULES)) args.push('--key-status', `${k}=${v}`);
  mock = await startMock({ args });
  gw = await startSluice({ config });
});

let seq = 0;
async function chat(model, { stream = false } = {}) {
  const id = `keys-${process.pid}-${++seq}`;
  const r = await httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id },
    body: { model, stream, messages: [{ role: 'user', content: 'hi' }] },
  });
  return { ...r, id };
}

/** The API key an upstream request carried, however its protocol sends it. */
function keyOf(rec) {
  const h = rec.headers;
  if (h.authorization) return h.authorization.replace(/^Bearer\s+/i, '');
  if (h['x-api-key']) return h['x-api-key'];
  if (h['x-goog-api-key']) return h['x-goog-api-key'];
  return new URLSearchParams(rec.query).get('key');
}

/** Upstream attempts per caller request id: { id: [key, key, ...] } in arrival order. */
async function attemptsById() {
  const out = {};
  for (const rec of await mock.requests()) {
    const id = rec.headers['x-request-id'];
    if (id) (out[id] ??= []).push(keyOf(rec));
  }
  return out;
}

/**
 * Every response succeeded, its x-sluice-attempts is the number of upstream
 * requests it cost, and it cost 2 exactly when its first key was `bad`
 * (answered, benched, then the other key). Returns how often `bad` was used.
 */
function checkRotation(responses, byId, bad, good) {
  let badUses = 0;
  for (const r of responses) {
    assert.equal(r.status, 200, r.text);
    const keys = byId[r.id] ?? [];
    assert.equal(Number(r.headers.get('x-sluice-attempts')), keys.length, `${r.id}: attempts vs upstream requests`);
    if (keys.includes(bad)) {
      badUses++;
      assert.deepEqual(keys, [bad, good], `${r.id}: the benched key, then at once the next one`);
    } else {
      assert.deepEqual(keys, [good], `${r.id}: one attempt with the good key`);
    }
  }
  return badUses;
}

async function metrics() {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}
const healthy = (m, provider, k) => m.get(`sluice_upstream_healthy{provider="${provider}",key_index="${k}"}`);

test('the mock answers a judged key with an error in the endpoint protocol', T, async () => {
  const post = (path, headers, body) => httpRequest(`${mock.url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body,
  });
  const msgs = [{ role: 'user', content: 'hi' }];
  const o = await post('/v1/chat/completions', { authorization: 'Bearer sk-rotate-bad' }, { model: 'm', messages: msgs });
  assert.equal(o.status, 401);
  assert.equal(o.json.error.type, 'authentication_error');
  assert.equal(o.json.error.code, 'invalid_api_key');
  const a = await post('/v1/messages', { 'x-api-key': 'sk-limited-busy', 'anthropic-version': '2023-06-01' },
    { model: 'm', max_tokens: 8, messages: msgs });
  assert.equal(a.status, 429);
  assert.equal(a.headers.get('retry-after'), String(RETRY_AFTER_S));
  assert.deepEqual([a.json.type, a.json.error.type], ['error', 'rate_limit_error']);
  const g = await post('/v1beta/models/x:generateContent', { 'x-goog-api-key': 'sk-gem-bad' },
    { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] });
  assert.equal(g.status, 403);
  assert.equal(g.json.error.status, 'PERMISSION_DENIED');
  const q = await post('/v1beta/models/x:generateContent?key=sk-anth-bad', {}, { contents: [{ parts: [{ text: 'hi' }] }] });
  assert.equal(q.json.error.status, 'UNAUTHENTICATED');
  const ok = await post('/v1/chat/completions', { authorization: 'Bearer sk-anything-else' }, { model: 'm', messages: msgs });
  assert.equal(ok.status, 200, ok.text);
});

test('a key answered 401 is benched: every request succeeds and it is tried once', T, async () => {
  await mock.clearRequests();
  const rs = [await chat('rotate', { stream: true })];
  for (let i = 0; i < 19; i++) rs.push(await chat('rotate'));
  assert.match(rs[0].text, /lorem/, 'the stream that started on the bad key still answers');
  assert.ok(!rs[0].text.includes('invalid API key'));
  const badUses = checkRotation(rs, await attemptsById(), 'sk-rotate-bad', 'sk-rotate-good');
  assert.equal(badUses, 1, 'benched for key_cooldown_ms after its one 401');
  // ... and concurrently: still never the benched key
  await mock.clearRequests();
  const more = await Promise.all(Array.from({ length: 8 }, () => chat('rotate')));
  assert.equal(checkRotation(more, await attemptsById(), 'sk-rotate-bad', 'sk-rotate-good'), 0);
});

test('anthropic and gemini keys (x-api-key, x-goog-api-key) are benched the same way', T, async () => {
  await mock.clearRequests();
  for (const [model, bad, good] of [['anth', 'sk-anth-bad', 'sk-anth-good'], ['gem', 'sk-gem-bad', 'sk-gem-good']]) {
    const rs = [];
    for (let i = 0; i < 6; i++) rs.push(await chat(model));
    assert.equal(checkRotation(rs, await attemptsById(), bad, good), 1, model);
    assert.equal(rs[0].json?.choices?.[0]?.message?.content ?? '', 'lorem ipsum dolor sit', model);
  }
});

test('a key answered 429 is benched for its retry-after, then used again', T, async () => {
  await mock.clearRequests();
  const bad = 'sk-limited-busy';
  const rs = [];
  const t0 = performance.now();
  // Requests one after the other until the limited key has been tried again
  // after its cool-down (bounded: the cool-down is 2 s).
  await waitFor(async () => {
    rs.push(await chat('limited'));
    const byId = await attemptsById();
    return Object.values(byId).filter((keys) => keys.includes(bad)).length >= 2;
  }, { timeoutMs: 20_000, intervalMs: 100, what: 'the 429 key to be tried again after its retry-after' });
  const elapsed = performance.now() - t0;
  const badUses = checkRotation(rs, await attemptsById(), bad, 'sk-limited-good');
  assert.equal(badUses, 2);
  assert.ok(rs.length > 2, 'requests in between used only the other key');
  // Not a speed check: each use benches the key for at least retry-after
  // (less a few ms of the gateway's cached loop clock), so two uses cannot be
  // closer than that. A slow run only spreads them further apart.
  assert.ok(elapsed >= RETRY_AFTER_S * 1000 - 100, `two uses of a benched key within ${elapsed.toFixed(0)} ms`);
  const ids = rs.filter((r) => r.headers.get('x-sluice-attempts') === '2').map((r) => r.id);
  assert.equal(ids.length, 2);
});

test('every key bad: a clear error, then 503 while they are benched; the gauge shows them down', T, async () => {
  await mock.clearRequests();
  const r1 = await chat('allbad');
  assert.equal(r1.status, 502, r1.text);
  assert.equal(r1.json.error.type, 'upstream_error');
  assert.match(r1.json.error.message, /upstream allbad returned 403/);
  assert.equal(r1.headers.get('x-sluice-attempts'), '2');
  assert.deepEqual((await attemptsById())[r1.id], ['sk-allbad-a', 'sk-allbad-b'], 'each key once');
  const r2 = await chat('allbad', { stream: true });
  assert.equal(r2.status, 503, r2.text);
  assert.equal(r2.json.error.type, 'service_unavailable');
  assert.match(r2.json.error.message, /no healthy target for model 'allbad'/);
  assert.ok(Number(r2.headers.get('retry-after')) >= 1);
  assert.equal((await attemptsById())[r2.id], undefined, 'no upstream attempt while every key is benched');
  const m = await metrics();
  assert.equal(healthy(m, 'allbad', 0), 0);
  assert.equal(healthy(m, 'allbad', 1), 0);
  assert.equal(healthy(m, 'rotate', 0), 0, 'the 401 key is still benched (long cool-down)');
  assert.equal(healthy(m, 'rotate', 1), 1);
  assert.equal(healthy(m, 'anth', 1), 1);
});

test('the gateway stops cleanly', T, async () => {
  assert.equal(await gw.stop(), 0);
});
