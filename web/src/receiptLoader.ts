// Fetches GET /v1/messages/{id}/receipts for own group messages while they are on screen:
// group history carries no receipts, and the events a device already acknowledged are not
// sent again, so after a reload this is where the ticks come from. Each message is fetched
// once per page load while its receipts are kept (receipt events keep it current
// afterwards; retention.ts may forget them), at most CONCURRENT requests at a time, the
// newest wish first; a message scrolled away before its turn is not fetched, and a failure
// is tried again after a pause if the message is still shown.
import * as api from './api';
import { applyReceiptsAnswer } from './receipts';

const CONCURRENT = 2;
const RETRY_MS = 10_000;

const shown = new Set<string>(); // message ids on screen
const queue: string[] = []; // wanted, not started; the last is next
const running = new Map<string, Promise<api.ApiError | null>>();
const settled = new Set<string>(); // answered, or gone for good, in this page load
let generation = 0; // answers from before a reset (log out) are dropped

export function onScreen(id: string): void {
  shown.add(id);
  enqueue(id);
}

export function offScreen(id: string): void {
  shown.delete(id);
  const i = queue.indexOf(id);
  if (i >= 0) queue.splice(i, 1);
}

// Fetches now, whatever was fetched before (someone opened the list of recipients): the
// error, or null once the answer is in the state.
export function refresh(id: string): Promise<api.ApiError | null> {
  const i = queue.indexOf(id);
  if (i >= 0) queue.splice(i, 1);
  return fetchOne(id);
}

// The message was deleted for everyone: not fetched again (a wish for it is dropped).
export function forget(id: string): void {
  offScreen(id);
  settled.add(id);
}

export function reset(): void {
  generation++;
  shown.clear();
  queue.length = 0;
  running.clear();
  settled.clear();
}

// Forgets that the messages `keep` refuses were fetched (their receipts left the state,
// retention.ts): shown again, they are fetched again.
export function retain(keep: (id: string) => boolean): void {
  for (const id of settled) if (!keep(id)) settled.delete(id);
}

function enqueue(id: string): void {
  if (settled.has(id) || running.has(id) || queue.includes(id)) return;
  queue.push(id);
  pump();
}

function pump(): void {
  while (running.size < CONCURRENT && queue.length > 0) void fetchOne(queue.pop()!);
}

function fetchOne(id: string): Promise<api.ApiError | null> {
  const inFlight = running.get(id);
  if (inFlight) return inFlight;
  const gen = generation;
  const request = api.receipts(id).then(
    (answer) => {
      if (gen === generation) {
        applyReceiptsAnswer(answer);
        settled.add(id);
      }
      return null;
    },
    (err: unknown) => {
      const e = api.toApiError(err);
      // Deleted, expired, or not ours: asking again would get the same answer.
      if (e.status === 403 || e.status === 404) settled.add(id);
      else if (gen === generation) window.setTimeout(() => gen === generation && shown.has(id) && enqueue(id), RETRY_MS);
      return e;
    },
  );
  const tracked = request.finally(() => {
    if (gen !== generation) return;
    running.delete(id);
    pump();
  });
  running.set(id, tracked);
  return tracked;
}
