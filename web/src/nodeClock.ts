// The node's clock as this page reckons it: the node's times (a message's expires_at_ms)
// are compared with it, not with the browser's own clock, which may be minutes off. Set
// from each welcome's server_time_ms (off by at most the time the frame took to arrive).
let offsetMs = 0;

export function noteNodeTime(nodeMs: number): void {
  if (nodeMs > 0) offsetMs = nodeMs - Date.now();
}

export function nodeNow(): number {
  return Date.now() + offsetMs;
}
