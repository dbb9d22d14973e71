// The memory baseline of the pass-through benchmark: the smallest streaming proxy Node can run
// (node:http in, node:http out, `pipe` both ways), measured by the same RSS probe as the Cloudmux
// server. What Cloudmux's peak adds over this one is ours; the rest is Node's own per-chunk garbage.
import { createServer, request } from 'node:http';
import { serveRssProbe } from '../lib/forked-server.mjs';

const upstream = new URL(process.env.BENCH_UPSTREAM);
const server = createServer((req, res) => {
  const headers = {};
  for (const name of ['content-length', 'content-type']) {
    if (req.headers[name] !== undefined) headers[name] = req.headers[name];
  }
  const out = request(
    { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers },
    (answer) => {
      const back = {};
      for (const name of ['content-length', 'content-type']) {
        if (answer.headers[name] !== undefined) back[name] = answer.headers[name];
      }
      res.writeHead(answer.statusCode, back);
      answer.pipe(res);
    },
  );
  out.on('error', (err) => res.destroy(err));
  req.pipe(out);
});
server.listen(0, '127.0.0.1', () => {
  process.send({ type: 'ready', url: `http://127.0.0.1:${server.address().port}` });
});
serveRssProbe(() => new Promise((resolve) => server.close(resolve)));
