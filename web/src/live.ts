// The live stream (docs/PROTOCOL.md, "Live stream"): one WebSocket to /v1/ws on the page's
// own host, JSON subprotocol, an `auth` frame first (tokens never go into URLs).
//
// Invariants:
// - lastSeq is the highest mailbox seq whose event every subscriber has processed; it is
//   what we acknowledge and resume after, never more (auth.after_seq acknowledges too).
// - The outbox holds every send not yet `accepted`; it is resent with the same client_id
//   after each reconnect, so a send whose answer was lost is stored once.
import { accessToken, ApiError } from './api';
import * as session from './session';
import { KeepAlive } from './keepAlive';
import { noteNodeTime } from './nodeClock';
import { Reconnect } from './reconnect';
import { storage } from './storage';
import { TokenRefresh } from './tokenRefresh';
import type { Accepted, LiveEvent, SendBody, Target, WireMessage } from './wire';

interface Outgoing { clientId: string; payload: Record<string, unknown>; timer?: number }

const SEND_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 15_000;
const SEEN_LIMIT = 5000;
const MAX_SEND_FRAME_BYTES = 60_000; // under the node's frame limit (256 KiB by default; an operator may lower it)
const MAX_READS_KEPT = 32; // reads whose refusal is still awaited (the newest)
const AUTH_CODES = new Set(['invalid_token', 'token_expired', 'session_revoked', 'user_disabled']);

export class Live {
  private ws: WebSocket | null = null;
  private stopped = true;
  private ackTimer = 0;
  private authed = false;
  private notBefore = 0; // no stream before then (Date.now() ms): the node's 4029 and 4011 waits
  private lastSeq: bigint;
  private ackedSeq = 0n;
  private nextRef = 1;
  private lastError = '';
  private readonly sends = new Map<string, string>(); // ref -> client_id
  // The latest reads sent (a read has no answer unless refused): ref -> what it marked.
  private readonly reads = new Map<string, { conversationId: string; messageId: string }>();
  private readRetry: ReturnType<typeof setTimeout> | undefined;
  private readonly readsRefused = new Map<string, string>(); // conversation -> message id
  private readonly outbox = new Map<string, Outgoing>();
  private readonly seen = new Set<string>();
  private readonly listeners = new Set<(e: LiveEvent) => void>();
  private readonly seqKey: string;
  private unTokens: (() => void) | null = null;
  private usedToken = ''; // the access token the current (or last) connection presented
  private freshToken = ''; // the one last refreshed because a connection's was refused
  private readonly refresh = new TokenRefresh(() => this.stopped);
  private readonly reconnect = new Reconnect(() => void this.connect(), () => this.stopped);
  private readonly keepAlive = new KeepAlive(() => this.frame({ ping: {} }, String(this.nextRef++)), () => this.onClose(1006));

  constructor(userId: string) {
    this.seqKey = `petchat.seq.${userId}`;
    const stored = storage.get(this.seqKey);
    this.lastSeq = stored && /^\d+$/.test(stored) ? BigInt(stored) : -1n;
  }

  subscribe(fn: (e: LiveEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.unTokens = session.onTokens((t) => t && this.onTokens());
    window.addEventListener('online', this.wake);
    document.addEventListener('visibilitychange', this.wake);
    window.addEventListener('pagehide', this.persist);
    window.addEventListener('beforeunload', this.warnUnsent);
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.unTokens?.();
    window.removeEventListener('online', this.wake);
    document.removeEventListener('visibilitychange', this.wake);
    window.removeEventListener('pagehide', this.persist);
    window.removeEventListener('beforeunload', this.warnUnsent);
    clearTimeout(this.ackTimer);
    clearTimeout(this.readRetry);
    this.reconnect.cancel();
    this.keepAlive.stop();
    this.refresh.cancel();
    for (const o of this.outbox.values()) clearTimeout(o.timer);
    this.drop();
  }

  // Sends the node has not accepted live only in this page: leaving it asks first (the
  // browser's own "leave the page?" question).
  private readonly warnUnsent = (e: BeforeUnloadEvent): void => {
    if (this.outbox.size === 0) return;
    e.preventDefault();
    e.returnValue = '';
  };

  forgetPosition(): void { // on log out: the next login is a new device
    storage.remove(this.seqKey);
  }

  // Queues a message under its client_id; sending the same client_id again is a retry,
  // which the node answers with the original `accepted` (duplicate) if it stored it.
  send(target: Target, body: SendBody, clientId: string): void {
    const payload = { client_id: clientId, ...target, body };
    // A frame the node cannot take would end the stream (1009) and, resent after every
    // reconnect, end it again: refused here instead.
    if (new TextEncoder().encode(JSON.stringify({ ref: '0', send: payload })).length > MAX_SEND_FRAME_BYTES) {
      this.emit({ type: 'send_failed', clientId, code: 'body_too_large', message: '' });
      return;
    }
    this.outbox.set(clientId, { clientId, payload });
    this.transmit(clientId);
    // Someone is waiting on it: a stream that is down is tried now, not after the back-off.
    if (!this.authed) this.wake();
  }

  // False when not connected: nothing was sent. A read the node refuses for the user's rate
  // (it counts as a send) is sent again a second later, without a word to the user; any
  // other refusal is told (read_refused: the page's badge goes back to the node's count).
  read(conversationId: string, messageId: string): boolean {
    const ref = String(this.nextRef++);
    if (!this.frame({ read: { conversation_id: conversationId, message_id: messageId } }, ref)) return false;
    this.reads.set(ref, { conversationId, messageId });
    if (this.reads.size > MAX_READS_KEPT) this.reads.delete(this.reads.keys().next().value as string);
    return true;
  }

  typing(target: Target, active: boolean): boolean {
    return this.frame({ typing: { ...target, active } });
  }

  // A listener that throws costs only its own handling of that event: the others get it,
  // and the stream's position goes on (else a later event's cumulative ack would cover it).
  private emit(e: LiveEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        console.error('petchat: handling a live event failed', err);
      }
    }
  }

  private frame(body: Record<string, unknown>, ref?: string): boolean {
    if (!this.ws || !this.authed || this.ws.readyState !== WebSocket.OPEN) return false; // not connected
    this.ws.send(JSON.stringify(ref ? { ref, ...body } : body));
    return true;
  }

  private transmit(clientId: string): void {
    const o = this.outbox.get(clientId);
    if (!o) return;
    clearTimeout(o.timer);
    const ref = String(this.nextRef++);
    if (this.frame({ send: o.payload }, ref)) this.sends.set(ref, clientId);
    // Not accepted in time, connected or not: show it as failed; the outbox keeps it, so a
    // reconnect still resends it and an `accepted` that comes later still counts.
    o.timer = window.setTimeout(() => {
      if (this.outbox.has(clientId)) this.emit({ type: 'send_failed', clientId, code: 'timeout', message: '' });
    }, SEND_TIMEOUT_MS);
  }

  private readonly wake = (): void => {
    if (this.stopped || this.ws || document.visibilityState === 'hidden' || Date.now() < this.notBefore) return;
    this.reconnect.reset();
    void this.connect();
  };

  private readonly persist = (): void => {
    if (this.lastSeq >= 0n) storage.set(this.seqKey, this.lastSeq.toString());
  };

  private async connect(): Promise<void> {
    if (this.stopped || this.ws) return;
    let token: string;
    try {
      token = await accessToken();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return; // the session ended
      return this.reconnect.schedule();
    }
    if (this.stopped || this.ws) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/v1/ws`, 'petchat.v1.json');
    this.ws = ws;
    this.usedToken = token;
    this.authed = false;
    this.lastError = '';
    ws.onopen = () => {
      const auth: Record<string, string> = { access_token: token };
      if (this.lastSeq >= 0n) auth.after_seq = this.lastSeq.toString();
      ws.send(JSON.stringify({ ref: String(this.nextRef++), auth }));
    };
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') this.onFrame(e.data);
    };
    ws.onclose = (e) => this.onClose(e.code);
    // Some engines report a refused connection only as an error; and a handshake may hang.
    ws.onerror = () => this.ws === ws && this.onClose(1006);
    window.setTimeout(() => this.ws === ws && !this.authed && this.onClose(1006), CONNECT_TIMEOUT_MS);
  }

  // Detaches the socket at once: a dead TCP connection may take minutes to report its close.
  private drop(): void {
    const ws = this.ws;
    this.ws = null;
    this.authed = false;
    this.sends.clear(); // answers to frames of a closed socket never come
    this.keepAlive.stop();
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    ws.close(1000);
  }

  private onClose(code: number): void {
    const wasAuthed = this.authed;
    this.reconnect.closed(wasAuthed);
    if (code === 1009) {
      // A frame too large for the node: the sends in flight are the suspects; failed, not resent.
      for (const clientId of this.sends.values()) {
        clearTimeout(this.outbox.get(clientId)?.timer);
        this.outbox.delete(clientId);
        this.emit({ type: 'send_failed', clientId, code: 'body_too_large', message: '' });
      }
    }
    this.drop();
    this.persist();
    if (wasAuthed) this.emit({ type: 'status', online: false });
    if (this.stopped) return;
    if (code === 4001) {
      if (this.lastError === 'session_revoked' || this.lastError === 'user_disabled') {
        session.endSession(this.lastError);
        return;
      }
      if ((this.lastError === 'token_expired' || this.lastError === 'invalid_token') && this.usedToken !== this.freshToken) {
        // A fresh token, then at once; accessToken ends the session if it cannot. Not when
        // the refused token is the one just refreshed for this: a node that refuses fresh
        // tokens too (a gateway with another key) gets the back-off, not a refresh loop.
        accessToken(true).then(
          (fresh) => {
            this.freshToken = fresh;
            void this.connect();
          },
          () => this.reconnect.schedule(),
        );
        return;
      }
    }
    // 4011: this device opened another stream at the user's limit (another tab of the same
    // session, say): not at once, or two tabs would take turns ending each other.
    const wait = code === 4029 ? 30_000 : code === 4011 ? 60_000 : 0;
    this.notBefore = Date.now() + wait; // (coming online or into view does not cut it short)
    this.reconnect.schedule(wait);
  }

  private onTokens(): void {
    const t = session.tokens();
    if (t && this.ws && this.authed && this.frame({ auth: { access_token: t.access_token } }, String(this.nextRef++)))
      this.usedToken = t.access_token;
    this.refresh.schedule();
  }

  private onFrame(text: string): void {
    let f: Record<string, any>;
    try {
      f = JSON.parse(text);
    } catch {
      return; // the node sends JSON only; ignore anything else
    }
    this.keepAlive.heard();
    if (f.welcome) return this.onWelcome(f.welcome);
    if (f.event) return this.onEvent(f.event);
    if (f.accepted) {
      const a = f.accepted as Accepted;
      const o = this.outbox.get(a.client_id);
      clearTimeout(o?.timer);
      this.outbox.delete(a.client_id);
      this.sends.delete(String(f.ref));
      return this.emit({ type: 'accepted', accepted: a });
    }
    if (f.presence) return this.emit({ type: 'presence', presence: f.presence });
    if (f.typing) return this.emit({ type: 'typing', typing: f.typing });
    if (f.error) return this.onError(String(f.ref ?? '0'), f.error.code, f.error.message ?? '');
  }

  private onWelcome(w: { resume_after: unknown; server_time_ms?: string }): void {
    if (this.authed) return noteNodeTime(Number(w.server_time_ms ?? 0) || 0); // a fresh token on the open stream
    // Not the welcome the protocol gives (its position a string of digits): dropped, and
    // tried again later, never taken as a position (BigInt('') is 0: every event again).
    if (typeof w.resume_after !== 'string' || !/^\d+$/.test(w.resume_after)) return this.onClose(1002);
    noteNodeTime(Number(w.server_time_ms ?? 0) || 0); // (nodes before 2026-12-07 leave it out)
    const resume = BigInt(w.resume_after);
    this.authed = true;
    this.reconnect.up();
    // A token refreshed while this stream was being set up is given to it now (else it is
    // closed when the older one runs out, and connects again).
    if (session.tokens()?.access_token !== this.usedToken) this.onTokens();
    this.lastSeq = resume;
    this.ackedSeq = this.lastSeq;
    this.emit({ type: 'status', online: true });
    this.keepAlive.start();
    this.refresh.schedule();
    for (const clientId of this.outbox.keys()) this.transmit(clientId);
    this.readAgain();
  }

  private onEvent(ev: Record<string, any>): void {
    let seq: bigint;
    try {
      seq = BigInt(ev.seq);
    } catch {
      return; // no event of the protocol's (the node numbers every one)
    }
    if (seq <= this.lastSeq) return; // at-least-once: already processed
    if (ev.message) {
      const m = ev.message as WireMessage;
      if (!this.seen.has(m.id)) {
        this.seen.add(m.id);
        if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value as string);
        this.emit({ type: 'message', message: m });
      }
    } else if (ev.receipt) this.emit({ type: 'receipt', receipt: ev.receipt });
    else if (ev.read_mark) this.emit({ type: 'read_mark', mark: ev.read_mark });
    else if (ev.deleted) this.emit({ type: 'deleted', deleted: ev.deleted });
    else if (ev.conversation_change) this.emit({ type: 'conversation_change', change: ev.conversation_change });
    else if (ev.request_refused) this.emit({ type: 'request_refused', refused: ev.request_refused });
    this.lastSeq = seq;
    this.scheduleAck();
  }

  // Cumulative and batched: one ack for a burst of events.
  private scheduleAck(): void {
    if (this.ackTimer) return;
    this.ackTimer = window.setTimeout(() => {
      this.ackTimer = 0;
      if (this.lastSeq > this.ackedSeq && this.frame({ ack: { seq: this.lastSeq.toString() } })) {
        this.ackedSeq = this.lastSeq;
      }
      this.persist();
    }, 250);
  }

  // The reads refused for the rate, sent again (kept while not connected: the next welcome
  // sends them).
  private readAgain(): void {
    for (const [conversationId, messageId] of [...this.readsRefused]) {
      if (!this.read(conversationId, messageId)) return;
      this.readsRefused.delete(conversationId);
    }
  }

  private onError(ref: string, code: string, message: string): void {
    const read = this.reads.get(ref);
    if (read) {
      this.reads.delete(ref);
      // E.g. a group left meanwhile, a message that went: no notice, but the page's count.
      if (code !== 'rate_limited') return this.emit({ type: 'read_refused', ...read, code });
      this.readsRefused.set(read.conversationId, read.messageId);
      clearTimeout(this.readRetry);
      this.readRetry = setTimeout(() => this.readAgain(), 1000);
      return;
    }
    const clientId = this.sends.get(ref);
    if (clientId) {
      this.sends.delete(ref);
      clearTimeout(this.outbox.get(clientId)?.timer);
      this.outbox.delete(clientId);
      return this.emit({ type: 'send_failed', clientId, code, message });
    }
    if (AUTH_CODES.has(code) || code === 'not_authenticated' || code === 'too_many_streams') {
      // Also on an authenticated stream: a refused fresh token leaves the stream open (and
      // the next connect clears this), but the stream's own token refused is followed by
      // close 4001, which must then refresh at once.
      this.lastError = code;
      return;
    }
    this.emit({ type: 'error', code, message });
  }
}
