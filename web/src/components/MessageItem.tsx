import { useEffect, useMemo, useRef } from 'preact/hooks';
import * as chat from '../chat';
import { formatTime, isoTime } from '../format';
import { errorText, t } from '../i18n';
import { watchOnScreen } from '../onScreen';
import * as receiptLoader from '../receiptLoader';
import { ownStatus, type OwnStatus } from '../receipts';
import { getState, useStore, type ChatMessage } from '../store';
import { Attachments } from './Attachments';
import { MessageStatus } from './MessageStatus';

interface Props {
  message: ChatMessage;
  own: boolean;
  group: boolean;
}

export function MessageItem({ message: m, own, group }: Props) {
  // Re-rendered when what the status is derived from changes: the message's receipts and
  // its conversation's read marks (compared by reference: a change of state elsewhere, an
  // upload's progress, another message's receipt, costs each message two lookups).
  const receipts = useStore((s) => (own && m.id ? s.receipts[m.id] : undefined));
  const readUpTo = useStore((s) => (own ? s.readUpTo[m.conversationId] : undefined));
  const parsed = useMemo<OwnStatus | null>(() => (own ? ownStatus(m, getState()) : null), [own, m, receipts, readUpTo]);
  const item = useRef<HTMLLIElement>(null);
  // An own group message's receipts are fetched while it is on screen (receiptLoader.ts).
  const watched = own && group ? m.id : null;
  useEffect(() => {
    const el = item.current;
    if (!el || !watched) return;
    return watchOnScreen(el, (visible) => (visible ? receiptLoader.onScreen(watched) : receiptLoader.offScreen(watched)));
  }, [watched]);
  return (
    <li
      ref={item}
      class={own ? 'msg msg--own' : 'msg'}
      data-testid="message"
      data-state={parsed?.state}
      data-message-id={m.id ?? undefined}
      data-client-id={own ? m.clientId : undefined}
    >
      {group && !own && <span class="msg__from">{m.from}</span>}
      {m.text && <p class="msg__text">{m.text}</p>}
      {m.attachments.length > 0 && <Attachments items={m.attachments} />}
      <span class="msg__meta">
        {/* A bogus sent_at_ms (beyond what a Date holds) shows no time rather than throwing. */}
        {isoTime(m.sentAtMs) && <time dateTime={isoTime(m.sentAtMs)}>{formatTime(m.sentAtMs)}</time>}
        {parsed && <MessageStatus status={parsed} group={group} messageId={m.id} />}
      </span>
      {parsed?.state === 'failed' && (
        <span class="msg__failed" role="alert">
          {parsed.undeliverable ? t.undeliverable : m.failed ? errorText(m.failed.code, m.failed.message) : t.stateFailed}
          {!parsed.undeliverable && (
            <button class="button button--small" type="button" data-testid="retry-button" onClick={() => chat.retry(m.conversationId, m.key)}>
              {t.retry}
            </button>
          )}
        </span>
      )}
    </li>
  );
}
