// The web client in a real browser (Debian's chromium, headless) against a real node: two
// people chat and see ticks go sent → delivered → read, a reload shows nothing twice, a
// person who was away finds what was sent meanwhile, message text is only ever text (and
// markup assigned as a string throws: Trusted Types), a
// group of three, a wrong password, a node restart the page rides out. Screenshots of the
// main screens are written to build/web-artifacts/.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  browserSuite, bubble, conversation, login, openConversationWith, register, screenshot, send, startChat, waitForState,
} from './harness.mjs';

describe('the web client', () => {
  const suite = browserSuite();

  const person = (opts) => suite.open(suite.node, opts);

  test('two people chat; ticks go sent, delivered, read; replies arrive live', async () => {
    const { page: alice } = await person();
    const { page: bob } = await person();
    await screenshot(alice, 'login');
    await register(alice, 'alice');
    await register(bob, 'bob');
    await startChat(alice, 'bob@test');
    await send(alice, 'hello bob');
    await waitForState(alice, 'hello bob', ['delivered', 'read']);
    // bob's list shows the conversation with one unread message, then he opens it.
    const item = conversation(bob, 'alice@test');
    await item.getByTestId('unread-badge').filter({ hasText: '1' }).waitFor();
    await screenshot(bob, 'conversation-list');
    await item.click();
    await bubble(bob, 'hello bob').waitFor();
    await waitForState(alice, 'hello bob', ['read']);
    await send(bob, 'hi alice');
    await bubble(alice, 'hi alice').waitFor();
    await waitForState(bob, 'hi alice', ['delivered', 'read']);
    await screenshot(alice, 'conversation');
  });

  test('a reload shows every message once', async () => {
    const { page } = await person();
    await login(page, 'alice');
    await openConversationWith(page, 'bob@test');
    await bubble(page, 'hi alice').waitFor();
    await page.reload();
    await openConversationWith(page, 'bob@test');
    await bubble(page, 'hi alice').waitFor();
    assert.equal(await bubble(page, 'hello bob').count(), 1);
    assert.equal(await bubble(page, 'hi alice').count(), 1);
    await waitForState(page, 'hello bob', ['read']); // the state survives a reload
  });

  test('a person who was away finds what was sent meanwhile', async () => {
    const r = await suite.node.call('POST', '/v1/users', { name: 'carol', password: 'correct horse battery' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const { page: alice } = await person();
    await login(alice, 'alice');
    await startChat(alice, 'carol@test');
    for (const text of ['one while you were out', 'two while you were out']) {
      await send(alice, text);
      await waitForState(alice, text, ['sent']);
    }
    const { page: carol } = await person({ width: 390, height: 844 }); // a phone
    await login(carol, 'carol');
    const item = conversation(carol, 'alice@test');
    await item.getByTestId('unread-badge').filter({ hasText: '2' }).waitFor();
    await screenshot(carol, 'phone-list');
    await item.click();
    await bubble(carol, 'two while you were out').waitFor();
    assert.equal(await bubble(carol, 'one while you were out').count(), 1);
    await waitForState(alice, 'two while you were out', ['delivered', 'read']);
    await screenshot(carol, 'phone-conversation');
  });

  test('message text is shown as text, never as HTML', async () => {
    const { page: alice } = await person();
    const { page: bob } = await person();
    await login(alice, 'alice');
    await login(bob, 'bob');
    await openConversationWith(alice, 'bob@test');
    const hostile = ['<img src=x onerror=alert(1)>', '<script>alert(2)</script>', '<b>not bold</b>'];
    for (const text of hostile) await send(alice, text);
    await openConversationWith(bob, 'alice@test');
    for (const text of hostile) await bubble(bob, text).waitFor();
    const list = bob.getByTestId('message-list');
    assert.equal(await list.locator('img, script, b').count(), 0, 'no element came from a message body');
    assert.equal(await bubble(bob, '<b>not bold</b>').locator('.msg__text').textContent(), '<b>not bold</b>');
  });

  test('the page refuses markup assigned as a string (Trusted Types)', async () => {
    // A page of its own, outside the suite's checks: the refusal below is logged as a violation.
    const context = await suite.browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(suite.node.url + '/');
      const outcome = await page.evaluate(() => {
        try {
          document.createElement('div').innerHTML = '<img src=x onerror=alert(1)>';
          return 'assigned';
        } catch (e) {
          return e.name;
        }
      });
      assert.equal(outcome, 'TypeError', 'a string reaching innerHTML must throw');
      const made = await page.evaluate(() => {
        try {
          trustedTypes.createPolicy('other', { createHTML: (s) => s });
          return 'made';
        } catch (e) {
          return e.name;
        }
      });
      assert.notEqual(made, 'made', 'no policy but the client\'s own may be made');
    } finally {
      await context.close();
    }
  });

  test('a group of three: created in the page, messages reach every member', async () => {
    const { page: alice } = await person();
    const { page: bob } = await person();
    const { page: carol } = await person();
    await login(alice, 'alice');
    await login(bob, 'bob');
    await login(carol, 'carol');
    await alice.getByTestId('new-group-open').click();
    await alice.getByTestId('group-title').fill('Weekend plans');
    await alice.getByTestId('group-members').fill('bob@test, carol@test');
    await alice.getByTestId('group-create').click();
    await alice.getByTestId('composer-input').waitFor();
    await send(alice, 'who is in for Saturday?');
    for (const p of [bob, carol]) {
      await openConversationWith(p, 'Weekend plans');
      await bubble(p, 'who is in for Saturday?').waitFor();
    }
    await send(bob, 'me');
    await bubble(alice, 'me').waitFor();
    await bubble(carol, 'me').waitFor();
    await waitForState(alice, 'who is in for Saturday?', ['read']);
    await screenshot(alice, 'group');
  });

  test('a wrong password shows the API\'s error', async () => {
    const { page } = await person();
    await page.getByTestId('login-username').fill('alice');
    await page.getByTestId('login-password').fill('not the password');
    await page.getByTestId('login-button').click();
    const error = page.getByTestId('login-error');
    await error.waitFor();
    assert.equal(await error.getAttribute('data-code'), 'invalid_credentials');
    await screenshot(page, 'login-error');
  });

  test('a person sees their devices and logs one out from another', async () => {
    const { page: phone } = await person({ width: 390, height: 844 });
    const { page: laptop } = await person();
    await login(phone, 'bob');
    await login(laptop, 'bob');
    // A session named to pass for this device: the marker is a badge of its own, on one row.
    const spoof = 'petchat web (Linux x86_64) · this device';
    const made = await suite.node.call('POST', '/v1/sessions', { name: 'bob', password: 'correct horse battery', device_name: spoof });
    assert.equal(made.status, 201);
    await laptop.getByTestId('devices-open').click();
    // The phone's device id, as the page keeps it (the session in localStorage).
    const phoneDevice = await phone.evaluate(() => JSON.parse(localStorage.getItem('petchat.session')).device_id);
    const item = laptop.locator(`[data-testid="device"][data-device-id="${phoneDevice}"]`);
    await item.waitFor(); // the list is loaded
    await laptop.locator('[data-testid="device"][data-current="true"]').waitFor();
    assert.equal(await laptop.locator('[data-testid="device"][data-current="true"]').count(), 1);
    assert.equal(await item.getAttribute('data-current'), 'false');
    const spoofed = laptop.locator(`[data-testid="device"][data-device-id="${made.json.device_id}"]`);
    await spoofed.waitFor();
    assert.equal(await laptop.getByTestId('device-current').count(), 1, 'one "this device" badge');
    assert.equal(await spoofed.getByTestId('device-current').count(), 0, 'none on the device named as this one');
    assert.equal(
      await laptop.locator('[data-testid="device"][data-current="true"]').getByTestId('device-current').count(), 1);
    await screenshot(laptop, 'devices');
    await item.getByTestId('device-end').click();
    await item.waitFor({ state: 'detached' });
    // The phone learns it was logged out (its live stream is ended) and shows the login form.
    await phone.getByTestId('login-username').waitFor({ timeout: 30000 });
  });

  test('the page rides out a node restart: it reconnects and nothing is lost or doubled', async () => {
    const { page: alice } = await person();
    const { page: bob } = await person();
    await login(alice, 'alice');
    await login(bob, 'bob');
    await openConversationWith(alice, 'bob@test');
    await openConversationWith(bob, 'alice@test');
    await suite.node.stop();
    await send(alice, 'sent while the node was down');
    await suite.node.start();
    await bubble(bob, 'sent while the node was down').waitFor({ timeout: 60000 });
    await waitForState(alice, 'sent while the node was down', ['delivered', 'read']);
    await send(bob, 'and after it came back');
    await bubble(alice, 'and after it came back').waitFor();
    assert.equal(await bubble(bob, 'sent while the node was down').count(), 1);
    assert.equal(await bubble(alice, 'sent while the node was down').count(), 1);
  });
});
