// The app's state: one immutable snapshot, replaced on every change, and a hook that
// re-renders a component when the part it selects changes.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { WireAttachment } from './wire';

export type OwnState = 'sending' | 'sent' | 'delivered' | 'read' | 'failed';

export interface ChatMessage {
  // The message id once the node gave one, else "local:<client_id>".
  key: string;
  id: string | null;
  order: string; // idOrder(id): compares in the node's order; "" while unsent
  conversationId: string;
  from: string;
  clientId: string;
  sentAtMs: number;
  text: string;
  attachments: WireAttachment[];
  deliveredAtMs: number;
  readAtMs: number;
  // When it disappears (the node's clock; 0: never): taken off the page then (chat.ts),
  // as the node sends no event when a message expires.
  expiresAtMs: number;
  // Own messages while unsent: failed (with the reason) or still going out.
  failed?: { code: string; message: string };
  // A list preview of a message that went (deleted for everyone, expired): its place kept,
  // its content gone (thread.ts, withoutContent).
  gone?: boolean;
}

export interface Conversation {
  id: string; // "draft:<peer>" until the first message creates the direct conversation
  kind: 'direct' | 'group';
  title: string;
  peer: string | null;
  memberCount: number;
  member: boolean;
  lastMessage: ChatMessage | null;
  lastActivityMs: number;
  unread: number;
  readMark: string | null;
  muted: boolean; // no announcements of its new messages
}

// A file upload of the composer in one conversation (upload.ts).
export interface UploadState {
  names: string; // the files' names, for people
  loaded: number; // bytes sent so far, of total
  total: number;
  error: string; // a failed upload's text; loaded/total are then 0
}

export interface Thread {
  messages: ChatMessage[]; // in the node's order; unsent own messages last
  loaded: boolean;
  loading: boolean;
  hasMoreBefore: boolean;
  // The order of the oldest message held ('' before the first page of history): what history
  // gave, or where retention.ts trimmed the thread. While hasMoreBefore, the thread holds
  // nothing older (thread.ts, withoutHole), and paging back asks for what is before it.
  pagedFrom: string;
  // Newer messages were left out while the user read older ones (retention.ts): no live
  // message past the newest held is added (thread.ts, pastEnd), and the view pages on
  // forward from the newest held once it reaches its end (history.ts, loadNewer).
  hasMoreAfter: boolean;
  // After a failed load of older history: no new attempt before this time (ms).
  olderRetryAt: number;
}

// One recipient's receipts of an own message, in ms since the epoch (0: not yet).
export interface MemberReceipt {
  deliveredAtMs: number;
  readAtMs: number;
}

// What the sender knows about one own message from receipts (receipts.ts).
export interface ReceiptState {
  members: Record<string, MemberReceipt>; // by user id: receipt events and GET …/receipts
  recipientIds: string[]; // every recipient, in the group's order, once GET …/receipts answered
  recipients: number; // how many it went to; 0 while unknown
  deliveredCount: number; // count receipts (large groups) and GET …/receipts
  readCount: number;
  undeliverable: boolean;
}

// A member's READ of an own message covers every earlier own message in the conversation.
export interface ReadUpTo {
  order: string; // idOrder of the newest own message they read
  atMs: number;
}

// A read the user made (reads.ts) that the node has not confirmed yet: the newest message of
// others it names, and the count of what is unread after it, which the badge shows meanwhile.
export interface ReadAsked {
  id: string;
  order: string;
  unread: number;
  exact: boolean; // false: the thread could not tell all of it (unread.ts, countMoved)
}

export interface PresenceState {
  online: boolean;
  lastSeenMs: number;
  heardAtMs: number; // when the frame came: a user who is no chat's peer is forgotten after a while
}

export interface State {
  userId: string | null;
  online: boolean;
  // Conversation.readMark and .unread are the node's (list answers, read_mark events, what
  // came live); the user's reads the node has not confirmed yet are here, by conversation.
  conversations: Record<string, Conversation>;
  readsAsked: Record<string, ReadAsked>;
  threads: Record<string, Thread>;
  receipts: Record<string, ReceiptState>; // by message id
  readUpTo: Record<string, Record<string, ReadUpTo>>; // conversation -> member -> newest read
  presence: Record<string, PresenceState>;
  typing: Record<string, Record<string, number>>; // conversation -> user -> until (ms)
  uploads: Record<string, UploadState>; // by conversation
  composing: Record<string, string>; // unsent text of the composer, by conversation
  changed: Record<string, number>; // conversation -> count of changes seen live
  activeId: string | null;
  panelOpen: boolean; // the group's members
  receiptsOpen: string | null; // the own message whose receipts per member are shown
  announcement: string;
  notice: string;
}

export const initialState = (): State => ({
  userId: null,
  online: false,
  conversations: {},
  readsAsked: {},
  threads: {},
  receipts: {},
  readUpTo: {},
  presence: {},
  typing: {},
  uploads: {},
  composing: {},
  changed: {},
  activeId: null,
  panelOpen: false,
  receiptsOpen: null,
  announcement: '',
  notice: '',
});

let state: State = initialState();
const listeners = new Set<() => void>();

export const getState = (): State => state;

export function setState(update: (s: State) => Partial<State>): void {
  state = { ...state, ...update(state) };
  for (const l of listeners) l();
}

// Calls `listener` after every change until the returned function is called.
export function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => void listeners.delete(listener);
}

// Selectors should return parts of the state as they are (not new arrays), so that an
// unrelated change does not re-render.
export function useStore<T>(select: (s: State) => T): T {
  const selectRef = useRef(select);
  selectRef.current = select;
  const value = select(state);
  const last = useRef(value);
  last.current = value;
  const [, rerender] = useState(0);
  useEffect(() => {
    const check = () => {
      if (!Object.is(selectRef.current(state), last.current)) rerender((n) => n + 1);
    };
    listeners.add(check);
    check();
    return () => {
      listeners.delete(check);
    };
  }, []);
  return value;
}

export const emptyThread = (): Thread => ({
  messages: [], loaded: false, loading: false, hasMoreBefore: false, pagedFrom: '', hasMoreAfter: false, olderRetryAt: 0,
});

export const emptyReceipts = (): ReceiptState => ({
  members: {},
  recipientIds: [],
  recipients: 0,
  deliveredCount: 0,
  readCount: 0,
  undeliverable: false,
});

// Newest activity first.
export function sortedConversations(conversations: Record<string, Conversation>): Conversation[] {
  return Object.values(conversations).sort((a, b) => b.lastActivityMs - a.lastActivityMs);
}
