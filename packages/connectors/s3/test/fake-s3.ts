/**
 * A small S3 of our own on a loopback port, for what s3rver does not do (test-servers.md): it
 * verifies the SigV4 signature of every request (./sigv4.ts), counts common prefixes in `max-keys`
 * and uses opaque continuation tokens as Amazon S3 does, implements UploadPartCopy,
 * AbortMultipartUpload, `If-None-Match: *` (or answers 501 to it, like an older endpoint), and lets
 * a test inject faults. Shapes follow the S3 API reference pages named at each operation. Path-style
 * only, one bucket. Objects may be "virtual" (a size without bytes) to test copies above 5 GiB, and
 * a sink mode keeps only sizes and hashes (memory tests).
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { verifySigV4 } from './sigv4.js';

export interface FakeObject {
  /** null: virtual (or sink mode) — only `size` and `sha256` are known. */
  data: Buffer | null;
  size: number;
  sha256: string;
  etag: string;
  contentType: string;
  metadata: Record<string, string>;
  lastModified: Date;
}

interface Upload {
  key: string;
  contentType: string;
  metadata: Record<string, string>;
  parts: Map<number, { data: Buffer | null; size: number; etag: string; sha256: string }>;
  /** Sink mode: the hash of parts 1..next-1 received in order, for the whole object's sha256. */
  running: Hash;
  next: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  key: string | null;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  bytes: number;
  /** What the signature check said (`ok` or the S3 error code). */
  auth: string;
}

export interface FaultReply {
  status: number;
  body?: string;
  headers?: Record<string, string>;
  /** Close the socket without answering. */
  destroy?: boolean;
}

/** Consulted before each request is handled (after its body was read); a reply replaces the handling. */
export type Fault = (req: RecordedRequest, fake: FakeS3) => FaultReply | null | undefined;

export interface FakeS3Options {
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  region?: string;
  /** `supported`: 412 on a taken key; `not_implemented`: 501 whenever the header is sent; `ignored`. */
  conditionalWrites?: 'supported' | 'not_implemented' | 'ignored';
  /** Keep no bytes (hash and size only). */
  sink?: boolean;
  /** Minimum size of every part but the last (Amazon: 5 MiB). */
  minPartSize?: number;
}

const xmlEscape = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!,
  );

const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';

/** An XML document from pieces (keeps the templates below readable). */
function doc(...parts: string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?>${parts.join('')}`;
}

function errorXml(code: string, message: string, extra = ''): string {
  return doc(
    `<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message>`,
    `${extra}<RequestId>fake</RequestId></Error>`,
  );
}

/** Amazon's `encoding-type=url` form: space as `+`, everything else strict percent-encoding, `/` kept. */
function urlEncodeKey(key: string): string {
  return key
    .split('/')
    .map((s) =>
      encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
    )
    .join('/')
    .replace(/%20/g, '+');
}

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

export class FakeS3 {
  readonly objects = new Map<string, FakeObject>();
  readonly uploads = new Map<string, Upload>();
  readonly requests: RecordedRequest[] = [];
  readonly faults: Fault[] = [];
  readonly aborted: string[] = [];
  private server: Server | null = null;
  port = 0;

  constructor(readonly options: FakeS3Options) {}

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.reply(res, 500, errorXml('InternalError', String(err)));
        else res.destroy();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** An object with bytes, as if another client wrote it. */
  put(key: string, data: Buffer | string, contentType = 'application/octet-stream'): FakeObject {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const object: FakeObject = {
      data: buf,
      size: buf.length,
      sha256: createHash('sha256').update(buf).digest('hex'),
      etag: `"${md5(buf)}"`,
      contentType,
      metadata: {},
      lastModified: new Date(),
    };
    this.objects.set(key, object);
    return object;
  }

  /** An object of `size` bytes that are never materialized (for copies above 5 GiB). */
  putVirtual(
    key: string,
    size: number,
    contentType = 'application/octet-stream',
    metadata: Record<string, string> = {},
  ): void {
    this.objects.set(key, {
      data: null,
      size,
      sha256: `virtual-${size}`,
      etag: `"${randomBytes(16).toString('hex')}"`,
      contentType,
      metadata,
      lastModified: new Date(),
    });
  }

  private reply(res: ServerResponse, status: number, body = '', headers: Record<string, string> = {}): void {
    const buf = Buffer.from(body, 'utf8');
    res.writeHead(status, {
      'x-amz-request-id': 'fake',
      ...(body ? { 'content-type': 'application/xml' } : {}),
      'content-length': String(buf.length),
      ...headers,
    });
    res.end(buf);
  }

  private async readBody(
    req: IncomingMessage,
    keep: boolean,
    also?: Hash,
  ): Promise<{ data: Buffer | null; size: number; sha256: string; md5: string }> {
    const sha = createHash('sha256');
    const m = createHash('md5');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      sha.update(chunk);
      m.update(chunk);
      also?.update(chunk);
      size += chunk.length;
      if (keep) chunks.push(chunk);
    }
    return {
      data: keep ? Buffer.concat(chunks, size) : null,
      size,
      sha256: sha.digest('hex'),
      md5: m.digest('hex'),
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    const url = new URL(target, 'http://fake');
    const segments = url.pathname.split('/');
    const bucket = decodeURIComponent(segments[1] ?? '');
    const rawKey = segments.slice(2).join('/');
    const key = segments.length > 2 ? decodeURIComponent(rawKey) : null;
    const method = req.method ?? 'GET';
    const isXmlPost = method === 'POST';
    const pending = this.uploads.get(url.searchParams.get('uploadId') ?? '');
    const inOrder =
      this.options.sink &&
      method === 'PUT' &&
      pending &&
      Number(url.searchParams.get('partNumber')) === pending.next;
    const body = await this.readBody(
      req,
      !this.options.sink || isXmlPost || (method === 'PUT' && !!req.headers['x-amz-copy-source']),
      inOrder ? pending.running : undefined,
    );
    if (inOrder) pending.next += 1;
    const verdict = verifySigV4(
      { method, target, headers: req.headers },
      {
        accessKeyId: this.options.accessKeyId,
        secretAccessKey: this.options.secretAccessKey,
        ...(this.options.sessionToken ? { sessionToken: this.options.sessionToken } : {}),
      },
      body.sha256,
    );
    const record: RecordedRequest = {
      method,
      path: url.pathname,
      key,
      query: url.searchParams,
      headers: req.headers,
      bytes: body.size,
      auth: verdict.ok ? 'ok' : verdict.code,
    };
    this.requests.push(record);
    if (!verdict.ok) {
      const status = verdict.code === 'XAmzContentSHA256Mismatch' ? 400 : 403;
      this.reply(res, status, method === 'HEAD' ? '' : errorXml(verdict.code, verdict.reason));
      return;
    }
    if (verdict.region !== (this.options.region ?? 'us-east-1') || verdict.service !== 's3') {
      this.reply(
        res,
        400,
        method === 'HEAD'
          ? ''
          : errorXml(
              'AuthorizationHeaderMalformed',
              `the region '${verdict.region}' is wrong`,
              `<Region>${this.options.region ?? 'us-east-1'}</Region>`,
            ),
      );
      return;
    }
    for (let i = 0; i < this.faults.length; i++) {
      const fault = this.faults[i]!(record, this);
      if (fault) {
        if (fault.destroy) {
          req.socket.destroy();
          return;
        }
        this.reply(res, fault.status, method === 'HEAD' ? '' : (fault.body ?? ''), fault.headers ?? {});
        return;
      }
    }
    if (bucket !== this.options.bucket) {
      this.reply(
        res,
        404,
        method === 'HEAD' ? '' : errorXml('NoSuchBucket', 'The specified bucket does not exist'),
      );
      return;
    }
    const q = url.searchParams;
    if (key === null || key === '') return this.bucketOperation(method, q, body, req, res);
    return this.objectOperation(method, key, q, body, req, res);
  }

  private conditionalFails(req: IncomingMessage, key: string, res: ServerResponse): boolean {
    if (req.headers['if-none-match'] === undefined) return false;
    const mode = this.options.conditionalWrites ?? 'supported';
    if (mode === 'ignored') return false;
    if (mode === 'not_implemented') {
      this.reply(
        res,
        501,
        errorXml('NotImplemented', 'A header you provided implies functionality that is not implemented'),
      );
      return true;
    }
    if (this.objects.has(key)) {
      this.reply(
        res,
        412,
        errorXml('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'),
      );
      return true;
    }
    return false;
  }

  private bucketOperation(
    method: string,
    q: URLSearchParams,
    body: { data: Buffer | null; md5: string },
    req: IncomingMessage,
    res: ServerResponse,
  ): void {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
    if (method === 'GET' && q.get('list-type') === '2') {
      const prefix = q.get('prefix') ?? '';
      const delimiter = q.get('delimiter') ?? '';
      const maxKeys = Math.min(1000, Number(q.get('max-keys') ?? 1000));
      const token = q.get('continuation-token');
      const after = token ? Buffer.from(token, 'base64url').toString('utf8') : (q.get('start-after') ?? '');
      const encode = q.get('encoding-type') === 'url';
      const enc = (s: string) => (encode ? urlEncodeKey(s) : xmlEscape(s));
      const bytes = (s: string) => Buffer.from(s, 'utf8');
      const keys = [...this.objects.keys()]
        .filter((k) => k.startsWith(prefix) && Buffer.compare(bytes(k), bytes(after)) > 0)
        .sort((a, b) => Buffer.compare(bytes(a), bytes(b)));
      const entries: Array<{ key: string; prefix: boolean }> = [];
      let truncated = false;
      let last = '';
      for (const k of keys) {
        // Keys and common prefixes both count against max-keys, as on Amazon S3.
        const idx = delimiter ? k.indexOf(delimiter, prefix.length) : -1;
        const entry = idx === -1 ? k : k.slice(0, idx + delimiter.length);
        if (entries.length > 0 && entries[entries.length - 1]!.key === entry) continue;
        if (entries.length === maxKeys) {
          truncated = true;
          break;
        }
        entries.push({ key: entry, prefix: idx !== -1 });
        last = idx === -1 ? entry : `${entry}\u{10FFFF}`;
      }
      const contents = entries
        .filter((e) => !e.prefix)
        .map((e) => {
          const o = this.objects.get(e.key)!;
          return [
            `<Contents><Key>${enc(e.key)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified>`,
            `<ETag>${xmlEscape(o.etag)}</ETag><Size>${o.size}</Size>`,
            '<StorageClass>STANDARD</StorageClass></Contents>',
          ].join('');
        })
        .join('');
      const prefixes = entries
        .filter((e) => e.prefix)
        .map((e) => `<CommonPrefixes><Prefix>${enc(e.key)}</Prefix></CommonPrefixes>`)
        .join('');
      this.reply(
        res,
        200,
        doc(
          `<ListBucketResult xmlns="${XMLNS}"><Name>${this.options.bucket}</Name>`,
          `<Prefix>${enc(prefix)}</Prefix><KeyCount>${entries.length}</KeyCount>`,
          `<MaxKeys>${maxKeys}</MaxKeys>`,
          delimiter ? `<Delimiter>${enc(delimiter)}</Delimiter>` : '',
          encode ? '<EncodingType>url</EncodingType>' : '',
          `<IsTruncated>${truncated}</IsTruncated>`,
          token ? `<ContinuationToken>${token}</ContinuationToken>` : '',
          truncated
            ? `<NextContinuationToken>${Buffer.from(last).toString('base64url')}</NextContinuationToken>`
            : '',
          contents,
          prefixes,
          '</ListBucketResult>',
        ),
      );
      return;
    }
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html
    if (method === 'POST' && q.has('delete')) {
      const md5b64 = Buffer.from(body.md5, 'hex').toString('base64');
      if (req.headers['content-md5'] !== md5b64) {
        this.reply(
          res,
          400,
          errorXml('InvalidRequest', 'Missing required header for this request: Content-MD5'),
        );
        return;
      }
      const xml = body.data!.toString('utf8');
      const keys = [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) =>
        m[1]!.replace(
          /&(amp|lt|gt|quot|apos);/g,
          (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[e]!,
        ),
      );
      if (keys.length > 1000) {
        this.reply(res, 400, errorXml('MalformedXML', 'more than 1000 keys'));
        return;
      }
      for (const k of keys) this.objects.delete(k);
      this.reply(res, 200, doc(`<DeleteResult xmlns="${XMLNS}"></DeleteResult>`));
      return;
    }
    this.reply(res, 405, errorXml('MethodNotAllowed', 'not in the fake'));
  }

  private objectOperation(
    method: string,
    key: string,
    q: URLSearchParams,
    body: { data: Buffer | null; size: number; sha256: string; md5: string },
    req: IncomingMessage,
    res: ServerResponse,
  ): void {
    const head = method === 'HEAD';
    const uploadId = q.get('uploadId');
    if ((method === 'GET' || head) && uploadId === null) {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
      const o = this.objects.get(key);
      if (!o) {
        this.reply(res, 404, head ? '' : errorXml('NoSuchKey', 'The specified key does not exist.'));
        return;
      }
      const headers: Record<string, string> = {
        'content-type': o.contentType,
        etag: o.etag,
        'last-modified': o.lastModified.toUTCString(),
        'accept-ranges': 'bytes',
      };
      for (const [k, v] of Object.entries(o.metadata)) headers[`x-amz-meta-${k}`] = v;
      const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
      let start = 0;
      let end = o.size - 1;
      let status = 200;
      if (range) {
        start = Number(range[1]);
        end = range[2] ? Math.min(Number(range[2]), o.size - 1) : o.size - 1;
        if (start >= o.size) {
          this.reply(
            res,
            416,
            head ? '' : errorXml('InvalidRange', 'The requested range is not satisfiable'),
          );
          return;
        }
        status = 206;
        headers['content-range'] = `bytes ${start}-${end}/${o.size}`;
      }
      const length = o.size === 0 ? 0 : end - start + 1;
      res.writeHead(status, { ...headers, 'content-length': String(length) });
      if (head) {
        res.end();
        return;
      }
      if (!o.data) {
        res.destroy();
        return;
      }
      res.end(o.data.subarray(start, start + length));
      return;
    }
    if (method === 'PUT' && uploadId === null) {
      const source = req.headers['x-amz-copy-source'];
      if (typeof source === 'string') {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html
        const src = this.copySource(source);
        if (!src) {
          this.reply(res, 404, errorXml('NoSuchKey', 'The specified key does not exist.'));
          return;
        }
        if (src.size > 5 * 1024 ** 3) {
          this.reply(
            res,
            400,
            errorXml(
              'InvalidRequest',
              'The specified copy source is larger than the maximum allowable size for a copy source',
            ),
          );
          return;
        }
        if (this.conditionalFails(req, key, res)) return;
        const copy = { ...src, lastModified: new Date() };
        this.objects.set(key, copy);
        this.reply(
          res,
          200,
          doc(
            `<CopyObjectResult><LastModified>${copy.lastModified.toISOString()}</LastModified>`,
            `<ETag>${xmlEscape(copy.etag)}</ETag></CopyObjectResult>`,
          ),
        );
        return;
      }
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
      if (this.conditionalFails(req, key, res)) return;
      const declared = req.headers['content-length'];
      if (declared === undefined) {
        this.reply(
          res,
          411,
          errorXml('MissingContentLength', 'You must provide the Content-Length HTTP header.'),
        );
        return;
      }
      const etag = `"${body.md5}"`;
      const metadata: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (k.startsWith('x-amz-meta-')) metadata[k.slice(11)] = String(v);
      this.objects.set(key, {
        data: body.data,
        size: body.size,
        sha256: body.sha256,
        etag,
        contentType: String(req.headers['content-type'] ?? 'binary/octet-stream'),
        metadata,
        lastModified: new Date(),
      });
      this.reply(res, 200, '', { etag });
      return;
    }
    if (method === 'POST' && q.has('uploads')) {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html
      const id = randomBytes(12).toString('base64url');
      const metadata: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (k.startsWith('x-amz-meta-')) metadata[k.slice(11)] = String(v);
      this.uploads.set(id, {
        key,
        contentType: String(req.headers['content-type'] ?? 'binary/octet-stream'),
        metadata,
        parts: new Map(),
        running: createHash('sha256'),
        next: 1,
      });
      this.reply(
        res,
        200,
        doc(
          `<InitiateMultipartUploadResult xmlns="${XMLNS}"><Bucket>${this.options.bucket}</Bucket>`,
          `<Key>${xmlEscape(key)}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`,
        ),
      );
      return;
    }
    const upload = uploadId === null ? undefined : this.uploads.get(uploadId);
    if (uploadId !== null && (!upload || upload.key !== key)) {
      this.reply(res, 404, head ? '' : errorXml('NoSuchUpload', 'The specified upload does not exist.'));
      return;
    }
    if (method === 'PUT' && upload) {
      const partNumber = Number(q.get('partNumber'));
      const source = req.headers['x-amz-copy-source'];
      if (typeof source === 'string') {
        // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html
        const src = this.copySource(source);
        const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers['x-amz-copy-source-range'] ?? ''));
        if (!src || !m) {
          this.reply(
            res,
            src ? 400 : 404,
            errorXml(src ? 'InvalidArgument' : 'NoSuchKey', 'bad copy source or range'),
          );
          return;
        }
        const start = Number(m[1]);
        const end = Number(m[2]);
        if (end >= src.size || end < start || end - start + 1 > 5 * 1024 ** 3) {
          this.reply(
            res,
            400,
            errorXml(
              'InvalidArgument',
              'The x-amz-copy-source-range value must be of the form bytes=first-last',
            ),
          );
          return;
        }
        const etag = `"${randomBytes(16).toString('hex')}"`;
        upload.parts.set(partNumber, {
          data: src.data ? src.data.subarray(start, end + 1) : null,
          size: end - start + 1,
          etag,
          sha256: '',
        });
        this.reply(
          res,
          200,
          doc(
            `<CopyPartResult><LastModified>${new Date().toISOString()}</LastModified>`,
            `<ETag>${xmlEscape(etag)}</ETag></CopyPartResult>`,
          ),
        );
        return;
      }
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html
      if (req.headers['content-length'] === undefined) {
        this.reply(
          res,
          411,
          errorXml('MissingContentLength', 'You must provide the Content-Length HTTP header.'),
        );
        return;
      }
      const etag = `"${body.md5}"`;
      upload.parts.set(partNumber, { data: body.data, size: body.size, etag, sha256: body.sha256 });
      this.reply(res, 200, '', { etag });
      return;
    }
    if (method === 'POST' && upload) {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
      const xml = body.data!.toString('utf8');
      const listed = [
        ...xml.matchAll(/<Part><PartNumber>(\d+)<\/PartNumber><ETag>([^<]*)<\/ETag><\/Part>/g),
      ].map((m) => ({
        n: Number(m[1]),
        etag: m[2]!.replace(/&quot;/g, '"'),
      }));
      if (listed.length === 0) {
        this.reply(res, 400, errorXml('MalformedXML', 'no parts'));
        return;
      }
      const minPart = this.options.minPartSize ?? 5 * 1024 * 1024;
      for (let i = 0; i < listed.length; i++) {
        const p = listed[i]!;
        const stored = upload.parts.get(p.n);
        if (!stored || stored.etag !== p.etag) {
          this.reply(res, 400, errorXml('InvalidPart', `part ${p.n} is missing or its ETag differs`));
          return;
        }
        if (i > 0 && listed[i - 1]!.n >= p.n) {
          this.reply(res, 400, errorXml('InvalidPartOrder', 'parts must be in ascending order'));
          return;
        }
        if (i < listed.length - 1 && stored.size < minPart) {
          this.reply(
            res,
            400,
            errorXml('EntityTooSmall', `part ${p.n} is smaller than the minimum allowed size`),
          );
          return;
        }
      }
      if (this.conditionalFails(req, key, res)) return;
      const parts = listed.map((p) => upload.parts.get(p.n)!);
      const size = parts.reduce((s, p) => s + p.size, 0);
      const virtual = parts.some((p) => p.data === null);
      const data = virtual
        ? null
        : Buffer.concat(
            parts.map((p) => p.data!),
            size,
          );
      const etag = `"${md5(Buffer.from(parts.map((p) => p.etag).join('')))}-${parts.length}"`;
      const streamed = this.options.sink && upload.next === listed.length + 1;
      this.objects.set(key, {
        data,
        size,
        sha256: data
          ? createHash('sha256').update(data).digest('hex')
          : streamed
            ? upload.running.digest('hex')
            : `virtual-${size}`,
        etag,
        contentType: upload.contentType,
        metadata: upload.metadata,
        lastModified: new Date(),
      });
      this.uploads.delete(uploadId!);
      this.reply(
        res,
        200,
        doc(
          `<CompleteMultipartUploadResult xmlns="${XMLNS}">`,
          `<Location>${this.endpoint}/${this.options.bucket}/${xmlEscape(key)}</Location>`,
          `<Bucket>${this.options.bucket}</Bucket><Key>${xmlEscape(key)}</Key>`,
          `<ETag>${xmlEscape(etag)}</ETag>`,
          '</CompleteMultipartUploadResult>',
        ),
      );
      return;
    }
    if (method === 'DELETE' && upload) {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html
      this.uploads.delete(uploadId!);
      this.aborted.push(uploadId!);
      this.reply(res, 204);
      return;
    }
    if (method === 'DELETE') {
      // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html
      this.objects.delete(key);
      this.reply(res, 204);
      return;
    }
    this.reply(res, 405, errorXml('MethodNotAllowed', 'not in the fake'));
  }

  private copySource(header: string): FakeObject | undefined {
    const path = header.startsWith('/') ? header.slice(1) : header;
    const slash = path.indexOf('/');
    const bucket = decodeURIComponent(path.slice(0, slash));
    const key = decodeURIComponent(path.slice(slash + 1));
    return bucket === this.options.bucket ? this.objects.get(key) : undefined;
  }
}
