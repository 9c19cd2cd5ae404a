// Keeps the live stream's access token fresh (live.ts): shortly before it expires the token
// is refreshed over REST; the session then announces the new tokens, which the stream sends
// in an `auth` frame. A failed refresh is tried again with back-off, not at once.
import { accessToken, ApiError } from './api';
import * as session from './session';

export class TokenRefresh {
  private timer = 0;
  private failures = 0;

  // `stopped` tells whether the stream was stopped meanwhile: nothing is scheduled then.
  constructor(private readonly stopped: () => boolean) {}

  schedule(): void {
    clearTimeout(this.timer);
    const t = session.tokens();
    if (!t || this.stopped()) return;
    this.timer = window.setTimeout(() => {
      accessToken().then(
        () => {
          this.failures = 0;
        },
        (err: unknown) => {
          // Offline, a node restarting, 429/503: try again with back-off, not at once.
          const retryAfterS = err instanceof ApiError ? err.retry_after ?? 0 : 0;
          const wait = Math.max(retryAfterS * 1000, Math.min(60_000, 1000 * 2 ** this.failures++));
          clearTimeout(this.timer);
          this.timer = window.setTimeout(() => this.schedule(), wait * (0.5 + Math.random() / 2));
        },
      );
    }, session.refreshDelay(t) + 100);
  }

  cancel(): void {
    clearTimeout(this.timer);
  }
}
