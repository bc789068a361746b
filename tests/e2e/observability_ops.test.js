// Observability operations: the access log is reopened on SIGUSR1 (log
// rotation); metrics and tracing can be switched off by config (for make
// bench); a full span queue drops spans and counts them; the caller's
// traceparent is passed upstream even with tracing off.
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
