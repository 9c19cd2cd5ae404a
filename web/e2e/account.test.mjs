// The account in the Devices panel (docs/PROTOCOL.md, "Sessions"): a person changes their
// password on one of their devices. A wrong current password shows the error and changes
// nothing; new passwords that differ are refused in the page, before anything is sent; the
// right change logs out the other device (its page shows the login form), and from then on
// only the new password logs in. Then "log out all other devices", asked in the page (no
// dialog), ends a third device and leaves the panel listing only the current one.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { browserSuite, login, register, screenshot } from './harness.mjs';

const OLD = 'correct horse battery';
const NEW = 'battery staple horse';

// How many devices the panel lists, and whether the only one is the current device.
const listed = (page) => page.evaluate(() => {
  const items = [...document.querySelectorAll('[data-testid="device"]')];
  return { count: items.length, current: items.map((d) => d.getAttribute('data-current')) };
});

async function waitForListed(page, count) {
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="device"]').length === n, count);
}

describe('the account in the devices panel', () => {
  const suite = browserSuite();

  test('a password change ends the other devices; so does "log out all other devices"', async () => {
    const { page: laptop } = await suite.open();
    const { page: phone } = await suite.open(undefined, { width: 390, height: 844 });
    await register(laptop, 'dana', OLD);
    await login(phone, 'dana', OLD);

    // Every password change the laptop's page asks the node for.
    const asked = [];
    laptop.on('request', (r) => {
      if (new URL(r.url()).pathname === '/v1/me/password') asked.push(r.method());
    });

    await laptop.getByTestId('devices-open').click();
    await waitForListed(laptop, 2);
    await laptop.getByTestId('password-open').click();
    const current = laptop.getByTestId('password-current');
    const fresh = laptop.getByTestId('password-new');
    const again = laptop.getByTestId('password-again');
    const error = laptop.getByTestId('password-error');
    assert.equal(await current.getAttribute('autocomplete'), 'current-password');
    assert.equal(await fresh.getAttribute('autocomplete'), 'new-password');
    assert.equal(await again.getAttribute('autocomplete'), 'new-password');

    // A wrong current password: the node's refusal is shown, and nothing changed.
    await current.fill('not the password');
    await fresh.fill(NEW);
    await again.fill(NEW);
    await laptop.getByTestId('password-submit').click();
    await error.waitFor();
    assert.equal(await error.getAttribute('data-code'), 'wrong_password');
    assert.equal(await current.getAttribute('aria-invalid'), 'true');
    assert.equal(await laptop.getByTestId('password-changed').count(), 0);
    assert.deepEqual(asked, ['POST']);
    const before = await suite.node.call('POST', '/v1/sessions', { name: 'dana', password: OLD, device_name: 'still the old password' });
    assert.equal(before.status, 201, 'the old password still logs in');
    // The phone is still logged in: its own list loads, with its token.
    await phone.getByTestId('devices-open').click();
    await phone.locator('[data-testid="device"][data-current="true"]').waitFor();
    assert.equal(await phone.getByTestId('login-username').count(), 0);

    // New passwords that differ: refused in the page, nothing sent.
    await current.fill(OLD);
    await fresh.fill(NEW);
    await again.fill(`${NEW}!`);
    await laptop.getByTestId('password-submit').click();
    await laptop.locator('[data-testid="password-error"][data-code="password_mismatch"]').waitFor();
    assert.equal(await again.getAttribute('aria-invalid'), 'true');
    assert.deepEqual(asked, ['POST'], 'no request for new passwords that differ');

    // The right change: said so, the fields cleared, this device still logged in.
    await again.fill(NEW);
    await laptop.getByTestId('password-submit').click();
    await laptop.getByTestId('password-changed').waitFor();
    assert.deepEqual(asked, ['POST', 'POST']);
    assert.equal(await error.count(), 0);
    for (const field of [current, fresh, again]) assert.equal(await field.inputValue(), '');
    await screenshot(laptop, 'password-changed');
    // The other device is logged out: its page shows the login form (its live stream was ended).
    await phone.getByTestId('login-username').waitFor({ timeout: 30000 });
    // So is the session made with the old password above, and the laptop's list is its own.
    const ended = await suite.node.call('GET', '/v1/sessions', undefined, before.json.access_token);
    assert.equal(ended.status, 401);
    await waitForListed(laptop, 1);
    assert.deepEqual(await listed(laptop), { count: 1, current: ['true'] });
    // Only the new password logs in.
    const old = await suite.node.call('POST', '/v1/sessions', { name: 'dana', password: OLD, device_name: 'the old password' });
    assert.equal(old.status, 401, JSON.stringify(old.json));
    assert.equal(old.json?.error?.code, 'invalid_credentials');
    await login(phone, 'dana', NEW);
    assert.equal(await laptop.getByTestId('login-username').count(), 0, 'the laptop stays logged in');

    // A third device; the laptop's panel, opened again, lists all three.
    const { page: tablet } = await suite.open();
    await login(tablet, 'dana', NEW);
    await laptop.getByTestId('devices-close').click();
    await laptop.getByTestId('devices-open').click();
    await waitForListed(laptop, 3);

    // The question is asked in the page; Cancel ends nothing.
    await laptop.getByTestId('devices-end-others').click();
    await laptop.getByTestId('devices-end-others-question').waitFor();
    await laptop.getByTestId('devices-end-others-cancel').click();
    await laptop.getByTestId('devices-end-others').waitFor();
    assert.equal(await laptop.getByTestId('devices-end-others-done').count(), 0);

    // Confirmed: both other devices are logged out, and the panel says how many.
    await laptop.getByTestId('devices-end-others').click();
    await laptop.getByTestId('devices-end-others-confirm').click();
    const done = laptop.getByTestId('devices-end-others-done');
    await done.waitFor();
    assert.equal(await done.getAttribute('data-ended'), '2');
    assert.match(await done.textContent(), /2/);
    await waitForListed(laptop, 1);
    assert.deepEqual(await listed(laptop), { count: 1, current: ['true'] });
    await screenshot(laptop, 'devices-others-ended');
    await tablet.getByTestId('login-username').waitFor({ timeout: 30000 });
    await phone.getByTestId('login-username').waitFor({ timeout: 30000 });
    assert.equal(await laptop.getByTestId('login-username').count(), 0, 'the laptop stays logged in');
  });
});
