// A long-open tab keeps working across many access-token lifetimes (6 s here): the page
// refreshes its token before it expires and hands the new one to its open live stream, so
// the stream is never dropped, messages still flow both ways and REST calls still answer.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { browserSuite, bubble, login, openConversationWith, register, send, startChat } from './harness.mjs';

const TTL_S = 6;

describe('token refresh in a long-open tab', () => {
  const suite = browserSuite({ users: { access_token_ttl_s: TTL_S } });

  test('four token lifetimes later the same stream still carries messages', async () => {
    const a = await suite.open();
    const b = await suite.open();
    const sockets = [];
    a.page.on('websocket', (ws) => sockets.push(ws));
    await register(a.page, 'alice');
    await register(b.page, 'bob');
    await startChat(a.page, 'bob@test');
    await send(a.page, 'before the tokens expired');
    await openConversationWith(b.page, 'alice@test');
    await bubble(b.page, 'before the tokens expired').waitFor();
    const refreshes = [];
    a.page.on('request', (r) => r.url().endsWith('/v1/sessions/refresh') && refreshes.push(r));
    await new Promise((r) => setTimeout(r, 4 * TTL_S * 1000));
    assert.ok(refreshes.length >= 3, `the page refreshed its token (${refreshes.length} times)`);
    await send(b.page, 'after four lifetimes');
    await bubble(a.page, 'after four lifetimes').waitFor();
    await send(a.page, 'and back');
    await bubble(b.page, 'and back').waitFor();
    await a.page.getByTestId('devices-open').click();
    await a.page.getByTestId('device').first().waitFor();
    assert.equal(sockets.length, 1, 'one live stream all along: never dropped for an expired token');
    assert.equal(sockets[0].isClosed(), false);
  });

  test('two tabs without Web Locks (a plain-http page) share one session and keep it', async () => {
    // Two tabs of one browser profile: one localStorage, one refresh token. Without Web Locks
    // (only secure pages have them) the tabs take turns by a lease; if both presented the
    // same refresh token, the node would end the session (refresh_token_reused).
    const context = await suite.browser.newContext();
    await context.addInitScript(() => Object.defineProperty(navigator, 'locks', { value: undefined }));
    const tabs = [await context.newPage(), await context.newPage()];
    for (const tab of tabs) await tab.goto(suite.node.url + '/');
    await register(tabs[0], 'carol');
    await tabs[1].reload();
    await tabs[1].getByTestId('new-chat-input').waitFor(); // the same session, from localStorage
    const refreshes = [];
    for (const tab of tabs) tab.on('response', (r) => r.url().endsWith('/v1/sessions/refresh') && refreshes.push(r.status()));
    await new Promise((r) => setTimeout(r, 4 * TTL_S * 1000));
    assert.ok(refreshes.length >= 3, `the tabs refreshed (${refreshes.length} times)`);
    assert.deepEqual(refreshes.filter((s) => s !== 200), [], 'no refresh was refused (none reused a token)');
    for (const tab of tabs) assert.equal(await tab.getByTestId('login-username').count(), 0, 'both tabs still logged in');
    await startChat(tabs[1], 'alice@test');
    await send(tabs[1], 'from the second tab');
    await tabs[1].locator('[data-testid="message"][data-state]').filter({ hasText: 'from the second tab' })
      .and(tabs[1].locator(':not([data-state="sending"]):not([data-state="failed"])')).waitFor();
    await context.close();
  });
});

describe('tabs of one browser', () => {
  const suite = browserSuite();

  test('a tab whose stored session turns into another user\'s starts again as that user', async () => {
    // Two tabs share one localStorage. If the session stored there becomes another user's
    // (another tab logged in as someone else), a tab must not carry on with the first user's
    // state: its stream would resume the new user's mailbox from the old one's position.
    const context = await suite.browser.newContext();
    const tabs = [await context.newPage(), await context.newPage()];
    for (const tab of tabs) await tab.goto(suite.node.url + '/');
    await register(tabs[0], 'dave');
    await tabs[1].reload();
    await tabs[1].getByTestId('new-chat-input').waitFor();
    const password = 'correct horse battery';
    assert.equal((await suite.node.call('POST', '/v1/users', { name: 'erin', password })).status, 201);
    const made = await suite.node.call('POST', '/v1/sessions', { name: 'erin', password, device_name: 'elsewhere' });
    assert.equal(made.status, 201);
    const a = made.json;
    const now = Date.now();
    const erin = {
      user_id: a.user_id, device_id: a.device_id, access_token: a.access_token,
      access_expires_at: now + a.access_token_expires_in_s * 1000, access_lifetime_ms: a.access_token_expires_in_s * 1000,
      refresh_token: a.refresh_token, refresh_expires_at: now + a.refresh_token_expires_in_s * 1000,
    };
    await tabs[1].evaluate((t) => localStorage.setItem('petchat.session', JSON.stringify(t)), erin);
    await tabs[0].getByTestId('me').filter({ hasText: 'erin@' }).waitFor();
    assert.equal(await tabs[0].getByTestId('me').filter({ hasText: 'dave@' }).count(), 0);
    await context.close();
  });
});

describe('storage cleared', () => {
  const suite = browserSuite();

  test('a tab whose storage another tab cleared whole is logged out, and writes nothing back', async () => {
    const context = await suite.browser.newContext();
    const tabs = [await context.newPage(), await context.newPage()];
    for (const tab of tabs) await tab.goto(suite.node.url + '/');
    await register(tabs[0], 'fay');
    await tabs[1].reload();
    await tabs[1].getByTestId('new-chat-input').waitFor();
    await tabs[1].evaluate(() => localStorage.clear());
    await tabs[0].getByTestId('login-username').waitFor();
    assert.equal(await tabs[0].evaluate(() => localStorage.getItem('petchat.session')), null);
    await context.close();
  });
});

describe('a logout the node did not confirm', () => {
  const suite = browserSuite();

  test('says so on the login screen: the session may live on there', async () => {
    const { page } = await suite.open();
    await register(page, 'gus');
    await page.context().setOffline(true);
    await page.getByTestId('logout-button').click();
    await page.getByTestId('login-username').waitFor();
    await page.locator('.login__notice').filter({ hasText: 'did not confirm' }).waitFor();
    await page.context().setOffline(false);
  });
});

describe('a device that logged in before', () => {
  // A long lock after 5 wrong passwords, so that the test sees it hold.
  const suite = browserSuite({ users: { login_backoff_initial_ms: 600000 } });

  test('gets in while someone else\'s wrong passwords lock the account', async () => {
    const { page } = await suite.open();
    await register(page, 'kim');
    await page.getByTestId('logout-button').click();
    await page.getByTestId('login-username').waitFor();
    const attempt = (password) => suite.node.call('POST', '/v1/sessions', { name: 'kim', password, device_name: 'elsewhere' });
    for (let i = 0; i < 6; i++) assert.equal((await attempt('not her password')).status, 401);
    const elsewhere = await attempt('correct horse battery');
    assert.equal(elsewhere.status, 429, 'the account is locked against new devices');
    await login(page, 'kim'); // her browser still gets in
    assert.equal(await page.getByTestId('login-username').count(), 0);
  });
});
