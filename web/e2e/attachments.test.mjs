// Files in the web client, in a real browser against a real node: alice attaches a picture
// and a text file through the attach button's file input, bob sees the picture's thumbnail
// and the file's chip (its name only ever as text) and saves the file under its name with
// the right bytes; a file dropped onto the conversation is sent too; an upload the node
// refuses shows the node's message. The screenshot 'attachments' goes to build/web-artifacts/.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { crc32, deflateSync } from 'node:zlib';
import { describe, test } from 'node:test';
import {
  Node, browserSuite, bubble, login, openConversationWith, register, screenshot, send, startChat,
} from './harness.mjs';

// A valid 2×2 RGB PNG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);
const NOTES = Buffer.from('meeting notes\n<b>not bold</b> & <script>alert(1)</script>\n');
// PROTOCOL.md, "File names": only the last path component is kept ('/' ends one) and '<', '>'
// become '_'; so '<b>notes</b>.txt' is kept, shown and saved as 'b_.txt'.
const NOTES_NAME = '<b>notes</b>.txt';
const NOTES_KEPT = 'b_.txt';

describe('attachments in the web client', () => {
  const suite = browserSuite();

  const person = (node = suite.node, opts = undefined) => suite.open(node, opts);

  test('a picture and a file: uploaded with progress, shown to the other person, saved by name', async () => {
    const { page: alice } = await person();
    const { page: bob } = await person();
    await register(alice, 'alice');
    await register(bob, 'bob');
    await startChat(alice, 'bob@test');
    await send(alice, 'two files coming');
    await bubble(alice, 'two files coming').waitFor();

    // The attach button is a labelled button that the keyboard reaches.
    const attach = alice.getByTestId('attach-button');
    assert.ok(await attach.getAttribute('aria-label'), 'the attach button has a label');
    assert.equal(await attach.evaluate((el) => el.tagName), 'BUTTON');
    // The progress bar is there while the files go up (however briefly, for files this small).
    await alice.evaluate(() => {
      window.sawProgress = false;
      new MutationObserver(() => {
        if (document.querySelector('progress[data-testid="upload-progress"]')) window.sawProgress = true;
      }).observe(document.body, { childList: true, subtree: true });
    });
    await alice.getByTestId('attach-input').setInputFiles([
      { name: 'dot.png', mimeType: 'image/png', buffer: PNG },
      { name: NOTES_NAME, mimeType: 'text/plain', buffer: NOTES },
    ]);

    // bob: the picture's thumbnail is drawn, the file chip shows its name as text.
    await openConversationWith(bob, 'alice@test');
    const image = bob.getByTestId('attachment-image');
    await image.waitFor();
    await bob.waitForFunction(() => {
      const img = document.querySelector('[data-testid="attachment-image"]');
      return img && img.complete && img.naturalWidth > 0;
    });
    assert.equal(await image.getAttribute('alt'), 'dot.png');
    assert.match(await image.getAttribute('src'), /^blob:/, 'the picture is shown from a blob: URL');
    const chip = bob.getByTestId('attachment-file');
    await chip.waitFor();
    assert.equal(await chip.getByTestId('attachment-name').textContent(), NOTES_KEPT);
    assert.match(await chip.textContent(), new RegExp(`${NOTES.length} B`));
    const list = bob.getByTestId('message-list');
    assert.equal(await list.locator('b, script').count(), 0, 'no element came from a file name');
    // No token in any URL the page used for them.
    assert.ok(!(await bob.content()).includes('access_token'));

    // bob saves the file: its name and bytes, fetched by the browser's download manager
    // from a download link (not held whole in the page first).
    const [download] = await Promise.all([
      bob.waitForEvent('download'),
      chip.getByTestId('attachment-download').click(),
    ]);
    assert.equal(download.suggestedFilename(), NOTES_KEPT);
    assert.deepEqual(await readFile(await download.path()), NOTES);
    assert.match(download.url(), /\/v1\/assets\/[0-9a-f]{64}\?link=[^&]+&name=/);

    // alice sees her own message with both once it is stored; the upload bar is gone.
    await alice.locator('[data-testid="message"][data-message-id] [data-testid="attachment-image"]').waitFor();
    await alice.getByTestId('upload-progress').waitFor({ state: 'detached' });
    assert.equal(await alice.evaluate(() => window.sawProgress), true, 'a <progress> was shown');
    await screenshot(bob, 'attachments');
  });

  test('a picture too large to decode is a file, not an image the tab must decode', async () => {
    // 20,000 × 20,000 one-bit grey: 50 KB of PNG that would take 1.6 GB to draw. The node
    // makes no thumbnail of it (over assets.max_image_pixels) and keeps its bytes.
    const chunk = (type, data) => {
      const out = Buffer.alloc(12 + data.length);
      out.writeUInt32BE(data.length, 0);
      out.write(type, 4, 'ascii');
      data.copy(out, 8);
      out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
      return out;
    };
    const side = 20000;
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(side, 0);
    ihdr.writeUInt32BE(side, 4);
    ihdr[8] = 1; // bit depth; colour type 0 (grey), no interlace
    const rows = deflateSync(Buffer.alloc((1 + side / 8) * side), { level: 9 });
    const bomb = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr), chunk('IDAT', rows), chunk('IEND', Buffer.alloc(0)),
    ]);
    const { page: alice } = await person();
    const { page: bob } = await person();
    await login(alice, 'alice');
    await login(bob, 'bob');
    await openConversationWith(alice, 'bob@test');
    await alice.getByTestId('attach-input').setInputFiles([{ name: 'huge.png', mimeType: 'image/png', buffer: bomb }]);
    await openConversationWith(bob, 'alice@test');
    const chip = bob.getByTestId('attachment-file').filter({ hasText: 'huge.png' });
    await chip.waitFor();
    assert.equal(await bob.locator('[data-testid="attachment-image"][alt="huge.png"]').count(), 0,
      'the picture was handed to the browser to decode');
    // It can still be saved, byte for byte.
    const [download] = await Promise.all([bob.waitForEvent('download'), chip.getByTestId('attachment-download').click()]);
    assert.deepEqual(await readFile(await download.path()), bomb);
  });

  test('a file dropped onto the conversation is sent; its name is text', async () => {
    const { page: alice } = await person();
    const { page: bob } = await person();
    await login(alice, 'alice');
    await login(bob, 'bob');
    await openConversationWith(alice, 'bob@test');
    const name = 'R&amp;D plan.txt';
    const data = await alice.evaluateHandle((n) => {
      const dt = new DataTransfer();
      dt.items.add(new File(['plan: ship it\n'], n, { type: 'text/plain' }));
      return dt;
    }, name);
    const target = alice.getByTestId('message-list');
    await target.dispatchEvent('dragenter', { dataTransfer: data });
    await alice.getByTestId('drop-hint').waitFor();
    await target.dispatchEvent('dragover', { dataTransfer: data });
    await target.dispatchEvent('drop', { dataTransfer: data });
    await alice.getByTestId('drop-hint').waitFor({ state: 'detached' });
    await openConversationWith(bob, 'alice@test');
    const chip = bob.getByTestId('attachment-file').filter({ hasText: 'plan.txt' });
    await chip.waitFor();
    assert.equal(await chip.getByTestId('attachment-name').textContent(), name, 'shown as written, not as HTML');
  });

  test('files attached in a new chat are sent when its first text is accepted while they upload', async () => {
    // The draft of a new chat becomes its conversation when the first message is accepted:
    // an upload started in the draft once finished into nothing (no message, no error).
    const { page: alice } = await person();
    const { page: bob } = await person();
    await register(alice, 'fay');
    await register(bob, 'gus');
    await startChat(alice, 'gus@test');
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    await alice.route('**/v1/assets?*', async (route) => {
      await held; // the upload waits until the chat's first text has been accepted
      await route.continue();
    });
    await alice.getByTestId('attach-input').setInputFiles([
      { name: 'late.txt', mimeType: 'text/plain', buffer: Buffer.from('sent after the text') },
    ]);
    await alice.getByTestId('upload-progress').waitFor();
    await send(alice, 'a file follows');
    await bubble(alice, 'a file follows').locator('.ticks--sent, .ticks--delivered, .ticks--read').waitFor();
    // The upload's progress moved with the draft to the conversation, still running.
    await alice.getByTestId('upload-progress').waitFor();
    release();
    await openConversationWith(bob, 'fay@test');
    const chip = bob.getByTestId('attachment-file');
    await chip.waitFor();
    assert.equal(await chip.getByTestId('attachment-name').textContent(), 'late.txt');
    await alice.getByTestId('attachment-file').waitFor(); // alice sees it in the conversation too
    await alice.getByTestId('upload-progress').waitFor({ state: 'detached' });
    assert.equal(await alice.getByTestId('upload-error').count(), 0, 'no error');
  });

  test('an upload the node refuses shows its message, and nothing is sent', async () => {
    const small = await new Node({ extra: '[assets]\nmax_asset_bytes = 1024' }).start();
    try {
      assert.equal((await small.call('POST', '/v1/users', { name: 'erin', password: 'correct horse battery' })).status, 201);
      const { page } = await person(small);
      await register(page, 'dora');
      await startChat(page, 'erin@test');
      await page.getByTestId('attach-input').setInputFiles([
        { name: 'big.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(64 * 1024, 7) },
      ]);
      const error = page.getByTestId('upload-error');
      await error.waitFor();
      const text = await error.textContent();
      await screenshot(page, 'attachment-refused');
      assert.match(text, /big\.bin/);
      const answer = await small.call('POST', '/v1/sessions', { name: 'dora', password: 'correct horse battery', device_name: 'probe' });
      const r = await fetch(`${small.url}/v1/assets?name=x`, {
        method: 'POST', headers: { Authorization: `Bearer ${answer.json.access_token}` }, body: Buffer.alloc(64 * 1024, 7),
      });
      const refused = await r.json();
      assert.equal(refused.error.code, 'asset_too_large');
      assert.ok(text.includes(refused.error.message), `the node's message is shown: ${text}`);
      assert.equal(await page.getByTestId('message').count(), 0, 'no message was sent');
      await page.getByTestId('upload-dismiss').click();
      await error.waitFor({ state: 'detached' });
    } finally {
      await small.close();
    }
  });
});
