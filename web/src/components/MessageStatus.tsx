import { t } from '../i18n';
import type { OwnStatus } from '../receipts';
import { setState, useStore } from '../store';

// What the state of an own message says, for people.
export function statusLabel(s: OwnStatus, group: boolean): string {
  switch (s.state) {
    case 'sending':
      return t.stateSending;
    case 'failed':
      return t.stateFailed;
    case 'sent':
      return t.stateSent;
    case 'delivered':
      return group && s.recipients > 0 ? t.stateDeliveredTo(s.delivered, s.recipients) : t.stateDelivered;
    case 'read':
      if (!group) return t.stateRead;
      return s.recipients > 0 ? t.stateReadByOf(s.readers, s.recipients) : t.stateReadBy(s.readers);
  }
}

const GLYPHS: Record<OwnStatus['state'], string> = { sending: '◷', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' };

interface Props {
  status: OwnStatus;
  group: boolean;
  messageId: string | null; // null while unsent
}

// The ticks beside an own message's time. In a group, once sent, they also say how many of
// the recipients read it and are a button that opens who did (ReceiptsPanel).
export function MessageStatus({ status, group, messageId }: Props) {
  const open = useStore((s) => messageId !== null && s.receiptsOpen === messageId);
  const label = statusLabel(status, group);
  const classes = `ticks ticks--${status.state}`;
  if (!group || !messageId) {
    return (
      <span class={classes} role="img" aria-label={label} title={label} data-testid="message-ticks">
        {GLYPHS[status.state]}
      </span>
    );
  }
  const count = status.state !== 'read' ? '' : status.recipients > 0 ? `${status.readers}/${status.recipients}` : `${status.readers}`;
  return (
    <button
      type="button"
      class={`${classes} ticks--button`}
      aria-label={t.receiptsOpen(label)}
      aria-expanded={open}
      aria-controls={open ? 'receipts-panel' : undefined}
      title={label}
      data-testid="receipts-button"
      data-receipts-for={messageId}
      onClick={() => setState((s) => ({ receiptsOpen: s.receiptsOpen === messageId ? null : messageId, panelOpen: false }))}
    >
      <span aria-hidden="true">{GLYPHS[status.state]}</span>
      {count && (
        <span class="ticks__count" aria-hidden="true">
          {count}
        </span>
      )}
    </button>
  );
}
