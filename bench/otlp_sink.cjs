// otlp_sink.cjs: the OTLP/HTTP receiver of bench/run.sh's feature-cost step.
// `node otlp_sink.cjs PORT` listens on 127.0.0.1:PORT and answers every
// POST /v1/traces with 200 and an empty ExportTraceServiceResponse once the
// body has been read; it does not parse the spans (a collector's cost is not
// sluice's). GET /stats gives {"exports":N,"bytes":N}, so the benchmark can
// see that spans really arrived. Anything else gets 404.
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write('usage: node otlp_sink.cjs PORT\n');
    process.exit(2);
}
let posts = 0, bytes = 0;

const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/v1/traces') {
        req.on('data', (chunk) => { bytes += chunk.length; });
        req.on('end', () => {
            posts++;
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 });
            res.end('{}');
        });
        return;
    }
    if (req.method === 'GET' && req.url === '/stats') {
        const body = JSON.stringify({ exports: posts, bytes });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        return;
    }
    req.resume();
    res.writeHead(404, { 'content-length': 0 });
    res.end();
});
server.keepAliveTimeout = 75000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
