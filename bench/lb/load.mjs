// bench/lb/load.mjs: the multi-turn chat workload of `make bench-lb` (docs/balancing.md).
//
// Sessions x turns, a shared system prompt, a fixed number of sessions in
// flight (closed loop: each of `concurrency` workers plays whole sessions,
// one turn after the other, the assistant's answer appended to the history
// like a chat client does). Streams with include_usage; time to first token
// is measured at the first chunk that carries content.
//
// Hot-spot mode (--hot N): N of the workers play sessions that all share one
// long document after the system prompt (a popular agent's context), the rest
// play ordinary sessions: the prefix of the document becomes far hotter than
// any other.
//
// Prints one JSON object: ttft p50/p90/p99 (ms), requests, errors, seconds,
// requests/s, output tokens/s.
import http from 'node:http';

function args() {
  const a = { url: 'http://127.0.0.1:8080', model: 'm', sessions: 60, turns: 5, concurrency: 20,
              systemTokens: 1000, userTokens: 200, hot: 0, hotTokens: 6000, maxTokens: 24, seed: 1 };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) {
    const k = v[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(k in a)) throw new Error(`unknown flag ${v[i]}`);
    a[k] = k === 'url' || k === 'model' ? v[i + 1] : Number(v[i + 1]);
  }
  return a;
}

// Deterministic words: a session's text differs from every other's from its first word.
function text(seed, tokens) {
  let x = seed >>> 0 || 1;
  const w = [];
  for (let i = 0; i < tokens; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    w.push((x % 46656).toString(36)); // about 4 bytes with the space: one token
  }
  return w.join(' ');
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });

function turn(a, messages) {
  return new Promise((resolve) => {
    const u = new URL('/v1/chat/completions', a.url);
    const body = JSON.stringify({ model: a.model, stream: true, max_tokens: a.maxTokens,
                                  stream_options: { include_usage: true }, messages });
    const t0 = process.hrtime.bigint();
    let ttft = null, buf = '', content = '', out = 0, status = 0;
    const req = http.request(u, { method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      status = res.statusCode;
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i); buf = buf.slice(i + 2);
          if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
          let j; try { j = JSON.parse(ev.slice(6)); } catch { continue; }
          const c = j.choices && j.choices[0] && j.choices[0].delta && j.choices[0].delta.content;
          if (c) {
            if (ttft === null) ttft = Number(process.hrtime.bigint() - t0) / 1e6;
            content += c;
          }
          if (j.usage) out = j.usage.completion_tokens || 0;
        }
      });
      res.on('end', () => resolve({ ok: status === 200 && ttft !== null, ttft, content, out }));
      res.on('error', () => resolve({ ok: false }));
    });
    req.on('error', () => resolve({ ok: false }));
    req.end(body);
  });
}

function pct(xs, p) {
  if (!xs.length) return null;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function main() {
  const a = args();
  const system = 'You are a helpful assistant. ' + text(7, a.systemTokens);
  const doc = 'Reference document:\n' + text(99, a.hotTokens);
  const ttfts = [], hotTtfts = [];
  let errors = 0, requests = 0, outTokens = 0, next = 0;
  async function session(id, hot) {
    const messages = [{ role: 'system', content: hot ? system + '\n' + doc : system }];
    for (let t = 0; t < a.turns; t++) {
      messages.push({ role: 'user', content: text(a.seed * 1000003 + id * 101 + t + 1, a.userTokens) });
      const r = await turn(a, messages);
      requests++;
      if (!r.ok) { errors++; return; }
      ttfts.push(r.ttft);
      if (hot) hotTtfts.push(r.ttft);
      outTokens += r.out;
      messages.push({ role: 'assistant', content: r.content });
    }
  }
  async function worker(w) {
    const hot = w < a.hot;
    for (;;) {
      const id = next++;
      if (id >= a.sessions) return;
      await session(id, hot);
    }
  }
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: a.concurrency }, (_, w) => worker(w)));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const r2 = (x) => (x === null ? null : Math.round(x * 10) / 10);
  console.log(JSON.stringify({
    requests, errors, seconds: r2(secs),
    ttft_p50_ms: r2(pct(ttfts, 50)), ttft_p90_ms: r2(pct(ttfts, 90)), ttft_p99_ms: r2(pct(ttfts, 99)),
    hot_ttft_p99_ms: a.hot ? r2(pct(hotTtfts, 99)) : undefined,
    req_per_s: r2(requests / secs), out_tok_per_s: r2(outTokens / secs),
  }));
  agent.destroy();
}

main().catch((e) => { console.error(e); process.exit(1); });
