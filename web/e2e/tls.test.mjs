// The web client from a node that speaks TLS itself (gateway.tls_cert_file): the page is
// served over https, its live stream runs over wss://, and two people chat.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  browserSuite, bubble, openConversationWith, register, send, startChat, waitForState,
} from './harness.mjs';

const certs = mkdtempSync(path.join(tmpdir(), 'petchat-e2e-tls-'));
const cert = path.join(certs, 'cert.pem');
const key = path.join(certs, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
  '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
{ stdio: 'ignore' });
chmodSync(key, 0o600); // a key every user may read is refused
after(() => rmSync(certs, { recursive: true, force: true }));

describe('the web client over TLS', () => {
  const suite = browserSuite({ gateway: { tls_cert_file: cert, tls_key_file: key } });

  test('the page comes over https and two people chat over wss://', async () => {
    assert.match(suite.node.url, /^https:\/\//);
    const { page: alice } = await suite.open();
    const { page: bob } = await suite.open();
    const streams = [];
    alice.on('websocket', (ws) => streams.push(ws.url()));
    assert.equal(await alice.evaluate(() => location.protocol), 'https:');
    await register(alice, 'alice');
    await register(bob, 'bob');
    await startChat(alice, 'bob@test');
    await send(alice, 'over TLS');
    await waitForState(alice, 'over TLS', ['delivered', 'read']);
    await openConversationWith(bob, 'alice@test');
    await bubble(bob, 'over TLS').waitFor();
    await send(bob, 'and back');
    await bubble(alice, 'and back').waitFor();
    assert.ok(streams.length > 0 && streams.every((u) => u.startsWith('wss://127.0.0.1:')), streams.join(' '));
  });
});
