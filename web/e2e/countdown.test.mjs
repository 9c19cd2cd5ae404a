// A rate limit's wait, counted down (components/countdown.ts): wrong passwords lock further
// attempts for a while (docs/PROTOCOL.md, "Login rate limit"; a password change's wrong
// current passwords likewise, on a count of their own). The login form and the password
// change then say how many seconds are left, count them down second by second with the
// button disabled (Enter sends nothing either), and take attempts again once the wait is
// over: the right password then logs in, the right change is made.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { browserSuite, login } from './harness.mjs';

const PASSWORD = 'correct horse battery';
const NEW_PASSWORD = 'battery staple horse';
// One wrong password is free; the next locks the account for 5 s (then 10 s, …).
const BACKOFF_MS = 5000;

describe('a rate limit\'s wait, counted down', () => {
  const suite = browserSuite({ users: { login_free_attempts: 1, login_backoff_initial_ms: BACKOFF_MS } });

  before(async () => {
    for (const name of ['kit', 'lou']) {
      const r = await suite.node.call('POST', '/v1/users', { name, password: PASSWORD });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    }
  });

  // The next answer the page gets to a POST to `pathname`.
  const answered = (page, pathname) =>
    page.waitForResponse((r) => new URL(r.url()).pathname === pathname && r.request().method() === 'POST');

  // Follows the wait `error` shows until it is over (its text no longer names one, and
  // `button` takes clicks again); returns the seconds it showed, in order, each once.
  async function countdown(page, error, button) {
    const shown = [];
    const deadline = Date.now() + BACKOFF_MS + 10000;
    for (;;) {
      const { text, disabled } = await page.evaluate(([e, b]) => ({
        text: document.querySelector(`[data-testid="${e}"]`)?.textContent ?? '',
        disabled: document.querySelector(`[data-testid="${b}"]`)?.disabled ?? null,
      }), [error, button]);
      const wait = /Try again in (\d+) s\./.exec(text);
      if (!wait) {
        assert.equal(disabled, false, 'the button takes clicks again once the wait is over');
        assert.match(text, /^Too many attempts\.$/, 'the reason stays, without a wait');
        return shown;
      }
      assert.equal(disabled, true, `the button is disabled while the wait lasts (${text})`);
      const seconds = Number(wait[1]);
      if (shown[shown.length - 1] !== seconds) shown.push(seconds);
      assert.ok(Date.now() < deadline, `the wait is over in time (${shown})`);
      await page.waitForTimeout(100);
    }
  }

  // The seconds shown: from at most the back-off down, one at a time (a busy machine may
  // skip one), to 1.
  function countedDown(shown) {
    assert.ok(shown.length >= 2, `the wait was counted down, not shown once (${shown})`);
    assert.ok(shown[0] <= BACKOFF_MS / 1000 && shown[0] >= 2, `it started at the node's wait (${shown})`);
    for (let i = 1; i < shown.length; i++) assert.ok(shown[i] < shown[i - 1], `it only went down (${shown})`);
    assert.equal(shown[shown.length - 1], 1, `it went down to 1 s (${shown})`);
  }

  test('the login form counts the lock down, then logs in', async () => {
    const { page } = await suite.open();
    const sent = [];
    page.on('request', (r) => new URL(r.url()).pathname === '/v1/sessions' && r.method() === 'POST' && sent.push(r.url()));
    const error = page.getByTestId('login-error');
    await page.getByTestId('login-username').fill('kit');
    await page.getByTestId('login-password').fill('not the password');
    // The free wrong password, then the one that locks the account: each refused as wrong.
    for (let i = 0; i < 2; i++) {
      const answer = answered(page, '/v1/sessions');
      await page.getByTestId('login-button').click();
      assert.equal((await answer).status(), 401, `wrong password #${i + 1}`);
      await page.locator('[data-testid="login-error"][data-code="invalid_credentials"]').waitFor();
      await page.waitForFunction(() => !document.querySelector('[data-testid="login-button"]').disabled);
    }
    // Locked: even the right password now waits, and the form says for how long.
    await page.getByTestId('login-password').fill(PASSWORD);
    const locked = answered(page, '/v1/sessions');
    await page.getByTestId('login-button').click();
    assert.equal((await locked).status(), 429);
    await page.locator('[data-testid="login-error"][data-code="rate_limited"]').waitFor();
    assert.match(await error.textContent(), /^Too many attempts\. Try again in [1-5] s\.$/);
    assert.equal(await page.getByTestId('login-button').isDisabled(), true);
    // Enter in the form sends nothing while the wait lasts.
    const before = sent.length;
    await page.getByTestId('login-password').press('Enter');
    await page.waitForTimeout(300);
    assert.equal(sent.length, before, 'no login sent during the wait');

    countedDown(await countdown(page, 'login-error', 'login-button'));
    assert.equal(sent.length, before, 'nor while it was counted down');
    // The wait is over: the right password logs in.
    await page.getByTestId('login-button').click();
    await page.getByTestId('new-chat-input').waitFor();
  });

  test('the password change counts its lock down, then changes the password', async () => {
    const { page } = await suite.open();
    await login(page, 'lou');
    const sent = [];
    page.on('request', (r) => new URL(r.url()).pathname === '/v1/me/password' && sent.push(r.method()));
    await page.getByTestId('devices-open').click();
    await page.getByTestId('password-open').click();
    const error = page.getByTestId('password-error');
    const submit = page.getByTestId('password-submit');
    await page.getByTestId('password-current').fill('not the password');
    await page.getByTestId('password-new').fill(NEW_PASSWORD);
    await page.getByTestId('password-again').fill(NEW_PASSWORD);
    for (let i = 0; i < 2; i++) {
      const answer = answered(page, '/v1/me/password');
      await submit.click();
      assert.notEqual((await answer).status(), 429, `wrong current password #${i + 1}: refused as wrong`);
      // (wrong_password since the node answers it 403; invalid_credentials before)
      await page.locator('[data-testid="password-error"]:is([data-code="wrong_password"], [data-code="invalid_credentials"])').waitFor();
      await page.waitForFunction(() => !document.querySelector('[data-testid="password-submit"]').disabled);
    }
    const locked = answered(page, '/v1/me/password');
    await submit.click();
    assert.equal((await locked).status(), 429);
    await page.locator('[data-testid="password-error"][data-code="rate_limited"]').waitFor();
    assert.match(await error.textContent(), /^Too many attempts\. Try again in [1-5] s\.$/);
    assert.equal(await submit.isDisabled(), true);
    const before = sent.length;
    assert.equal(before, 3);
    // The right current password, entered meanwhile and sent by Enter: not sent during the wait.
    await page.getByTestId('password-current').fill(PASSWORD);
    await page.getByTestId('password-again').press('Enter');
    await page.waitForTimeout(300);
    assert.equal(sent.length, before, 'no change sent during the wait');

    countedDown(await countdown(page, 'password-error', 'password-submit'));
    assert.equal(sent.length, before, 'nor while it was counted down');
    await submit.click();
    await page.getByTestId('password-changed').waitFor();
    const old = await suite.node.call('POST', '/v1/sessions', { name: 'lou', password: NEW_PASSWORD, device_name: 'check' });
    assert.equal(old.status, 201, 'the new password logs in');
  });
});
