// More of what a person does in the page: a group's members added and removed and a member
// who leaves (every member's view follows); a long conversation paged back by scrolling,
// with nothing twice and no jump; the page in Russian; sending by keyboard alone; what is
// typed kept while a new chat becomes a conversation, and while another chat is looked at.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import {
  browserSuite, bubble, conversation, login, openConversationWith, screenshot, send, startChat,
} from './harness.mjs';

describe('groups, history, language, keyboard', () => {
  const suite = browserSuite();

  before(async () => {
    for (const name of ['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: 'correct horse battery' });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  async function person(name, opts) {
    const p = await suite.open(suite.node, opts);
    await login(p.page, name);
    return p.page;
  }

  const members = (page) => page.getByTestId('group-member').evaluateAll((els) => els.map((e) => e.dataset.userId).sort());

  test('a group\'s members change and every member sees it', async () => {
    const ann = await person('ann');
    const ben = await person('ben');
    const cat = await person('cat');
    await ann.getByTestId('new-group-open').click();
    await ann.getByTestId('group-title').fill('Book club');
    await ann.getByTestId('group-members').fill('ben@test');
    await ann.getByTestId('group-create').click();
    await ann.getByTestId('composer-input').waitFor();
    await send(ann, 'first meeting on Friday');
    await ann.getByTestId('group-info-button').click();
    await ann.getByTestId('add-member-input').fill('cat@test');
    await ann.getByTestId('add-member-button').click();
    await ann.locator('[data-testid="group-member"][data-user-id="cat@test"]').waitFor();
    assert.deepEqual(await members(ann), ['ann@test', 'ben@test', 'cat@test']);
    await openConversationWith(cat, 'Book club');
    await send(cat, 'thanks for adding me');
    await bubble(ben, 'thanks for adding me').waitFor({ state: 'attached' }).catch(() => {});
    await openConversationWith(ben, 'Book club');
    await bubble(ben, 'thanks for adding me').waitFor();
    // ann removes ben: he sees no new messages of the group.
    await ann.locator('[data-testid="group-member"][data-user-id="ben@test"]').getByTestId('remove-member').click();
    await ann.locator('[data-testid="group-member"][data-user-id="ben@test"]').waitFor({ state: 'detached' });
    await send(ann, 'after ben left');
    await bubble(cat, 'after ben left').waitFor();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await bubble(ben, 'after ben left').count(), 0, 'a removed member gets nothing new');
    // cat leaves; ann's list of members follows.
    await cat.getByTestId('group-info-button').click();
    await cat.getByTestId('leave-group').click();
    await ann.locator('[data-testid="group-member"][data-user-id="cat@test"]').waitFor({ state: 'detached' });
    assert.deepEqual(await members(ann), ['ann@test']);
    await screenshot(ann, 'group-members');
  });

  test('who may add me to groups: a checkbox whose choice the node keeps and applies', async () => {
    const dan = await person('dan');
    await dan.getByTestId('devices-open').click();
    const box = dan.getByTestId('group-adds-contacts');
    await box.waitFor();
    await dan.waitForFunction(() => !document.querySelector('[data-testid="group-adds-contacts"]').disabled);
    assert.equal(await box.isChecked(), false, 'everyone may add by default');
    await box.check();
    await dan.waitForFunction(() => {
      const el = document.querySelector('[data-testid="group-adds-contacts"]');
      return el.checked && !el.disabled;
    });
    // The node applies it: a stranger's group leaves dan out, saying why.
    const eve = await suite.node.call('POST', '/v1/sessions', { name: 'eve', password: 'correct horse battery', device_name: 'e2e' });
    const made = await suite.node.call('POST', '/v1/conversations', { title: 'not asked', members: ['dan@test'] }, eve.json.access_token);
    assert.equal(made.status, 201, JSON.stringify(made.json));
    assert.deepEqual(made.json.failed.map((f) => [f.user_id, f.code]), [['dan@test', 'group_adds_restricted']]);
    // And keeps it: after a reload the box is still checked.
    await dan.reload();
    await dan.getByTestId('devices-open').click();
    await dan.waitForFunction(() => {
      const el = document.querySelector('[data-testid="group-adds-contacts"]');
      return el && !el.disabled;
    });
    assert.equal(await dan.getByTestId('group-adds-contacts').isChecked(), true);
    await dan.getByTestId('group-adds-contacts').uncheck(); // back to the default for the tests after
    await dan.waitForFunction(() => !document.querySelector('[data-testid="group-adds-contacts"]').disabled);
    const again = await suite.node.call('POST', '/v1/conversations', { title: 'now allowed', members: ['dan@test'] }, eve.json.access_token);
    assert.deepEqual(again.json.failed, [], 'unchecked: anyone may add dan again');
  });

  test('a long conversation is paged back by scrolling: every message once, no jump', async () => {
    const ann = await person('ann');
    await startChat(ann, 'dan@test');
    const N = 75;
    for (let i = 1; i <= N; i++) await send(ann, `line ${String(i).padStart(3, '0')}`);
    await ann.locator('[data-testid="message"][data-state]').filter({ hasText: `line ${String(N).padStart(3, '0')}` }).waitFor();
    await ann.waitForFunction((n) => [...document.querySelectorAll('[data-testid="message"]')]
      .filter((el) => el.getAttribute('data-state') === 'sending').length === 0, N);
    const dan = await person('dan');
    await openConversationWith(dan, 'ann@test');
    await bubble(dan, `line ${String(N).padStart(3, '0')}`).waitFor();
    const shown = () => dan.getByTestId('message').count();
    const first = await shown();
    assert.ok(first < N, `the first page is a page (${first} of ${N})`);
    const list = dan.getByTestId('message-list');
    for (let tries = 0; tries < 20 && (await shown()) < N; tries++) {
      // The oldest message shown stays where it was when the older ones arrive above it.
      const oldest = dan.getByTestId('message').first();
      const text = await oldest.textContent();
      const before = await shown(); // counted before the scroll that asks for more
      await list.evaluate((el) => { el.scrollTop = 0; });
      // The scroll to the top must bring older messages. (An update of the page between the
      // scroll and its event once pulled the view back to the bottom instead, and nothing came.)
      const grew = await dan.waitForFunction((n) => document.querySelectorAll('[data-testid="message"]').length > n, before)
        .then(() => true, () => false);
      const where = await list.evaluate((el) => `scrollTop ${el.scrollTop} of ${el.scrollHeight - el.clientHeight}`);
      assert.ok(grew, `scrolling to the top loaded older messages (${before} shown, the view at ${where})`);
      // Measured once the page has painted the new page of history (two frames).
      await dan.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      const still = bubble(dan, text.slice(0, 8));
      const box = await still.boundingBox();
      const view = await list.boundingBox();
      assert.ok(box && box.y >= view.y - 1, 'the message read last did not jump out of view above');
      assert.ok(box.y + box.height <= view.y + view.height + 1, 'the message read last was not pushed out of view below');
    }
    assert.equal(await shown(), N, 'every message, once');
    for (const i of [1, 37, N]) assert.equal(await bubble(dan, `line ${String(i).padStart(3, '0')}`).count(), 1);
  });

  test('a muted conversation stays muted on every device and its badge is grey', async () => {
    const ann = await person('ann');
    await startChat(ann, 'eve@test');
    await send(ann, 'before the mute');
    const eve = await person('eve'); // no other page of hers is open: nothing reads for her
    await openConversationWith(eve, 'ann@test');
    const toggle = eve.getByTestId('mute-toggle');
    assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
    await toggle.click();
    await eve.locator('[data-testid="mute-toggle"][aria-pressed="true"]').waitFor();
    await eve.getByTestId('muted-mark').waitFor();
    await eve.goto('about:blank'); // this device reads nothing more
    // Another device of eve's loads the flag from the node.
    const other = await person('eve');
    const item = conversation(other, 'ann@test');
    await item.getByTestId('muted-mark').waitFor();
    await send(ann, 'are you there?');
    await item.locator('.badge--muted').waitFor();
    await openConversationWith(other, 'ann@test');
    await other.getByTestId('mute-toggle').click();
    await other.locator('[data-testid="mute-toggle"][aria-pressed="false"]').waitFor();
  });

  test('the page speaks Russian to a Russian browser', async () => {
    const context = await suite.browser.newContext({ locale: 'ru-RU' });
    const page = await context.newPage();
    await page.goto(suite.node.url + '/');
    assert.equal(await page.getByTestId('login-button').textContent(), 'Войти');
    await page.getByTestId('login-username').fill('ann');
    await page.getByTestId('login-password').fill('wrong password');
    await page.getByTestId('login-button').click();
    const error = await page.getByTestId('login-error').textContent();
    assert.match(error, /[А-Яа-я]/, `the error is in Russian: ${error}`);
    await screenshot(page, 'login-ru');
    await context.close();
  });

  test('a message can be sent with the keyboard alone', async () => {
    const p = await suite.open(suite.node);
    const { page } = p;
    // Reaches a control by Tab alone (fails if Tab never gets there).
    const tabTo = async (testid) => {
      for (let i = 0; i < 25; i++) {
        if (await page.evaluate(() => document.activeElement?.getAttribute('data-testid')) === testid) return;
        await page.keyboard.press('Tab');
      }
      assert.fail(`Tab never reached ${testid}`);
    };
    await tabTo('login-username');
    await page.keyboard.type('ben');
    await page.keyboard.press('Tab');
    await page.keyboard.type('correct horse battery');
    await page.keyboard.press('Enter');
    await page.getByTestId('new-chat-input').waitFor();
    await tabTo('new-chat-input');
    await page.keyboard.type('dan@test');
    await page.keyboard.press('Enter');
    await page.getByTestId('composer-input').waitFor();
    await tabTo('composer-input');
    await page.keyboard.type('typed, never clicked');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid="message"][data-state]').filter({ hasText: 'typed, never clicked' }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'composer-input',
      'the composer keeps the focus after sending');
  });

  test('what is typed while a new chat\'s first message goes out stays in the composer', async () => {
    const { page } = await suite.open(suite.node);
    // The node's answer to the first send is held until the next words are typed.
    const held = [];
    let release = null;
    await page.routeWebSocket(/\/v1\/ws$/, (ws) => {
      const server = ws.connectToServer();
      let holding = true;
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        if (holding && m.includes('"accepted"')) held.push(m);
        else ws.send(m);
      });
      release = () => {
        holding = false;
        for (const m of held.splice(0)) ws.send(m);
      };
    });
    await page.reload();
    await login(page, 'eve');
    await startChat(page, 'cat@test');
    await send(page, 'hello cat');
    for (const deadline = Date.now() + 20000; held.length === 0;) {
      if (Date.now() > deadline) assert.fail('the send was never answered');
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.getByTestId('composer-input').fill('and one more thing');
    release();
    // The answer turns the new chat into a conversation (and mounts a new composer).
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="conv-item"]')]
      .some((el) => el.textContent.includes('cat@test') && !el.dataset.convId.startsWith('draft:')));
    await page.locator('[data-testid="message"][data-state]').filter({ hasText: 'hello cat' }).waitFor();
    assert.equal(await page.getByTestId('composer-input').inputValue(), 'and one more thing');
    // And it is still there after looking at another chat.
    await startChat(page, 'dan@test');
    await page.locator('#conversation-title').filter({ hasText: 'dan@test' }).waitFor();
    assert.equal(await page.getByTestId('composer-input').inputValue(), '');
    await openConversationWith(page, 'cat@test');
    await page.locator('#conversation-title').filter({ hasText: 'cat@test' }).waitFor();
    assert.equal(await page.getByTestId('composer-input').inputValue(), 'and one more thing');
  });

  test('a disappearing message goes from an open page when it expires', async () => {
    // The node sends no event when a message expires: the page takes it off by itself, from
    // the open thread and from the list's preview.
    const fay = await person('fay');
    const gus = await person('gus');
    await startChat(fay, 'gus@test');
    await send(fay, 'hello gus');
    await openConversationWith(gus, 'fay@test');
    await bubble(gus, 'hello gus').waitFor();
    const session = await suite.node.call('POST', '/v1/sessions',
      { name: 'gus', password: 'correct horse battery', device_name: 'scene' });
    assert.equal(session.status, 201, JSON.stringify(session.json));
    const token = session.json.access_token;
    const list = await suite.node.call('GET', '/v1/conversations', undefined, token);
    const direct = list.json.conversations.find((c) => c.peer === 'fay@test');
    const patched = await suite.node.call('PATCH', `/v1/conversations/${encodeURIComponent(direct.id)}`,
      { ttl_s: 8 }, token);
    assert.equal(patched.status, 200, JSON.stringify(patched.json));
    await send(fay, 'this goes in eight seconds');
    // Shown on both pages first (within the 8 s), then gone from both.
    await Promise.all([gus, fay].map((page) => bubble(page, 'this goes in eight seconds').waitFor()));
    await Promise.all([gus, fay].map((page) => page.waitForFunction(
      () => ![...document.querySelectorAll('[data-testid="message"]')]
        .some((el) => el.textContent.includes('this goes in eight seconds')), undefined, { timeout: 30000 })));
    assert.equal(await bubble(gus, 'hello gus').count(), 1, 'what does not expire stays');
    assert.equal(await gus.getByTestId('conv-item').filter({ hasText: 'this goes in eight seconds' }).count(), 0,
      'nor in the list');
  });
});
