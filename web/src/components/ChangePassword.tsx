import { useEffect, useRef, useState } from 'preact/hooks';
import * as api from '../api';
import { errorText, t } from '../i18n';
import { useStore } from '../store';
import { useSecondsUntil } from './countdown';

interface Failure {
  code: string; // the node's, or `password_mismatch` (found here, nothing sent)
  message: string;
  field: string; // the input it is about: current_password, new_password, again, or ''
  until: number; // ms; 0 when the node set no wait
}

// The text of a failure: a wrong current password has its own (the node's
// wrong_password text is for programs); the rest as everywhere, with the wait.
function failureText(f: Failure, wait: number): string {
  if (f.code === 'password_mismatch') return t.passwordsDiffer;
  if (f.code === 'wrong_password') return t.currentPasswordWrong;
  return errorText(f.code, f.message, wait > 0 ? wait : undefined);
}

// Changing the user's password (docs/PROTOCOL.md, POST /v1/me/password), in the Devices
// panel: the current password and the new one twice, compared here before anything is
// sent. The node logs out every other device with it (onChanged reloads the list); this one
// stays logged in.
export function ChangePassword({ onChanged }: { onChanged: () => void }) {
  const userId = useStore((s) => s.userId) ?? '';
  const [open, setOpen] = useState(false);
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [again, setAgain] = useState('');
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<Failure | null>(null);
  const [changed, setChanged] = useState(false);
  const first = useRef<HTMLInputElement>(null);
  const opener = useRef<HTMLButtonElement>(null);
  const wasOpen = useRef(false);

  // Focus goes into the form when it opens, and back to its button when it closes.
  useEffect(() => {
    if (open) first.current?.focus();
    else if (wasOpen.current) opener.current?.focus();
    wasOpen.current = open;
  }, [open]);

  const wait = useSecondsUntil(failure?.until ?? 0);

  function clear() {
    setCurrent('');
    setNext('');
    setAgain('');
    setFailure(null);
  }

  async function submit(e: Event) {
    e.preventDefault();
    if (busy || wait > 0) return;
    setChanged(false);
    if (next !== again) {
      setFailure({ code: 'password_mismatch', message: '', field: 'again', until: 0 });
      return;
    }
    setBusy(true);
    setFailure(null);
    try {
      await api.changePassword(current, next);
      clear();
      setChanged(true);
      onChanged();
    } catch (err) {
      const e2 = api.toApiError(err);
      setFailure({
        code: e2.code,
        message: e2.message,
        field: e2.field ?? '',
        until: e2.retry_after ? Date.now() + e2.retry_after * 1000 : 0,
      });
    }
    setBusy(false);
  }

  const invalid = (field: string) => (failure?.field === field ? true : undefined);
  const describedBy = (field: string) => (failure?.field === field ? 'password-error' : undefined);

  if (!open) {
    return (
      <div class="devices__push">
        <button
          ref={opener}
          class="button button--ghost button--small"
          type="button"
          data-testid="password-open"
          onClick={() => {
            clear();
            setChanged(false);
            setOpen(true);
          }}
        >
          {t.changePassword}
        </button>
      </div>
    );
  }
  return (
    <form class="devices__form" onSubmit={submit} aria-labelledby="password-title" data-testid="password-form">
      <h3 id="password-title" class="devices__subtitle">
        {t.changePassword}
      </h3>
      {/* For password managers: whose password this is. */}
      <input type="text" name="username" autocomplete="username" value={userId} readOnly hidden />
      <label class="field">
        <span class="field__label">{t.currentPassword}</span>
        <input
          ref={first}
          data-testid="password-current"
          name="current-password"
          type="password"
          autocomplete="current-password"
          required
          value={current}
          aria-invalid={invalid('current_password')}
          aria-describedby={describedBy('current_password')}
          onInput={(e) => setCurrent(e.currentTarget.value)}
        />
      </label>
      <label class="field">
        <span class="field__label">{t.newPassword}</span>
        <input
          data-testid="password-new"
          name="new-password"
          type="password"
          autocomplete="new-password"
          required
          value={next}
          aria-invalid={invalid('new_password')}
          aria-describedby={describedBy('new_password')}
          onInput={(e) => setNext(e.currentTarget.value)}
        />
      </label>
      <label class="field">
        <span class="field__label">{t.newPasswordAgain}</span>
        <input
          data-testid="password-again"
          name="new-password-again"
          type="password"
          autocomplete="new-password"
          required
          value={again}
          aria-invalid={invalid('again')}
          aria-describedby={describedBy('again')}
          onInput={(e) => setAgain(e.currentTarget.value)}
        />
      </label>
      {failure && (
        <p id="password-error" class="field__error" role="alert" data-testid="password-error" data-code={failure.code}>
          {failureText(failure, wait)}
        </p>
      )}
      {changed && (
        <p class="devices__note" role="status" data-testid="password-changed">
          {t.passwordChanged}
        </p>
      )}
      <span class="devices__actions">
        <button class="button button--primary button--small" type="submit" data-testid="password-submit" disabled={busy || wait > 0}>
          {busy ? t.working : t.savePassword}
        </button>
        <button
          class="button button--ghost button--small"
          type="button"
          data-testid="password-cancel"
          disabled={busy}
          onClick={() => {
            clear();
            setChanged(false);
            setOpen(false);
          }}
        >
          {t.cancel}
        </button>
      </span>
    </form>
  );
}
