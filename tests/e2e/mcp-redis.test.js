// mcp-redis.test.js: MCP sessions kept in Redis (state.backend: redis,
// docs/mcp.md): two gateway instances share one real redis-server, so a
// session opened on one is served by the other:
//  - a client initializes on instance A (the SDK, Streamable HTTP), then
//    tools/list and tools/call with the same MCP-Session-Id go to instance B;
//    DELETE on B ends it for A too (404 afterwards)
//  - a proxy session: the upstream session A opened is used by B
//  - the record is one Redis value with the session TTL; another consumer or
//    another server presenting the id does not find it
//  - legacy SSE sessions stay on their instance (memory) and still work
//  - Redis stopped: on_error allow keeps new sessions on the instance, deny
//    answers 503; after Redis is back sessions are shared again
//  - consumer limits cover MCP requests: one requests_per_minute shared by
//    both instances (429 + JSON-RPC -32029, an error for the SDK client); a
//    client that leaves while its reservation waits on Redis gets it given
//    back; Redis stopped: on_error allow admits past the limit, deny is 503
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { httpRequest, startSluice, waitFor } from './lib/harness.js';
import { connect, mcpConfig, startEverything, startRestService, stopAll } from './lib/mcp.js';
import { awayFromMinuteEnd, metricValue, startRedis, usage } from './governance-scenarios.js';

const ALICE = 'sk-alice-mcp-redis-0123456789';
const BOB = 'sk-bob-mcp-redis-0123456789';
const SHARED = 'sk-shared-mcp-redis-0123456789';
const PAUSER = 'sk-pauser-mcp-redis-0123456789';
const TIGHT = 'sk-tight-mcp-redis-0123456789';
const PREFIX = `e2e-mcp-${process.pid}:`;
const JSON_SSE = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const run = promisify(execFile);

let redis, svc, everything, gwA, gwB;

function config(p, onError) {
  return mcpConfig({
    ...p,
    servers: `
- name: weather
  type: rest
  tools:
    - name: get_weather
      args: [ { name: city, type: string, required: true } ]
      request: { method: GET, url: "${svc.url}/weather", headers: { X-Weather-Key: "wk-secret" } }
      response: { prepend: "Weather: ", pick: [current.temp] }
    - name: text
      request: { url: "${svc.url}/text" }
- name: hub
  type: proxy
  upstreams:
    - { name: ev, url: "${everything.url}" }
`,
    extra: `
state:
  backend: redis
  redis: { url: "${redis.url}", timeout_ms: 5000, on_error: ${onError}, key_prefix: "${PREFIX}" }
consumers:
  - name: alice
    keys: ["${ALICE}"]
  - name: bob
    keys: ["${BOB}"]
  - name: shared
    keys: ["${SHARED}"]
    limits: { requests_per_minute: 6 }
  - name: pauser
    keys: ["${PAUSER}"]
    limits: { requests_per_day: 1000 }
  - name: tight
    keys: ["${TIGHT}"]
    limits: { requests_per_day: 2 }
`,
  });
}

before(async () => {
  redis = await startRedis();
  svc = await startRestService();
  everything = await startEverything('streamableHttp');
  gwA = await startSluice({ config: (p) => config(p, 'allow') });
  gwB = await startSluice({ config: (p) => config(p, 'deny') });
});

after(async () => {
  await stopAll();
  await gwA?.stop();
  await gwB?.stop();
  await svc?.close();
  await redis?.stop();
});

const auth = (key) => ({ authorization: `Bearer ${key}` });
const texts = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('');

function rpc(gw, method, pathname, { body, headers = {} } = {}) {
  return httpRequest(`${gw.url}${pathname}`, { method, headers: { ...JSON_SSE, ...headers }, body });
}

async function initialize(gw, server, key = ALICE) {
  const r = await rpc(gw, 'POST', `/mcp/${server}`, {
    headers: auth(key),
    body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } },
  });
  return { ...r, sid: r.headers.get('mcp-session-id') };
}

function inSession(gw, server, sid, body, key = ALICE) {
  return rpc(gw, 'POST', `/mcp/${server}`, {
    headers: { ...auth(key), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' },
    body,
  });
}

async function redisCli(...args) {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), ...args]);
  return stdout.trim();
}

test('a session served by a second instance via Redis', { timeout: 30_000 }, async () => {
  // A: the SDK client initializes (initialize + notifications/initialized)
  const a = await connect(`${gwA.url}/mcp/weather`, 'http', { headers: auth(ALICE) });
  const sid = a.transport?.sessionId ?? a._transport?.sessionId;
  assert.ok(sid, 'the SDK kept the MCP-Session-Id');
  try {
    // the record is one Redis value, with the session TTL, naming its server and consumer
    const key = `${PREFIX}mcp:s:${sid}`;
    const rec = JSON.parse(await redisCli('GET', key));
    assert.match(rec.v, /^20\d\d-\d\d-\d\d$/);
    assert.equal(rec.i, true, 'notifications/initialized was recorded');
    assert.equal(rec.s, 'weather');
    assert.equal(rec.c, 'alice');
    const ttl = Number(await redisCli('PTTL', key));
    assert.ok(ttl > 0 && ttl <= 3_600_000, `PTTL ${ttl}`);

    // B never saw the session: it serves tools/list and tools/call from the record in Redis
    const list = await inSession(gwB, 'weather', sid, { jsonrpc: '2.0', id: 2, method: 'tools/list' });
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json.result.tools.map((t) => t.name), ['get_weather', 'text']);
    const call = await inSession(gwB, 'weather', sid, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'get_weather', arguments: { city: 'Oslo' } } });
    assert.equal(call.status, 200, call.text);
    assert.equal(call.json.result.isError, false);
    assert.equal(texts(call.json.result), 'Weather: 12');

    // A's client goes on in the same session
    assert.equal(texts(await a.callTool({ name: 'text', arguments: {} })), 'plain words');

    // DELETE on B ends it everywhere: the record is gone and A answers 404
    const del = await rpc(gwB, 'DELETE', '/mcp/weather', { headers: { ...auth(ALICE), 'mcp-session-id': sid } });
    assert.equal(del.status, 200, del.text);
    assert.equal(await redisCli('EXISTS', key), '0');
    const gone = await inSession(gwA, 'weather', sid, { jsonrpc: '2.0', id: 4, method: 'tools/list' });
    assert.equal(gone.status, 404, gone.text);
    assert.equal(gone.json.error.code, -32001);
    const again = await rpc(gwB, 'DELETE', '/mcp/weather', { headers: { ...auth(ALICE), 'mcp-session-id': sid } });
    assert.equal(again.status, 404);
    await assert.rejects(a.listTools());
  } finally {
    await a.close().catch(() => {});
  }
});

test('a proxy session: B calls the upstream in the session A opened', { timeout: 30_000 }, async () => {
  const init = await initialize(gwA, 'hub');
  assert.equal(init.status, 200, init.text);
  const n = await inSession(gwA, 'hub', init.sid, { jsonrpc: '2.0', method: 'notifications/initialized' });
  assert.equal(n.status, 202);
  const rec = JSON.parse(await redisCli('GET', `${PREFIX}mcp:s:${init.sid}`));
  assert.equal(rec.u.length, 1);
  assert.ok(rec.u[0], 'the upstream session id is in the record');

  const call = await inSession(gwB, 'hub', init.sid, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'ev_echo', arguments: { message: 'via B' } } });
  assert.equal(call.status, 200, call.text);
  // JSON, or an event stream when the upstream sent notifications first: the message with id 2
  const msgs = call.json ? [call.json] : [...call.text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]));
  const msg = msgs.find((m) => m.id === 2);
  assert.ok(msg?.result, call.text);
  assert.match(texts(msg.result), /via B/);
  // the record still names the same upstream session (B did not open another one)
  const after = JSON.parse(await redisCli('GET', `${PREFIX}mcp:s:${init.sid}`));
  assert.equal(after.u[0], rec.u[0]);
  const del = await rpc(gwB, 'DELETE', '/mcp/hub', { headers: { ...auth(ALICE), 'mcp-session-id': init.sid } });
  assert.equal(del.status, 200, del.text);
});

test('another consumer or another server does not find the session', { timeout: 20_000 }, async () => {
  const init = await initialize(gwA, 'weather');
  assert.equal(init.status, 200, init.text);
  const bob = await inSession(gwB, 'weather', init.sid, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, BOB);
  assert.equal(bob.status, 404, bob.text);
  const other = await inSession(gwB, 'hub', init.sid, { jsonrpc: '2.0', id: 2, method: 'tools/list' });
  assert.equal(other.status, 404, other.text);
  const delBob = await rpc(gwB, 'DELETE', '/mcp/weather', { headers: { ...auth(BOB), 'mcp-session-id': init.sid } });
  assert.equal(delBob.status, 404);
  const get = await fetch(`${gwB.url}/mcp/weather`, { headers: { ...auth(BOB), accept: 'text/event-stream', 'mcp-session-id': init.sid } });
  assert.equal(get.status, 404);
  await get.arrayBuffer();
  // the owner still has it, on either instance
  const mine = await inSession(gwB, 'weather', init.sid, { jsonrpc: '2.0', id: 3, method: 'ping' });
  assert.equal(mine.status, 200, mine.text);
});

test('legacy SSE sessions stay with their stream and work with state.backend redis', { timeout: 20_000 }, async () => {
  const c = await connect(`${gwA.url}/mcp/weather/sse`, 'sse', { headers: auth(ALICE) });
  try {
    const { tools } = await c.listTools();
    assert.deepEqual(tools.map((t) => t.name), ['get_weather', 'text']);
    assert.equal(texts(await c.callTool({ name: 'text', arguments: {} })), 'plain words');
  } finally {
    await c.close();
  }
});

test('a client that goes away while its session is read from Redis: the call is dropped', { timeout: 30_000 }, async () => {
  const init = await initialize(gwB, 'weather');
  assert.equal(init.status, 200, init.text);
  const INFLIGHT = /^sluice_inflight_requests /;
  const base = await metricValue(gwB.adminUrl, INFLIGHT);
  // Redis holds every command for a while: the next request waits on its session read
  await redisCli('CLIENT', 'PAUSE', '1500', 'ALL');
  const ac = new AbortController();
  const req = fetch(`${gwB.url}/mcp/weather`, {
    method: 'POST',
    signal: ac.signal,
    headers: { ...JSON_SSE, ...auth(ALICE), 'mcp-session-id': init.sid },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
  }).catch((e) => e);
  await waitFor(async () => (await metricValue(gwB.adminUrl, INFLIGHT)) > base, { what: 'the request to wait on redis' });
  ac.abort();
  assert.ok((await req) instanceof Error);
  // the reply, once Redis goes on, finds nobody; the session is served as before
  const next = await inSession(gwB, 'weather', init.sid, { jsonrpc: '2.0', id: 3, method: 'tools/list' });
  assert.equal(next.status, 200, next.text);
  const line = await waitFor(() => gwB.stdoutLines.find((l) => l.api === 'mcp' && l.status === 499), { what: 'a 499 log line' });
  assert.equal(line.model, 'weather');
  // a standalone GET stream opens on the instance that did not create the session
  const get = await fetch(`${gwA.url}/mcp/weather`, { headers: { ...auth(ALICE), accept: 'text/event-stream', 'mcp-session-id': init.sid } });
  assert.equal(get.status, 200);
  await get.body.cancel();
});

test('one requests_per_minute holds across two instances; the SDK clients see the 429', { timeout: 90_000 }, async () => {
  await awayFromMinuteEnd(15_000);
  const a = await connect(`${gwA.url}/mcp/weather`, 'http', { headers: auth(SHARED) }); // initialize on A: 1
  const b = await connect(`${gwB.url}/mcp/weather`, 'http', { headers: auth(SHARED) }); // initialize on B: 2
  try {
    for (let i = 0; i < 4; i++) assert.equal(texts(await (i % 2 ? b : a).callTool({ name: 'text', arguments: {} })), 'plain words'); // 3..6
    for (const c of [a, b])
      await assert.rejects(c.callTool({ name: 'text', arguments: {} }), (e) => e.code === 429 && /-32029/.test(e.message) && /requests_per_minute: limit 6, used 6/.test(e.message));
  } finally {
    await a.close();
    await b.close();
  }
  for (const g of [gwA, gwB]) {
    const u = await usage(g.adminUrl, 'shared');
    assert.equal(u.backend, 'redis');
    assert.equal(u.windows.minute.requests, 6, JSON.stringify(u));
  }
  // a raw refusal: the headers the LLM endpoints send, and the JSON-RPC error for the request's id
  const r = await initialize(gwB, 'weather', SHARED);
  assert.equal(r.status, 429, r.text);
  assert.equal(r.json.id, 1);
  assert.equal(r.json.error.code, -32029);
  assert.equal(r.json.error.data.limit, 'requests_per_minute');
  assert.equal(r.headers.get('x-ratelimit-limit-requests'), '6');
  assert.equal(r.headers.get('x-ratelimit-remaining-requests'), '0');
  assert.ok(Number(r.headers.get('retry-after')) >= 1 && Number(r.headers.get('retry-after')) <= 60);
  assert.ok((await metricValue(gwB.adminUrl, /^sluice_ratelimit_rejections_total\{consumer="shared",limit="requests_per_minute"\}/)) >= 2);
});

test('a client that goes away while its reservation waits on Redis: it is given back', { timeout: 30_000 }, async () => {
  const base = (await usage(gwB.adminUrl, 'pauser')).windows.day.requests;
  const INFLIGHT = /^sluice_inflight_requests /;
  const inflight = await metricValue(gwB.adminUrl, INFLIGHT);
  // initialize reads no session: the request waits on its rate limit reservation alone
  await redisCli('CLIENT', 'PAUSE', '1500', 'ALL');
  const ac = new AbortController();
  const req = fetch(`${gwB.url}/mcp/weather`, {
    method: 'POST',
    signal: ac.signal,
    headers: { ...JSON_SSE, ...auth(PAUSER) },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  }).catch((e) => e);
  await waitFor(async () => (await metricValue(gwB.adminUrl, INFLIGHT)) > inflight, { what: 'the request to wait on redis' });
  ac.abort();
  assert.ok((await req) instanceof Error);
  await waitFor(() => gwB.stdoutLines.find((l) => l.api === 'mcp' && l.consumer === 'pauser' && l.status === 499), { what: 'a 499 log line' });
  await waitFor(async () => (await metricValue(gwB.adminUrl, INFLIGHT)) === inflight, { what: 'the request to end' });
  // once Redis goes on: the next request is admitted, and only it is counted
  const next = await initialize(gwB, 'weather', PAUSER);
  assert.equal(next.status, 200, next.text);
  await waitFor(async () => (await usage(gwB.adminUrl, 'pauser')).windows.day.requests === base + 1, {
    what: 'the abandoned reservation to be given back',
  });
});

test('redis stopped: allow keeps new sessions on the instance, deny answers 503; shared again once back', { timeout: 60_000 }, async () => {
  const before = await initialize(gwA, 'weather');
  assert.equal(before.status, 200, before.text);

  await redis.stop();
  // deny (B): a request that needs its session, and a new session, get 503
  const denied = await inSession(gwB, 'weather', before.sid, { jsonrpc: '2.0', id: 2, method: 'tools/list' });
  assert.equal(denied.status, 503, denied.text);
  const deniedInit = await initialize(gwB, 'weather');
  assert.equal(deniedInit.status, 503, deniedInit.text);
  // allow (A): a session only Redis knows is not found; a new one is kept on A and served by A
  const lost = await inSession(gwA, 'weather', before.sid, { jsonrpc: '2.0', id: 2, method: 'tools/list' });
  assert.equal(lost.status, 404, lost.text);
  const local = await initialize(gwA, 'weather');
  assert.equal(local.status, 200, local.text);
  for (let i = 0; i < 4; i++) {
    const r = await inSession(gwA, 'weather', local.sid, { jsonrpc: '2.0', id: 3 + i, method: 'tools/list' });
    assert.equal(r.status, 200, r.text);
  }
  assert.match(gwA.stderr, /mcp: the session store in redis failed/);
  const METRIC = /^sluice_state_errors_total\{backend="redis",on_error="mcp"\}/;
  // Counted: at least once each (the first call after the drop may see the
  // connection closing, which is not counted as an outage by design).
  assert.ok((await metricValue(gwA.adminUrl, METRIC)) >= 1);
  assert.ok((await metricValue(gwB.adminUrl, METRIC)) >= 1);

  await redis.start(); // empty
  // B serves sessions again once it has reconnected (backoff <= 2 s); sessions made now are shared
  let shared;
  await waitFor(async () => {
    shared = await initialize(gwB, 'weather');
    return shared.status === 200;
  }, { timeoutMs: 20_000, what: 'instance B to keep sessions in redis again' });
  await waitFor(async () => (await inSession(gwA, 'weather', shared.sid, { jsonrpc: '2.0', id: 9, method: 'ping' })).status === 200, {
    timeoutMs: 20_000,
    what: 'instance A to read sessions from redis again',
  });
  // the session A kept while Redis was down is still served by A
  const still = await inSession(gwA, 'weather', local.sid, { jsonrpc: '2.0', id: 10, method: 'tools/list' });
  assert.equal(still.status, 200, still.text);
});

test('limits with redis stopped: on_error allow admits past the limit, deny answers 503', { timeout: 30_000 }, async () => {
  await redis.stop();
  try {
    // allow (A): requests_per_day 2, yet all five requests are answered (a session kept on A)
    const init = await initialize(gwA, 'weather', TIGHT);
    assert.equal(init.status, 200, init.text);
    for (let i = 0; i < 4; i++) {
      const r = await inSession(gwA, 'weather', init.sid, { jsonrpc: '2.0', id: 2 + i, method: 'tools/list' }, TIGHT);
      assert.equal(r.status, 200, r.text);
    }
    assert.ok((await metricValue(gwA.adminUrl, /^sluice_state_errors_total\{backend="redis",on_error="allow"\}/)) >= 5);
    // deny (B): 503 before anything runs, a JSON-RPC error, retry-after
    const denied = await initialize(gwB, 'weather', TIGHT);
    assert.equal(denied.status, 503, denied.text);
    assert.equal(denied.json.id, 1);
    assert.equal(denied.json.error.code, -32603);
    assert.match(denied.json.error.message, /rate limit state is unavailable/);
    assert.equal(denied.headers.get('retry-after'), '1');
    assert.ok((await metricValue(gwB.adminUrl, /^sluice_state_errors_total\{backend="redis",on_error="deny"\}/)) >= 1);
  } finally {
    await redis.start();
  }
});

test('both gateways stop cleanly (sanitizer builds: no leak on these paths)', { timeout: 40_000 }, async () => {
  assert.equal(await gwA.stop(), 0);
  assert.equal(await gwB.stop(), 0);
});
