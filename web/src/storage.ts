// The live stream's position (live.ts) and other small values kept across reloads.
// localStorage that may be full, disabled or denied (private modes, policies): a failure
// only loses the stored value, it never throws into the stream's logic.
export const storage = {
  get(key: string): string | null {
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key: string, value: string): void {
    try {
      localStorage.setItem(key, value);
    } catch {
      // Full or disabled: the position is kept in memory only.
    }
  },
  remove(key: string): void {
    try {
      localStorage.removeItem(key);
    } catch {
      // Disabled: nothing stored to remove.
    }
  },
};
