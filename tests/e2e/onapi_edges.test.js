// onapi_edges.test.js: the edges of "one API over every provider" (SPEC §2,
// §3): an upstream failure in the middle of a stream reaches every SDK as an
// error (never as a clean end); caller credentials never go upstream while
// the provider's own key goes in the provider's own header; Anthropic's
// anthropic-version and required max_tokens (models[].defaults); the
// Responses API passed through to OpenAI providers (whole and streamed) and
// refused in OpenAI's shape by the others; embeddings to a provider without
// them.
import assert from 'node:assert/strict';
import http from 'node:http';
import test, { after, before, beforeEach } from 'node:test';
import { CALLER_KEY, PROVIDER_KEY, assertAlive, freePort, httpRequest, mockText } from './lib/harness.js';
import { CALLERS, PROTOS, TOKENS, newId, logLine, run, startOnapi } from './lib/onapi.js';

const T = { timeout: 30_000 };
let env;
let respUp; // a hand-written OpenAI upstream: streams the Responses API (the mock does not), serves Azure paths
const respUpSeen = []; // what it received: { path, query, headers, body }

// Events of a streamed Responses API answer, as OpenAI sends them.
const RESP_STREAM_USAGE = { input_tokens: 11, output_tokens: 3, total_tokens: 14, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } };
function responsesStream(model) {
  const resp = (status, extra = {}) => ({ id: 'resp_up_1', object: 'response', created_at: 1, status, model, output: [], ...extra });
  const ev = [
    ['response.created', { type: 'response.created', sequence_number: 0, response: resp('in_progress') }],
    ['response.output_text.delta', { type: 'response.output_text.delta', sequence_number: 1, item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'one ' }],
    ['response.output_text.delta', { type: 'response.output_text.delta', sequence_number: 2, item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'two ' }],
    ['response.output_text.delta', { type: 'response.output_text.delta', sequence_number: 3, item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'three' }],
    ['response.completed', {
      type: 'response.completed',
      sequence_number: 4,
      response: resp('completed', {
        output: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'one two three', annotations: [] }] }],
        usage: RESP_STREAM_USAGE,
      }),
    }],
  ];
  return ev.map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`).join('');
}

function azureCompletion(deployment) {
  return {
    id: 'chatcmpl-azure-1', object: 'chat.completion', created: 1, model: deployment,
    choices: [{ index: 0, message: { role: 'assistant', content: 'from azure' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 },
  };
}

before(async () => {
  const port = await freePort();
  respUp = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const [path, query = ''] = req.url.split('?');
      respUpSeen.push({ path, query, headers: req.headers, body });
      const j = JSON.parse(body || '{}');
      if (path.endsWith('/chat/completions')) { // Azure: the deployment is in the path
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(azureCompletion(path.split('/')[3])));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(responsesStream(j.model));
    });
  });
  await new Promise((r) => respUp.listen(port, '127.0.0.1', r));
  env = await startOnapi({
    extraProviders: `
- name: resp-up
  type: openai
  base_url: http://127.0.0.1:${port}/v1
  api_keys: ["${PROVIDER_KEY}"]
- name: azure-east
  type: azure
  base_url: http://127.0.0.1:${port}
  api_version: 2025-01-01-preview
  api_keys: ["${PROVIDER_KEY}"]`,
    extraModels: `
- name: on-azure
  targets: [ { provider: azure-east, model: my-deploy } ]
  retry: { attempts: 1 }
- name: mt-anthropic
  targets: [ { provider: anthropic, model: up-mt } ]
  defaults: { max_tokens: 77 }
- name: nomt-anthropic
  targets: [ { provider: anthropic, model: up-nomt } ]
- name: resp-stream
  targets: [ { provider: resp-up, model: up-resp } ]
  retry: { attempts: 1 }`,
  });
});
after(() => respUp?.close());
beforeEach(() => assertAlive(env.gw, env.mock));

/** The single upstream request whose body contains marker. */
async function upstreamWith(marker) {
  const found = (await env.mock.requests()).filter((r) => (r.body ?? '').includes(marker));
  assert.equal(found.length, 1, `expected one upstream request containing ${marker}, got ${found.length}`);
  return found[0];
}

// ---- failures in the middle of a stream ----

for (const kind of ['fail', 'reset']) {
  for (const caller of CALLERS) {
    for (const target of PROTOS) {
      const what = kind === 'fail' ? 'an error event' : 'a connection reset';
      test(`${caller} -> ${target}: ${what} mid-stream reaches the SDK as an error`, T, async () => {
        const id = newId(`${kind}-${caller}-${target}`);
        let seen = '';
        const onText = (t) => (seen += t);
        const p = runStreamCollect(caller, `${kind}-${target}`, id, onText);
        await assert.rejects(p.then(() => ({ seen })), (e) => {
          assert.ok(e instanceof Error, 'an Error');
          return true;
        });
        const line = await logLine(env.gw, id);
        assert.ok(line.error, 'the access log records the failure');
        if (kind === 'fail') {
          // The mock fails after 2 tokens: the caller saw them, then the error.
          assert.equal(seen, mockText(2), 'the text before the failure arrived');
          assert.equal(line.status, 200);
        } else {
          // A reset (RST) may discard the tokens still unread in the gateway's socket,
          // and may even come before the head: the caller then gets a plain 502.
          assert.ok(mockText(2).startsWith(seen), `text before the reset: ${JSON.stringify(seen)}`);
          assert.ok([200, 502].includes(line.status), `logged: ${JSON.stringify(line)}`);
        }
      });
    }
  }
}

/** Streams through the caller's SDK, reporting text as it arrives (so a throw keeps what came before). */
async function runStreamCollect(caller, model, id, onText) {
  const c = env.clients[caller];
  const headers = { 'x-request-id': id };
  if (caller === 'openai') {
    const s = await c.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers });
    for await (const ch of s) if (ch.choices[0]?.delta?.content) onText(ch.choices[0].delta.content);
  } else if (caller === 'anthropic') {
    const s = await c.messages.create({ model, max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers });
    for await (const ev of s) if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') onText(ev.delta.text);
  } else {
    const s = await c.models.generateContentStream({ model, contents: 'hi', config: { httpOptions: { headers } } });
    for await (const ch of s) for (const p of ch.candidates?.[0]?.content?.parts ?? []) if (p.text) onText(p.text);
  }
}

// ---- credentials ----

const AUTH = {
  openai: { header: 'authorization', value: `Bearer ${PROVIDER_KEY}`, path: '/v1/chat/completions' },
  anthropic: { header: 'x-api-key', value: PROVIDER_KEY, path: '/v1/messages' },
  gemini: { header: 'x-goog-api-key', value: PROVIDER_KEY, path: '/v1beta/models/up-gemini:generateContent' },
};
const CRED_HEADERS = ['authorization', 'x-api-key', 'x-goog-api-key', 'api-key'];

function checkUpstreamAuth(up, target, label) {
  const a = AUTH[target];
  assert.ok(!JSON.stringify(up.headers).includes(CALLER_KEY), `${label}: caller key in upstream headers ${JSON.stringify(up.headers)}`);
  assert.ok(!up.query.includes(CALLER_KEY) && !/(^|&)key=/.test(up.query), `${label}: caller key in upstream query ${up.query}`);
  assert.equal(up.headers[a.header], a.value, `${label}: provider key in ${a.header}`);
  for (const h of CRED_HEADERS) if (h !== a.header) assert.equal(up.headers[h], undefined, `${label}: no ${h} upstream`);
  if (target === 'anthropic') assert.equal(up.headers['anthropic-version'], '2023-06-01', `${label}: anthropic-version`);
  else assert.equal(up.headers['anthropic-version'], undefined);
}

for (const caller of CALLERS) {
  for (const target of PROTOS) {
    test(`${caller} -> ${target}: the caller's key stays home, the provider key goes in ${AUTH[target].header}`, T, async () => {
      const marker = newId(`cred-${caller}-${target}`);
      await run(env.clients, caller, `to-${target}`, { id: marker, prompt: `hi ${marker}` });
      const up = await upstreamWith(marker);
      assert.equal(up.path, AUTH[target].path);
      checkUpstreamAuth(up, target, `${caller} -> ${target}`);
    });
  }
}

test('Gemini callers may pass the key as ?key=: it is not forwarded', T, async () => {
  for (const target of PROTOS) {
    const marker = newId(`qkey-${target}`);
    const r = await httpRequest(`${env.gw.url}/v1beta/models/to-${target}:generateContent?key=${CALLER_KEY}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: { contents: [{ role: 'user', parts: [{ text: marker }] }] },
    });
    assert.equal(r.status, 200, r.text);
    checkUpstreamAuth(await upstreamWith(marker), target, `?key= -> ${target}`);
  }
});

test('Anthropic callers with Authorization: Bearer (auth-token clients): not forwarded', T, async () => {
  for (const target of PROTOS) {
    const marker = newId(`bearer-${target}`);
    const r = await httpRequest(`${env.gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${CALLER_KEY}`, 'anthropic-version': '2023-06-01' },
      body: { model: `to-${target}`, max_tokens: 50, messages: [{ role: 'user', content: marker }] },
    });
    assert.equal(r.status, 200, r.text);
    checkUpstreamAuth(await upstreamWith(marker), target, `bearer -> ${target}`);
  }
});

test('streams to Gemini use :streamGenerateContent?alt=sse', T, async () => {
  const marker = newId('gem-sse');
  await run(env.clients, 'openai', 'to-gemini', { stream: true, id: marker, prompt: marker });
  const up = await upstreamWith(marker);
  assert.equal(up.path, '/v1beta/models/up-gemini:streamGenerateContent');
  assert.equal(up.query, 'alt=sse');
});

test('azure: deployment URL, api-version, api-key header; callers of every protocol', T, async () => {
  const want = { openai: 'stop', anthropic: 'end_turn', gemini: 'STOP' };
  for (const caller of CALLERS) {
    respUpSeen.length = 0;
    const id = newId(`azure-${caller}`);
    const res = await run(env.clients, caller, 'on-azure', { id });
    assert.equal(res.text, 'from azure', caller);
    assert.equal(res.finish, want[caller]);
    assert.equal(res.model, 'on-azure');
    assert.equal(respUpSeen.length, 1);
    const up = respUpSeen[0];
    assert.equal(up.path, '/openai/deployments/my-deploy/chat/completions');
    assert.equal(up.query, 'api-version=2025-01-01-preview');
    assert.equal(up.headers['api-key'], PROVIDER_KEY);
    for (const h of ['authorization', 'x-api-key', 'x-goog-api-key']) assert.equal(up.headers[h], undefined, `${caller}: ${h}`);
    const line = await logLine(env.gw, id);
    assert.deepEqual([line.input_tokens, line.output_tokens], [4, 2]);
  }
});

test('azure: the Responses API goes to /openai/v1/responses with the deployment as model', T, async () => {
  respUpSeen.length = 0;
  const s = await env.clients.openai.responses.create({ model: 'on-azure', input: 'hi', stream: true });
  let text = '';
  for await (const ev of s) if (ev.type === 'response.output_text.delta') text += ev.delta;
  assert.equal(text, 'one two three');
  assert.equal(respUpSeen.length, 1);
  assert.equal(respUpSeen[0].path, '/openai/v1/responses');
  assert.equal(respUpSeen[0].headers['api-key'], PROVIDER_KEY);
  assert.equal(JSON.parse(respUpSeen[0].body).model, 'my-deploy');
});

// ---- Anthropic's required max_tokens ----

test('max_tokens to Anthropic: models[].defaults when the caller gave none, else 4096; the caller\'s own wins', T, async () => {
  const cases = [
    { caller: 'openai', model: 'mt-anthropic', maxTokens: undefined, want: 77 },
    { caller: 'gemini', model: 'mt-anthropic', maxTokens: undefined, want: 77 },
    { caller: 'openai', model: 'mt-anthropic', maxTokens: 33, want: 33 },
    { caller: 'gemini', model: 'mt-anthropic', maxTokens: 34, want: 34 },
    { caller: 'openai', model: 'nomt-anthropic', maxTokens: undefined, want: 4096 },
  ];
  for (const c of cases) {
    const marker = newId(`mt-${c.caller}`);
    await run(env.clients, c.caller, c.model, { id: marker, prompt: marker, maxTokens: c.maxTokens });
    const body = JSON.parse((await upstreamWith(marker)).body);
    assert.equal(body.max_tokens, c.want, `${c.caller} ${c.model} max_tokens=${c.maxTokens}`);
  }
});

// ---- the Responses API ----

test('Responses API: passed through to an OpenAI provider, usage logged, public model name', T, async () => {
  const id = newId('resp');
  const r = await env.clients.openai.responses.create({ model: 'to-openai', input: `hello ${id}` }, { headers: { 'x-request-id': id } });
  assert.equal(r.output_text, mockText(TOKENS));
  assert.equal(r.model, 'to-openai');
  const up = await upstreamWith(id);
  assert.equal(up.path, '/v1/responses');
  assert.equal(JSON.parse(up.body).model, 'up-openai');
  const line = await logLine(env.gw, id);
  assert.equal(line.api, 'responses');
  assert.equal(line.input_tokens, r.usage.input_tokens);
  assert.equal(line.output_tokens, r.usage.output_tokens);
  assert.equal(line.output_tokens, TOKENS);
});

test('Responses API stream: passed through event by event, ends cleanly, usage logged', T, async () => {
  const id = newId('resp-stream');
  const s = await env.clients.openai.responses.create({ model: 'resp-stream', input: 'hi', stream: true }, { headers: { 'x-request-id': id } });
  let text = '';
  let completed = null;
  const models = new Set();
  for await (const ev of s) {
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.response) models.add(ev.response.model);
    if (ev.type === 'response.completed') completed = ev.response;
  }
  assert.equal(text, 'one two three');
  assert.ok(completed, 'response.completed arrived');
  assert.deepEqual([...models], ['resp-stream'], 'the public model name in every response object');
  assert.equal(completed.usage.output_tokens, 3);
  const line = await logLine(env.gw, id);
  assert.equal(line.error, null, 'a clean end');
  assert.equal(line.input_tokens, RESP_STREAM_USAGE.input_tokens);
  assert.equal(line.output_tokens, RESP_STREAM_USAGE.output_tokens);
});

for (const target of ['anthropic', 'gemini']) {
  test(`Responses API to ${target}: 404 in OpenAI's shape`, T, async () => {
    await assert.rejects(env.clients.openai.responses.create({ model: `to-${target}`, input: 'hi' }), (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.error?.type, 'invalid_request_error');
      assert.equal(e.code, 'unsupported_endpoint');
      assert.match(e.message, /does not offer this API/);
      return true;
    });
    const raw = await httpRequest(`${env.gw.url}/v1/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${CALLER_KEY}` },
      body: { model: `to-${target}`, input: 'hi' },
    });
    assert.equal(raw.status, 404);
    assert.deepEqual(Object.keys(raw.json.error).sort(), ['code', 'message', 'param', 'type']);
  });
}

// ---- embeddings ----

test('embeddings: to an OpenAI provider they work and count input tokens', T, async () => {
  const id = newId('emb');
  const r = await env.clients.openai.embeddings.create({ model: 'to-openai', input: 'hello world' }, { headers: { 'x-request-id': id } });
  assert.equal(r.data.length, 1);
  assert.equal(r.model, 'to-openai');
  const line = await logLine(env.gw, id);
  assert.equal(line.input_tokens, r.usage.prompt_tokens);
});

for (const target of ['anthropic', 'gemini']) {
  test(`embeddings to ${target}: a clear error naming the provider`, T, async () => {
    await assert.rejects(env.clients.openai.embeddings.create({ model: `to-${target}`, input: 'hi' }), (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.code, 'unsupported_endpoint');
      assert.match(e.message, new RegExp(`provider '${target}'.*does not offer this API`));
      return true;
    });
  });
}

test('the gateway stops cleanly', T, async () => {
  assert.equal(await env.gw.stop(), 0);
});
