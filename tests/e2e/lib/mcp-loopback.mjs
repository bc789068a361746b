// mcp-loopback.mjs: preloaded (node --import) into third-party test servers
// that listen on every interface (server-everything calls app.listen(PORT)):
// a listen without a host is bound to 127.0.0.1, so tests stay on loopback.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const [port, ...rest] = args;
    if (typeof rest[0] !== 'string') return listen.call(this, Number(port), '127.0.0.1', ...rest);
  } else if (args[0] && typeof args[0] === 'object' && !args[0].host && !args[0].path) {
    return listen.call(this, { ...args[0], host: '127.0.0.1' }, ...args.slice(1));
  }
  return listen.apply(this, args);
};
