// The service worker, served as /sw.js (scope /): shows the notifications the node pushes
// (docs/PROTOCOL.md, "The notification") and, on a click, brings a tab of the client forward
// on that conversation. Checked with tsconfig.sw.json (WebWorker types, not DOM).
import { lang, t } from './i18n';
import { currentUser } from './pushUser';

declare const self: ServiceWorkerGlobalScope;

// The facts every push carries; `preview` only when the device turned previews on.
interface PushFacts {
  v?: number;
  type?: string;
  user_id?: string;
  count?: number;
  unread?: number;
  conversation_id?: string;
  message_id?: string;
  sender_id?: string;
  preview?: string;
}

export interface OpenConversation {
  type: 'open_conversation';
  conversation_id: string;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

function parse(data: PushMessageData | null): PushFacts {
  try {
    const n = data?.json() as unknown;
    return n && typeof n === 'object' ? (n as PushFacts) : {};
  } catch {
    return {}; // not JSON: still a notification (a push must show one), without details
  }
}

async function windows(): Promise<readonly WindowClient[]> {
  return self.clients.matchAll({ type: 'window', includeUncontrolled: true });
}

async function show(data: PushMessageData | null): Promise<void> {
  // A focused tab of the client shows new messages itself (and the browser requires no
  // notification while the site is in front).
  if ((await windows()).some((c) => c.focused && c.visibilityState === 'visible')) return;
  let n = parse(data);
  // For someone other than who is logged in here (or anyone, once no one is): shown, as a
  // push must be, but with nothing of its content.
  // Not knowing who is logged in (no one, or the cache unreadable) shows nothing either.
  const current = await currentUser().catch(() => null);
  if (current === null || str(n.user_id) !== current) n = {};
  const conversation = str(n.conversation_id);
  const count = typeof n.count === 'number' && n.count > 0 ? Math.floor(n.count) : 1;
  await self.registration.showNotification(str(n.sender_id) ?? t.pushTitle, {
    body: str(n.preview) ?? t.pushCount(count),
    tag: conversation ?? 'petchat', // one notification per conversation, replaced by the next
    data: { conversation_id: conversation ?? null },
    lang,
  });
}

async function focusChat(conversation: string | null): Promise<void> {
  const all = await windows();
  const own = all.filter((c) => new URL(c.url).origin === self.location.origin);
  const best = own.find((c) => c.focused) ?? own.find((c) => c.visibilityState === 'visible') ?? own[0];
  let client: WindowClient | null = null;
  if (best) client = await best.focus().catch(() => best);
  else client = await self.clients.openWindow('/');
  if (client && conversation) client.postMessage({ type: 'open_conversation', conversation_id: conversation } satisfies OpenConversation);
}

self.addEventListener('install', () => void self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));
self.addEventListener('push', (e) => e.waitUntil(show(e.data)));
self.addEventListener('notificationclick', (e) => {
  e.notification.close();
  const data = e.notification.data as { conversation_id?: unknown } | null;
  e.waitUntil(focusChat(str(data?.conversation_id) ?? null));
});
