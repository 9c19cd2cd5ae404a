// The device's session: its two tokens in localStorage under one key, and their refresh.
//
// Every tab of the browser shares the stored tokens. A refresh token works once
// (PROTOCOL.md, Sessions): a tab presenting one another tab already rotated would revoke
// the whole session. So refreshing is serialised across tabs with a Web Lock, and inside
// the lock the stored tokens are read again: if another tab refreshed meanwhile, its
// tokens are adopted instead of refreshing again.

export interface Tokens {
  user_id: string;
  device_id: string;
  access_token: string;
  access_expires_at: number; // ms since the epoch, by this browser's clock
  access_lifetime_ms: number;
  refresh_token: string;
  refresh_expires_at: number;
}

export interface TokenAnswer {
  user_id: string;
  device_id: string;
  access_token: string;
  access_token_expires_in_s: number;
  refresh_token: string;
  refresh_token_expires_in_s: number;
}

const KEY = 'petchat.session';
// Refresh this long before the access token's expiry, or a fifth of a short lifetime before.
const REFRESH_MARGIN_MS = 60_000;

type Listener = (tokens: Tokens | null, reason?: string) => void;
const listeners = new Set<Listener>();
let current: Tokens | null = load();
let inFlight: Promise<Tokens> | null = null;
// Counts the ends of sessions: a refresh answered after the session it refreshed ended (a
// logout while it was under way, here or in another tab) must not bring it back.
let generation = 0;

function load(): Tokens | null {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return null;
    const t = JSON.parse(raw) as Tokens;
    return typeof t.access_token === 'string' && typeof t.refresh_token === 'string' ? t : null;
  } catch {
    return null;
  }
}

function store(tokens: Tokens | null, reason?: string): void {
  if (!tokens) generation++;
  current = tokens;
  try {
    if (tokens) localStorage.setItem(KEY, JSON.stringify(tokens));
    else localStorage.removeItem(KEY);
  } catch {
    // Storage full or disabled: the session lives in memory for this tab.
  }
  for (const l of listeners) l(tokens, reason);
}

// Another tab logged in as someone else (or as another device): this tab's state, its
// stream's resume point among it, is the other session's. Starting again is the only safe
// way: resuming the new user's stream from the old one's position would acknowledge
// messages this tab never showed.
const otherDevice = (a: Tokens, b: Tokens): boolean => a.user_id !== b.user_id || a.device_id !== b.device_id;

// Another tab logged out or refreshed: follow it. Storage cleared whole (key null:
// localStorage.clear(), from another tab or the browser's tools) is a logout too: this tab
// must not write its tokens back into it at its next refresh.
window.addEventListener('storage', (e) => {
  if (e.key !== KEY && e.key !== null) return;
  follow();
});
// A page brought back from the back/forward cache missed the events of its time away.
window.addEventListener('pageshow', (e) => {
  if (e.persisted) follow();
});

function follow(): void {
  const next = load();
  if (!next) {
    if (current) store(null, 'logged_out_elsewhere');
  } else if (current && otherDevice(current, next)) {
    location.reload();
  } else if (!current || next.access_token !== current.access_token) {
    current = next;
    for (const l of listeners) l(next);
  }
}

export function tokens(): Tokens | null {
  return current;
}

export function onTokens(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function saveAnswer(answer: TokenAnswer): Tokens {
  const now = Date.now();
  const t: Tokens = {
    user_id: answer.user_id,
    device_id: answer.device_id,
    access_token: answer.access_token,
    access_expires_at: now + answer.access_token_expires_in_s * 1000,
    access_lifetime_ms: answer.access_token_expires_in_s * 1000,
    refresh_token: answer.refresh_token,
    refresh_expires_at: now + answer.refresh_token_expires_in_s * 1000,
  };
  store(t);
  return t;
}

// Which session this is: a number that changes when a session ends. A request remembers
// the one it was made for; its answer must not end, or act in, the session after it.
export const generationNow = (): number => generation;

// Ends the session: the current one, or only if it is still the one of generation `of`.
export function endSession(reason?: string, of?: number): void {
  if (of !== undefined && of !== generation) return;
  store(null, reason);
}

function margin(t: Tokens): number {
  return Math.min(REFRESH_MARGIN_MS, Math.max(1000, (t.access_lifetime_ms || 0) / 5));
}

// When to refresh: before the access token runs out, or the session's refresh token if that
// comes first (an access token never outlives its session: PROTOCOL.md, Sessions).
function refreshDue(t: Tokens): number {
  return Math.min(t.access_expires_at, t.refresh_expires_at || Infinity) - margin(t);
}

export function needsRefresh(t: Tokens): boolean {
  return Date.now() >= refreshDue(t);
}

// When the access token should be refreshed, ms from now (0: now).
export function refreshDelay(t: Tokens): number {
  return Math.max(0, refreshDue(t) - Date.now());
}

// The refresh call itself (POST /v1/sessions/refresh); set by api.ts to avoid a cycle.
let rotate: ((refreshToken: string) => Promise<TokenAnswer>) | null = null;
export function setRotate(fn: (refreshToken: string) => Promise<TokenAnswer>): void {
  rotate = fn;
}

async function refreshLocked(used: string): Promise<Tokens> {
  const stored = load() ?? current;
  if (!stored) throw Object.assign(new Error('logged out'), { code: 'session_revoked' });
  if (current && otherDevice(current, stored)) {
    location.reload();
    throw Object.assign(new Error('another session'), { code: 'session_revoked' });
  }
  // Another tab rotated it already: take its tokens.
  if (stored.refresh_token !== used) {
    current = stored;
    for (const l of listeners) l(stored);
    return stored;
  }
  if (!rotate) throw new Error('refresh is not wired');
  const started = generation;
  const answer = await rotate(stored.refresh_token);
  if (generation !== started) throw Object.assign(new Error('logged out'), { code: 'session_revoked' });
  return saveAnswer(answer);
}

// One refresh at a time per tab, and per browser: with Web Locks where the page has them
// (https, localhost), else with a lease in localStorage. Two tabs presenting the same
// refresh token would end the session (refresh_token_reused). Callers during a refresh
// share its result.
export function refresh(): Promise<Tokens> {
  if (inFlight) return inFlight;
  const used = current?.refresh_token ?? '';
  const run = (): Promise<Tokens> => refreshLocked(used);
  const locks = (navigator as Navigator & { locks?: LockManager }).locks;
  inFlight = (locks ? locks.request('petchat.refresh', run) : withLease(run)).finally(() => {
    inFlight = null;
  });
  return inFlight;
}

const LEASE_KEY = 'petchat.refresh.lease';
// Longer than a refresh may take (api.ts REFRESH_TIMEOUT_MS, 15 s): a lease that ran out
// mid-refresh would let another tab present the same refresh token, and the answer stored
// last could be the one the node retired (refresh_token_reused ends every tab's session).
const LEASE_MS = 20_000;
const tabId = Math.random().toString(36).slice(2);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function leaseHolder(): { tab: string; until: number } | null {
  try {
    const lease = JSON.parse(localStorage.getItem(LEASE_KEY) ?? 'null');
    return lease && typeof lease.tab === 'string' && lease.until > Date.now() ? lease : null;
  } catch {
    return null;
  }
}

// Runs `fn` holding the lease: written, then read back after a pause (another tab that
// wrote meanwhile wins), waited for while another tab holds it (a tab that died holding it:
// its lease runs out, LEASE_MS after it was taken, and reads as free). Never run without it:
// a wait counted from this tab's start could end while another's refresh is still out.
async function withLease<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    const holder = leaseHolder();
    if (!holder || holder.tab === tabId) {
      localStorage.setItem(LEASE_KEY, JSON.stringify({ tab: tabId, until: Date.now() + LEASE_MS }));
      await pause(50);
      const now = leaseHolder();
      if (!now || now.tab === tabId) break; // ours (or storage that keeps nothing: no other tab either)
    }
    await pause(200 + Math.random() * 300);
  }
  try {
    return await fn(); // refreshLocked reads the stored tokens again: another tab's rotation is taken
  } finally {
    if (leaseHolder()?.tab === tabId) localStorage.removeItem(LEASE_KEY);
  }
}
