// Sending files: the composer's picks and drops are uploaded one after another (one request
// each, with progress), then sent as one message per messages.max_attachments files. The
// send itself is chat.send's: its client_id makes a retry idempotent, and an upload of the
// same bytes again is the same asset.
import type { ApiError } from './api';
import { attachmentOf, upload } from './assets';
import * as chat from './chat';
import { isolate } from './format';
import { errorText, t } from './i18n';
import * as session from './session';
import { setState, type UploadState } from './store';
import type { WireAttachment } from './wire';

const MAX_ATTACHMENTS = 10; // messages.max_attachments, the node's default

const running = new Map<string, AbortController>(); // by conversation

// The session ended: its uploads stop, and nothing of them is sent in the next one's name
// (a 1:1 conversation has the same id for both people in it).
session.onTokens((tokens) => {
  if (tokens) return;
  for (const ctl of running.values()) ctl.abort();
});

// Shown in the conversation the upload's draft became, if it did meanwhile.
function show(id: string, upload: UploadState | null): void {
  const now = chat.resolveId(id) ?? id;
  setState((s) => {
    const uploads = { ...s.uploads };
    if (now !== id) delete uploads[id];
    if (upload) uploads[now] = upload;
    else delete uploads[now];
    return { uploads };
  });
}

// The upload running in conversation `id`: started there, or in the draft it came from.
function runningIn(id: string): AbortController | undefined {
  for (const [started, ctl] of running) if (started === id || chat.resolveId(started) === id) return ctl;
  return undefined;
}

export const uploading = (id: string): boolean => runningIn(id) !== undefined;

export function attach(id: string, files: File[]): void {
  if (files.length === 0 || uploading(id)) return;
  const empty = files.find((f) => f.size === 0);
  if (empty) return show(id, { names: isolate(empty.name), loaded: 0, total: 0, error: t.emptyFile(isolate(empty.name)) });
  void run(id, files);
}

export function cancel(id: string): void {
  runningIn(id)?.abort();
}

export const dismiss = (id: string): void => {
  if (!uploading(id)) show(id, null);
};

async function run(id: string, files: File[]): Promise<void> {
  const ctl = new AbortController();
  const of = session.generationNow();
  running.set(id, ctl);
  const names = files.map((f) => isolate(f.name)).join(', ');
  const total = files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  let lastShown = 0;
  show(id, { names, loaded: 0, total, error: '' });
  const attachments: WireAttachment[] = [];
  try {
    for (const file of files) {
      const asset = await upload(file, (sent) => {
        // At most a few re-renders a second.
        const now = Date.now();
        if (now - lastShown < 100) return;
        lastShown = now;
        show(id, { names, loaded: done + Math.min(sent, file.size), total, error: '' });
      }, ctl.signal);
      done += file.size;
      attachments.push(attachmentOf(asset));
      show(id, { names, loaded: done, total, error: '' });
    }
    if (ctl.signal.aborted || session.generationNow() !== of) return;
    const target = chat.resolveId(id);
    if (!target) throw Object.assign(new Error('the conversation is gone'), { code: 'conversation_not_found' });
    for (let i = 0; i < attachments.length; i += MAX_ATTACHMENTS) {
      chat.send(target, '', attachments.slice(i, i + MAX_ATTACHMENTS));
    }
    show(id, null);
  } catch (err) {
    const e = err as ApiError;
    if (session.generationNow() !== of) return; // logged out meanwhile: nothing to show
    if (e.code === 'aborted') show(id, null);
    else show(id, { names, loaded: 0, total: 0, error: t.uploadFailed(names, errorText(e.code ?? 'network', e.message, e.retry_after)) });
  } finally {
    running.delete(id);
  }
}
