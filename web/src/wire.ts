// Shapes of what the node sends, in Protobuf's JSON mapping (proto/client.proto): 64-bit
// numbers are strings of decimal digits, enums their names.

export interface WireMessage {
  id: string;
  conversation_id: string;
  from: string;
  to: string;
  client_id: string;
  sent_at_ms: string;
  body: { text?: string; content?: unknown; attachments?: WireAttachment[] };
  expires_at_ms: string;
  delivered_at_ms: string;
  read_at_ms: string;
}

// A file carried by a message (PROTOCOL.md, "Attachments in messages"). In a send only
// asset_id and name count; the node fills in the rest from the asset. size is 64-bit: a
// string of digits from the node.
export interface WireAttachment {
  asset_id: string;
  name?: string;
  content_type?: string;
  size?: string | number;
  width?: number;
  height?: number;
  thumbnail_id?: string;
  duration_ms?: number;
}

// A send's body: text, and files by asset id (and name) only; the node fills in the rest.
export interface SendBody { text: string; attachments?: Pick<WireAttachment, 'asset_id' | 'name'>[] }

export interface Receipt {
  message_id: string;
  conversation_id: string;
  status: 'DELIVERED' | 'READ' | 'UNDELIVERABLE' | string;
  by: string;
  at_ms: string;
  recipients: number;
  delivered_count: number;
  read_count: number;
}
export interface ReadMark { conversation_id: string; message_id: string; at_ms: string }
export interface Deleted { message_id: string; conversation_id: string; by: string }
export interface ConversationChange {
  conversation_id: string;
  version: string;
  kind: string;
  by: string;
  users: string[];
  title: string;
  // Set when home made the change by itself (`by` empty): "user_not_found" on the removal of
  // a member whose region has no such account.
  reason?: string;
}
// The group's home region refused a change asked for through this region (202 queued),
// wholly (`code`) or for some members of an add (`failed`).
export interface RequestRefused {
  conversation_id: string;
  request_id: string;
  code: string;
  message: string;
  failed: { user_id: string; code: string; message: string }[];
  at_ms: string;
}
export interface Presence { user_id: string; state: 'ONLINE' | 'OFFLINE' | string; last_seen_ms: string }
export interface TypingNotice { from: string; conversation_id: string; active: boolean }
export interface Accepted {
  client_id: string; message_id: string; conversation_id: string; sent_at_ms: string; duplicate: boolean;
  expires_at_ms?: string; // (nodes before 2026-12-07 leave it out)
}
export type Target = { to: string } | { conversation_id: string };

export type LiveEvent =
  | { type: 'status'; online: boolean }
  | { type: 'message'; message: WireMessage }
  | { type: 'receipt'; receipt: Receipt }
  | { type: 'read_mark'; mark: ReadMark }
  | { type: 'deleted'; deleted: Deleted }
  | { type: 'conversation_change'; change: ConversationChange }
  | { type: 'request_refused'; refused: RequestRefused }
  | { type: 'presence'; presence: Presence }
  | { type: 'typing'; typing: TypingNotice }
  | { type: 'accepted'; accepted: Accepted }
  | { type: 'send_failed'; clientId: string; code: string; message: string }
  // The node refused a read (an error frame for it; not rate_limited, which live.ts sends again).
  | { type: 'read_refused'; conversationId: string; messageId: string; code: string }
  | { type: 'error'; code: string; message: string };
