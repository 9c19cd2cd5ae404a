import { useLayoutEffect, useRef } from 'preact/hooks';
import * as chat from '../chat';
import { formatDay, formatList, formatTime } from '../format';
import { t } from '../i18n';
import { setState, useStore } from '../store';
import { useFileDrop } from './AttachControls';
import { Composer } from './Composer';
import { GroupMark } from './GroupMark';
import { GroupPanel } from './GroupPanel';
import { MessageList } from './MessageList';
import { ReceiptsPanel } from './ReceiptsPanel';

export function ConversationView({ id }: { id: string }) {
  const conv = useStore((s) => s.conversations[id]);
  const panelOpen = useStore((s) => s.panelOpen);
  const receiptsOpen = useStore((s) => s.receiptsOpen);
  const drop = useFileDrop(id, Boolean(conv?.member));
  useFocusBackFromReceipts(receiptsOpen);
  if (!conv) return null;
  const group = conv.kind === 'group';
  return (
    <section class={drop.over ? 'conversation conversation--drop' : 'conversation'} aria-labelledby="conversation-title" {...drop.handlers}>
      <header class="topbar">
        <button class="icon-button conversation__back" type="button" aria-label={t.back} data-testid="back-button" onClick={() => chat.open(null)}>
          <span aria-hidden="true">←</span>
        </button>
        <div class="topbar__who">
          <h2 id="conversation-title" class="topbar__title">
            {group && <GroupMark class="topbar__group" />}
            {conv.title}
          </h2>
          <Subtitle id={id} />
        </div>
        <button
          class="button button--ghost button--small"
          type="button"
          aria-pressed={conv.muted}
          data-testid="mute-toggle"
          onClick={() => void chat.setMuted(id, !conv.muted).catch(() => {})}
        >
          {conv.muted ? t.unmute : t.mute}
        </button>
        {group && (
          <button
            class="icon-button"
            type="button"
            aria-label={t.groupInfo}
            aria-expanded={panelOpen}
            data-testid="group-info-button"
            onClick={() => setState((s) => ({ panelOpen: !s.panelOpen, receiptsOpen: null }))}
          >
            <svg class="icon" viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false">
              <circle cx="12" cy="12" r="10" fill="none" stroke="currentColor" stroke-width="2" />
              <path d="M12 11v6M12 7.5v.5" stroke="currentColor" stroke-width="2" stroke-linecap="round" />
            </svg>
          </button>
        )}
      </header>
      <div class="conversation__body">
        <MessageList key={id} id={id} />
        {group && panelOpen && <GroupPanel id={id} />}
        {group && receiptsOpen && <ReceiptsPanel conversationId={id} messageId={receiptsOpen} />}
      </div>
      {conv.member ? <Composer id={id} /> : <p class="conversation__gone">{t.leftGroup}</p>}
      {drop.over && (
        <p class="conversation__drop" aria-hidden="true" data-testid="drop-hint">
          {t.dropFiles}
        </p>
      )}
    </section>
  );
}

// When the receipts panel closes, the focus goes back to the button that opened it (on a
// phone the panel covered the messages: they are shown again by the time this runs).
function useFocusBackFromReceipts(open: string | null): void {
  const last = useRef(open);
  useLayoutEffect(() => {
    const closed = last.current;
    last.current = open;
    if (!closed || open) return;
    // Only if the focus was lost with the panel (not when the user went on elsewhere). A
    // message deleted meanwhile has no button left: the messages, then.
    const lost = !document.activeElement || document.activeElement === document.body;
    const back = document.querySelector<HTMLElement>(`[data-receipts-for="${CSS.escape(closed)}"]`) ??
      document.querySelector<HTMLElement>('[data-testid="message-list"]');
    if (lost) back?.focus();
  }, [open]);
}

function Subtitle({ id }: { id: string }) {
  const conv = useStore((s) => s.conversations[id]);
  const typing = useStore((s) => s.typing[id]);
  const presence = useStore((s) => (conv?.peer ? s.presence[conv.peer] : undefined));
  if (!conv) return null;
  const typists = Object.keys(typing ?? {});
  let text = '';
  if (typists.length > 0) text = conv.kind === 'group' ? t.typingNamed(formatList(typists)) : t.typing;
  // A group says so in words too (GroupMark): its title may be anything, a user's id too.
  else if (conv.kind === 'group') text = conv.memberCount ? t.groupOf(t.members(conv.memberCount)) : t.group;
  else if (presence?.online) text = t.online;
  else if (presence?.lastSeenMs) text = t.lastSeen(t.dayAndTime(formatDay(presence.lastSeenMs), formatTime(presence.lastSeenMs)));
  return (
    <span class="topbar__sub" data-testid={typists.length > 0 ? 'typing-indicator' : 'conversation-status'} aria-live="polite">
      {text}
    </span>
  );
}
