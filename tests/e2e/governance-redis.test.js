// governance-redis.test.js: limits and budgets with state.backend: redis,
// two gateway instances sharing one real redis-server: one limit holds across
// both; a budget runs out; Redis stopped mid-test follows on_error (allow on
// one instance, deny on the other), is logged and counted, and both recover
// when it is back.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { gatewayConfig, startMock, startSluice, waitFor } from './lib/harness.js';
import {
  MOCK_OUTPUT_TOKENS,
  budgetRunsOut,
  chat,
  chatBody,
  governanceYaml,
  metricValue,
  startRedis,
  tokensPerMinuteBurst,
  usage,
} from './governance-scenarios.js';

let mock;
let redis;
let gwA;
let gwB;

const PRICING = '  mock-upstream-chat: { input: 2.0, output: 10.0 }';
const CONSUMERS = [
  { name: 'burst', key: 'sk-burst', limits: { tokens_per_minute: 2500 } },
  { name: 'spender', key: 'sk-spend', limits: { budget_usd_per_day: 0.01 } },
  { name: 'counter', key: 'sk-count', limits: { requests_per_minute: 4 } },
  { name: 'probe', key: 'sk-probe', limits: { requests_per_minute: 100000 } },
];

// One request on a new connection (so the kernel may hand it to any worker): true when the limit was
// checked (x-ratelimit headers are only sent when the state backend answered).
function checkedOnNewConnection(url) {
  return new Promise((resolve) => {
    const body = chatBody('demo-chat', 0, 100);
    const req = http.request(`${url}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: { authorization: 'Bearer sk-probe', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 && res.headers['x-ratelimit-limit-requests'] === '100000'));
    });
    req.on('error', () => resolve(false));
    req.end(body);
  });
}

async function everyWorkerChecks(url) {
  for (let i = 0; i < 16; i++) if (!(await checkedOnNewConnection(url))) return false;
  return true;
}

function config(p, onError) {
  return gatewayConfig({
    ...p,
    mockPort: mock.port,
    workers: 2,
    extra: governanceYaml({
      state: `state:
  backend: redis
  redis: { url: "${redis.url}", timeout_ms: 500, on_error: ${onError}, key_prefix: "e2e-${process.pid}:" }`,
      pricing: PRICING,
      consumers: CONSUMERS,
    }),
  });
}

before(async () => {
  redis = await startRedis();
  mock = await startMock({ args: ['--tokens', String(MOCK_OUTPUT_TOKENS), '--ttft-ms', '100'] });
  gwA = await startSluice({ config: (p) => config(p, 'allow') });
  gwB = await startSluice({ config: (p) => config(p, 'deny') });
});

after(async () => {
  await gwA?.stop();
  await gwB?.stop();
  await mock?.stop();
  await redis?.stop();
});

test('one tokens_per_minute limit holds across two instances under 50 concurrent requests', async (t) => {
  const r = await tokensPerMinuteBurst({ gateways: [gwA, gwB], key: 'sk-burst', name: 'burst', limit: 2500 });
  t.diagnostic(`admitted ${r.ok} requests (${r.admitted} tokens), refused ${r.refused}`);
});

test('a daily budget shared by two instances runs out: 429 budget_exceeded', async () => {
  await budgetRunsOut({ gateways: [gwA, gwB], key: 'sk-spend', name: 'spender', budgetUsd: 0.01, costPerRequestMax: 0.001 });
});

test('redis stopped: on_error allow lets requests through, deny answers 503; both recover', async () => {
  const ok = await chat(gwA.url, 'sk-count', chatBody('demo-chat', 0, 100));
  assert.equal(ok.status, 200);
  const errorsBefore = await metricValue(gwA.adminUrl, /^sluice_state_errors_total\{backend="redis",on_error="allow"\}/);

  await redis.stop();
  // allow: more requests than requests_per_minute allows, all answered (the limit cannot be checked)
  for (let i = 0; i < 6; i++) {
    const r = await chat(gwA.url, 'sk-count', chatBody('demo-chat', i, 100));
    assert.equal(r.status, 200, r.text);
  }
  // deny: 503 in the caller's protocol, with retry-after
  const denied = await chat(gwB.url, 'sk-count', chatBody('demo-chat', 0, 100));
  assert.equal(denied.status, 503, denied.text);
  assert.equal(denied.json.error.type, 'service_unavailable');
  assert.ok(denied.headers.get('retry-after'));
  assert.ok((await metricValue(gwA.adminUrl, /^sluice_state_errors_total\{backend="redis",on_error="allow"\}/)) >= errorsBefore + 6);
  assert.ok((await metricValue(gwB.adminUrl, /^sluice_state_errors_total\{backend="redis",on_error="deny"\}/)) >= 1);
  assert.match(gwA.stderr, /redis 127\.0\.0\.1:\d+: connection lost/);
  const down = await fetch(`${gwA.adminUrl}/admin/api/consumers/counter/usage`);
  assert.equal(down.status, 503);
  await down.arrayBuffer();

  await redis.start(); // empty: the counters start again
  // both instances reconnect (backoff <= 2 s) and enforce the limit again: 4 per minute, shared
  for (const g of [gwA, gwB])
    await waitFor(() => everyWorkerChecks(g.url), { timeoutMs: 20_000, what: `${g.url} to check limits again` });
  await waitFor(async () => {
    const u = await fetch(`${gwA.adminUrl}/admin/api/consumers/counter/usage`);
    await u.arrayBuffer();
    return u.status === 200;
  }, { timeoutMs: 15_000, what: 'the admin API to read redis again' });
  const statuses = [];
  for (let i = 0; i < 8; i++) statuses.push((await chat(i % 2 ? gwA.url : gwB.url, 'sk-count', chatBody('demo-chat', i, 100))).status);
  const admitted = statuses.filter((s) => s === 200).length;
  assert.ok(statuses.includes(429), `no 429 after recovery: ${statuses}`);
  assert.ok(admitted <= 4, `${admitted} admitted with requests_per_minute 4: ${statuses}`);
  const u = await usage(gwA.adminUrl, 'counter');
  assert.ok(u.windows.minute.requests <= 4);
  assert.equal(u.backend, 'redis');
});
