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
