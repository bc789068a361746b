// mcp.test.js: the MCP gateway (SPEC §6, docs/mcp.md) driven by the official
// SDK (@modelcontextprotocol/sdk) over both transports:
//  - a REST-template server backed by a local HTTP service (query, header,
//    body, pick, template, error template, upstream credentials, output schema)
//  - the Petstore OpenAPI document, converted by `sluice openapi2mcp` and
//    loaded as `type: openapi`, every operation called
//  - an aggregated proxy of server-everything (Streamable HTTP) and an SDK
//    server over legacy SSE
//  - transport rules with raw HTTP: sessions, status codes, JSON-RPC errors
//  - cancellation from another POST, and streams that end on a drain
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { httpRequest, runBinary, SLUICE_BIN, startSluice, waitFor, ROOT } from './lib/harness.js';
import { connect, mcpConfig, startEverything, startRestService, startSdkSseServer, stopAll } from './lib/mcp.js';
import path from 'node:path';

const PETSTORE = path.join(ROOT, 'examples/openapi/petstore.yaml');
const PET_KEY = 'pet-key-123';

let svc, everything, sdkSse, gw, converted;

function restServers(svcUrl) {
  return `
- name: weather
  type: rest
  title: Weather tools
  instructions: Ask for a city.
  config: { apiKey: "wk-secret", unit: "C" }
  upstream_auth: { type: api_key, in: header, name: X-Weather-Key, value: "{{config.apiKey}}" }
  tools:
    - name: get_weather
      description: Current weather for a city
      args:
        - { name: city, type: string, required: true, description: City name }
      request: { method: GET, url: "${svcUrl}/weather" }
      response: { prepend: "Weather: ", pick: [current.temp] }
    - name: weather_report
      args: [ { name: city, type: string, required: true } ]
      request: { method: GET, url: "${svcUrl}/weather" }
      response: { template: "{{response.city}} is {{response.current.temp}} {{config.unit}} (asked for {{args.city}})" }
    - name: weather_struct
      args: [ { name: city, type: string, required: true } ]
      output_schema: { type: object, properties: { city: { type: string } }, required: [city] }
      request: { method: GET, url: "${svcUrl}/weather" }
    - name: echo
      description: Echoes what it is sent
      args:
        - { name: id, type: integer, required: true, in: path }
        - { name: q, type: string, in: query }
        - { name: trace, type: string, in: header, key: X-Trace }
        - { name: note, type: string, in: body }
        - { name: count, type: integer, in: body, key: n, default: "7" }
        - { name: mode, type: string, enum: [fast, slow], in: query }
      request: { method: POST, url: "${svcUrl}/echo/{{args.id}}", headers: { X-Fixed: "fixed-{{config.unit}}" } }
    - name: fail
      request: { method: GET, url: "${svcUrl}/fail" }
      error: { template: "down ({{status}}): {{response.message}}" }
    - name: fail_plain
      request: { method: GET, url: "${svcUrl}/fail" }
    - name: text
      request: { method: GET, url: "${svcUrl}/text" }
      response: { append: " (end)" }
    - name: slow
      request: { method: GET, url: "${svcUrl}/slow" }
      timeout_ms: 600000
    - name: unreachable
      request: { method: GET, url: "http://127.0.0.1:1/nothing" }
- name: paged
  tools:
${[1, 2, 3, 4, 5].map((i) => `    - { name: t${i}, request: { url: "${svcUrl}/text" } }`).join('\n')}
`;
}

before(async () => {
  svc = await startRestService({ apiKey: PET_KEY });
  everything = await startEverything('streamableHttp');
  sdkSse = await startSdkSseServer();
  const conv = await runBinary(SLUICE_BIN, ['openapi2mcp', PETSTORE, '--name', 'pets', '--base-url', `${svc.url}/v1`]);
  assert.equal(conv.code, 0, conv.stderr);
  converted = conv.stdout;
  gw = await startSluice({
    env: { MCP_petKey: PET_KEY },
    config: (p) =>
      mcpConfig({
        ...p,
        drainTimeoutMs: 600_000, // streams must end on the drain, not by this timeout
        mcp: `page_size: 2\nallowed_origins: ["https://app.example.com"]`,
        servers:
          restServers(svc.url) +
          converted +
          `
- name: petstore
  type: openapi
  spec: ${PETSTORE}
  base_url: ${svc.url}/v1
  config: { petKey: "${PET_KEY}" }
- name: hub
  type: proxy
  upstreams:
    - { name: ev, url: "${everything.url}" }
    - { name: sdk, url: "${sdkSse.url}", transport: sse, prefix: "sdk." }
`,
      }),
  });
});

after(async () => {
  await stopAll();
  await svc?.close();
  await sdkSse?.close();
});

const texts = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
const lastReq = (pred) => [...svc.requests].reverse().find(pred);

for (const transport of ['http', 'sse']) {
  const url = (name) => (transport === 'sse' ? `${gw.url}/mcp/${name}/sse` : `${gw.url}/mcp/${name}`);

  test(`${transport}: initialize, list and call REST-template tools`, { timeout: 30_000 }, async () => {
    const c = await connect(url('weather'), transport);
    try {
      assert.equal(c.getServerVersion().name, 'weather');
      assert.equal(c.getServerVersion().title, 'Weather tools');
      assert.equal(c.getInstructions(), 'Ask for a city.');
      const names = [];
      let cursor;
      do {
        const page = await c.listTools(cursor ? { cursor } : {});
        names.push(...page.tools.map((t) => t.name));
        cursor = page.nextCursor;
      } while (cursor);
      assert.deepEqual(names, ['get_weather', 'weather_report', 'weather_struct', 'echo', 'fail', 'fail_plain', 'text', 'slow', 'unreachable']);

      const r = await c.callTool({ name: 'get_weather', arguments: { city: 'Paris' } });
      assert.equal(r.isError, false);
      assert.equal(texts(r), 'Weather: 15');
      const up = lastReq((q) => q.path === '/weather');
      assert.equal(up.query.city, 'Paris');
      assert.equal(up.headers['x-weather-key'], 'wk-secret'); // added by the gateway, never an argument

      const rep = await c.callTool({ name: 'weather_report', arguments: { city: 'Oslo' } });
      assert.equal(texts(rep), 'Oslo is 12 C (asked for Oslo)');

      const st = await c.callTool({ name: 'weather_struct', arguments: { city: 'Rome' } });
      assert.equal(st.structuredContent.city, 'Rome');
      assert.equal(st.structuredContent.current.temp, 12);

      const e = await c.callTool({ name: 'echo', arguments: { id: 42, q: 'a b&c', trace: 't-1', note: 'hi "there"', mode: 'fast' } });
      assert.equal(e.isError, false, texts(e));
      const echoed = lastReq((q) => q.path === '/echo/42');
      assert.equal(echoed.method, 'POST');
      assert.equal(echoed.search, '?q=a%20b%26c&mode=fast');
      assert.equal(echoed.headers['x-trace'], 't-1');
      assert.equal(echoed.headers['x-fixed'], 'fixed-C');
      assert.deepEqual(echoed.json, { note: 'hi "there"', n: 7 });

      const bad = await c.callTool({ name: 'echo', arguments: { id: 'x' } });
      assert.equal(bad.isError, true);
      assert.match(texts(bad), /'id' must be of type integer/);
      const badEnum = await c.callTool({ name: 'echo', arguments: { id: 1, mode: 'warp' } });
      assert.equal(badEnum.isError, true);

      const f = await c.callTool({ name: 'fail', arguments: {} });
      assert.equal(f.isError, true);
      assert.equal(texts(f), 'down (503): service is down for maintenance');
      const fp = await c.callTool({ name: 'fail_plain', arguments: {} });
      assert.equal(fp.isError, true);
      assert.match(texts(fp), /^upstream returned HTTP 503: \{"message"/);

      assert.equal(texts(await c.callTool({ name: 'text', arguments: {} })), 'plain words (end)');
      const un = await c.callTool({ name: 'unreachable', arguments: {} });
      assert.equal(un.isError, true);
      assert.match(texts(un), /upstream request failed/);

      await assert.rejects(c.callTool({ name: 'nope', arguments: {} }), /Unknown tool: nope/);
      assert.deepEqual(await c.ping(), {});
    } finally {
      await c.close();
    }
  });

  test(`${transport}: Petstore OpenAPI document, converted and called`, { timeout: 30_000 }, async () => {
    for (const server of ['pets', 'petstore']) {
      const c = await connect(url(server), transport);
      try {
        const { tools } = await c.listTools();
        // page_size 2: the SDK gives the first page; walk them all
        const all = [...tools];
        let cursor = (await c.listTools()).nextCursor;
        while (cursor) {
          const p = await c.listTools({ cursor });
          all.push(...p.tools);
          cursor = p.nextCursor;
        }
        assert.deepEqual(all.map((t) => t.name), ['listPets', 'addPet', 'getPetById', 'updatePet', 'deletePet']);
        const get = all.find((t) => t.name === 'getPetById');
        assert.deepEqual(get.inputSchema.required, ['id']);
        assert.equal(get.outputSchema.type, 'object');
        assert.equal(get.description, 'Find a pet by id');

        const list = await c.callTool({ name: 'listPets', arguments: { limit: 1 } });
        assert.equal(list.isError, false, texts(list));
        assert.equal(JSON.parse(texts(list)).length, 1);
        assert.equal(lastReq((q) => q.path === '/v1/pets').headers['x-api-key'], PET_KEY);

        const pet = await c.callTool({ name: 'getPetById', arguments: { id: 1, locale: 'fr FR' } });
        assert.equal(pet.isError, false, texts(pet));
        assert.deepEqual(pet.structuredContent, { id: 1, name: 'Rex', tag: 'dog', status: 'available' });
        assert.equal(lastReq((q) => q.path === '/v1/pets/1').headers.cookie, 'locale=fr%20FR');

        const added = await c.callTool({ name: 'addPet', arguments: { name: `Kit-${server}-${transport}`, tag: 'cat' } });
        assert.equal(added.isError, false, texts(added));
        const id = added.structuredContent.id;
        assert.deepEqual(lastReq((q) => q.method === 'POST' && q.path === '/v1/pets').json, { name: `Kit-${server}-${transport}`, tag: 'cat' });

        // the body repeats the path parameter "id": the argument is id_body, sent upstream as "id"
        const upd = await c.callTool({ name: 'updatePet', arguments: { id, id_body: id, name: 'Kitty', status: 'sold' } });
        assert.equal(upd.isError, false, texts(upd));
        assert.deepEqual(lastReq((q) => q.method === 'PUT').json, { id, name: 'Kitty', status: 'sold' });
        assert.equal(upd.structuredContent.name, 'Kitty');

        const missing = await c.callTool({ name: 'getPetById', arguments: { id: 999 } });
        assert.equal(missing.isError, true);
        assert.match(texts(missing), /HTTP 404/);

        const del = await c.callTool({ name: 'deletePet', arguments: { id, 'X-Reason': 'adopted' } });
        assert.equal(del.isError, false, texts(del));
        assert.equal(lastReq((q) => q.method === 'DELETE').headers['x-reason'], 'adopted');
      } finally {
        await c.close();
      }
    }
  });

  test(`${transport}: aggregated upstreams (server-everything + an SDK server over SSE)`, { timeout: 60_000 }, async () => {
    const c = await connect(url('hub'), transport);
    try {
      const all = [];
      let cursor;
      do {
        const p = await c.listTools(cursor ? { cursor } : {});
        all.push(...p.tools.map((t) => t.name));
        cursor = p.nextCursor;
      } while (cursor);
      assert.ok(all.includes('ev_echo'), all.join(','));
      assert.ok(all.includes('sdk.add'), all.join(','));
      assert.ok(all.includes('sdk.whoami'), all.join(','));
      const e = await c.callTool({ name: 'ev_echo', arguments: { message: 'through the hub' } });
      assert.match(texts(e), /through the hub/);
      const a = await c.callTool({ name: 'sdk.add', arguments: { a: 2, b: 40 } });
      assert.equal(texts(a), '42');
      const tiny = await c.callTool({ name: 'ev_get-sum', arguments: { a: 1, b: 2 } }).catch((err) => err);
      if (!(tiny instanceof Error)) assert.match(texts(tiny), /3/);
      // other methods go to the first upstream
      const res = await c.listResources();
      assert.ok(res.resources.length > 0);
      const prompts = await c.listPrompts();
      assert.ok(prompts.prompts.length > 0);
      await assert.rejects(c.callTool({ name: 'other_tool', arguments: {} }), /Unknown tool/);
    } finally {
      await c.close();
    }
  });
}

// ---- transport rules, with raw HTTP ----

const JSON_SSE = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

function post(pathname, body, headers = {}) {
  return httpRequest(`${gw.url}${pathname}`, { method: 'POST', headers: { ...JSON_SSE, ...headers }, body });
}

async function initialize(server, version = '2025-06-18') {
  const r = await post(`/mcp/${server}`, {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  });
  assert.equal(r.status, 200, r.text);
  const sid = r.headers.get('mcp-session-id');
  assert.ok(sid);
  const n = await post(`/mcp/${server}`, { jsonrpc: '2.0', method: 'notifications/initialized' }, { 'mcp-session-id': sid });
  assert.equal(n.status, 202);
  return { sid, result: r.json.result };
}

test('transport: sessions, status codes and JSON-RPC errors', { timeout: 30_000 }, async () => {
  const { sid, result } = await initialize('weather');
  assert.equal(result.protocolVersion, '2025-06-18');
  assert.deepEqual(result.capabilities, { tools: { listChanged: false } });
  // an unknown revision is answered with ours
  assert.equal((await initialize('weather', '1999-01-01')).result.protocolVersion, '2025-11-25');
  const H = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };

  let r = await post('/mcp/weather', { jsonrpc: '2.0', id: 2, method: 'tools/list' });
  assert.equal(r.status, 400); // no session id
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { 'mcp-session-id': 'deadbeef' });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.code, -32001);
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { ...H, 'mcp-protocol-version': '1999-01-01' });
  assert.equal(r.status, 400);
  r = await post('/mcp/weather', '{"jsonrpc":', H);
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, -32700);
  r = await post('/mcp/weather', { jsonrpc: '1.0', id: 3, method: 'ping' }, H);
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, -32600);
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 4, method: 'resources/list' }, H);
  assert.equal(r.status, 200);
  assert.equal(r.json.error.code, -32601);
  assert.equal(r.json.id, 4);
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 'x', method: 'tools/list', params: { cursor: 'bogus' } }, H);
  assert.equal(r.json.error.code, -32602);
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'get_weather', arguments: [] } }, H);
  assert.equal(r.json.error.code, -32602);
  // batches: not in 2025-06-18
  r = await post('/mcp/weather', [{ jsonrpc: '2.0', id: 6, method: 'ping' }], H);
  assert.equal(r.status, 400);
  // responses and notifications only: 202
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 99, result: {} }, H);
  assert.equal(r.status, 202);
  // media types, origin, unknown server
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 7, method: 'ping' }, { ...H, 'content-type': 'text/plain' });
  assert.equal(r.status, 415);
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 7, method: 'ping' }, { ...H, accept: 'text/html' });
  assert.equal(r.status, 406);
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 7, method: 'ping' }, { ...H, origin: 'http://evil.example.com' });
  assert.equal(r.status, 403);
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 7, method: 'ping' }, { ...H, origin: 'https://app.example.com' });
  assert.equal(r.status, 200);
  r = await post('/mcp/nope', { jsonrpc: '2.0', id: 7, method: 'ping' }, H);
  assert.equal(r.status, 404);
  // DELETE ends the session
  let d = await fetch(`${gw.url}/mcp/weather`, { method: 'DELETE', headers: H });
  assert.equal(d.status, 200);
  d = await fetch(`${gw.url}/mcp/weather`, { method: 'DELETE', headers: H });
  assert.equal(d.status, 404);
  r = await post('/mcp/weather', { jsonrpc: '2.0', id: 8, method: 'ping' }, H);
  assert.equal(r.status, 404);
});

test('transport: batches in a 2025-03-26 session', { timeout: 30_000 }, async () => {
  const { sid } = await initialize('weather', '2025-03-26');
  const H = { 'mcp-session-id': sid };
  const r = await post('/mcp/weather', [
    { jsonrpc: '2.0', id: 1, method: 'ping' },
    { jsonrpc: '2.0', method: 'notifications/progress', params: {} },
    { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'text', arguments: {} } },
    { nope: true },
  ], H);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.length, 3);
  assert.deepEqual(r.json[0], { jsonrpc: '2.0', id: 1, result: {} });
  assert.equal(r.json[1].result.content[0].text, 'plain words (end)');
  assert.equal(r.json[2].error.code, -32600);
  const init = await post('/mcp/weather', [{ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26' } }]);
  assert.equal(init.status, 400);
});

test('cancellation from another POST stops the upstream call', { timeout: 30_000 }, async () => {
  const c = await connect(`${gw.url}/mcp/weather`, 'http');
  try {
    const before = svc.state.slowClosed;
    const ac = new AbortController();
    const call = c.callTool({ name: 'slow', arguments: {} }, undefined, { signal: ac.signal });
    await waitFor(() => svc.state.slowStarted > svc.state.slowClosed, { what: 'the slow call to reach the service' });
    ac.abort('changed my mind'); // the SDK sends notifications/cancelled on a new POST
    await assert.rejects(call);
    await waitFor(() => svc.state.slowClosed > before, { what: 'the upstream request to be closed by the gateway' });
    assert.equal(texts(await c.callTool({ name: 'text', arguments: {} })), 'plain words (end)'); // the session goes on
  } finally {
    await c.close();
  }
});

test('the access log has one line per MCP request', { timeout: 10_000 }, async () => {
  const line = await waitFor(() => gw.stdoutLines.find((l) => l.api === 'mcp' && l.upstream_model === 'weather/get_weather'), {
    what: 'a tools/call log line',
  });
  assert.equal(line.model, 'weather');
  assert.equal(line.status, 200);
  const cancelled = gw.stdoutLines.find((l) => l.upstream_model === 'weather/slow');
  assert.equal(cancelled.error, 'Request cancelled');
});

test('on SIGTERM, open event streams end at once and the gateway exits 0', { timeout: 60_000 }, async () => {
  const { sid } = await initialize('weather');
  const get = await fetch(`${gw.url}/mcp/weather`, { headers: { accept: 'text/event-stream', 'mcp-session-id': sid } });
  assert.equal(get.status, 200);
  const legacy = await fetch(`${gw.url}/mcp/weather/sse`, { headers: { accept: 'text/event-stream' } });
  assert.equal(legacy.status, 200);
  // Reads until the stream ends; the connection may also be closed as the process exits ("terminated").
  const drain = async (res) => {
    const reader = res.body.getReader();
    let text = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return text;
        text += Buffer.from(value).toString();
      }
    } catch {
      return text;
    }
  };
  const ends = Promise.all([drain(get), drain(legacy)]);
  // drain_timeout_ms is 600 s: only ending the streams lets the gateway stop within the test's timeout
  const code = await gw.stop({ timeoutMs: 50_000 });
  const [a, b] = await ends;
  assert.match(a, /keep-alive/);
  assert.match(b, /event: endpoint/);
  assert.equal(code, 0);
});
