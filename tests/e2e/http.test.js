// http.test.js: the HTTP/1.1 front door over raw sockets (SPEC §2 limits,
// src/http/parser.h): every class of malformed request is refused and the
// connection closed (no request smuggling), limits answer 413/431, slow
// clients are cut off, and keep-alive, pipelining and Expect: 100-continue
// work the way clients rely on.
import assert from 'node:assert/strict';
import test, { before, beforeEach } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertAlive, gatewayConfig, rawConnect, rawRequest, startMock, startSluice } from './lib/harness.js';

const T = { timeout: 20_000 };
const MAX_BODY = 1024;
const H = 'Host: 127.0.0.1\r\n';

let mock;
let gw;

before(async () => {
  mock = await startMock({ args: ['--tokens', '4'] });
  gw = await startSluice({
    config: (p) =>
      gatewayConfig({ ...p, mockPort: mock.port, limits: { max_body_bytes: MAX_BODY, header_timeout_ms: 300 } }),
  });
});
// Once a binary died, every later test says so (with its stderr) instead of ECONNREFUSED.
beforeEach(() => {
  assertAlive(gw, mock);
});


const chatBody = JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }] });
const post = (headers, body = '') =>
  `POST /v1/chat/completions HTTP/1.1\r\n${H}Content-Type: application/json\r\n${headers}\r\n${body}`;
const get = (headers = '', target = '/v1/models', version = 'HTTP/1.1') => `GET ${target} ${version}\r\n${headers}\r\n`;

// [name, bytes, acceptable statuses]
const MALFORMED = [
  ['Content-Length with Transfer-Encoding', post('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n'), [400]],
  ['two Content-Length headers', post(`Content-Length: ${chatBody.length}\r\nContent-Length: ${chatBody.length}\r\n`, chatBody), [400]],
  ['Content-Length list', post(`Content-Length: ${chatBody.length}, ${chatBody.length}\r\n`, chatBody), [400]],
  ['non-numeric Content-Length', post('Content-Length: abc\r\n', chatBody), [400]],
  ['negative Content-Length', post('Content-Length: -1\r\n', chatBody), [400]],
  ['signed Content-Length', post(`Content-Length: +${chatBody.length}\r\n`, chatBody), [400]],
  ['Content-Length past 2^64', post('Content-Length: 99999999999999999999999\r\n', chatBody), [400, 413]],
  ['obs-fold (continuation line)', get(`${H}X-Folded: a\r\n  b\r\n`), [400]],
  ['bare CR in a header value', get(`${H}X-Bad: a\rb\r\n`), [400]],
  ['bare LF line ends', 'GET /v1/models HTTP/1.1\nHost: 127.0.0.1\n\n', [400]],
  ['NUL in a header value', get(`${H}X-Bad: a\0b\r\n`), [400]],
  ['space in a header name', get(`${H}X Bad: 1\r\n`), [400]],
  ['invalid character in a header name', get(`${H}X(Bad): 1\r\n`), [400]],
  ['whitespace before the colon', get(`${H}X-Bad : 1\r\n`), [400]],
  ['header line without a colon', get(`${H}NoColonHere\r\n`), [400]],
  ['missing Host on HTTP/1.1', get(''), [400]],
  ['two Host headers', get(`${H}${H}`), [400]],
  ['bad chunk size', post('Transfer-Encoding: chunked\r\n', 'zz\r\nhello\r\n0\r\n\r\n'), [400]],
  ['signed chunk size', post('Transfer-Encoding: chunked\r\n', '+5\r\nhello\r\n0\r\n\r\n'), [400]],
  ['chunk without its CRLF', post('Transfer-Encoding: chunked\r\n', '5\r\nhelloXX0\r\n\r\n'), [400]],
  ['Transfer-Encoding not ending in chunked', post('Transfer-Encoding: chunked, gzip\r\n', '0\r\n\r\n'), [400, 501]],
  ['garbage request line', 'HELLO\r\n\r\n', [400]],
  ['invalid method token', get(H).replace(/^GET/, 'G(T'), [400]],
  ['HTTP/2.0 version', get(H, '/v1/models', 'HTTP/2.0'), [505]],
  ['HTTP/3.0 version', get(H, '/v1/models', 'HTTP/3.0'), [505]],
];

for (const [name, bytes, statuses] of MALFORMED) {
  test(`malformed: ${name} -> ${statuses.join('/')} and close`, T, async () => {
    const r = await rawRequest(gw.port, bytes, { timeoutMs: 5000 });
    assert.ok(statuses.includes(r.status), `status ${r.status} (want ${statuses}); got ${JSON.stringify(r.raw.toString('latin1').slice(0, 300))}`);
    assert.ok(r.closed, 'the connection is closed after a framing error');
  });
}

test('header block over 16 KiB -> 431', T, async () => {
  const r = await rawRequest(gw.port, get(`${H}X-Big: ${'a'.repeat(17 * 1024)}\r\n`));
  assert.equal(r.status, 431);
});

test('more than 100 headers -> 431', T, async () => {
  let hs = H;
  for (let i = 0; i < 120; i++) hs += `X-H${i}: v\r\n`;
  const r = await rawRequest(gw.port, get(hs));
  assert.equal(r.status, 431);
});

test('body over max_body_bytes (Content-Length) -> 413 before the body is sent', T, async () => {
  const c = await rawConnect(gw.port);
  try {
    await c.write(post(`Content-Length: ${MAX_BODY + 1000}\r\n`));
    const r = await c.nextResponse(5000);
    assert.ok(r, 'an answer without waiting for the body');
    assert.equal(r.status, 413);
    const err = JSON.parse(r.body.toString());
    assert.equal(err.error.code, 'request_too_large');
  } finally {
    c.destroy();
  }
});

test('body over max_body_bytes (chunked) -> 413', T, async () => {
  const chunk = 'x'.repeat(500);
  const body = `${(500).toString(16)}\r\n${chunk}\r\n`.repeat(4) + '0\r\n\r\n';
  const r = await rawRequest(gw.port, post('Transfer-Encoding: chunked\r\n', body));
  assert.equal(r.status, 413);
});

test('body at max_body_bytes is accepted (then judged as JSON)', T, async () => {
  const pad = ' '.repeat(MAX_BODY - chatBody.length);
  const body = chatBody + pad;
  const r = await rawRequest(gw.port, post(`Content-Length: ${body.length}\r\nConnection: close\r\n`, body));
  assert.equal(r.status, 200, r.body);
});

test('slow header block: 408 or close once header_timeout_ms passes', T, async () => {
  const c = await rawConnect(gw.port);
  try {
    await c.write(`GET /v1/models HTTP/1.1\r\n${H}X-Slow: `);
    const closed = await c.waitClose(10_000);
    assert.ok(closed, 'the server closed a connection whose headers never completed');
    const r = c.take();
    if (r) assert.equal(r.status, 408);
  } finally {
    c.destroy();
  }
});

test('slowloris: a byte at a time does not extend the header deadline', T, async () => {
  const c = await rawConnect(gw.port);
  try {
    const req = `GET /v1/models HTTP/1.1\r\n${H}${'X-Drip: 1\r\n'.repeat(200)}`;
    for (let i = 0; i < req.length && !c.closed; i++) {
      await c.write(req[i]);
      await sleep(50);
    }
    assert.ok(await c.waitClose(10_000), 'closed while the client was still dripping headers');
  } finally {
    c.destroy();
  }
});

test('keep-alive: two requests on one connection', T, async () => {
  const c = await rawConnect(gw.port);
  try {
    for (const id of ['ka-1', 'ka-2']) {
      await c.write(get(`${H}X-Request-Id: ${id}\r\n`));
      const r = await c.nextResponse(5000);
      assert.ok(r, `response to ${id} (closed ${c.closed}, error ${c.error?.message}, got ${JSON.stringify(c.buf.toString("latin1").slice(0, 200))})`);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-request-id'], id);
      assert.ok(JSON.parse(r.body.toString()).data.length > 0);
      assert.ok(!c.closed, 'still open after a keep-alive response');
    }
  } finally {
    c.destroy();
  }
});

test('pipelining: two requests in one write are answered in order', T, async () => {
  const c = await rawConnect(gw.port);
  try {
    // The first goes upstream (slower), the second is answered locally: order must hold anyway.
    await c.write(
      post(`Content-Length: ${chatBody.length}\r\nX-Request-Id: pipe-1\r\n`, chatBody) + get(`${H}X-Request-Id: pipe-2\r\n`),
    );
    const r1 = await c.nextResponse(10_000);
    const r2 = await c.nextResponse(10_000);
    assert.ok(r1 && r2, 'two responses');
    assert.equal(r1.headers['x-request-id'], 'pipe-1');
    assert.equal(r1.status, 200);
    assert.equal(JSON.parse(r1.body.toString()).object, 'chat.completion');
    assert.equal(r2.headers['x-request-id'], 'pipe-2');
    assert.equal(r2.status, 200);
    assert.equal(JSON.parse(r2.body.toString()).object, 'list');
  } finally {
    c.destroy();
  }
});

test('Expect: 100-continue gets "HTTP/1.1 100 Continue" before the final response', T, async () => {
  const c = await rawConnect(gw.port);
  try {
    await c.write(post(`Content-Length: ${chatBody.length}\r\nExpect: 100-continue\r\n`));
    const interim = await c.nextResponse(5000);
    assert.ok(interim, 'an interim response before the body is sent');
    assert.equal(interim.status, 100);
    assert.match(interim.rawHead, /^HTTP\/1\.1 100 Continue/);
    await c.write(chatBody);
    const r = await c.nextResponse(10_000);
    assert.ok(r);
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body.toString()).object, 'chat.completion');
  } finally {
    c.destroy();
  }
});

test('Connection: close and HTTP/1.0 close after the response', T, async () => {
  const r1 = await rawRequest(gw.port, get(`${H}Connection: close\r\n`));
  assert.equal(r1.status, 200);
  assert.ok(r1.closed);
  const r2 = await rawRequest(gw.port, get('', '/v1/models', 'HTTP/1.0'));
  assert.equal(r2.status, 200);
  assert.ok(r2.closed);
});

test('a request after a rejected one never reaches the router (no smuggling)', T, async () => {
  await mock.clearRequests();
  // If CL+TE were resolved by either header, the tail would be parsed as a second request.
  const smuggled = post(`Content-Length: ${chatBody.length + 4}\r\nTransfer-Encoding: chunked\r\n`, `0\r\n\r\n${post(`Content-Length: ${chatBody.length}\r\n`, chatBody)}`);
  const r = await rawRequest(gw.port, smuggled, { responses: 2 });
  assert.equal(r.responses.length, 1, 'one answer only');
  assert.equal(r.status, 400);
  assert.equal((await mock.requests()).length, 0, 'nothing reached the provider');
});

test('gateway exits 0 on SIGTERM (and, under ASan, without leaks)', T, async () => {
  assert.equal(await gw.stop(), 0, `stderr:\n${gw.stderr.slice(-4000)}`);
  assert.equal(await mock.stop(), 0);
});
