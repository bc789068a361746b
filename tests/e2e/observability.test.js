// Observability end to end (SPEC §4, docs/observability.md): a known mix of
// requests through the real gateway and mock, then exact counter values and
// histogram counts from /metrics, every access-log line's JSON fields, and the
// spans a test OTLP receiver got (parent/child links, attributes, traceparent
// propagated upstream).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUILD = process.env.SLUICE_BUILD || path.join(ROOT, 'build');

const procs = [];
let dir, gw, admin, mockPort, receiver, logPath;
const received = []; // OTLP request bodies
const results = {}; // request id -> { status, usage, body }

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function start(bin, args) {
  const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  p.out = '';
  p.stdout.on('data', (d) => (p.out += d));
  p.stderr.on('data', (d) => (p.out += d));
  procs.push(p);
  return p;
}

async function until(fn, what) {
  for (let i = 0; i < 500; i++) {
    try {
      const v = await fn();
      if (v) return v;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}

function series(name, labels) {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',');
  return `${name}{${l}}`;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-obs-'));
  logPath = path.join(dir, 'access.log');
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ path: req.url, type: req.headers['content-type'], auth: req.headers['x-otlp-token'], body: JSON.parse(body) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  [gw, admin, mockPort] = await Promise.all([freePort(), freePort(), freePort()]);
  start(path.join(BUILD, 'sluice-mock'), ['--port', String(mockPort), '--tokens', '5', '--quiet']);
  const mockBase = `http://127.0.0.1:${mockPort}`;
  const cfg = `
server:
  listen: ["127.0.0.1:${gw}"]
  admin_listen: "127.0.0.1:${admin}"
  workers: 1
  access_log: "${logPath}"
providers:
  - { name: mock, type: openai-compatible, base_url: "${mockBase}/v1" }
  - { name: mock-anthropic, type: anthropic, base_url: "${mockBase}/v1", api_keys: [k] }
  - { name: mock-fail, type: openai-compatible, base_url: "${mockBase}/v1", headers: { x-mock-status: "503" } }
models:
  - { name: m-a, targets: [ { provider: mock } ] }
  - { name: m-b, targets: [ { provider: mock-anthropic, model: claude-mock } ], defaults: { max_tokens: 100 } }
  - { name: m-fail, targets: [ { provider: mock-fail } ], retry: { attempts: 2 } }
  - { name: m-retry, targets: [ { provider: mock-fail }, { provider: mock } ], retry: { attempts: 2 } }
telemetry:
  log_content: true
  traces:
    endpoint: "http://127.0.0.1:${receiver.address().port}/v1/traces"
    batch_size: 4
    flush_interval_ms: 50
    headers: { x-otlp-token: secret }
`;
  fs.writeFileSync(path.join(dir, 'sluice.yaml'), cfg);
  start(path.join(BUILD, 'sluice'), ['-c', path.join(dir, 'sluice.yaml')]);
  await until(async () => (await fetch(`${mockBase}/v1/models`)).ok, 'mock');
  await until(async () => (await fetch(`http://127.0.0.1:${admin}/readyz`)).ok, 'gateway');
});

after(async () => {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.on('exit', r)))));
  for (const p of procs) {
    // a clean exit on SIGTERM, and nothing from the sanitizers when run against build/asan
    assert.doesNotMatch(p.out, /AddressSanitizer|runtime error|LeakSanitizer/);
    assert.equal(p.exitCode, 0, p.out.slice(-2000));
  }
  receiver?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function chat(id, model, { stream = false, headers = {} } = {}) {
  const body = { model, messages: [{ role: 'user', content: `hello from ${id}` }] };
  if (stream) Object.assign(body, { stream: true, stream_options: { include_usage: true } });
  const res = await fetch(`http://127.0.0.1:${gw}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id, ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let usage = null;
  if (stream) {
    for (const line of text.split('\n')) {
      if (!line.startsWith('data: {')) continue;
      const ev = JSON.parse(line.slice(6));
      if (ev.usage) usage = ev.usage;
    }
  } else if (res.ok) {
    usage = JSON.parse(text).usage;
  }
  results[id] = { status: res.status, usage, text };
  return results[id];
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

test('a known mix of requests', async () => {
  assert.equal((await chat('a1', 'm-a')).status, 200);
  assert.equal((await chat('a2', 'm-a')).status, 200);
  assert.equal((await chat('a3', 'm-a', { stream: true })).status, 200);
  assert.equal((await chat('b1', 'm-b')).status, 200);
  assert.equal((await chat('b2', 'm-b', { stream: true })).status, 200);
  assert.equal((await chat('f1', 'm-fail')).status, 502);
  assert.equal((await chat('n1', 'no-such-model')).status, 404);
  const r = await chat('r1', 'm-retry', { headers: { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=x' } });
  assert.equal(r.status, 200);
  for (const id of ['a1', 'a2', 'a3', 'b1', 'b2', 'r1']) assert.ok(results[id].usage, `usage of ${id}`);
});

function sumUsage(ids, field) {
  return ids.reduce((s, id) => s + results[id].usage[field], 0);
}

test('metrics: exact counters and histogram counts', async () => {
  const m = parseMetrics(await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text());
  const req = (model, provider, status) =>
    m.get(series('sluice_requests_total', { route: 'chat.completions', model, provider, consumer: 'anonymous', status }));
  assert.equal(req('m-a', 'mock', '200'), 3);
  assert.equal(req('m-b', 'mock-anthropic', '200'), 2);
  assert.equal(req('m-fail', 'mock-fail', '502'), 1);
  assert.equal(req('no-such-model', '', '404'), 1);
  assert.equal(req('m-retry', 'mock', '200'), 1);

  const att = (provider, outcome) => m.get(series('sluice_upstream_attempts_total', { provider, outcome }));
  assert.equal(att('mock', 'success'), 4);
  assert.equal(att('mock-anthropic', 'success'), 2);
  assert.equal(att('mock-fail', 'server_error'), 3);

  const tok = (model, provider, type) => m.get(series('sluice_tokens_total', { model, provider, consumer: 'anonymous', type }));
  assert.equal(tok('m-a', 'mock', 'input'), sumUsage(['a1', 'a2', 'a3'], 'prompt_tokens'));
  assert.equal(tok('m-a', 'mock', 'output'), sumUsage(['a1', 'a2', 'a3'], 'completion_tokens'));
  assert.equal(tok('m-b', 'mock-anthropic', 'output'), sumUsage(['b1', 'b2'], 'completion_tokens'));
  assert.equal(tok('m-a', 'mock', 'cached'), 0);

  const g = (name, model, provider, extra = {}) =>
    m.get(series(name, { gen_ai_operation_name: 'chat', gen_ai_provider_name: provider, gen_ai_request_model: model, ...extra }));
  assert.equal(g('gen_ai_client_operation_duration_seconds_count', 'm-a', 'openai-compatible'), 3);
  assert.equal(g('gen_ai_client_operation_duration_seconds_count', 'm-b', 'anthropic'), 2);
  assert.equal(g('gen_ai_client_operation_duration_seconds_count', 'm-fail', 'openai-compatible'), 1);
  assert.equal(g('gen_ai_server_time_to_first_token_seconds_count', 'm-a', 'openai-compatible'), 1);
  assert.equal(g('gen_ai_server_time_to_first_token_seconds_count', 'm-b', 'anthropic'), 1);
  assert.equal(g('gen_ai_server_time_per_output_token_seconds_count', 'm-a', 'openai-compatible'), 1);
  assert.equal(g('gen_ai_client_token_usage_count', 'm-a', 'openai-compatible', { gen_ai_token_type: 'input' }), 3);
  assert.equal(g('gen_ai_client_token_usage_sum', 'm-a', 'openai-compatible', { gen_ai_token_type: 'output' }),
    sumUsage(['a1', 'a2', 'a3'], 'completion_tokens'));
  // buckets are the GenAI semantic-convention bounds, cumulative, ending in +Inf == count
  assert.equal(g('gen_ai_client_token_usage_bucket', 'm-a', 'openai-compatible', { gen_ai_token_type: 'output', le: '4' }), 0);
  assert.equal(g('gen_ai_client_token_usage_bucket', 'm-a', 'openai-compatible', { gen_ai_token_type: 'output', le: '16' }), 3);
  assert.equal(g('gen_ai_client_token_usage_bucket', 'm-a', 'openai-compatible', { gen_ai_token_type: 'output', le: '+Inf' }), 3);
  assert.equal(m.get('sluice_inflight_requests'), 0);
});

test('access log: one JSON line per request with every field', async () => {
  const lines = fs.readFileSync(logPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const byId = Object.fromEntries(lines.map((l) => [l.request_id, l]));
  assert.equal(lines.length, 8);
  const fields = ['ts', 'request_id', 'consumer', 'api', 'model', 'provider', 'upstream_model', 'status', 'stream',
    'input_tokens', 'output_tokens', 'cached_tokens', 'cost_usd', 'ttft_ms', 'duration_ms', 'attempts', 'cache', 'error',
    'prompt', 'completion', 'content_truncated'];
  for (const l of lines) assert.deepEqual(Object.keys(l), fields);
  const a1 = byId.a1;
  assert.equal(a1.api, 'chat.completions');
  assert.equal(a1.model, 'm-a');
  assert.equal(a1.provider, 'mock');
  assert.equal(a1.status, 200);
  assert.equal(a1.stream, false);
  assert.equal(a1.input_tokens, results.a1.usage.prompt_tokens);
  assert.equal(a1.output_tokens, results.a1.usage.completion_tokens);
  assert.equal(a1.attempts, 1);
  assert.equal(a1.error, null);
  assert.deepEqual(a1.prompt, [{ role: 'user', content: 'hello from a1' }]);
  assert.equal(a1.completion, JSON.parse(results.a1.text).choices[0].message.content);
  assert.equal(byId.b1.upstream_model, 'claude-mock');
  assert.equal(byId.b1.completion, JSON.parse(results.b1.text).choices[0].message.content);
  assert.equal(byId.a3.stream, true);
  assert.equal(typeof byId.a3.ttft_ms, 'number');
  assert.equal(byId.a3.output_tokens, results.a3.usage.completion_tokens);
  assert.equal(byId.f1.status, 502);
  assert.equal(byId.f1.attempts, 2);
  assert.match(byId.f1.error, /503/);
  assert.equal(byId.n1.status, 404);
  assert.equal(byId.n1.provider, null);
  assert.equal(byId.r1.attempts, 2);
  assert.equal(byId.r1.provider, 'mock');
  for (const l of lines) assert.ok(l.duration_ms >= 0);
});

function attrs(span) {
  const o = {};
  for (const a of span.attributes || []) {
    const v = a.value;
    o[a.key] = v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue ?? v.boolValue ??
      v.arrayValue?.values.map((x) => x.stringValue));
  }
  return o;
}

test('traces: spans with parent/child links and gen_ai attributes', async () => {
  const spans = await until(() => {
    const all = received.flatMap((r) => r.body.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)));
    const servers = all.filter((s) => s.kind === 2);
    return servers.length >= 8 ? all : null;
  }, 'spans of 8 requests');
  assert.ok(received.every((r) => r.path === '/v1/traces' && r.type === 'application/json' && r.auth === 'secret'));
  const res = received[0].body.resourceSpans[0].resource;
  assert.equal(attrs(res)['service.name'], 'sluice');
  const byReq = {};
  for (const s of spans.filter((x) => x.kind === 2)) byReq[attrs(s)['gen_ai.response.id']] = s;
  const children = (s) => spans.filter((c) => c.parentSpanId === s.spanId && c.traceId === s.traceId);

  const a1 = byReq.a1;
  assert.equal(a1.name, 'chat m-a');
  const a = attrs(a1);
  assert.equal(a['gen_ai.operation.name'], 'chat');
  assert.equal(a['gen_ai.provider.name'], 'openai-compatible');
  assert.equal(a['gen_ai.request.model'], 'm-a');
  assert.equal(a['gen_ai.response.model'], 'm-a');
  assert.equal(a['gen_ai.usage.input_tokens'], results.a1.usage.prompt_tokens);
  assert.equal(a['gen_ai.usage.output_tokens'], results.a1.usage.completion_tokens);
  assert.deepEqual(a['gen_ai.response.finish_reasons'], ['stop']);
  assert.equal(a['http.response.status_code'], 200);
  assert.equal(a1.parentSpanId, undefined);
  assert.match(a1.traceId, /^[0-9a-f]{32}$/);
  assert.match(a1.spanId, /^[0-9a-f]{16}$/);
  assert.ok(BigInt(a1.endTimeUnixNano) >= BigInt(a1.startTimeUnixNano));
  const [c1] = children(a1);
  assert.equal(children(a1).length, 1);
  assert.equal(c1.kind, 3);
  assert.equal(attrs(c1)['sluice.attempt.outcome'], 'success');

  assert.equal(typeof attrs(byReq.a3)['gen_ai.response.time_to_first_chunk'], 'number');
  assert.equal(attrs(byReq.b1)['gen_ai.provider.name'], 'anthropic');
  assert.equal(attrs(byReq.b1)['gen_ai.response.model'], 'claude-mock');

  const f1 = byReq.f1;
  assert.equal(f1.status.code, 2);
  const fc = children(f1);
  assert.equal(fc.length, 2);
  for (const c of fc) {
    assert.equal(attrs(c)['sluice.attempt.outcome'], 'server_error');
    assert.equal(attrs(c)['http.response.status_code'], 503);
    assert.equal(c.status.code, 2);
  }
  assert.equal(byReq.n1.name, 'chat no-such-model');
  assert.equal(children(byReq.n1).length, 0);

  // the caller's trace context is honoured and the attempt spans are propagated upstream
  const r1 = byReq.r1;
  assert.equal(r1.traceId, TRACE);
  assert.equal(r1.parentSpanId, PARENT);
  assert.equal(r1.traceState, 'vendor=x');
  const rc = children(r1).sort((x, y) => attrs(x)['sluice.attempt'] - attrs(y)['sluice.attempt']);
  assert.deepEqual(rc.map((c) => [attrs(c)['sluice.provider'], attrs(c)['sluice.attempt.outcome']]),
    [['mock-fail', 'server_error'], ['mock', 'success']]);
  const seen = await (await fetch(`http://127.0.0.1:${mockPort}/mock/requests`)).json();
  const upstream = (seen.requests || seen).filter((q) => q.headers && q.headers['x-request-id'] === 'r1');
  assert.deepEqual(upstream.map((q) => q.headers.traceparent), rc.map((c) => `00-${TRACE}-${c.spanId}-01`));
  assert.ok(upstream.every((q) => q.headers.tracestate === 'vendor=x'));

  const m = parseMetrics(await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text());
  assert.equal(m.get('sluice_trace_spans_exported_total'), spans.length);
  assert.equal(m.get('sluice_trace_spans_dropped_total{reason="queue_full"}'), 0);
});
