/**
 * One delivery attempt: POST the signed form body to the receiver through the network guard's
 * agents (the guard checks the address actually connected to), no redirects, a timeout, and at
 * most 64 KiB of the response read for the app-id echo.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { type NetworkGuard, parseRetryAfter } from '@cloudmux/core';

export interface DeliveryRequest {
  url: string;
  body: string;
  signature: string;
  appId: string;
  deliveryId: number;
  timeoutMs: number;
  /** Aborts the attempt (server shutdown). */
  signal?: AbortSignal;
}

export type DeliveryOutcome =
  | { ok: true; status: number }
  | {
      ok: false;
      error: string;
      status?: number;
      /** Seconds from `Retry-After` on a 429 or 503. */
      retryAfter?: number;
      /** The attempt was cut short by the server stopping, not by the receiver. */
      aborted?: boolean;
    };

const MAX_RESPONSE_BYTES = 64 * 1024;
const USER_AGENT = 'Cloudmux-Webhooks/1';

/** Sends one attempt; never throws (every failure is an outcome to retry on). */
export function deliver(
  guard: NetworkGuard,
  req: DeliveryRequest,
  now: () => number,
): Promise<DeliveryOutcome> {
  return new Promise<DeliveryOutcome>((resolve) => {
    let settled = false;
    const finish = (outcome: DeliveryOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    const url = new URL(req.url);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const body = Buffer.from(req.body, 'utf8');
    // Kloudless webhooks (kloudless-api.md §2.4): form body, X-Kloudless-Signature, app id echoed back.
    const outgoing = send(url, {
      method: 'POST',
      agent: url.protocol === 'https:' ? guard.httpsAgent : guard.httpAgent,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': String(body.length),
        'x-kloudless-signature': req.signature,
        'x-cloudmux-delivery': String(req.deliveryId),
        'user-agent': USER_AGENT,
      },
    });
    // Listening first: destroying the request below (timeout, abort) emits 'error'.
    outgoing.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ? `${err.code}: ` : '';
      finish({ ok: false, error: `${code}${err.message}`.slice(0, 500) });
    });
    const timer = setTimeout(() => {
      outgoing.destroy(new Error(`no complete response within ${req.timeoutMs} ms`));
    }, req.timeoutMs);
    timer.unref();
    const onAbort = () => {
      outgoing.destroy();
      finish({ ok: false, error: 'the server stopped during the attempt', aborted: true });
    };
    if (req.signal?.aborted) return onAbort();
    req.signal?.addEventListener('abort', onAbort, { once: true });

    outgoing.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (status >= 200 && status < 300) {
          if (text.includes(req.appId)) return finish({ ok: true, status });
          return finish({
            ok: false,
            status,
            error: `HTTP ${status}, but the response body does not contain the application id`,
          });
        }
        const outcome: DeliveryOutcome = {
          ok: false,
          status,
          error: `HTTP ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}: ${text.slice(0, 200)}`,
        };
        if (status === 429 || status === 503) {
          const header = res.headers['retry-after'];
          const retryAfter = parseRetryAfter(Array.isArray(header) ? header[0] : header, now());
          if (retryAfter !== undefined) outcome.retryAfter = retryAfter;
        }
        finish(outcome);
      };
      res.on('data', (chunk: Buffer) => {
        if (size >= MAX_RESPONSE_BYTES) return;
        chunks.push(chunk.subarray(0, MAX_RESPONSE_BYTES - size));
        size += chunk.length;
        if (size >= MAX_RESPONSE_BYTES) {
          // Enough to look for the echo; the rest is not read.
          res.destroy();
          done();
        }
      });
      res.on('end', done);
      res.on('error', (err) =>
        finish({ ok: false, status, error: `response: ${err.message}`.slice(0, 500) }),
      );
    });
    outgoing.end(body);
  });
}
