/**
 * A tiny loopback HTTP server for the cases a real mod_dav cannot produce on demand: hrefs naming
 * another host, redirects, a server that ignores Range, malformed or hostile XML. Every request is
 * recorded (method, path, Host header) so tests can show what was, and was not, contacted.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Recorded {
  method: string;
  url: string;
  host: string | undefined;
  headers: IncomingMessage['headers'];
}

export interface FakeDav {
  readonly port: number;
  readonly url: string;
  readonly requests: Recorded[];
  /** TCP connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

export async function startFakeDav(handler: Handler, host = '127.0.0.1'): Promise<FakeDav> {
  const requests: Recorded[] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        host: req.headers.host,
        headers: req.headers,
      });
      handler(req, res, Buffer.concat(chunks));
    });
  });
  server.on('connection', () => {
    connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://${host}:${port}/dav/`,
    requests,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A `DAV:response` for a multistatus body (namespace prefix `D`). */
export function davResponse(
  href: string,
  options: { collection?: boolean; size?: number; status?: string } = {},
): string {
  const type = options.collection ? '<D:resourcetype><D:collection/></D:resourcetype>' : '<D:resourcetype/>';
  const length = options.size !== undefined ? `<D:getcontentlength>${options.size}</D:getcontentlength>` : '';
  return (
    `<D:response><D:href>${href}</D:href><D:propstat><D:prop>${type}${length}` +
    '<D:getlastmodified>Fri, 04 Dec 2026 04:21:36 GMT</D:getlastmodified></D:prop>' +
    `<D:status>${options.status ?? 'HTTP/1.1 200 OK'}</D:status></D:propstat></D:response>`
  );
}

export function multistatus(...responses: string[]): string {
  const head = '<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">';
  return `${head}${responses.join('')}</D:multistatus>`;
}

export function send207(res: ServerResponse, body: string): void {
  res.writeHead(207, {
    'Content-Type': 'application/xml; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}
