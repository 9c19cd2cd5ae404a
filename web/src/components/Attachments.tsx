// The files of a message: pictures inline (their thumbnail, fetched with the token and
// shown through a blob: URL that is revoked when the picture goes), other files as a chip
// that saves the file under its name. Names are always text.
import { useEffect, useRef, useState } from 'preact/hooks';
import { SHOWN_MAX_BYTES, assetBytes, download, fileName, isImage, sizeOf } from '../assets';
import { formatSize } from '../format';
import { MAX_SHOWN_PIXELS, imagePixels } from '../image_header';
import { t } from '../i18n';
import { watchOnScreen } from '../onScreen';
import type { WireAttachment } from '../wire';

const SHOWN_PX = 320; // assets.thumbnail_px, the node's default

export function Attachments({ items }: { items: WireAttachment[] }) {
  return (
    <ul class="attachments">
      {items.map((a, i) => (
        <li key={`${i}:${a.asset_id}`} class="attachments__item">
          {isImage(a) ? <Picture a={a} /> : <FileChip a={a} />}
        </li>
      ))}
    </ul>
  );
}

// A blob: URL of an asset's bytes while the component shows it (none while `id` is null).
function useBlobUrl(id: string | null): { url: string | null; failed: boolean } {
  const [state, setState] = useState<{ url: string | null; failed: boolean }>({ url: null, failed: false });
  useEffect(() => {
    let url: string | null = null;
    let current = true;
    setState({ url: null, failed: false });
    if (id === null) return;
    // Shown only if its own header declares a picture of a size the page can decode.
    assetBytes(id, SHOWN_MAX_BYTES)
      .then(async (blob) => {
        const pixels = await imagePixels(blob);
        if (pixels === null || pixels > MAX_SHOWN_PIXELS) throw new Error('not shown');
        return blob;
      })
      .then(
        (blob) => {
          if (!current) return;
          url = URL.createObjectURL(blob);
          setState({ url, failed: false });
        },
        () => current && setState({ url: null, failed: true }),
      );
    return () => {
      current = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [id]);
  return state;
}

// Width and height attributes (not styles: the CSP allows none inline) keep the picture's
// place while its bytes come, so the list does not jump.
function shownSize(a: WireAttachment): { width?: number; height?: number } {
  const w = a.width ?? 0;
  const h = a.height ?? 0;
  if (!w || !h) return {};
  const scale = Math.min(1, SHOWN_PX / Math.max(w, h));
  return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
}

// Fetched once it first comes on screen: a conversation of a thousand photos does not
// fetch (and hold) them all when it opens.
function Picture({ a }: { a: WireAttachment }) {
  const place = useRef<HTMLElement>(null);
  const [seen, setSeen] = useState(false);
  useEffect(() => {
    const el = place.current;
    if (!el || seen) return;
    return watchOnScreen(el, (visible) => visible && setSeen(true));
  }, [seen]);
  const { url, failed } = useBlobUrl(seen ? a.thumbnail_id || a.asset_id : null);
  const [error, setError] = useState(false);
  const name = fileName(a);
  if (failed) return <FileChip a={a} note={t.imageUnavailable} />;
  return (
    <figure class="attachment-picture" ref={place}>
      <button
        type="button"
        class="attachment-picture__open"
        title={`${t.downloadFile}: ${name}`}
        data-testid="attachment-picture-download"
        onClick={() => download(a).then(() => setError(false), () => setError(true))}
      >
        {url ? (
          <img class="attachment-picture__img" src={url} alt={name} {...shownSize(a)} data-testid="attachment-image" />
        ) : (
          <svg class="attachment-picture__wait" role="img" aria-label={name} viewBox="0 0 1 1" {...shownSize(a)} />
        )}
      </button>
      {error && (
        <p class="attachment-error" role="alert">
          {t.downloadFailed}
        </p>
      )}
    </figure>
  );
}

function FileChip({ a, note }: { a: WireAttachment; note?: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(false);
  const name = fileName(a);
  async function save() {
    if (busy) return;
    setBusy(true);
    setError(false);
    try {
      await download(a);
    } catch {
      setError(true);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div class="attachment-file" data-testid="attachment-file" data-asset-id={a.asset_id}>
      <button type="button" class="attachment-file__button" data-testid="attachment-download" aria-busy={busy} onClick={save}>
        <span class="attachment-file__icon" aria-hidden="true">
          {busy ? '◷' : '⬇'}
        </span>
        <span class="visually-hidden">{t.downloadFile}: </span>
        <span class="attachment-file__name" data-testid="attachment-name">
          {name}
        </span>
        <span class="attachment-file__size">{formatSize(sizeOf(a))}</span>
      </button>
      {note && <span class="attachment-file__note">{note}</span>}
      {error && (
        <span class="attachment-error" role="alert">
          {t.downloadFailed}
        </span>
      )}
    </div>
  );
}
