// What the recipients of an own message did with it (docs/PROTOCOL.md, "Receipts in
// groups"): receipt events and GET /v1/messages/{id}/receipts answers folded into the state,
// and what the page shows from them: the message's state, and each recipient's.
import type { ReceiptsAnswer } from './api';
import { idOrder } from './ids';
import {
  emptyReceipts, setState, type ChatMessage, type MemberReceipt, type OwnState, type ReadUpTo, type ReceiptState, type State,
} from './store';
import type { Receipt } from './wire';

const ms = (v: string | number | undefined): number => Math.max(0, Number(v ?? 0) || 0);

// The earlier of two times, 0 meaning "not yet": a later report never takes a time back.
const earliest = (a: number, b: number): number => (a && b ? Math.min(a, b) : a || b);

function merged(old: MemberReceipt | undefined, deliveredAtMs: number, readAtMs: number): MemberReceipt {
  return { deliveredAtMs: earliest(old?.deliveredAtMs ?? 0, deliveredAtMs), readAtMs: earliest(old?.readAtMs ?? 0, readAtMs) };
}

// A member's READ covers our earlier messages too; the mark only moves forward.
function readUpToWith(s: State, conversationId: string, reads: [string, number][], order: string) {
  const members = s.readUpTo[conversationId] ?? {};
  const moved = reads.filter(([user]) => (members[user]?.order ?? '') < order);
  if (moved.length === 0) return s.readUpTo;
  const next: Record<string, ReadUpTo> = { ...members };
  for (const [user, atMs] of moved) next[user] = { order, atMs };
  return { ...s.readUpTo, [conversationId]: next };
}

// A receipt event of the live stream: one member's (by), or a large group's counts.
export function applyReceiptEvent(r: Receipt): void {
  setState((s) => {
    const old = s.receipts[r.message_id] ?? emptyReceipts();
    const next: ReceiptState = {
      ...old,
      recipients: Math.max(old.recipients, ms(r.recipients)),
      deliveredCount: Math.max(old.deliveredCount, ms(r.delivered_count)),
      readCount: Math.max(old.readCount, ms(r.read_count)),
    };
    const at = ms(r.at_ms) || Date.now();
    const read = r.status === 'READ';
    if (r.status === 'UNDELIVERABLE') next.undeliverable = true;
    else if (r.by && (read || r.status === 'DELIVERED')) {
      next.members = { ...old.members, [r.by]: merged(old.members[r.by], read ? 0 : at, read ? at : 0) };
    }
    const readUpTo = read && r.by ? readUpToWith(s, r.conversation_id, [[r.by, at]], idOrder(r.message_id)) : s.readUpTo;
    return { receipts: { ...s.receipts, [r.message_id]: next }, readUpTo };
  });
}

// The node's exact view of one own message (GET …/receipts): every recipient, in order.
export function applyReceiptsAnswer(a: ReceiptsAnswer): void {
  setState((s) => {
    const old = s.receipts[a.message_id] ?? emptyReceipts();
    const members = { ...old.members };
    for (const m of a.members) members[m.user_id] = merged(members[m.user_id], ms(m.delivered_at_ms), ms(m.read_at_ms));
    const next: ReceiptState = {
      ...old,
      members,
      recipientIds: a.members.map((m) => m.user_id),
      recipients: ms(a.recipients),
      deliveredCount: Math.max(old.deliveredCount, ms(a.delivered_count)),
      readCount: Math.max(old.readCount, ms(a.read_count)),
    };
    const reads = a.members.filter((m) => ms(m.read_at_ms) > 0).map((m): [string, number] => [m.user_id, ms(m.read_at_ms)]);
    return {
      receipts: { ...s.receipts, [a.message_id]: next },
      readUpTo: readUpToWith(s, a.conversation_id, reads, idOrder(a.message_id)),
    };
  });
}

export interface RecipientState {
  userId: string;
  deliveredAtMs: number; // 0: not known to be delivered (a read one was, at an unknown time)
  readAtMs: number;
}

// Each recipient of an own message and what they did: from its receipts, and from the reads
// of our later messages, which cover it. The full list once GET …/receipts answered; before
// that, the members that receipts named.
export function recipientStates(m: ChatMessage, s: State): RecipientState[] {
  if (!m.id) return [];
  const r = s.receipts[m.id] ?? emptyReceipts();
  const covering = s.readUpTo[m.conversationId] ?? {};
  const ids = r.recipientIds.length > 0 ? r.recipientIds : [...new Set([...Object.keys(r.members), ...Object.keys(covering)])];
  return ids
    .filter((userId) => userId !== m.from)
    .map((userId) => {
      const own = r.members[userId];
      const upTo = covering[userId];
      const coveredAt = upTo && upTo.order >= m.order ? upTo.atMs : 0;
      return { userId, deliveredAtMs: own?.deliveredAtMs ?? 0, readAtMs: earliest(own?.readAtMs ?? 0, coveredAt) };
    })
    .filter((x) => r.recipientIds.length > 0 || x.deliveredAtMs > 0 || x.readAtMs > 0);
}

export interface OwnStatus {
  state: OwnState;
  readers: number;
  delivered: number; // read ones included
  recipients: number; // 0 while unknown (and for a 1:1 message: its one recipient is implied)
  undeliverable: boolean;
}

// The state of an own message: from receipts, and from the delivery times history carries
// (1:1 only; in groups they stay 0).
export function ownStatus(m: ChatMessage, s: State): OwnStatus {
  const status: OwnStatus = { state: 'sent', readers: 0, delivered: 0, recipients: 0, undeliverable: false };
  if (!m.id) return { ...status, state: m.failed ? 'failed' : 'sending' };
  const r = s.receipts[m.id];
  if (r?.undeliverable) return { ...status, state: 'failed', undeliverable: true };
  const rows = recipientStates(m, s);
  status.recipients = r?.recipients ?? 0;
  status.readers = Math.max(rows.filter((x) => x.readAtMs > 0).length, r?.readCount ?? 0, m.readAtMs > 0 ? 1 : 0);
  const delivered = rows.filter((x) => x.deliveredAtMs > 0 || x.readAtMs > 0).length;
  status.delivered = Math.max(delivered, r?.deliveredCount ?? 0, status.readers, m.deliveredAtMs > 0 ? 1 : 0);
  status.state = status.readers > 0 ? 'read' : status.delivered > 0 ? 'delivered' : 'sent';
  return status;
}
