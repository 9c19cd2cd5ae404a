// A thread's messages as one array in the node's order: sent messages by id order, then
// unsent own messages in the order they were written. Changes find their place by binary
// search and copy the array once (a move of pointers, no sorting), and a message that did
// not change keeps its object, so that its row is not drawn again (MessageList).
import { idOrder } from './ids';
import type { ChatMessage } from './store';

function byOrder(a: ChatMessage, b: ChatMessage): number {
  // Unsent messages after every sent one, in the order they were written.
  if (!a.order || !b.order) return a.order ? -1 : b.order ? 1 : a.sentAtMs - b.sentAtMs;
  return a.order < b.order ? -1 : a.order > b.order ? 1 : 0;
}

export const isNewer = (m: ChatMessage, than: ChatMessage | null): boolean => !than || byOrder(m, than) > 0;

// The first index in [lo, hi) whose message is not `before` (which holds for a prefix).
function partition(list: ChatMessage[], lo: number, hi: number, before: (m: ChatMessage) => boolean): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(list[mid]!)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Where the sent message of this order is, or would go.
export const orderIndex = (list: ChatMessage[], order: string): number =>
  partition(list, 0, list.length, (x) => x.order !== '' && x.order < order);

// How many messages are sent: they come first.
export const sentCount = (list: ChatMessage[]): number => partition(list, 0, list.length, (x) => x.order !== '');

// The unsent local copy with this client_id (they are few, at the end), or -1.
export function localIndex(list: ChatMessage[], clientId: string): number {
  const key = `local:${clientId}`;
  for (let i = list.length - 1; i >= 0 && !list[i]!.order; i--) if (list[i]!.key === key) return i;
  return -1;
}

export function indexOfId(list: ChatMessage[], id: string): number {
  const i = orderIndex(list, idOrder(id));
  return list[i]?.id === id ? i : -1;
}

export const findById = (list: ChatMessage[], id: string): ChatMessage | undefined => list[indexOfId(list, id)];

// The newest message for which `wanted` holds (looked for from the end).
export function newestWhere(list: ChatMessage[], wanted: (m: ChatMessage) => boolean): ChatMessage | undefined {
  for (let i = list.length - 1; i >= 0; i--) if (wanted(list[i]!)) return list[i];
  return undefined;
}

export function withoutId(list: ChatMessage[], id: string): ChatMessage[] {
  const i = indexOfId(list, id);
  return i < 0 ? list : [...list.slice(0, i), ...list.slice(i + 1)];
}

// A message is stored once: a copy that says nothing new keeps the one held.
function sameContent(a: ChatMessage, b: ChatMessage): boolean {
  return a.sentAtMs === b.sentAtMs && a.text === b.text && a.failed === b.failed && a.from === b.from &&
    (a.attachments === b.attachments || JSON.stringify(a.attachments) === JSON.stringify(b.attachments));
}

// Merges messages into a thread: one entry per message id, and a stored own message
// replaces its unsent local copy (same sender and client_id). Keeps the newest delivery
// state either copy knows. Answers `list` itself when nothing changed.
export function mergeMessages(list: ChatMessage[], incoming: ChatMessage[]): ChatMessage[] {
  let out = list;
  const writable = (): ChatMessage[] => (out === list ? (out = list.slice()) : out);
  for (const m of incoming) {
    if (m.id) {
      const local = localIndex(out, m.clientId);
      if (local >= 0 && out[local]!.from === m.from) writable().splice(local, 1);
    }
    const at = m.order ? orderIndex(out, m.order) : localIndex(out, m.clientId);
    const old = at >= 0 ? out[at] : undefined;
    if (old && old.key === m.key) {
      const deliveredAtMs = Math.max(m.deliveredAtMs, old.deliveredAtMs);
      const readAtMs = Math.max(m.readAtMs, old.readAtMs);
      const unchanged = deliveredAtMs === old.deliveredAtMs && readAtMs === old.readAtMs && sameContent(old, m);
      if (!unchanged) writable()[at] = { ...m, deliveredAtMs, readAtMs };
      continue;
    }
    // After the unsent messages written at the same time (as a stable sort put them).
    const unsent = sentCount(out);
    const to = m.order ? at : partition(out, unsent, out.length, (x) => x.sentAtMs <= m.sentAtMs);
    writable().splice(to, 0, m);
  }
  return out;
}

// The older of two orders, '' counting as none.
export const olderOrder = (a: string, b: string): string => (!a ? b : !b ? a : a < b ? a : b);
