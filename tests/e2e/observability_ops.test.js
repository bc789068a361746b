// Observability operations: the access log is reopened on SIGUSR1 (log
// rotation); metrics and tracing can be switched off by config (for make
// bench); a full span queue drops spans and counts them; the caller's
// traceparent is passed upstream even with tracing off; streamed answers'
// text is logged (and cut) like whole ones, and spans carry the provider's
// model name and finish reason, for every protocol pair (a fake upstream).
import { test, after } from 'node:test';
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
const dirs = [];
const servers = [];

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

function start(bin, args) {
  const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  p.out = '';
  p.stdout.on('data', (d) => (p.out += d));
  p.stderr.on('data', (d) => (p.out += d));
  procs.push(p);
  return p;
}

// Starts a mock and a gateway with the given telemetry section; returns ports and paths.
async function setup(telemetry, extraServer = '') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-obsops-'));
  dirs.push(dir);
  const [gw, admin, mock] = await Promise.all([freePort(), freePort(), freePort()]);
  start(path.join(BUILD, 'sluice-mock'), ['--port', String(mock), '--quiet']);
  const log = path.join(dir, 'access.log');
  fs.writeFileSync(path.join(dir, 'sluice.yaml'), `
server:
  listen: ["127.0.0.1:${gw}"]
  admin_listen: "127.0.0.1:${admin}"
  workers: 1
  access_log: "${log}"
${extraServer}
providers:
  - { name: mock, type: openai-compatible, base_url: "http://127.0.0.1:${mock}/v1" }
models:
  - { name: m, targets: [ { provider: mock } ] }
telemetry:
${telemetry}
`);
  const proc = start(path.join(BUILD, 'sluice'), ['-c', path.join(dir, 'sluice.yaml')]);
  await until(async () => (await fetch(`http://127.0.0.1:${mock}/v1/models`)).ok, 'mock');
  await until(async () => (await fetch(`http://127.0.0.1:${admin}/readyz`)).ok, 'gateway');
  return { gw, admin, mock, dir, log, proc };
}

function chat(gw, id, headers = {}) {
  return fetch(`http://127.0.0.1:${gw}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id, ...headers },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  }).then(async (r) => ({ status: r.status, body: await r.text() }));
}

after(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.on('exit', r)))));
  for (const p of procs) {
    // a clean exit on SIGTERM, and nothing from the sanitizers when run against build/asan
    assert.doesNotMatch(p.out, /AddressSanitizer|runtime error|LeakSanitizer/);
    assert.equal(p.exitCode, 0, p.out.slice(-2000));
  }
  for (const s of servers) s.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

test('SIGUSR1 reopens the access log after rotation', async () => {
  const s = await setup('  metrics: { enabled: true }');
  assert.equal((await chat(s.gw, 'before')).status, 200);
  await until(() => fs.readFileSync(s.log, 'utf8').includes('"before"'), 'first line');
  fs.renameSync(s.log, `${s.log}.1`);
  s.proc.kill('SIGUSR1');
  await until(() => fs.existsSync(s.log), 'new log file');
  assert.equal((await chat(s.gw, 'after')).status, 200);
  await until(() => fs.readFileSync(s.log, 'utf8').includes('"after"'), 'line in the new file');
  const old = fs.readFileSync(`${s.log}.1`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const now = fs.readFileSync(s.log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(old.map((l) => l.request_id), ['before']);
  assert.deepEqual(now.map((l) => l.request_id), ['after']);
  assert.equal('prompt' in now[0], false); // log_content is off by default
});

test('metrics and tracing off by config; traceparent still passed on', async () => {
  let hits = 0;
  const recv = http.createServer((req, res) => {
    hits++;
    res.end('{}');
  });
  servers.push(recv);
  await new Promise((r) => recv.listen(0, '127.0.0.1', r));
  const s = await setup('  metrics: { enabled: false }\n  traces: { endpoint: off }');
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  assert.equal((await chat(s.gw, 'off1', { traceparent: tp })).status, 200);
  assert.equal((await chat(s.gw, 'off2')).status, 200);
  const text = await (await fetch(`http://127.0.0.1:${s.admin}/metrics`)).text();
  assert.doesNotMatch(text, /sluice_requests_total\{/);
  assert.doesNotMatch(text, /gen_ai_client_operation_duration_seconds_bucket/);
  assert.match(text, /sluice_trace_spans_exported_total 0/);
  const seen = await (await fetch(`http://127.0.0.1:${s.mock}/mock/requests`)).json();
  const reqs = (seen.requests || seen).filter((q) => q.headers && q.headers['x-request-id']);
  const byId = Object.fromEntries(reqs.map((q) => [q.headers['x-request-id'], q.headers]));
  assert.equal(byId.off1.traceparent.slice(0, 36), tp.slice(0, 36)); // same trace, gateway's span id
  assert.equal(byId.off1.traceparent.slice(-3), '-01');
  assert.equal(byId.off2.traceparent, undefined);
  assert.equal(hits, 0);
});

test('a full span queue drops spans and counts them', async () => {
  // The receiver never answers: one export stays in flight, the queue (2 spans) fills up.
  const stalled = [];
  const recv = http.createServer((req) => stalled.push(req));
  servers.push(recv);
  await new Promise((r) => recv.listen(0, '127.0.0.1', r));
  const s = await setup(`  traces:
    endpoint: "http://127.0.0.1:${recv.address().port}/v1/traces"
    batch_size: 2
    queue_size: 2
    flush_interval_ms: 10
    timeout_ms: 600000`);
  assert.equal((await chat(s.gw, 'q1')).status, 200); // 2 spans: request + attempt
  await until(() => stalled.length === 1, 'the first export to be in flight');
  for (const id of ['q2', 'q3', 'q4']) assert.equal((await chat(s.gw, id)).status, 200);
  const m = await (await fetch(`http://127.0.0.1:${s.admin}/metrics`)).text();
  assert.match(m, /sluice_trace_queue_spans 2\n/); // q2 waits
  assert.match(m, /sluice_trace_spans_dropped_total\{reason="queue_full"\} 4\n/); // q3, q4
  for (const r of stalled) r.socket.destroy();
});

// ---- streamed content, finish reasons and the provider's model name ----
//
// A fake upstream speaking the three protocols answers with a fixed text (multi-byte characters included) under a
// model name of its own ("echo-*", unlike the configured upstream model "up-*") and a max-tokens finish. Every caller
// protocol is sent, streamed and not, to every upstream protocol; the access log's completion and the span's
// gen_ai.response.model / gen_ai.response.finish_reasons are checked against what was sent.

const TEXT = 'Grüße aus Zürich, 模型 says hello 🚀 and the stream goes…on: naïve café, ünïcödé everywhere.';
const PIECES = TEXT.match(/.{1,7}/gsu); // chunked on character boundaries
const ECHO = { o: 'echo-oai-2024', a: 'echo-claude-2024', g: 'echo-gemini-002' };

function sse(res, events) {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const [name, data] of events) res.write(`${name ? `event: ${name}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  res.end();
}

// knobs from the provider's headers: x-fake: tool (OpenAI: a text then a tool call), nomodel (no model name)
function fakeOpenai(res, body, knob) {
  const model = knob === 'nomodel' ? undefined : ECHO.o;
  const usage = { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 };
  const text = knob === 'tool' ? 'Checking.' : TEXT;
  const call = { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Zürich"}' } };
  const finish = knob === 'tool' ? 'tool_calls' : 'length';
  if (!body.stream) {
    const message = { role: 'assistant', content: text, ...(knob === 'tool' ? { tool_calls: [call] } : {}) };
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model, choices: [{ index: 0, message, finish_reason: finish }], usage }));
  }
  const chunk = (delta, fr = null, extra = {}) => ({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: fr }], ...extra });
  const ev = [[null, chunk({ role: 'assistant', content: '' })]];
  for (const p of knob === 'tool' ? [text] : PIECES) ev.push([null, chunk({ content: p })]);
  if (knob === 'tool') {
    ev.push([null, chunk({ tool_calls: [{ index: 0, id: call.id, type: 'function', function: { name: 'get_weather', arguments: '' } }] })]);
    ev.push([null, chunk({ tool_calls: [{ index: 0, function: { arguments: call.function.arguments } }] })]);
  }
  ev.push([null, chunk({}, finish)]);
  if (body.stream_options?.include_usage) ev.push([null, { id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [], usage }]);
  ev.push([null, '[DONE]']);
  sse(res, ev);
}

function fakeAnthropic(res, body) {
  const usage = { input_tokens: 3, output_tokens: 7 };
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model: ECHO.a, content: [{ type: 'text', text: TEXT }], stop_reason: 'max_tokens', stop_sequence: null, usage }));
  }
  const ev = [['message_start', { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: ECHO.a, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } } }],
    ['ping', { type: 'ping' }],
    ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }]];
  for (const p of PIECES) ev.push(['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } }]);
  ev.push(['content_block_stop', { type: 'content_block_stop', index: 0 }],
    ['message_delta', { type: 'message_delta', delta: { stop_reason: 'max_tokens', stop_sequence: null }, usage: { output_tokens: 7 } }],
    ['message_stop', { type: 'message_stop' }]);
  sse(res, ev);
}

function fakeGemini(res, stream, knob) {
  const modelVersion = knob === 'nomodel' ? undefined : ECHO.g;
  const usageMetadata = { promptTokenCount: 3, candidatesTokenCount: 7, totalTokenCount: 10 };
  const cand = (text, fr) => ({ content: { parts: [{ text }], role: 'model' }, index: 0, ...(fr ? { finishReason: fr } : {}) });
  if (!stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ candidates: [cand(TEXT, 'MAX_TOKENS')], usageMetadata, modelVersion, responseId: 'r1' }));
  }
  sse(res, PIECES.map((p, i) => [null, { candidates: [cand(p, i === PIECES.length - 1 ? 'MAX_TOKENS' : null)],
    ...(i === PIECES.length - 1 ? { usageMetadata } : {}), modelVersion, responseId: 'r1' }]));
}

function fakeResponses(res, body) {
  const done = { id: 'resp_1', object: 'response', model: ECHO.o, status: 'completed',
    output: [{ type: 'message', id: 'msg_1', role: 'assistant', content: [{ type: 'output_text', text: TEXT, annotations: [] }] }],
    usage: { input_tokens: 3, output_tokens: 7, total_tokens: 10 } };
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(done));
  }
  sse(res, [['response.created', { type: 'response.created', response: { ...done, status: 'in_progress', output: [], usage: null } }],
    ...PIECES.map((p) => ['response.output_text.delta', { type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: p }]),
    ['response.completed', { type: 'response.completed', response: done }]]);
}

async function fakeUpstream() {
  const srv = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      const body = JSON.parse(raw || '{}');
      const knob = req.headers['x-fake'];
      if (req.url.startsWith('/v1/chat/completions')) return fakeOpenai(res, body, knob);
      if (req.url.startsWith('/v1/messages')) return fakeAnthropic(res, body);
      if (req.url.startsWith('/v1/responses')) return fakeResponses(res, body);
      if (req.url.startsWith('/v1beta/models/')) return fakeGemini(res, req.url.includes(':streamGenerateContent'), knob);
      res.writeHead(404).end('{}');
    });
  });
  servers.push(srv);
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return srv.address().port;
}

async function contentGateway(fake, telemetry) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-obsstream-'));
  dirs.push(dir);
  const [gw, admin] = await Promise.all([freePort(), freePort()]);
  const log = path.join(dir, 'access.log');
  const base = `http://127.0.0.1:${fake}`;
  fs.writeFileSync(path.join(dir, 'sluice.yaml'), `
server:
  listen: ["127.0.0.1:${gw}"]
  admin_listen: "127.0.0.1:${admin}"
  workers: 1
  access_log: "${log}"
providers:
  - { name: fo, type: openai-compatible, base_url: "${base}/v1" }
  - { name: fo-tool, type: openai-compatible, base_url: "${base}/v1", headers: { x-fake: tool } }
  - { name: fo-nomodel, type: openai-compatible, base_url: "${base}/v1", headers: { x-fake: nomodel } }
  - { name: fa, type: anthropic, base_url: "${base}/v1", api_keys: [k] }
  - { name: fg, type: gemini, base_url: "${base}/v1beta", api_keys: [k] }
  - { name: fg-nomodel, type: gemini, base_url: "${base}/v1beta", api_keys: [k], headers: { x-fake: nomodel } }
models:
  - { name: to-o, targets: [ { provider: fo, model: up-o } ] }
  - { name: to-a, targets: [ { provider: fa, model: up-a } ], defaults: { max_tokens: 100 } }
  - { name: to-g, targets: [ { provider: fg, model: up-g } ] }
  - { name: same-o, targets: [ { provider: fo } ] }
  - { name: tool-o, targets: [ { provider: fo-tool, model: up-tool } ] }
  - { name: nomodel-o, targets: [ { provider: fo-nomodel, model: up-nomodel-o } ] }
  - { name: nomodel-g, targets: [ { provider: fg-nomodel, model: up-nomodel-g } ] }
telemetry:
${telemetry}
`);
  start(path.join(BUILD, 'sluice'), ['-c', path.join(dir, 'sluice.yaml')]);
  await until(async () => (await fetch(`http://127.0.0.1:${admin}/readyz`)).ok, 'gateway');
  return { gw, log };
}

// One request in the caller's protocol; returns the answer's text as the caller saw it.
async function ask(gw, caller, model, id, stream) {
  const url = `http://127.0.0.1:${gw}`;
  const msg = { role: 'user', content: `hello from ${id}` };
  const req = {
    openai: [`${url}/v1/chat/completions`, { model, stream, messages: [msg] }],
    anthropic: [`${url}/v1/messages`, { model, stream, max_tokens: 100, messages: [msg] }],
    gemini: [`${url}/v1beta/models/${model}:${stream ? 'streamGenerateContent?alt=sse' : 'generateContent'}`,
      { contents: [{ role: 'user', parts: [{ text: msg.content }] }] }],
    responses: [`${url}/v1/responses`, { model, stream, input: msg.content }],
  }[caller];
  const res = await fetch(req[0], { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id }, body: JSON.stringify(req[1]) });
  const raw = await res.text();
  assert.equal(res.status, 200, raw);
  const textOf = {
    openai: (o) => (stream ? o.choices?.[0]?.delta?.content : o.choices[0].message.content) ?? '',
    anthropic: (o) => (stream ? (o.type === 'content_block_delta' && o.delta.type === 'text_delta' ? o.delta.text : '')
      : o.content.filter((c) => c.type === 'text').map((c) => c.text).join('')),
    gemini: (o) => (o.candidates?.[0]?.content?.parts || []).map((p) => p.text ?? '').join(''),
    responses: (o) => (stream ? (o.type === 'response.output_text.delta' ? o.delta : '')
      : o.output.flatMap((it) => it.content || []).filter((c) => c.type === 'output_text').map((c) => c.text).join('')),
  }[caller];
  if (!stream) return textOf(JSON.parse(raw));
  return raw.split('\n').filter((l) => l.startsWith('data: {')).map((l) => textOf(JSON.parse(l.slice(6)))).join('');
}

function accessLines(log, n) {
  return until(() => {
    if (!fs.existsSync(log)) return null;
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    return lines.length >= n ? Object.fromEntries(lines.map((l) => [l.request_id, l])) : null;
  }, `${n} access-log lines`);
}

function spanAttrs(span) {
  const o = {};
  for (const { key, value: v } of span.attributes || [])
    o[key] = v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue ?? v.boolValue ?? v.arrayValue?.values.map((x) => x.stringValue));
  return o;
}

const CALLERS3 = ['openai', 'anthropic', 'gemini'];
const UPSTREAMS = { o: 'openai', a: 'anthropic', g: 'gemini' };

test('streamed completions are logged in every protocol pair, with the provider model and finish reason on the span', async () => {
  const got = [];
  const recv = http.createServer((req, res) => {
    let b = '';
    req.on('data', (d) => (b += d));
    req.on('end', () => {
      got.push(JSON.parse(b));
      res.end('{}');
    });
  });
  servers.push(recv);
  await new Promise((r) => recv.listen(0, '127.0.0.1', r));
  const fake = await fakeUpstream();
  const g = await contentGateway(fake, `  log_content: true
  traces: { endpoint: "http://127.0.0.1:${recv.address().port}/v1/traces", batch_size: 8, flush_interval_ms: 20 }`);
  const expect = {}; // id -> { text, model, finish }
  for (const caller of CALLERS3)
    for (const [u, proto] of Object.entries(UPSTREAMS))
      for (const stream of [true, false]) {
        const id = `${caller[0]}${u}${stream ? 's' : 'n'}`;
        const text = await ask(g.gw, caller, `to-${u}`, id, stream);
        assert.equal(text, TEXT, `${caller} -> ${proto} ${stream ? 'stream' : 'whole'}: what the caller got`);
        expect[id] = { text: TEXT, model: ECHO[u], finish: 'length' };
      }
  // fast path without a model rewrite; text then a tool call (arguments not logged, as for whole answers);
  // an upstream that names no model: the configured one
  expect.same = { text: await ask(g.gw, 'openai', 'same-o', 'same', true), model: ECHO.o, finish: 'length' };
  for (const caller of ['openai', 'anthropic'])
    for (const stream of [true, false]) {
      const id = `tool-${caller[0]}${stream ? 's' : 'n'}`;
      assert.equal(await ask(g.gw, caller, 'tool-o', id, stream), 'Checking.');
      expect[id] = { text: 'Checking.', model: ECHO.o, finish: 'tool_calls' };
    }
  for (const stream of [true, false]) { // the Responses API (OpenAI only): output_text, the response's model
    const id = `resp-${stream ? 's' : 'n'}`;
    assert.equal(await ask(g.gw, 'responses', 'to-o', id, stream), TEXT);
    expect[id] = { text: TEXT, model: ECHO.o, finish: null };
  }
  expect.nmo = { text: await ask(g.gw, 'openai', 'nomodel-o', 'nmo', true), model: 'up-nomodel-o', finish: 'length' };
  expect.nmg = { text: await ask(g.gw, 'openai', 'nomodel-g', 'nmg', true), model: 'up-nomodel-g', finish: 'length' };
  const ids = Object.keys(expect);

  const lines = await accessLines(g.log, ids.length);
  for (const id of ids) {
    assert.equal(lines[id].completion, expect[id].text, `completion of ${id}`);
    assert.equal(lines[id].content_truncated, false, id);
    assert.equal(lines[id].status, 200, id);
  }
  assert.equal(lines.oas.stream, true);
  assert.equal(lines.gas.api, 'streamGenerateContent');

  const spans = await until(() => {
    const all = got.flatMap((b) => b.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans))).filter((s) => s.kind === 2);
    return all.length >= ids.length ? Object.fromEntries(all.map((s) => [spanAttrs(s)['gen_ai.response.id'], spanAttrs(s)])) : null;
  }, 'request spans');
  for (const id of ids) {
    assert.equal(spans[id]['gen_ai.response.model'], expect[id].model, `response model of ${id}`);
    if (expect[id].finish) assert.deepEqual(spans[id]['gen_ai.response.finish_reasons'], [expect[id].finish], `finish reasons of ${id}`);
  }
});

test('log_content_max_bytes cuts streamed completions on a UTF-8 boundary, like whole ones', async () => {
  const max = 64;
  const bytes = Buffer.from(TEXT);
  assert.equal(bytes[max] & 0xc0, 0x80, 'the test text has a multi-byte character across the cut');
  let n = max;
  while ((bytes[n] & 0xc0) === 0x80) n--;
  const cut = bytes.subarray(0, n).toString();
  const fake = await fakeUpstream();
  const g = await contentGateway(fake, `  log_content: true\n  log_content_max_bytes: ${max}`); // no tracing
  const ids = [];
  for (const caller of CALLERS3)
    for (const u of Object.keys(UPSTREAMS))
      for (const stream of [true, false]) {
        const id = `${caller[0]}${u}${stream ? 's' : 'n'}`;
        assert.equal(await ask(g.gw, caller, `to-${u}`, id, stream), TEXT);
        ids.push(id);
      }
  for (const stream of [true, false]) {
    assert.equal(await ask(g.gw, 'responses', 'to-o', `resp-${stream ? 's' : 'n'}`, stream), TEXT);
    ids.push(`resp-${stream ? 's' : 'n'}`);
  }
  const lines = await accessLines(g.log, ids.length);
  for (const id of ids) {
    assert.equal(lines[id].completion, cut, `completion of ${id}`);
    assert.equal(lines[id].content_truncated, true, id);
  }
});
