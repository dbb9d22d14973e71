/**
 * The connect flows end to end in Debian's Chromium (headless, playwright-core, no browser
 * download): the code flow through the service chooser, the Authenticator's popup flow (its
 * `window.open` + `kloudless:` message with an origin check), the IE route through
 * `/static/iexd.html`, and a credential form filled in the browser. The provider is a real OAuth
 * 2.0 server on loopback; the application is a page served from another loopback port.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, type TempDir } from '@cloudmux/testkit';
import { type Browser, type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, startTestServer, type TestServer } from '../harness.js';
import {
  type AppSite,
  CLIENT_ID,
  CLIENT_SECRET,
  type MockProvider,
  mockOauthConnector,
  startAppSite,
  startProvider,
} from './fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
// Under CI a missing Chromium fails the launch below; elsewhere the suite is skipped with this reason.
const skip = !existsSync(CHROMIUM) && !process.env.CI;

interface Received {
  origin: string;
  contents?: { type: string; id?: string; data: Record<string, unknown> };
  rejected?: boolean;
}

describe.skipIf(skip)(
  `connect flows in Chromium${skip ? ` (skipped: ${CHROMIUM} is not installed)` : ''}`,
  () => {
    let provider: MockProvider;
    let site: AppSite;
    let roots: TempDir;
    let t: TestServer;
    let browser: Browser;
    let context: BrowserContext;
    let appId: string;
    let apiKey: string;

    beforeAll(async () => {
      provider = await startProvider();
      site = await startAppSite();
      roots = await makeTempDir('cloudmux-oauth-browser-');
      t = await startTestServer({
        store: 'sqlite',
        connectors: [mockOauthConnector(provider, join(roots.path, 'oauth'))],
        env: {
          CLOUDMUX_OAUTH_MOCKOAUTH_CLIENT_ID: CLIENT_ID,
          CLOUDMUX_OAUTH_MOCKOAUTH_CLIENT_SECRET: CLIENT_SECRET,
        },
      });
      appId = t.apps[0]!.appId;
      apiKey = t.apps[0]!.apiKey;
      const res = await t.call(`/v1/applications/${appId}/settings`, {
        method: 'PUT',
        json: { redirect_uris: [`${site.origin}/callback`], trusted_origins: [site.origin] },
      });
      expect(res.status).toBe(200);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--no-first-run',
          '--disable-sync',
        ],
      });
      context = await browser.newContext();
    });
    afterAll(async () => {
      await context?.close();
      await browser?.close();
      await t?.close();
      await site?.stop();
      await provider?.stop();
      await roots?.remove();
    });

    async function exchange(code: string, redirectUri = `${site.origin}/callback`) {
      const res = await fetch(`${t.url}/v1/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `APIKey ${apiKey}` },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code,
          redirect_uri: redirectUri,
          client_id: appId,
        }).toString(),
      });
      expect(res.status).toBe(200);
      return json<{ access_token: string; account_id: number; state?: string }>(res);
    }

    const me = async (token: string) => json(await t.call('/v1/accounts/me', { auth: `Bearer ${token}` }));

    /** The app's listener, as the Authenticator writes it: origin must be our base URL exactly. */
    const listener = (base: string) => `
window.__messages = [];
window.addEventListener('message', function (e) {
  if (e.origin !== ${JSON.stringify(base)}) { window.__messages.push({ origin: e.origin, rejected: true }); return; }
  if (typeof e.data !== 'string' || e.data.indexOf('kloudless:') !== 0) return;
  var contents = JSON.parse(e.data.slice('kloudless:'.length));
  window.__messages.push({ origin: e.origin, contents: contents });
  if (window.__popup) { window.__popup.close(); window.__popup = null; }
  else if (e.source) e.source.postMessage('kloudless:' + JSON.stringify({ type: 'close' }), e.origin);
});`;

    const popupUrl = (state: string) =>
      `${t.url}/v1/oauth?${new URLSearchParams({
        client_id: appId,
        response_type: 'token',
        redirect_uri: 'urn:ietf:wg:oauth:2.0:oob',
        scope: 'mockoauth:normal.storage',
        state,
        request_id: state,
        origin: site.origin,
      })}`;

    it('runs the code flow through the service chooser and the provider', async () => {
      const page = await context.newPage();
      const state = 'browser-code';
      await page.goto(
        `${t.url}/v1/oauth?${new URLSearchParams({ client_id: appId, response_type: 'code', redirect_uri: `${site.origin}/callback`, scope: 'any', state })}`,
      );
      await page.click('#service-mockoauth');
      await page.waitForURL(`${site.origin}/callback?**`);
      expect(await page.textContent('#arrived')).toBe('back at the app');
      const back = site.callbacks.at(-1)!;
      expect(back.get('state')).toBe(state);
      const token = await exchange(back.get('code')!);
      expect(token.state).toBe(state);
      expect(await me(token.access_token)).toMatchObject({ id: token.account_id, service: 'mockoauth' });
      await page.close();
    });

    it('runs the Authenticator popup flow: window.open, a kloudless: message from our origin, the token works', async () => {
      site.setPage(`<!DOCTYPE html><title>app</title><button id="connect">Connect</button><script>
${listener(t.url)}
document.getElementById('connect').addEventListener('click', function () {
  window.__popup = window.open(${JSON.stringify(popupUrl('777'))}, 'kPOPUP', 'resizable,scrollbars,status,height=600,width=1000');
});</script>`);
      const page = await context.newPage();
      await page.goto(`${site.origin}/`);
      const popupOpened = page.waitForEvent('popup');
      await page.click('#connect');
      const popup = await popupOpened;
      const closed = popup.waitForEvent('close');
      await page.waitForFunction(
        () => (globalThis as unknown as { __messages: unknown[] }).__messages.length > 0,
      );
      const messages = await page.evaluate(
        () => (globalThis as unknown as { __messages: Received[] }).__messages,
      );
      expect(messages).toHaveLength(1);
      const [message] = messages;
      expect(message!.rejected).toBeUndefined();
      expect(message!.origin).toBe(t.url);
      expect(message!.contents).toMatchObject({
        type: 'authentication',
        id: '777',
        data: { token_type: 'Bearer', state: '777' },
      });
      await closed;
      const token = String(message!.contents!.data.access_token);
      expect(await me(token)).toMatchObject({ id: message!.contents!.data.account_id, service: 'mockoauth' });
      await page.close();
    });

    it('posts a denied consent to the opener as data.error', async () => {
      provider.deny = true;
      try {
        site.setPage(`<!DOCTYPE html><title>app</title><button id="connect">Connect</button><script>
${listener(t.url)}
document.getElementById('connect').addEventListener('click', function () {
  window.__popup = window.open(${JSON.stringify(popupUrl('888'))}, 'kPOPUP', 'height=600,width=1000');
});</script>`);
        const page = await context.newPage();
        await page.goto(`${site.origin}/`);
        await page.click('#connect');
        await page.waitForFunction(
          () => (globalThis as unknown as { __messages: unknown[] }).__messages.length > 0,
        );
        const [message] = await page.evaluate(
          () => (globalThis as unknown as { __messages: Received[] }).__messages,
        );
        expect(message!.origin).toBe(t.url);
        expect(message!.contents).toMatchObject({
          type: 'authentication',
          id: '888',
          data: { error: 'access_denied', state: '888' },
        });
        expect(message!.contents!.data.access_token).toBeUndefined();
        await page.close();
      } finally {
        provider.deny = false;
      }
    });

    it('runs the IE route: /static/iexd.html opens the popup and relays its message to the app', async () => {
      site.setPage(`<!DOCTYPE html><title>app</title>
<iframe id="kloudless_iexd" src="${t.url}/static/iexd.html" style="width:400px;height:200px"></iframe><script>
${listener(t.url)}
var frame = document.getElementById('kloudless_iexd');
frame.addEventListener('load', function () {
  frame.contentWindow.postMessage('kloudless:' + JSON.stringify({ type: 'prepareToOpenAuthenticator',
    url: ${JSON.stringify(popupUrl('999'))}, params: 'height=600,width=1000' }), frame.src);
  window.__prepared = true;
});</script>`);
      const page = await context.newPage();
      await page.goto(`${site.origin}/`);
      await page.waitForFunction(
        () => (globalThis as unknown as { __prepared?: boolean }).__prepared === true,
      );
      const popupOpened = page.waitForEvent('popup');
      // Popup blockers: the popup opens on the user's click inside the frame.
      await page.frameLocator('#kloudless_iexd').locator('#open').click();
      const popup = await popupOpened;
      const closed = popup.waitForEvent('close');
      await page.waitForFunction(
        () => (globalThis as unknown as { __messages: unknown[] }).__messages.length > 0,
      );
      const [message] = await page.evaluate(
        () => (globalThis as unknown as { __messages: Received[] }).__messages,
      );
      expect(message!.origin).toBe(t.url);
      expect(message!.contents).toMatchObject({
        type: 'authentication',
        id: '999',
        data: { state: '999', token_type: 'Bearer' },
      });
      // The app's `close` to the frame closes the popup it opened.
      await closed;
      expect(await me(String(message!.contents!.data.access_token))).toMatchObject({ service: 'mockoauth' });
      await page.close();
    });

    it('fills a credential form in the browser: a wrong value shows the error, the right one connects', async () => {
      const inside = join(t.dataDir.path, 'files', 'browser-form');
      mkdirSync(inside, { recursive: true });
      const page = await context.newPage();
      await page.goto(
        `${t.url}/v1/oauth?${new URLSearchParams({ client_id: appId, response_type: 'code', redirect_uri: `${site.origin}/callback`, scope: 'local', state: 'form' })}`,
      );
      expect(await page.textContent('h1')).toBe('Connect Local Disk');
      await page.fill('#id_root', '/etc');
      await page.click('#connect-submit');
      await page.waitForSelector('#connect-error');
      expect(await page.textContent('#connect-error')).toContain(
        'outside the directories this server allows',
      );
      expect(await page.inputValue('#id_root')).toBe('/etc');
      await page.fill('#id_root', inside);
      await page.click('#connect-submit');
      await page.waitForURL(`${site.origin}/callback?**`);
      const back = site.callbacks.at(-1)!;
      expect(back.get('state')).toBe('form');
      const token = await exchange(back.get('code')!);
      expect(await me(token.access_token)).toMatchObject({ service: 'local', account: inside });
      await page.close();
    });
  },
);
