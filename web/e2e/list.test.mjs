// The conversation list of a user in more conversations than one page of the list holds:
// the node ends a page at about 1 MiB of JSON (docs/PROTOCOL.md), so with large last
// messages the first page holds about 50 of the 60 groups here. The page reads every page:
// each conversation is in the list, the oldest too.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, conversation, login } from './harness.mjs';

const GROUPS = 60;
const title = (i) => `large ${String(i).padStart(2, '0')}`;

describe('a conversation list longer than a page', () => {
  const suite = browserSuite({ extra: '[messages]\nmax_per_second = 1000' });

  before(async () => {
    for (const name of ['ann', 'bob']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: 'correct horse battery' });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  test('every conversation is listed, those past the first page too', async () => {
    const session = await suite.node.call('POST', '/v1/sessions', {
      name: 'bob', password: 'correct horse battery', device_name: 'raw',
    });
    assert.equal(session.status, 201, JSON.stringify(session.json));
    const token = session.json.access_token;
    const ids = [];
    for (let i = 0; i < GROUPS; i++) {
      const r = await suite.node.call('POST', '/v1/conversations', { title: title(i), members: ['ann@test'] }, token);
      assert.equal(r.status, 201, JSON.stringify(r.json));
      ids.push(r.json.conversation.id);
    }
    // One large message in each group, in the order they were made (4,000 characters of
    // text and 16,000 of content), from a live stream of bob's in a page of its own.
    const { page: raw } = await suite.open();
    const errors = await raw.evaluate(([token, ids]) => new Promise((resolve) => {
      const ws = new WebSocket(`ws://${location.host}/v1/ws`, 'petchat.v1.json');
      const errors = [];
      let accepted = 0;
      ws.onopen = () => ws.send(JSON.stringify({ ref: '1', auth: { access_token: token } }));
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.welcome) {
          ids.forEach((id, i) => ws.send(JSON.stringify({
            ref: String(i + 2),
            send: { client_id: `large-${i}`, conversation_id: id, body: { text: `${i} ${'x'.repeat(4000)}`, content: { filler: 'y'.repeat(16000) } } },
          })));
        }
        if (f.accepted && ++accepted === ids.length) resolve(errors);
        if (f.error) resolve([...errors, f.error]);
      };
      ws.onclose = (e) => resolve([...errors, { closed: e.code }]);
    }), [token, ids]);
    assert.deepEqual(errors, [], 'every send accepted');

    const { page } = await suite.open();
    await login(page, 'ann');
    await conversation(page, title(GROUPS - 1)).waitFor();
    await conversation(page, title(0)).waitFor(); // the oldest activity: on the last page
    assert.equal(await page.getByTestId('conv-item').count(), GROUPS);
  });
});
