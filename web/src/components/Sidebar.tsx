import { useRef, useState } from 'preact/hooks';
import * as chat from '../chat';
import { t } from '../i18n';
import { useStore } from '../store';
import { ConversationList } from './ConversationList';
import { Devices } from './Devices';
import { NewGroup } from './NewGroup';

export function Sidebar() {
  const userId = useStore((s) => s.userId);
  const online = useStore((s) => s.online);
  const notice = useStore((s) => s.notice);
  const [groupOpen, setGroupOpen] = useState(false);
  const [devicesOpen, setDevicesOpen] = useState(false);
  return (
    <div class="sidebar">
      <header class="topbar">
        <div class="topbar__who">
          <h1 class="topbar__title">{t.conversations}</h1>
          <span class="topbar__sub" data-testid="me">
            {userId}
            {!online && <span class="topbar__status" role="status">{t.statusSuffix(t.connecting)}</span>}
          </span>
        </div>
        <div class="sidebar__actions">
          <button
            class="button button--ghost"
            type="button"
            data-testid="devices-open"
            aria-expanded={devicesOpen}
            onClick={() => setDevicesOpen(!devicesOpen)}
          >
            {t.devices}
          </button>
          <button class="button button--ghost" type="button" data-testid="logout-button" onClick={() => void chat.logout()}>
            {t.logout}
          </button>
        </div>
      </header>
      {devicesOpen && <Devices onClose={() => setDevicesOpen(false)} />}
      {notice && (
        <p class="notice" role="alert">
          {notice}
        </p>
      )}
      <NewChat />
      {groupOpen ? (
        <NewGroup onClose={() => setGroupOpen(false)} />
      ) : (
        <button class="button button--ghost sidebar__new-group" type="button" data-testid="new-group-open" onClick={() => setGroupOpen(true)}>
          {t.newGroupOpen}
        </button>
      )}
      <ConversationList />
    </div>
  );
}

// A chat with someone by their id. A failure is said under the field, which keeps what was
// typed and gets the focus back (the button had it, and was disabled meanwhile), so that the
// id can be corrected.
function NewChat() {
  const [peer, setPeer] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  async function submit(e: Event) {
    e.preventDefault();
    if (busy || !peer.trim()) return;
    setBusy(true);
    const failure = await chat.startChat(peer);
    setBusy(false);
    setError(failure ?? '');
    if (!failure) setPeer('');
    else input.current?.focus();
  }
  return (
    <form class="new-chat" onSubmit={submit}>
      {/* The label names the input only, not the button beside it. */}
      <div class="field">
        <label class="field__label" for="new-chat-input">
          {t.newChatLabel}
        </label>
        <span class="new-chat__row">
          <input
            ref={input}
            id="new-chat-input"
            data-testid="new-chat-input"
            autocapitalize="none"
            autocomplete="off"
            spellcheck={false}
            placeholder={t.newChatPlaceholder}
            value={peer}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? 'new-chat-error' : undefined}
            onInput={(e) => setPeer(e.currentTarget.value)}
          />
          <button class="button button--primary" type="submit" data-testid="new-chat-button" disabled={busy}>
            {t.startChat}
          </button>
        </span>
      </div>
      {error && (
        <p id="new-chat-error" class="field__error" role="alert" data-testid="new-chat-error">
          {error}
        </p>
      )}
    </form>
  );
}
