/**
 * The HTML of hosted link pages: self-contained (inline CSS, no scripts, no external assets), every
 * interpolated value escaped. They show the file's name and size and nothing about the account.
 * The password form keeps the element names Kloudless used (`id_password`, `form-submit`): the
 * Kloudless SDK's browser test drove exactly these.
 */

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

/** Headers for every link page: nothing loads from elsewhere, nothing frames it, the URL never leaks. */
export const PAGE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; '),
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

const STYLE = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330;
margin:0}
main{max-width:28rem;margin:12vh auto;background:#fff;border-radius:8px;padding:2rem;
box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.15rem;margin:0 0 .5rem;word-break:break-all}
p{margin:.25rem 0 1rem;color:#555}
.error{color:#b00020}
input{width:100%;box-sizing:border-box;padding:.6rem;margin:.25rem 0 1rem;border:1px solid #bbb;
border-radius:4px;font-size:1rem}
button,a.button{display:inline-block;background:#2457d6;color:#fff;border:0;border-radius:4px;
padding:.6rem 1.2rem;font-size:1rem;text-decoration:none;cursor:pointer}
`;

function layout(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

export function formatSize(bytes: number | null): string {
  if (bytes === null || !Number.isFinite(bytes) || bytes < 0) return 'Unknown size';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0
    ? `${bytes} ${bytes === 1 ? 'byte' : 'bytes'}`
    : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** The landing page of a link that is not `direct`: name, size and a download button. */
export function linkPage(file: { name: string; size: number | null }, downloadHref: string): string {
  return layout(
    file.name,
    `<h1>${escapeHtml(file.name)}</h1>
<p>${escapeHtml(formatSize(file.size))}</p>
<a class="button" id="download" href="${escapeHtml(downloadHref)}" download>Download</a>`,
  );
}

const PROMPT = 'Enter the password to open the file.';

/** The password form; `error` is shown after a wrong password. It posts back to the link URL. */
export function passwordPage(error?: string): string {
  return layout(
    'Password required',
    `<h1>This link is protected by a password</h1>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : `<p>${PROMPT}</p>`}
<form method="post" autocomplete="off">
<label for="id_password">Password</label>
<input type="password" id="id_password" name="password" required autofocus>
<button type="submit" name="form-submit" value="1">Open</button>
</form>`,
  );
}

export function errorPage(status: number, message: string): string {
  return layout(`Link unavailable (${status})`, `<h1>Link unavailable</h1>\n<p>${escapeHtml(message)}</p>`);
}
