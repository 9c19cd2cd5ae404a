import { useState } from 'preact/hooks';
import * as api from '../api';
import { errorText, t } from '../i18n';
import { useSecondsUntil } from './countdown';

function deviceName(): string {
  const nav = navigator as Navigator & { userAgentData?: { platform?: string } };
  const platform = nav.userAgentData?.platform || navigator.platform || 'web';
  return `petchat web (${platform})`.slice(0, 64);
}

interface Failure {
  code: string;
  message: string;
  until: number; // ms; 0 when the node set no wait
}

export function Login({ ended }: { ended: string }) {
  const [mode, setMode] = useState<'login' | 'register'>('login');
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [inviteCode, setInviteCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<Failure | null>(null);
  const wait = useSecondsUntil(failure?.until ?? 0);

  async function submit(e: Event) {
    e.preventDefault();
    if (busy || wait > 0) return;
    setBusy(true);
    setFailure(null);
    let registered = false;
    try {
      if (mode === 'register') {
        await api.register(name, password, displayName.trim(), inviteCode.trim());
        registered = true;
      }
      await api.login(name, password, deviceName()); // the app switches to the chats
    } catch (err) {
      // The account exists now: a retry must log in, not register again (name_taken).
      if (registered) setMode('login');
      const e2 = api.toApiError(err);
      setFailure({ code: e2.code, message: e2.message, until: e2.retry_after ? Date.now() + e2.retry_after * 1000 : 0 });
      setBusy(false);
    }
  }

  const registering = mode === 'register';
  return (
    <main class="login">
      <form class="login__card" onSubmit={submit} noValidate>
        <h1 class="login__title">{t.appName}</h1>
        {ended && !failure && (
          <p class="login__notice" role="status">
            {ended === 'logout_unconfirmed' ? t.logoutUnconfirmed : t.loggedOutRevoked}
          </p>
        )}
        <label class="field">
          <span class="field__label">{t.username}</span>
          <input
            data-testid="login-username"
            name="username"
            autocomplete="username"
            autocapitalize="none"
            spellcheck={false}
            required
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
            aria-describedby={registering ? 'name-hint' : undefined}
          />
          {registering && <span id="name-hint" class="field__hint">{t.usernameHint}</span>}
        </label>
        <label class="field">
          <span class="field__label">{t.password}</span>
          <input
            data-testid="login-password"
            name="password"
            type="password"
            autocomplete={registering ? 'new-password' : 'current-password'}
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {registering && (
          <>
            <label class="field">
              <span class="field__label">{t.displayName}</span>
              <input data-testid="register-display-name" name="display_name" autocomplete="nickname" maxLength={64} value={displayName} onInput={(e) => setDisplayName(e.currentTarget.value)} />
            </label>
            <label class="field">
              <span class="field__label">{t.registrationToken}</span>
              <input data-testid="register-token" name="registration_token" autocomplete="off" value={inviteCode} onInput={(e) => setInviteCode(e.currentTarget.value)} />
            </label>
          </>
        )}
        {failure && (
          <p class="login__error" role="alert" data-testid="login-error" data-code={failure.code}>
            {errorText(failure.code, failure.message, wait > 0 ? wait : undefined)}
          </p>
        )}
        <button
          class="button button--primary"
          type="submit"
          data-testid={registering ? 'register-button' : 'login-button'}
          disabled={busy || wait > 0}
        >
          {busy ? t.working : registering ? t.register : t.login}
        </button>
        <button
          class="button button--link"
          type="button"
          data-testid={registering ? 'show-login' : 'show-register'}
          onClick={() => {
            setMode(registering ? 'login' : 'register');
            setFailure(null);
          }}
        >
          {registering ? t.haveAccount : t.noAccount}
        </button>
      </form>
    </main>
  );
}
