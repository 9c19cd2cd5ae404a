import { useEffect, useState } from 'preact/hooks';

// Whole seconds until `until` (ms; 0: none), drawn again every second while there are any: a
// rate limit's wait counted down to the moment the node takes attempts again.
export function useSecondsUntil(until: number): number {
  const [, setTick] = useState(0);
  useEffect(() => {
    if (!until) return undefined;
    const timer = window.setInterval(() => setTick((n) => n + 1), 1000);
    return () => clearInterval(timer);
  }, [until]);
  return until ? Math.max(0, Math.ceil((until - Date.now()) / 1000)) : 0;
}
