// Asset bytes in and out (PROTOCOL.md, "Assets: files, photos, voice notes"). Every request
// carries the access token in its Authorization header, never in a URL: the page shows
// pictures through blob: URLs of its own, and saves files through a download link (a URL
// for one file, valid a few minutes: PROTOCOL.md, "Download links") that the browser's
// download manager fetches, so that a large file never sits whole in the page.
import { ApiError, authed, responseError, withToken, type Asset } from './api';
import * as session from './session';
import type { WireAttachment } from './wire';

export type { Asset };

const ASSET_ID = /^[0-9a-f]{64}$/;
const PENDING_TRIES = 30; // asset_pending: fetched from another region, asked again after Retry-After
const CACHE_ENTRIES = 200;
const CACHE_MAX_BYTES = 1 << 20; // only small blobs (thumbnails) are kept in memory
const CACHE_TOTAL_BYTES = 24 << 20; // and at most this much of them: the least recently used go first
// The most a picture fetched to be shown inline may weigh, by the node's own size of the
// asset (a message from another region may say anything of its attachments).
export const SHOWN_MAX_BYTES = 5 * CACHE_MAX_BYTES;

// Uploads one file in one request, reporting the bytes sent. Answers the asset object.
export function upload(file: File, onProgress: (sent: number) => void, signal: AbortSignal): Promise<Asset> {
  return withToken((token) => post(file, token, onProgress, signal));
}

function post(file: File, token: string, onProgress: (sent: number) => void, signal: AbortSignal): Promise<Asset> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new ApiError(0, 'aborted', ''));
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/v1/assets?name=${encodeURIComponent(wellFormed(file.name))}`);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Accept', 'application/json');
    if (file.type) xhr.setRequestHeader('Content-Type', file.type);
    xhr.withCredentials = false;
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status === 200 || xhr.status === 201) {
        try {
          return resolve(JSON.parse(xhr.responseText) as Asset);
        } catch {
          return reject(new ApiError(xhr.status, 'network', 'not an asset object'));
        }
      }
      const headers = new Headers();
      const retry = xhr.getResponseHeader('Retry-After');
      if (retry) headers.set('Retry-After', retry);
      const res = new Response(xhr.responseText || null, { status: xhr.status, statusText: xhr.statusText, headers });
      responseError(res).then(reject, reject);
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'the upload did not reach the server'));
    xhr.onabort = () => reject(new ApiError(0, 'aborted', ''));
    signal.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(file);
  });
}

// A lone surrogate (which encodeURIComponent refuses) becomes U+FFFD.
const wellFormed = (s: string): string => s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Not kept in the browser's HTTP cache (`no-store`): another person using this browser
// after a logout must not find someone's files on its disk; small ones are kept in memory
// here until the chat stops.
async function get(id: string, token: string, maxBytes?: number): Promise<Blob> {
  for (let attempt = 0; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(`/v1/assets/${id}`, {
        headers: { Authorization: `Bearer ${token}` },
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(0, 'network', err instanceof Error ? err.message : String(err));
    }
    if (res.ok) return maxBytes === undefined ? res.blob() : capped(res, maxBytes);
    const err = await responseError(res);
    if (err.code !== 'asset_pending' || attempt >= PENDING_TRIES) throw err;
    await sleep((err.retry_after ?? 2) * 1000);
  }
}

const tooLarge = () => new ApiError(413, 'too_large_to_show', 'the file is too large to show here');

// The body, refused as soon as it is known to pass `maxBytes`: from its Content-Length, or
// (none given, e.g. a proxy that streams it) as the bytes come.
async function capped(res: Response, maxBytes: number): Promise<Blob> {
  const declared = res.headers.get('Content-Length');
  if (declared !== null && !(Number(declared) <= maxBytes)) {
    void res.body?.cancel();
    throw tooLarge();
  }
  if (declared !== null || !res.body) return res.blob();
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      void reader.cancel();
      throw tooLarge();
    }
    parts.push(value);
  }
  return new Blob(parts as BlobPart[], { type: res.headers.get('Content-Type') ?? '' });
}

// The bytes of an asset; small ones are kept (an asset's bytes never change: its id is their
// hash), the most recently used last. `cachedBytes` holds the size of each one fetched.
const cache = new Map<string, Promise<Blob>>();
const cachedBytes = new Map<string, number>();
let cachedTotal = 0;

function uncache(key: string): void {
  cache.delete(key);
  cachedTotal -= cachedBytes.get(key) ?? 0;
  cachedBytes.delete(key);
}

// `maxBytes`: refused (too_large_to_show) if the asset is larger, by the node's size of it
// (or its bytes as they come), not by what a message says.
export function assetBytes(id: string, maxBytes?: number): Promise<Blob> {
  if (!ASSET_ID.test(id)) return Promise.reject(new ApiError(404, 'asset_not_found', 'not an asset id'));
  const key = maxBytes === undefined ? id : `${id}<=${maxBytes}`; // a refusal under a limit is not a download's
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key); // most recently used last
    cache.set(key, hit);
    return hit;
  }
  const p = withToken((token) => get(id, token, maxBytes));
  cache.set(key, p);
  p.then(
    (b) => {
      if (cache.get(key) !== p) return;
      if (b.size > CACHE_MAX_BYTES) return uncache(key);
      cachedBytes.set(key, b.size);
      cachedTotal += b.size;
      evict();
    },
    () => cache.get(key) === p && uncache(key),
  );
  evict();
  return p;
}

function evict(): void {
  while (cache.size > CACHE_ENTRIES || (cachedTotal > CACHE_TOTAL_BYTES && cache.size > 1)) {
    uncache(cache.keys().next().value as string);
  }
}

// The chat stopped (logout, another account): nothing of its files stays in memory.
export function forgetAssets(): void {
  cache.clear();
  cachedBytes.clear();
  cachedTotal = 0;
}

// A download link to the asset; asked again while it is on its way from another region,
// as long as the session that asked is the page's (a logout meanwhile ends the download).
async function linkTo(id: string): Promise<string> {
  const of = session.generationNow();
  const ended = () => new ApiError(401, 'session_ended', 'the session ended');
  for (let attempt = 0; ; attempt++) {
    try {
      const { url } = await authed<{ url: string }>('POST', `/v1/assets/${id}/link`);
      if (session.generationNow() !== of) throw ended();
      return url;
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'asset_pending' || attempt >= PENDING_TRIES) throw err;
      await sleep((err.retry_after ?? 2) * 1000);
      if (session.generationNow() !== of) throw ended();
    }
  }
}

// Saves an asset under its file name: an <a download> of a download link, clicked.
export async function download(a: WireAttachment): Promise<void> {
  if (!ASSET_ID.test(a.asset_id)) throw new ApiError(404, 'asset_not_found', 'not an asset id');
  const url = await linkTo(a.asset_id);
  const link = document.createElement('a');
  link.href = `${url}&name=${encodeURIComponent(wellFormed(fileName(a)))}`;
  link.download = fileName(a);
  link.rel = 'noopener noreferrer';
  link.hidden = true;
  document.body.appendChild(link);
  link.click();
  link.remove();
}

export const fileName = (a: WireAttachment): string => a.name || `file-${a.asset_id.slice(0, 12)}`;

export const sizeOf = (a: WireAttachment): number => Number(a.size ?? 0) || 0;

// Shown inline: images the node could thumbnail, or small ones it could not (never SVG,
// which the node serves as a download only).
export function isImage(a: WireAttachment): boolean {
  const type = a.content_type ?? '';
  if (!type.startsWith('image/') || type.includes('svg')) return false;
  return Boolean(a.thumbnail_id) || sizeOf(a) <= 5 * CACHE_MAX_BYTES;
}

// The attachment a send and the own copy of the message carry, from the uploaded asset.
export function attachmentOf(asset: Asset): WireAttachment {
  const a: WireAttachment = { asset_id: asset.id, content_type: asset.content_type, size: asset.size };
  if (asset.name) a.name = asset.name;
  if (asset.width && asset.height) {
    a.width = asset.width;
    a.height = asset.height;
  }
  if (asset.thumbnail_id) a.thumbnail_id = asset.thumbnail_id;
  return a;
}
