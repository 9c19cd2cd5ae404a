// Pure helpers over messages and conversations: conversion from the wire, one-line
// previews. (A thread's order is threadOrder.ts's; an own message's state receipts.ts's.)
import type { ConversationSummary, WireMessage } from './api';
import { idOrder } from './ids';
import type { ChatMessage, Conversation, Thread } from './store';
import { orderIndex, sentCount } from './threadOrder';
import type { WireAttachment } from './wire';

const num = (s: string | number | undefined): number => Number(s ?? 0) || 0;

export function fromWire(m: WireMessage): ChatMessage {
  return {
    key: m.id,
    id: m.id,
    order: idOrder(m.id),
    conversationId: m.conversation_id,
    from: m.from,
    clientId: m.client_id,
    sentAtMs: num(m.sent_at_ms),
    text: m.body?.text ?? '',
    attachments: m.body?.attachments ?? [],
    deliveredAtMs: num(m.delivered_at_ms),
    readAtMs: num(m.read_at_ms),
    expiresAtMs: num(m.expires_at_ms),
  };
}

export function localMessage(
  conversationId: string, from: string, clientId: string, text: string, attachments: WireAttachment[] = [],
): ChatMessage {
  return {
    key: `local:${clientId}`,
    id: null,
    order: '',
    conversationId,
    from,
    clientId,
    sentAtMs: Date.now(),
    text,
    attachments,
    deliveredAtMs: 0,
    readAtMs: 0,
    expiresAtMs: 0,
  };
}

// A thread whose older history is not all loaded holds nothing older than the oldest
// message history gave it or trimming kept (`bound`, '' for none: Thread.pagedFrom). A live
// event older than that (a new device's backlog streaming in while the conversation opens)
// would otherwise sit above a hole that paging back never fills, as paging asks for what is
// before the oldest message shown; paging brings it in its turn. Unsent messages stay.
export function withoutHole(list: ChatMessage[], bound: string): ChatMessage[] {
  if (!bound) return list;
  const from = orderIndex(list, bound);
  return from === 0 ? list : list.slice(from);
}

// A thread that left its newest messages out (Thread.hasMoreAfter) takes no live message
// past the newest it holds: it would sit below a hole, which only the view's return to the
// newest fills.
export function pastEnd(th: Thread, m: ChatMessage): boolean {
  if (!th.hasMoreAfter) return false;
  const sent = sentCount(th.messages);
  return sent === 0 || m.order > th.messages[sent - 1]!.order;
}

// A message that went (expired, or deleted for everyone) as a preview: its content goes, its
// place stays, as its order still tells a redelivered message from a new one (isNewer).
export const withoutContent = (m: ChatMessage): ChatMessage => ({ ...m, text: '', attachments: [], expiresAtMs: 0, gone: true });

export function fromSummary(c: ConversationSummary): Conversation {
  return {
    id: c.id,
    kind: c.kind,
    title: c.title || c.peer || c.id,
    peer: c.kind === 'direct' ? (c.peer ?? null) : null,
    memberCount: c.member_count,
    member: c.member,
    lastMessage: c.last_message ? fromWire(c.last_message) : null,
    lastActivityMs: num(c.last_activity_ms),
    unread: c.unread_count,
    readMark: c.read_mark,
    muted: Boolean(c.muted),
  };
}

// A conversation known only from a live event, until the list is fetched again.
export function fromEvent(m: ChatMessage, to: string, me: string): Conversation {
  const direct = !m.conversationId.startsWith('g');
  const peer = direct ? (m.from === me ? to : m.from) : null;
  return {
    id: m.conversationId,
    kind: direct ? 'direct' : 'group',
    title: peer ?? m.conversationId,
    peer,
    memberCount: direct ? 2 : 0,
    member: true,
    lastMessage: m,
    lastActivityMs: m.sentAtMs,
    unread: 0,
    readMark: null,
    muted: false,
  };
}

// A message in one line: its text, else its first file's name (or the given word).
export function preview(m: ChatMessage | null, attachmentText: string): string {
  if (!m) return '';
  const text = m.text.replace(/\s+/g, ' ').trim();
  const first = m.attachments[0];
  return text || (first ? first.name || attachmentText : '');
}
