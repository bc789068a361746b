// chat.test.js: the official `openai` SDK against sluice, sluice against
// sluice-mock (SPEC §1-§3): chat (plain and streamed), embeddings, the model
// list, errors in OpenAI's shape, and what the gateway changes on the way
// (model names, credentials, request ids, x-sluice-* headers).
import assert from 'node:assert/strict';
import test, { before, beforeEach } from 'node:test';
import OpenAI from 'openai';
import {
  assertAlive,
  CALLER_KEY,
  PROVIDER_KEY,
  gatewayConfig,
  httpRequest,
  mockText,
  startMock,
  startSluice,
} from './lib/harness.js';

const TOKENS = 8; // output tokens per mock answer
const T = { timeout: 30_000 };

let mock; // the working provider
let broken; // a provider that answers every request with 500
let gw;
let client;

before(async () => {
  mock = await startMock({ args: ['--tokens', String(TOKENS)] });
  broken = await startMock({ args: ['--status', '500'] });
  gw = await startSluice({
    config: (p) =>
      gatewayConfig({
        ...p,
        mockPort: mock.port,
        extraProviders: `
- name: broken
  type: openai-compatible
  base_url: ${broken.baseUrl}
  api_keys: ["sk-broken-provider-key"]`,
        extraModels: `
- name: demo-broken
  targets: [ { provider: broken, model: broken-upstream } ]
  retry: { attempts: 1 }`,
      }),
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CALLER_KEY, maxRetries: 0, timeout: 20_000 });
});
// Once a binary died, every later test says so (with its stderr) instead of ECONNREFUSED.
beforeEach(() => {
  assertAlive(gw, mock, broken);
});


/** The request the mock received whose body contains marker. */
async function upstreamRequest(m, marker) {
  const found = (await m.requests()).filter((r) => (r.body ?? '').includes(marker));
  assert.equal(found.length, 1, `expected exactly one upstream request containing ${marker}, got ${found.length}`);
  return found[0];
}

function chat(content, extra = {}) {
  return { model: 'demo-chat', messages: [{ role: 'user', content }], ...extra };
}

test('chat completion: content, public model name, usage, x-sluice-* headers', T, async () => {
  const { data, response } = await client.chat.completions.create(chat('marker-nonstream')).withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.model, 'demo-chat', 'the caller sees the public model name it asked for');
  assert.equal(data.choices.length, 1);
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(data.choices[0].message.content, mockText(TOKENS));
  assert.equal(data.choices[0].finish_reason, 'stop');
  assert.equal(data.usage.completion_tokens, TOKENS);
  assert.ok(data.usage.prompt_tokens > 0);
  assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);

  assert.equal(response.headers.get('x-sluice-provider'), 'mock');
  assert.equal(response.headers.get('x-sluice-model'), 'mock-upstream-chat');
  assert.ok(response.headers.get('x-request-id'), 'a request id is generated when none was sent');

  const up = await upstreamRequest(mock, 'marker-nonstream');
  assert.equal(up.method, 'POST');
  assert.equal(up.path, '/v1/chat/completions');
  assert.equal(JSON.parse(up.body).model, 'mock-upstream-chat', 'the provider sees the target model name');
});

test('streamed chat: deltas add up to the text; no usage chunk unless asked for', T, async () => {
  const stream = await client.chat.completions.create(chat('marker-stream-nousage', { stream: true }));
  let text = '';
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, mockText(TOKENS));
  assert.ok(chunks.length >= TOKENS, `one chunk per token at least, got ${chunks.length}`);
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.model, 'demo-chat');
    assert.ok(!c.usage, `no usage without stream_options.include_usage: ${JSON.stringify(c)}`);
    assert.ok(c.choices.length > 0, `no usage-only chunk without include_usage: ${JSON.stringify(c)}`);
  }
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');

  // The gateway asks the provider for usage anyway, to count tokens (SPEC §3).
  const up = JSON.parse((await upstreamRequest(mock, 'marker-stream-nousage')).body);
  assert.equal(up.stream, true);
  assert.equal(up.stream_options?.include_usage, true);
});

test('streamed chat with stream_options.include_usage: final usage chunk delivered', T, async () => {
  const stream = await client.chat.completions.create(
    chat('marker-stream-usage', { stream: true, stream_options: { include_usage: true } }),
  );
  let text = '';
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, mockText(TOKENS));
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, TOKENS);
  assert.ok(last.usage.prompt_tokens > 0);
  assert.equal(chunks.filter((c) => c.usage).length, 1, 'exactly one usage chunk');
});

test('embeddings: same vectors as the provider gives directly (float and base64)', T, async () => {
  const input = 'the quick brown fox';
  const direct = await httpRequest(`${mock.baseUrl}/embeddings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${PROVIDER_KEY}` },
    body: { model: 'mock-upstream-embed', input, encoding_format: 'float' },
  });
  assert.equal(direct.status, 200, direct.text);
  const want = direct.json.data[0].embedding;
  assert.ok(want.length > 0);

  const f = await client.embeddings.create({ model: 'demo-embed', input, encoding_format: 'float' });
  assert.equal(f.object, 'list');
  assert.equal(f.data.length, 1);
  assert.deepEqual(f.data[0].embedding, want);
  assert.ok(f.usage.prompt_tokens > 0);

  // The SDK's default: it asks for base64 and decodes float32s itself (so
  // components match the JSON floats only to the precision the mock prints).
  const b = await client.embeddings.create({ model: 'demo-embed', input });
  assert.equal(b.data[0].embedding.length, want.length);
  b.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - want[i]) < 1e-4, `component ${i}: ${x} vs ${want[i]}`));

  // Several inputs keep their order.
  const many = await client.embeddings.create({ model: 'demo-embed', input: ['a', input], encoding_format: 'float' });
  assert.deepEqual(
    many.data.map((d) => d.index),
    [0, 1],
  );
  assert.deepEqual(many.data[1].embedding, want);
});

test('models list: the configured public names', T, async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.object, 'model');
    ids.push(m.id);
  }
  for (const want of ['demo-chat', 'demo-embed', 'demo-broken']) assert.ok(ids.includes(want), `${want} in ${ids}`);
  assert.ok(!ids.includes('mock-upstream-chat'), 'upstream names are not public');
});

test('unknown model: 404 model_not_found (NotFoundError)', T, async () => {
  const before = (await mock.requests()).length;
  await assert.rejects(client.chat.completions.create({ ...chat('x'), model: 'no-such-model' }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, 404);
    assert.equal(e.code, 'model_not_found');
    assert.equal(e.type, 'invalid_request_error');
    return true;
  });
  assert.equal((await mock.requests()).length, before, 'nothing was sent upstream');
});

test('malformed JSON body: 400 invalid_request_error', T, async () => {
  const r = await httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CALLER_KEY}` },
    body: '{"model": "demo-chat", "messages": [',
  });
  assert.equal(r.status, 400);
  assert.ok(r.json?.error, `an OpenAI error object: ${r.text}`);
  assert.equal(r.json.error.type, 'invalid_request_error');
  assert.equal(typeof r.json.error.message, 'string');
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
});

test('missing messages or model: 400 invalid_request_error (BadRequestError)', T, async () => {
  for (const body of [{ model: 'demo-chat' }, { messages: [{ role: 'user', content: 'hi' }] }]) {
    await assert.rejects(client.chat.completions.create(body), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `${JSON.stringify(body)}: got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, 400);
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
  }
});

test('upstream 500 with retries off: 502 upstream_error, one attempt', T, async () => {
  await broken.clearRequests();
  await assert.rejects(client.chat.completions.create({ ...chat('marker-broken'), model: 'demo-broken' }), (e) => {
    assert.ok(e instanceof OpenAI.APIError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, 502);
    assert.ok(e.type === 'upstream_error' || e.code === 'upstream_error', `type ${e.type}, code ${e.code}`);
    return true;
  });
  const reqs = (await broken.requests()).filter((r) => (r.body ?? '').includes('marker-broken'));
  assert.equal(reqs.length, 1, 'retry.attempts: 1 means a single upstream attempt');
});

test("caller's Authorization is not forwarded; the provider key is sent instead", T, async () => {
  await client.chat.completions.create(chat('marker-auth'), { headers: { 'x-api-key': CALLER_KEY } });
  const up = await upstreamRequest(mock, 'marker-auth');
  assert.equal(up.headers.authorization, `Bearer ${PROVIDER_KEY}`);
  assert.ok(!JSON.stringify(up).includes(CALLER_KEY), `the caller's key reached the provider: ${JSON.stringify(up.headers)}`);
});

test('x-request-id: echoed when sent, generated and unique when not', T, async () => {
  const { response } = await client.chat.completions
    .create(chat('marker-reqid'), { headers: { 'x-request-id': 'e2e-req-42' } })
    .withResponse();
  assert.equal(response.headers.get('x-request-id'), 'e2e-req-42');
  // a long id (a UUID with a prefix, a trace id) is echoed too, not replaced
  const long = `e2e-${'0123456789'.repeat(10)}`;
  const { response: lr } = await client.chat.completions
    .create(chat('marker-reqid-long'), { headers: { 'x-request-id': long } })
    .withResponse();
  assert.equal(lr.headers.get('x-request-id'), long);

  const a = await client.chat.completions.create(chat('marker-reqid-a')).withResponse();
  const b = await client.chat.completions.create(chat('marker-reqid-b')).withResponse();
  const ida = a.response.headers.get('x-request-id');
  const idb = b.response.headers.get('x-request-id');
  assert.ok(ida && idb);
  assert.notEqual(ida, idb);

  // Errors carry it too, so a failed call can be found in the access log.
  const err = await httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'e2e-req-err' },
    body: { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] },
  });
  assert.equal(err.status, 404);
  assert.equal(err.headers.get('x-request-id'), 'e2e-req-err');
});

test('gateway exits 0 on SIGTERM (and, under ASan, without leaks)', T, async () => {
  assert.equal(await gw.stop(), 0, `stderr:\n${gw.stderr.slice(-4000)}`);
  assert.equal(await mock.stop(), 0, `mock stderr:\n${mock.stderr.slice(-4000)}`);
  await broken.stop();
});
