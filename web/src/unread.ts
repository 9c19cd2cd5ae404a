// Counting what is unread (docs/PROTOCOL.md, GET /v1/conversations: `unread_count` is the
// messages of others after the read mark) from what a thread holds. A thread may hold only
// part of its conversation: not its oldest (Thread.hasMoreBefore, before pagedFrom), and,
// while its reader reads far up, not its newest (Thread.hasMoreAfter: those that came since
// are counted as they come, not held). What it cannot tell stays as counted.
import { nodeNow } from './nodeClock';
import type { ChatMessage, State, Thread } from './store';
import { orderIndex, sentCount } from './threadOrder';

const live = (m: ChatMessage, now: number): boolean => !(m.expiresAtMs && m.expiresAtMs <= now);

// Messages of others newer than `mark` (an idOrder) that have not expired (the sweep takes
// them off within a second), counted from the end.
export function unreadAfter(messages: ChatMessage[], mark: string, me: string | null): number {
  const now = nodeNow();
  let n = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.order && m.order <= mark) break;
    if (m.order && m.from !== me && live(m, now)) n++;
  }
  return n;
}

// Messages of others after `from` up to `to` (orders; '' for `from`: from the first held).
function othersBetween(messages: ChatMessage[], from: string, to: string, me: string | null): number {
  const now = nodeNow();
  let n = 0;
  for (let i = from ? orderIndex(messages, from) : 0; i < messages.length; i++) {
    const m = messages[i]!;
    if (!m.order || m.order > to) break;
    if (m.order > from && m.from !== me && live(m, now)) n++;
  }
  return n;
}

// Whether a loaded thread holds every message after `order` that it holds the newest of
// (nothing between `order` and its oldest held was left out).
const holdsFrom = (th: Thread, order: string): boolean => !th.hasMoreBefore || (order !== '' && order >= th.pagedFrom);

// The order of the newest sent message a thread holds ('' for none).
function newestHeld(th: Thread): string {
  const sent = sentCount(th.messages);
  return sent > 0 ? th.messages[sent - 1]!.order : '';
}

// The messages of others after `order`, if the thread holds all of them: it is loaded, holds
// the newest (not hasMoreAfter) and every message back to `order`. Else null.
export function unreadPast(th: Thread | undefined, order: string, me: string | null): number | null {
  if (!th?.loaded || th.hasMoreAfter || !holdsFrom(th, order)) return null;
  return unreadAfter(th.messages, order, me);
}

// The count once the read mark moves from `from` on to `to` (orders, `to` the newer), given
// `count`, the count after `from` (`countExact`: the node's, or told by a thread). Told by the
// thread when it holds all after `to`; else, when it holds every message between the two (a
// thread that left its newest out, paged forward by its reader), `count` less the messages of
// others between them: exact as far as `count` is. `exact` false otherwise: the thread holds
// neither all after `to` nor all between (its oldest and its newest left out, or not loaded),
// and the count is `count` less what it holds between them, which may be too high.
export function countMoved(
  th: Thread | undefined, count: number, countExact: boolean, from: string, to: string, me: string | null,
): { unread: number; exact: boolean } {
  const told = unreadPast(th, to, me);
  if (told !== null) return { unread: told, exact: true };
  if (!th?.loaded || to > newestHeld(th)) return { unread: count, exact: false };
  const unread = Math.max(0, count - othersBetween(th.messages, from, to, me));
  return { unread, exact: countExact && holdsFrom(th, from) };
}

// `asked` without the entry of conversation `id` (the same object when it has none).
export function withoutAsked(asked: State['readsAsked'], id: string): State['readsAsked'] {
  if (!(id in asked)) return asked;
  const next = { ...asked };
  delete next[id];
  return next;
}

// What the badge shows: while a read the user made is not confirmed by the node (its
// read_mark event), the count after it (State.readsAsked); else the count after the node's
// read mark.
export function shownUnread(s: State, id: string): number {
  return s.readsAsked[id]?.unread ?? s.conversations[id]?.unread ?? 0;
}
