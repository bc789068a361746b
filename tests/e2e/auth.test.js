// auth.test.js: consumers and keys (SPEC §3, §5) with the official SDKs:
// every caller-credential place (OpenAI Authorization: Bearer, Anthropic
// x-api-key, Gemini x-goog-api-key and ?key=), a wrong or missing key (401 in
// each protocol's error shape), a model outside the allow-list (403
// model_not_allowed), the model list filtered per consumer, the caller's key
// never reaching the provider, and auth.required: false (anonymous).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';

import { gatewayConfig, startMock, startSluice } from './lib/harness.js';

const ALICE = 'sk-alice-0123456789';
const BOB = 'sk-bob-0123456789';

let mock;
let gw;

function consumersYaml() {
  return `consumers:
  - name: alice
    keys: ["${ALICE}"]
  - name: bob
    keys: ["sha256:${sha256hex(BOB)}"]
    models: ["demo-chat", "demo-allowed-*"]
`;
}

import { createHash } from 'node:crypto';
function sha256hex(s) {
  return createHash('sha256').update(s).digest('hex');
}

before(async () => {
  mock = await startMock({ args: ['--tokens', '5'] });
  gw = await startSluice({
    config: (p) =>
      gatewayConfig({
        ...p,
        mockPort: mock.port,
        extraModels: `- name: demo-other\n  targets: [ { provider: mock, model: mock-upstream-other } ]\n  retry: { attempts: 1 }`,
        extra: consumersYaml(),
      }),
  });
});

after(async () => {
  await gw?.stop();
  await mock?.stop();
});

async function lastUpstreamHeaders() {
  const reqs = await mock.requests();
  assert.ok(reqs.length > 0);
  return reqs[reqs.length - 1].headers;
}

function headerValues(h) {
  if (Array.isArray(h)) return h.map((x) => (Array.isArray(x) ? x.join(': ') : `${x.name}: ${x.value}`)).join('\n');
  return Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\n');
}

describe('credentials', () => {
  test('OpenAI SDK: Authorization: Bearer', async () => {
    const client = new OpenAI({ apiKey: ALICE, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const r = await client.chat.completions.create({ model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.object, 'chat.completion');
    const sent = headerValues(await lastUpstreamHeaders());
    assert.ok(!sent.includes(ALICE), 'the caller key reached the provider');
  });

  test('Anthropic SDK: x-api-key', async () => {
    const client = new Anthropic({ apiKey: BOB, baseURL: gw.url, maxRetries: 0 });
    const r = await client.messages.create({
      model: 'demo-chat',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(r.type, 'message');
    const sent = headerValues(await lastUpstreamHeaders());
    assert.ok(!sent.includes(BOB), 'the caller key reached the provider');
  });

  test('Gemini SDK: x-goog-api-key', async () => {
    const ai = new GoogleGenAI({ apiKey: ALICE, httpOptions: { baseUrl: gw.url } });
    const r = await ai.models.generateContent({ model: 'demo-chat', contents: 'hi' });
    assert.ok(r.candidates?.length > 0);
  });

  test('?key= in the query (Gemini REST style)', async () => {
    const r = await fetch(`${gw.url}/v1beta/models/demo-chat:generateContent?key=${encodeURIComponent(BOB)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    const sent = headerValues(await lastUpstreamHeaders());
    assert.ok(!sent.includes(BOB));
    const reqs = await mock.requests();
    assert.ok(!JSON.stringify(reqs[reqs.length - 1]).includes(BOB), 'the query key reached the provider');
  });

  test('raw headers: x-api-key and x-goog-api-key on the OpenAI endpoint', async () => {
    for (const h of [{ 'x-api-key': ALICE }, { 'x-goog-api-key': ALICE }]) {
      const r = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...h, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }] }),
      });
      assert.equal(r.status, 200, await r.clone().text());
    }
  });
});

describe('refusals', () => {
  test('wrong and missing keys: 401 in each protocol', async () => {
    const openai = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${gw.url}/v1`, maxRetries: 0 });
    await assert.rejects(
      openai.chat.completions.create({ model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }] }),
      (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key',
    );
    const anthropic = new Anthropic({ apiKey: 'sk-wrong', baseURL: gw.url, maxRetries: 0 });
    await assert.rejects(
      anthropic.messages.create({ model: 'demo-chat', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      (e) => e instanceof Anthropic.AuthenticationError && e.status === 401 && e.error?.error?.type === 'authentication_error',
    );
    const r = await fetch(`${gw.url}/v1beta/models/demo-chat:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
    });
    assert.equal(r.status, 401);
    const j = await r.json();
    assert.equal(j.error.code, 401);
    assert.equal(j.error.status, 'UNAUTHENTICATED');
    const none = await fetch(`${gw.url}/v1/models`);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error.type, 'authentication_error');
  });

  test('a model outside the allow-list: 403 model_not_allowed', async () => {
    const client = new OpenAI({ apiKey: BOB, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    await assert.rejects(
      client.chat.completions.create({ model: 'demo-other', messages: [{ role: 'user', content: 'hi' }] }),
      (e) =>
        e instanceof OpenAI.PermissionDeniedError && e.status === 403 && e.code === 'model_not_allowed' &&
        e.type === 'permission_error',
    );
    const anthropic = new Anthropic({ apiKey: BOB, baseURL: gw.url, maxRetries: 0 });
    await assert.rejects(
      anthropic.messages.create({ model: 'demo-other', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      (e) => e instanceof Anthropic.PermissionDeniedError && e.status === 403,
    );
    // alice has no allow-list
    const alice = new OpenAI({ apiKey: ALICE, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const ok = await alice.chat.completions.create({ model: 'demo-other', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(ok.object, 'chat.completion');
  });

  test('GET /v1/models is filtered per consumer', async () => {
    const list = async (key) => {
      const client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
      const ids = [];
      for await (const m of client.models.list()) ids.push(m.id);
      return ids.sort();
    };
    assert.deepEqual(await list(ALICE), ['demo-chat', 'demo-embed', 'demo-other']);
    assert.deepEqual(await list(BOB), ['demo-chat']);
  });

  test('the access log names the consumer', async () => {
    const lines = gw.stdoutLines.filter((l) => l && typeof l === 'object' ? l.consumer : /"consumer"/.test(l));
    const text = lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n');
    assert.match(text, /"consumer":"alice"/);
    assert.match(text, /"consumer":"bob"/);
  });
});

describe('auth.required: false', () => {
  let open;
  before(async () => {
    open = await startSluice({
      config: (p) =>
        gatewayConfig({
          ...p,
          mockPort: mock.port,
          extra: `auth: { required: false }\n${consumersYaml()}  - name: anonymous\n    models: ["demo-chat"]\n`,
        }),
    });
  });
  after(() => open?.stop());

  test('callers without a key are "anonymous", with its allow-list; known keys still identify', async () => {
    const r = await fetch(`${open.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    const denied = await fetch(`${open.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo-other', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(denied.status, 403);
    assert.match((await denied.json()).error.message, /anonymous/);
    const alice = new OpenAI({ apiKey: ALICE, baseURL: `${open.url}/v1`, maxRetries: 0 });
    const ok = await alice.chat.completions.create({ model: 'demo-other', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(ok.object, 'chat.completion');
  });
});
