import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { clip, formatMoment, isoTime } from '../format';
import { errorText, t } from '../i18n';
import * as receiptLoader from '../receiptLoader';
import { ownStatus, recipientStates, type RecipientState } from '../receipts';
import { wasDeleted } from '../retention';
import { setState, useStore } from '../store';
import { findById } from '../threadOrder';
import { statusLabel } from './MessageStatus';

const QUOTED_CHARS = 120;

const close = () => setState(() => ({ receiptsOpen: null }));

const DELETED = 'deleted';

// Who of a group got an own message and who read it, and when: fetched afresh when the
// panel opens (GET …/receipts), then kept current by receipt events. A message deleted for
// everyone meanwhile (from another device of ours) leaves the panel saying so, with nothing
// of the message or its receipts, until the user closes it; it is not asked for again.
export function ReceiptsPanel({ conversationId, messageId }: { conversationId: string; messageId: string }) {
  // A string, so that the panel re-renders only when what it shows changed. (The deletion
  // is noted before the thread loses the message: events.ts.)
  const json = useStore((s) => {
    const m = findById(s.threads[conversationId]?.messages ?? [], messageId);
    if (!m) return wasDeleted(messageId) ? DELETED : '';
    return JSON.stringify({ text: m.text, summary: statusLabel(ownStatus(m, s), true), rows: recipientStates(m, s) });
  });
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState('');
  const closeButton = useRef<HTMLButtonElement>(null);

  // Keyboard users land in the panel (and go back to the message's button when it closes:
  // ConversationView).
  useLayoutEffect(() => closeButton.current?.focus(), [messageId]);

  useEffect(() => {
    let current = true;
    setLoading(true);
    setError('');
    void receiptLoader.refresh(messageId).then((e) => {
      if (!current) return;
      setLoading(false);
      if (e) setError(errorText(e.code, e.message, e.retry_after));
    });
    return () => {
      current = false;
    };
  }, [messageId]);

  if (!json) return null;
  const deleted = json === DELETED;
  const { text, summary, rows } = deleted
    ? { text: '', summary: '', rows: [] as RecipientState[] }
    : (JSON.parse(json) as { text: string; summary: string; rows: RecipientState[] });
  return (
    <aside
      id="receipts-panel"
      class="side-panel"
      aria-labelledby="receipts-title"
      data-testid="receipts-panel"
      onKeyDown={(e) => e.key === 'Escape' && close()}
    >
      <header class="side-panel__header">
        <h3 id="receipts-title">{t.messageInfo}</h3>
        <button ref={closeButton} class="icon-button" type="button" aria-label={t.closePanel} data-testid="receipts-close" onClick={close}>
          <span aria-hidden="true">×</span>
        </button>
      </header>
      {deleted && (
        <p class="side-panel__count" role="status" data-testid="receipts-deleted">
          {t.receiptsDeleted}
        </p>
      )}
      {text && <p class="receipts__quote">{clip(text, QUOTED_CHARS)}</p>}
      {!deleted && (
        <p class="side-panel__count" data-testid="receipts-summary">
          {summary}
        </p>
      )}
      {error && !deleted && (
        <p class="field__error" role="alert">
          {error}
        </p>
      )}
      {loading && !deleted && rows.length === 0 && <p class="side-panel__count">{t.receiptsLoading}</p>}
      {!deleted && (
        <ul class="member-list" aria-busy={loading}>
          {rows.map((r) => (
            <RecipientRow key={r.userId} row={r} />
          ))}
        </ul>
      )}
    </aside>
  );
}

function RecipientRow({ row }: { row: RecipientState }) {
  const delivered = row.deliveredAtMs > 0 || row.readAtMs > 0;
  const read = row.readAtMs > 0;
  return (
    <li class="member receipt" data-testid="receipt-member" data-user-id={row.userId} data-delivered={delivered} data-read={read}>
      <span class={read ? 'receipt__mark receipt__mark--read' : 'receipt__mark'} aria-hidden="true">
        {delivered ? '✓✓' : '✓'}
      </span>
      <span class="member__name">{row.userId}</span>
      <span class="receipt__times">
        {read && <Moment text={t.receiptRead} ms={row.readAtMs} />}
        {row.deliveredAtMs > 0 && <Moment text={t.receiptDelivered} ms={row.deliveredAtMs} />}
        {!delivered && <span>{t.receiptPending}</span>}
      </span>
    </li>
  );
}

function Moment({ text, ms }: { text: (when: string) => string; ms: number }) {
  return <time dateTime={isoTime(ms)}>{text(formatMoment(ms))}</time>;
}
