// The live stream's keep-alive (live.ts): a ping every 25 s while authenticated, and the
// connection taken for dead when a ping got no frame at all back in time.
const PING_EVERY_MS = 25_000;
const SILENT_LIMIT_MS = 40_000;

export class KeepAlive {
  private timer = 0;
  private lastFrameAt = 0;
  private pingSentAt = 0;

  constructor(private readonly ping: () => void, private readonly dead: () => void) {}

  start(): void {
    this.pingSentAt = 0;
    clearInterval(this.timer);
    this.timer = window.setInterval(() => this.tick(), PING_EVERY_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  // Any frame from the node shows the connection is alive.
  heard(): void {
    this.lastFrameAt = Date.now();
  }

  // Dead only if a ping went unanswered: a hidden tab's timers may run a minute apart.
  private tick(): void {
    if (this.pingSentAt && this.lastFrameAt < this.pingSentAt && Date.now() - this.pingSentAt > SILENT_LIMIT_MS - PING_EVERY_MS) {
      return this.dead();
    }
    this.pingSentAt = Date.now();
    this.ping();
  }
}
