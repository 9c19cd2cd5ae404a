import * as chat from '../chat';
import { formatTime, isoTime } from '../format';
import { errorText, t } from '../i18n';
import { useStore, type ChatMessage } from '../store';
import { ownStatus, type OwnStatus } from '../thread';
import { Attachments } from './Attachments';

interface Props {
  message: ChatMessage;
  own: boolean;
  group: boolean;
}

export function MessageItem({ message: m, own, group }: Props) {
  // Re-rendered when receipts change; the status is derived from them.
  const status = useStore((s) => (own ? statusKey(ownStatus(m, s)) : ''));
  const parsed = own ? parseStatus(status) : null;
  return (
    <li
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
        {parsed && <Ticks status={parsed} group={group} />}
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

// A string, so that useStore re-renders only when the status really changed.
const statusKey = (s: OwnStatus): string => `${s.state}|${s.readers}|${s.undeliverable ? 1 : 0}`;

function parseStatus(key: string): OwnStatus {
  const [state, readers, undeliverable] = key.split('|');
  return { state: state as OwnStatus['state'], readers: Number(readers), undeliverable: undeliverable === '1' };
}

function Ticks({ status, group }: { status: OwnStatus; group: boolean }) {
  const { state, readers } = status;
  const label =
    state === 'sending' ? t.stateSending
    : state === 'sent' ? t.stateSent
    : state === 'delivered' ? t.stateDelivered
    : state === 'read' ? (group ? t.stateReadBy(readers) : t.stateRead)
    : t.stateFailed;
  const glyph = state === 'sending' ? '◷' : state === 'sent' ? '✓' : state === 'failed' ? '!' : '✓✓';
  return (
    <span class={`ticks ticks--${state}`} role="img" aria-label={label} title={label} data-testid="message-ticks">
      {glyph}
      {group && state === 'read' && <span class="ticks__count">{readers}</span>}
    </span>
  );
}
