// mcp-consumers.test.js: MCP requests carry the same consumer keys as the LLM
// endpoints (docs/governance.md): without a key the gateway answers 401, and
// a consumer's mcp_tools globs ("server/tool") decide which tools it sees in
// tools/list and may call (JSON-RPC error -32003 otherwise), over both
// transports and through a proxy server. Each JSON-RPC request (a message
// with an id) counts against the consumer's requests_per_* limits
// (state.backend memory here): past the limit the answer is HTTP 429 with
// retry-after, x-ratelimit-* and JSON-RPC error -32029, which the SDK client
// sees as an error; notifications, GET streams and refused requests do not
// count, and the usage API shows the rest.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { httpRequest, startSluice, waitFor } from './lib/harness.js';
import { awayFromMinuteEnd, usage } from './governance-scenarios.js';
import { connect, mcpConfig, startRestService, startSdkSseServer, stopAll } from './lib/mcp.js';

const ALICE = 'sk-alice-mcp-0123456789';
const BOB = 'sk-bob-mcp-0123456789';
const CAROL = 'sk-carol-mcp-0123456789';
const DAVE = 'sk-dave-mcp-0123456789';
const ERIN = 'sk-erin-mcp-0123456789';
const JSON_SSE = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
let svc, sdk, gw;

before(async () => {
  svc = await startRestService();
  sdk = await startSdkSseServer();
  gw = await startSluice({
    config: (p) =>
      mcpConfig({
        ...p,
        servers: `
- name: weather
  type: rest
  tools:
    - name: get_text
      request: { url: "${svc.url}/text" }
    - name: get_echo
      request: { url: "${svc.url}/echo" }
    - name: admin_reset
      request: { method: POST, url: "${svc.url}/echo" }
- name: hub
  type: proxy
  upstreams:
    - { name: sdk, url: "${sdk.url}", transport: sse }
`,
        extra: `
consumers:
  - name: alice
    keys: ["${ALICE}"]
    mcp_tools: ["weather/get_*", "hub/sdk_add"]
  - name: bob
    keys: ["${BOB}"]
  - name: carol
    keys: ["${CAROL}"]
    limits: { requests_per_minute: 5, tokens_per_minute: 1, budget_usd_per_day: 0.000001 }
  - name: dave
    keys: ["${DAVE}"]
    limits: { requests_per_minute: 3 }
  - name: erin
    keys: ["${ERIN}"]
    limits: { requests_per_day: 4 }
`,
      }),
  });
});

after(async () => {
  await stopAll();
  await svc?.close();
  await sdk?.close();
});

const texts = (r) => r.content.map((c) => c.text).join('');
const auth = (key) => ({ authorization: `Bearer ${key}` });

test('without a key: 401', { timeout: 20_000 }, async () => {
  const r = await fetch(`${gw.url}/mcp/weather`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
  });
  assert.equal(r.status, 401);
  await r.arrayBuffer();
  await assert.rejects(connect(`${gw.url}/mcp/weather`, 'http', { headers: auth('sk-wrong') }));
  const sse = await fetch(`${gw.url}/mcp/weather/sse`, { headers: { accept: 'text/event-stream' } });
  assert.equal(sse.status, 401);
  await sse.arrayBuffer();
});

for (const transport of ['http', 'sse']) {
  const url = (s) => (transport === 'sse' ? `${gw.url}/mcp/${s}/sse` : `${gw.url}/mcp/${s}`);

  test(`${transport}: a consumer sees and calls only its tools`, { timeout: 30_000 }, async () => {
    const c = await connect(url('weather'), transport, { headers: auth(ALICE) });
    try {
      const { tools } = await c.listTools();
      assert.deepEqual(tools.map((t) => t.name), ['get_text', 'get_echo']);
      assert.equal(texts(await c.callTool({ name: 'get_text', arguments: {} })), 'plain words');
      await assert.rejects(c.callTool({ name: 'admin_reset', arguments: {} }), (e) => e.code === -32003 && /not allowed/.test(e.message));
    } finally {
      await c.close();
    }
    const h = await connect(url('hub'), transport, { headers: auth(ALICE) });
    try {
      const { tools } = await h.listTools();
      assert.deepEqual(tools.map((t) => t.name), ['sdk_add']);
      assert.equal(texts(await h.callTool({ name: 'sdk_add', arguments: { a: 1, b: 2 } })), '3');
      await assert.rejects(h.callTool({ name: 'sdk_whoami', arguments: {} }), (e) => e.code === -32003);
    } finally {
      await h.close();
    }
  });

  test(`${transport}: a consumer without mcp_tools may use every tool`, { timeout: 30_000 }, async () => {
    const c = await connect(url('weather'), transport, { headers: auth(BOB) });
    try {
      const { tools } = await c.listTools();
      assert.deepEqual(tools.map((t) => t.name), ['get_text', 'get_echo', 'admin_reset']);
      const r = await c.callTool({ name: 'admin_reset', arguments: {} });
      assert.equal(r.isError, false);
    } finally {
      await c.close();
    }
  });
}

test('the access log names the consumer of MCP requests', { timeout: 10_000 }, async () => {
  const denied = await waitFor(() => gw.stdoutLines.find((l) => l.api === 'mcp' && l.consumer === 'alice' && l.upstream_model === 'weather/admin_reset'), {
    what: 'the denied call in the access log',
  });
  assert.match(denied.error, /not allowed/);
  assert.ok(gw.stdoutLines.some((l) => l.api === 'mcp' && l.consumer === 'bob'));
});

function post(key, body, headers = {}) {
  return httpRequest(`${gw.url}/mcp/weather`, { method: 'POST', headers: { ...JSON_SSE, ...auth(key), ...headers }, body });
}

test('http: requests_per_minute covers MCP requests; the SDK sees the 429 as an error', { timeout: 90_000 }, async () => {
  await awayFromMinuteEnd(15_000);
  // token and spend limits do not apply to MCP (nothing is reserved for them): only the 5 requests count
  const c = await connect(`${gw.url}/mcp/weather`, 'http', { headers: auth(CAROL) }); // initialize: 1
  try {
    assert.equal((await c.listTools()).tools.length, 3); // 2
    for (let i = 0; i < 3; i++) assert.equal(texts(await c.callTool({ name: 'get_text', arguments: {} })), 'plain words'); // 3..5
    await assert.rejects(c.callTool({ name: 'get_text', arguments: {} }), (e) => {
      assert.equal(e.code, 429, e.message);
      assert.match(e.message, /-32029/);
      assert.match(e.message, /Rate limit reached for consumer 'carol' on requests_per_minute: limit 5, used 5, requested 1/);
      return true;
    });
    await assert.rejects(c.listTools(), (e) => e.code === 429);
  } finally {
    await c.close();
  }
  const u = await usage(gw.adminUrl, 'carol');
  assert.equal(u.windows.minute.requests, 5, JSON.stringify(u)); // refused requests are not counted
  assert.equal(u.windows.minute.limits.requests, 5);
  assert.equal(u.windows.minute.tokens, 0);
  const line = await waitFor(() => gw.stdoutLines.find((l) => l.api === 'mcp' && l.consumer === 'carol' && l.status === 429), { what: 'a 429 line' });
  assert.match(line.error, /requests_per_minute/);
});

test('sse: the legacy transport counts too; the 429 reaches the SDK client', { timeout: 90_000 }, async () => {
  await awayFromMinuteEnd(15_000);
  const c = await connect(`${gw.url}/mcp/weather/sse`, 'sse', { headers: auth(DAVE) }); // initialize: 1
  try {
    await c.listTools(); // 2
    assert.equal(texts(await c.callTool({ name: 'get_echo', arguments: {} })).length > 0, true); // 3
    await assert.rejects(c.callTool({ name: 'get_text', arguments: {} }), (e) => /HTTP 429/.test(e.message) && /-32029/.test(e.message));
  } finally {
    await c.close();
  }
  assert.equal((await usage(gw.adminUrl, 'dave')).windows.minute.requests, 3);
});

test('what counts: requests with an id (batches: each); notifications and GET streams are free', { timeout: 30_000 }, async () => {
  // requests_per_day: 4 (a day window: no minute boundary to race)
  const init = await post(ERIN, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
  assert.equal(init.status, 200, init.text);
  assert.equal(init.headers.get('x-ratelimit-limit-requests'), '4');
  assert.equal(init.headers.get('x-ratelimit-remaining-requests'), '3');
  assert.match(init.headers.get('x-ratelimit-reset-requests'), /^(\d+h)?(\d+m)?\d+m?s$/);
  assert.equal(init.headers.get('x-ratelimit-limit-tokens'), null);
  const sid = init.headers.get('mcp-session-id');
  const inSession = (body) => post(ERIN, body, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-03-26' });
  assert.equal((await inSession({ jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);
  // a batch of two requests and a notification: 2
  const batch = await inSession([
    { jsonrpc: '2.0', id: 2, method: 'ping' },
    { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'x', progress: 1 } },
    { jsonrpc: '2.0', id: 3, method: 'tools/list' },
  ]);
  assert.equal(batch.status, 200, batch.text);
  assert.deepEqual(batch.json.map((m) => m.id), [2, 3]);
  assert.equal(batch.headers.get('x-ratelimit-remaining-requests'), '1');
  // two more do not fit in the one left: the whole batch is refused, an error for each request
  const over = await inSession([
    { jsonrpc: '2.0', id: 4, method: 'ping' },
    { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'get_text', arguments: {} } },
  ]);
  assert.equal(over.status, 429, over.text);
  assert.deepEqual(over.json.map((m) => m.id), [4, 5]);
  for (const m of over.json) {
    assert.equal(m.error.code, -32029);
    assert.equal(m.error.data.limit, 'requests_per_day');
    assert.ok(m.error.data.retry_after >= 1);
    assert.match(m.error.message, /on requests_per_day: limit 4, used 3, requested 2/);
  }
  assert.ok(Number(over.headers.get('retry-after')) >= 1);
  assert.equal(over.headers.get('x-ratelimit-remaining-requests'), '1');
  // the last one fits
  const last = await inSession({ jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'get_text', arguments: {} } });
  assert.equal(last.status, 200, last.text);
  assert.equal(last.headers.get('x-ratelimit-remaining-requests'), '0');
  // then: a single request gets its own id back in the error
  const refused = await inSession({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'get_text', arguments: {} } });
  assert.equal(refused.status, 429, refused.text);
  assert.equal(refused.json.jsonrpc, '2.0');
  assert.equal(refused.json.id, 7);
  assert.equal(refused.json.error.code, -32029);
  assert.equal(refused.headers.get('content-type'), 'application/json');
  assert.equal(Number(refused.headers.get('retry-after')), refused.json.error.data.retry_after);
  // free: notifications, the standalone GET stream, DELETE
  assert.equal((await inSession({ jsonrpc: '2.0', method: 'notifications/roots/list_changed' })).status, 202);
  const get = await fetch(`${gw.url}/mcp/weather`, { headers: { ...auth(ERIN), accept: 'text/event-stream', 'mcp-session-id': sid } });
  assert.equal(get.status, 200);
  await get.body.cancel();
  const del = await fetch(`${gw.url}/mcp/weather`, { method: 'DELETE', headers: { ...auth(ERIN), 'mcp-session-id': sid } });
  assert.equal(del.status, 200);
  const u = await usage(gw.adminUrl, 'erin');
  assert.equal(u.windows.day.requests, 4, JSON.stringify(u));
  assert.equal(u.windows.day.limits.requests, 4);
});

test('consumers without limits: MCP requests are recorded for the usage API', { timeout: 10_000 }, async () => {
  const u = await usage(gw.adminUrl, 'bob');
  assert.ok(u.windows.day.requests >= 6, JSON.stringify(u)); // 2 transports x (initialize, tools/list, tools/call)
  assert.deepEqual(u.windows.day.limits, {});
});

test('the gateway stops cleanly', { timeout: 30_000 }, async () => {
  assert.equal(await gw.stop(), 0);
});
