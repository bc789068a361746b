// resilience.test.js: retries, fallback chains, balancers, outlier ejection
// and recovery, timeouts of each kind, client aborts and cut streams
// (issue 4, SPEC §2 models[].retry/fallbacks/balance, §3; docs/resilience.md).
//
// One sluice-mock serves every "provider": each provider entry sends its own
// x-mock-* fault knobs upstream through providers[].headers, so one gateway
// config holds a healthy provider, a rate-limited one, a broken one, a slow
// one, and so on. Balancer tests use workers: 1 so that per-worker state is
// the whole state. No timing assertions: only bounded waits.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import test, { after, before } from 'node:test';
import OpenAI from 'openai';
import { freePort, httpRequest, mockText, startMock, startSluice, waitFor } from './lib/harness.js';

const T = { timeout: 60_000 };

let mock; // the shared provider
let flaky; // a second mock, stopped and restarted by the ejection test
let flakyPort;
let blackhole; // a listener whose accept queue is full: connects time out
let gw;
let client;

/** A loopback port on which connecting hangs (SYNs are dropped): python listens with backlog 0 and never accepts. */
async function startBlackhole() {
  const port = await freePort();
  const py = spawn('python3', ['-c', `
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", ${port})); s.listen(0); print("ready", flush=True); time.sleep(600)
`], { stdio: ['ignore', 'pipe', 'ignore'] });
  const ok = await new Promise((resolve) => {
    py.on('error', () => resolve(false));
    py.stdout.once('data', () => resolve(true));
  });
  if (!ok) return null;
  // fill the accept queue: later SYNs are dropped and their connects hang
  const fillers = [];
  for (let i = 0; i < 3; i++) fillers.push(net.connect({ port, host: '127.0.0.1' }).on('error', () => {}));
  await new Promise((r) => setTimeout(r, 100));
  return { port, stop: () => { fillers.forEach((s) => s.destroy()); py.kill('SIGKILL'); } };
}

function provider(name, port, headers = {}, extra = '') {
  const h = Object.entries(headers).map(([k, v]) => `${k}: "${v}"`).join(', ');
  return `  - { name: ${name}, type: openai-compatible, base_url: "http://127.0.0.1:${port}/v1", api_keys: ["sk-${name}"], headers: { ${h} }${extra} }\n`;
}

function config({ port, adminPort }) {
  const m = mock.port;
  return `
server:
  listen: ["127.0.0.1:${port}"]
  admin_listen: "127.0.0.1:${adminPort}"
  workers: 1
providers:
${provider('ok', m)}${provider('ok2', m)}${provider('limited', m, { 'x-mock-status': 429, 'x-mock-retry-after': 1 })}\
${provider('down', m, { 'x-mock-status': 503 })}\
  - { name: dead, type: openai-compatible, base_url: "http://127.0.0.1:1/v1" }
  - { name: flaky, type: openai-compatible, base_url: "http://127.0.0.1:${flakyPort}/v1" }
${provider('slow', m, { 'x-mock-delay-ms': 150 })}\
${provider('ttft', m, { 'x-mock-ttft-ms': 3000 }, ', timeouts: { first_token_ms: 300 }')}\
${provider('delayed', m, { 'x-mock-delay-ms': 3000 }, ', timeouts: { first_token_ms: 300 }')}\
${provider('stall', m, { 'x-mock-itl-ms': 3000, 'x-mock-tokens': 4 }, ', timeouts: { idle_ms: 300 }')}\
${provider('long', m, { 'x-mock-itl-ms': 100, 'x-mock-tokens': 50 }, ', timeouts: { idle_ms: 5000, total_ms: 600 }')}\
${provider('drip', m, { 'x-mock-itl-ms': 50, 'x-mock-tokens': 400 })}\
${provider('cut', m, { 'x-mock-fail-after': 3, 'x-mock-fail-mode': 'reset', 'x-mock-itl-ms': 100 })}\
${blackhole ? `  - { name: hole, type: openai-compatible, base_url: "http://127.0.0.1:${blackhole.port}/v1", timeouts: { connect_ms: 300 } }\n` : ''}\
models:
  - name: rate-limited
    targets: [ { provider: limited, weight: 2 }, { provider: ok, weight: 1 } ]
  - name: chain-a
    targets: [ { provider: down } ]
    retry: { attempts: 1 }
    fallbacks: [chain-b]
  - name: chain-b
    targets: [ { provider: dead } ]
    retry: { attempts: 1 }
    fallbacks: [chain-c]
  - name: chain-c
    targets: [ { provider: ok2 } ]
  - name: split
    targets: [ { provider: ok, weight: 3 }, { provider: ok2, weight: 1 } ]
  - name: lr
    balance: least_request
    targets: [ { provider: slow }, { provider: ok } ]
  - name: lat
    balance: latency
    targets: [ { provider: slow }, { provider: ok } ]
  - name: eject
    targets: [ { provider: flaky }, { provider: ok } ]
    retry: { attempts: 1 }
    outlier: { consecutive_failures: 2, base_ejection_ms: 1000 }
  - name: lonely
    targets: [ { provider: dead } ]
    retry: { attempts: 1 }
    outlier: { consecutive_failures: 1, base_ejection_ms: 30000 }
  - name: t-first-stream
    targets: [ { provider: ttft } ]
    retry: { attempts: 1 }
  - name: t-first
    targets: [ { provider: delayed } ]
    retry: { attempts: 1 }
  - name: t-idle
    targets: [ { provider: stall } ]
    retry: { attempts: 1 }
  - name: t-total
    targets: [ { provider: long } ]
    retry: { attempts: 1 }
  - name: t-connect
    targets: [ { provider: ${blackhole ? 'hole' : 'dead'} } ]
    retry: { attempts: 1 }
  - name: drip
    targets: [ { provider: drip } ]
  - name: cut
    targets: [ { provider: cut } ]
`;
}

before(async () => {
  mock = await startMock({ args: ['--tokens', '8'] });
  flaky = await startMock({ args: ['--tokens', '8'] });
  flakyPort = flaky.port;
  blackhole = await startBlackhole();
  gw = await startSluice({ config });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  blackhole?.stop();
});

const MSG = [{ role: 'user', content: 'hi' }];

async function chat(model, extra = {}) {
  return httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: { model, messages: MSG, ...extra },
  });
}

async function mockStats(m = mock) {
  return (await httpRequest(`${m.url}/mock/stats`)).json;
}

/** Runs n requests with at most `concurrency` in flight; returns the responses. */
async function many(n, concurrency, fn) {
  const out = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      next++;
      out.push(await fn());
    }
  }));
  return out;
}

function countBy(responses, header) {
  const c = {};
  for (const r of responses) c[r.headers.get(header)] = (c[r.headers.get(header)] || 0) + 1;
  return c;
}

test('a 429 is retried on the next target and the request is answered once', T, async () => {
  const before = await mockStats();
  const r = await chat('rate-limited');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-sluice-attempts'), '2');
  assert.equal(r.headers.get('x-sluice-provider'), 'ok');
  const after = await mockStats();
  assert.equal(after.requests - before.requests, 2, 'one 429 and one success upstream');
  // the access log (stdout) has exactly one line for this request, with both attempts
  const id = r.headers.get('x-request-id');
  const lines = await waitFor(() => {
    const l = gw.stdoutLines.filter((o) => o.request_id === id);
    return l.length ? l : null;
  }, { what: 'access log line' });
  assert.equal(lines.length, 1);
  assert.equal(lines[0].attempts, 2);
  assert.equal(lines[0].status, 200);
});

test('every target down: a three-hop fallback chain answers', T, async () => {
  const r = await chat('chain-a');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-sluice-provider'), 'ok2');
  assert.equal(r.headers.get('x-sluice-attempts'), '3'); // chain-a (503), chain-b (refused), chain-c
  assert.equal(r.json.model, 'chain-a', 'the caller sees the model it asked for');
  // streamed through the SDK too
  const stream = await client.chat.completions.create({ model: 'chain-a', messages: MSG, stream: true });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  assert.ok(text.length > 0);
});

test('weighted balancing splits 3:1 within 5% over 2000 requests', T, async () => {
  const rs = await many(2000, 8, () => chat('split'));
  assert.ok(rs.every((r) => r.status === 200));
  const c = countBy(rs, 'x-sluice-provider');
  const share = c.ok / 2000;
  assert.ok(Math.abs(share - 0.75) <= 0.05, `ok got ${share}`);
});

test('least_request steers away from a slow target', T, async () => {
  const rs = await many(120, 8, () => chat('lr'));
  assert.ok(rs.every((r) => r.status === 200));
  const c = countBy(rs, 'x-sluice-provider');
  assert.ok((c.slow ?? 0) < 120 * 0.25, `slow got ${c.slow} of 120`);
});

test('the latency balancer steers away from a slow target', T, async () => {
  const rs = await many(60, 1, () => chat('lat'));
  assert.ok(rs.every((r) => r.status === 200));
  const c = countBy(rs, 'x-sluice-provider');
  assert.ok((c.slow ?? 0) < 60 * 0.2, `slow got ${c.slow} of 60`);
});

test('a failing target is ejected, then recovers through a half-open trial', T, async () => {
  await flaky.stop(); // connections to it are refused from now on
  const first = await many(4, 1, () => chat('eject'));
  const failed = first.filter((r) => r.status === 502).length;
  assert.ok(failed >= 1 && failed <= 2, `two failures eject it (saw ${failed})`);
  // ejected: everything goes to the healthy target
  const during = await many(10, 1, () => chat('eject'));
  assert.ok(during.every((r) => r.status === 200 && r.headers.get('x-sluice-provider') === 'ok'));
  flaky = await startMock({ port: flakyPort, args: ['--tokens', '8'] });
  // after the ejection time a trial reaches it; success puts it back in rotation
  await waitFor(async () => (await chat('eject')).headers.get('x-sluice-provider') === 'flaky', {
    timeoutMs: 10_000,
    intervalMs: 100,
    what: 'the ejected target to serve again',
  });
  const back = await many(10, 1, () => chat('eject'));
  assert.ok(back.some((r) => r.headers.get('x-sluice-provider') === 'flaky'));
});

test('no healthy target: 503 with retry-after', T, async () => {
  const r1 = await chat('lonely');
  assert.equal(r1.status, 502, r1.text);
  const r2 = await chat('lonely');
  assert.equal(r2.status, 503, r2.text);
  assert.equal(r2.json.error.type, 'service_unavailable');
  assert.ok(Number(r2.headers.get('retry-after')) >= 1);
});

test('timeouts: first token (stream and not), idle, total, connect each say which', T, async (t) => {
  await t.test('first token, stream: 504 before any byte', async () => {
    const r = await chat('t-first-stream', { stream: true });
    assert.equal(r.status, 504, r.text);
    assert.match(r.json.error.message, /no first token within 300 ms/);
  });
  await t.test('first token, non-stream', async () => {
    const r = await chat('t-first');
    assert.equal(r.status, 504, r.text);
    assert.match(r.json.error.message, /no first token within 300 ms/);
  });
  await t.test('idle, mid-stream: an error event reaches the SDK', async () => {
    const stream = await client.chat.completions.create({ model: 't-idle', messages: MSG, stream: true });
    await assert.rejects(async () => {
      for await (const _ of stream);
    }, /nothing received for 300 ms/);
  });
  await t.test('total', async () => {
    const r = await chat('t-total');
    assert.equal(r.status, 504, r.text);
    assert.match(r.json.error.message, /took longer than 600 ms/);
  });
  await t.test('connect', { skip: !blackhole && 'python3 is needed for a listener that never accepts' }, async () => {
    const r = await chat('t-connect');
    assert.equal(r.status, 504, r.text);
    assert.match(r.json.error.message, /no connection within 300 ms/);
  });
});

test('a client that disconnects mid-stream cancels the upstream at once', T, async () => {
  const before = await mockStats();
  const stream = await client.chat.completions.create({ model: 'drip', messages: MSG, stream: true });
  let n = 0;
  for await (const _ of stream) {
    if (++n === 3) break; // leaving the loop aborts the HTTP request: the connection closes
  }
  assert.equal(n, 3);
  // Bounded wait: the mock sees its client (the gateway) go away. The issue's
  // figure is 100 ms; tests carry no timing thresholds (noisy machines), so
  // the bound here is generous and the elapsed time is reported instead.
  const t0 = Date.now();
  await waitFor(async () => (await mockStats()).aborted > before.aborted, {
    timeoutMs: 2000,
    intervalMs: 5,
    what: 'the upstream request to be aborted',
  });
  console.log(`# upstream aborted ${Date.now() - t0} ms after the client left`);
});

// The reset comes one itl (100 ms) after the third token, never in the same
// write as tokens: a TCP reset may discard bytes the sender has not
// transmitted yet, and a reset before any token reached sluice is rightly a
// 502 before the head (or a retry), not what this test is about. With the
// gap the three tokens are in sluice's socket before the reset, so the caller
// gets exactly them, then the error.
test('a stream cut by the upstream reaches the SDK as an error, not a clean end', T, async () => {
  const before = await mockStats();
  const stream = await client.chat.completions.create({ model: 'cut', messages: MSG, stream: true });
  let text = '';
  await assert.rejects(async () => {
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  }, /upstream cut failed: connection reset/);
  assert.equal(text, mockText(3), 'the tokens before the cut were delivered, nothing after');
  const after = await mockStats();
  assert.equal(after.requests - before.requests, 1, 'no retry once the caller had bytes');
  assert.equal(after.faults - before.faults, 1);
});
