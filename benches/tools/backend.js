// Benchmark backend in node.js, like the seed's three node.js web apps: one process per port
// (node's own `http` server, keep-alive on), answering every request with a small page and the
// headers Express sends (`X-Powered-By`, a weak `ETag`, so the proxy's `nocache` path runs).
//
//   node benches/tools/backend.js 18181 app1
//
// It stops by itself after BENCH_BACKEND_SECS seconds (default 900), so a forgotten run ends.
'use strict';
const http = require('http');

const port = Number(process.argv[2] || 18181);
const name = process.argv[3] || `app-${port}`;
const body = Buffer.from(`hello from ${name}\n`);

const server = http.createServer((req, res) => {
  // Drain any request body before answering, as Express's body parsers do.
  req.resume();
  req.on('end', () => {
    res.writeHead(200, {
      'X-Powered-By': 'Express',
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Length': body.length,
      'ETag': 'W/"1d-bench"',
      'X-Backend': name,
    });
    res.end(body);
  });
});
// The proxies keep their server connections for longer than node's 5 s default.
server.keepAliveTimeout = 65000;
server.headersTimeout = 66000;
server.listen(port, '127.0.0.1');
setTimeout(() => process.exit(0), Number(process.env.BENCH_BACKEND_SECS || 900) * 1000).unref();
