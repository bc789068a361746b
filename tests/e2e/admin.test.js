// admin.test.js: the admin plane and the access log (SPEC §4): /healthz and
// /readyz answer, and every data-plane request leaves exactly one JSON access
// log line with the documented fields, and no secrets.
import assert from 'node:assert/strict';
import test, { before, beforeEach } from 'node:test';
import OpenAI from 'openai';
import {
  assertAlive,
  CALLER_KEY,
  PROVIDER_KEY,
  gatewayConfig,
  httpRequest,
  startMock,
  startSluice,
  waitFor,
} from './lib/harness.js';

const TOKENS = 6;
const T = { timeout: 30_000 };
const ACCESS_LOG_FIELDS = [
  'ts', 'request_id', 'consumer', 'api', 'model', 'provider', 'upstream_model', 'status', 'stream',
  'input_tokens', 'output_tokens', 'cached_tokens', 'cost_usd', 'ttft_ms', 'duration_ms', 'attempts', 'cache', 'error',
];

let mock;
let gw;
let client;

before(async () => {
  mock = await startMock({ args: ['--tokens', String(TOKENS)] });
  gw = await startSluice({ config: (p) => gatewayConfig({ ...p, mockPort: mock.port }) });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CALLER_KEY, maxRetries: 0, timeout: 20_000 });
});
// Once a binary died, every later test says so (with its stderr) instead of ECONNREFUSED.
beforeEach(() => {
  assertAlive(gw, mock);
});


/** The access log line for a request id, once it has been written. */
async function logLine(id) {
  await waitFor(() => gw.stdoutLines.some((l) => l.request_id === id), {
    timeoutMs: 10_000,
    what: `an access log line with request_id ${id}`,
  });
  // Give a duplicate line a chance to show up before counting.
  await httpRequest(`${gw.adminUrl}/healthz`);
  const lines = gw.stdoutLines.filter((l) => l.request_id === id);
  assert.equal(lines.length, 1, `exactly one access log line for ${id}: ${JSON.stringify(lines)}`);
  for (const f of ACCESS_LOG_FIELDS) assert.ok(f in lines[0], `field ${f} in ${JSON.stringify(lines[0])}`);
  return lines[0];
}

test('/healthz and /readyz answer 200', T, async () => {
  for (const p of ['/healthz', '/readyz']) {
    const r = await httpRequest(`${gw.adminUrl}${p}`);
    assert.equal(r.status, 200, `${p}: ${r.text}`);
  }
});

test('admin plane: unknown path -> 404; data-plane paths are not served there', T, async () => {
  assert.equal((await httpRequest(`${gw.adminUrl}/no-such-admin-path`)).status, 404);
  // (404 or 405: either way the admin listener is no second data plane)
  const r = await httpRequest(`${gw.adminUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: { model: 'demo-chat', messages: [{ role: 'user', content: 'x' }] },
  });
  assert.ok([404, 405].includes(r.status), `status ${r.status}`);
});

test('access log: a chat completion', T, async () => {
  await client.chat.completions.create(
    { model: 'demo-chat', messages: [{ role: 'user', content: 'log me' }] },
    { headers: { 'x-request-id': 'acc-nonstream' } },
  );
  const l = await logLine('acc-nonstream');
  assert.equal(l.status, 200);
  assert.equal(l.model, 'demo-chat');
  assert.equal(l.provider, 'mock');
  assert.equal(l.upstream_model, 'mock-upstream-chat');
  assert.equal(l.stream, false);
  assert.equal(l.output_tokens, TOKENS);
  assert.ok(l.input_tokens > 0);
  assert.equal(l.attempts, 1);
  assert.equal(typeof l.api, 'string');
  assert.ok(l.api.length > 0);
  assert.equal(typeof l.duration_ms, 'number');
  assert.ok(l.duration_ms >= 0);
  assert.ok(!Number.isNaN(typeof l.ts === 'number' ? l.ts : Date.parse(l.ts)), `ts parses: ${l.ts}`);
});

test('access log: a stream counts tokens even when the caller did not ask for usage', T, async () => {
  const stream = await client.chat.completions.create(
    { model: 'demo-chat', messages: [{ role: 'user', content: 'log my stream' }], stream: true },
    { headers: { 'x-request-id': 'acc-stream' } },
  );
  for await (const chunk of stream) void chunk;
  const l = await logLine('acc-stream');
  assert.equal(l.status, 200);
  assert.equal(l.stream, true);
  assert.equal(l.output_tokens, TOKENS);
  assert.equal(typeof l.ttft_ms, 'number');
  assert.ok(l.ttft_ms >= 0);
});

test('access log: an error request has its status and error', T, async () => {
  const r = await httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'acc-404' },
    body: { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] },
  });
  assert.equal(r.status, 404);
  const l = await logLine('acc-404');
  assert.equal(l.status, 404);
  assert.ok(l.error, `error set: ${JSON.stringify(l)}`);
});

test('no secrets in the logs', T, async () => {
  const out = gw.stdoutRaw.join('\n') + gw.stderr;
  assert.ok(!out.includes(CALLER_KEY), "the caller's key appears in the gateway output");
  assert.ok(!out.includes(PROVIDER_KEY), "the provider's key appears in the gateway output");
});

test('gateway exits 0 on SIGTERM', T, async () => {
  assert.equal(await gw.stop(), 0, gw.stderr.slice(-4000));
  await mock.stop();
});
