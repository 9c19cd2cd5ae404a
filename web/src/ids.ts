// Message ids are base64url of 16 bytes. The base64url alphabet is not in byte order
// (PROTOCOL.md, "Order"), so ids are compared by their decoded bytes: `idOrder` turns an id
// into lower-case hex, whose string order is the byte order.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const VALUE = new Map<string, number>([...ALPHABET].map((c, i) => [c, i]));

export function idOrder(id: string): string {
  let bits = 0;
  let acc = 0;
  let hex = '';
  for (const c of id) {
    const v = VALUE.get(c);
    if (v === undefined) continue; // padding or a foreign character: ignore
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      hex += ((acc >> bits) & 0xff).toString(16).padStart(2, '0');
    }
  }
  return hex;
}

export function compareIds(a: string, b: string): number {
  const x = idOrder(a);
  const y = idOrder(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

// 16 random bytes as hex: a send's client_id. getRandomValues works outside secure
// contexts too (randomUUID does not).
export function newClientId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// "bob" means a user of our own region (PROTOCOL.md, Conventions).
export function fullUserId(input: string, ownRegion: string): string {
  const id = input.trim();
  return id.includes('@') ? id : `${id}@${ownRegion}`;
}

export function regionOf(userId: string): string {
  const at = userId.indexOf('@');
  return at < 0 ? '' : userId.slice(at + 1);
}

const NAME = /^[a-z][a-z0-9._-]{2,31}$/;

export function isUserId(input: string): boolean {
  const [name, region, extra] = input.trim().split('@');
  if (extra !== undefined || !name || !NAME.test(name)) return false;
  return region === undefined || NAME.test(region);
}
