// governance.test.js: limits and budgets with the memory backend in one
// gateway instance (the same scenarios as governance-redis.test.js, which
// runs them on two instances sharing one Redis).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import OpenAI from 'openai';

import { gatewayConfig, startMock, startSluice, waitFor } from './lib/harness.js';
import {
  MOCK_OUTPUT_TOKENS,
  budgetRunsOut,
  chat,
  chatBody,
  governanceYaml,
  tokensPerMinuteBurst,
  usage,
} from './governance-scenarios.js';

let mock;
let gw;

const PRICING = '  mock-upstream-chat: { input: 2.0, output: 10.0 }';

before(async () => {
  // Answers take a while (time to first token) so that the burst's requests are in flight together.
  mock = await startMock({ args: ['--tokens', String(MOCK_OUTPUT_TOKENS), '--ttft-ms', '100'] });
  gw = await startSluice({
    config: (p) =>
      gatewayConfig({
        ...p,
        mockPort: mock.port,
        workers: 2,
        extra: governanceYaml({
          pricing: PRICING,
          consumers: [
            { name: 'burst', key: 'sk-burst', limits: { tokens_per_minute: 2500 } },
            { name: 'spender', key: 'sk-spend', limits: { budget_usd_per_day: 0.01 } },
            { name: 'counter', key: 'sk-count', limits: { requests_per_minute: 3 } },
            { name: 'free', key: 'sk-free' },
            { name: 'streamer', key: 'sk-stream', limits: { tokens_per_day: 1000000 } },
          ],
        }),
      }),
  });
});

after(async () => {
  await gw?.stop();
  await mock?.stop();
});

test('tokens_per_minute holds under 50 concurrent requests', async (t) => {
  const r = await tokensPerMinuteBurst({ gateways: [gw], key: 'sk-burst', name: 'burst', limit: 2500 });
  t.diagnostic(`admitted ${r.ok} requests (${r.admitted} tokens), refused ${r.refused}`);
});

test('a daily budget runs out: 429 budget_exceeded', async () => {
  // one request: ~50 input tokens at $2/M + 40 output at $10/M, about $0.0005
  await budgetRunsOut({ gateways: [gw], key: 'sk-spend', name: 'spender', budgetUsd: 0.01, costPerRequestMax: 0.001 });
});

test('requests_per_minute: headers on every answer, then 429', async () => {
  const seen = [];
  for (let i = 0; i < 4; i++) seen.push(await chat(gw.url, 'sk-count', chatBody('demo-chat', i, 100)));
  assert.deepEqual(seen.map((r) => r.status), [200, 200, 200, 429]);
  assert.deepEqual(seen.map((r) => r.headers.get('x-ratelimit-remaining-requests')), ['2', '1', '0', '0']);
  for (const r of seen) {
    assert.equal(r.headers.get('x-ratelimit-limit-requests'), '3');
    assert.match(r.headers.get('x-ratelimit-reset-requests'), /^\d+s$|^\d+ms$/);
    assert.equal(r.headers.get('x-ratelimit-limit-tokens'), null); /* no token limit applies */
  }
  assert.equal(seen[3].json.error.code, 'rate_limit_exceeded');
});

test('consumers without limits are not limited, but their usage and cost are recorded', async () => {
  const r = await chat(gw.url, 'sk-free', chatBody('demo-chat', 0, 100));
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-ratelimit-limit-requests'), null);
  // The access log line and the usage record are written once the answer is out: wait for them.
  const line = await waitFor(
    () => gw.stdoutLines.map((l) => (typeof l === 'string' ? JSON.parse(l) : l)).find((l) => l.consumer === 'free'),
    { what: 'the access log line of consumer free' },
  );
  const want = (r.json.usage.prompt_tokens * 2.0 + r.json.usage.completion_tokens * 10.0) / 1e6;
  assert.ok(Math.abs(line.cost_usd - want) < 1e-9, `cost_usd ${line.cost_usd} != ${want}`);
  const u = await waitFor(async () => {
    const x = await usage(gw.adminUrl, 'free');
    return x.windows.day.requests === 1 ? x : null;
  });
  assert.equal(u.windows.day.tokens, r.json.usage.prompt_tokens + r.json.usage.completion_tokens);
  assert.deepEqual(u.windows.day.limits, {});
  const missing = await fetch(`${gw.adminUrl}/admin/api/consumers/nobody/usage`);
  assert.equal(missing.status, 404);
});

test('a streamed answer settles with its real usage (the caller did not ask for usage)', async () => {
  const client = new OpenAI({ apiKey: 'sk-stream', baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const { data: stream, response } = await client.chat.completions
    .create({ model: 'demo-chat', stream: true, messages: [{ role: 'user', content: 'hello there' }] })
    .withResponse();
  assert.equal(response.headers.get('x-ratelimit-limit-tokens'), '1000000');
  let text = '';
  for await (const chunk of stream) {
    assert.equal(chunk.usage ?? null, null); /* stripped: the caller did not ask for it */
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.ok(text.length > 0);
  const u = await waitFor(async () => {
    const x = await usage(gw.adminUrl, 'streamer');
    return x.windows.day.tokens > MOCK_OUTPUT_TOKENS ? x : null;
  }, { what: 'the stream to settle' });
  assert.equal(u.windows.day.requests, 1);
  assert.ok(u.windows.day.tokens < 1000, `${u.windows.day.tokens} tokens recorded`);
  assert.ok(u.windows.day.cost_usd > 0);
});
