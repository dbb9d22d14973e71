/**
 * Shared frame of the connect pages: self-contained (inline CSS, inline scripts allowed only by a
 * per-response nonce, no external assets), every interpolated value escaped, nothing cached, no
 * referrer sent (the URLs carry our `state`).
 */
import { randomBytes } from 'node:crypto';
import { escapeHtml } from '../link-pages.js';

export { escapeHtml };

export interface PageOptions {
  /** Where forms on the page may post and redirect to, besides our own origin (CSP `form-action`). */
  formTargets?: string[];
  /** Origins allowed to frame the page; default none. */
  frameAncestors?: string;
}

export interface Page {
  html: string;
  headers: Record<string, string>;
}

export function newNonce(): string {
  return randomBytes(16).toString('base64');
}

export function pageHeaders(nonce: string, options: PageOptions = {}): Record<string, string> {
  const frameAncestors = options.frameAncestors ?? "'none'";
  const headers: Record<string, string> = {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': [
      "default-src 'none'",
      `style-src 'nonce-${nonce}'`,
      `script-src 'nonce-${nonce}'`,
      "img-src 'self' data:",
      // Chrome applies form-action to the redirect that follows a POST, so the app's redirect URI is listed.
      `form-action 'self'${(options.formTargets ?? []).map((t) => ` ${t}`).join('')}`,
      `frame-ancestors ${frameAncestors}`,
      "base-uri 'none'",
    ].join('; '),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
    pragma: 'no-cache',
  };
  if (frameAncestors === "'none'") headers['x-frame-options'] = 'DENY';
  return headers;
}

const STYLE = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:30rem;margin:8vh auto;background:#fff;border-radius:8px;padding:2rem;
box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.2rem;margin:0 0 .75rem}
p{margin:.25rem 0 1rem;color:#555}
.error{color:#b00020;background:#fdecee;border-radius:4px;padding:.6rem .8rem;white-space:pre-wrap}
label{display:block;font-size:.9rem;margin:.6rem 0 .2rem}
label.check{display:flex;gap:.5rem;align-items:center}
input[type=text],input[type=password],input[type=number],select{width:100%;box-sizing:border-box;padding:.55rem;
border:1px solid #bbb;border-radius:4px;font-size:1rem}
button,a.service{display:block;width:100%;box-sizing:border-box;background:#2457d6;color:#fff;border:0;
border-radius:4px;padding:.65rem 1rem;font-size:1rem;text-decoration:none;cursor:pointer;margin:.5rem 0;text-align:left}
.req{color:#b00020}
code.token{display:block;word-break:break-all;background:#f0f2f5;padding:.6rem;border-radius:4px}
`;

export function layout(nonce: string, title: string, body: string, script?: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>${escapeHtml(title)}</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
${script ? `<script nonce="${nonce}">${script}</script>` : ''}
</body>
</html>
`;
}

/** JSON that is safe inside a `<script>` element (no `</script>`, no HTML comment, no line separators). */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}
