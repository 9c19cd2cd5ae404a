// A conversation's history: the newest page when it opens, older pages on scrolling (with
// a back-off after a failure). Group receipts, which history does not carry, are fetched
// for the messages on screen (receiptLoader.ts).
import * as api from './api';
import { errorText } from './i18n';
import { nodeNow } from './nodeClock';
import { isGone } from './retention';
import { emptyThread, getState, setState, type Thread } from './store';
import { fromWire, withoutHole } from './thread';
import { isNewer, mergeMessages, olderOrder, sentCount } from './threadOrder';

const OLDER_RETRY_MIN_MS = 2000;
const OLDER_RETRY_MAX_MS = 60_000;

const olderFailures = new Map<string, number>(); // conversation -> failed older loads in a row
const newerRetryAt = new Map<string, number>(); // conversation -> no newer page before then (ms)
const firstFailures = new Map<string, number>(); // conversation -> failed first loads in a row

// Called after a first page that failed came on a retry (chat.ts: mark it read, as open() does).
let afterRetry: (id: string) => void = () => {};
export function setAfterRetry(fn: (id: string) => void): void {
  afterRetry = fn;
}

// Worth asking again: the network, a limit or the node's trouble, not a refusal.
const transient = (e: api.ApiError): boolean => e.status === 0 || e.status === 429 || e.status >= 500;

export function notice(err: unknown): void {
  const e = err as api.ApiError;
  setState(() => ({ notice: errorText(e.code ?? 'network', e.message, e.retry_after) }));
}

export function setThread(id: string, update: (th: Thread) => Thread): void {
  setState((s) => ({ threads: { ...s.threads, [id]: update(s.threads[id] ?? emptyThread()) } }));
}

export async function loadHistory(id: string, older = false): Promise<void> {
  const th = getState().threads[id] ?? emptyThread();
  if (th.loading || id.startsWith('draft:')) return;
  if (older && Date.now() < th.olderRetryAt) return; // backing off after a failure
  const before = older ? th.messages.find((m) => m.id)?.id ?? undefined : undefined;
  setThread(id, (cur) => ({ ...cur, loading: true }));
  const asked = getState().userId;
  try {
    const page = await api.history(id, before, 50);
    if (getState().userId !== asked) return; // logged out (or someone else logged in) meanwhile
    const paged = page.messages.map(fromWire);
    setThread(id, (cur) => {
      // The page reached as far back as its oldest message, one that went since included.
      const pagedFrom = paged.reduce((o, m) => olderOrder(o, m.order), cur.pagedFrom);
      // Deleted or expired while the page was on its way (events.ts, retention.ts): the page
      // is older than that, and must not bring it back.
      const now = nodeNow();
      const messages = mergeMessages(cur.messages, paged.filter((m) => !isGone(m, now)));
      return {
        messages: withoutHole(messages, page.has_more_before ? pagedFrom : ''),
        loaded: true,
        loading: false,
        hasMoreBefore: page.has_more_before,
        pagedFrom,
        // An older page leaves the newest out as before; a first page is the newest.
        hasMoreAfter: older && cur.hasMoreAfter,
        olderRetryAt: 0,
      };
    });
    if (older) olderFailures.delete(id);
    else firstFailures.delete(id);
  } catch (err) {
    if (getState().userId !== asked) return;
    if (older) {
      // Not again at once (the list asks again on every render while the view is short):
      // after a growing wait, and the thread's change then lets the view ask again.
      const failures = (olderFailures.get(id) ?? 0) + 1;
      olderFailures.set(id, failures);
      const wait = Math.min(OLDER_RETRY_MAX_MS, OLDER_RETRY_MIN_MS * 2 ** (failures - 1));
      setThread(id, (cur) => ({ ...cur, loading: false, olderRetryAt: Date.now() + wait }));
      window.setTimeout(() => {
        const at = getState().threads[id]?.olderRetryAt ?? 0;
        if (at && at <= Date.now()) setThread(id, (cur) => ({ ...cur, olderRetryAt: 0 }));
      }, wait);
    } else {
      // Not loaded: asked again after a growing wait while the conversation is open (and
      // at its next opening), not shown as a conversation without history for good.
      const failures = (firstFailures.get(id) ?? 0) + 1;
      firstFailures.set(id, failures);
      const wait = Math.min(OLDER_RETRY_MAX_MS, OLDER_RETRY_MIN_MS * 2 ** (failures - 1));
      setThread(id, (cur) => ({ ...cur, loading: false, loaded: false }));
      if (transient(api.toApiError(err))) {
        window.setTimeout(() => {
          const s = getState();
          if (s.activeId === id && !s.threads[id]?.loaded) void loadHistory(id).then(() => afterRetry(id));
        }, wait);
      }
    }
    notice(err);
  }
}

// The page after the newest message a thread holds, while it left newer ones out
// (Thread.hasMoreAfter): the view reached its end and goes on from there, so that every
// message between comes on screen (and is read) in its turn. The view keeps its place as
// the page is added below it (MessageList).
export async function loadNewer(id: string): Promise<void> {
  const th = getState().threads[id];
  if (!th?.hasMoreAfter || th.loading || Date.now() < (newerRetryAt.get(id) ?? 0)) return;
  const after = th.messages[sentCount(th.messages) - 1]?.id;
  if (!after) return;
  setThread(id, (cur) => ({ ...cur, loading: true }));
  const asked = getState().userId;
  try {
    const page = await api.history(id, undefined, 50, after);
    if (getState().userId !== asked) return;
    newerRetryAt.delete(id);
    const paged = page.messages.map(fromWire);
    setThread(id, (cur) => {
      const now = nodeNow();
      const messages = mergeMessages(cur.messages, paged.filter((m) => !isGone(m, now)));
      // A live message that came meanwhile was not added (thread.ts, pastEnd): while the
      // list knows of one newer than the page's newest, there is more to fetch.
      const newest = messages[sentCount(messages) - 1] ?? null;
      const last = getState().conversations[id]?.lastMessage;
      const behind = paged.length > 0 && !!last && !last.gone && isNewer(last, newest);
      return { ...cur, messages, loading: false, hasMoreAfter: page.has_more_after || behind };
    });
  } catch (err) {
    if (getState().userId !== asked) return;
    // Not again at once (the view asks on every update while at its end): in a few seconds.
    const wait = 5000;
    newerRetryAt.set(id, Date.now() + wait);
    setThread(id, (cur) => ({ ...cur, loading: false }));
    window.setTimeout(() => setThread(id, (cur) => ({ ...cur })), wait);
    notice(err);
  }
}
