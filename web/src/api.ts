// REST calls of the user gateway (docs/PROTOCOL.md). Every failure is an ApiError carrying
// the node's stable code; network failures are status 0, code "network".
import * as session from './session';
import type { TokenAnswer, Tokens } from './session';
import { storage } from './storage';
import type { WireMessage } from './wire';

export type { WireMessage };

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  // Seconds to wait before trying again (429, 503), when the node said so.
  readonly retry_after: number | undefined;

  constructor(status: number, code: string, message: string, field?: string, retryAfter?: number) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.retry_after = retryAfter;
  }
}

// Any failure as an ApiError (a network failure or a bug as code `network`).
export const toApiError = (e: unknown): ApiError => (e instanceof ApiError ? e : new ApiError(0, 'network', String(e)));

export interface ConversationSummary {
  id: string;
  kind: 'direct' | 'group';
  title: string;
  peer?: string;
  member_count: number;
  member: boolean;
  last_message: WireMessage | null;
  last_activity_ms: string;
  unread_count: number;
  read_mark: string | null;
  muted: boolean;
}

export interface Member {
  user_id: string;
  role: 'owner' | 'admin' | 'member';
  presence: { state: 'ONLINE' | 'OFFLINE'; last_seen_at: string | null } | null;
}

export interface ConversationDetails extends ConversationSummary {
  description: string;
  ttl_s: number;
  history_visible: boolean;
  version: number | string;
  owner?: string;
  members: Member[];
}

export interface HistoryPage {
  messages: WireMessage[];
  has_more_before: boolean;
  has_more_after: boolean;
}

export interface MemberFailure {
  user_id: string;
  code: string;
  message: string;
}

export interface MembersAnswer {
  conversation: ConversationDetails;
  added: string[];
  failed: MemberFailure[];
}

export interface Profile {
  id: string;
  name: string;
  region: string;
  display_name: string;
  about: string;
  created_at: string;
}

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

async function errorOf(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || code;
  let field: string | undefined;
  let retryAfter: number | undefined;
  try {
    const body = (await res.json()) as {
      error?: { code?: string; message?: string; field?: string; retry_after_s?: number };
    };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
    field = body.error?.field;
    retryAfter = body.error?.retry_after_s;
  } catch {
    // Not JSON (a proxy's page, say): keep the status.
  }
  const header = Number(res.headers.get('Retry-After'));
  if (retryAfter === undefined && Number.isFinite(header) && header > 0) retryAfter = header;
  return new ApiError(res.status, code, message, field, retryAfter);
}

const REQUEST_TIMEOUT_MS = 60_000;
// A refresh whose answer is lost must be tried again, with the same token, within the
// node's grace for that (users.refresh_retry_grace_s, 60 s by default): after it, the same
// token again reads as a stolen one and ends the session. So its wait is much shorter.
const REFRESH_TIMEOUT_MS = 15_000;

async function send(
  method: Method,
  path: string,
  body: unknown,
  token?: string,
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      // A request whose answer never comes (a link gone quiet) fails as a network error
      // instead of holding what waits on it (the group panel's reload, a send's retry).
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new ApiError(0, 'network', err instanceof Error ? err.message : String(err));
  }
}

async function parse<T>(res: Response): Promise<T> {
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

// Codes after which the session is over: the user must log in again.
const SESSION_OVER = new Set(['session_revoked', 'invalid_refresh_token', 'refresh_token_reused', 'missing_token']);

async function rotate(refreshToken: string): Promise<TokenAnswer> {
  const res = await send('POST', '/v1/sessions/refresh', { refresh_token: refreshToken }, undefined, REFRESH_TIMEOUT_MS);
  return parse<TokenAnswer>(res);
}
session.setRotate(rotate);

// Throws `session_ended` unless the session is still the one of generation `of`.
function assertSession(of: number): void {
  if (session.generationNow() !== of) throw new ApiError(401, 'session_ended', 'the session ended');
}

// A valid access token of session generation `of` (the current one if not given), refreshed
// first if it is about to expire. Ends that session (and throws) when the node says it is
// over; throws `session_ended` if another session came after it (logged out meanwhile: a
// request of the old session is never retried with the new one's token).
export async function accessToken(forceRefresh = false, of = session.generationNow()): Promise<string> {
  let t: Tokens | null = session.tokens();
  if (!t) throw new ApiError(401, 'missing_token', 'not logged in');
  assertSession(of);
  if (forceRefresh || session.needsRefresh(t)) {
    try {
      t = await session.refresh();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code && (SESSION_OVER.has(code) || code === 'user_disabled')) session.endSession(code, of);
      throw err;
    }
    assertSession(of);
  }
  return t.access_token;
}

export async function authed<T>(method: Method, path: string, body?: unknown): Promise<T> {
  const of = session.generationNow();
  let res = await send(method, path, body, await accessToken(false, of));
  if (res.status === 401) {
    const err = await errorOf(res);
    if (err.code !== 'token_expired' && err.code !== 'invalid_token') {
      if (SESSION_OVER.has(err.code)) session.endSession(err.code, of);
      throw err;
    }
    // Expired (clock skew) or a replaced region key: one refresh, one retry.
    res = await send(method, path, body, await accessToken(true, of));
    if (res.status === 401) {
      const again = await errorOf(res);
      session.endSession(again.code, of);
      throw again;
    }
  }
  // An answer for a session that ended meanwhile is not acted on in the next one.
  assertSession(of);
  return parse<T>(res);
}

const enc = encodeURIComponent;

export async function register(name: string, password: string, displayName: string, registrationToken: string): Promise<Profile> {
  const body: Record<string, string> = { name, password };
  if (displayName) body.display_name = displayName;
  if (registrationToken) body.registration_token = registrationToken;
  return parse<Profile>(await send('POST', '/v1/users', body));
}

// Known-device tokens (PROTOCOL.md, "Known devices"), one per user who logged in on this
// browser: kept across logouts, so that someone else's wrong passwords, which lock the
// account against new logins, do not lock its owner out here.
const KNOWN_KEY = 'petchat.known_devices';
const KNOWN_KEPT = 8;

function knownDevices(): Record<string, string> {
  try {
    const v = JSON.parse(storage.get(KNOWN_KEY) ?? '{}');
    return v && typeof v === 'object' && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

const bareName = (name: string) => name.trim().toLowerCase().split('@')[0];

function rememberDevice(userId: string, token: unknown): void {
  if (typeof token !== 'string' || !token) return;
  const name = bareName(userId);
  const kept = Object.entries(knownDevices()).filter(([n]) => n !== name);
  const next = Object.fromEntries([...kept.slice(-(KNOWN_KEPT - 1)), [name, token]]);
  storage.set(KNOWN_KEY, JSON.stringify(next)); // (unstored: the next login is a new device's)
}

export async function login(name: string, password: string, deviceName: string): Promise<Tokens> {
  const body: Record<string, string> = { name, password, device_name: deviceName };
  const known = knownDevices()[bareName(name)];
  if (typeof known === 'string') body.device_token = known;
  const answer = await parse<TokenAnswer & { device_token?: string }>(await send('POST', '/v1/sessions', body));
  rememberDevice(answer.user_id, answer.device_token);
  return session.saveAnswer(answer);
}

// Ends the session on the node, then locally whatever the node said; when the node did
// not confirm it (offline, an error), the login screen says so: the session, refresh token
// and all, may live on there, to be ended from another device.
export async function logout(): Promise<void> {
  let confirmed = false;
  try {
    // A fresh token (refreshed if it expired while the tab sat idle): else the node would
    // refuse it and keep the session, refresh token and all.
    // Refused as expired (a clock behind the node's) or by a replaced region key: one
    // refresh, one retry, as for any request; else the session would live on.
    if (session.tokens()) {
      let res = await send('DELETE', '/v1/sessions/current', undefined, await accessToken());
      if (res.status === 401) {
        const err = await errorOf(res);
        if (err.code === 'token_expired' || err.code === 'invalid_token')
          res = await send('DELETE', '/v1/sessions/current', undefined, await accessToken(true));
      }
      await parse<void>(res);
    }
    confirmed = true;
  } catch (e) {
    // Ended already (revoked, or its refresh token refused): nothing lives on.
    const gone = ['session_revoked', 'refresh_token_reused', 'invalid_refresh_token', 'user_disabled'];
    confirmed = e instanceof ApiError && gone.includes(e.code);
  } finally {
    session.endSession(confirmed ? 'logged_out' : 'logout_unconfirmed');
  }
}

export interface Device {
  device_id: string;
  device_name: string;
  created_at: string;
  last_refreshed_at: string;
  current: boolean;
}

// The user's devices (sessions not revoked), and ending one of them.
export const devices = (): Promise<{ sessions: Device[] }> => authed('GET', '/v1/sessions');
export const endDevice = (deviceId: string): Promise<void> => authed('DELETE', `/v1/sessions/${enc(deviceId)}`);
// Ends every device of the user but this one (DELETE /v1/sessions/others): how many were live.
export const endOtherDevices = (): Promise<{ ended: number }> => authed('DELETE', '/v1/sessions/others');
// Sets a new password, given the current one (POST /v1/me/password): every other device of
// the user is logged out in the same write; this one goes on, with a new known-device token
// (the old one went with the old password).
export async function changePassword(currentPassword: string, newPassword: string): Promise<void> {
  const answer = await authed<{ device_token?: string }>('POST', '/v1/me/password', {
    current_password: currentPassword,
    new_password: newPassword,
  });
  const userId = session.tokens()?.user_id;
  if (userId) rememberDevice(userId, answer.device_token);
}

export type GroupAdds = 'everyone' | 'contacts';
export const me = (): Promise<Profile & { device_id: string; device_name: string; group_adds: GroupAdds }> =>
  authed('GET', '/v1/me');
// Who may add the user to groups (PATCH /v1/me).
export const setGroupAdds = (groupAdds: GroupAdds): Promise<Profile & { group_adds: GroupAdds }> =>
  authed('PATCH', '/v1/me', { group_adds: groupAdds });

export const userProfile = (id: string): Promise<Profile> => authed('GET', `/v1/users/${enc(id)}`);

// The regions of the federation, this one included (GET /v1/regions, no token): a user id
// of any other region is refused.
export async function regions(): Promise<{ regions: { name: string }[] }> {
  return parse(await send('GET', '/v1/regions', undefined));
}

export function conversations(before?: string, limit = 100): Promise<{ conversations: ConversationSummary[]; next: string | null }> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (before) q.set('before', before);
  return authed('GET', `/v1/conversations?${q}`);
}

export const conversation = (id: string): Promise<ConversationDetails> => authed('GET', `/v1/conversations/${enc(id)}`);

// `clientId`: the same for a create sent again after its answer was lost (one group).
export const createGroup = (title: string, members: string[], clientId: string): Promise<MembersAnswer> =>
  authed('POST', '/v1/conversations', { title, members, client_id: clientId });

export const addMembers = (id: string, members: string[]): Promise<MembersAnswer> =>
  authed('POST', `/v1/conversations/${enc(id)}/members`, { members });

// Removes another member, or leaves when userId is the caller (an owner names a successor).
export function removeMember(id: string, userId: string, successor?: string): Promise<void | { queued: boolean }> {
  const q = successor ? `?successor=${enc(successor)}` : '';
  return authed('DELETE', `/v1/conversations/${enc(id)}/members/${enc(userId)}${q}`);
}

export function history(conversationId: string, before?: string, limit = 50, after?: string): Promise<HistoryPage> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (before) q.set('before', before);
  if (after) q.set('after', after);
  return authed('GET', `/v1/conversations/${enc(conversationId)}/messages?${q}`);
}

// Per-member receipts of an own message (sender only): exact, unlike the live events.
export interface ReceiptsAnswer {
  message_id: string;
  conversation_id: string;
  recipients: number;
  delivered_count: number;
  read_count: number;
  members: { user_id: string; delivered_at_ms: string; read_at_ms: string }[];
}

export const receipts = (messageId: string): Promise<ReceiptsAnswer> => authed('GET', `/v1/messages/${enc(messageId)}/receipts`);

export function historyWithPeer(peer: string, limit = 50): Promise<HistoryPage> {
  const q = new URLSearchParams({ peer, limit: String(limit) });
  return authed('GET', `/v1/messages?${q}`);
}

// Assets (PROTOCOL.md, "Assets: files, photos, voice notes"); assets.ts makes the requests.
export interface Asset {
  id: string;
  size: number;
  content_type: string;
  name: string;
  declared_type: string;
  created_at_ms: string;
  width?: number;
  height?: number;
  thumbnail_id?: string;
}

// Runs a request made outside `authed` (asset bytes, XMLHttpRequest uploads) by the same
// token rules: on an expired or unknown token one refresh and one retry; a session that is
// over ends. `run` throws an ApiError for an error answer.
export async function withToken<T>(run: (token: string) => Promise<T>): Promise<T> {
  const of = session.generationNow();
  const current = (value: T): T => {
    assertSession(of);
    return value;
  };
  try {
    return current(await run(await accessToken(false, of)));
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    if (err.code !== 'token_expired' && err.code !== 'invalid_token') {
      if (SESSION_OVER.has(err.code)) session.endSession(err.code, of);
      throw err;
    }
  }
  try {
    return current(await run(await accessToken(true, of)));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) session.endSession(err.code, of);
    throw err;
  }
}

export const responseError = errorOf;

// The caller's own mute flag of a conversation (PATCH /v1/conversations/{id}).
export const setMuted = (id: string, muted: boolean): Promise<unknown> =>
  authed('PATCH', `/v1/conversations/${enc(id)}`, { muted });
