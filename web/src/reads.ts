// What the user has seen, told to the node (docs/PROTOCOL.md, `read`): the newest message of
// others at or above the newest row on screen, while the page is looked at; never one below
// the view. The badge counts what is still below it at once (State.readsAsked), while the
// conversation's read mark and count stay the node's until its read_mark event confirms the
// read (events.ts; or a list answer that holds it: list.ts). A read the node refuses goes
// back to them; one whose confirmation a dropped connection lost is sent again once the
// stream is back (it may have reached the node: a read at or before the node's mark is
// ignored there, and the mark's event, if it was stored, comes with the backlog).
import { idOrder } from './ids';
import { nodeNow } from './nodeClock';
import * as retention from './retention';
import { getState, setState, type ReadAsked, type State } from './store';
import { newestWhere } from './threadOrder';
import { countMoved, unreadPast, withoutAsked } from './unread';

// Sends a read on the live stream; false when not connected (nothing was sent).
type Reader = (conversationId: string, messageId: string) => boolean;
let reader: Reader | null = null;

export function setReader(r: Reader | null): void {
  reader = r;
}

// Reads sent at most once a second per conversation (each that moves the mark counts against
// the user's send rate on the node), the newest asked for always sent in the end.
const READ_EVERY_MS = 1000;
const readSentAt = new Map<string, number>();
const readLater = new Map<string, ReturnType<typeof setTimeout>>();

// Messages whose read the node refused for good (not there for the user, a group left): not
// asked for again. Refusals that may pass later (store_unavailable, internal) are not kept.
const REFUSED_KEPT = 200;
const refused = new Set<string>();
const TRANSIENT = new Set(['store_unavailable', 'internal']);

// The orders of the sent messages whose rows are on screen, by conversation (MessageItem).
const rowsOnScreen = new Map<string, Set<string>>();
let readQueued = false;

// The session ended.
export function resetReads(): void {
  reader = null;
  for (const timer of readLater.values()) clearTimeout(timer);
  readLater.clear();
  readSentAt.clear();
  refused.clear();
}

// A message's row came on screen or left it. Rows that come on screen together (a page of
// history, a scroll) make one read.
export function rowOnScreen(conversationId: string, order: string, shown: boolean): void {
  let rows = rowsOnScreen.get(conversationId);
  if (!shown) {
    rows?.delete(order);
    if (rows?.size === 0) rowsOnScreen.delete(conversationId);
    return;
  }
  if (!rows) rowsOnScreen.set(conversationId, (rows = new Set()));
  rows.add(order);
  retention.setViewAt(conversationId, newestOnScreen(conversationId));
  if (readQueued) return;
  readQueued = true;
  queueMicrotask(() => {
    readQueued = false;
    const active = getState().activeId;
    if (active) markRead(active);
  });
}

// The order of the newest message on screen in the conversation, '' for none.
function newestOnScreen(id: string): string {
  let newest = '';
  for (const order of rowsOnScreen.get(id) ?? []) if (order > newest) newest = order;
  return newest;
}

// Whether the user can see the page: it is visible and has the focus (a window behind
// another, or a tab in the background, is not looked at).
const looking = (): boolean => document.visibilityState === 'visible' && document.hasFocus();

// Whether the user looks at the newest messages of the conversation: it is open, the page
// is looked at, and its view is at the end of a thread that holds the newest.
export function seesNewest(id: string): boolean {
  const s = getState();
  return s.activeId === id && looking() && !retention.isScrolledUp(id) && !s.threads[id]?.hasMoreAfter;
}

function withAsked(all: State['readsAsked'], id: string, asked: ReadAsked | undefined): State['readsAsked'] {
  return asked ? { ...all, [id]: asked } : withoutAsked(all, id);
}

// Reads what is on screen of the open conversation, if the page is looked at: the node's
// count told again where the thread can (a message counted that went since, one that came
// while the newest were looked at and was not counted), and a read of the newest message of
// others on screen, if it is past what was read, whose count the badge shows until the node
// confirms it. A thread that left its newest out counts what it holds between the last read
// and this one off the count (unread.ts, countMoved): what came live past it stays counted.
export function markRead(id: string): void {
  const s = getState();
  const c = s.conversations[id];
  const th = s.threads[id];
  if (!c || !th || !reader || s.activeId !== id || !looking()) return;
  const me = s.userId;
  const now = nodeNow();
  const bottom = newestOnScreen(id);
  const seen = newestWhere(
    th.messages,
    (m) => Boolean(m.id) && m.order <= bottom && m.from !== me && !(m.expiresAtMs && m.expiresAtMs <= now),
  );
  const mark = c.readMark ? idOrder(c.readMark) : '';
  const unread = unreadPast(th, mark, me) ?? c.unread;
  const was = s.readsAsked[id];
  const asked = was && was.order > mark ? was : undefined; // (else confirmed: it goes)
  const newer = seen?.id && seen.order > (asked?.order ?? mark) && !refused.has(seen.id) ? seen : undefined;
  let next = asked;
  if (newer?.id) {
    const moved = asked
      ? countMoved(th, asked.unread, asked.exact, asked.order, newer.order, me)
      : countMoved(th, unread, true, mark, newer.order, me);
    next = { id: newer.id, order: newer.order, ...moved };
  } else if (asked) {
    const told = unreadPast(th, asked.order, me);
    if (told !== null && (told !== asked.unread || !asked.exact)) next = { ...asked, unread: told, exact: true };
  }
  if (unread !== c.unread || next !== was) {
    setState((st) => {
      const cur = st.conversations[id];
      const update: Partial<State> = {};
      if (cur && unread !== cur.unread) update.conversations = { ...st.conversations, [id]: { ...cur, unread } };
      if (next !== st.readsAsked[id]) update.readsAsked = withAsked(st.readsAsked, id, next);
      return update;
    });
  }
  if (newer) sendRead(id);
}

// Sends the conversation's newest read asked for, now or once a second has passed since the
// last one of the conversation (whichever conversation is open by then).
function sendRead(id: string): void {
  if (readLater.has(id)) return; // the newest asked for goes when its turn comes
  const wait = (readSentAt.get(id) ?? 0) + READ_EVERY_MS - Date.now();
  if (wait > 0) {
    readLater.set(id, setTimeout(() => {
      readLater.delete(id);
      sendRead(id);
    }, wait));
    return;
  }
  const asked = getState().readsAsked[id];
  // Not connected: sent once the stream is back (readsAgain).
  if (!asked || !reader?.(id, asked.id)) return;
  readSentAt.set(id, Date.now());
}

// The stream is back: every read not confirmed yet goes again (its answer may have been lost
// with the connection, or it was never sent).
export function readsAgain(): void {
  for (const id of Object.keys(getState().readsAsked)) sendRead(id);
}

// The node refused a read (an error frame for it). Unless a newer read of the conversation
// was asked for since (which then decides), the badge goes back to the node's count, as the
// node holds the mark where it was. A refusal for good is not asked for again; the open
// conversation then reads what else is on screen (a message that went is off the thread).
export function readRefused(conversationId: string, messageId: string, code: string): void {
  const lasting = !TRANSIENT.has(code);
  if (lasting) {
    refused.add(messageId);
    if (refused.size > REFUSED_KEPT) refused.delete(refused.values().next().value as string);
  }
  const order = idOrder(messageId);
  setState((s) => {
    const asked = s.readsAsked[conversationId];
    if (!asked || asked.order > order) return {};
    return { readsAsked: withoutAsked(s.readsAsked, conversationId) };
  });
  if (lasting) markRead(conversationId);
}
