// harness.js: what every end-to-end test uses to run the real binaries.
//
//   const mock = await startMock({ args: ['--tokens', '8'] });
//   const gw = await startSluice({ config: (p) => gatewayConfig({ ...p, mockPort: mock.port }) });
//   ... drive gw.url with an SDK or raw sockets ...
//
// Binaries come from SLUICE_BIN and SLUICE_MOCK_BIN (scripts/test.sh points
// them at build/ or build/asan/); by default build/sluice and build/sluice-mock
// of this checkout. Every process started here is killed after the test file
// (an `after` hook), its output is saved under SLUICE_TEST_LOGS (default
// build/test-logs/e2e/) and a sanitizer report in its stderr fails the file.
//
// Ports: each process gets free loopback ports (freePort()). Another process
// can take a port between our probe and the binary's bind, so starting retries
// with fresh ports when the binary exits early complaining about the address.
// Configs passed as functions of the ports can be retried; literal YAML cannot.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SLUICE_BIN = process.env.SLUICE_BIN || path.join(ROOT, 'build/sluice');
export const MOCK_BIN = process.env.SLUICE_MOCK_BIN || path.join(ROOT, 'build/sluice-mock');
const LOG_DIR = process.env.SLUICE_TEST_LOGS || path.join(ROOT, 'build/test-logs/e2e');

// The provider key written into generated configs: tests check that this, and
// never the caller's key, reaches the provider.
export const PROVIDER_KEY = 'sk-mock-provider-key-0123456789';
export const CALLER_KEY = 'sk-caller-secret-do-not-forward';

const READY_TIMEOUT_MS = 10_000;
const POLL_MS = 20;
const START_ATTEMPTS = 5;
const SANITIZER_RE = /ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer/;
const ADDR_IN_USE_RE = /address already in use|EADDRINUSE|in use|bind|cannot listen/i; // sluice-mock: "cannot listen on H:P: ..."

const live = new Set(); // processes started by this file and not yet reaped
const started = []; // every process, for the sanitizer check and logs
const tmpDirs = [];

/** A loopback TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls fn() every intervalMs until it returns a truthy value; throws after timeoutMs. */
export async function waitFor(fn, { timeoutMs = 10_000, intervalMs = POLL_MS, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${lastErr.message}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

// ---- processes ----

function testFileTag() {
  const main = process.argv[1] ? path.basename(process.argv[1], '.js') : 'e2e';
  return main.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/**
 * Spawns a binary and tracks it: output is collected (stdout by line), the
 * exit is awaited, and the after hook kills it if the test did not.
 */
function track(name, bin, args, env) {
  const proc = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const p = {
    name,
    proc,
    args,
    stdoutRaw: [], // every stdout line
    stdoutLines: [], // stdout lines that are JSON objects (the access log)
    stderrChunks: [],
    exitCode: null,
    signal: null,
    exited: null,
    get stderr() {
      return this.stderrChunks.join('');
    },
  };
  p.exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      p.exitCode = code;
      p.signal = signal;
      live.delete(p);
    });
    // 'close' fires after the output streams are drained, so stderr is complete.
    proc.on('close', (code, signal) => resolve(code ?? signalExitCode(signal)));
    proc.on('error', (e) => {
      p.stderrChunks.push(`spawn ${bin}: ${e.message}\n`);
      live.delete(p);
      resolve(-1);
    });
  });
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    p.stdoutRaw.push(line);
    if (line.startsWith('{')) {
      try {
        p.stdoutLines.push(JSON.parse(line));
      } catch {
        /* not a log line */
      }
    }
  });
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => p.stderrChunks.push(d));
  live.add(p);
  started.push(p);
  return p;
}

function signalExitCode(signal) {
  const n = signal ? os.constants.signals[signal] : 0;
  return n ? 128 + n : -1;
}

/** Sends SIGTERM, waits for the exit and returns the exit code (128+N for a signal). */
async function stopProcess(p, { timeoutMs = 15_000 } = {}) {
  if (p.exitCode === null && p.signal === null) p.proc.kill('SIGTERM');
  const t = setTimeout(() => p.proc.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(t);
  return code;
}

function tail(s, n = 40) {
  return s.split('\n').slice(-n).join('\n');
}

/**
 * Starts sluice-mock on a free port (or opts.port) and waits for its
 * "sluice-mock listening on HOST:PORT" line.
 * Returns { port, url (http://127.0.0.1:P), baseUrl (.../v1), proc, stderr,
 * requests(), clearRequests(), stop(), kill(signal) }.
 */
export async function startMock({ args = [], env = {}, port } = {}) {
  let lastErr;
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const p0 = port ?? (await freePort());
    const p = track('sluice-mock', MOCK_BIN, ['--port', String(p0), ...args], env);
    try {
      await waitForMockLine(p, p0);
      const url = `http://127.0.0.1:${p0}`;
      return {
        port: p0,
        url,
        baseUrl: `${url}/v1`,
        get proc() {
          return p.proc;
        },
        get stderr() {
          return p.stderr;
        },
        process: p,
        requests: () => mockRequests(url),
        clearRequests: () => fetch(`${url}/mock/requests`, { method: 'DELETE' }).then((r) => r.arrayBuffer()),
        stop: () => stopProcess(p),
        kill: (signal = 'SIGKILL') => p.proc.kill(signal),
      };
    } catch (e) {
      lastErr = e;
      await stopProcess(p, { timeoutMs: 2000 });
      if (port !== undefined || !ADDR_IN_USE_RE.test(p.stderr)) break;
    }
  }
  throw lastErr;
}

function waitForMockLine(p, port) {
  return new Promise((resolve, reject) => {
    const want = new RegExp(`^sluice-mock listening on \\S+:${port}\\s*$`);
    const check = () => p.stdoutRaw.some((l) => want.test(l));
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`sluice-mock did not report listening within ${READY_TIMEOUT_MS} ms\nstderr:\n${tail(p.stderr)}`));
    }, READY_TIMEOUT_MS);
    const iv = setInterval(() => {
      if (check()) {
        cleanup();
        resolve();
      }
    }, POLL_MS);
    p.exited.then((code) => {
      if (check()) return;
      cleanup();
      reject(new Error(`sluice-mock exited (${code}) before listening\nstderr:\n${tail(p.stderr)}`));
    });
    function cleanup() {
      clearTimeout(timer);
      clearInterval(iv);
    }
  });
}

/** The requests the mock received (GET /mock/requests): [{seq, method, path, query, headers, body}]. */
export async function mockRequests(mockUrl) {
  const r = await fetch(`${mockUrl}/mock/requests`);
  if (r.status !== 200) throw new Error(`GET /mock/requests: ${r.status}`);
  const j = await r.json();
  return Array.isArray(j) ? j : j.requests ?? j.data ?? [];
}

/** Writes a config file in a fresh temp dir; returns its path. */
export function writeConfig(yaml, name = 'sluice.yaml') {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-e2e-'));
  tmpDirs.push(dir);
  const file = path.join(dir, name);
  writeFileSync(file, yaml);
  return file;
}

function portsFromYaml(yaml) {
  const listen = /^\s*listen:\s*\[?\s*"?[^"\s:\]]+:(\d+)/m.exec(yaml);
  const admin = /^\s*admin_listen:\s*"?[^"\s:]+:(\d+)/m.exec(yaml);
  if (!listen || !admin) throw new Error('startSluice: the config must set server.listen and server.admin_listen');
  return { port: Number(listen[1]), adminPort: Number(admin[1]) };
}

/**
 * Starts the gateway with a YAML config and waits until GET /readyz on the
 * admin port answers 200. config is YAML text, or a function
 * ({port, adminPort}) => YAML that is called with free ports (and again with
 * new ones if the first pick was taken meanwhile).
 * Returns { url, adminUrl, port, adminPort, configPath, proc, stdoutLines,
 * stdoutRaw, stderr, writeConfig(yaml), reload(), stop(), kill(signal), exited }.
 */
export async function startSluice({ config, env = {}, args = [] } = {}) {
  let lastErr;
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    let ports;
    let yaml;
    if (typeof config === 'function') {
      ports = { port: await freePort(), adminPort: await freePort() };
      yaml = config(ports);
    } else {
      yaml = config;
      ports = portsFromYaml(yaml);
    }
    const configPath = writeConfig(yaml);
    const p = track('sluice', SLUICE_BIN, ['-c', configPath, ...args], env);
    const adminUrl = `http://127.0.0.1:${ports.adminPort}`;
    try {
      await waitReady(p, adminUrl);
      return {
        url: `http://127.0.0.1:${ports.port}`,
        adminUrl,
        port: ports.port,
        adminPort: ports.adminPort,
        configPath,
        yaml,
        process: p,
        get proc() {
          return p.proc;
        },
        get stdoutLines() {
          return p.stdoutLines;
        },
        get stdoutRaw() {
          return p.stdoutRaw;
        },
        get stderr() {
          return p.stderr;
        },
        get exitCode() {
          return p.exitCode;
        },
        exited: p.exited,
        /** Replaces the config file atomically (the next SIGHUP reads it whole, never half-written). */
        writeConfig: (text) => {
          writeFileSync(`${configPath}.tmp`, text);
          renameSync(`${configPath}.tmp`, configPath);
        },
        reload: () => p.proc.kill('SIGHUP'),
        stop: (opts) => stopProcess(p, opts),
        kill: (signal = 'SIGKILL') => p.proc.kill(signal),
      };
    } catch (e) {
      lastErr = e;
      await stopProcess(p, { timeoutMs: 2000 });
      if (typeof config !== 'function' || !ADDR_IN_USE_RE.test(p.stderr)) break;
    }
  }
  throw lastErr;
}

async function waitReady(p, adminUrl) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (p.exitCode !== null || p.signal !== null) {
      await p.exited;
      throw new Error(`sluice exited (${p.exitCode ?? p.signal}) before it was ready\nstderr:\n${tail(p.stderr)}`);
    }
    try {
      const r = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      throw new Error(`sluice: GET ${adminUrl}/readyz did not answer 200 within ${READY_TIMEOUT_MS} ms\nstderr:\n${tail(p.stderr)}`);
    }
    await sleep(POLL_MS);
  }
}

/**
 * Throws, with the process's stderr, when one of the started binaries has
 * exited: used in beforeEach so that after a crash every later test says why
 * instead of failing with ECONNREFUSED.
 */
export function assertAlive(...handles) {
  for (const h of handles) {
    const p = h?.process;
    if (p && (p.exitCode !== null || p.signal !== null)) {
      throw new Error(`${p.name} is no longer running (exit ${p.exitCode ?? p.signal})\nstderr:\n${tail(p.stderr)}`);
    }
  }
}

/** Runs a binary to completion (for --check, --version): { code, stdout, stderr }. */
export function runBinary(bin, args, { env = {}, timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      clearTimeout(t);
      const rec = { name: path.basename(bin), args, stderrChunks: [stderr], get stderr() { return stderr; } };
      started.push(rec);
      resolve({ code: code ?? signalExitCode(signal), stdout, stderr });
    });
  });
}

// ---- cleanup: after every test file ----

after(async () => {
  for (const p of [...live]) p.proc.kill('SIGKILL');
  await Promise.all(started.filter((p) => p.exited).map((p) => p.exited));
  saveLogs();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  const bad = started.filter((p) => SANITIZER_RE.test(p.stderr));
  if (bad.length) {
    throw new Error(
      bad.map((p) => `${p.name} ${p.args.join(' ')} reported a sanitizer error:\n${sanitizerExcerpt(p.stderr)}`).join('\n\n'),
    );
  }
});

// Last resort if the runner dies without running hooks: never leave binaries behind.
process.on('exit', () => {
  for (const p of live) p.proc.kill('SIGKILL');
});

function saveLogs() {
  try {
    mkdirSync(LOG_DIR, { recursive: true });
    const file = path.join(LOG_DIR, `${testFileTag()}.log`);
    for (const p of started) {
      appendFileSync(
        file,
        `===== ${p.name} ${p.args.join(' ')} (exit ${p.exitCode ?? p.signal ?? '?'})\n` +
          `----- stdout\n${(p.stdoutRaw || []).join('\n')}\n----- stderr\n${p.stderr}\n`,
      );
    }
  } catch {
    /* logs are a convenience */
  }
}

function sanitizerExcerpt(s) {
  const lines = s.split('\n');
  const i = lines.findIndex((l) => SANITIZER_RE.test(l));
  return lines
    .slice(Math.max(0, i - 2), i + 40)
    .filter((l) => !/^(=>| +)0x[0-9a-f]+:|Shadow byte/.test(l))
    .join('\n');
}

// ---- configs ----

/**
 * A gateway config for tests: data plane on 127.0.0.1:port, admin on
 * 127.0.0.1:adminPort, one openai-compatible provider "mock" at the mock's
 * /v1, and these public models:
 *   demo-chat   -> mock model "mock-upstream-chat" (no retries)
 *   demo-embed  -> mock model "mock-upstream-embed"
 *   demo-*      -> mock, name passed through
 * Options: limits (merged into server.limits), server (extra server keys as
 * YAML lines), extraProviders / extraModels (YAML list items, placed before the
 * defaults so they win), extra (top-level YAML appended), workers.
 */
export function gatewayConfig({
  port,
  adminPort,
  mockPort,
  limits = {},
  server = '',
  extraProviders = '',
  extraModels = '',
  extra = '',
  workers,
  drainTimeoutMs = 10_000,
} = {}) {
  const lim = Object.entries(limits)
    .map(([k, v]) => `    ${k}: ${v}\n`)
    .join('');
  return `# generated by tests/e2e/lib/harness.js
server:
  listen: ["127.0.0.1:${port}"]
  admin_listen: "127.0.0.1:${adminPort}"
${workers !== undefined ? `  workers: ${workers}\n` : ''}  drain_timeout_ms: ${drainTimeoutMs}
${lim ? `  limits:\n${lim}` : ''}${indent(server, 2)}
providers:
  - name: mock
    type: openai-compatible
    base_url: http://127.0.0.1:${mockPort}/v1
    api_keys: ["${PROVIDER_KEY}"]
${indent(extraProviders, 2)}
models:
${indent(extraModels, 2)}
  - name: demo-chat
    targets: [ { provider: mock, model: mock-upstream-chat } ]
    retry: { attempts: 1 }
  - name: demo-embed
    targets: [ { provider: mock, model: mock-upstream-embed } ]
    retry: { attempts: 1 }
  - name: "demo-*"
    targets: [ { provider: mock } ]
    retry: { attempts: 1 }
${extra}
`;
}

// Shifts a YAML fragment right by n spaces (its own relative indentation is kept).
function indent(text, n) {
  if (!text) return '';
  const pad = ' '.repeat(n);
  return text
    .replace(/^\n+|\s+$/g, '')
    .split('\n')
    .map((l) => (l.trim() ? pad + l : l))
    .join('\n');
}

/**
 * The text sluice-mock generates for n output tokens (docs/mock.md):
 * token i is WORDS[i % 16], with a joining space before every token but the first.
 */
const MOCK_WORDS = ['lorem', 'ipsum', 'dolor', 'sit', 'amet', 'consectetur', 'adipiscing', 'elit', 'sed', 'do',
  'eiusmod', 'tempor', 'incididunt', 'ut', 'labore', 'et'];
export function mockText(n) {
  return Array.from({ length: n }, (_, i) => MOCK_WORDS[i % MOCK_WORDS.length]).join(' ');
}

// ---- HTTP helpers ----

/** fetch() with a bound; returns { status, headers, text, json }. */
export async function httpRequest(url, { method = 'GET', headers = {}, body, timeoutMs = 30_000 } = {}) {
  const r = await fetch(url, {
    method,
    headers,
    body: body === undefined || typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, text, json };
}

/** The assistant text of an OpenAI chat answer: a whole one, or a stream's content deltas. */
export function chatAnswerText(text) {
  if (!text.startsWith('data:')) return JSON.parse(text).choices[0].message.content;
  return text.split('\n').filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)).choices?.[0]?.delta?.content ?? '').join('');
}

// ---- raw sockets: for malformed input, framing and slow clients ----

/**
 * Parses one HTTP/1.1 response from buf (a Buffer) starting at 0.
 * Returns { response, consumed } or null when more bytes are needed.
 * With eof = true a close-delimited body ends at the end of buf.
 */
export function parseResponse(buf, eof = false) {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const head = buf.subarray(0, headEnd).toString('latin1');
  const [statusLine, ...lines] = head.split('\r\n');
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(statusLine)}`);
  const headers = {};
  for (const l of lines) {
    const c = l.indexOf(':');
    const k = l.slice(0, c).trim().toLowerCase();
    const v = l.slice(c + 1).trim();
    headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
  }
  const status = Number(m[2]);
  const response = { version: m[1], status, reason: m[3] ?? '', headers, body: Buffer.alloc(0), rawHead: head };
  let pos = headEnd + 4;
  if ((status >= 100 && status < 200) || status === 204 || status === 304) return { response, consumed: pos };
  if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
    const parts = [];
    for (;;) {
      const le = buf.indexOf('\r\n', pos);
      if (le < 0) return null;
      const size = parseInt(buf.subarray(pos, le).toString('latin1').split(';')[0], 16);
      if (Number.isNaN(size)) throw new Error('bad chunk size in response');
      pos = le + 2;
      if (size === 0) {
        const end = buf.indexOf('\r\n\r\n', pos - 2); // trailers (usually none) end with an empty line
        if (end < 0) return null;
        pos = end + 4;
        break;
      }
      if (buf.length < pos + size + 2) return null;
      parts.push(buf.subarray(pos, pos + size));
      pos += size + 2;
    }
    response.body = Buffer.concat(parts);
    return { response, consumed: pos };
  }
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (buf.length < pos + n) return null;
    response.body = buf.subarray(pos, pos + n);
    return { response, consumed: pos + n };
  }
  if (!eof) return null;
  response.body = buf.subarray(pos);
  return { response, consumed: buf.length };
}

/**
 * A raw connection. write(bytes) sends; nextResponse(timeoutMs) resolves with
 * the next complete response (interim 1xx included); waitClose(timeoutMs)
 * resolves true when the server closed (FIN or reset) within the bound.
 */
export function rawConnect(port, { host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    const c = {
      socket,
      buf: Buffer.alloc(0),
      closed: false,
      reset: false,
      error: null,
      waiters: [],
      write(bytes) {
        return new Promise((res) => {
          if (c.closed) return res(false);
          socket.write(bytes, (err) => res(!err));
        });
      },
      end() {
        socket.end();
      },
      destroy() {
        socket.destroy();
      },
      /** Takes the next complete response off the buffer, or null. */
      take() {
        let r = null;
        try {
          r = c.buf.length ? parseResponse(c.buf, c.closed) : null;
        } catch (e) {
          // Not HTTP at all: hand it over as a response with status 0 so the test fails readably.
          r = { response: { status: 0, malformed: e.message, headers: {}, body: c.buf }, consumed: c.buf.length };
        }
        if (!r) return null;
        c.buf = c.buf.subarray(r.consumed);
        return r.response;
      },
      nextResponse(timeoutMs = 10_000) {
        return c.until(() => c.take() ?? (c.closed ? Symbol.for('closed') : null), timeoutMs).then((r) => {
          if (r === Symbol.for('closed') || r === null) return null;
          return r;
        });
      },
      waitClose(timeoutMs = 10_000) {
        return c.until(() => c.closed, timeoutMs).then((v) => v === true);
      },
      /** Resolves with pred()'s truthy value, or null after timeoutMs. */
      until(pred, timeoutMs) {
        return new Promise((res) => {
          const v = pred();
          if (v) return res(v);
          const w = () => {
            const x = pred();
            if (x) {
              done();
              res(x);
            }
          };
          const t = setTimeout(() => {
            done();
            res(null);
          }, timeoutMs);
          const done = () => {
            clearTimeout(t);
            c.waiters = c.waiters.filter((f) => f !== w);
          };
          c.waiters.push(w);
        });
      },
    };
    const wake = () => [...c.waiters].forEach((w) => w());
    socket.on('data', (d) => {
      c.buf = Buffer.concat([c.buf, d]);
      wake();
    });
    socket.on('end', () => {
      c.closed = true;
      wake();
    });
    socket.on('close', () => {
      c.closed = true;
      wake();
    });
    socket.on('error', (e) => {
      c.error = e;
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') c.reset = true;
      c.closed = true;
      wake();
    });
    let connected = false;
    const connectTimer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to 127.0.0.1:${port} timed out`));
    }, 10_000);
    socket.once('connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      resolve(c);
    });
    socket.once('error', (e) => {
      if (connected) return;
      clearTimeout(connectTimer);
      reject(e);
    });
    live.add({ proc: { kill: () => socket.destroy() } });
  });
}

/**
 * Sends raw bytes (a string, Buffer, or an array of them written one after
 * another) and collects what comes back until the server closes, `responses`
 * complete responses arrived, or timeoutMs passed.
 * Returns { status, headers, body (string), closed, reset, responses, raw }.
 */
export async function rawRequest(port, bytes, { timeoutMs = 5000, responses: want = 1, waitForClose = true } = {}) {
  const c = await rawConnect(port);
  const got = [];
  try {
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) await c.write(b);
    const deadline = Date.now() + timeoutMs;
    while (got.length < want) {
      const r = await c.nextResponse(Math.max(1, deadline - Date.now()));
      if (!r) break;
      if (r.status >= 100 && r.status < 200) continue; // interim answers are not the response
      got.push(r);
    }
    if (waitForClose && !c.closed) await c.waitClose(Math.max(1, deadline - Date.now()));
  } finally {
    c.destroy();
  }
  const first = got[0];
  return {
    status: first?.status ?? null,
    headers: first?.headers ?? {},
    body: first ? first.body.toString('utf8') : '',
    closed: c.closed,
    reset: c.reset,
    responses: got,
    raw: c.buf,
  };
}
