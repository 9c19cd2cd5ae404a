// Applies what the live stream reports to the app state.
import { clip, isolate } from './format';
import { errorText, knownErrorText, t } from './i18n';
import { idOrder } from './ids';
import * as receiptLoader from './receiptLoader';
import { applyReceiptEvent } from './receipts';
import { afterGrowth, noteDeleted } from './retention';
import { getState, setState, type ChatMessage, type Conversation, type State } from './store';
import { fromEvent, fromWire, pastEnd, withoutContent, withoutHole } from './thread';
import { isNewer, localIndex, mergeMessages, withoutId } from './threadOrder';
import { countMoved, withoutAsked } from './unread';
import type { Accepted, ConversationChange, LiveEvent, ReadMark, WireMessage } from './wire';

// A refusal names at most this many members in its notice (a group add may fail for 1,000).
const maxNoticeLines = 20;

export interface EventHooks {
  // The conversation list may be stale (a new group, a change): fetch it again soon.
  refreshList(): void;
  // Whether the user looks at the newest messages of this conversation now: a message that
  // comes is seen as it is drawn (its row coming on screen sends the read: reads.ts), so it
  // is not counted as unread.
  seesNewest(conversationId: string): boolean;
  // A draft became this conversation: load its history (the peer may have written meanwhile).
  loadHistory(conversationId: string): void;
}

const ANNOUNCED_CHARS = 140;

const TYPING_SHOWN_MS = 6000;

export function applyEvent(e: LiveEvent, hooks: EventHooks): void {
  switch (e.type) {
    case 'status':
      return setState(() => ({ online: e.online }));
    case 'message':
      return onMessage(e.message, hooks);
    case 'accepted':
      return onAccepted(e.accepted, hooks);
    case 'send_failed':
      return updateLocal(e.clientId, (m) => ({ ...m, failed: { code: e.code, message: e.message } }));
    case 'receipt':
      return applyReceiptEvent(e.receipt);
    case 'read_mark':
      return onReadMark(e.mark, hooks);
    case 'read_refused':
      return; // (chat.ts hands it to reads.ts)
    case 'deleted':
      noteDeleted(e.deleted.message_id);
      receiptLoader.forget(e.deleted.message_id);
      setState((s) => onDeleted(s, e.deleted.conversation_id, e.deleted.message_id));
      return hooks.refreshList();
    case 'conversation_change':
      return onChange(e.change, hooks);
    case 'request_refused': {
      // Shown as a notice; the list is fetched again (a refused leave left us a member). The
      // refusal comes from the group's home, maybe another region: our own words for its
      // codes, never its free text (a hostile home must not write a notice of its choosing).
      const title = getState().conversations[e.refused.conversation_id]?.title ?? e.refused.conversation_id;
      const why = e.refused.code ? [t.requestRefused(isolate(title), knownErrorText(e.refused.code))] : [];
      const failed = e.refused.failed ?? [];
      const members = failed.slice(0, maxNoticeLines).map((f) => t.notAdded(f.user_id, knownErrorText(f.code)));
      if (failed.length > maxNoticeLines) members.push(t.andMore(failed.length - maxNoticeLines));
      setState(() => ({ notice: [...why, ...members].join('\n') }));
      return hooks.refreshList();
    }
    case 'presence': {
      const p = e.presence;
      const seen = { online: p.state === 'ONLINE', lastSeenMs: Number(p.last_seen_ms) || 0, heardAtMs: Date.now() };
      return setState((s) => ({ presence: { ...s.presence, [p.user_id]: seen } }));
    }
    case 'typing':
      return setState((s) => {
        const n = e.typing;
        const convId = n.conversation_id || directWith(s, n.from)?.id;
        if (!convId) return {};
        const users = { ...(s.typing[convId] ?? {}) };
        if (n.active) users[n.from] = Date.now() + TYPING_SHOWN_MS;
        else delete users[n.from];
        return { typing: { ...s.typing, [convId]: users } };
      });
    case 'error':
      return setState(() => ({ notice: errorText(e.code, e.message) }));
  }
}

// The node stored a read mark (confirming a read of ours, or another device's): the count
// after it, as far as the page can tell (unread.ts, countMoved), and a read of ours up to it
// is the node's now. Where the page cannot tell (a thread that holds neither end of what
// the mark passed over, or none), the list is fetched again for the node's count.
function onReadMark(r: ReadMark, hooks: EventHooks): void {
  let unknown = false;
  setState((s) => {
    const c = s.conversations[r.conversation_id];
    if (!c) return {};
    const mark = idOrder(r.message_id);
    const old = c.readMark ? idOrder(c.readMark) : '';
    const asked = s.readsAsked[c.id];
    const readsAsked = asked && asked.order <= mark ? withoutAsked(s.readsAsked, c.id) : s.readsAsked;
    // Marks of several devices may cross: an older one never moves the mark back.
    if (old >= mark) return readsAsked === s.readsAsked ? {} : { readsAsked };
    let unread = 0;
    if (c.lastMessage && c.lastMessage.order > mark) {
      const moved = countMoved(s.threads[c.id], c.unread, true, old, mark, s.userId);
      // Our own read: the count worked out for it (what came live since counted in).
      if (!moved.exact && asked?.order === mark && asked.exact) unread = asked.unread;
      else {
        unread = moved.unread;
        unknown = !moved.exact;
      }
    }
    return { readsAsked, conversations: { ...s.conversations, [c.id]: { ...c, unread, readMark: r.message_id } } };
  });
  if (unknown) hooks.refreshList();
}

// A message deleted for everyone goes from its thread, and from the list's preview (which
// keeps its place: withoutContent).
function onDeleted(s: State, conversationId: string, messageId: string): Partial<State> {
  const update: Partial<State> = {};
  const thread = s.threads[conversationId];
  if (thread) {
    const messages = withoutId(thread.messages, messageId);
    if (messages !== thread.messages) update.threads = { ...s.threads, [conversationId]: { ...thread, messages } };
  }
  const c = s.conversations[conversationId];
  if (c?.lastMessage?.id === messageId) {
    update.conversations = { ...s.conversations, [conversationId]: { ...c, lastMessage: withoutContent(c.lastMessage) } };
  }
  return update;
}

function directWith(s: State, peer: string): Conversation | undefined {
  return Object.values(s.conversations).find((c) => c.kind === 'direct' && c.peer === peer);
}

function onMessage(w: WireMessage, hooks: EventHooks): void {
  const m = fromWire(w);
  const s = getState();
  const known = s.conversations[m.conversationId];
  const incoming = m.from !== s.userId;
  // At least once: a message older than what the list showed is not new.
  const fresh = !known || isNewer(m, known.lastMessage);
  const seen = hooks.seesNewest(m.conversationId);
  setState((st) => {
    const conv = st.conversations[m.conversationId] ?? fromEvent(m, w.to, st.userId ?? '');
    const readMark = conv.readMark ? idOrder(conv.readMark) : '';
    const counts = incoming && fresh && !seen && m.order > readMark;
    const next: Conversation = {
      ...conv,
      lastMessage: fresh ? m : conv.lastMessage,
      lastActivityMs: fresh ? Math.max(conv.lastActivityMs, m.sentAtMs) : conv.lastActivityMs,
      unread: conv.unread + (counts ? 1 : 0),
    };
    const thread = st.threads[m.conversationId];
    const typing = st.typing[m.conversationId];
    const update: Partial<State> = { conversations: { ...st.conversations, [m.conversationId]: next } };
    // A read of ours on its way counts it too, if it is past it.
    const asked = st.readsAsked[m.conversationId];
    if (counts && asked && m.order > asked.order) {
      update.readsAsked = { ...st.readsAsked, [m.conversationId]: { ...asked, unread: asked.unread + 1 } };
    }
    if (thread && !pastEnd(thread, m)) {
      const messages = withoutHole(mergeMessages(thread.messages, [m]), thread.hasMoreBefore ? thread.pagedFrom : '');
      if (messages !== thread.messages) {
        update.threads = { ...st.threads, [m.conversationId]: afterGrowth(m.conversationId, { ...thread, messages }, st) };
      }
    }
    if (typing?.[m.from]) {
      const users = { ...typing };
      delete users[m.from];
      update.typing = { ...st.typing, [m.conversationId]: users };
    }
    if (incoming && fresh && !conv.muted) {
      update.announcement = t.newMessageFrom(m.from, clip(m.text || m.attachments[0]?.name || t.attachment, ANNOUNCED_CHARS));
    }
    return update;
  });
  if (!known) hooks.refreshList();
}

// Applies a change to the unsent local message with this client_id, wherever it is.
// The unsent own message with this client_id, changed (in whichever thread holds it).
export function updateLocal(clientId: string, change: (m: ChatMessage) => ChatMessage): void {
  setState((s) => {
    for (const [id, thread] of Object.entries(s.threads)) {
      const i = localIndex(thread.messages, clientId);
      if (i < 0) continue;
      const messages = thread.messages.slice();
      messages[i] = change(messages[i]!);
      return { threads: { ...s.threads, [id]: { ...thread, messages } } };
    }
    return {};
  });
}

function onAccepted(a: Accepted, hooks: EventHooks): void {
  let promoted = false;
  setState((s) => {
    const entry = Object.entries(s.threads).find(([, th]) => localIndex(th.messages, a.client_id) >= 0);
    if (!entry) return {};
    const [key, thread] = entry;
    const local = thread.messages[localIndex(thread.messages, a.client_id)]!;
    const sent: ChatMessage = {
      ...local,
      key: a.message_id,
      id: a.message_id,
      order: idOrder(a.message_id),
      conversationId: a.conversation_id,
      sentAtMs: Number(a.sent_at_ms) || local.sentAtMs,
      expiresAtMs: Number(a.expires_at_ms ?? 0) || 0,
      failed: undefined,
    };
    const threads = { ...s.threads };
    const conversations = { ...s.conversations };
    const composing = { ...s.composing };
    const uploads = { ...s.uploads };
    let activeId = s.activeId;
    let target = threads[a.conversation_id] ?? thread;
    // The first message of a new direct chat: the draft becomes the conversation.
    if (key !== a.conversation_id) {
      delete threads[key];
      const draft = conversations[key];
      delete conversations[key];
      if (draft && !conversations[a.conversation_id]) conversations[a.conversation_id] = { ...draft, id: a.conversation_id };
      if (activeId === key) activeId = a.conversation_id;
      // What was typed meanwhile stays in the composer of the conversation.
      if (composing[key] !== undefined) {
        if (!composing[a.conversation_id]) composing[a.conversation_id] = composing[key];
        delete composing[key];
      }
      // And a file upload started in the draft (upload.ts sends it here when done).
      if (uploads[key] && !uploads[a.conversation_id]) uploads[a.conversation_id] = uploads[key];
      delete uploads[key];
      // Not loaded: what the peer sent before our first message was accepted is fetched.
      target = { ...(threads[a.conversation_id] ?? thread), loaded: false };
      promoted = true;
      target = { ...target, messages: mergeMessages(target.messages, thread.messages.filter((m) => m.key !== local.key)) };
    }
    // The stored copy takes the local one's place (mergeMessages: same sender and client_id).
    threads[a.conversation_id] = { ...target, messages: mergeMessages(target.messages, [sent]) };
    const conv = conversations[a.conversation_id];
    if (conv && isNewer(sent, conv.lastMessage)) {
      conversations[a.conversation_id] = { ...conv, lastMessage: sent, lastActivityMs: Math.max(conv.lastActivityMs, sent.sentAtMs) };
    }
    return { threads, conversations, activeId, composing, uploads };
  });
  if (promoted) hooks.loadHistory(a.conversation_id);
}

function onChange(c: ConversationChange, hooks: EventHooks): void {
  setState((s) => {
    const conv = s.conversations[c.conversation_id];
    const gone = (c.kind === 'MEMBER_REMOVED' || c.kind === 'MEMBER_LEFT') && c.users.includes(s.userId ?? '');
    const changed = { ...s.changed, [c.conversation_id]: (s.changed[c.conversation_id] ?? 0) + 1 };
    if (!conv) return { changed };
    const next = { ...conv, member: gone ? false : conv.member, title: c.title || conv.title };
    return { changed, conversations: { ...s.conversations, [c.conversation_id]: next } };
  });
  if (c.kind === 'MEMBER_REMOVED' && !c.by) {
    // Removed by the group's home itself (a name of another region that turned out not to
    // exist there, one who takes adds only from contacts...): say why it went.
    const title = getState().conversations[c.conversation_id]?.title ?? c.conversation_id;
    const line = (u: string) =>
      c.reason === 'user_not_found' ? t.removedNoAccount(isolate(title), u) : t.removedByHome(isolate(title), u, knownErrorText(c.reason ?? ''));
    setState(() => ({ notice: c.users.slice(0, maxNoticeLines).map(line).join('\n') }));
  }
  hooks.refreshList();
}
