// Receipts per member in a group (docs/PROTOCOL.md, "Receipts in groups"): alice's message
// says how many of the group read it; its ticks are a button (keyboard too) that lists each
// member with delivery and read times; after a reload every own message shown gets its
// state back, an older one too, each fetched once; the list follows receipt events live. A
// message deleted for everyone (from another device) while its list is open: the panel says
// so, shows nothing of it any more, and its receipts are not asked for again.
// Screenshots 'group-receipts' and 'group-receipts-phone' go to build/web-artifacts/.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, bubble, login, openConversationWith, screenshot, send, waitForState } from './harness.mjs';

const GROUP = 'Trip planning';
const OLDER = 'train or bus on Friday?';
const NEWER = ['I can book the tickets', 'the 9:40 has seats', 'back on Sunday evening', 'who brings the map?'];
const NEWEST = NEWER[NEWER.length - 1];

describe('receipts per member in groups', () => {
  const suite = browserSuite();

  before(async () => {
    for (const name of ['alice', 'bob', 'carol']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: 'correct horse battery' });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  async function person(name, opts) {
    const p = await suite.open(suite.node, opts);
    await login(p.page, name);
    return p.page;
  }

  const receiptsButton = (page, text) => bubble(page, text).getByTestId('receipts-button');
  const waitForLabel = (page, text, label) =>
    bubble(page, text).locator(`[data-testid="receipts-button"][title="${label}"]`).waitFor();
  const row = (page, user) => page.locator(`[data-testid="receipt-member"][data-user-id="${user}"]`);

  const focusOn = (page, testid) => page.waitForFunction((id) => document.activeElement?.dataset.testid === id, testid);

  // Waits until the open list shows `user` as delivered/read as given.
  async function waitForRow(page, user, { delivered, read }) {
    await page.locator(`[data-testid="receipt-member"][data-user-id="${user}"][data-delivered="${delivered}"][data-read="${read}"]`)
      .waitFor();
  }

  test('a group message says who read it; the list is right after a reload and follows live receipts', async () => {
    const alice = await person('alice');
    const bob = await person('bob');
    const carol = await person('carol'); // stays on her chat list: her device gets, she does not read
    await alice.getByTestId('new-group-open').click();
    await alice.getByTestId('group-title').fill(GROUP);
    await alice.getByTestId('group-members').fill('bob@test, carol@test');
    await alice.getByTestId('group-create').click();
    await alice.getByTestId('composer-input').waitFor();
    await send(alice, OLDER);
    await openConversationWith(bob, GROUP); // bob reads everything as it comes
    await bubble(bob, OLDER).waitFor();
    for (const text of NEWER) await send(alice, text);
    await bubble(bob, NEWEST).waitFor();
    for (const text of [OLDER, NEWEST]) await waitForLabel(alice, text, 'Read by 1 of 2');

    // The list for the older message: bob read it, carol has it but has not read it.
    await receiptsButton(alice, OLDER).click();
    const panel = alice.getByTestId('receipts-panel');
    await panel.waitFor();
    await waitForRow(alice, 'bob@test', { delivered: true, read: true });
    await waitForRow(alice, 'carol@test', { delivered: true, read: false });
    assert.match(await row(alice, 'bob@test').textContent(), /Read \d/);
    assert.match(await row(alice, 'carol@test').textContent(), /Delivered \d/);
    assert.doesNotMatch(await row(alice, 'carol@test').textContent(), /Read/);
    assert.equal(await alice.getByTestId('receipts-summary').textContent(), 'Read by 1 of 2');
    await screenshot(alice, 'group-receipts');

    // By keyboard: Escape closes the list and the focus goes back to the message's button,
    // Enter opens it again with the focus inside.
    await alice.keyboard.press('Escape');
    await panel.waitFor({ state: 'detached' });
    await focusOn(alice, 'receipts-button');
    assert.ok(await receiptsButton(alice, OLDER).evaluate((el) => el === document.activeElement), 'the button of that message');
    assert.match(await receiptsButton(alice, OLDER).getAttribute('aria-label'), /^Read by 1 of 2\. Show who has read it$/);
    assert.equal(await receiptsButton(alice, OLDER).getAttribute('aria-expanded'), 'false');
    await alice.keyboard.press('Enter');
    await focusOn(alice, 'receipts-close');
    assert.equal(await receiptsButton(alice, OLDER).getAttribute('aria-expanded'), 'true');
    await alice.getByTestId('receipts-close').click();

    // After a reload: every own message shown gets its state back (not only the newest few),
    // each message's receipts fetched once.
    const fetched = [];
    alice.on('request', (r) => /\/v1\/messages\/[^/]+\/receipts$/.test(new URL(r.url()).pathname) && fetched.push(r.url()));
    await alice.reload();
    await openConversationWith(alice, GROUP);
    for (const text of [OLDER, ...NEWER]) await waitForLabel(alice, text, 'Read by 1 of 2');
    assert.equal(new Set(fetched).size, fetched.length, 'no message\'s receipts fetched twice');
    assert.ok(fetched.length <= 1 + NEWER.length, `only own messages' receipts were fetched (${fetched.length})`);
    await receiptsButton(alice, OLDER).click();
    await waitForRow(alice, 'bob@test', { delivered: true, read: true });
    await waitForRow(alice, 'carol@test', { delivered: true, read: false });

    // The same on a phone, where the list takes the place of the messages.
    const phone = await person('alice', { width: 390, height: 844 });
    await openConversationWith(phone, GROUP);
    await waitForLabel(phone, OLDER, 'Read by 1 of 2');
    await receiptsButton(phone, OLDER).click();
    await waitForRow(phone, 'carol@test', { delivered: true, read: false });
    await screenshot(phone, 'group-receipts-phone');
    await phone.getByTestId('receipts-close').click();
    await bubble(phone, OLDER).waitFor();

    // carol reads (the node sends a READ for the newest message only): alice's open list of
    // the older message follows, and so do both messages' ticks.
    await openConversationWith(carol, GROUP);
    await waitForRow(alice, 'carol@test', { delivered: true, read: true });
    assert.equal(await alice.getByTestId('receipts-summary').textContent(), 'Read by 2 of 2');
    for (const text of [OLDER, NEWEST]) await waitForLabel(alice, text, 'Read by 2 of 2');
    await waitForState(alice, OLDER, ['read']);
  });
  test('the list of a message deleted for everyone says so, and is not asked for again', async () => {
    const TEXT = 'meet at the station';
    const alice = await person('alice');
    await alice.getByTestId('new-group-open').click();
    await alice.getByTestId('group-title').fill('Soon gone');
    await alice.getByTestId('group-members').fill('bob@test, carol@test');
    await alice.getByTestId('group-create').click();
    await alice.getByTestId('composer-input').waitFor();
    await send(alice, TEXT);
    await waitForState(alice, TEXT, ['sent', 'delivered', 'read']);
    const id = await bubble(alice, TEXT).getAttribute('data-message-id');
    assert.ok(id, 'the message has its id');

    await receiptsButton(alice, TEXT).click();
    await alice.getByTestId('receipts-panel').waitFor();
    await alice.locator('[data-testid="receipt-member"]').nth(1).waitFor();
    await focusOn(alice, 'receipts-close');

    // Its receipts asked for once the page knows it was deleted.
    const asked = [];
    let known = false;
    alice.on('request', (r) => known && new URL(r.url()).pathname === `/v1/messages/${encodeURIComponent(id)}/receipts` && asked.push(r.url()));
    // alice deletes it for everyone on her phone.
    const session = await suite.node.call('POST', '/v1/sessions', { name: 'alice', password: 'correct horse battery', device_name: 'phone' });
    assert.equal(session.status, 201, JSON.stringify(session.json));
    const deleted = await suite.node.call('DELETE', `/v1/messages/${encodeURIComponent(id)}?for=everyone`, undefined, session.json.access_token);
    assert.equal(deleted.status, 204, JSON.stringify(deleted.json));

    // The page: the message is gone, and its list says it was deleted, with nothing of it.
    await bubble(alice, TEXT).waitFor({ state: 'detached' });
    known = true;
    const panel = alice.getByTestId('receipts-panel');
    await panel.getByTestId('receipts-deleted').waitFor();
    assert.match(await panel.getByTestId('receipts-deleted').textContent(), /deleted/);
    assert.equal(await panel.getByTestId('receipt-member').count(), 0, 'no receipts of a deleted message');
    assert.doesNotMatch(await panel.textContent(), /meet at the station/, 'nothing of its text');
    await focusOn(alice, 'receipts-close'); // the focus stayed in the panel
    await alice.waitForTimeout(3000);
    assert.deepEqual(asked, [], 'its receipts are not asked for again');

    // Closed, the focus goes to the messages (the message's button went with it).
    await alice.keyboard.press('Escape');
    await panel.waitFor({ state: 'detached' });
    await focusOn(alice, 'message-list');
    assert.deepEqual(asked, []);
  });
});
