/**
 * The pages of `/v1/oauth`: the service chooser, the credential form, the result of the popup
 * (out-of-band) flow, and the error page shown when there is nowhere safe to send an error.
 * Element ids (`connect-submit`, `id_<field>`, `connect-error`, `oob-token`) are stable for tests
 * and for operators who restyle the pages.
 */
import type { FormField } from '../../oauth/forms.js';
import {
  escapeHtml,
  layout,
  newNonce,
  type Page,
  type PageOptions,
  pageHeaders,
  scriptJson,
} from './layout.js';

function page(
  title: string,
  body: string,
  options: PageOptions & { script?: (nonce: string) => string } = {},
): Page {
  const nonce = newNonce();
  return { html: layout(nonce, title, body, options.script?.(nonce)), headers: pageHeaders(nonce, options) };
}

export function errorPage(title: string, message: string): Page {
  return page(
    title,
    `<h1>${escapeHtml(title)}</h1>
<p class="error" id="connect-error" role="alert">${escapeHtml(message)}</p>
<p>Return to the application and start connecting again.</p>`,
  );
}

export interface ChooserEntry {
  name: string;
  service: string;
  href: string;
}

export function chooserPage(appName: string, entries: ChooserEntry[]): Page {
  const items = entries
    .map(
      (e) =>
        `<a class="service" id="service-${escapeHtml(e.service)}" href="${escapeHtml(e.href)}">${escapeHtml(e.name)}</a>`,
    )
    .join('\n');
  return page(
    'Choose a service',
    `<h1>Connect an account</h1>
<p>${escapeHtml(appName)} asks to connect one of these services:</p>
<nav>
${items}
</nav>`,
  );
}

export interface CredentialFormInput {
  appName: string;
  serviceName: string;
  action: string;
  state: string;
  csrf: string;
  fields: FormField[];
  values: Record<string, string | boolean>;
  error?: string;
  formTargets?: string[];
}

function fieldHtml(field: FormField, value: string | boolean | undefined): string {
  const id = `id_${field.name}`;
  const name = escapeHtml(field.name);
  const label = escapeHtml(field.label);
  const required = field.required ? ' required' : '';
  const star = field.required ? ' <span class="req" aria-hidden="true">*</span>' : '';
  if (field.kind === 'checkbox') {
    return `<label class="check"><input type="checkbox" id="${id}" name="${name}" value="true"${value === true ? ' checked' : ''}> ${label}</label>`;
  }
  if (field.kind === 'select') {
    const options = (field.required ? [] : [''])
      .concat(field.options ?? [])
      .map(
        (o) =>
          `<option value="${escapeHtml(o)}"${value === o ? ' selected' : ''}>${escapeHtml(o || '(default)')}</option>`,
      )
      .join('');
    return `<label for="${id}">${label}${star}</label><select id="${id}" name="${name}"${required}>${options}</select>`;
  }
  const type = field.kind === 'password' ? 'password' : field.kind === 'number' ? 'number' : 'text';
  // Secrets are never written back into the page, whatever was typed or pre-filled.
  const shown = field.secret || typeof value !== 'string' ? '' : ` value="${escapeHtml(value)}"`;
  const autocomplete = field.secret ? ' autocomplete="new-password"' : ' autocomplete="off"';
  return `<label for="${id}">${label}${star}</label><input type="${type}" id="${id}" name="${name}"${shown}${required}${autocomplete}>`;
}

export function credentialFormPage(input: CredentialFormInput): Page {
  const fields = input.fields.map((f) => fieldHtml(f, input.values[f.name])).join('\n');
  const error = input.error
    ? `<p class="error" id="connect-error" role="alert">${escapeHtml(input.error)}</p>\n`
    : '';
  return page(
    `Connect ${input.serviceName}`,
    `<h1>Connect ${escapeHtml(input.serviceName)}</h1>
<p>for ${escapeHtml(input.appName)}</p>
${error}<form method="post" action="${escapeHtml(input.action)}" id="connect-form">
<input type="hidden" name="_state" value="${escapeHtml(input.state)}">
<input type="hidden" name="_csrf" value="${escapeHtml(input.csrf)}">
${fields}
<button type="submit" id="connect-submit">Connect</button>
</form>`,
    { ...(input.formTargets ? { formTargets: input.formTargets } : {}) },
  );
}

export interface PopupResultInput {
  /** The whole `kloudless:{…}` string the opener receives. */
  message: string;
  /** The app's trusted origin: the only target the message is posted to. */
  origin: string;
  ok: boolean;
  /** Shown when the page has no opener (opened outside the widget). */
  fallbackHtml: string;
}

/**
 * Posts the result to `window.opener` with `targetOrigin` = the app's origin (the widgets check
 * `message.origin` against our base URL: this page is served from it). When the opener is our own
 * `/static/iexd.html` (the IE route), it gets a `relay` envelope addressed to our origin and
 * forwards the message to its parent — again only to the app's origin.
 */
export function popupResultPage(input: PopupResultInput): Page {
  const script = () => `(function () {
var d = ${scriptJson({ message: input.message, origin: input.origin })};
var opener = window.opener;
if (!opener) { document.getElementById('fallback').hidden = false; return; }
try { opener.postMessage(d.message, d.origin); } catch (e) {}
try {
  opener.postMessage('kloudless:' + JSON.stringify({ type: 'relay', origin: d.origin, message: d.message }), window.location.origin);
} catch (e) {}
document.getElementById('done').hidden = false;
})();`;
  return page(
    input.ok ? 'Account connected' : 'Connection failed',
    `<h1>${input.ok ? 'Account connected' : 'Connection failed'}</h1>
<p id="done" hidden>${input.ok ? 'You can close this window.' : 'The application was told; you can close this window.'}</p>
<div id="fallback" hidden>${input.fallbackHtml}</div>`,
    { script },
  );
}

/** Out-of-band result without an opener: the user copies the token (or code) into the application. */
export function oobResultPage(title: string, label: string, value: string, extra = ''): Page {
  return page(
    title,
    `<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(label)}</p>
<code class="token" id="oob-token">${escapeHtml(value)}</code>
${extra}`,
  );
}
