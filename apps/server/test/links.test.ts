import { errorEnvelopeSchema, linkSchema, objectListSchema } from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestApp, type TestServer, upload } from './harness.js';

type Link = ReturnType<typeof linkSchema.parse>;

describe.each(STORE_KINDS)('Links on %s', (store) => {
  let t: TestServer;
  let base: string;
  beforeAll(async () => {
    t = await startTestServer({ store });
    base = t.base;
  });
  afterAll(async () => t?.close());

  const expectError = async (res: Response, status: number, code: string) => {
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = errorEnvelopeSchema.parse(await json(res));
    expect(body).toMatchObject({ status_code: status, error_code: code });
    expect(res.status).toBe(status);
  };

  const createLink = async (
    body: Record<string, unknown>,
    accountBase = base,
    auth?: string,
  ): Promise<Link> => {
    const res = await t.call(`${accountBase}/storage/links`, {
      method: 'POST',
      json: body,
      ...(auth ? { auth } : {}),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toBe('application/json');
    return linkSchema.parse(await json(res));
  };

  const patchLink = async (link: Link, body: Record<string, unknown>, query = ''): Promise<Link> => {
    const res = await t.call(`/v1/accounts/${link.account}/storage/links/${link.id}${query}`, {
      method: 'PATCH',
      json: body,
    });
    expect(res.status).toBe(200);
    return linkSchema.parse(await json(res));
  };

  /** The public URL, as a browser or a plain HTTP client would fetch it: no Authorization. */
  const visit = (url: string, init: RequestInit = {}) => fetch(url, { redirect: 'manual', ...init });
  const html = { accept: 'text/html,application/xhtml+xml' };

  it('creates a direct link whose URL streams the bytes, with Range', async () => {
    const file = await upload(t, base, 'direct.txt', 'hello link world');
    const link = await createLink({ file_id: file.id, direct: true });
    expect(link).toMatchObject({
      file_id: file.id,
      account: t.apps[0]!.accountId,
      active: true,
      direct: true,
      password: false,
      expiration: null,
    });
    expect(link.href).toBe(`${t.url}${base}/storage/links/${link.id}`);
    expect(link.url).toBe(`${t.url}/l/${link.id}`);

    const res = await visit(link.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename*=UTF-8''direct.txt`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toContain('sandbox');
    expect(await res.text()).toBe('hello link world');

    const partial = await visit(link.url, { headers: { range: 'bytes=6-9' } });
    expect(partial.status).toBe(206);
    expect(partial.headers.get('content-range')).toBe('bytes 6-9/16');
    expect(await partial.text()).toBe('link');
  });

  it('serves a page with the escaped name, size and a download button when not direct', async () => {
    const name = `<b>"x"&y's.txt`;
    const file = await upload(t, base, name, '12345');
    const link = await createLink({ file_id: file.id });
    expect(link.direct).toBe(false);
    const res = await visit(link.url, { headers: html });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    const page = await res.text();
    expect(page).toContain('&lt;b&gt;&quot;x&quot;&amp;y&#39;s.txt');
    expect(page).not.toContain('<b>');
    expect(page).toContain('5 bytes');
    expect(page).toContain(`href="/l/${link.id}?download=1"`);
    // Nothing about the account, and nothing loaded from elsewhere.
    expect(page).not.toContain(t.apps[0]!.accountRoot);
    expect(page).not.toContain(file.id);
    expect(page).not.toMatch(/<script|(?:src|href)="(?:https?:)?\/\//i);

    const download = await visit(`${link.url}?download=1`);
    expect(download.status).toBe(200);
    expect(await download.text()).toBe('12345');
  });

  it('asks for the password, refuses a wrong one and opens with the right one', async () => {
    const file = await upload(t, base, 'locked.txt', 'top secret bytes');
    const link = await createLink({ file_id: file.id, direct: true, password: 's3cret pass' });
    expect(link.password).toBe(true);

    const form = await visit(link.url, { headers: html });
    expect(form.status).toBe(200);
    const formPage = await form.text();
    expect(formPage).toMatch(/<input type="password" id="id_password" name="password"/);
    expect(formPage).toMatch(/<button [^>]*name="form-submit"/);
    expect(formPage).not.toContain('locked.txt');
    // A download request without access gets the form too, not the bytes.
    expect(await (await visit(`${link.url}?download=1`)).text()).not.toContain('top secret');

    const post = (password: string, cookie?: string) =>
      visit(link.url, {
        method: 'POST',
        body: new URLSearchParams({ password }),
        headers: { ...html, ...(cookie ? { cookie } : {}) },
      });
    const wrong = await post('not it');
    expect(wrong.status).toBe(401);
    const wrongPage = await wrong.text();
    expect(wrongPage).toContain('id="id_password"');
    expect(wrongPage).toContain('The password is not correct.');
    expect(wrong.headers.get('set-cookie')).toBeNull();

    const right = await post('s3cret pass');
    expect(right.status).toBe(303);
    expect(right.headers.get('location')).toBe(`/l/${link.id}`);
    const setCookie = right.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(
      new RegExp(`^cm_link=[^;]+; Path=/l/${link.id}; Max-Age=\\d+; HttpOnly; SameSite=Strict$`),
    );
    const cookie = setCookie.split(';')[0]!;
    const opened = await visit(link.url, { headers: { cookie } });
    expect(opened.status).toBe(200);
    expect(await opened.text()).toBe('top secret bytes');
    const ranged = await visit(link.url, { headers: { cookie, range: 'bytes=4-9' } });
    expect(await ranged.text()).toBe('secret');

    const tampered = `${cookie.slice(0, -2)}${cookie.endsWith('AA') ? 'BB' : 'AA'}`;
    expect(await (await visit(link.url, { headers: { cookie: tampered } })).text()).toContain(
      'id="id_password"',
    );

    // A new password invalidates the access already granted; removing it opens the link.
    expect((await patchLink(link, { password: 'another one' })).password).toBe(true);
    expect(await (await visit(link.url, { headers: { cookie } })).text()).toContain('id="id_password"');
    expect((await post('s3cret pass')).status).toBe(401);
    expect((await patchLink(link, { password: null })).password).toBe(false);
    expect(await (await visit(link.url)).text()).toBe('top secret bytes');
  });

  it('answers 403 when disabled, 404 when expired, for a deleted file or an unknown link', async () => {
    const file = await upload(t, base, 'state.txt', 'state');
    const link = await createLink({ file_id: file.id, direct: true });

    expect((await patchLink(link, { active: false })).active).toBe(false);
    await expectError(await visit(link.url), 403, 'forbidden');
    const disabledPage = await visit(link.url, { headers: html });
    expect(disabledPage.status).toBe(403);
    expect(disabledPage.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await disabledPage.text()).toContain('disabled');
    await patchLink(link, { active: true });
    expect((await visit(link.url)).status).toBe(200);

    const expired = await patchLink(link, { expiration: '2001-02-03T04:05:06Z' });
    expect(expired.expiration).toBe('2001-02-03T04:05:06Z');
    await expectError(await visit(link.url), 404, 'not_found');
    expect((await patchLink(link, { expiration: '2999-01-01T00:00:00+02:00' })).expiration).toBe(
      '2998-12-31T22:00:00Z',
    );
    expect((await visit(link.url)).status).toBe(200);
    expect((await patchLink(link, { expiration: null })).expiration).toBeNull();

    const bornExpired = await createLink({
      file_id: file.id,
      direct: true,
      expiration: '2000-01-01T00:00:00',
    });
    expect(bornExpired.expiration).toBe('2000-01-01T00:00:00Z');
    expect((await visit(bornExpired.url)).status).toBe(404);
    const bornDisabled = await createLink({ file_id: file.id, active: false });
    expect((await visit(bornDisabled.url)).status).toBe(403);

    expect((await t.call(`${base}/storage/files/${file.id}`, { method: 'DELETE' })).status).toBe(204);
    await expectError(await visit(link.url), 404, 'not_found');
    expect((await visit(link.url, { headers: html })).status).toBe(404);
    await expectError(await visit(`${t.url}/l/AAAAAAAAAAAAAAAAAAAAAA`), 404, 'not_found');
    await expectError(await visit(`${t.url}/l/not-a-link`), 404, 'not_found');
  });

  it('follows a file renamed or moved, and a file whose folder is renamed, through Cloudmux', async () => {
    const folderIn = async (name: string, parent = 'root') =>
      (await json(
        await t.call(`${base}/storage/folders`, { method: 'POST', json: { name, parent_id: parent } }),
      )) as { id: string };
    const docs = await folderIn('follow-docs');
    const archive = await folderIn('follow-archive');
    const file = await upload(t, base, 'report.txt', 'report bytes', docs.id);
    const fileLink = await createLink({ file_id: file.id, direct: true });
    const other = await upload(t, base, 'other.txt', 'other bytes', docs.id);
    const otherLink = await createLink({ file_id: other.id, direct: true });
    const patch = async (kind: 'files' | 'folders', id: string, body: Record<string, unknown>) => {
      const res = await t.call(`${base}/storage/${kind}/${id}`, { method: 'PATCH', json: body });
      expect(res.status).toBe(200);
      return (await json(res)) as { id: string };
    };
    const linkFileId = async (link: Link) =>
      linkSchema.parse(await json(await t.call(`${base}/storage/links/${link.id}`))).file_id;

    const renamed = await patch('files', file.id, { name: 'report-final.txt' });
    expect(renamed.id).not.toBe(file.id);
    expect(await (await visit(fileLink.url)).text()).toBe('report bytes');
    expect(await linkFileId(fileLink)).toBe(renamed.id);

    const moved = await patch('files', renamed.id, { parent_id: archive.id });
    expect(await (await visit(fileLink.url)).text()).toBe('report bytes');
    expect(await linkFileId(fileLink)).toBe(moved.id);

    // Renaming the folder moves what is inside it: the link on a file below follows too.
    await patch('folders', docs.id, { name: 'follow-docs-2024' });
    expect(await (await visit(otherLink.url)).text()).toBe('other bytes');
    expect(await (await visit(fileLink.url)).text()).toBe('report bytes');
  });

  it('reads, patches and deletes links; validates input', async () => {
    const file = await upload(t, base, 'crud.txt', 'crud');
    const folder = (await json(
      await t.call(`${base}/storage/folders`, {
        method: 'POST',
        json: { name: 'linkdir', parent_id: 'root' },
      }),
    )) as { id: string };
    const link = await createLink({ file_id: file.id });
    const got = linkSchema.parse(await json(await t.call(`${base}/storage/links/${link.id}/`)));
    expect(got).toEqual(link);
    // py1 sends a stray ?file_id= on PATCH; it is ignored.
    const patched = await patchLink(link, { direct: true, active: true }, `?file_id=${file.id}`);
    expect(patched).toMatchObject({ direct: true, active: true, id: link.id, file_id: file.id });

    const del = await t.call(`${base}/storage/links/${link.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    await expectError(await t.call(`${base}/storage/links/${link.id}`), 404, 'not_found');
    await expectError(
      await t.call(`${base}/storage/links/${link.id}`, { method: 'DELETE' }),
      404,
      'not_found',
    );
    await expectError(await visit(link.url), 404, 'not_found');

    const bad = (body: unknown) => t.call(`${base}/storage/links`, { method: 'POST', json: body });
    await expectError(await bad({ file_id: 'nope' }), 400, 'invalid_parameters');
    await expectError(await bad({ file_id: folder.id }), 400, 'invalid_parameters');
    await expectError(await bad({}), 400, 'invalid_parameters');
    await expectError(await bad({ file_id: file.id, expiration: 'tomorrow' }), 400, 'invalid_parameters');
    await expectError(await bad({ file_id: file.id, direct: 'maybe' }), 400, 'invalid_parameters');
    await expectError(await bad({ file_id: file.id, password: 42 }), 400, 'invalid_parameters');
    const other = await t.newLocalAccount(t.apps[0]!, 'other');
    await expectError(
      await t.call(`/v1/accounts/${other.accountId}/storage/links`, {
        method: 'POST',
        json: { file_id: file.id },
      }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${base}/storage/links/${link.id}`, { method: 'PATCH', json: { expiration: 12 } }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${base}/storage/links`, { method: 'POST', auth: null, json: { file_id: file.id } }),
      401,
      'authentication_required',
    );
  });

  it('lists links with the active filter, in pages to exhaustion, across several accounts', async () => {
    const app = t.apps[0]!;
    const one = await t.newLocalAccount(app, 'list one');
    const two = await t.newLocalAccount(app, 'list two');
    const made: Link[] = [];
    for (let i = 0; i < 5; i++) {
      const file = await upload(t, `/v1/accounts/${one.accountId}`, `one-${i}.txt`, `${i}`);
      made.push(await createLink({ file_id: file.id, active: i !== 2 }, `/v1/accounts/${one.accountId}`));
    }
    for (let i = 0; i < 3; i++) {
      const file = await upload(t, `/v1/accounts/${two.accountId}`, `two-${i}.txt`, `${i}`);
      made.push(await createLink({ file_id: file.id }, `/v1/accounts/${two.accountId}`));
    }

    const listAll = async (path: string, pageSize: number, auth?: string) => {
      const ids: Link[] = [];
      let page: string | null = '';
      let pages = 0;
      while (page !== null) {
        const res = await t.call(
          `${path}?page_size=${pageSize}&page=${encodeURIComponent(page)}`,
          auth ? { auth } : {},
        );
        expect(res.status).toBe(200);
        const list = objectListSchema(linkSchema, 'storage').parse(await json(res));
        expect(list.objects.length).toBeLessThanOrEqual(pageSize);
        ids.push(...list.objects);
        page = list.next_page;
        pages++;
      }
      return { links: ids, pages };
    };

    const single = await listAll(`/v1/accounts/${one.accountId}/storage/links`, 2);
    expect(single.pages).toBe(3);
    expect(single.links.map((l) => l.id)).toEqual(made.slice(0, 5).map((l) => l.id));
    const both = await listAll(`/v1/accounts/${one.accountId},${two.accountId}/storage/links`, 3);
    expect(both.pages).toBe(3);
    expect(new Set(both.links.map((l) => l.id))).toEqual(new Set(made.map((l) => l.id)));
    expect(both.links.filter((l) => l.account === two.accountId)).toHaveLength(3);
    const bearer = await listAll('/v1/accounts/me/storage/links', 10, `Bearer ${one.token},${two.token}`);
    expect(bearer.links).toHaveLength(8);

    const first = (await json(await t.call(`/v1/accounts/${one.accountId}/storage/links?page_size=2`))) as {
      total: number;
      page: number;
    };
    expect(first).toMatchObject({ total: 5, page: 1 });
    const inactive = (await json(
      await t.call(`/v1/accounts/${one.accountId}/storage/links?active=false`),
    )) as { objects: Link[] };
    expect(inactive.objects.map((l) => l.id)).toEqual([made[2]!.id]);
    const active = (await json(await t.call(`/v1/accounts/${one.accountId}/storage/links?active=True`))) as {
      objects: Link[];
    };
    expect(active.objects).toHaveLength(4);
    const second = (await json(
      await t.call(`/v1/accounts/${one.accountId}/storage/links?page_size=2&page=2`),
    )) as { objects: Link[] };
    expect(second.objects.map((l) => l.id)).toEqual([made[2]!.id, made[3]!.id]);

    await expectError(
      await t.call(`/v1/accounts/${one.accountId}/storage/links?page_size=2&page=4`),
      404,
      'not_found',
    );
    await expectError(
      await t.call(`/v1/accounts/${one.accountId}/storage/links?page_size=0`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`/v1/accounts/${one.accountId}/storage/links?page_size=1001`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`/v1/accounts/${one.accountId}/storage/links?page=0`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`/v1/accounts/${one.accountId}/storage/links?page=forged`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`/v1/accounts/${one.accountId}/storage/links?active=sometimes`),
      400,
      'invalid_parameters',
    );

    // A link is reachable only through its own account's path.
    await expectError(
      await t.call(`/v1/accounts/${two.accountId}/storage/links/${made[0]!.id}`),
      404,
      'not_found',
    );
    expect(
      (await t.call(`/v1/accounts/${one.accountId},${two.accountId}/storage/links/${made[0]!.id}`)).status,
    ).toBe(200);
    await expectError(
      await t.call(`/v1/accounts/me/storage/links/${made[0]!.id}`, { auth: `Bearer ${two.token}` }),
      404,
      'not_found',
    );
  });

  it("keeps apps apart: no app reads, patches or deletes another app's links", async () => {
    const appA = t.apps[0]!;
    const appB = await t.newApp('Links app B');
    const linkOf = async (app: TestApp) => {
      const file = await upload(
        t,
        `/v1/accounts/${app.accountId}`,
        `iso-${app.appId}.txt`,
        'iso',
        'root',
        '',
        `APIKey ${app.apiKey}`,
      );
      return createLink({ file_id: file.id }, `/v1/accounts/${app.accountId}`, `APIKey ${app.apiKey}`);
    };
    const links = new Map([
      [appA, await linkOf(appA)],
      [appB, await linkOf(appB)],
    ]);
    for (const [owner, intruder] of [
      [appA, appB],
      [appB, appA],
    ] as const) {
      const link = links.get(owner)!;
      for (const auth of [`APIKey ${intruder.apiKey}`, `Bearer ${intruder.token}`]) {
        for (const accountPath of [`/v1/accounts/${owner.accountId}`, `/v1/accounts/${intruder.accountId}`]) {
          const path = `${accountPath}/storage/links/${link.id}`;
          await expectError(await t.call(path, { auth }), 404, 'not_found');
          await expectError(
            await t.call(path, { auth, method: 'PATCH', json: { active: false } }),
            404,
            'not_found',
          );
          await expectError(await t.call(path, { auth, method: 'DELETE' }), 404, 'not_found');
        }
        const own = (await json(
          await t.call(`/v1/accounts/${intruder.accountId}/storage/links`, { auth }),
        )) as { objects: Link[] };
        expect(own.objects.map((l) => l.id)).not.toContain(link.id);
        await expectError(
          await t.call(`/v1/accounts/${owner.accountId}/storage/links`, { auth }),
          404,
          'not_found',
        );
      }
      const still = linkSchema.parse(
        await json(
          await t.call(`/v1/accounts/${owner.accountId}/storage/links/${link.id}`, {
            auth: `APIKey ${owner.apiKey}`,
          }),
        ),
      );
      expect(still).toEqual(link);
      expect((await visit(link.url)).status).toBe(200);
    }
  });
});
