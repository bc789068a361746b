// robustness.test.js: regression tests for four bugs a review found in the
// connection and stream paths (ported from the reviewer's reproduction scripts):
//
//   1. pipelined requests answered at once to a client that never reads: the
//      answers piled up in sluice's output buffer without bound (RSS grew to
//      300 MB); parsing must pause while output is pending;
//   2. a client that resets its connection while its stream is paused on it
//      (and sluice has stopped reading): the exchange was never aborted, so the
//      inflight gauge stuck at 1 and the upstream request ran on;
//   3. the idle keep-alive timer fired while a large response was still being
//      written to a slow reader and cut it short (an 8.7 MB embeddings answer,
//      base64 so that the mock makes it quickly);
//   4. a stream whose first event is over 64 KiB (the preamble hold limit):
//      bytes after the hold were dropped.
//
// Every test starts its own mock and gateway and stops them at its end (exit
// code 0, which under ASan also proves no leak). No timing assertions: only
// bounded waits and a resource bound (RSS).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import test from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { CALLER_KEY, gatewayConfig, httpRequest, startMock, startSluice, waitFor } from './lib/harness.js';

const T = { timeout: 60_000 };

/** Resident set size of a process in bytes (/proc/PID/status VmRSS). */
function rssBytes(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** The value of one unlabelled series in a Prometheus text page. */
function metric(text, name) {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

async function mockStats(mock) {
  return (await httpRequest(`${mock.url}/mock/stats`, { timeoutMs: 5000 })).json;
}

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

async function stopAll(gw, mock) {
  assert.equal(await gw.stop(), 0, 'sluice exits 0');
  if (mock) await mock.stop();
}

test('pipelined requests from a client that never reads: output stays bounded', T, async (t) => {
  const mock = await startMock();
  const gw = await startSluice({ config: (p) => gatewayConfig({ ...p, mockPort: mock.port, workers: 1 }) });
  const port = Number(new URL(gw.url).port);
  const before = rssBytes(gw.proc.pid);

  const s = await connect(port);
  s.on('error', () => {});
  s.pause(); // never read: every answer stays with the server or in the kernel
  const batch = Buffer.from('GET /nope-this-path-is-unknown HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(256));
  const TARGET = 20 << 20;
  const deadline = Date.now() + 15_000;
  let sent = 0;
  // Write with back-pressure: when the socket buffer is full, wait for 'drain'
  // (bounded). A server that stops reading never drains it: then we are done.
  while (sent < TARGET && Date.now() < deadline) {
    sent += batch.length;
    if (!s.write(batch)) {
      const drained = await Promise.race([
        new Promise((r) => s.once('drain', () => r(true))),
        sleep(2000).then(() => false),
      ]);
      if (!drained) break;
    }
  }
  // Let the server take in what the kernel still holds, sampling its RSS meanwhile.
  let peak = 0;
  for (let i = 0; i < 10; i++) {
    peak = Math.max(peak, rssBytes(gw.proc.pid));
    await sleep(100);
  }
  s.destroy();
  const grew = peak - before;
  const mb = (n) => (n / 1048576).toFixed(1);
  t.diagnostic(`sent ${mb(sent)} MB; sluice RSS ${mb(before)} -> ${mb(peak)} MB`);
  assert.ok(grew < 64 << 20,
    `sluice RSS grew by ${mb(grew)} MB (from ${mb(before)} MB) after ${mb(sent)} MB of pipelined requests`);

  // still serving
  const r = await httpRequest(`${gw.url}/nope`, { timeoutMs: 10_000 });
  assert.equal(r.status, 404);
  await stopAll(gw, mock);
});

test('a client resetting a stream paused on it aborts the exchange and the upstream request', T, async () => {
  const mock = await startMock({ args: ['--tokens', '100000'] });
  const gw = await startSluice({
    config: (p) => gatewayConfig({ ...p, mockPort: mock.port, workers: 1, drainTimeoutMs: 2000 }),
  });
  const port = Number(new URL(gw.url).port);
  const inflight = async () =>
    metric((await httpRequest(`${gw.adminUrl}/metrics`, { timeoutMs: 5000 })).text, 'sluice_inflight_requests');

  const body = JSON.stringify({ model: 'demo-chat', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const s = await connect(port);
  s.on('error', () => {});
  s.pause(); // the test never reads: the stream pauses on this client
  s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  // Bytes after the request: sluice does not read them while the exchange runs,
  // so the reset is not seen by a read.
  s.write(Buffer.alloc(200 * 1024, 'X'));

  await waitFor(async () => (await inflight()) === 1, { timeoutMs: 10_000, what: 'the stream in flight' });
  await waitFor(async () => (await mockStats(mock)).streams >= 1, { timeoutMs: 10_000, what: 'the mock streaming' });
  await sleep(500); // let the stream fill the buffers and pause (a state, not a measurement)
  assert.equal(await inflight(), 1, 'the stream is still in flight before the reset');

  s.resetAndDestroy();

  await waitFor(async () => (await inflight()) === 0,
    { timeoutMs: 10_000, what: 'sluice_inflight_requests back to 0' });
  const st = await waitFor(async () => {
    const x = await mockStats(mock);
    return x.in_flight === 0 && x.aborted >= 1 ? x : null;
  }, { timeoutMs: 10_000, what: 'the mock to see the upstream request aborted' });
  assert.equal(st.aborted, 1);
  await stopAll(gw, mock);
});

// 5. (added with the write deadline) a client that stops reading a stream and
//    never resets: without a deadline on writes it held its exchange and the
//    paused upstream request until the upstream's total timeout.
test('a client that stops reading a stream is dropped after idle_timeout_ms without progress', T, async () => {
  const mock = await startMock({ args: ['--tokens', '100000'] });
  const gw = await startSluice({
    config: (p) => gatewayConfig({ ...p, mockPort: mock.port, workers: 1, limits: { idle_timeout_ms: 500 } }),
  });
  const port = Number(new URL(gw.url).port);
  const inflight = async () =>
    metric((await httpRequest(`${gw.adminUrl}/metrics`, { timeoutMs: 5000 })).text, 'sluice_inflight_requests');
  const body = JSON.stringify({ model: 'demo-chat', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const s = await connect(port);
  s.on('error', () => {});
  s.pause(); // never read, never reset
  s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  await waitFor(async () => (await inflight()) === 1, { timeoutMs: 10_000, what: 'the stream in flight' });
  // bounded wait: the exchange ends, the upstream request is cancelled
  await waitFor(async () => (await inflight()) === 0, { timeoutMs: 20_000, what: 'the stalled client dropped' });
  await waitFor(async () => (await mockStats(mock)).aborted >= 1, { timeoutMs: 10_000, what: 'the upstream aborted' });
  s.destroy();
  await stopAll(gw, mock);
});

// 6. (found by the benchmark) callers that close translated streams early were
//    counted as failures of the target, which was then ejected: later callers
//    got 503 "no healthy target".
test('callers that leave streams early do not eject the target', T, async () => {
  const mock = await startMock({ args: ['--tokens', '200', '--itl-ms', '5'] });
  const gw = await startSluice({
    config: (p) => gatewayConfig({
      ...p, mockPort: mock.port, workers: 1,
      extraProviders: `- name: mocka\n  type: anthropic\n  base_url: http://127.0.0.1:${mock.port}/v1\n`,
      extraModels: `- name: xlat\n  targets: [ { provider: mocka, model: claude-x } ]\n` +
        `  outlier: { consecutive_failures: 1 }\n  retry: { attempts: 1 }\n`,
    }),
  });
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CALLER_KEY, maxRetries: 0 });
  const port = Number(new URL(gw.url).port);
  const body = JSON.stringify({ model: 'xlat', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  for (let i = 0; i < 8; i++) {
    // half the callers leave politely (FIN, as an SDK breaking out of its loop), half with a reset (as wrk)
    const s = await connect(port);
    s.on('error', () => {});
    s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    let got = 0;
    await new Promise((resolve) => s.on('data', (d) => { got += d.length; if (got > 2000) resolve(); }));
    if (i % 2) s.resetAndDestroy();
    else s.destroy();
  }
  const r = await client.chat.completions.create({ model: 'xlat', messages: [{ role: 'user', content: 'hi' }] });
  assert.ok(r.choices[0].message.content.length > 0, 'the target still serves');
  await stopAll(gw, mock);
});

test('idle timeout does not cut a large response read slowly on a keep-alive connection', T, async (t) => {
  const mock = await startMock({ args: ['--embedding-dim', '1024'] });
  const gw = await startSluice({
    config: (p) => gatewayConfig({ ...p, mockPort: mock.port, workers: 1, limits: { idle_timeout_ms: 300 } }),
  });
  const port = Number(new URL(gw.url).port);

  // 1600 vectors of 1024 float32s in base64 (cheap for the mock to make): about 8.7 MB
  const N = 1600;
  const input = Array.from({ length: N }, (_, i) => `x${i}`);
  const body = JSON.stringify({ model: 'demo-embed', encoding_format: 'base64', input });
  const s = await connect(port);
  const chunks = [];
  let got = 0; // bytes received
  let budget = 0; // bytes this slice may still take
  let eof = false;
  s.on('data', (d) => {
    chunks.push(d);
    got += d.length;
    budget -= d.length;
    if (budget <= 0) s.pause();
  });
  s.on('end', () => (eof = true));
  s.on('close', () => (eof = true));
  s.on('error', () => (eof = true));
  s.pause();
  s.write(`POST /v1/embeddings HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);

  // Read 1 MB slices with a 200 ms pause between them (over a second in all),
  // until the body is whole or the server closed.
  const SLICE = 1 << 20;
  const t0 = Date.now();
  const deadline = t0 + 45_000;
  let want = Infinity; // head length + content-length, once the head arrived
  let pauses = 0;
  const whole = () => {
    if (want === Infinity && chunks.length) want = wantOf(Buffer.concat(chunks));
    return got >= want;
  };
  while (!eof && !whole() && Date.now() < deadline) {
    if (got > 0) {
      await sleep(200);
      pauses++;
    }
    budget = SLICE;
    s.resume();
    await waitFor(() => eof || budget <= 0 || whole(), { timeoutMs: 10_000, what: 'response bytes' }).catch(() => {});
    s.pause();
  }
  const buf = Buffer.concat(chunks);
  const he = headEnd(buf);
  t.diagnostic(`read ${buf.length} bytes with ${pauses} pauses; server closed: ${eof}; ${Date.now() - t0} ms`);
  assert.ok(he >= 0, 'a response head arrived');
  const head = buf.subarray(0, he).toString('latin1');
  assert.match(head, /^HTTP\/1\.1 200/);
  const cl = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1]);
  assert.ok(cl > 4 << 20, `a response of several MB (content-length ${cl})`);
  assert.equal(buf.length - (he + 4), cl, `the whole body arrived (server closed: ${eof}, after ${pauses} pauses)`);
  assert.ok(pauses >= 5, `the read was slow (${pauses} pauses)`);
  const parsed = JSON.parse(buf.subarray(he + 4).toString('utf8'));
  assert.equal(parsed.data.length, N);
  assert.equal(Buffer.from(parsed.data[N - 1].embedding, 'base64').length, 1024 * 4);

  s.destroy();
  await stopAll(gw, mock);
});

function headEnd(b) {
  return b.indexOf('\r\n\r\n');
}
function wantOf(b) {
  const he = headEnd(b);
  const m = /\r\ncontent-length: *(\d+)/i.exec(b.subarray(0, he).toString('latin1'));
  return m ? he + 4 + Number(m[1]) : Infinity;
}

/** An OpenAI-style upstream whose stream starts with one event of over 100 KB, written in 8 KB pieces. */
function startBigUpstream(first) {
  const chunk = (delta, finish) => `data: ${JSON.stringify({
    id: 'chatcmpl-big', object: 'chat.completion.chunk', created: 1, model: 'big-upstream',
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
  const stream = Buffer.from(chunk({ role: 'assistant', content: first }, null) +
    chunk({ content: ' second' }, 'stop') + 'data: [DONE]\n\n');
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (let i = 0; i < stream.length; i += 8192) {
        res.write(stream.subarray(i, i + 8192));
        await sleep(5); // separate reads on the gateway's side
      }
      res.end();
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

test('a stream whose first event is over 64 KiB arrives whole', T, async () => {
  const first = 'x'.repeat(100_000);
  const up = await startBigUpstream(first);
  try {
    const upPort = up.address().port;
    const mock = await startMock();
    const gw = await startSluice({
      config: (p) => gatewayConfig({
        ...p,
        mockPort: mock.port,
        extraProviders: `- name: big
  type: openai-compatible
  base_url: http://127.0.0.1:${upPort}/v1
  api_keys: ["sk-big"]`,
        extraModels: `- name: big-chat
  targets: [ { provider: big, model: big-upstream } ]
  retry: { attempts: 1 }`,
      }),
    });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CALLER_KEY, maxRetries: 0, timeout: 20_000 });
    const stream = await client.chat.completions.create({
      model: 'big-chat', stream: true, messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    let finish = null;
    for await (const ev of stream) {
      text += ev.choices?.[0]?.delta?.content ?? '';
      finish = ev.choices?.[0]?.finish_reason ?? finish;
    }
    assert.equal(text.length, first.length + ' second'.length);
    assert.equal(text, `${first} second`);
    assert.equal(finish, 'stop');
    await stopAll(gw, mock);
  } finally {
    up.closeAllConnections();
    await new Promise((r) => up.close(r));
  }
});
