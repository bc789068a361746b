// onapi_pairs.test.js: all nine caller/provider protocol pairs (SPEC §3: any
// inbound protocol reaches any provider type), each driven by the official
// SDK of the caller's protocol (`openai`, `@anthropic-ai/sdk`,
// `@google/genai`) through sluice to sluice-mock speaking the provider's
// protocol: plain text whole and streamed, a tool call whole and streamed.
// Each checks the text, the tool call's name and arguments, the finish
// reason, the usage the SDK reports, the public model name, and that the
// access log line carries the same usage (the record limits and billing read).
import assert from 'node:assert/strict';
import test, { before, beforeEach } from 'node:test';
import { assertAlive } from './lib/harness.js';
import { CALLERS, PROMPT_TOKENS, PROTOS, TOKENS, TOOL_TOKENS, checkResult, logLine, newId, run, startOnapi } from './lib/onapi.js';

const T = { timeout: 30_000 };
let env;

before(async () => {
  env = await startOnapi();
});
beforeEach(() => assertAlive(env.gw, env.mock));

const MODES = [
  { name: 'text', stream: false, tools: false },
  { name: 'text stream', stream: true, tools: false },
  { name: 'tool call', stream: false, tools: true },
  { name: 'tool call stream', stream: true, tools: true },
];

for (const caller of CALLERS) {
  for (const target of PROTOS) {
    for (const mode of MODES) {
      const label = `${caller} -> ${target}: ${mode.name}`;
      test(label, T, async () => {
        const model = `${mode.tools ? 'tool' : 'to'}-${target}`;
        const id = newId(`${caller}-${target}`);
        const res = await run(env.clients, caller, model, { stream: mode.stream, tools: mode.tools, id });
        checkResult(res, { caller, tool: mode.tools, model, label });
        const line = await logLine(env.gw, id);
        assert.equal(line.status, 200, `${label}: logged status`);
        assert.equal(line.stream, mode.stream, `${label}: logged stream flag`);
        assert.equal(line.provider, `${target}${mode.tools ? '-tool' : ''}`, `${label}: logged provider`);
        assert.equal(line.input_tokens, PROMPT_TOKENS, `${label}: logged input tokens = what the SDK saw`);
        assert.equal(line.output_tokens, mode.tools ? TOOL_TOKENS : TOKENS, `${label}: logged output tokens = what the SDK saw`);
        assert.equal(line.input_tokens, res.input);
        assert.equal(line.output_tokens, res.output);
      });
    }
  }
}

// An OpenAI caller that did not set stream_options.include_usage gets no usage
// chunk (sluice asked the upstream for it, or translated it, and strips it),
// yet the access log still has the usage.
for (const target of PROTOS) {
  test(`openai -> ${target}: stream without include_usage has no usage chunk, usage still logged`, T, async () => {
    const id = newId(`nousage-${target}`);
    const res = await run(env.clients, 'openai', `to-${target}`, { stream: true, includeUsage: false, id });
    assert.equal(res.usageChunks, 0, 'no chunk carried usage');
    assert.equal(res.text.split(' ').length, TOKENS);
    assert.equal(res.finish, 'stop');
    const line = await logLine(env.gw, id);
    assert.equal(line.input_tokens, PROMPT_TOKENS);
    assert.equal(line.output_tokens, TOKENS);
  });
}

test('the gateway stops cleanly', T, async () => {
  assert.equal(await env.gw.stop(), 0);
});
