import { useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError, ConversationDetails } from '../api';
import * as chat from '../chat';
import { errorText, t } from '../i18n';
import { setState, useStore } from '../store';

const describe = (err: unknown): string => {
  const e = err as ApiError;
  return errorText(e.code ?? 'network', e.message, e.retry_after);
};

// Members of a group, adding and removing them (owner and admins), and leaving.
export function GroupPanel({ id }: { id: string }) {
  const me = useStore((s) => s.userId) ?? '';
  const changes = useStore((s) => s.changed[id] ?? 0);
  const [details, setDetails] = useState<ConversationDetails | null>(null);
  const [error, setError] = useState('');
  const [newMember, setNewMember] = useState('');
  const [successor, setSuccessor] = useState('');
  const [busy, setBusy] = useState(false);

  // One request at a time, and one more after it when changes came meanwhile (a burst of
  // changes is not a burst of requests); an answer is shown only if it is for the group shown
  // now, so an older answer can never replace a newer one.
  const shown = useRef(id);
  shown.current = id;
  const loader = useRef({ running: false, again: false });
  async function reload(): Promise<void> {
    const l = loader.current;
    if (l.running) {
      l.again = true;
      return;
    }
    l.running = true;
    try {
      do {
        l.again = false;
        const asked = shown.current;
        try {
          const answer = await chat.details(asked);
          if (asked === shown.current) setDetails(answer);
        } catch (err) {
          if (asked === shown.current) setError(describe(err));
        }
      } while (l.again);
    } finally {
      l.running = false;
    }
  }

  // Another group shown in the same panel: nothing of the last one stays on screen.
  useEffect(() => {
    setDetails(null);
    setError('');
  }, [id]);

  // Again after every change of the group seen live.
  useEffect(() => {
    void reload();
  }, [id, changes]);

  async function run(action: () => Promise<unknown>) {
    setBusy(true);
    setError('');
    try {
      await action();
      await reload();
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  }

  async function add(e: Event) {
    e.preventDefault();
    const members = chat.parseMembers(newMember);
    if (members.length === 0) return;
    await run(async () => {
      const answer = await chat.addMembers(id, members);
      setNewMember('');
      if (answer.failed.length) throw { code: '', message: answer.failed.map((f) => t.notAdded(f.user_id, errorText(f.code, f.message))).join('\n') };
    });
  }

  const mine = details?.members.find((m) => m.user_id === me);
  const role = mine?.role ?? 'member';
  const canManage = role === 'owner' || role === 'admin';
  const others = details?.members.filter((m) => m.user_id !== me) ?? [];
  const mustHandOver = role === 'owner' && others.length > 0;

  return (
    <aside class="side-panel" aria-label={t.groupInfo} data-testid="group-panel">
      <header class="side-panel__header">
        <h3>{t.groupInfo}</h3>
        <button class="icon-button" type="button" aria-label={t.closePanel} onClick={() => setState(() => ({ panelOpen: false }))}>
          <span aria-hidden="true">×</span>
        </button>
      </header>
      {error && (
        <p class="field__error" role="alert">
          {error}
        </p>
      )}
      {details && (
        <>
          <p class="side-panel__count">{t.members(details.members.length)}</p>
          <ul class="member-list">
            {details.members.map((m) => {
              const removable = m.user_id !== me && m.role !== 'owner' && (role === 'owner' || (role === 'admin' && m.role === 'member'));
              return (
                <li key={m.user_id} class="member" data-testid="group-member" data-user-id={m.user_id}>
                  <span class={m.presence?.state === 'ONLINE' ? 'member__dot member__dot--online' : 'member__dot'} aria-hidden="true" />
                  <span class="member__name">{m.user_id}</span>
                  <span class="member__role">{t.role[m.role] ?? m.role}</span>
                  {removable && (
                    <button
                      class="button button--small button--danger"
                      type="button"
                      aria-label={t.removeMember(m.user_id)}
                      disabled={busy}
                      data-testid="remove-member"
                      onClick={() => void run(() => chat.removeMember(id, m.user_id))}
                    >
                      {t.remove}
                    </button>
                  )}
                </li>
              );
            })}
          </ul>
          {canManage && details.member && (
            <form class="side-panel__section" onSubmit={add}>
              <div class="field">
                <label class="field__label" for="add-member-input">
                  {t.addMember}
                </label>
                <span class="new-chat__row">
                  <input id="add-member-input" data-testid="add-member-input" autocapitalize="none" autocomplete="off" spellcheck={false} value={newMember} onInput={(e) => setNewMember(e.currentTarget.value)} />
                  <button class="button button--primary" type="submit" data-testid="add-member-button" disabled={busy}>
                    {t.add}
                  </button>
                </span>
              </div>
            </form>
          )}
          {details.member && (
            <div class="side-panel__section">
              {mustHandOver && (
                <label class="field">
                  <span class="field__label">{t.successor}</span>
                  <select data-testid="successor-select" value={successor} onChange={(e) => setSuccessor(e.currentTarget.value)}>
                    <option value="">{t.chooseSuccessor}</option>
                    {others.map((m) => (
                      <option key={m.user_id} value={m.user_id}>
                        {m.user_id}
                      </option>
                    ))}
                  </select>
                </label>
              )}
              <button
                class="button button--danger"
                type="button"
                data-testid="leave-group"
                disabled={busy || (mustHandOver && !successor)}
                onClick={() => void run(() => chat.removeMember(id, me, mustHandOver ? successor : undefined))}
              >
                {t.leave}
              </button>
            </div>
          )}
        </>
      )}
    </aside>
  );
}
