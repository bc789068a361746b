// portkey-loopback.cjs: preloaded into Portkey's gateway by bench/run.sh
// (node --require). Portkey's start-server.js listens on every interface and
// has no flag for the address; the benchmark must only use 127.0.0.1, so
// every listen() on a port is pinned to the loopback address here.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length && typeof args[0] === 'object' && args[0] !== null && 'port' in args[0]) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  } else if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const port = Number(args[0]);
    const cb = args.find((a) => typeof a === 'function');
    args = cb ? [port, '127.0.0.1', cb] : [port, '127.0.0.1'];
  }
  return listen.apply(this, args);
};
