// Push notifications in the browser (docs/PROTOCOL.md, "Push notifications"). Headless
// chromium here has no push service it could reach (no network, and a Playwright context is
// off the record, where Chrome refuses push subscriptions), so what is tested for real is:
// the "turn on" button's errors (permission denied; the push service refusing), the service
// worker registered from /sw.js under the page's CSP, and pushes delivered to that worker
// through the DevTools protocol as the node's decrypted notification, shown (or not, while a
// tab is in front) as the page's notifications. With the tab closed, a push about a real
// message shows its sender and its preview as plain text; a click on it (dispatched inside
// the worker: DevTools cannot click a notification) brings a tab to that chat. The tests wait
// for the worker to have seen a closed tab go and to have finished showing, never on a timer.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Node, browserSuite, bubble, register, screenshot, send, startChat } from './harness.mjs';

// The notification exactly as PROTOCOL.md describes it (content-free: no preview).
const notification = (extra = {}) => ({
  v: 1, type: 'messages', user_id: 'alice@test', count: 3, unread: 5, conversation_id: 'd.AZLxConversation1',
  message_id: 'AZLxMessage', sender_id: 'bob@test', seq: '42', sent_at: '2026-12-02T10:00:00.123Z', ...extra,
});

const shown = (page) => page.evaluate(async () => {
  const reg = await navigator.serviceWorker.ready;
  return (await reg.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
});

// The origin's running service worker, or undefined.
const workerOf = (context, origin) => context.serviceWorkers().find((w) => w.url() === `${origin}/sw.js`);

// Counts, inside the running worker, the notifications it has finished showing. Asking Chrome
// for the notifications while one is being shown can make it drop that one (it reconciles
// its list with the display), so tests wait on this count and ask for the list only after.
async function watchShows(context, origin) {
  const worker = workerOf(context, origin);
  assert.ok(worker, 'the worker runs');
  await worker.evaluate(() => {
    if (self.shows !== undefined) return;
    self.shows = 0;
    const show = self.registration.showNotification.bind(self.registration);
    self.registration.showNotification = (...args) => show(...args).then(() => void self.shows++);
  });
  return worker;
}

async function untilShows(worker, count, timeout = 20000) {
  for (const deadline = Date.now() + timeout; ;) {
    const shows = await worker.evaluate(() => self.shows);
    if (shows >= count) return;
    if (Date.now() > deadline) assert.fail(`the worker showed ${shows} notification(s), not ${count}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Waits until the origin's service worker sees no tab of the client: a tab just closed can
// still be listed (focused and visible) for a moment, and a push then shows nothing.
async function untilNoTabs(context, origin, timeout = 20000) {
  for (const deadline = Date.now() + timeout; ;) {
    const worker = workerOf(context, origin);
    const tabs = await worker
      ?.evaluate(async () => (await self.clients.matchAll({ type: 'window', includeUncontrolled: true })).length)
      .catch(() => -1);
    if (tabs === 0 || worker === undefined) return; // a worker not running lists tabs afresh when started
    if (Date.now() > deadline) assert.fail(`the worker still sees ${tabs} tab(s)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('push notifications', () => {
  const suite = browserSuite();

  async function openDevices(name, { grant }) {
    const p = await suite.open(suite.node);
    if (grant) await p.context.grantPermissions(['notifications'], { origin: suite.node.url });
    await register(p.page, name);
    await p.page.getByTestId('devices-open').click();
    return p;
  }

  test('the worker is served from the root, not cached for good', async () => {
    const r = await fetch(`${suite.node.url}/sw.js`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /javascript/);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    assert.match(await r.text(), /showNotification/);
  });

  test('turning on with notifications denied says so', async () => {
    const { page } = await openDevices('dora', { grant: false });
    await page.getByTestId('push-enable').click();
    const error = page.getByTestId('push-error');
    await error.waitFor();
    assert.equal(await error.getAttribute('role'), 'alert');
    assert.match(await error.textContent(), /blocked for this site/);
    assert.equal(await page.getByTestId('push-enable').isEnabled(), true, 'the button can be tried again');
  });

  test('a node that does not push says so', async () => {
    const off = await new Node({ extra: '[push]\nenabled = false' }).start();
    try {
      const p = await suite.open(off);
      await p.context.grantPermissions(['notifications'], { origin: off.url });
      await register(p.page, 'erin');
      await p.page.getByTestId('devices-open').click();
      await p.page.getByTestId('push-enable').click();
      await p.page.getByTestId('push-error').filter({ hasText: 'This server does not send push notifications.' }).waitFor();
      await p.context.close();
    } finally {
      await off.close();
    }
  });

  let alice;
  let registrationId;
  let cdp;

  test('turning on registers /sw.js under the CSP; the push service failing shows an error', async () => {
    alice = await openDevices('alice', { grant: true });
    const { context, page } = alice;
    cdp = await context.newCDPSession(page);
    const registrations = [];
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => registrations.push(...e.registrations));
    await cdp.send('ServiceWorker.enable');
    await page.getByTestId('push-enable').click();
    const error = page.getByTestId('push-error');
    await error.waitFor();
    // Whatever the browser's reason, it is told as the push service's failure, not a hang.
    assert.match(await error.textContent(), /push service is not available \(.+\)/);
    assert.equal(await page.getByTestId('push-enable').isEnabled(), true);
    await screenshot(page, 'push-error');
    const worker = await page.evaluate(async () => {
      const reg = await navigator.serviceWorker.ready;
      return { scope: reg.scope, script: reg.active?.scriptURL, state: reg.active?.state };
    });
    assert.deepEqual(worker, { scope: `${suite.node.url}/`, script: `${suite.node.url}/sw.js`, state: 'activated' });
    const reg = registrations.find((r) => !r.isDeleted && r.scopeURL === `${suite.node.url}/`);
    assert.ok(reg, 'DevTools saw the registration');
    registrationId = reg.registrationId;
    // Nothing was registered with the node: the subscription never came to be.
    assert.equal(await page.evaluate(() => localStorage.getItem('petchat.push')), null);
  });

  async function deliver(payload) {
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: suite.node.url, registrationId, data: JSON.stringify(payload) });
  }

  test('a push while the tab is in front shows nothing', async () => {
    const { page } = alice;
    assert.equal(await page.evaluate(() => document.hasFocus()), true);
    await deliver(notification());
    await page.waitForTimeout(1000);
    assert.deepEqual(await shown(page), []);
  });

  test('a push with no tab open shows the notification, one per conversation', async () => {
    const { page } = alice;
    await page.goto('about:blank'); // no client of the origin left
    await untilNoTabs(alice.context, suite.node.url);
    const worker = await watchShows(alice.context, suite.node.url);
    await deliver(notification());
    await deliver(notification({ conversation_id: 'g.AZLxGroup', sender_id: 'carol@test', count: 1, preview: 'see you at 8' }));
    await deliver(notification({ count: 4, unread: 6, message_id: 'AZLxMessage2', seq: '43' })); // replaces the first
    await untilShows(worker, 3);
    await page.goto(`${suite.node.url}/`);
    const list = (await shown(page)).sort((a, b) => a.tag.localeCompare(b.tag));
    assert.deepEqual(list, [
      { title: 'bob@test', body: '4 new messages', tag: 'd.AZLxConversation1', data: { conversation_id: 'd.AZLxConversation1' } },
      { title: 'carol@test', body: 'see you at 8', tag: 'g.AZLxGroup', data: { conversation_id: 'g.AZLxGroup' } },
    ]);
    // Content-free: without a preview the body is only the count (no ids, no seq, no time).
    assert.doesNotMatch(list[0].body, /AZLx|42|43|2026|alice/);
  });

  // alice's notifications closed and her tab gone (no client of the origin left): the
  // worker, and how many notifications it had shown until then.
  async function awayFromTab() {
    const { page } = alice;
    await page.evaluate(async () => {
      for (const n of await (await navigator.serviceWorker.ready).getNotifications()) n.close();
    });
    await page.goto('about:blank');
    await untilNoTabs(alice.context, suite.node.url);
    const worker = await watchShows(alice.context, suite.node.url);
    return { worker, before: await worker.evaluate(() => self.shows) };
  }

  test('a push that is not the expected JSON still shows a neutral notification', async () => {
    const { page } = alice;
    const { worker, before } = await awayFromTab();
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: suite.node.url, registrationId, data: 'not json' });
    await untilShows(worker, before + 1);
    await page.goto(`${suite.node.url}/`);
    assert.deepEqual(await shown(page), [{ title: 'New message', body: '1 new message', tag: 'petchat', data: { conversation_id: null } }]);
  });

  test('a push for another user than the one logged in here shows nothing of its content', async () => {
    // Someone who logged out of this browser while offline: their subscription outlived the
    // session, and alice is logged in now.
    const { page } = alice;
    const { worker, before } = await awayFromTab();
    await deliver(notification({ user_id: 'zed@test', sender_id: 'yves@test', conversation_id: 'd.AZLxSecret', preview: 'the secret' }));
    await untilShows(worker, before + 1);
    await page.goto(`${suite.node.url}/`);
    assert.deepEqual(await shown(page), [{ title: 'New message', body: '1 new message', tag: 'petchat', data: { conversation_id: null } }]);

    // alice logs out and hank logs in here: hank's pushes show, alice's no longer do. What
    // was shown of alice's goes with her session, and so does her stream's position.
    await page.getByTestId('logout-button').click();
    await page.getByTestId('login-username').waitFor();
    await page.waitForFunction(async () => (await (await navigator.serviceWorker.ready).getNotifications()).length === 0);
    assert.deepEqual(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('petchat.seq.'))), []);
    await register(page, 'hank');
    const { worker: shows, before: now } = await awayFromTab();
    await deliver(notification({ user_id: 'hank@test', conversation_id: 'd.AZLxHank', sender_id: 'ida@test', count: 1 }));
    await deliver(notification({ user_id: 'alice@test', conversation_id: 'd.AZLxAlice', preview: 'for alice only' }));
    await untilShows(shows, now + 2);
    await page.goto(`${suite.node.url}/`);
    const list = (await shown(page)).sort((a, b) => a.tag.localeCompare(b.tag));
    assert.deepEqual(list, [
      { title: 'ida@test', body: '1 new message', tag: 'd.AZLxHank', data: { conversation_id: 'd.AZLxHank' } },
      { title: 'New message', body: '1 new message', tag: 'petchat', data: { conversation_id: null } },
    ]);
  });

  test('with the tab closed a push shows sender and preview as text; a click opens that chat', async () => {
    const fay = await openDevices('fay', { grant: true });
    const { context } = fay;
    const { page: gus } = await suite.open();
    await register(gus, 'gus');
    await startChat(gus, 'fay@test');
    const preview = '<b>dinner</b> at 8 & <img src=x onerror=alert(1)>';
    await send(gus, preview);
    const message = gus.locator('[data-testid="message"][data-message-id]').filter({ hasText: 'dinner' });
    await message.waitFor();
    const messageId = await message.getAttribute('data-message-id');
    const conversationId = await fay.page.locator('[data-testid="conv-item"]').getAttribute('data-conv-id');

    // The worker is registered (the browser's push service then fails, as above); a page of
    // no origin keeps the DevTools session once fay's tab is closed.
    const helper = await context.newPage();
    const devtools = await context.newCDPSession(helper);
    const origin = suite.node.url;
    const registration = new Promise((resolve) => devtools.on('ServiceWorker.workerRegistrationUpdated', (e) => {
      const r = e.registrations.find((x) => !x.isDeleted && x.scopeURL === `${origin}/`);
      if (r) resolve(r);
    }));
    await devtools.send('ServiceWorker.enable');
    await fay.page.getByTestId('push-enable').click();
    await fay.page.getByTestId('push-error').waitFor();
    const { registrationId } = await registration;
    await fay.page.close();
    await untilNoTabs(context, origin);
    const shows = await watchShows(context, origin);

    // The node's payload (PROTOCOL.md, "The notification"), previews on.
    await devtools.send('ServiceWorker.deliverPushMessage', {
      origin,
      registrationId,
      data: JSON.stringify({
        v: 1, type: 'messages', user_id: 'fay@test', count: 1, unread: 1, conversation_id: conversationId,
        message_id: messageId, sender_id: 'gus@test', seq: '2', sent_at: new Date().toISOString(), preview,
      }),
    });
    // Shown before any tab is back (a tab in front would make the worker show nothing).
    await untilShows(shows, 1);
    const tab = await context.newPage();
    await tab.goto(`${origin}/`);
    await tab.getByTestId('new-chat-input').waitFor(); // fay is still logged in
    assert.deepEqual(await shown(tab), [
      { title: 'gus@test', body: preview, tag: conversationId, data: { conversation_id: conversationId } },
    ]);

    // The click, dispatched in the worker (DevTools cannot click a notification). Without a
    // person's click the browser refuses focus() and openWindow(), so what is checked is the
    // open tab told to show that conversation, and the notification closed.
    await shows.evaluate(async () => {
      const [notification] = await self.registration.getNotifications();
      self.dispatchEvent(new NotificationEvent('notificationclick', { notification }));
    });
    await tab.locator('#conversation-title').filter({ hasText: 'gus@test' }).waitFor();
    await bubble(tab, 'dinner').waitFor();
    assert.equal(await bubble(tab, 'dinner').locator('img, b').count(), 0, 'the message is text in the page too');
    await tab.waitForFunction(async () => (await (await navigator.serviceWorker.ready).getNotifications()).length === 0);
  });
});
