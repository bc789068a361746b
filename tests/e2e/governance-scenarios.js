// governance-scenarios.js: what governance.test.js (memory backend, one
// instance) and governance-redis.test.js (redis backend, two instances
// sharing one Redis) both run, plus a real redis-server on a free loopback
// port for the latter.
//
// Windows are UTC clock minutes (docs/governance.md), so a burst that should
// fall in one window first waits out the last seconds of the current minute:
// that wait decides where the burst starts, it is not a timing assertion.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { freePort, waitFor } from './lib/harness.js';

export const MOCK_OUTPUT_TOKENS = 40;

// ---- redis-server ----

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// Every redis-server started here is killed after the test file, whatever happened.
const redisProcs = new Set();
after(() => {
  for (const p of redisProcs) if (p.exitCode === null) p.kill('SIGKILL');
});

/** Starts redis-server on a free loopback port (or port); returns { port, url, stop(), start() }. */
export async function startRedis({ port } = {}) {
  const p = port ?? (await freePort());
  let proc = null;
  const launch = async () => {
    proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc.stderr.on('data', () => {});
    redisProcs.add(proc);
    await waitFor(() => portOpen(p), { timeoutMs: 10_000, what: `redis-server on port ${p}` });
  };
  const stop = async () => {
    if (!proc || proc.exitCode !== null) return;
    const done = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await done;
    await waitFor(async () => !(await portOpen(p)), { what: 'redis-server to stop' });
  };
  await launch();
  return { port: p, url: `redis://127.0.0.1:${p}/0`, stop, start: launch };
}

// ---- config ----

/** The governance part of a config: pricing, one consumer per entry of `consumers`, and the state section. */
export function governanceYaml({ state = 'state: { backend: memory }', consumers, pricing = '' }) {
  const cons = consumers
    .map(
      (c) => `  - name: ${c.name}
    keys: ["${c.key}"]
${c.models ? `    models: ${JSON.stringify(c.models)}\n` : ''}    limits: ${JSON.stringify(c.limits ?? {})}`,
    )
    .join('\n');
  return `${state}
${pricing ? `pricing:\n${pricing}\n` : ''}consumers:
${cons}
`;
}

// ---- requests ----

/** Body of a chat request of a known size: estimate = ceil(bytes / 4) (docs/governance.md). */
export function chatBody(model, i, padTo = 400) {
  const base = { model, messages: [{ role: 'user', content: '' }] };
  const empty = JSON.stringify(base).length;
  base.messages[0].content = `request ${i} `.padEnd(Math.max(padTo - empty, 10), 'x');
  return JSON.stringify(base);
}

export async function chat(url, key, body) {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body,
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, headers: r.headers, json, text, bytes: Buffer.byteLength(body) };
}

/** Waits, when needed, so that a burst starts with at least `margin` ms left in the current UTC minute. */
export async function awayFromMinuteEnd(margin = 15_000) {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < margin) await sleep(left + 200);
}

export async function usage(adminUrl, name) {
  const r = await fetch(`${adminUrl}/admin/api/consumers/${name}/usage`);
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}

export async function metricValue(adminUrl, re) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (re.test(line)) sum += Number(line.split(' ').pop());
  return sum;
}

// ---- scenarios ----

/**
 * 50 concurrent requests against one tokens_per_minute limit, spread over the
 * gateways. Admitted tokens must stay within limit + what admitted requests
 * used beyond their reservations (SPEC §5), some must be refused with 429 and
 * the x-ratelimit headers, and the usage API must show the admitted total.
 */
export async function tokensPerMinuteBurst({ gateways, key, name, limit }) {
  await awayFromMinuteEnd();
  const results = await Promise.all(
    Array.from({ length: 50 }, (_, i) => chat(gateways[i % gateways.length].url, key, chatBody('demo-chat', i))),
  );
  const ok = results.filter((r) => r.status === 200);
  const refused = results.filter((r) => r.status === 429);
  assert.equal(ok.length + refused.length, 50, `unexpected statuses: ${results.map((r) => r.status).join(',')}`);
  assert.ok(ok.length > 0, 'nothing admitted');
  assert.ok(refused.length > 0, 'nothing refused: the limit was not reached');
  let admitted = 0;
  let beyond = 0;
  for (const r of ok) {
    const used = r.json.usage.prompt_tokens + r.json.usage.completion_tokens;
    const est = Math.ceil(r.bytes / 4);
    admitted += used;
    beyond += Math.max(used - est, 0);
    assert.equal(r.headers.get('x-ratelimit-limit-tokens'), String(limit));
    assert.match(r.headers.get('x-ratelimit-remaining-tokens'), /^\d+$/);
    assert.match(r.headers.get('x-ratelimit-reset-tokens'), /^(\d+m)?\d+s$|^\d+ms$/);
  }
  assert.ok(admitted <= limit + beyond, `admitted ${admitted} tokens > limit ${limit} + in-flight excess ${beyond}`);
  for (const r of refused) {
    assert.equal(r.json.error.type, 'rate_limit_error');
    assert.equal(r.json.error.code, 'rate_limit_exceeded');
    assert.match(r.headers.get('retry-after'), /^\d+$/);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.equal(r.headers.get('x-ratelimit-limit-tokens'), String(limit));
  }
  // The counters hold what was really used once every settlement has landed (they are sent after the
  // answer), the same seen from every gateway.
  for (const g of gateways) {
    const u = await waitFor(
      async () => {
        const x = await usage(g.adminUrl, name);
        return x.windows.minute.tokens === admitted ? x : null;
      },
      { what: `usage of ${name} to settle at ${admitted} tokens` },
    );
    assert.equal(u.windows.minute.requests, ok.length);
    assert.equal(u.windows.minute.limits.tokens, limit);
  }
  const rejections = await metricValue(gateways[0].adminUrl, new RegExp(`^sluice_ratelimit_rejections_total\\{consumer="${name}",limit="tokens_per_minute"\\}`));
  assert.ok(rejections >= 1);
  return { admitted, refused: refused.length, ok: ok.length };
}

/**
 * A daily budget runs out: requests are priced (pricing for the upstream
 * model) until the spend reaches the budget; the next is 429 budget_exceeded.
 */
export async function budgetRunsOut({ gateways, key, name, budgetUsd, costPerRequestMax }) {
  let spentBefore = 0;
  let tokens = 0;
  let last = null;
  for (let i = 0; i < 200; i++) {
    const g = gateways[i % gateways.length];
    last = await chat(g.url, key, chatBody('demo-chat', i, 200));
    if (last.status !== 200) break;
    tokens += last.json.usage.prompt_tokens + last.json.usage.completion_tokens;
    // Settlements land after the answer: wait for this one before the next request.
    const u = await waitFor(
      async () => {
        const x = await usage(g.adminUrl, name);
        return x.windows.day.tokens === tokens ? x : null;
      },
      { what: `usage of ${name} to settle` },
    );
    spentBefore = u.windows.day.cost_usd;
  }
  assert.equal(last.status, 429, last.text);
  assert.equal(last.json.error.type, 'rate_limit_error');
  assert.equal(last.json.error.code, 'budget_exceeded');
  assert.match(last.json.error.message, /budget_usd_per_day/);
  assert.ok(Number(last.headers.get('retry-after')) >= 1);
  // Refused only once the budget was (nearly) spent: the last admitted request could not have passed it by more than its own cost.
  assert.ok(spentBefore >= budgetUsd - costPerRequestMax, `refused at ${spentBefore} of ${budgetUsd}`);
  assert.ok(spentBefore <= budgetUsd + costPerRequestMax);
  const u = await usage(gateways[0].adminUrl, name);
  assert.equal(u.windows.day.limits.budget_usd, budgetUsd);
  return spentBefore;
}
