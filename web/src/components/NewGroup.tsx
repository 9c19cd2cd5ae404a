import { useState } from 'preact/hooks';
import { ApiError } from '../api';
import * as chat from '../chat';
import { errorText, t } from '../i18n';
import { newClientId } from '../ids';

const TITLE_MAX_BYTES = 128; // the node counts UTF-8 bytes, not characters (PROTOCOL.md)

// The client_id of the last create that got no answer (a lost connection), with what it
// asked for: the same group asked for again (this form or a new one) reuses it, so the node
// makes no second group if the first got through; any other gets a new one.
let unanswered: { key: string; id: string } | null = null;
function clientIdFor(title: string, members: string[]): string {
  const key = JSON.stringify([title, members]);
  if (unanswered?.key !== key) unanswered = { key, id: newClientId() };
  return unanswered.id;
}

export function NewGroup({ onClose }: { onClose: () => void }) {
  const [title, setTitle] = useState('');
  const [members, setMembers] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  async function submit(e: Event) {
    e.preventDefault();
    if (busy || !title.trim()) return;
    const bytes = new TextEncoder().encode(title.trim()).length;
    if (bytes > TITLE_MAX_BYTES) return setError(t.groupTitleTooLong(bytes, TITLE_MAX_BYTES));
    setBusy(true);
    setError('');
    try {
      const wanted = chat.parseMembers(members);
      const failed = await chat.createGroup(title.trim(), wanted, clientIdFor(title.trim(), wanted));
      unanswered = null;
      if (failed.length === 0) return onClose();
      // The group exists; say who could not be added.
      setError(failed.map((f) => t.notAdded(f.user_id, errorText(f.code, f.message))).join('\n'));
      setTitle('');
      setMembers('');
    } catch (err) {
      const e2 = err as ApiError;
      setError(errorText(e2.code, e2.message, e2.retry_after));
    } finally {
      setBusy(false);
    }
  }
  return (
    <form class="new-group" onSubmit={submit} aria-label={t.newGroup}>
      <label class="field">
        <span class="field__label">{t.groupTitle}</span>
        <input
          data-testid="group-title"
          required
          maxLength={TITLE_MAX_BYTES}
          aria-describedby="group-title-hint"
          value={title}
          disabled={busy}
          onInput={(e) => setTitle(e.currentTarget.value)}
        />
        <span id="group-title-hint" class="field__hint">
          {t.groupTitleHint(TITLE_MAX_BYTES)}
        </span>
      </label>
      <label class="field">
        <span class="field__label">{t.groupMembers}</span>
        <input
          data-testid="group-members"
          autocapitalize="none"
          autocomplete="off"
          spellcheck={false}
          value={members}
          disabled={busy}
          onInput={(e) => setMembers(e.currentTarget.value)}
        />
      </label>
      {error && (
        <p class="field__error" role="alert">
          {error}
        </p>
      )}
      <div class="new-group__actions">
        <button class="button button--primary" type="submit" data-testid="group-create" disabled={busy}>
          {t.createGroup}
        </button>
        <button class="button button--ghost" type="button" data-testid="group-cancel" onClick={onClose}>
          {t.cancel}
        </button>
      </div>
    </form>
  );
}
