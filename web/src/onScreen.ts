// Tells when elements come on screen and leave it, through one IntersectionObserver for the
// whole page (a message list may hold hundreds of watched elements).
const callbacks = new Map<Element, (visible: boolean) => void>();
let observer: IntersectionObserver | null = null;

// Calls `changed` with true when `el` comes into view and false when it leaves (or is no
// longer watched); returns the function that stops watching.
export function watchOnScreen(el: Element, changed: (visible: boolean) => void): () => void {
  observer ??= new IntersectionObserver((entries) => {
    for (const e of entries) callbacks.get(e.target)?.(e.isIntersecting);
  });
  callbacks.set(el, changed);
  observer.observe(el);
  return () => {
    observer?.unobserve(el);
    callbacks.delete(el);
    changed(false);
  };
}

// Seen, for reads: at least half of the element in view, or, for one too tall for that, at
// least SEEN_PX of it (a row whose edge peeks in by a pixel is not read). One more observer
// for the whole page, with steps fine enough that a tall row's share crossing the line is
// told.
const SEEN_PX = 160;
const seenCallbacks = new Map<Element, (seen: boolean) => void>();
let seenObserver: IntersectionObserver | null = null;

export function watchSeen(el: Element, changed: (seen: boolean) => void): () => void {
  seenObserver ??= new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        const seen = e.isIntersecting && (e.intersectionRatio >= 0.5 || e.intersectionRect.height >= SEEN_PX);
        seenCallbacks.get(e.target)?.(seen);
      }
    },
    { threshold: Array.from({ length: 11 }, (_, i) => i / 10) },
  );
  seenCallbacks.set(el, changed);
  seenObserver.observe(el);
  return () => {
    seenObserver?.unobserve(el);
    seenCallbacks.delete(el);
    changed(false);
  };
}
