// The conversation list of a user in more conversations than one page of the list holds:
// the node ends a page at about 1 MiB of JSON (docs/PROTOCOL.md), so with large last
// messages the first page holds about 50 of the 60 groups here. The page reads every page:
// each conversation is in the list, the oldest too. A load of the list that fails says so
// in a notice, which the next load that works takes away; but a load that fails after one
// asked later worked (the page of older conversations it was still reading failed) shows
// nothing: the list shown is newer than that failure.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, conversation, login, startChat } from './harness.mjs';

const GROUPS = 60;
const PASSWORD = 'correct horse battery';
const title = (i) => `large ${String(i).padStart(2, '0')}`;
const FAILED = 'Something went wrong on the server. Try again.'; // the notice of a 500 internal
const QUIET_MS = 2500;

describe('a conversation list longer than a page', () => {
  const suite = browserSuite({ extra: '[messages]\nmax_per_second = 1000' });

  before(async () => {
    for (const name of ['ann', 'bob', 'cid', 'dee', 'eli']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: PASSWORD });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  async function tokenOf(name) {
    const r = await suite.node.call('POST', '/v1/sessions', { name, password: PASSWORD, device_name: 'raw' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return r.json.access_token;
  }

  // Sends `sends` ({client_id, conversation_id | to, body}) from a live stream of `token`, in
  // a page of its own; resolves once every one is accepted.
  async function rawSends(token, sends) {
    const { page: raw } = await suite.open();
    const errors = await raw.evaluate(([token, sends]) => new Promise((resolve) => {
      const ws = new WebSocket(`ws://${location.host}/v1/ws`, 'petchat.v1.json');
      const errors = [];
      let accepted = 0;
      ws.onopen = () => ws.send(JSON.stringify({ ref: '1', auth: { access_token: token } }));
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.welcome) sends.forEach((send, i) => ws.send(JSON.stringify({ ref: String(i + 2), send })));
        if (f.accepted && ++accepted === sends.length) {
          ws.close();
          resolve(errors);
        }
        if (f.error) resolve([...errors, f.error]);
      };
      ws.onclose = (e) => resolve([...errors, { closed: e.code }]);
    }), [token, sends]);
    assert.deepEqual(errors, [], 'every send accepted');
    await raw.close();
  }

  // ann in 60 groups of bob's, each with one large message, in the order they were made
  // (4,000 characters of text and 16,000 of content): the list takes two pages.
  let made = null;
  const groupsMade = () => (made ??= (async () => {
    const token = await tokenOf('bob');
    const ids = [];
    for (let i = 0; i < GROUPS; i++) {
      const r = await suite.node.call('POST', '/v1/conversations', { title: title(i), members: ['ann@test'] }, token);
      assert.equal(r.status, 201, JSON.stringify(r.json));
      ids.push(r.json.conversation.id);
    }
    await rawSends(token, ids.map((id, i) => ({
      client_id: `large-${i}`, conversation_id: id, body: { text: `${i} ${'x'.repeat(4000)}`, content: { filler: 'y'.repeat(16000) } },
    })));
  })());

  test('every conversation is listed, those past the first page too', async () => {
    await groupsMade();
    const { page } = await suite.open();
    await login(page, 'ann');
    await conversation(page, title(GROUPS - 1)).waitFor();
    await conversation(page, title(0)).waitFor(); // the oldest activity: on the last page
    assert.equal(await page.getByTestId('conv-item').count(), GROUPS);
  });

  test('a failed load\'s notice goes with a later load that works; a load that fails after a later one worked shows none', async () => {
    await groupsMade();
    // cid wrote to ann before: a chat of theirs the list has.
    await rawSends(await tokenOf('cid'), [{ client_id: 'cid-1', to: 'ann@test', body: { text: 'hello ann, cid here' } }]);

    const { page } = await suite.open();
    // Every list request of the page, by its order; the first that asks for an older page
    // (the load made at login) is held, and then fails; `failAll` fails every one.
    const asked = [];
    let release;
    const released = new Promise((r) => { release = r; });
    let failAll = false;
    const fail = (route) => route.fulfill({
      status: 500, contentType: 'application/json', body: JSON.stringify({ error: { code: 'internal', message: 'boom' } }),
    });
    await page.route('**/v1/conversations?*', async (route) => {
      const url = new URL(route.request().url());
      if (url.pathname !== '/v1/conversations') return route.continue();
      const older = url.searchParams.has('before');
      asked.push(older ? 'older' : 'first');
      if (failAll) return fail(route);
      if (older && asked.filter((a) => a === 'older').length === 1) {
        await released;
        return fail(route);
      }
      return route.continue();
    });
    // Every notice the page shows, as it shows it.
    await page.evaluate(() => {
      window.noticesShown = [];
      setInterval(() => {
        const text = document.querySelector('.notice')?.textContent;
        if (text && window.noticesShown[window.noticesShown.length - 1] !== text) window.noticesShown.push(text);
      }, 20);
    });
    const notices = () => page.evaluate(() => window.noticesShown);

    await login(page, 'ann');
    for (let i = 0; !asked.includes('older'); i++) {
      assert.ok(i < 200, `the login's list load asked for the older page (${asked})`);
      await page.waitForTimeout(100);
    }
    // Meanwhile ann opens her chat with cid: the page asks for the list again, and that
    // load, asked later, is answered in full and shown.
    await startChat(page, 'cid@test');
    await conversation(page, title(0)).waitFor();
    assert.equal(await page.getByTestId('conv-item').count(), GROUPS + 1);

    // Now the login's load fails, on its older page: older than the list shown, it says nothing.
    release();
    for (let i = 0; asked.filter((a) => a === 'first').length < 3; i++) {
      assert.ok(i < 200, `the page loaded the list once connected (${asked})`);
      await page.waitForTimeout(100);
    }
    await page.waitForTimeout(QUIET_MS);
    assert.deepEqual(await notices(), [], 'no notice of a failure older than the list shown');
    assert.equal(await page.getByTestId('conv-item').count(), GROUPS + 1);

    // A load that fails now says so; the next one that works takes the notice away.
    failAll = true;
    await rawSends(await tokenOf('dee'), [{ client_id: 'dee-1', to: 'ann@test', body: { text: 'dee says hi' } }]);
    const notice = page.locator('.notice');
    await notice.filter({ hasText: FAILED }).waitFor();
    failAll = false;
    await rawSends(await tokenOf('eli'), [{ client_id: 'eli-1', to: 'ann@test', body: { text: 'eli says hi' } }]);
    await notice.waitFor({ state: 'detached' });
    assert.deepEqual(await notices(), [FAILED]);
    for (const who of ['cid@test', 'dee@test', 'eli@test']) await conversation(page, who).waitFor();
    await page.unroute('**/v1/conversations?*');
  });
});
