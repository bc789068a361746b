// balancing-redis.test.js: two gateway instances sharing load-balancing
// state through one real redis-server (issue 8, docs/balancing.md "Several
// instances"): a session's turns, sent alternately to instance A and B, stick
// to one engine; least_request on B steers away from the engine A loaded;
// Redis stopped mid-test -> both still answer on their own state (logged,
// counted), and share again once it is back.
//
// Sharing is eventually consistent (a sync round per model every 50 ms), so
// the tests wait for it instead of sleeping: every round stamps the
// instance's in-flight counts with Redis' clock, and `synced()` waits until
// both instances have run rounds that started after a given moment. No timing
// assertions.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import test, { after, before } from 'node:test';
import { promisify } from 'node:util';

import { metricValue, startRedis } from './governance-scenarios.js';
import { chatAnswerText as answer, startMock, startSluice, waitFor } from './lib/harness.js';

const run = promisify(execFile);
const T = { timeout: 90_000 };
const PREFIX = `e2e-lb-${process.pid}:`;
const ENGINE = ['--max-batch', '8', '--cache-tokens', '20000', '--cache-block-tokens', '16', '--tokens', '4', '--quiet'];
// slow decode: a long answer stays in flight as long as the test needs it, a one-token one is quick
const SLOW = ['--max-batch', '16', '--decode-ms-per-token', '100', '--tokens', '400', '--quiet'];

let redis, e1, e2, e3, f1, f2, gwA, gwB;

async function redisCli(...args) {
  const { stdout } = await run('redis-cli', ['-p', String(redis.port), '--raw', ...args]);
  return stdout.split('\n').filter((l) => l !== '');
}

async function redisNowMs() {
  const [s, us] = await redisCli('TIME');
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** Per shared model, the instances' last round stamps (Redis ms). */
async function stamps() {
  const keys = await redisCli('--scan', '--pattern', `${PREFIX}lb:*:if`);
  const out = [];
  for (const k of keys) {
    const l = await redisCli('HGETALL', k);
    const m = [];
    for (let i = 0; i + 1 < l.length; i += 2) m.push(Number(l[i + 1].split(' ')[0]));
    out.push(m);
  }
  return out;
}

/** Waits until both instances have completed `rounds` sync rounds of every shared model begun after now. */
async function synced(rounds = 4) {
  // 1: the round that ran after a pick; 2: one that started after it (so it carried the pick); 3: the other
  // instance read it in a round that ran after that; 4: that round's answer was applied (rounds do not overlap)
  for (let i = 0; i < rounds; i++) {
    const t = await redisNowMs();
    await waitFor(async () => {
      const s = await stamps();
      return s.length >= 2 && s.every((m) => m.length >= 2 && m.every((ts) => ts > t));
    }, { timeoutMs: 15_000, what: 'both instances to run a sync round' });
  }
}

const provider = (name, port) =>
  `  - { name: ${name}, type: vllm, base_url: "http://127.0.0.1:${port}/v1", timeouts: { connect_ms: 1000 } }\n`;

function config({ port, adminPort }, lrWeights) {
  return `
server:
  listen: ["127.0.0.1:${port}"]
  admin_listen: "127.0.0.1:${adminPort}"
  workers: 2
  access_log: "off"
state:
  backend: redis
  redis: { url: "${redis.url}", timeout_ms: 500, on_error: allow, key_prefix: "${PREFIX}" }
providers:
${provider('e1', e1.port)}${provider('e2', e2.port)}${provider('e3', e3.port)}${provider('f1', f1.port)}${provider('f2', f2.port)}
models:
  - name: pc
    balance: prefix_cache
    prefix_cache: { block_tokens: 16 }
    targets: [ { provider: e1 }, { provider: e2 }, { provider: e3 } ]
  - name: lr
    balance: least_request
    retry: { attempts: 1 }
    targets: [ { provider: f1, weight: ${lrWeights[0]} }, { provider: f2, weight: ${lrWeights[1]} } ]
`;
}

before(async () => {
  redis = await startRedis();
  [e1, e2, e3, f1, f2] = await Promise.all([startMock({ args: ENGINE }), startMock({ args: ENGINE }),
                                            startMock({ args: ENGINE }), startMock({ args: SLOW }),
                                            startMock({ args: SLOW })]);
  // A weighs f1 100 times f2 (weights scale loads locally; the counts shared are plain numbers)
  gwA = await startSluice({ config: (p) => config(p, [100, 1]) });
  gwB = await startSluice({ config: (p) => config(p, [1, 1]) });
});

after(async () => {
  await gwA?.stop();
  await gwB?.stop();
  await Promise.all([e1, e2, e3, f1, f2].map((m) => m?.stop()));
  await redis?.stop();
});

/** One chat call on a connection of its own (so either worker may take it). */
function chat(gw, model, messages, { stream = false, maxTokens = 4, signal } = {}) {
  const body = JSON.stringify({ model, messages, stream, max_tokens: maxTokens });
  return new Promise((resolve, reject) => {
    const req = http.request(`${gw.url}/v1/chat/completions`, {
      method: 'POST', agent: false, timeout: 60_000, signal,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      if (stream && maxTokens > 100) { // a long stream: the caller holds it open and aborts it
        resolve({ provider: res.headers['x-sluice-provider'], status: res.statusCode, res });
        return;
      }
      let text = '';
      res.setEncoding('utf8').on('data', (d) => (text += d)).on('end', () => {
        try {
          assert.equal(res.statusCode, 200, text);
          resolve({ provider: res.headers['x-sluice-provider'], text });
        } catch (e) { reject(e); }
      });
    });
    req.on('timeout', () => req.destroy(new Error('chat: no answer within 60 s')));
    req.on('error', reject);
    req.end(body);
  });
}


function words(seed, n) {
  return Array.from({ length: n }, (_, i) => `s${seed}w${(i * 7919 + seed * 104729) % 997}`).join(' ');
}

async function sessionsStick(tag, nSessions, nTurns) {
  const sessions = Array.from({ length: nSessions }, (_, s) => ({
    messages: [{ role: 'system', content: `${tag} session ${s}: ${words(s + 1, 120)}` }],
    used: [],
  }));
  for (let turn = 0; turn < nTurns; turn++) {
    for (const [i, s] of sessions.entries()) {
      await synced(); // what the other instance picked is known here before this turn
      // first turns all on A: its two workers rotate among idle engines, so the sessions spread; then B, A, ...
      const gw = turn % 2 ? gwB : gwA;
      s.messages.push({ role: 'user', content: `turn ${turn}: ${words(100 + i * 10 + turn, 30)}` });
      const r = await chat(gw, 'pc', s.messages, { stream: turn % 2 === 1 });
      s.used.push(r.provider);
      s.messages.push({ role: 'assistant', content: answer(r.text) });
    }
  }
  return sessions;
}

test('prefix_cache: a session\'s turns sent alternately to two instances stick to one engine', T, async () => {
  const sessions = await sessionsStick('pc', 4, 4);
  for (const s of sessions) assert.equal(new Set(s.used).size, 1, `a session moved: ${s.used}`);
  const all = new Set(sessions.flatMap((s) => s.used));
  assert.ok(all.size >= 2, `sessions were not spread: ${[...all]}`);
});

test('least_request: instance B steers away from the engine instance A loaded', T, async () => {
  const ctrls = [];
  const held = [];
  try {
    // A: 5 long streams; with f1 weighing 100 times f2, f2 gets at most one of them
    for (let i = 0; i < 5; i++) {
      const c = new AbortController();
      ctrls.push(c);
      const r = await chat(gwA, 'lr', [{ role: 'user', content: `long ${i}` }], { stream: true, maxTokens: 400, signal: c.signal });
      assert.equal(r.status, 200);
      r.res.on('error', () => {}).resume();
      held.push(r.provider);
    }
    const onF1 = held.filter((p) => p === 'f1').length;
    assert.ok(onF1 >= 4, `A did not load f1: ${held}`);
    await synced();
    // B (equal weights) sees f1 with 4+ in flight and f2 with at most 1: every quick request goes to f2,
    // where rotation among B's own idle counts would alternate
    const seen = [];
    for (let i = 0; i < 6; i++) seen.push((await chat(gwB, 'lr', [{ role: 'user', content: `quick ${i}` }], { maxTokens: 1 })).provider);
    assert.deepEqual(seen, Array(6).fill('f2'), `B sent to the loaded engine: ${seen}`);
  } finally {
    ctrls.forEach((c) => c.abort());
  }
  // once A's streams are gone, B's view follows: f1 is free again and takes traffic
  await synced();
  const after = [];
  for (let i = 0; i < 4; i++) after.push((await chat(gwB, 'lr', [{ role: 'user', content: `after ${i}` }], { maxTokens: 1 })).provider);
  assert.ok(after.includes('f1'), `f1 still avoided after A's load ended: ${after}`);
});

test('redis stopped: both instances balance on their own state, log and count it, and share again after', T, async () => {
  const re = /^sluice_state_errors_total\{backend="redis",on_error="balance"\}/;
  const before = await Promise.all([gwA, gwB].map((g) => metricValue(g.adminUrl, re)));
  await redis.stop();
  for (let i = 0; i < 8; i++) {
    const gw = i % 2 ? gwA : gwB;
    await chat(gw, 'pc', [{ role: 'user', content: `down ${i}: ${words(500 + i, 60)}` }], { stream: i % 4 === 1 });
    await chat(gw, 'lr', [{ role: 'user', content: `down ${i}` }], { maxTokens: 1 });
  }
  for (const [i, g] of [gwA, gwB].entries()) {
    await waitFor(async () => (await metricValue(g.adminUrl, re)) > before[i], { what: 'the failed rounds to be counted' });
    assert.match(g.stderr, /sharing state through redis failed/);
  }
  await redis.start(); // empty: logs and counts start over
  for (const g of [gwA, gwB])
    await waitFor(() => /sharing state through redis again/.test(g.stderr), { timeoutMs: 20_000, what: 'sharing to resume' });
  const sessions = await sessionsStick('again', 2, 3);
  for (const s of sessions) assert.equal(new Set(s.used).size, 1, `a session moved after recovery: ${s.used}`);
});
