// When the live stream (live.ts) connects again after a close: exponential back-off with
// full jitter, 0.5 s doubling to 30 s, reset once a connection has stayed up long enough.
const STABLE_MS = 30_000; // a connection up this long resets the back-off

export class Reconnect {
  private attempt = 0;
  private timer = 0;
  private upSince = 0;

  constructor(private readonly connect: () => void, private readonly stopped: () => boolean) {}

  // The stream authenticated: the back-off resets only once the connection has stayed up.
  up(): void {
    this.upSince = Date.now();
  }

  // The stream closed; it had authenticated (wasUp) or not.
  closed(wasUp: boolean): void {
    if (wasUp && Date.now() - this.upSince >= STABLE_MS) this.attempt = 0;
  }

  schedule(floorMs = 0): void {
    if (this.stopped()) return;
    const cap = Math.min(30_000, 500 * 2 ** this.attempt++);
    const delay = floorMs + Math.random() * cap;
    clearTimeout(this.timer);
    this.timer = window.setTimeout(this.connect, delay);
  }

  // Back online or visible again: the next attempt is now, and the back-off starts over.
  reset(): void {
    clearTimeout(this.timer);
    this.attempt = 0;
  }

  cancel(): void {
    clearTimeout(this.timer);
  }
}
