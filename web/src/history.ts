// A conversation's history: the newest page when it opens, older pages on scrolling (with
// a back-off after a failure), and, in groups, the receipts history does not carry.
import * as api from './api';
import { errorText } from './i18n';
import { idOrder } from './ids';
import { emptyReceipts, emptyThread, getState, setState, type Thread } from './store';
import { fromWire, mergeMessages } from './thread';

// Own messages of a group whose receipts are fetched when its history loads: a member's
// READ of the newest covers their earlier ones (readUpTo), so a few are enough.
const RECEIPTS_OF_NEWEST = 3;
const OLDER_RETRY_MIN_MS = 2000;
const OLDER_RETRY_MAX_MS = 60_000;

const olderFailures = new Map<string, number>(); // conversation -> failed older loads in a row

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
  try {
    const page = await api.history(id, before, 50);
    setThread(id, (cur) => ({
      messages: mergeMessages(cur.messages, page.messages.map(fromWire)),
      loaded: true,
      loading: false,
      hasMoreBefore: page.has_more_before,
      olderRetryAt: 0,
    }));
    if (older) olderFailures.delete(id);
    else void loadGroupReceipts(id);
  } catch (err) {
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
      setThread(id, (cur) => ({ ...cur, loading: false, loaded: true }));
    }
    notice(err);
  }
}

// In groups history carries no delivery times ("0"), and receipt events already
// acknowledged are not sent again: after a reload the ticks come from GET …/receipts.
async function loadGroupReceipts(id: string): Promise<void> {
  const s = getState();
  if (s.conversations[id]?.kind !== 'group' || !s.userId) return;
  const own = (s.threads[id]?.messages ?? []).filter((m) => m.id && m.from === s.userId).slice(-RECEIPTS_OF_NEWEST);
  const answers = await Promise.all(own.map((m) => api.receipts(m.id!).catch(() => null)));
  for (const a of answers) if (a) applyReceipts(a);
}

// Adds what the node reports to the state the live receipt events update (events.ts).
function applyReceipts(a: api.ReceiptsAnswer): void {
  const set = (ms: string) => ms !== '0' && Number(ms) > 0;
  setState((s) => {
    const old = s.receipts[a.message_id] ?? emptyReceipts();
    const union = (list: string[], add: string[]) => [...new Set([...list, ...add])];
    const delivered = a.members.filter((m) => set(m.delivered_at_ms) || set(m.read_at_ms)).map((m) => m.user_id);
    const read = a.members.filter((m) => set(m.read_at_ms)).map((m) => m.user_id);
    const next = {
      ...old,
      deliveredBy: union(old.deliveredBy, delivered),
      readBy: union(old.readBy, read),
      deliveredCount: Math.max(old.deliveredCount, a.delivered_count),
      readCount: Math.max(old.readCount, a.read_count),
    };
    // A member's READ of this message covers their earlier ones (thread.ts, ownStatus).
    const order = idOrder(a.message_id);
    const members = { ...(s.readUpTo[a.conversation_id] ?? {}) };
    for (const user of read) if ((members[user] ?? '') < order) members[user] = order;
    return {
      receipts: { ...s.receipts, [a.message_id]: next },
      readUpTo: { ...s.readUpTo, [a.conversation_id]: members },
    };
  });
}
