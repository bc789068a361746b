// onapi.js: shared setup for the "one API over every provider" tests
// (onapi_*.test.js, SPEC §2-§3): one sluice-mock speaking all three wire
// protocols, one gateway with a provider of each type pointing at it, and a
// driver per official SDK that runs a request and reduces what the SDK
// reported to one shape:
//   { text, tool: {name, args} | null, finish, input, output, model, id }
//
// Mock knobs cannot come from the caller (the gateway forwards no caller
// headers), so each behaviour is a provider of its own with the knob in its
// `headers:`: PROTO (text), PROTO-tool (x-mock-tool-call: auto), PROTO-fail
// (an error event after 2 tokens), PROTO-reset (the connection reset after 2
// tokens). Public models: to-PROTO, tool-PROTO, fail-PROTO, reset-PROTO.
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { CALLER_KEY, PROVIDER_KEY, gatewayConfig, mockText, startMock, startSluice, waitFor } from './harness.js';

export const TOKENS = 6; // output tokens of every text answer
export const PROMPT = 'Tell me a story'; // 15 bytes: (15 + 3) / 4 + 4 * 1 message = 8 prompt tokens (docs/mock.md)
export const PROMPT_TOKENS = 8;
export const PROTOS = ['openai', 'anthropic', 'gemini'];
export const CALLERS = PROTOS;

// One tool; the mock fills its arguments from the schema: strings "lorem", enums their first value.
export const TOOL = {
  name: 'get_weather',
  description: 'Current weather in a city',
  schema: {
    type: 'object',
    properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
    required: ['city'],
  },
};
export const TOOL_ARGS = { city: 'lorem', unit: 'celsius' };
// The mock streams arguments in 8-byte fragments and counts one output token per fragment.
export const TOOL_TOKENS = Math.ceil(JSON.stringify(TOOL_ARGS).length / 8);

/** The finish reason each caller protocol should report. */
export const FINISH = {
  openai: { stop: 'stop', tool: 'tool_calls' },
  anthropic: { stop: 'end_turn', tool: 'tool_use' },
  gemini: { stop: 'STOP', tool: 'STOP' },
};

const TYPE = { openai: 'openai-compatible', anthropic: 'anthropic', gemini: 'gemini' };
const KNOBS = {
  '': '',
  tool: 'x-mock-tool-call: auto',
  fail: 'x-mock-fail-after: "2", x-mock-fail-mode: event',
  reset: 'x-mock-fail-after: "2", x-mock-fail-mode: reset',
};

export function providerBase(mock, proto) {
  return proto === 'gemini' ? `${mock.url}/v1beta` : `${mock.url}/v1`;
}

/** providers + models YAML for every protocol and behaviour. */
export function onapiYaml(mock, { extraProviders = '', extraModels = '' } = {}) {
  const providers = [];
  const models = [];
  for (const proto of PROTOS) {
    for (const [kind, hdr] of Object.entries(KNOBS)) {
      const name = kind ? `${proto}-${kind}` : proto;
      providers.push(`- name: ${name}
  type: ${TYPE[proto]}
  base_url: ${providerBase(mock, proto)}
  api_keys: ["${PROVIDER_KEY}"]${hdr ? `\n  headers: { ${hdr} }` : ''}`);
      models.push(`- name: ${kind || 'to'}-${proto}
  targets: [ { provider: ${name}, model: up-${name} } ]
  retry: { attempts: 1 }`);
    }
  }
  return {
    extraProviders: [...providers, extraProviders].filter(Boolean).join('\n'),
    extraModels: [extraModels, ...models].filter(Boolean).join('\n'),
  };
}

/** Starts the mock and a gateway with the onapi providers; opts pass through to onapiYaml. */
export async function startOnapi(opts = {}) {
  const mock = await startMock({ args: ['--tokens', String(TOKENS)] });
  const gw = await startSluice({ config: (p) => gatewayConfig({ ...p, mockPort: mock.port, ...onapiYaml(mock, opts) }) });
  return { mock, gw, clients: clientsFor(gw) };
}

export function clientsFor(gw, key = CALLER_KEY) {
  return {
    openai: new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0, timeout: 20_000 }),
    anthropic: new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0, timeout: 20_000 }),
    gemini: new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: gw.url, timeout: 20_000 } }),
  };
}

let seq = 0;
/**
 * A fresh request id: sent as x-request-id, echoed in the access log. sluice
 * keeps a caller's id only up to 39 characters (longer ones are replaced by a
 * generated id), hence the short form.
 */
export function newId(tag) {
  const id = `${tag}.${process.pid.toString(36)}.${++seq}.`; // the last dot: no id is a prefix of another
  assert.ok(id.length < 40, `request id too long for sluice: ${id}`);
  return id;
}

// ---- drivers: one request through one SDK, reduced to a common shape ----

/**
 * Runs one request. opts: { stream, tools, id, maxTokens, includeUsage (OpenAI
 * streams, default true), prompt }. Returns the reduced result; SDK errors throw.
 */
export function run(clients, caller, model, opts = {}) {
  return DRIVERS[caller](clients[caller], model, { prompt: PROMPT, includeUsage: true, ...opts });
}

const DRIVERS = {
  async openai(c, model, o) {
    const body = { model, messages: [{ role: 'user', content: o.prompt }] };
    if (o.tools) body.tools = [{ type: 'function', function: { name: TOOL.name, description: TOOL.description, parameters: TOOL.schema } }];
    if (o.maxTokens) body.max_tokens = o.maxTokens;
    const ro = { headers: { 'x-request-id': o.id } };
    const res = { text: '', tool: null, finish: null, input: null, output: null, model: null, chunks: 0, usageChunks: 0 };
    if (!o.stream) {
      const r = await c.chat.completions.create(body, ro);
      const ch = r.choices[0];
      res.text = ch.message.content ?? '';
      const tc = ch.message.tool_calls?.[0];
      if (tc) res.tool = { name: tc.function.name, args: JSON.parse(tc.function.arguments), id: tc.id };
      res.finish = ch.finish_reason;
      res.input = r.usage?.prompt_tokens ?? null;
      res.output = r.usage?.completion_tokens ?? null;
      res.model = r.model;
      return res;
    }
    body.stream = true;
    if (o.includeUsage) body.stream_options = { include_usage: true };
    const s = await c.chat.completions.create(body, ro);
    const calls = [];
    const models = new Set();
    for await (const chunk of s) {
      res.chunks++;
      models.add(chunk.model);
      if (chunk.usage) {
        res.usageChunks++;
        res.input = chunk.usage.prompt_tokens;
        res.output = chunk.usage.completion_tokens;
      }
      const ch = chunk.choices?.[0];
      if (!ch) continue;
      if (ch.delta?.content) res.text += ch.delta.content;
      for (const t of ch.delta?.tool_calls ?? []) {
        const cur = (calls[t.index] ??= { name: '', args: '', id: null });
        if (t.id) cur.id = t.id;
        if (t.function?.name) cur.name += t.function.name;
        if (t.function?.arguments) cur.args += t.function.arguments;
      }
      if (ch.finish_reason) res.finish = ch.finish_reason;
    }
    if (calls.length) res.tool = { name: calls[0].name, args: JSON.parse(calls[0].args), id: calls[0].id, count: calls.length };
    res.model = [...models].join(',');
    return res;
  },

  async anthropic(c, model, o) {
    const body = { model, max_tokens: o.maxTokens ?? 256, messages: [{ role: 'user', content: o.prompt }] };
    if (o.tools) body.tools = [{ name: TOOL.name, description: TOOL.description, input_schema: TOOL.schema }];
    const ro = { headers: { 'x-request-id': o.id } };
    const res = { text: '', tool: null, finish: null, input: null, output: null, model: null, chunks: 0 };
    if (!o.stream) {
      const m = await c.messages.create(body, ro);
      res.text = m.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
      const tu = m.content.find((b) => b.type === 'tool_use');
      if (tu) res.tool = { name: tu.name, args: tu.input, id: tu.id };
      res.finish = m.stop_reason;
      res.input = m.usage.input_tokens;
      res.output = m.usage.output_tokens;
      res.model = m.model;
      return res;
    }
    body.stream = true;
    const s = await c.messages.create(body, ro);
    const blocks = [];
    const kinds = [];
    for await (const ev of s) {
      res.chunks++;
      kinds.push(ev.type);
      if (ev.type === 'message_start') {
        res.model = ev.message.model;
        res.input = ev.message.usage.input_tokens;
      } else if (ev.type === 'content_block_start') {
        blocks[ev.index] = { ...ev.content_block, json: '' };
      } else if (ev.type === 'content_block_delta') {
        const b = blocks[ev.index];
        if (ev.delta.type === 'text_delta') res.text += ev.delta.text;
        else if (ev.delta.type === 'input_json_delta') b.json += ev.delta.partial_json;
      } else if (ev.type === 'message_delta') {
        res.finish = ev.delta.stop_reason;
        res.output = ev.usage.output_tokens;
        if (ev.usage.input_tokens != null) res.input = ev.usage.input_tokens;
      }
    }
    res.events = kinds;
    const tu = blocks.filter((b) => b && b.type === 'tool_use');
    if (tu.length) res.tool = { name: tu[0].name, args: JSON.parse(tu[0].json || '{}'), id: tu[0].id, count: tu.length };
    return res;
  },

  async gemini(c, model, o) {
    const config = { httpOptions: { headers: { 'x-request-id': o.id } } };
    if (o.tools) config.tools = [{ functionDeclarations: [{ name: TOOL.name, description: TOOL.description, parametersJsonSchema: TOOL.schema }] }];
    if (o.maxTokens) config.maxOutputTokens = o.maxTokens;
    const req = { model, contents: [{ role: 'user', parts: [{ text: o.prompt }] }], config };
    const res = { text: '', tool: null, finish: null, input: null, output: null, model: null, chunks: 0 };
    const take = (r) => {
      const cand = r.candidates?.[0];
      for (const p of cand?.content?.parts ?? []) {
        if (typeof p.text === 'string') res.text += p.text;
        if (p.functionCall) {
          if (res.tool) res.tool.count++;
          else res.tool = { name: p.functionCall.name, args: p.functionCall.args, id: p.functionCall.id, count: 1 };
        }
      }
      if (cand?.finishReason) res.finish = cand.finishReason;
      if (r.usageMetadata) {
        res.input = r.usageMetadata.promptTokenCount ?? null;
        res.output = r.usageMetadata.candidatesTokenCount ?? null;
      }
      if (r.modelVersion) res.model = r.modelVersion;
    };
    if (!o.stream) {
      take(await c.models.generateContent(req));
      return res;
    }
    for await (const chunk of await c.models.generateContentStream(req)) {
      res.chunks++;
      take(chunk);
    }
    return res;
  },
};

// ---- the access log ----

/** The access-log line of request id (waits for it: the line is written as the request ends). */
export function logLine(gw, id) {
  return waitFor(() => gw.stdoutLines.find((l) => l.request_id === id), { timeoutMs: 5000, what: `access log line ${id}` });
}

/** Asserts the reduced SDK result against what the mock must have produced. */
export function checkResult(res, { caller, tool, model, label }) {
  const f = FINISH[caller];
  if (tool) {
    assert.ok(res.tool, `${label}: no tool call (text ${JSON.stringify(res.text)})`);
    assert.equal(res.tool.name, TOOL.name, `${label}: tool name`);
    assert.deepEqual(res.tool.args, TOOL_ARGS, `${label}: tool arguments`);
    assert.equal(res.tool.count ?? 1, 1, `${label}: one tool call`);
    assert.equal(res.finish, f.tool, `${label}: finish reason`);
    assert.equal(res.output, TOOL_TOKENS, `${label}: output tokens`);
  } else {
    assert.equal(res.tool, null, `${label}: unexpected tool call`);
    assert.equal(res.text, mockText(TOKENS), `${label}: text`);
    assert.equal(res.finish, f.stop, `${label}: finish reason`);
    assert.equal(res.output, TOKENS, `${label}: output tokens`);
  }
  assert.equal(res.input, PROMPT_TOKENS, `${label}: input tokens`);
  if (model) assert.equal(res.model, model, `${label}: public model name in the response`);
}
