/**
 * `/static/iexd.html`: the hidden frame the Kloudless widgets load from the API origin
 * (kloudless-api.md §1.2). Browsers that cannot post messages across origins to a popup (old IE)
 * ask this frame — same origin as the popup — to open the popup (`prepareToOpenAuthenticator` from
 * the Authenticator, `prepareToOpen` from the File Picker, opened on the user's click because of
 * popup blockers) and to close it (`close`). The popup's result comes back as a `relay` envelope and
 * is forwarded to the parent page only with `targetOrigin` = the app origin the server validated,
 * so a page that frames this one without being that origin receives nothing.
 */
import { layout, newNonce, type Page, pageHeaders } from './layout.js';

const SCRIPT = `(function () {
var ns = 'kloudless:';
var popup = null, pending = null, parentOrigin = null;
function parse(data) {
  if (typeof data !== 'string' || data.indexOf(ns) !== 0) return null;
  try { return JSON.parse(data.slice(ns.length)); } catch (e) { return null; }
}
function allowed(url) {
  try {
    var u = new URL(url, window.location.href);
    return u.origin === window.location.origin && u.pathname.replace(/\\/+$/, '') === '/v1/oauth';
  } catch (e) { return false; }
}
function open() {
  if (!pending) return;
  var p = pending;
  pending = null;
  popup = window.open(p.url, 'kPOPUP', p.params);
  if (!popup && parentOrigin) window.parent.postMessage(ns + JSON.stringify({ type: 'error' }), parentOrigin);
}
window.addEventListener('message', function (e) {
  var m = parse(e.data);
  if (!m) return;
  if (e.source === window.parent && window.parent !== window) {
    if ((m.type === 'prepareToOpenAuthenticator' || m.type === 'prepareToOpen') && typeof m.url === 'string' && allowed(m.url)) {
      pending = { url: m.url, params: typeof m.params === 'string' ? m.params : '' };
      parentOrigin = e.origin;
    } else if (m.type === 'close' && popup) {
      popup.close();
      popup = null;
    }
    return;
  }
  if (e.origin === window.location.origin && popup && e.source === popup && m.type === 'relay' &&
      typeof m.origin === 'string' && typeof m.message === 'string') {
    window.parent.postMessage(m.message, m.origin);
  }
});
document.getElementById('open').addEventListener('click', open);
})();`;

export function iexdPage(): Page {
  const nonce = newNonce();
  return {
    html: layout(nonce, 'Cloudmux', '<button type="button" id="open">Continue</button>', SCRIPT),
    // Framed by the application's pages, whatever their origin.
    headers: { ...pageHeaders(nonce, { frameAncestors: '*' }), 'cache-control': 'public, max-age=300' },
  };
}
