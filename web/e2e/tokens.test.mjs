// A long-open tab keeps working across many access-token lifetimes (6 s here): the page
// refreshes its token before it expires and hands the new one to its open live stream, so
// the stream is never dropped, messages still flow both ways and REST calls still answer.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Node, bubble, launchBrowser, openPage, register, send, startChat, openConversationWith } from './harness.mjs';

const TTL_S = 6;

describe('token refresh in a long-open tab', () => {
  let node;
  let browser;

  before(async () => {
    node = await new Node({ users: { access_token_ttl_s: TTL_S } }).start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await node?.close();
  });

  test('four token lifetimes later the same stream still carries messages', async () => {
    const a = await openPage(browser, node);
    const b = await openPage(browser, node);
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
    assert.deepEqual([...a.problems, ...b.problems], []);
  });
});
