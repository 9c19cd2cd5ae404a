// The web client across regions: alice@europe and bob@america, each in a browser on their
// own region's node, federated through a real nats-server. Messages and ticks cross; while
// the link is cut a message shows "sent" (accepted by europe), never "delivered", and is
// delivered once the link is back. In a group across regions, a refused request and a name
// with no account are told on the page.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  NatsServer, bubble, conversation, federatedRegions, launchBrowser, openConversationWith, openPage, register,
  screenshot, send, startChat, waitForState,
} from './harness.mjs';

describe('the web client across regions', () => {
  let nats;
  let nodes;
  let browser;
  const pages = [];

  before(async () => {
    nats = await new NatsServer().start();
    nodes = await federatedRegions(['europe', 'america'], nats);
    browser = await launchBrowser();
  });

  after(async () => {
    for (const p of pages) assert.deepEqual(p.problems, [], 'no page errors, dialogs or CSP violations');
    await browser?.close();
    for (const n of Object.values(nodes ?? {})) await n.close();
    await nats?.close();
  });

  test('alice@europe and bob@america chat; a cut link shows sent, not delivered', async () => {
    const a = await openPage(browser, nodes.europe);
    const b = await openPage(browser, nodes.america);
    pages.push(a, b);
    await register(a.page, 'alice');
    await register(b.page, 'bob');
    await startChat(a.page, 'bob@america');
    await send(a.page, 'hello from europe');
    await openConversationWith(b.page, 'alice@europe');
    await bubble(b.page, 'hello from europe').waitFor();
    await waitForState(a.page, 'hello from europe', ['delivered', 'read']);
    await send(b.page, 'hello from america');
    await bubble(a.page, 'hello from america').waitFor();
    await screenshot(a.page, 'federation');

    await nats.stop();
    await send(a.page, 'while the link is down');
    await waitForState(a.page, 'while the link is down', ['sent']);
    await new Promise((r) => setTimeout(r, 3000)); // nothing can reach america meanwhile
    assert.equal(await bubble(a.page, 'while the link is down').getAttribute('data-state'), 'sent');
    assert.equal(await bubble(b.page, 'while the link is down').count(), 0);
    await screenshot(a.page, 'federation-cut');

    await nats.start();
    await bubble(b.page, 'while the link is down').waitFor({ timeout: 60000 });
    await waitForState(a.page, 'while the link is down', ['delivered', 'read'], 60000);
    assert.equal(await bubble(b.page, 'while the link is down').count(), 1);
  });

  test('a change the group\'s home region refuses is shown to the member of another region who asked', async () => {
    const o = await openPage(browser, nodes.europe);
    const p = await openPage(browser, nodes.america);
    pages.push(o, p);
    // What pete's page gets, in the order it gets it: the refusal on its stream and the
    // conversation list's answers (the refusal has the list fetched again).
    const seen = [];
    p.page.on('websocket', (ws) => ws.on('framereceived', (f) => {
      if (String(f.payload).includes('request_refused')) seen.push('refused');
    }));
    p.page.on('response', (r) => {
      if (new URL(r.url()).pathname === '/v1/conversations') seen.push('list');
    });
    await register(o.page, 'olga');
    await register(p.page, 'pete');
    await o.page.getByTestId('new-group-open').click();
    await o.page.getByTestId('group-title').fill('Across the sea');
    await o.page.getByTestId('group-members').fill('pete@america');
    await o.page.getByTestId('group-create').click();
    // Setting the scene through the API: olga (the owner, at home) makes pete an admin.
    const session = await nodes.europe.call('POST', '/v1/sessions',
      { name: 'olga', password: 'correct horse battery', device_name: 'scene' });
    const token = session.json.access_token;
    const list = await nodes.europe.call('GET', '/v1/conversations', null, token);
    const gid = list.json.conversations.find((c) => c.title === 'Across the sea').id;
    const made = await nodes.europe.call('PATCH', `/v1/conversations/${encodeURIComponent(gid)}/members/pete@america`,
      { role: 'admin' }, token);
    assert.equal(made.status, 200);

    // pete, in america, adds a user europe does not have: america sends the request on
    // (202), europe adds nobody, and pete's page says so.
    await conversation(p.page, 'Across the sea').click();
    await p.page.getByTestId('group-info-button').click();
    await p.page.getByTestId('add-member-input').fill('ghost@europe');
    await p.page.getByTestId('add-member-button').click();
    const notice = p.page.locator('.notice').filter({ hasText: 'ghost@europe' });
    await notice.waitFor();
    assert.match(await notice.textContent(), /Not added: ghost@europe/);
    // The list fetched after the refusal does not take the notice away (it did within
    // half a second): still shown for a second after that list arrived.
    const listAfterRefusal = () => seen.includes('refused') && seen.slice(seen.indexOf('refused')).includes('list');
    for (let i = 0; !listAfterRefusal(); i++) {
      assert.ok(i < 300, `no list fetched after the refusal: ${seen}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (let i = 0; i < 10; i++) {
      assert.equal(await notice.count(), 1, 'the notice went with the list fetched after it');
      await new Promise((r) => setTimeout(r, 100));
    }
    await screenshot(p.page, 'federation-request-refused');

    // olga, at home, adds a name america does not have: europe cannot check it and adds it;
    // america says it has no such account, europe removes it, and olga's page says why.
    await conversation(o.page, 'Across the sea').click();
    await o.page.getByTestId('group-info-button').click();
    await o.page.getByTestId('add-member-input').fill('ghost@america');
    await o.page.getByTestId('add-member-button').click();
    const removed = o.page.locator('.notice').filter({ hasText: 'ghost@america' });
    await removed.waitFor();
    // The title is set apart from the sentence (first strong isolate … pop directional
    // isolate): a right-to-left title cannot reorder the words around it.
    assert.match(await removed.textContent(), /Group “\u2068Across the sea\u2069”: ghost@america was removed \(their region has no such account\)/);
    const details = await nodes.europe.call('GET', `/v1/conversations/${encodeURIComponent(gid)}`, null, token);
    assert.deepEqual(details.json.members.map((m) => m.user_id).sort(), ['olga@europe', 'pete@america']);
    await screenshot(o.page, 'federation-no-account');
  });
});
