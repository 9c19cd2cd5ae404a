import { useEffect, useState } from 'preact/hooks';
import * as chat from '../chat';
import { t } from '../i18n';
import * as push from '../push';
import * as session from '../session';
import { useStore } from '../store';
import { ConversationView } from './ConversationView';
import { Login } from './Login';
import { Sidebar } from './Sidebar';

// Reasons to show on the login screen when the session ended without the user asking.
const ENDED = new Set([
  'session_revoked',
  'refresh_token_reused',
  'invalid_refresh_token',
  'user_disabled',
  'logged_out_elsewhere',
  'logout_unconfirmed',
]);

export function App() {
  const [userId, setUserId] = useState(() => session.tokens()?.user_id ?? null);
  const [ended, setEnded] = useState('');
  useEffect(
    () =>
      session.onTokens((tokens, reason) => {
        setUserId(tokens?.user_id ?? null);
        if (!tokens) {
          chat.stop();
          void push.closeShown();
          setEnded(reason && ENDED.has(reason) ? reason : '');
        }
      }),
    [],
  );
  useEffect(() => {
    if (userId) chat.start();
  }, [userId]);
  if (!userId) return <Login ended={ended} />;
  return <Shell />;
}

function Shell() {
  const activeId = useStore((s) => s.activeId);
  return (
    <div class={activeId ? 'shell shell--chat' : 'shell shell--list'}>
      <aside class="shell__list">
        <Sidebar />
      </aside>
      <main class="shell__main">
        {activeId ? <ConversationView key={activeId} id={activeId} /> : <p class="shell__empty">{t.selectChat}</p>}
      </main>
      <Announcer />
    </div>
  );
}

// Screen readers hear new messages from others here, whichever chat is open.
function Announcer() {
  const text = useStore((s) => s.announcement);
  return (
    <div class="visually-hidden" aria-live="polite" aria-atomic="true">
      {text}
    </div>
  );
}
