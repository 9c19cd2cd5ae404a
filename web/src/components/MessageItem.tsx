import { useEffect, useRef } from 'preact/hooks';
import * as chat from '../chat';
import { formatTime, isoTime } from '../format';
import { errorText, t } from '../i18n';
import { watchOnScreen, watchSeen } from '../onScreen';
import * as receiptLoader from '../receiptLoader';
import { ownStatus, type OwnStatus } from '../receipts';
import { useStore, type ChatMessage, type ReadUpTo, type ReceiptState, type State } from '../store';
import { Attachments } from './Attachments';
import { memo } from './memo';
import { MessageStatus } from './MessageStatus';

interface Props {
  message: ChatMessage;
  own: boolean;
  group: boolean;
}

// One message of the list: drawn again when its message object, or its own status, changes
// (not when another message comes or changes: MessageList keeps the objects of the others).
export const MessageItem = memo(function MessageItem({ message: m, own, group }: Props) {
  const parsed = useOwnStatus(m, own);
  const item = useRef<HTMLLIElement>(null);
  // A sent message's row tells when it is seen (half of it on screen, or enough of a tall
  // one): reads name only what was (reads.ts). An own group message's receipts are fetched
  // while any of it is on screen (receiptLoader.ts).
  const { conversationId, order } = m;
  const watched = own && group ? m.id : null;
  useEffect(() => {
    const el = item.current;
    if (!el || !order) return;
    return watchSeen(el, (seen) => chat.rowOnScreen(conversationId, order, seen));
  }, [conversationId, order]);
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
      {/* Only body.content (another app's data) that this client has nothing to show of. */}
      {!m.text && m.attachments.length === 0 && (
        <p class="msg__text msg__text--unshown" data-testid="message-unshown">
          {t.messageUnshown}
        </p>
      )}
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
});

// The status of an own message (null for others'), the same object while it says the same.
// Worked out again only when what it comes from changed: the message, its receipts, its
// conversation's read marks (a change of state elsewhere costs each own message two
// lookups); and a read mark that covers many messages draws only those whose status it changes.
function useOwnStatus(m: ChatMessage, own: boolean): OwnStatus | null {
  const last = useRef<{ m: ChatMessage; r?: ReceiptState; u?: Record<string, ReadUpTo>; status: OwnStatus } | null>(null);
  return useStore((s: State) => {
    if (!own) return null;
    const r = m.id ? s.receipts[m.id] : undefined;
    const u = s.readUpTo[m.conversationId];
    const was = last.current;
    if (was && was.m === m && was.r === r && was.u === u) return was.status;
    const status = ownStatus(m, s);
    last.current = { m, r, u, status: was && sameStatus(was.status, status) ? was.status : status };
    return last.current.status;
  });
}

const sameStatus = (a: OwnStatus, b: OwnStatus): boolean =>
  a.state === b.state && a.readers === b.readers && a.delivered === b.delivered && a.recipients === b.recipients &&
  a.undeliverable === b.undeliverable;
