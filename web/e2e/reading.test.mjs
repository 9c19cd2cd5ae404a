// What the page tells as read, and what it believes of a list answer that was on its way:
// a message is read only once its row has been on screen while the page was looked at
// (visible and focused), never while it waits below a view scrolled up, or in a window
// behind another; a conversation list asked before a read on another device does not
// bring the badge that read cleared back; a read the node refuses brings the badge back to
// the node's count, and one whose connection dropped before the node had it is sent again
// once the connection is back.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, bubble, conversation, login, openConversationWith, send, startChat, waitForState } from './harness.mjs';

const PASSWORD = 'correct horse battery';
const QUIET_MS = 2500; // how long a state is watched not to change, once the node has shown it works

describe('reading', () => {
  const suite = browserSuite({ extra: '[messages]\nmax_per_second = 1000' });

  before(async () => {
    for (const name of ['dan', 'eve', 'fay', 'gus', 'hal', 'ida']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: PASSWORD });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  const list = (page) => page.getByTestId('message-list');
  const stateOf = (page, text) => bubble(page, text).getAttribute('data-state');
  const badge = (page, title) => conversation(page, title).getByTestId('unread-badge');

  // The own message showing `text` is delivered and stays so (not read) for QUIET_MS.
  async function staysDelivered(page, text, why) {
    await waitForState(page, text, ['delivered', 'read']);
    await page.waitForTimeout(QUIET_MS);
    assert.equal(await stateOf(page, text), 'delivered', why);
  }

  test('a message below a view scrolled up, or come while the page is not looked at, is read only once seen', async () => {
    const eve = (await suite.open()).page;
    await login(eve, 'eve');
    await startChat(eve, 'dan@test');
    const lines = Array.from({ length: 40 }, (_, i) => `line ${i + 1} of the long talk`);
    for (const text of lines) await send(eve, text);
    await waitForState(eve, lines[lines.length - 1], ['sent', 'delivered']);

    const dan = (await suite.open()).page;
    await login(dan, 'dan');
    await openConversationWith(dan, 'eve@test');
    await bubble(dan, lines[lines.length - 1]).waitFor();
    await waitForState(eve, lines[lines.length - 1], ['read']); // seen: at the bottom of dan's view

    // dan scrolls up to the start of the talk; eve writes more: it waits below his view.
    await list(dan).evaluate((el) => { el.scrollTop = 0; });
    await dan.waitForFunction(() => document.querySelector('[data-testid="message-list"]').scrollTop === 0);
    await send(eve, 'below the view');
    await bubble(dan, 'below the view').waitFor({ state: 'attached' });
    await staysDelivered(eve, 'below the view', 'not read while it is below dan\'s view');
    await badge(dan, 'eve@test').filter({ hasText: '1' }).waitFor();

    // He scrolls down to it: read, and no badge.
    await list(dan).evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await waitForState(eve, 'below the view', ['read']);
    await badge(dan, 'eve@test').waitFor({ state: 'detached' });

    // His window loses the focus (another window in front): what comes is not read…
    await dan.evaluate(() => { document.hasFocus = () => false; });
    await send(eve, 'while dan looks elsewhere');
    await bubble(dan, 'while dan looks elsewhere').waitFor();
    await staysDelivered(eve, 'while dan looks elsewhere', 'not read while dan\'s window has no focus');
    // …until he comes back to it.
    await dan.evaluate(() => { delete document.hasFocus; window.dispatchEvent(new Event('focus')); });
    await waitForState(eve, 'while dan looks elsewhere', ['read']);

    // A row whose edge peeks into the view by a few pixels is not seen; shown whole, it is.
    await list(dan).evaluate((el) => { el.scrollTop = el.scrollHeight - el.clientHeight - 400; });
    await send(eve, 'peeking in');
    await bubble(dan, 'peeking in').waitFor({ state: 'attached' });
    await list(dan).evaluate((el) => {
      const rows = el.querySelectorAll('[data-testid="message"]');
      const row = rows[rows.length - 1].getBoundingClientRect();
      el.scrollTop += row.top - (el.getBoundingClientRect().bottom - 8);
    });
    await staysDelivered(eve, 'peeking in', 'not read while only its edge shows');
    await bubble(dan, 'peeking in').evaluate((el) => el.scrollIntoView({ block: 'end' }));
    await waitForState(eve, 'peeking in', ['read']);
  });

  // Opens a live stream of `token` from `page`, sends `frame` once welcomed, and resolves with
  // the first event or answer `until` picks (a JSON frame), then closes.
  const rawFrame = (page, token, frame, until) => page.evaluate(([token, frame, until]) => new Promise((resolve, reject) => {
    const pick = new Function('f', `return (${until})(f)`);
    const ws = new WebSocket(`ws://${location.host}/v1/ws`, 'petchat.v1.json');
    ws.onopen = () => ws.send(JSON.stringify({ ref: '1', auth: { access_token: token } }));
    ws.onmessage = (e) => {
      const f = JSON.parse(e.data);
      if (f.welcome) ws.send(JSON.stringify({ ref: '2', ...frame }));
      if (f.error) { ws.close(); reject(new Error(JSON.stringify(f.error))); }
      if (pick(f)) { ws.close(); resolve(f); }
    };
    ws.onclose = (e) => reject(new Error(`closed: ${e.code}`));
  }), [token, frame, until.toString()]);

  const sessionOf = async (name, device) => {
    const r = await suite.node.call('POST', '/v1/sessions', { name, password: PASSWORD, device_name: device });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return r.json.access_token;
  };

  test('a conversation list on its way does not bring back a badge a read on another device cleared', async () => {
    const fay = (await suite.open()).page;
    await login(fay, 'fay');
    await startChat(fay, 'dan@test');
    await send(fay, 'one for dan');
    await waitForState(fay, 'one for dan', ['sent', 'delivered']);

    // dan's page shows the conversation with a badge of 1; he has another one open.
    const dan = (await suite.open()).page;
    await login(dan, 'dan');
    await openConversationWith(dan, 'eve@test');
    await badge(dan, 'fay@test').filter({ hasText: '1' }).waitFor();

    // The next list answer is held on its way: the node answers now (the badge at 1 in it),
    // the page gets it only when let go.
    let release;
    const gate = new Promise((r) => { release = r; });
    let held = 0;
    await dan.route('**/v1/conversations?*', async (route) => {
      const answer = await route.fetch();
      held += 1;
      await gate;
      await route.fulfill({ response: answer });
    });
    // Someone new writes to dan: the page asks for the list again.
    const gus = await sessionOf('gus', 'raw');
    await rawFrame(dan, gus, { send: { client_id: 'hello dan', to: 'dan@test', body: { text: 'hello from gus' } } },
      (f) => Boolean(f.accepted));
    for (let i = 0; i < 100 && held === 0; i++) await dan.waitForTimeout(100);
    assert.equal(held, 1, 'the page asked for the list, and its answer is held');

    // dan reads fay's message on his phone meanwhile: the badge goes, live.
    const phone = await sessionOf('dan', 'phone');
    const history = await suite.node.call('GET', '/v1/messages?peer=fay%40test', undefined, phone);
    assert.equal(history.status, 200, JSON.stringify(history.json));
    const [message] = history.json.messages;
    await rawFrame(dan, phone, { read: { conversation_id: message.conversation_id, message_id: message.id } },
      (f) => f.event?.read_mark !== undefined);
    await badge(dan, 'fay@test').waitFor({ state: 'detached' });

    // The list answer arrives, older than that read: the badge stays gone.
    const answered = dan.waitForResponse('**/v1/conversations?*');
    release();
    await answered;
    await conversation(dan, 'gus@test').waitFor();
    await dan.waitForTimeout(QUIET_MS);
    assert.equal(await badge(dan, 'fay@test').count(), 0, 'the list answer brought the badge back');
    await dan.unroute('**/v1/conversations?*');
  });
  // The live stream of a page through a switch: `tamperNextRead()` makes the next read frame
  // name a message the node does not have (the node refuses it, under the frame's own ref,
  // as it refuses a read of a message that went); `dropNextRead()` lets the next read frame
  // go nowhere and kills the connection (the network stays down until `restore()`).
  async function switchedStream(page) {
    const sw = { down: false, next: null, reads: [], refusals: [] };
    await page.routeWebSocket(/\/v1\/ws$/, (ws) => {
      if (sw.down) return ws.close({ code: 1001, reason: 'offline' });
      const server = ws.connectToServer();
      let dead = false; // this connection was killed: nothing more goes either way
      ws.onMessage((m) => {
        if (dead) return;
        const frame = JSON.parse(m);
        if (frame.read && sw.next === 'tamper') {
          sw.next = null;
          sw.reads.push({ ...frame.read, ref: frame.ref, tampered: true });
          frame.read.message_id = 'AAAAAAAAAAAAAAAAAAAAAA'; // well-formed, no such message
          return server.send(JSON.stringify(frame));
        }
        if (frame.read && sw.next === 'drop') {
          sw.next = null;
          sw.reads.push({ ...frame.read, ref: frame.ref, dropped: true });
          sw.down = true;
          dead = true;
          server.close();
          return ws.close({ code: 1001, reason: 'offline' });
        }
        if (frame.read) sw.reads.push({ ...frame.read, ref: frame.ref });
        server.send(m);
      });
      server.onMessage((m) => {
        if (dead) return;
        const frame = JSON.parse(m);
        if (frame.error && sw.reads.some((r) => r.ref === frame.ref)) sw.refusals.push(frame.error.code);
        ws.send(m);
      });
    });
    sw.tamperNextRead = () => { sw.next = 'tamper'; };
    sw.dropNextRead = () => { sw.next = 'drop'; };
    sw.restore = () => { sw.down = false; };
    return sw;
  }

  // Waits for something the test records (not the page) to become true.
  async function until(check, what, timeout = 20000) {
    for (const deadline = Date.now() + timeout; !(await check());) {
      if (Date.now() > deadline) assert.fail(`timed out waiting: ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  test('a read the node refuses, or one lost with the connection, does not leave the count wrong', async () => {
    const ida = (await suite.open()).page;
    await login(ida, 'ida');
    await startChat(ida, 'hal@test');
    await send(ida, 'one for hal');
    await waitForState(ida, 'one for hal', ['sent', 'delivered']);

    // hal's page, its live stream through the switch; his phone asks the node what it holds.
    const h = await suite.open();
    const stream = await switchedStream(h.page);
    await h.page.reload();
    const hal = h.page;
    await login(hal, 'hal');
    await badge(hal, 'ida@test').filter({ hasText: '1' }).waitFor();
    const phone = await sessionOf('hal', 'phone');
    const nodeUnread = async () => {
      const r = await suite.node.call('GET', '/v1/conversations?limit=10', undefined, phone);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return r.json.conversations.find((c) => c.peer === 'ida@test')?.unread_count;
    };

    // He opens the chat and sees the message; the node refuses his read of it (as for a
    // message that went): the mark stays where it was there, and the badge comes back to
    // the count the node holds.
    stream.tamperNextRead();
    await openConversationWith(hal, 'ida@test');
    await bubble(hal, 'one for hal').waitFor();
    await until(() => stream.refusals.length > 0, 'the node refused the read');
    assert.equal(await nodeUnread(), 1, 'the node holds the message as unread');
    await badge(hal, 'ida@test').filter({ hasText: '1' }).waitFor();
    await hal.waitForTimeout(QUIET_MS);
    assert.equal(await badge(hal, 'ida@test').count(), 1, 'the badge says what the node holds, and stays so');
    assert.notEqual(await stateOf(ida, 'one for hal'), 'read', 'not read: the node did not take the read');

    // The next message he sees is read as usual (both are, for ida), and the badge goes.
    await send(ida, 'two for hal');
    await bubble(hal, 'two for hal').waitFor();
    await waitForState(ida, 'two for hal', ['read']);
    await waitForState(ida, 'one for hal', ['read']);
    await badge(hal, 'ida@test').waitFor({ state: 'detached' });
    assert.equal(await nodeUnread(), 0);

    // The connection dies as his read of the next message goes out: the node never has it.
    // Once the network is back, the page sends it again: ida sees it read, and no device of
    // hal's counts it unread.
    stream.dropNextRead();
    await send(ida, 'three for hal');
    await bubble(hal, 'three for hal').waitFor();
    await until(() => stream.down, 'the read went into the dead connection');
    await hal.getByText('Connecting…').waitFor();
    assert.equal(await nodeUnread(), 1, 'the node did not get the read');
    await ida.waitForTimeout(QUIET_MS);
    assert.notEqual(await stateOf(ida, 'three for hal'), 'read', 'not read while hal\'s read has not reached the node');
    // The network is back (the browser says so: the page tries at once).
    stream.restore();
    for (let i = 0; (await hal.getByText('Connecting…').count()) > 0; i++) {
      assert.ok(i < 60, 'hal\'s page is connected again');
      await hal.evaluate(() => window.dispatchEvent(new Event('online')));
      await hal.waitForTimeout(500);
    }
    await waitForState(ida, 'three for hal', ['read']);
    await until(async () => (await nodeUnread()) === 0, 'the node holds nothing unread for hal');
    assert.equal(await badge(hal, 'ida@test').count(), 0);
    assert.ok(stream.reads.filter((r) => !r.dropped && !r.tampered).length >= 2, 'the read went again');
  });
});
