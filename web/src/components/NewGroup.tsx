import { useState } from 'preact/hooks';
import { ApiError } from '../api';
import * as chat from '../chat';
import { errorText, t } from '../i18n';
import { newClientId } from '../ids';

const TITLE_MAX_BYTES = 128; // the node counts UTF-8 bytes, not characters (PROTOCOL.md)

export function NewGroup({ onClose }: { onClose: () => void }) {
  const [title, setTitle] = useState('');
  const [members, setMembers] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  // One per group meant: a create tried again after a lost answer (the same form, unchanged)
  // makes no second group; a changed form, or the next group, gets a new one.
  const [clientId, setClientId] = useState(newClientId);
  async function submit(e: Event) {
    e.preventDefault();
    if (busy || !title.trim()) return;
    const bytes = new TextEncoder().encode(title.trim()).length;
    if (bytes > TITLE_MAX_BYTES) return setError(t.groupTitleTooLong(bytes, TITLE_MAX_BYTES));
    setBusy(true);
    setError('');
    try {
      const failed = await chat.createGroup(title.trim(), chat.parseMembers(members), clientId);
      setClientId(newClientId());
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
          onInput={(e) => {
            setTitle(e.currentTarget.value);
            setClientId(newClientId());
          }}
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
          onInput={(e) => {
            setMembers(e.currentTarget.value);
            setClientId(newClientId());
          }}
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
