// mcp-consumers.test.js: MCP requests carry the same consumer keys as the LLM
// endpoints (docs/governance.md): without a key the gateway answers 401, and
// a consumer's mcp_tools globs ("server/tool") decide which tools it sees in
// tools/list and may call (JSON-RPC error -32003 otherwise), over both
// transports and through a proxy server.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startSluice, waitFor } from './lib/harness.js';
import { connect, mcpConfig, startRestService, startSdkSseServer, stopAll } from './lib/mcp.js';

const ALICE = 'sk-alice-mcp-0123456789';
const BOB = 'sk-bob-mcp-0123456789';
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

test('the gateway stops cleanly', { timeout: 30_000 }, async () => {
  assert.equal(await gw.stop(), 0);
});
