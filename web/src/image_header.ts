// The pixel count an image's own header declares (PNG, GIF, JPEG, WebP), read from its first
// bytes before the browser is given it: a few kilobytes of PNG can declare a picture whose
// decoding takes gigabytes, and a message's width and height (or a hostile region's
// thumbnail) are only what its sender said. Null: no header of a kind read here.

export const MAX_SHOWN_PIXELS = 16_000_000; // a 16-megapixel photo is shown; more is a file

const HEAD_BYTES = 256 * 1024; // a JPEG's frame header may follow 64 KiB segments of EXIF

export async function imagePixels(blob: Blob): Promise<number | null> {
  const b = new Uint8Array(await blob.slice(0, HEAD_BYTES).arrayBuffer());
  const dims = png(b) ?? gif(b) ?? jpeg(b) ?? webp(b);
  return dims ? dims[0] * dims[1] : null;
}

type Dims = [number, number] | null;

const u16be = (b: Uint8Array, i: number) => (b[i] << 8) | b[i + 1];
const u16le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8);
const u24le = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const u32be = (b: Uint8Array, i: number) => ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3];
const ascii = (b: Uint8Array, i: number, s: string) => [...s].every((c, k) => b[i + k] === c.charCodeAt(0));

function png(b: Uint8Array): Dims {
  if (b.length < 24 || b[0] !== 0x89 || !ascii(b, 1, 'PNG') || !ascii(b, 12, 'IHDR')) return null;
  return [u32be(b, 16), u32be(b, 20)];
}

// The screen, grown to hold the first frame (some decoders grow the canvas to a frame
// larger than the screen it declares); null if that frame is not within the bytes read.
function gif(b: Uint8Array): Dims {
  if (b.length < 13 || !ascii(b, 0, 'GIF8')) return null;
  let w = u16le(b, 6);
  let h = u16le(b, 8);
  let i = 13 + (b[10] & 0x80 ? 3 << ((b[10] & 7) + 1) : 0);
  while (i < b.length) {
    if (b[i] === 0x2c) {
      if (i + 9 >= b.length) return null;
      w = Math.max(w, u16le(b, i + 1) + u16le(b, i + 5));
      h = Math.max(h, u16le(b, i + 3) + u16le(b, i + 7));
      return [w, h];
    }
    if (b[i] !== 0x21) return null; // not an extension: no frame
    i += 2; // the introducer and the label, then sub-blocks up to an empty one
    while (i < b.length && b[i] !== 0) i += 1 + b[i];
    i += 1;
  }
  return null;
}

function jpeg(b: Uint8Array): Dims {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1];
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    // Start of frame: every SOFn but DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc)
      return [u16be(b, i + 7), u16be(b, i + 5)];
    i += 2 + u16be(b, i + 2);
  }
  return null;
}

function webp(b: Uint8Array): Dims {
  if (b.length < 30 || !ascii(b, 0, 'RIFF') || !ascii(b, 8, 'WEBP')) return null;
  if (ascii(b, 12, 'VP8 ')) return [u16le(b, 26) & 0x3fff, u16le(b, 28) & 0x3fff];
  if (ascii(b, 12, 'VP8L')) {
    const bits = b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24);
    return [1 + (bits & 0x3fff), 1 + ((bits >>> 14) & 0x3fff)];
  }
  if (ascii(b, 12, 'VP8X')) return [1 + u24le(b, 24), 1 + u24le(b, 27)];
  return null;
}
