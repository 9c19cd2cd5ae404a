// Who is logged in on this browser's client, for the service worker: a push for anyone else
// (a user who logged out here while offline, whose subscription outlived the session) is
// shown without its content. Kept in Cache Storage, which the page and the worker share.
const CACHE = 'petchat-session';
const KEY = '/current-user';

// `userId` empty: no one is logged in. Writes go one after another, in the order asked
// (a logout and the next login must not land the other way round).
let last: Promise<void> = Promise.resolve();
export function recordUser(userId: string): Promise<void> {
  const write = async () => {
    if (typeof caches === 'undefined') return; // not a secure context: no worker either
    await (await caches.open(CACHE)).put(KEY, new Response(userId));
  };
  last = last.then(write, write);
  return last;
}

// null: never recorded (a page of an earlier version): the worker shows pushes as they come.
export async function currentUser(): Promise<string | null> {
  if (typeof caches === 'undefined') return null;
  const hit = await (await caches.open(CACHE)).match(KEY);
  return hit ? hit.text() : null;
}
