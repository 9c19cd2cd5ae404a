// What the user does: open a chat, page back, send, retry, start chats and groups. Glue
// between the REST API, the live stream and the state.
import { forgetAssets } from './assets';
import * as api from './api';
import { applyEvent, updateLocal } from './events';
import { loadHistory, loadNewer, setAfterRetry, setThread } from './history';
import { fullUserId, isUserId, newClientId, regionOf } from './ids';
import { errorText, t } from './i18n';
import { fromAnswer, loadConversations, scheduleList, setAfterListLoad, stopList } from './list';
import { Live } from './live';
import { nodeNow } from './nodeClock';
import { markRead, readRefused, readsAgain, resetReads, rowOnScreen, seesNewest, setReader } from './reads';
import * as receiptLoader from './receiptLoader';
import * as retention from './retention';
import * as session from './session';
import { emptyThread, getState, initialState, setState, type ChatMessage, type Conversation } from './store';
import { fromEvent, fromSummary, fromWire, localMessage } from './thread';
import { mergeMessages, newestWhere } from './threadOrder';
import type { Accepted, SendBody, Target, WireAttachment } from './wire';

let live: Live | null = null;
let sweepTimer = 0;
let pruneTimer = 0;
const PRUNE_EVERY_MS = 30_000;
let typingConv: string | null = null;
let typingAt = 0;

const hooks = {
  refreshList: scheduleList,
  seesNewest,
  loadHistory: (id: string) => void loadHistory(id).then(() => markRead(id)),
};

export { loadHistory, rowOnScreen };
setAfterRetry((id) => markRead(id));
setAfterListLoad((id) => markRead(id));

export function start(): void {
  const tokens = session.tokens();
  if (!tokens || live) return;
  setState(() => ({ ...initialState(), userId: tokens.user_id }));
  const stream = new Live(tokens.user_id);
  live = stream;
  setReader((conversationId, messageId) => stream.read(conversationId, messageId));
  stream.subscribe((e) => {
    applyEvent(e, hooks);
    if (e.type === 'accepted') datedByNode(e.accepted);
    else if (e.type === 'read_refused') readRefused(e.conversationId, e.messageId, e.code);
    else if (e.type === 'status' && e.online) {
      scheduleList();
      readsAgain();
      const active = getState().activeId;
      if (active) markRead(active);
    }
  });
  // The list first, so that the backlog's messages are told apart from those it shows.
  void loadConversations().finally(() => {
    if (live === stream) stream.start();
  });
  sweepTimer = window.setInterval(sweepTyping, 1000);
  pruneTimer = window.setInterval(prune, PRUNE_EVERY_MS);
  document.addEventListener('visibilitychange', onVisible);
  window.addEventListener('focus', onVisible);
}

// The session ended (logged out here or elsewhere, or revoked): the next login is a new
// device, so the stream's position goes too, after the stream (which writes it) stopped.
export function stop(): void {
  live?.stop();
  live?.forgetPosition();
  live = null;
  stopList();
  clearInterval(sweepTimer);
  clearInterval(pruneTimer);
  retention.reset();
  document.removeEventListener('visibilitychange', onVisible);
  window.removeEventListener('focus', onVisible);
  receiptLoader.reset();
  forgetAssets();
  resetReads();
  datedLocally.clear();
  setState(() => initialState());
}

export async function logout(): Promise<void> {
  live?.forgetPosition();
  await api.logout(); // ends the session; the app then stops the chat
}

// The page came back into view, or got the focus: what is on screen is seen now.
function onVisible(): void {
  const active = getState().activeId;
  if (active) markRead(active);
}

// Every second: typing notices that ran out, and messages that expired.
function sweepTyping(): void {
  const typing = getState().typing;
  const next = retention.withoutStaleTyping(typing, Date.now());
  if (next !== typing) setState(() => ({ typing: next }));
  const expired = retention.withoutExpired(getState(), nodeNow());
  if (Object.keys(expired).length > 0) setState(() => expired);
}

// What a tab left open for days may forget (retention.ts).
function prune(): void {
  const update = retention.pruned(getState(), Date.now());
  if (Object.keys(update).length > 0) setState(() => update);
}

export function open(id: string | null): void {
  setState((s) => ({ activeId: id, panelOpen: false, receiptsOpen: null, notice: '', threads: retention.leaving(s, id) }));
  if (!id) return;
  retention.noteOpened(id);
  const th = getState().threads[id];
  if (!th?.loaded) void loadHistory(id).then(() => markRead(id));
  else markRead(id);
}

// The view reached the end of a thread that left its newest out (retention.ts): the next
// page after it (history.ts).
export function showNewer(id: string): void {
  void loadNewer(id);
}

// The conversation `id` names now: a draft becomes a direct conversation once its first
// message is accepted (an upload started in the draft finishes there). Null: gone.
export function resolveId(id: string): string | null {
  const s = getState();
  if (s.conversations[id]) return id;
  if (!id.startsWith('draft:')) return null;
  const peer = id.slice('draft:'.length);
  return Object.values(s.conversations).find((c) => c.kind === 'direct' && c.peer === peer)?.id ?? null;
}

function sendTarget(c: Conversation): Target {
  return c.id.startsWith('draft:') && c.peer ? { to: c.peer } : { conversation_id: c.id };
}

// Text, files (uploaded assets), or both.
export function send(id: string, text: string, attachments: WireAttachment[] = []): void {
  const s = getState();
  const c = s.conversations[id];
  if (!c || !s.userId || !live) return;
  const clientId = newClientId();
  const m = localMessage(id, s.userId, clientId, text, attachments);
  setThread(id, (th) => ({ ...th, messages: mergeMessages(th.messages, [m]) }));
  setState((st) => {
    const cur = st.conversations[id];
    if (!cur) return {};
    // Its place in the list by the node's clock (as the others' are), not the browser's,
    // which may be hours off; the node's time of the message replaces it once accepted.
    const at = Math.max(cur.lastActivityMs, nodeNow());
    dateLocally(clientId, id.startsWith('draft:') ? 0 : cur.lastActivityMs, at);
    return { conversations: { ...st.conversations, [id]: { ...cur, lastActivityMs: at } } };
  });
  live.send(sendTarget(c), bodyOf(m), clientId);
  typing(id, false);
}

// Sends that dated their conversation's activity by the page's reckoning of the node's
// clock (nodeClock.ts: the browser's own until the first welcome), by client_id: the activity
// before, and the one they set.
const DATED_KEPT = 200;
const datedLocally = new Map<string, { before: number; at: number }>();

function dateLocally(clientId: string, before: number, at: number): void {
  datedLocally.set(clientId, { before, at });
  if (datedLocally.size > DATED_KEPT) datedLocally.delete(datedLocally.keys().next().value as string);
}

// A send was accepted: the time the node gave the message dates the conversation, unless
// something dated it anew meanwhile (a newer message).
function datedByNode(a: Accepted): void {
  const dated = datedLocally.get(a.client_id);
  const sentAt = Number(a.sent_at_ms) || 0;
  datedLocally.delete(a.client_id);
  if (!dated || !sentAt) return;
  setState((s) => {
    const c = s.conversations[a.conversation_id];
    if (!c || c.lastActivityMs !== dated.at) return {};
    return { conversations: { ...s.conversations, [c.id]: { ...c, lastActivityMs: Math.max(dated.before, sentAt) } } };
  });
}

function bodyOf(m: ChatMessage): SendBody {
  if (m.attachments.length === 0) return { text: m.text };
  return { text: m.text, attachments: m.attachments.map((a) => (a.name ? { asset_id: a.asset_id, name: a.name } : { asset_id: a.asset_id })) };
}

// Resends a failed message with its own client_id: the node stores it at most once.
export function retry(id: string, key: string): void {
  const s = getState();
  const c = s.conversations[id];
  // A failed message is an unsent one: among the last.
  const m = newestWhere(s.threads[id]?.messages ?? [], (x) => x.key === key);
  if (!c || !m || !live) return;
  updateLocal(m.clientId, (x) => ({ ...x, failed: undefined }));
  live.send(sendTarget(c), bodyOf(m), m.clientId);
}

// At most one "typing" every 3 s while it goes on, and one "stopped".
export function typing(id: string, active: boolean): void {
  const c = getState().conversations[id];
  if (!c || !live || !c.member || id.startsWith('draft:')) return;
  const now = Date.now();
  if (active) {
    if (typingConv === id && now - typingAt < 3000) return;
    typingConv = id;
    typingAt = now;
  } else {
    if (typingConv !== id) return;
    typingConv = null;
  }
  live.typing(c.kind === 'direct' && c.peer ? { to: c.peer } : { conversation_id: id }, active);
}

// Opens the chat with a user, or a draft of it until the first message. Returns an error
// text, or null. Every failure says why (the input keeps what was typed): a draft opened
// after a failed look-up would stand for a chat that may hold history, or a user who is not.
export async function startChat(input: string): Promise<string | null> {
  const me = getState().userId;
  if (!me) return null;
  if (!isUserId(input)) return t.invalidUserId;
  const peer = fullUserId(input, regionOf(me));
  if (peer === me) return t.invalidUserId;
  const existing = Object.values(getState().conversations).find((c) => c.kind === 'direct' && c.peer === peer);
  if (existing) {
    open(existing.id);
    return null;
  }
  let page: api.HistoryPage;
  try {
    const unknown = await unknownPeer(peer, me);
    if (unknown) return unknown;
    // A conversation the list did not show (yet); none: an empty page.
    page = await api.historyWithPeer(peer, 1);
  } catch (err) {
    const e = api.toApiError(err);
    return getState().userId === me ? errorText(e.code, e.message, e.retry_after) : null;
  }
  if (getState().userId !== me) return null; // logged out meanwhile
  const first = page.messages[0];
  if (first) {
    const m = fromWire(first);
    setState((s) => ({ conversations: { [m.conversationId]: fromEvent(m, first.to, me), ...s.conversations } }));
    open(m.conversationId);
    scheduleList();
    return null;
  }
  const id = `draft:${peer}`;
  const draft: Conversation = {
    id, kind: 'direct', title: peer, peer, memberCount: 2, member: true,
    lastMessage: null, lastActivityMs: nodeNow(), unread: 0, readMark: null, muted: false,
  };
  setState((s) => ({
    conversations: { ...s.conversations, [id]: draft },
    threads: { ...s.threads, [id]: { ...emptyThread(), loaded: true } },
  }));
  open(id);
  return null;
}

// Why `peer` cannot be written to, as far as this region can tell, or null. A user of our
// region has a profile (PROTOCOL.md, public profile); one of another region must at least be
// of a region of the federation (a send there is refused: user_not_found). Whether that
// region has such a user only a send to it tells. Network and node failures throw.
async function unknownPeer(peer: string, me: string): Promise<string | null> {
  const region = regionOf(peer);
  if (region === regionOf(me)) {
    await api.userProfile(peer);
    return null;
  }
  const { regions } = await api.regions();
  return regions.some((r) => r.name === region) ? null : t.unknownRegion(region);
}

export function parseMembers(text: string): string[] {
  const me = getState().userId ?? '';
  return text.split(/[\s,;]+/).filter(Boolean).map((x) => fullUserId(x, regionOf(me)));
}

export async function createGroup(title: string, members: string[], clientId: string): Promise<api.MemberFailure[]> {
  const answer = await api.createGroup(title, members, clientId);
  scheduleList();
  // A create asked again after a lost answer, by someone who has left that group since: the
  // answer names the group only (not a member); the list, read again, shows it as it is.
  if (!answer.conversation.member) return answer.failed;
  const c = fromSummary(answer.conversation);
  setState((s) => ({
    // A member's first message may have come live before the answer.
    conversations: { ...s.conversations, [c.id]: fromAnswer(c, s.conversations[c.id], undefined) },
    // (and with it a thread: kept, or loaded by open() if the message came without one)
    threads: { ...s.threads, [c.id]: s.threads[c.id] ?? { ...emptyThread(), loaded: !s.conversations[c.id] } },
  }));
  open(c.id);
  return answer.failed;
}

export const details = api.conversation;

export async function addMembers(id: string, members: string[]): Promise<api.MembersAnswer> {
  const answer = await api.addMembers(id, members);
  scheduleList();
  return answer;
}

// Removes a member, or leaves when userId is our own.
export async function removeMember(id: string, userId: string, successor?: string): Promise<void> {
  await api.removeMember(id, userId, successor);
  if (userId === getState().userId) {
    // A member of another region gets 202 queued: the change event confirms it later.
    setState((s) => {
      const c = s.conversations[id];
      return c ? { panelOpen: false, conversations: { ...s.conversations, [id]: { ...c, member: false } } } : {};
    });
  }
  scheduleList();
}

// Mutes or unmutes a conversation for the user (all their devices: the flag is the node's).
export async function setMuted(id: string, muted: boolean): Promise<void> {
  await api.setMuted(id, muted);
  setState((st) => {
    const c = st.conversations[id];
    return c ? { conversations: { ...st.conversations, [id]: { ...c, muted } } } : {};
  });
}
