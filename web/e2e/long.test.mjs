// A long conversation in a page left open: hundreds of messages arriving live are shown in
// order with the newest at the bottom, while the page holds a bounded window of them (the
// oldest go, and a picture among them gives its blob: URL back); scrolling up brings them
// back from history in order and each once; leaving and coming back shows the newest. A
// receipt changes its own message's state only, and no row already shown is drawn anew. A
// message with nothing this client can show says so.
// The messages come from a raw live stream of the other person, opened in a page of its own.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, bubble, login, openConversationWith, send, startChat, waitForState } from './harness.mjs';

// A valid 2×2 RGB PNG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);
const LINES = 700; // past what the page keeps of a thread (500, trimmed once it holds 600)
const line = (i) => `line ${String(i).padStart(4, '0')}`;
const PICTURE = 'a picture first';

// Counts the blob: URLs the page holds (made and not revoked).
function countBlobUrls() {
  const live = new Set();
  const create = URL.createObjectURL.bind(URL);
  const revoke = URL.revokeObjectURL.bind(URL);
  URL.createObjectURL = (o) => { const u = create(o); live.add(u); return u; };
  URL.revokeObjectURL = (u) => { live.delete(u); revoke(u); };
  window.blobUrlsHeld = () => live.size;
}

describe('a long conversation in a page left open', () => {
  const suite = browserSuite({ extra: '[messages]\nmax_per_second = 1000' });
  let ann; // ann's page, kept from one test to the next with the long conversation open
  let bob; // bob's raw live stream

  before(async () => {
    for (const name of ['ann', 'bob', 'cat']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: 'correct horse battery' });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  // A live stream of `name` in a page of its own: sends, and acknowledges only when told.
  async function rawStream(name) {
    const session = await suite.node.call('POST', '/v1/sessions', { name, password: 'correct horse battery', device_name: 'raw' });
    assert.equal(session.status, 201, JSON.stringify(session.json));
    const { page } = await suite.open();
    await page.evaluate((token) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/v1/ws`, 'petchat.v1.json');
      window.raw = { ws, ref: 1, events: [], accepted: new Set(), errors: [] };
      ws.onopen = () => ws.send(JSON.stringify({ ref: '1', auth: { access_token: token } }));
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.welcome) resolve();
        if (f.event) window.raw.events.push(f.event);
        if (f.accepted) window.raw.accepted.add(f.accepted.client_id);
        if (f.error) window.raw.errors.push(f.error);
      };
      ws.onclose = (e) => {
        window.raw.errors.push({ closed: e.code });
        reject(new Error(`the raw stream closed: ${e.code}`));
      };
    }), session.json.access_token);
    return {
      token: session.json.access_token,
      // Sends each body to `to`, 50 at a time, each batch accepted before the next.
      async send(to, bodies) {
        const errors = await page.evaluate(async ([to, bodies]) => {
          for (let i = 0; i < bodies.length; i += 50) {
            const ids = bodies.slice(i, i + 50).map((body, j) => {
              const clientId = `raw-${Date.now()}-${i + j}`;
              const ref = String(++window.raw.ref); // refs are decimal numbers
              window.raw.ws.send(JSON.stringify({ ref, send: { client_id: clientId, to, body } }));
              return clientId;
            });
            while (!ids.every((id) => window.raw.accepted.has(id)) && window.raw.errors.length === 0) {
              await new Promise((r) => setTimeout(r, 20));
            }
          }
          return window.raw.errors;
        }, [to, bodies]);
        assert.deepEqual(errors, [], 'every send accepted');
      },
      // Acknowledges the events up to the one that carries the message with this text.
      async ackUpTo(text) {
        const seq = await page.waitForFunction((t) => window.raw.events.find((e) => e.message?.body?.text === t)?.seq, text);
        await page.evaluate((s) => window.raw.ws.send(JSON.stringify({ ref: String(++window.raw.ref), ack: { seq: s } })),
          await seq.jsonValue());
      },
    };
  }

  const texts = (page) => page.getByTestId('message').evaluateAll((els) => els.map((el) => el.querySelector('.msg__text')?.textContent ?? ''));
  const list = (page) => page.getByTestId('message-list');

  // The newest message is at the bottom of the list, in view.
  async function assertNewestInView(page, text) {
    const shown = await texts(page);
    assert.equal(shown[shown.length - 1], text, 'the newest message is the last one');
    const box = await bubble(page, text).boundingBox();
    const view = await list(page).boundingBox();
    assert.ok(box && box.y + box.height <= view.y + view.height + 1 && box.y >= view.y - 1, 'the newest message is in view');
  }

  test('hundreds of messages arrive in order; the page keeps a window of them; scrolling up brings the rest back once', async () => {
    bob = await rawStream('bob');
    const upload = await fetch(`${suite.node.url}/v1/assets?name=dot.png`, {
      method: 'POST', headers: { Authorization: `Bearer ${bob.token}`, 'Content-Type': 'image/png' }, body: PNG,
    });
    assert.equal(upload.status, 201);
    const asset = await upload.json();
    await bob.send('ann@test', [{ text: PICTURE, attachments: [{ asset_id: asset.id, name: 'dot.png' }] }]);

    const p = await suite.open();
    ann = p.page;
    await ann.addInitScript(countBlobUrls);
    await ann.reload();
    await login(ann, 'ann');
    await openConversationWith(ann, 'bob@test');
    await bubble(ann, PICTURE).getByTestId('attachment-image').waitFor();
    assert.equal(await ann.evaluate(() => window.blobUrlsHeld()), 1, 'the picture is shown through one blob: URL');

    // While ann looks at the newest messages, bob sends hundreds.
    const all = [PICTURE];
    for (let i = 1; i <= LINES; i++) all.push(line(i));
    await bob.send('ann@test', all.slice(1).map((text) => ({ text })));
    await bubble(ann, line(LINES)).waitFor();
    await ann.waitForFunction(() => window.blobUrlsHeld() === 0);
    let shown = await texts(ann);
    assert.ok(shown.length <= 600, `the page holds a window of the conversation (${shown.length} of ${all.length})`);
    assert.deepEqual(shown, all.slice(-shown.length), 'the newest messages, in order, each once');
    assert.equal(await ann.getByTestId('attachment-image').count(), 0, 'the picture went with its message');
    await assertNewestInView(ann, line(LINES));

    // Scrolling up pages the older ones back in from history.
    for (let tries = 0; tries < 40 && shown[0] !== PICTURE; tries++) {
      const before = shown.length;
      await list(ann).evaluate((el) => { el.scrollTop = 0; });
      await ann.waitForFunction((n) => document.querySelectorAll('[data-testid="message"]').length > n, before);
      shown = await texts(ann);
    }
    assert.deepEqual(shown, all, 'every message, in order, each once');
    await bubble(ann, PICTURE).getByTestId('attachment-image').waitFor();
    assert.equal(await ann.evaluate(() => window.blobUrlsHeld()), 1, 'the picture is shown again');

    // Away and back: the conversation opens on its newest messages, again a window of them.
    await startChat(ann, 'cat@test'); // a new chat: another view
    await bubble(ann, line(LINES)).waitFor({ state: 'detached' });
    await openConversationWith(ann, 'bob@test');
    await bubble(ann, line(LINES)).waitFor();
    shown = await texts(ann);
    assert.ok(shown.length <= 500, `left, the conversation kept its newest messages only (${shown.length})`);
    assert.deepEqual(shown, all.slice(-shown.length));
    await assertNewestInView(ann, line(LINES));
    assert.equal(await ann.evaluate(() => window.blobUrlsHeld()), 0, 'no picture is held for a message not kept');
  });

  test('a receipt changes its own message\'s state only; no row already shown is drawn anew', async () => {
    const mine = ['first of three', 'second of three', 'third of three'];
    for (const text of mine) {
      await send(ann, text);
      await waitForState(ann, text, ['sent']);
    }
    // Every row shown now is marked: a row drawn anew (a new element) would lose the mark.
    await ann.evaluate(() => document.querySelectorAll('[data-testid="message"]').forEach((el) => { el.keptRow = true; }));
    const unmarked = () => ann.evaluate(() => [...document.querySelectorAll('[data-testid="message"]')]
      .filter((el) => !el.keptRow).map((el) => el.querySelector('.msg__text')?.textContent));

    // bob's device acknowledges the first only: only the first is delivered.
    await bob.ackUpTo(mine[0]);
    await waitForState(ann, mine[0], ['delivered']);
    const state = (text) => bubble(ann, text).getAttribute('data-state');
    assert.equal(await state(mine[1]), 'sent');
    assert.equal(await state(mine[2]), 'sent');
    assert.deepEqual(await unmarked(), [], 'no row was drawn anew');

    // The rest, and a reply: the reply is the only new row, at the bottom.
    await bob.ackUpTo(mine[2]);
    await waitForState(ann, mine[2], ['delivered']);
    assert.equal(await state(mine[1]), 'delivered');
    await bob.send('ann@test', [{ text: 'got all three' }]);
    await bubble(ann, 'got all three').waitFor();
    assert.deepEqual(await unmarked(), ['got all three'], 'only the new message is a new row');
    await assertNewestInView(ann, 'got all three');
  });

  test('a message with only another app\'s content says it cannot be shown, not an empty bubble', async () => {
    await bob.send('ann@test', [{ content: { poll: { question: 'lunch?', options: ['yes', 'no'] } } }]);
    const unshown = ann.getByTestId('message-unshown');
    await unshown.waitFor();
    assert.equal(await unshown.textContent(), 'A message this app cannot show');
    assert.equal(await unshown.count(), 1);
    const rows = await texts(ann);
    assert.equal(rows[rows.length - 1], 'A message this app cannot show', 'it is the newest row');
  });
});
