// balancing.test.js: the LLM-aware balancers end to end (issue 8, SPEC §2
// models[].balance prefix_cache | metrics, §8 the mock's inference-server
// mode; docs/balancing.md).
//
// Three sluice-mock engines in inference-server mode, a plain mock (its
// /metrics is a 404: a failing scrape) and an in-test server whose /metrics
// never answers (stale metrics) behind one gateway with two workers, so that
// affinity has to hold across workers. No timing assertions: bounded waits.
import assert from 'node:assert/strict';
import http from 'node:http';
import test, { after, before } from 'node:test';
import { chatAnswerText as answer, freePort, startMock, startSluice } from './lib/harness.js';

const T = { timeout: 60_000 };
const ENGINE = ['--max-batch', '4', '--cache-tokens', '20000', '--cache-block-tokens', '16', '--tokens', '4', '--quiet'];

let e1, e2, e3, e4, plain, hang, hangPort, hangScrapes = 0, gw;

/** An OpenAI-compatible server whose chat answers at once and whose /metrics never answers. */
function startHang(port) {
  const held = [];
  const srv = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      hangScrapes++;
      held.push(res); // never answered: the scrape times out, the last good metrics (none) go stale
      return;
    }
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id: 'chatcmpl-hang', object: 'chat.completion', created: 1, model: 'm',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      }));
    });
  });
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', () => resolve({
    stop: () => { held.forEach((r) => r.destroy()); srv.closeAllConnections(); srv.close(); },
  })));
}

const provider = (name, port) =>
  `  - { name: ${name}, type: vllm, base_url: "http://127.0.0.1:${port}/v1", timeouts: { connect_ms: 1000 } }\n`;

before(async () => {
  // e4 serves only the degraded-metrics model: load from other tests' models cannot show in its metrics
  [e1, e2, e3, e4, plain] = await Promise.all([startMock({ args: ENGINE }), startMock({ args: ENGINE }),
                                               startMock({ args: ENGINE }), startMock({ args: ENGINE }),
                                               startMock({ args: ['--quiet'] })]);
  hangPort = await freePort();
  hang = await startHang(hangPort);
  gw = await startSluice({
    config: ({ port, adminPort }) => `
server:
  listen: ["127.0.0.1:${port}"]
  admin_listen: "127.0.0.1:${adminPort}"
  workers: 2
  access_log: "off"
providers:
${provider('e1', e1.port)}${provider('e2', e2.port)}${provider('e3', e3.port)}${provider('e4', e4.port)}\
${provider('plain', plain.port)}${provider('hang', hangPort)}
models:
  - name: pc
    balance: prefix_cache
    prefix_cache: { block_tokens: 16 }
    targets: [ { provider: e1 }, { provider: e2 }, { provider: e3 } ]
  - name: met-degraded
    balance: metrics
    metrics: { interval_ms: 50, stale_ms: 200, timeout_ms: 100 }
    targets: [ { provider: e4 }, { provider: plain }, { provider: hang } ]
  - name: met-busy
    balance: metrics
    metrics: { interval_ms: 20, stale_ms: 1000 }
    targets: [ { provider: e2 }, { provider: e3 } ]
  - name: pcm
    balance: prefix_cache
    prefix_cache: { block_tokens: 16 }
    metrics: { path: /metrics, interval_ms: 50 }
    targets: [ { provider: e1 }, { provider: e2 }, { provider: e3 } ]
`,
  });
});

after(async () => {
  await gw?.stop();
  hang?.stop();
  await Promise.all([e1, e2, e3, e4, plain].map((m) => m?.stop()));
});

/** One chat call on a connection of its own: SO_REUSEPORT spreads them over both workers. */
function chat(model, messages, { stream = false } = {}) {
  const body = JSON.stringify({ model, messages, stream, max_tokens: 4 });
  return new Promise((resolve, reject) => {
    const req = http.request(`${gw.url}/v1/chat/completions`, {
      method: 'POST', agent: false, timeout: 30_000,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => (text += d)).on('end', () => {
        try {
          assert.equal(res.statusCode, 200, text);
          resolve({ provider: res.headers['x-sluice-provider'], text });
        } catch (e) { reject(e); }
      });
    });
    req.on('timeout', () => req.destroy(new Error('chat: no answer within 30 s')));
    req.on('error', reject);
    req.end(body);
  });
}


async function engineCounter(m, name) {
  const t = await (await fetch(`${m.url}/metrics`)).text();
  const line = t.split('\n').find((l) => l.startsWith(name));
  return Number(line.split(' ').pop());
}

function words(seed, n) {
  return Array.from({ length: n }, (_, i) => `s${seed}w${(i * 7919 + seed * 104729) % 997}`).join(' ');
}

for (const model of ['pc', 'pcm']) {
  test(`${model}: each session's turns stick to one engine, and the engines see cache hits`, T, async () => {
    const before = await Promise.all([e1, e2, e3].map((m) => engineCounter(m, 'vllm:prefix_cache_hits_total')));
    const sessions = Array.from({ length: 6 }, (_, s) => ({
      // a system prompt of its own per session: first turns spread over the engines by load, not by a shared prefix
      messages: [{ role: 'system', content: `${model} session ${s}: ${words(s + 1, 120)}` }],
      used: new Set(),
    }));
    for (let turn = 0; turn < 4; turn++) {
      // one request at a time, interleaving sessions: no load, so nothing but affinity decides
      for (const [i, s] of sessions.entries()) {
        s.messages.push({ role: 'user', content: `turn ${turn}: ${words(100 + i * 10 + turn, 30)}` });
        const r = await chat(model, s.messages, { stream: turn % 2 === 1 });
        s.used.add(r.provider);
        s.messages.push({ role: 'assistant', content: answer(r.text) });
      }
    }
    for (const s of sessions) assert.equal(s.used.size, 1, `a session moved: ${[...s.used]}`);
    const all = new Set(sessions.flatMap((s) => [...s.used]));
    assert.ok(all.size >= 2, `sessions were not spread: ${[...all]}`);
    const afterHits = await Promise.all([e1, e2, e3].map((m) => engineCounter(m, 'vllm:prefix_cache_hits_total')));
    assert.ok(afterHits.reduce((a, b) => a + b) > before.reduce((a, b) => a + b), 'no prefix cache hits at the engines');
  });
}

test('metrics: a failing and a stale /metrics degrade to in-flight counts; every target still serves', T, async () => {
  await plain.clearRequests();
  const seen = new Map();
  for (let i = 0; i < 60; i++) {
    const r = await chat('met-degraded', [{ role: 'user', content: `hello ${i}` }]);
    seen.set(r.provider, (seen.get(r.provider) ?? 0) + 1);
  }
  // one request at a time: the fresh engine scores 0 (what it ran for us is netted out), the two without
  // usable metrics count 0 in flight: rotation among equals
  for (const p of ['e4', 'plain', 'hang']) assert.ok(seen.get(p) > 0, `${p} got no traffic: ${JSON.stringify([...seen])}`);
  const scrapes = (await plain.requests()).filter((q) => q.path === '/metrics');
  assert.ok(scrapes.length > 0, 'the failing endpoint was never scraped');
  assert.ok(hangScrapes > 0, 'the hanging endpoint was never scraped');
});

test('metrics: an engine whose own queue is full loses the traffic, though the gateway sent it nothing', T, async () => {
  // fill e2 directly (not through the gateway): 4 running + 3 waiting, 100 tokens at the mock default pace each
  const direct = [];
  const ctrls = [];
  for (let i = 0; i < 7; i++) {
    const c = new AbortController();
    ctrls.push(c);
    direct.push(fetch(`${e2.url}/v1/chat/completions`, {
      method: 'POST', signal: c.signal,
      headers: { 'content-type': 'application/json', 'x-mock-itl-ms': '1000', 'x-mock-tokens': '100' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: `busy ${i}` }] }),
    }).catch(() => {})); // the answers stay open (unread) until the aborts below
  }
  try {
    let waiting = 0;
    for (let i = 0; i < 100 && waiting < 3; i++) {
      waiting = await engineCounter(e2, 'vllm:num_requests_waiting');
      if (waiting < 3) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(waiting, 3);
    // from the first scrape that sees the queue on, e3 gets everything; rotation alone would alternate
    let run = 0;
    for (let i = 0; i < 100 && run < 8; i++) {
      const r = await chat('met-busy', [{ role: 'user', content: `q ${i}` }]);
      run = r.provider === 'e3' ? run + 1 : 0;
    }
    assert.equal(run, 8, 'the busy engine kept getting requests');
  } finally {
    ctrls.forEach((c) => c.abort());
    await Promise.all(direct);
  }
});
