// Web Push for this device (docs/PROTOCOL.md, "Push notifications"). The service worker
// (sw.ts, served as /sw.js) shows what the node pushes; here the page subscribes through
// the browser's push service, registers the subscription as the device's push target, and
// undoes both. The target's id is kept per device, so that turning off can delete it.
import * as api from './api';
import * as chat from './chat';
import { errorText, t } from './i18n';
import * as session from './session';
import { storage } from './storage';
import { getState, subscribe } from './store';
import { recordUser } from './pushUser';
import { serviceWorkerUrl } from './trusted';

const KEY = 'petchat.push';
const WAIT_MS = 20000; // for the worker to activate, and for the browser's push service

interface Stored {
  device_id: string;
  target_id: string;
  endpoint: string;
}

interface PushTarget {
  id: string;
  kind: string;
  endpoint?: string;
  device_id: string;
  created_at: string;
}

// A failure already worded for the user.
export class PushError extends Error {}

export function supported(): boolean {
  return typeof window !== 'undefined' && 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

function stored(): Stored | null {
  try {
    const s = JSON.parse(storage.get(KEY) ?? 'null') as Stored | null;
    return s && typeof s.target_id === 'string' && typeof s.device_id === 'string' ? s : null;
  } catch {
    return null;
  }
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(what)), WAIT_MS);
    p.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e) => (clearTimeout(timer), reject(e)),
    );
  });
}

export function toBase64url(buf: ArrayBuffer | null): string {
  let bin = '';
  for (const b of new Uint8Array(buf ?? new ArrayBuffer(0))) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64url(s: string): Uint8Array<ArrayBuffer> {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(new ArrayBuffer(bin.length));
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const sameBytes = (a: ArrayBuffer | null, b: Uint8Array): boolean =>
  !!a && a.byteLength === b.length && new Uint8Array(a).every((x, i) => x === b[i]);

async function registration(): Promise<ServiceWorkerRegistration | undefined> {
  return supported() ? navigator.serviceWorker.getRegistration('/') : undefined;
}

// Closes the notifications this origin shows (the session ended: what they say of its
// user is not for whoever uses the browser next).
export async function closeShown(): Promise<void> {
  const reg = await registration().catch(() => undefined);
  for (const n of (await reg?.getNotifications().catch(() => [])) ?? []) n.close();
}

// True when this device's subscription is registered with the node (as far as we know).
export async function enabled(): Promise<boolean> {
  const s = stored();
  const tokens = session.tokens();
  if (!supported() || !s || !tokens || s.device_id !== tokens.device_id || Notification.permission !== 'granted') return false;
  const sub = await (await registration())?.pushManager.getSubscription();
  return !!sub && sub.endpoint === s.endpoint;
}

async function subscribeBrowser(reg: ServiceWorkerRegistration, key: Uint8Array<ArrayBuffer>): Promise<PushSubscription> {
  const existing = await reg.pushManager.getSubscription();
  if (existing && sameBytes(existing.options.applicationServerKey, key)) return existing;
  await existing?.unsubscribe(); // made for another key (the node's was replaced)
  return withTimeout(reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }), t.errors.timeout);
}

export async function enable(): Promise<void> {
  if (!supported()) throw new PushError(t.pushUnsupported);
  const tokens = session.tokens();
  if (!tokens) throw new api.ApiError(401, 'missing_token', 'not logged in');
  if ((await Notification.requestPermission()) !== 'granted') throw new PushError(t.pushDenied);
  let reg: ServiceWorkerRegistration;
  try {
    await navigator.serviceWorker.register(serviceWorkerUrl(), { scope: '/', type: 'classic', updateViaCache: 'none' });
    reg = await withTimeout(navigator.serviceWorker.ready, t.errors.timeout);
  } catch (e) {
    throw new PushError(`${t.pushUnsupported} (${describe(e)})`);
  }
  const { public_key } = await api.authed<{ public_key: string }>('GET', '/v1/push/vapid');
  let sub: PushSubscription;
  try {
    sub = await subscribeBrowser(reg, fromBase64url(public_key));
  } catch (e) {
    if (Notification.permission !== 'granted') throw new PushError(t.pushDenied);
    throw new PushError(t.pushServiceFailed(describe(e)));
  }
  const body = {
    kind: 'webpush',
    endpoint: sub.endpoint,
    keys: { p256dh: toBase64url(sub.getKey('p256dh')), auth: toBase64url(sub.getKey('auth')) },
  };
  try {
    const target = await api.authed<PushTarget>('POST', '/v1/push/targets', body);
    storage.set(KEY, JSON.stringify({ device_id: tokens.device_id, target_id: target.id, endpoint: sub.endpoint } satisfies Stored));
  } catch (e) {
    await sub.unsubscribe().catch(() => false); // of no use without the node
    throw e;
  }
}

async function unsubscribeLocally(): Promise<void> {
  storage.remove(KEY);
  const sub = await (await registration())?.pushManager.getSubscription();
  await sub?.unsubscribe();
}

// Deletes the device's target, then the browser's subscription (without which the push
// service refuses what the node sends, and the node drops the target by itself).
export async function disable(): Promise<void> {
  const s = stored();
  const tokens = session.tokens();
  let failure: unknown = null;
  if (s && tokens && s.device_id === tokens.device_id) {
    try {
      await api.authed<void>('DELETE', `/v1/push/targets/${encodeURIComponent(s.target_id)}`);
    } catch (e) {
      if (!(e instanceof api.ApiError && e.code === 'push_target_not_found')) failure = e;
    }
  }
  await unsubscribeLocally();
  if (failure) throw failure;
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : e.message;
  return String(e);
}

// The text to show for a failure of enable() or disable().
export function errorMessage(e: unknown): string {
  if (e instanceof PushError) return e.message;
  if (e instanceof api.ApiError) return errorText(e.code, e.message, e.retry_after);
  return describe(e);
}

// Opens a conversation once the chat runs (a tab the worker opened is still starting).
function openConversation(id: string): void {
  if (getState().userId) return chat.open(id);
  const stop = subscribe(() => {
    if (!getState().userId) return;
    stop();
    chat.open(id);
  });
}

// At start: the worker asks the page to open a conversation when a notification is
// clicked; a session that ends (log out, revoked, elsewhere) drops the subscription too
// (the node removes the device's targets itself).
export function listen(): void {
  if (!supported()) return;
  navigator.serviceWorker.addEventListener('message', (e: MessageEvent) => {
    const m = e.data as { type?: string; conversation_id?: unknown } | null;
    if (m?.type === 'open_conversation' && typeof m.conversation_id === 'string') openConversation(m.conversation_id);
  });
  void recordUser(session.tokens()?.user_id ?? '').catch(() => undefined);
  session.onTokens((tokens) => {
    void recordUser(tokens?.user_id ?? '').catch(() => undefined);
    if (!tokens) void unsubscribeLocally().catch(() => undefined);
  });
}
