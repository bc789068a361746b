// lifecycle.test.js: the process contract (SPEC §1): SIGHUP reloads without
// dropping a stream, a bad config on reload is rejected while the old one
// keeps serving, SIGTERM drains streams in flight and exits 0, and the
// --check / --version commands.
import assert from 'node:assert/strict';
import net from 'node:net';
import test from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import {
  CALLER_KEY,
  SLUICE_BIN,
  gatewayConfig,
  httpRequest,
  mockText,
  runBinary,
  startMock,
  startSluice,
  waitFor,
  writeConfig,
} from './lib/harness.js';

const EXTRA_MODEL = `
- name: extra-model
  targets: [ { provider: mock, model: mock-upstream-extra } ]`;

/** Config A (no extra-model) and B (with it), on the same ports. */
function configs(gw, mock, opts = {}) {
  const base = { port: gw.port, adminPort: gw.adminPort, mockPort: mock.port, ...opts };
  return { A: gatewayConfig(base), B: gatewayConfig({ ...base, extraModels: EXTRA_MODEL }) };
}

async function modelIds(gw) {
  const r = await httpRequest(`${gw.url}/v1/models`, { timeoutMs: 5000 });
  assert.equal(r.status, 200, r.text);
  return r.json.data.map((m) => m.id);
}

/** Waits until /v1/models shows (or no longer shows) extra-model: the reload took effect. */
function waitExtra(gw, present) {
  return waitFor(async () => (await modelIds(gw)).includes('extra-model') === present, {
    timeoutMs: 10_000,
    what: `extra-model to be ${present ? 'listed' : 'gone'} after SIGHUP`,
  });
}

/** One streamed chat; resolves with its text. onFirst() fires at its first content chunk. */
async function streamChat(client, i, onFirst) {
  const stream = await client.chat.completions.create({
    model: 'demo-chat',
    messages: [{ role: 'user', content: `stream ${i}` }],
    stream: true,
  });
  let text = '';
  let first = true;
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta?.content;
    if (d) {
      if (first) onFirst?.();
      first = false;
      text += d;
    }
  }
  return text;
}

function client(gw) {
  return new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CALLER_KEY, maxRetries: 0, timeout: 120_000 });
}

/** True when a TCP connect to port is refused (the listener is closed). */
function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e) => resolve(e.code === 'ECONNREFUSED'));
  });
}

test('SIGHUP x10 during 200 streamed chats: every stream completes with its full text', { timeout: 180_000 }, async (t) => {
  const TOKENS = 100;
  const mock = await startMock({ args: ['--itl-ms', '5', '--tokens', String(TOKENS)] });
  const gw = await startSluice({ config: (p) => gatewayConfig({ ...p, mockPort: mock.port }) });
  const { A, B } = configs(gw, mock);
  const c = client(gw);

  let firsts = 0;
  let done = 0;
  const streams = Array.from({ length: 200 }, (_, i) =>
    streamChat(c, i, () => firsts++).finally(() => done++),
  );
  await waitFor(() => firsts > 0, { timeoutMs: 30_000, what: 'the first streamed token' });

  // SIGHUPs are paced, not awaited one by one, so that all ten land while the
  // streams run; the last config written (B, with extra-model) must be the one
  // in force at the end.
  const inFlightAtReload = [];
  for (let i = 0; i < 10; i++) {
    gw.writeConfig(i % 2 === 1 ? B : A);
    inFlightAtReload.push(200 - done);
    gw.reload();
    await sleep(25);
  }
  await waitExtra(gw, true);
  const texts = await Promise.all(streams);
  t.diagnostic(`streams in flight at each SIGHUP: ${inFlightAtReload.join(' ')}`);
  texts.forEach((text, i) => assert.equal(text, mockText(TOKENS), `stream ${i}`));
  assert.equal(gw.exitCode, null, 'still running');
  assert.equal(await gw.stop(), 0, gw.stderr.slice(-4000));
  await mock.stop();
});

test('a bad config on SIGHUP is rejected and logged; the old one keeps serving', { timeout: 60_000 }, async () => {
  const mock = await startMock({ args: ['--tokens', '4'] });
  const gw = await startSluice({ config: (p) => gatewayConfig({ ...p, mockPort: mock.port, extraModels: EXTRA_MODEL }) });
  const { B } = configs(gw, mock);
  assert.ok((await modelIds(gw)).includes('extra-model'));

  const stderrBefore = gw.stderr.length;
  gw.writeConfig(B.replace('server:\n', 'server:\n  bogus_key_for_reload: 1\n'));
  gw.reload();
  await waitFor(() => /bogus_key_for_reload|error|invalid|unknown|fail/i.test(gw.stderr.slice(stderrBefore)), {
    timeoutMs: 10_000,
    what: 'the reload error in stderr',
  });
  assert.equal(gw.exitCode, null, 'still running after a bad reload');

  // Still serving, with the old config (extra-model kept).
  const r = await client(gw).chat.completions.create({ model: 'extra-model', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(r.choices[0].message.content, mockText(4));
  assert.ok((await modelIds(gw)).includes('extra-model'));

  // And a good config afterwards still reloads.
  const { A } = configs(gw, mock);
  gw.writeConfig(A);
  gw.reload();
  await waitExtra(gw, false);
  assert.equal(await gw.stop(), 0, gw.stderr.slice(-4000));
  await mock.stop();
});

test('SIGTERM with streams in flight: they complete, new connections are refused, exit 0', { timeout: 60_000 }, async () => {
  const TOKENS = 50;
  const N = 20;
  const mock = await startMock({ args: ['--itl-ms', '20', '--tokens', String(TOKENS)] });
  const gw = await startSluice({ config: (p) => gatewayConfig({ ...p, mockPort: mock.port, drainTimeoutMs: 30_000 }) });
  const c = client(gw);
  let firsts = 0;
  const streams = Array.from({ length: N }, (_, i) => streamChat(c, i, () => firsts++));
  await waitFor(() => firsts === N, { timeoutMs: 30_000, what: 'every stream to start' });

  gw.kill('SIGTERM');
  await waitFor(() => refused(gw.port), { timeoutMs: 10_000, what: 'the listener to close after SIGTERM' });
  const texts = await Promise.all(streams);
  texts.forEach((text, i) => assert.equal(text, mockText(TOKENS), `stream ${i} was cut during the drain`));
  assert.equal(await gw.exited, 0, gw.stderr.slice(-4000));
  assert.ok(await refused(gw.port));
  await mock.stop();
});

test('--check: a good file exits 0', { timeout: 30_000 }, async () => {
  const file = writeConfig(gatewayConfig({ port: 18080, adminPort: 19901, mockPort: 18081 }));
  const r = await runBinary(SLUICE_BIN, ['--check', '-c', file]);
  assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
});

test('--check: a bad file exits 1 with FILE:LINE:COL lines, one per problem', { timeout: 30_000 }, async () => {
  const yaml = gatewayConfig({ port: 18080, adminPort: 19901, mockPort: 18081 }).split('\n');
  const serverLine = yaml.findIndex((l) => l === 'server:');
  yaml.splice(serverLine + 1, 0, '  bogus_one: 1'); // line serverLine + 2 (1-based)
  const modelsLine = yaml.findIndex((l) => l === 'models:');
  yaml.splice(modelsLine + 1, 0, '  - name: bad-model', '    bogus_two: true');
  const file = writeConfig(yaml.join('\n'));
  const r = await runBinary(SLUICE_BIN, ['--check', '-c', file]);
  assert.equal(r.code, 1, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  const out = r.stdout + r.stderr;
  const esc = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const locs = [...out.matchAll(new RegExp(`^${esc}:(\\d+):(\\d+): .+$`, 'gm'))].map((m) => Number(m[1]));
  assert.ok(locs.includes(serverLine + 2), `an error at line ${serverLine + 2} in:\n${out}`);
  assert.ok(locs.includes(modelsLine + 3), `an error at line ${modelsLine + 3} in:\n${out}`);
});

test('--check: a YAML syntax error names its position', { timeout: 30_000 }, async () => {
  const file = writeConfig('server:\n  listen: ["127.0.0.1:1"\n  admin_listen: x\n');
  const r = await runBinary(SLUICE_BIN, ['--check', '-c', file]);
  assert.equal(r.code, 1);
  const esc = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(r.stdout + r.stderr, new RegExp(`^${esc}:\\d+:\\d+: `, 'm'));
});

test('--version prints a version', { timeout: 30_000 }, async () => {
  const r = await runBinary(SLUICE_BIN, ['--version']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\d+\.\d+\.\d+/);
});
