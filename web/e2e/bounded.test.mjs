// A conversation read scrolled up while thousands of messages arrive live: the page holds
// at most 2,000 of its messages (retention.ts, READING_MESSAGES: the newest are left out,
// below the view), the row the reader looks at stays where it is on screen, and reading on
// to the end pages the rest in, in order, up to the newest. The unread badge counts what
// came while the newest were left out, goes down as the reader reads on (only what came on
// screen is read), and goes once the newest was seen. The lines come from a raw live stream
// of the sender, in a page of its own.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, bubble, conversation, login, openConversationWith } from './harness.mjs';

const PASSWORD = 'correct horse battery';
const EARLIER = 40; // there when the reader opens the conversation: one page of history holds them all
const LINES = 2100; // in all: 100 past what the page keeps while its reader is scrolled up
const KEPT = 2000; // retention.ts, READING_MESSAGES
const SLACK = 10;
const WATCHED = 20; // the line the reader looks at, mid-conversation
const ARRIVED_MS = 180_000; // for the page to take in every line on a slow, busy machine
const line = (i) => `line ${String(i).padStart(4, '0')}`;
const lines = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => line(from + i));

describe('a conversation read scrolled up while it grows by thousands', () => {
  const suite = browserSuite({ extra: '[messages]\nmax_per_second = 10000' });

  before(async () => {
    for (const name of ['rea', 'wri']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: PASSWORD });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  // A live stream of `name` in a page of its own; returns what sends texts to `to`, 100 at a
  // time, each batch accepted before the next.
  async function rawSender(name, to) {
    const session = await suite.node.call('POST', '/v1/sessions', { name, password: PASSWORD, device_name: 'raw' });
    assert.equal(session.status, 201, JSON.stringify(session.json));
    const { page } = await suite.open();
    await page.evaluate((token) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/v1/ws`, 'petchat.v1.json');
      window.raw = { ws, ref: 1, accepted: new Set(), errors: [] };
      ws.onopen = () => ws.send(JSON.stringify({ ref: '1', auth: { access_token: token } }));
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.welcome) resolve();
        if (f.accepted) window.raw.accepted.add(f.accepted.client_id);
        if (f.error) window.raw.errors.push(f.error);
      };
      ws.onclose = (e) => {
        window.raw.errors.push({ closed: e.code });
        reject(new Error(`the raw stream closed: ${e.code}`));
      };
    }), session.json.access_token);
    return async (texts) => {
      const errors = await page.evaluate(async ([to, texts]) => {
        for (let i = 0; i < texts.length; i += 100) {
          const ids = texts.slice(i, i + 100).map((text) => {
            window.raw.ws.send(JSON.stringify({ ref: String(++window.raw.ref), send: { client_id: text, to, body: { text } } }));
            return text; // each text once: its own client_id
          });
          while (!ids.every((id) => window.raw.accepted.has(id)) && window.raw.errors.length === 0) {
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        return window.raw.errors;
      }, [to, texts]);
      assert.deepEqual(errors, [], 'every send accepted');
    };
  }

  const texts = (page) => page.getByTestId('message').evaluateAll((els) => els.map((el) => el.querySelector('.msg__text')?.textContent ?? ''));
  const badge = (page) => conversation(page, 'wri@test').getByTestId('unread-badge');
  // The number the unread badge shows (0: none).
  const unreadShown = (page) => conversation(page, 'wri@test')
    .evaluate((el) => Number(el.querySelector('[data-testid="unread-badge"] [aria-hidden="true"]')?.textContent ?? 0));
  // The number of the newest line seen in the view: half its row or more on screen (onScreen.ts).
  const newestSeen = (page) => list(page).evaluate((el) => {
    const view = el.getBoundingClientRect();
    let newest = 0;
    for (const row of el.querySelectorAll('[data-testid="message"]')) {
      const r = row.getBoundingClientRect();
      const shown = Math.min(r.bottom, view.bottom) - Math.max(r.top, view.top);
      // The text only: the row's time follows it with digits of its own.
      const n = Number(/^line (\d+)$/.exec(row.querySelector('.msg__text')?.textContent ?? '')?.[1] ?? 0);
      if (shown >= r.height / 2 && n > newest) newest = n;
    }
    return newest;
  });
  // The unread count the node holds for rea in the conversation (another device of his asks).
  async function nodeUnread(token) {
    const r = await suite.node.call('GET', '/v1/conversations?limit=10', undefined, token);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json.conversations.find((c) => c.peer === 'wri@test')?.unread_count;
  }
  // Waits until the badge shows `wanted()` (worked out again at each look).
  async function waitForUnread(page, wanted, why) {
    let shown = -1;
    let want = -1;
    for (const deadline = Date.now() + 20000; Date.now() < deadline; await page.waitForTimeout(100)) {
      [shown, want] = [await unreadShown(page), await wanted()];
      if (shown === want) return;
    }
    assert.fail(`${why}: the badge shows ${shown}, not ${want}`);
  }
  const list = (page) => page.getByTestId('message-list');
  const nextFrames = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

  test('scrolled up, the page keeps 2,000 messages, the view stays put, and its end shows the newest', async () => {
    const send = await rawSender('wri', 'rea@test');
    await send(lines(1, EARLIER));

    const { page: rea } = await suite.open();
    await login(rea, 'rea');
    await openConversationWith(rea, 'wri@test');
    await bubble(rea, line(EARLIER)).waitFor();
    // rea has read what he was shown: the node holds nothing unread for him.
    const phone = await suite.node.call('POST', '/v1/sessions', { name: 'rea', password: PASSWORD, device_name: 'phone' });
    assert.equal(phone.status, 201, JSON.stringify(phone.json));
    for (let i = 0; (await nodeUnread(phone.json.access_token)) !== 0; i++) {
      assert.ok(i < 200, 'rea\'s read of what he was shown reached the node');
      await rea.waitForTimeout(100);
    }

    // rea scrolls up to a line in the middle of the conversation and reads there.
    const watched = bubble(rea, line(WATCHED));
    await watched.evaluate((el) => el.scrollIntoView({ block: 'center' }));
    await nextFrames(rea); // the scroll event has come: the page knows the view is up
    const place = await list(rea).evaluate((el) => ({ top: el.scrollTop, below: el.scrollHeight - el.scrollTop - el.clientHeight }));
    assert.ok(place.top > 150 && place.below > 150, `the view is mid-conversation, away from both ends (${JSON.stringify(place)})`);
    const before = await watched.boundingBox();
    // The most message rows the page shows at any time from here on.
    await rea.evaluate(() => {
      window.mostRows = 0;
      setInterval(() => {
        window.mostRows = Math.max(window.mostRows, document.querySelectorAll('[data-testid="message"]').length);
      }, 100);
    });

    // wri sends the rest while rea reads; the list's preview shows when the page has them all.
    await send(lines(EARLIER + 1, LINES));
    await conversation(rea, 'wri@test').filter({ hasText: line(LINES) }).waitFor({ timeout: ARRIVED_MS });
    await nextFrames(rea);

    const shown = await texts(rea);
    const most = await rea.evaluate(() => Math.max(window.mostRows, document.querySelectorAll('[data-testid="message"]').length));
    assert.ok(most <= KEPT + SLACK, `the page showed at most ${KEPT} + ${SLACK} messages (${most}, of ${LINES})`);
    assert.deepEqual(shown, lines(1, shown.length), 'the oldest stay, in order, each once: what rea reads did not go');
    assert.equal(await bubble(rea, line(LINES)).count(), 0, 'the newest are left out below the view');
    // Every line past the one rea saw when he opened the chat is unread, those left out too.
    await waitForUnread(rea, async () => LINES - EARLIER, 'what came while the newest were left out is counted');
    const after = await watched.boundingBox();
    assert.ok(Math.abs(after.y - before.y) <= 1, `the line rea reads stayed in its place (${before.y} → ${after.y})`);

    // rea reads on to the end: at each end of what the page holds, the next page comes below
    // it (the view stays: the lines between come on screen in their turn), until the newest.
    const newest = bubble(rea, line(LINES));
    for (let pages = 0; pages < 20 && (await newest.count()) === 0; pages++) {
      const held = (await texts(rea)).length;
      await list(rea).evaluate((el) => { el.scrollTop = el.scrollHeight; });
      await rea.waitForFunction((n) => document.querySelectorAll('[data-testid="message"]').length !== n, held);
      // The badge follows what rea has read so far, while the newest are still left out: what
      // is below the newest line he saw (the page just added below it is not read yet).
      if (pages === 0) {
        const seen = await newestSeen(rea);
        assert.ok(seen > EARLIER && seen < LINES, `rea has read on, not to the end (line ${seen})`);
        await waitForUnread(rea, async () => LINES - (await newestSeen(rea)), 'the badge counts what is below what rea read');
      }
    }
    await list(rea).evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await newest.waitFor();
    // The newest seen: nothing is unread.
    await badge(rea).waitFor({ state: 'detached' });
    const end = await texts(rea);
    assert.deepEqual(end, lines(end.length > 0 ? LINES - end.length + 1 : 1, LINES), 'in order, each once, up to the newest');
    const box = await newest.boundingBox();
    const view = await list(rea).boundingBox();
    assert.ok(box.y >= view.y - 1 && box.y + box.height <= view.y + view.height + 1, 'the newest line is in view');
  });
});
