// The side of the page that lists conversations and starts new ones: a group named like a
// person (their id, "@" and a name) never passes for a chat with them, in the list or in
// its header; a new chat that cannot be started says why and keeps what was typed (a
// malformed id, no such user, no such region, a connection that fails); the list keeps
// up while events that each ask for it again never stop (a busy group's changes); and a
// browser whose clock is a day ahead orders the list by the node's time, not its own.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, conversation, login, openConversationWith, send, startChat, waitForState } from './harness.mjs';

const PASSWORD = 'correct horse battery';
// How long a group new to the list may take to show while changes keep coming: the list
// is fetched at the latest 2 s after the first change asked for it (chat.ts), with room for
// a slow machine. The changes come far more often than the list's 400 ms of quiet.
const LIST_SHOWN_MS = 8000;
const CHANGE_EVERY_MS = 50;

describe('the conversation list and new chats', () => {
  const suite = browserSuite({ extra: '[messages]\nmax_per_second = 1000' });

  before(async () => {
    for (const name of ['amy', 'vic', 'mal', 'ivy', 'jon', 'kim', 'lee', 'nat', 'oli', 'pam']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: PASSWORD });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  async function person(name) {
    const { page } = await suite.open();
    await login(page, name);
    return page;
  }

  // An access token of `name`'s, for setting the scene over REST.
  async function tokenOf(name) {
    const r = await suite.node.call('POST', '/v1/sessions', { name, password: PASSWORD, device_name: 'raw' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return r.json.access_token;
  }

  async function makeGroup(token, title, members) {
    const r = await suite.node.call('POST', '/v1/conversations', { title, members }, token);
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return r.json.conversation.id;
  }

  const item = (page, id) => page.locator(`[data-testid="conv-item"][data-conv-id="${id}"]`);
  const groupMark = (scope) => scope.getByRole('img', { name: 'Group', exact: true });

  test('a group titled like a person is shown as a group, in the list and in its header', async () => {
    const vic = await person('vic');
    await startChat(vic, 'amy@test');
    await send(vic, 'hi amy');
    await waitForState(vic, 'hi amy', ['sent', 'delivered', 'read']);
    const direct = await vic.locator('[data-testid="conv-item"][aria-current="true"]').getAttribute('data-conv-id');
    assert.doesNotMatch(direct, /^draft:/, 'the chat with amy is a conversation of the node\'s');

    // mal makes groups named as amy, and adds vic: one with her id, one with "@" and her name.
    const mal = await tokenOf('mal');
    const lookalikes = [['amy@test', await makeGroup(mal, 'amy@test', ['vic@test'])], ['@amy', await makeGroup(mal, '@amy', ['vic@test'])]];
    for (const [title, id] of lookalikes) {
      const group = item(vic, id);
      await group.waitFor();
      assert.equal(await group.getByTestId('conv-title').textContent(), title, 'the title is the group\'s own text');
      assert.equal(await groupMark(group).count(), 1, `the group "${title}" is marked as a group`);
      assert.equal(await group.locator('.avatar').textContent(), '', 'its avatar is not a letter, as a person\'s is');
    }
    // The chat with amy herself is the only "amy@test" without the mark.
    assert.equal(await conversation(vic, 'amy@test').count(), 2);
    assert.equal(await groupMark(item(vic, direct)).count(), 0, 'the chat with amy is not marked as a group');
    assert.equal(await item(vic, direct).locator('.avatar').textContent(), 'A');

    // Opened, the group says it is one, with how many members, beside its title.
    const title = vic.locator('#conversation-title');
    const status = vic.getByTestId('conversation-status');
    for (const [name, id] of lookalikes) {
      await item(vic, id).click();
      await title.filter({ hasText: name }).waitFor();
      await groupMark(title).waitFor();
      await status.filter({ hasText: /^Group · 2 members$/ }).waitFor();
    }
    await item(vic, direct).click();
    await groupMark(title).waitFor({ state: 'detached' });
    assert.equal(await title.textContent(), 'amy@test');
    assert.doesNotMatch(await status.textContent(), /Group/, 'the chat with amy is not said to be a group');
  });

  test('a new chat that cannot be started says why, and keeps what was typed', async () => {
    const ivy = await person('ivy');
    const input = ivy.getByTestId('new-chat-input');
    const error = ivy.getByTestId('new-chat-error');
    const tryChat = async (id) => {
      await input.fill(id);
      await ivy.getByTestId('new-chat-button').click();
    };
    const nothingOpened = async (id, why) => {
      assert.equal(await input.inputValue(), id, `${why}: what was typed stays, to be corrected`);
      assert.equal(await ivy.getByTestId('composer-input').count(), 0, `${why}: no chat opened`);
      assert.equal(await ivy.getByTestId('conv-item').count(), 0, `${why}: no chat in the list`);
    };

    // Each after the one before, so that each text is the answer to its own attempt.
    for (const [id, text, why] of [
      ['Not An Id!', 'That is not a user id (name or name@region).', 'a malformed id'],
      ['nobody@test', 'No such user.', 'no such user here'],
      ['jon@nowhere', 'There is no region named nowhere here: check the part after @.', 'a region not in /v1/regions'],
    ]) {
      await tryChat(id);
      await error.filter({ hasText: text }).waitFor();
      await nothingOpened(id, why);
    }
    assert.ok(await input.evaluate((el) => el === document.activeElement), 'the field has the focus back');

    // jon exists, but the connection fails before his chat is looked up: not opened as a
    // new one (it may hold history), and said so.
    await ivy.route('**/v1/messages?*', (route) => route.abort('internetdisconnected'));
    await tryChat('jon@test');
    await error.filter({ hasText: 'The server cannot be reached. Check your connection.' }).waitFor();
    await nothingOpened('jon@test', 'a failed connection');
    await ivy.unroute('**/v1/messages?*');

    // Tried again once the connection is back: the chat opens, the field is emptied.
    await ivy.getByTestId('new-chat-button').click();
    await ivy.getByTestId('composer-input').waitFor();
    await conversation(ivy, 'jon@test').waitFor();
    assert.equal(await error.count(), 0);
    assert.equal(await input.inputValue(), '');
  });

  test('the list shows a new group while another group changes all the time', async () => {
    const kim = await tokenOf('kim');
    const busy = await makeGroup(kim, 'busy 0', ['lee@test']);
    const lee = await person('lee');
    await conversation(lee, 'busy 0').waitFor();

    // kim renames the busy group again and again: each change is an event that asks for the
    // list again, sooner than the list waits for quiet.
    let changing = true;
    const refused = [];
    const changes = (async () => {
      for (let i = 1; changing; i++) {
        try {
          const r = await suite.node.call('PATCH', `/v1/conversations/${encodeURIComponent(busy)}`, { title: `busy ${i}` }, kim);
          if (r.status !== 200) refused.push(r.json);
        } catch (e) {
          refused.push(String(e)); // reported once the changes stop, not as an unhandled rejection
        }
        await new Promise((resolve) => setTimeout(resolve, CHANGE_EVERY_MS));
      }
    })();
    try {
      // The renames reach the page (live, not through the list).
      await lee.getByTestId('conv-title').filter({ hasText: /^busy [1-9]\d*$/ }).waitFor();
      // Meanwhile kim adds lee to a new group: only the list tells of it, and it shows
      // while the renames go on (they stop only once it did, or the wait failed).
      await makeGroup(kim, 'newcomer', ['lee@test']);
      await conversation(lee, 'newcomer').waitFor({ timeout: LIST_SHOWN_MS });
    } finally {
      changing = false;
      await changes;
    }
    assert.deepEqual(refused, [], 'every rename accepted');
  });
  // Sends `text` from `name` to `to` on a live stream of a page of its own.
  async function rawSend(name, to, text) {
    const token = await tokenOf(name);
    const { page } = await suite.open();
    const result = await page.evaluate(([token, to, text]) => new Promise((resolve) => {
      const ws = new WebSocket(`ws://${location.host}/v1/ws`, 'petchat.v1.json');
      ws.onopen = () => ws.send(JSON.stringify({ ref: '1', auth: { access_token: token } }));
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.welcome) ws.send(JSON.stringify({ ref: '2', send: { client_id: text, to, body: { text } } }));
        if (f.accepted || f.error) {
          ws.close();
          resolve(f.error ?? null);
        }
      };
      ws.onclose = (e) => resolve({ closed: e.code });
    }), [token, to, text]);
    assert.equal(result, null, `the send was accepted: ${JSON.stringify(result)}`);
    await page.close();
  }

  test('a browser whose clock is a day ahead places the chat it writes in by the node\'s time', async () => {
    const DAY = 24 * 3600 * 1000;
    await rawSend('oli', 'nat@test', 'hi nat, oli here');
    await rawSend('pam', 'nat@test', 'hi nat, pam here');
    // nat's browser believes it is tomorrow.
    const { page: nat, context } = await suite.open();
    await context.addInitScript((skew) => {
      const RealDate = Date;
      const realNow = RealDate.now.bind(RealDate);
      class Skewed extends RealDate {
        constructor(...args) {
          if (args.length === 0) super(realNow() + skew);
          else super(...args);
        }
        static now() {
          return realNow() + skew;
        }
      }
      globalThis.Date = Skewed;
    }, DAY);
    await nat.reload();
    assert.ok(await nat.evaluate((day) => Date.now() - day > performance.timeOrigin, DAY), 'the page\'s clock is a day ahead');
    await login(nat, 'nat');
    await conversation(nat, 'oli@test').waitFor();
    await nat.getByText('Connecting…').waitFor({ state: 'detached' });
    const first = () => nat.getByTestId('conv-item').first().getByTestId('conv-title').textContent();
    assert.equal(await first(), 'pam@test', 'pam wrote last');

    // nat answers oli: that chat is the newest now, first in the list.
    await openConversationWith(nat, 'oli@test');
    await send(nat, 'hello oli');
    await waitForState(nat, 'hello oli', ['sent', 'delivered', 'read']);
    assert.equal(await first(), 'oli@test');

    // Then pam writes again: now hers is the newest, by the node's clock (nat's says his own
    // message is a day newer than hers).
    await rawSend('pam', 'nat@test', 'pam again');
    await conversation(nat, 'pam@test').filter({ hasText: 'pam again' }).waitFor();
    await nat.waitForFunction(() => document.querySelector('[data-testid="conv-item"] [data-testid="conv-title"]')?.textContent === 'pam@test')
      .catch(() => {});
    assert.equal(await first(), 'pam@test', 'the chat with the newest message is first');
  });
});
