// What the page keeps in memory, so that a tab left open for days stays the size it was:
// threads hold their newest messages only (older ones come back through history paging
// when the user scrolls up), only the threads of the conversations opened last are kept,
// and receipts, presence and typing of what is no longer held or shown are
// forgotten. A picture of a message that goes leaves with its row: Attachments.tsx revokes
// its blob: URL when the row unmounts, and assets.ts keeps a bounded cache of bytes.
import { idOrder } from './ids';
import * as receiptLoader from './receiptLoader';
import { emptyThread, type ChatMessage, type State, type Thread } from './store';
import { withoutContent } from './thread';
import { orderIndex, sentCount } from './threadOrder';

// Sent messages a thread keeps (unsent ones all stay), trimmed to this when the user is at
// its newest messages, or has left it. A thread that grows is trimmed once it holds
// TRIM_SLACK more, so that a message costs one copy of the array per TRIM_SLACK messages,
// and the open view is not shifted by every message.
export const KEPT_MESSAGES = 500;
const TRIM_SLACK = 100;
// While the user reads in the open thread (scrolled up in it, or with the receipts of one of
// its messages open), up to this many sent messages, cut at the end farther from the view:
// the oldest when the view is in the newer half, else the newest (Thread.hasMoreAfter),
// below the view, paged in forward when the view reaches its end (history.ts, loadNewer).
// So a view left scrolled up for days, or paged back far, stays bounded, and its place on
// screen does not move.
const READING_MESSAGES = 2000;
// Threads kept besides the open one: those of the conversations opened last. Another is
// dropped whole (opening it loads its history again), unless it holds unsent messages.
const KEPT_THREADS = 10;
// Receipts of own messages that no thread holds (of conversations not open): the newest
// this many are kept. A group message's receipts are fetched again when it is shown.
const KEPT_RECEIPTS = 1000;
// Presence of a user who is no direct chat's peer: kept this long after its frame (the
// conversation that makes them one may come just after it, with the list fetched again).
const STRAY_PRESENCE_MS = 10 * 60_000;
// Deletions for everyone seen live that are remembered (the latest this many).
const KEPT_DELETIONS = 1000;

// Whether the open conversation's view is scrolled up from its newest messages (MessageList).
let scrolledUp = { id: '', up: false };
// The order of the newest message on screen in the open conversation (reads.ts).
let viewAt = { id: '', order: '' };
// Conversation ids by when they were last opened, the most recent last.
const opened = new Set<string>();
// Ids of messages deleted for everyone, seen live: a page of history or a list answer asked
// before the deletion still carries the message, and must not bring it back.
const deleted = new Set<string>();

export function setScrolledUp(id: string, up: boolean): void {
  if (scrolledUp.id !== id || scrolledUp.up !== up) scrolledUp = { id, up };
}

export function setViewAt(id: string, order: string): void {
  viewAt = { id, order };
}

export function isScrolledUp(id: string): boolean {
  return scrolledUp.id === id && scrolledUp.up;
}

export function noteOpened(id: string): void {
  opened.delete(id);
  opened.add(id);
  if (opened.size > 4 * KEPT_THREADS) opened.delete(opened.values().next().value as string);
}

export function noteDeleted(id: string): void {
  deleted.add(id);
  if (deleted.size > KEPT_DELETIONS) deleted.delete(deleted.values().next().value as string);
}

// Whether a message was deleted for everyone (seen live, and still remembered).
export const wasDeleted = (id: string): boolean => deleted.has(id);

// Whether a message is gone: deleted for everyone, or past its expiry (`now`: the node's clock).
export const isGone = (m: ChatMessage, now: number): boolean =>
  (m.id !== null && deleted.has(m.id)) || Boolean(m.expiresAtMs && m.expiresAtMs <= now);

export function reset(): void {
  scrolledUp = { id: '', up: false };
  viewAt = { id: '', order: '' };
  opened.clear();
  deleted.clear();
}

// The user reads in the open thread: scrolled up in it, or with the receipts of one of its
// messages open (the panel shows that message).
const reading = (id: string, s: State): boolean => s.activeId === id && (isScrolledUp(id) || s.receiptsOpen !== null);

// `th` with its newest `keep` sent messages. Not while a page of history is on its way: it
// would leave a hole between itself and what is kept.
function trimmed(th: Thread, keep: number): Thread {
  const drop = sentCount(th.messages) - keep;
  if (drop <= 0 || th.loading) return th;
  const messages = th.messages.slice(drop);
  return { ...th, messages, hasMoreBefore: true, pagedFrom: messages[0]!.order };
}

// `th` with its oldest `keep` sent messages, its newest left out (the view is scrolled up,
// away from them). Only a loaded thread: its first page would join the newest to it.
function withoutNewest(th: Thread, keep: number): Thread {
  const sent = sentCount(th.messages);
  if (sent <= keep || !th.loaded) return th;
  return { ...th, messages: [...th.messages.slice(0, keep), ...th.messages.slice(sent)], hasMoreAfter: true };
}

// `th` to be loaded again from its newest page, its unsent messages kept: a thread that left
// its newest out, once the user leaves it or its view reaches its end. Not while a page of
// history is on its way: it would join the old window to the new one.
export function restarted(th: Thread): Thread {
  return th.loading ? th : { ...emptyThread(), messages: th.messages.slice(sentCount(th.messages)) };
}

// A thread the user reads in, bounded: cut at the end farther from the view (the newest
// when the view is in its older half, the oldest otherwise), which keeps the view's place.
function boundedWhileReading(id: string, th: Thread): Thread {
  const sent = sentCount(th.messages);
  if (sent <= READING_MESSAGES) return th;
  const at = viewAt.id === id && viewAt.order ? orderIndex(th.messages, viewAt.order) : 0;
  return at >= sent / 2 ? trimmed(th, READING_MESSAGES) : withoutNewest(th, READING_MESSAGES);
}

// A thread that has just grown by a live message, trimmed once it holds too many.
export function afterGrowth(id: string, th: Thread, s: State): Thread {
  if (reading(id, s)) return boundedWhileReading(id, th);
  if (sentCount(th.messages) <= KEPT_MESSAGES + TRIM_SLACK) return th;
  return trimmed(th, KEPT_MESSAGES);
}

// The threads once the user leaves the open conversation for `next`.
export function leaving(s: State, next: string | null): State['threads'] {
  const id = s.activeId;
  const th = id && id !== next ? s.threads[id] : undefined;
  if (!id || !th) return s.threads;
  const kept = th.hasMoreAfter ? restarted(th) : trimmed(th, KEPT_MESSAGES);
  return kept === th ? s.threads : { ...s.threads, [id]: kept };
}

// What the page may forget now (every part unchanged is left out).
export function pruned(s: State, now: number): Partial<State> {
  const update: Partial<State> = {};
  const threads = prunedThreads(s);
  if (threads !== s.threads) update.threads = threads;
  const receipts = prunedReceipts(s, threads);
  if (receipts !== s.receipts) update.receipts = receipts;
  receiptLoader.retain((id) => id in receipts);
  const typing = withoutStaleTyping(s.typing, now);
  if (typing !== s.typing) update.typing = typing;
  const presence = prunedPresence(s, now);
  if (presence !== s.presence) update.presence = presence;
  // Read marks and change counts are kept: one small entry per conversation, which may
  // come before the conversation list names it.
  return update;
}

function prunedThreads(s: State): State['threads'] {
  const recent = new Set([...opened].slice(-KEPT_THREADS));
  const next: State['threads'] = {};
  let changed = false;
  for (const [id, th] of Object.entries(s.threads)) {
    const unsent = sentCount(th.messages) < th.messages.length;
    const dropped = id !== s.activeId && !recent.has(id) && !unsent && !th.loading && !id.startsWith('draft:');
    const kept = dropped ? null : keptOf(id, th, s);
    if (kept !== th) changed = true;
    if (kept) next[id] = kept;
  }
  return changed ? next : s.threads;
}

// What the page keeps of a thread it does not drop.
function keptOf(id: string, th: Thread, s: State): Thread {
  if (reading(id, s)) return boundedWhileReading(id, th);
  return th.hasMoreAfter && id !== s.activeId ? restarted(th) : trimmed(th, KEPT_MESSAGES);
}

// Messages past their expiry (a disappearing message, a conversation's ttl) taken off the
// threads and the list's previews: the node tells no event when one expires, and a tab left
// open must not keep showing what its sender meant to go.
export function withoutExpired(s: State, now: number): Partial<State> {
  const gone = (m: ChatMessage | null): boolean => Boolean(m && m.expiresAtMs && m.expiresAtMs <= now);
  const update: Partial<State> = {};
  let threads: State['threads'] | null = null;
  for (const [id, th] of Object.entries(s.threads)) {
    if (!th.messages.some(gone)) continue;
    threads ??= { ...s.threads };
    threads[id] = { ...th, messages: th.messages.filter((m) => !gone(m)) };
  }
  if (threads) update.threads = threads;
  // A preview that expired loses its content, not its place: its order still tells a
  // redelivered message from a new one (isNewer).
  let conversations: State['conversations'] | null = null;
  for (const [id, c] of Object.entries(s.conversations)) {
    if (!c.lastMessage || !gone(c.lastMessage)) continue;
    conversations ??= { ...s.conversations };
    conversations[id] = { ...c, lastMessage: withoutContent(c.lastMessage) };
  }
  if (conversations) update.conversations = conversations;
  // The receipts panel of a message that went closes (it would keep the thread whole).
  if (s.receiptsOpen && threads && !Object.values(threads).some((th) => th.messages.some((m) => m.id === s.receiptsOpen)))
    update.receiptsOpen = null;
  return update;
}

function prunedReceipts(s: State, threads: State['threads']): State['receipts'] {
  const ids = Object.keys(s.receipts);
  if (ids.length <= KEPT_RECEIPTS) return s.receipts;
  const held = new Set<string>();
  for (const th of Object.values(threads)) for (const m of th.messages) if (m.id && m.from === s.userId) held.add(m.id);
  const others = ids.filter((id) => !held.has(id)).map((id) => [idOrder(id), id] as const);
  if (others.length <= KEPT_RECEIPTS) return s.receipts;
  others.sort((a, b) => (a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0)); // newest first
  const next = { ...s.receipts };
  for (const [, id] of others.slice(KEPT_RECEIPTS)) delete next[id];
  return next;
}

// Typing shown until its time, and no conversation left with nobody typing.
export function withoutStaleTyping(typing: State['typing'], now: number): State['typing'] {
  let stale = false;
  const next: State['typing'] = {};
  for (const [conv, users] of Object.entries(typing)) {
    const live = Object.entries(users).filter(([, until]) => until > now);
    if (live.length !== Object.keys(users).length || live.length === 0) stale = true;
    if (live.length > 0) next[conv] = live.length === Object.keys(users).length ? users : Object.fromEntries(live);
  }
  return stale ? next : typing;
}

function prunedPresence(s: State, now: number): State['presence'] {
  const peers = new Set(Object.values(s.conversations).map((c) => c.peer));
  const kept = Object.entries(s.presence).filter(([user, p]) => peers.has(user) || now - p.heardAtMs < STRAY_PRESENCE_MS);
  return kept.length === Object.keys(s.presence).length ? s.presence : Object.fromEntries(kept);
}
