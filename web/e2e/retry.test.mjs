// Sends that fail, and Retry (docs/PROTOCOL.md, "The conversation, step by step": a send
// is stored once per client_id). The connection dies right after a send went out, so the
// node stored the message but its `accepted` never came; the network stays down, the
// message shows as not sent with a Retry button; Retry resends it with the same client_id
// and the recipient has it exactly once, also after reloading. And a send the node refuses
// (rate_limited) shows the node's reason and Retry, which then sends it once.
// Screenshots 'send-failed' and 'send-refused-phone' go to build/web-artifacts/.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, bubble, login, openConversationWith, screenshot, send, startChat, waitForState } from './harness.mjs';

const SEND_TIMEOUT_MS = 30000; // live.ts: an unanswered send shows as failed after this
const SENT = ['sent', 'delivered', 'read'];

// The live stream of a page through a switch that records the frames it lets through:
// `cutAfterSend(text)` lets the send of that text through and then kills the connection
// (nothing more reaches the page, the node's answer included) and keeps the network down
// until `restore()`.
async function switchedStream(page) {
  const sw = { frames: [], down: false, cutText: null };
  await page.routeWebSocket(/\/v1\/ws$/, (ws) => {
    if (sw.down) return ws.close({ code: 1001, reason: 'offline' });
    const server = ws.connectToServer();
    let dying = false;
    ws.onMessage((m) => {
      if (dying) return;
      sw.frames.push({ dir: 'out', frame: JSON.parse(m) });
      server.send(m);
      if (sw.cutText && m.includes('"send"') && m.includes(sw.cutText)) dying = true;
    });
    server.onMessage((m) => {
      const frame = JSON.parse(m);
      if (!dying) {
        sw.frames.push({ dir: 'in', frame });
        return ws.send(m);
      }
      if (frame.accepted) { // stored: now the connection dies, the answer with it
        sw.down = true;
        server.close();
        ws.close({ code: 1001, reason: 'offline' });
      }
    });
  });
  sw.cutAfterSend = (text) => { sw.cutText = text; };
  sw.restore = () => { sw.down = false; sw.cutText = null; };
  sw.sends = (text) => sw.frames.filter((f) => f.dir === 'out' && f.frame.send?.body?.text === text).map((f) => f.frame.send);
  sw.answers = (clientId) => sw.frames.filter((f) => f.dir === 'in' && f.frame.accepted?.client_id === clientId).map((f) => f.frame.accepted);
  return sw;
}

// Waits for something the test records (not the page) to become true.
async function until(check, what, timeout = 20000) {
  for (const deadline = Date.now() + timeout; !check();) {
    if (Date.now() > deadline) assert.fail(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('failed sends and Retry', () => {
  // One send a second (bursts of two), so that a quick run of sends is refused.
  const suite = browserSuite({ extra: '[messages]\nmax_per_second = 1' });

  before(async () => {
    for (const name of ['alice', 'bob', 'carl', 'dina', 'emma', 'finn', 'gina', 'hugo']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: 'correct horse battery' });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  test('a send whose answer was lost shows Retry; Retry sends it once, with the same client_id', async () => {
    const a = await suite.open();
    const stream = await switchedStream(a.page);
    await a.page.reload();
    const alice = a.page;
    const { page: bob } = await suite.open();
    await login(alice, 'alice');
    await login(bob, 'bob');
    await startChat(alice, 'bob@test');
    await send(alice, 'first, to open the chat');
    await waitForState(alice, 'first, to open the chat', SENT);
    await openConversationWith(bob, 'alice@test');

    const text = 'stored, but the answer was lost';
    stream.cutAfterSend(text);
    await send(alice, text);
    // The node stored it (bob has it), the page never heard: failed once the wait is over.
    await bubble(bob, text).waitFor();
    await waitForState(alice, text, ['failed'], SEND_TIMEOUT_MS + 30000);
    const item = bubble(alice, text);
    assert.match(await item.getByRole('alert').textContent(), /No answer from the server\./);
    await screenshot(alice, 'send-failed');

    // Retry while still offline: sending again, same client_id; then the network is back.
    const clientId = await item.getAttribute('data-client-id');
    await item.getByTestId('retry-button').click();
    await waitForState(alice, text, ['sending']);
    stream.restore();
    await waitForState(alice, text, SENT);
    assert.equal(await item.getAttribute('data-client-id'), clientId);
    // (The page may show it stored from its own mailbox's event before the node answers.)
    await until(() => stream.answers(clientId).length > 0, 'the node answered the resend');
    const sends = stream.sends(text);
    assert.ok(sends.length >= 2, `sent again after the Retry (${sends.length} sends)`);
    assert.deepEqual(stream.answers(clientId).map((x) => x.duplicate), [true], 'the node knew it: accepted as a duplicate');
    assert.deepEqual([...new Set(sends.map((s) => s.client_id))], [clientId], 'every send of it carried one client_id');

    // Exactly once everywhere: live, and from history after reloads.
    await send(bob, 'got it');
    await bubble(alice, 'got it').waitFor();
    assert.equal(await bubble(bob, text).count(), 1);
    assert.equal(await bubble(alice, text).count(), 1);
    for (const page of [bob, alice]) {
      await page.reload();
      await openConversationWith(page, page === bob ? 'alice@test' : 'bob@test');
      await bubble(page, 'got it').waitFor();
      assert.equal(await bubble(page, text).count(), 1, 'once after a reload');
    }
  });

  test('leaving the page while a send is not accepted yet asks first', async () => {
    // What the node has not accepted lives only in the page: closing it would lose it.
    const a = await suite.open();
    const stream = await switchedStream(a.page);
    await a.page.reload();
    const page = a.page;
    await login(page, 'gina');
    await startChat(page, 'hugo@test');
    await send(page, 'opens the chat');
    await waitForState(page, 'opens the chat', SENT);
    stream.cutAfterSend('held back');
    await send(page, 'held back');
    await waitForState(page, 'held back', ['sending']);
    // (The suite's own handler dismisses it: the page stays.)
    const asked = new Promise((resolve) => {
      page.once('dialog', (d) => resolve(d.type()));
      setTimeout(() => resolve('no dialog'), 10000);
    });
    await page.close({ runBeforeUnload: true });
    assert.equal(await asked, 'beforeunload');
    // That dialog was wanted: not one of the page's problems the suite checks at its end.
    const wanted = a.problems.indexOf('dialog: ');
    assert.ok(wanted >= 0, a.problems.join('; '));
    a.problems.splice(wanted, 1);
    stream.restore();
  });

  test('a conversation whose history failed to load loads it again', async () => {
    // One failed first page once left the conversation empty (and paging back dead) until
    // the page was reloaded.
    const { page: emma } = await suite.open();
    const { page: finn } = await suite.open();
    await login(emma, 'emma');
    await login(finn, 'finn');
    await startChat(emma, 'finn@test');
    await send(emma, 'from before the reload');
    await openConversationWith(finn, 'emma@test');
    await bubble(finn, 'from before the reload').waitFor();
    // After a reload the message comes from history only (the stream resumes after it).
    let refused = 0;
    await finn.route('**/v1/conversations/*/messages?*', async (route) => {
      if (refused++ === 0) {
        await route.fulfill({ status: 503, contentType: 'application/json', headers: { 'Retry-After': '1' },
          body: JSON.stringify({ error: { code: 'store_unavailable', message: 'try again later' } }) });
      } else {
        await route.continue();
      }
    });
    await finn.reload();
    await openConversationWith(finn, 'emma@test');
    await bubble(finn, 'from before the reload').waitFor();
    assert.ok(refused >= 2, 'the first page was refused once and asked for again');
  });

  test('a send the node refuses shows its reason and Retry; Retry sends it once', async () => {
    const { page: carl } = await suite.open(suite.node, { width: 390, height: 844 }); // a phone
    const { page: dina } = await suite.open();
    await login(carl, 'carl');
    await login(dina, 'dina');
    await startChat(carl, 'dina@test');
    const texts = Array.from({ length: 6 }, (_, i) => `quick message ${i + 1}`);
    for (const text of texts) await send(carl, text); // faster than one a second
    const failed = carl.locator('[data-testid="message"][data-state="failed"]');
    await failed.first().waitFor();
    assert.match(await failed.first().getByRole('alert').textContent(), /Too many attempts\./);
    await screenshot(carl, 'send-refused-phone');
    // Each refused one is retried until the node takes it (it takes one a second). Every
    // send is answered first: one still on its way may be refused after the others.
    const settled = () => carl.waitForFunction(
      () => !document.querySelector('[data-testid="message"][data-state="sending"]'));
    for (await settled(); (await failed.count()) > 0; await settled()) {
      const item = failed.first();
      const text = (await item.locator('.msg__text').textContent()) ?? '';
      await item.getByTestId('retry-button').click();
      await carl.waitForFunction((t) => [...document.querySelectorAll('[data-testid="message"]')]
        .some((el) => el.textContent.includes(t) && el.getAttribute('data-state') !== 'sending'), text);
    }
    await openConversationWith(dina, 'carl@test');
    for (const text of texts) await bubble(dina, text).waitFor();
    await dina.reload();
    await openConversationWith(dina, 'carl@test');
    await bubble(dina, texts[texts.length - 1]).waitFor();
    for (const text of texts) assert.equal(await bubble(dina, text).count(), 1, `${text}: once`);
  });
});
