"""Assets: files, photos, voice notes (docs/PROTOCOL.md, "Assets: files, photos, voice
notes"): uploads in one request and resumable ones, downloads with their headers and
ranges, file names, quotas and limits, who may download what, attachments in messages
(both live stream encodings, history, groups), thumbnails and decompression bombs,
lifetime (TTL, deletion, grace, upload expiry) and durability across kill -9.

Written from the protocol document only, as a client author would read it. Every asset
request goes over a fresh raw socket (`exchange`): the node answers some refusals before
reading the body and then closes the connection, which http.client's request() would turn
into a BrokenPipeError before the answer could be read.

Test images are made here with the standard library only: PNGs (zlib + struct) and a
baseline JPEG of flat 8x8 blocks (no DCT needed) carrying EXIF with GPS, XMP and a comment.

No sleeps for things that must happen: what the node does in the background (the
collector, noticing a dropped upload) is polled for with a deadline, never timed.
"""

import datetime
import glob
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time
import unittest
import urllib.parse
import uuid
import zipfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HTTP_TIMEOUT_S, Response, toml_text  # noqa: E402
from test_faults import fill  # noqa: E402
from test_groups import GroupCase  # noqa: E402  (people, streams, history, groups)
from test_messaging import message_ids  # noqa: E402
from wsclient import ev_message, num  # noqa: E402

KIB = 1024
MIB = 1024 * 1024
HEX64_RE = r"^[0-9a-f]{64}$"
POLL_S = 30.0  # deadline for what the node does in the background (collector, drops)

# Every field of an attachment in events and history (JSON: all of them are written).
ATTACHMENT_FIELDS = ("asset_id", "content_type", "size", "name", "width", "height", "thumbnail_id", "duration_ms")

# The main node: small limits where a test needs them.
MAX_ASSET = MIB
THUMB_PX = 200
MAX_ATTACHMENTS = 3
MAIN_CONFIG = {
    "assets": {"max_asset_bytes": MAX_ASSET, "max_image_pixels": 1000000, "thumbnail_px": THUMB_PX},
    "messages": {"max_attachments": MAX_ATTACHMENTS},
}


def now_ms():
    return int(time.time() * 1000)


def blake(data):
    """An asset's id: BLAKE2b-256 of its bytes, 64 lower-case hex digits."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def blob(n, tag=""):
    """n bytes, unique to this call: a random hex id and a tag, then random bytes."""
    head = ("%s petchat test %s\n" % (uuid.uuid4().hex, tag)).encode()  # unique even when cut short
    return (head + os.urandom(max(0, n - len(head))))[:n]


def random_id():
    return blake(os.urandom(32))


# ---------------------------------------------------------------------------------------
# Images, standard library only

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def make_png(width, height, seed=0, comment=None):
    """A valid 8-bit RGB PNG of width x height (a pattern that depends on `seed`, so two
    seeds give two different files), with an optional tEXt Comment chunk (metadata)."""
    base = bytes((((i * 7) ^ (i >> 4)) + seed * 53) & 0xFF for i in range(width * 3 + 256))
    rows = []
    for y in range(height):
        k = (y * 3 + seed) % 256
        rows.append(b"\x00" + base[k:k + width * 3])  # filter type 0 per row
    chunks = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    if comment is not None:
        chunks.append(png_chunk(b"tEXt", b"Comment\x00" + comment))
    chunks.append(png_chunk(b"IDAT", zlib.compress(b"".join(rows), 6)))
    chunks.append(png_chunk(b"IEND", b""))
    return PNG_SIG + b"".join(chunks)


def make_png_bomb(side=50000):
    """A few KB whose header claims side x side pixels (8-bit gray: 2.5 GB decoded for
    50000); the image data is a short zlib stream of zeros (the first rows only)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * ((side + 1) * 64), 9)
    return PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def make_large_png(side):
    """A valid side x side 8-bit RGB PNG of black rows: small to send (zlib of zeros), slow to
    decode (every pixel is)."""
    z = zlib.compressobj(9)
    row = b"\x00" * (side * 3 + 1)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_size(data):
    """(width, height) from a JPEG's SOFn marker."""
    if data[:2] != b"\xff\xd8":
        raise AssertionError("not a JPEG: %r" % data[:16])
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise AssertionError("bad JPEG marker at %d" % i)
        while i < len(data) and data[i] == 0xFF:
            i += 1
        marker = data[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # no length
        if marker == 0xD9 or marker == 0xDA:
            break
        seglen = struct.unpack(">H", data[i:i + 2])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 3:i + 7])
            return width, height
        i += seglen
    raise AssertionError("no SOF marker in the JPEG")


def image_size(data):
    """(width, height) of a PNG (IHDR) or a JPEG (SOFn)."""
    if data.startswith(PNG_SIG):
        return struct.unpack(">II", data[16:24])
    return jpeg_size(data)


def jpeg_segment(marker, payload):
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def exif_with_gps(description):
    """An APP1 Exif payload (big-endian TIFF): IFD0 with ImageDescription and a GPS IFD
    (latitude 52 31 12 N)."""
    ifd0, gps = 8, 8 + 30
    lat = gps + 30
    desc = lat + 24
    tiff = b"MM" + struct.pack(">HI", 42, ifd0)
    tiff += struct.pack(">H", 2)
    tiff += struct.pack(">HHII", 0x010E, 2, len(description) + 1, desc)  # ImageDescription, ASCII
    tiff += struct.pack(">HHII", 0x8825, 4, 1, gps)  # GPSInfo, LONG
    tiff += struct.pack(">I", 0)
    tiff += struct.pack(">H", 2)
    tiff += struct.pack(">HHI", 0x0001, 2, 2) + b"N\x00\x00\x00"  # GPSLatitudeRef, inline
    tiff += struct.pack(">HHII", 0x0002, 5, 3, lat)  # GPSLatitude, 3 RATIONALs
    tiff += struct.pack(">I", 0)
    tiff += struct.pack(">IIIIII", 52, 1, 31, 1, 1200, 100)
    tiff += description + b"\x00"
    return b"Exif\x00\x00" + tiff


def make_jpeg(width, height, seed=0, exif=None, comment=None, xmp=None):
    """A valid baseline grayscale JPEG (width and height multiples of 8) made of flat 8x8
    blocks: each block is its DC coefficient alone, so no DCT is needed. Optional EXIF
    (APP1), XMP (APP1) and comment (COM) segments carry metadata."""
    assert width % 8 == 0 and height % 8 == 0
    out = [b"\xff\xd8", jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")]
    if exif is not None:
        out.append(jpeg_segment(0xE1, exif))
    if xmp is not None:
        out.append(jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp))
    if comment is not None:
        out.append(jpeg_segment(0xFE, comment))
    out.append(jpeg_segment(0xDB, b"\x00" + b"\x01" * 64))  # quantization: all 1
    out.append(jpeg_segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"))
    # Huffman tables: DC categories 0..11 as 4-bit codes (their own value); AC: EOB only, "00".
    out.append(jpeg_segment(0xC4, b"\x00" + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12))))
    out.append(jpeg_segment(0xC4, b"\x10" + bytes([0, 1] + [0] * 14) + b"\x00"))
    out.append(jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"))
    bits = []
    prev = 0
    for by in range(height // 8):
        for bx in range(width // 8):
            level = ((bx * 5 + by * 3) * 4 + seed * 37) % 256
            dc = 8 * (level - 128)  # a flat block's DC coefficient
            diff, prev = dc - prev, dc
            cat = abs(diff).bit_length()
            bits.append(format(cat, "04b"))
            if cat:
                bits.append(format(diff if diff > 0 else diff + (1 << cat) - 1, "0%db" % cat))
            bits.append("00")  # EOB: every AC coefficient is 0
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i:i + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing
    out.append(bytes(data))
    out.append(b"\xff\xd9")
    return b"".join(out)


# ---------------------------------------------------------------------------------------
# HTTP over a raw socket


def _parse_json(headers, raw):
    if raw and (headers.get("Content-Type") or "").startswith("application/json"):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return None


def read_response(sock, method):
    """Reads one answer from `sock` (http.client's parser: Content-Length, chunked, HEAD,
    204/304). Data the node sent before closing is still read after a reset."""
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    raw = resp.read()
    return Response(resp.status, resp.headers, _parse_json(resp.headers, raw), raw)


def request_head(node, method, path, token=None, headers=()):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % node.port, "Connection: close"]
    if token is not None:
        lines.append("Authorization: Bearer " + token)
    lines += ["%s: %s" % (k, v) for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(node, method, path, token=None, headers=(), body=None, timeout=HTTP_TIMEOUT_S):
    """One request on a fresh connection; returns a harness Response (.raw: the body).
    headers: (name, value) pairs sent as they are. body: bytes, sent after the headers
    with a Content-Length added unless `headers` names Content-Length or
    Transfer-Encoding itself. A refusal before the body is read (the node answers and
    closes) is still read and returned."""
    headers = list(headers)
    names = {k.lower() for k, _ in headers}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    s = node.raw_socket(timeout)
    try:
        try:
            s.sendall(request_head(node, method, path, token, headers) + (body or b""))
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the body was read: the answer is buffered
        try:
            return read_response(s, method)
        except (http.client.HTTPException, OSError) as e:
            raise AssertionError("no HTTP answer to %s %s: %r" % (method, path[:120], e))
    finally:
        s.close()


def q(value):
    """Percent-encodes a query value (str as UTF-8, or raw bytes), every reserved byte."""
    return urllib.parse.quote(value, safe="")


def disposition(resp):
    """(kind, filename, filename*) of a Content-Disposition header; filename* decoded."""
    v = resp.headers.get("Content-Disposition") or ""
    kind = v.split(";", 1)[0].strip().lower()
    plain = re.search(r'filename="([^"]*)"', v)
    ext = re.search(r"filename\*=UTF-8''([^;\s]+)", v, re.IGNORECASE)
    return (kind, plain.group(1) if plain else None,
            urllib.parse.unquote(ext.group(1), errors="strict") if ext else None)


# =========================================================================================


class AssetCase(GroupCase):
    """GroupCase (people, live streams, history, groups) plus the asset API. Every helper
    talks to self.node unless given node=."""

    NODE_CONFIG = MAIN_CONFIG

    @staticmethod
    def tok(session):
        if session is None:
            return None
        return session["access_token"] if isinstance(session, dict) else session

    def http(self, method, path, session=None, headers=(), body=None, node=None):
        return exchange(node or self.node, method, path, self.tok(session), headers, body)

    # -- uploads in one request --------------------------------------------------------------

    def upload_request(self, session, data, name=None, declared=None, node=None, query=None):
        """POST /v1/assets[?name=]; `query` (raw, already encoded) replaces ?name=."""
        path = "/v1/assets"
        if query is not None:
            path += "?" + query
        elif name is not None:
            path += "?name=" + q(name)
        headers = [("Content-Type", declared)] if declared else []
        return self.http("POST", path, session, headers, data, node)

    def upload(self, session, data, name=None, declared=None, node=None):
        """Uploads in one request; asserts 201 and the asset object; returns it."""
        r = self.upload_request(session, data, name, declared, node)
        self.assertStatus(r, 201, "upload of %d bytes named %r" % (len(data), name))
        # Callers pass names that need no cleaning (test_file_names_are_cleaned does that);
        # what was not given is "".
        self.assertAsset(r.json, data, name=name or "", declared=declared or "")
        return r.json

    # -- resumable uploads ---------------------------------------------------------------------

    def create_upload(self, session, length, node=None, **fields):
        body = dict(fields)
        if length is not None:
            body["length"] = length
        return self.http("POST", "/v1/uploads", session, [("Content-Type", "application/json")],
                         json.dumps(body).encode(), node)

    def new_upload(self, session, length, node=None, **fields):
        """Creates a resumable upload (201 asserted); returns its object."""
        r = self.create_upload(session, length, node, **fields)
        self.assertStatus(r, 201, "create an upload of %s bytes" % length)
        up = r.json
        self.assertIsInstance(up, dict, r.describe())
        self.assertIsInstance(up.get("upload_id"), str, r.describe())
        self.assertTrue(up["upload_id"], r.describe())
        self.assertEqual(up.get("offset"), 0, r.describe())
        self.assertEqual(up.get("length"), length, r.describe())
        self.assertDigits(up.get("expires_at_ms"), "expires_at_ms")
        self.assertTrue((r.headers.get("Location") or "").endswith("/v1/uploads/" + up["upload_id"]),
                        "Location: %r" % r.headers.get("Location"))
        return up

    @staticmethod
    def upath(upload_id):
        return "/v1/uploads/" + q(upload_id)

    def patch(self, session, upload_id, offset, chunk, node=None, headers=()):
        h = [("Upload-Offset", str(offset)), ("Content-Type", "application/offset+octet-stream")]
        return self.http("PATCH", self.upath(upload_id), session, h + list(headers), chunk, node)

    def upload_state(self, session, upload_id, node=None, method="GET"):
        return self.http(method, self.upath(upload_id), session, node=node)

    def offset_of(self, session, upload_id, node=None):
        r = self.upload_state(session, upload_id, node)
        self.assertStatus(r, 200, "upload %s" % upload_id)
        self.assertEqual(r.json.get("upload_id"), upload_id, r.describe())
        self.assertEqual(r.headers.get("Upload-Offset"), str(r.json.get("offset")), r.describe())
        return r.json["offset"]

    def resumable_upload(self, session, data, chunks=3, node=None, **fields):
        """Creates an upload of `data`, sends it in `chunks` PATCHes (checking the offset
        with GET and HEAD between them) and returns the asset of the last answer (201).
        The asset's name is left to the caller to check (it may have been cleaned)."""
        up = self.new_upload(session, len(data), node, **fields)
        uid = up["upload_id"]
        step = -(-len(data) // chunks)
        offset = 0
        while True:
            chunk = data[offset:offset + step]
            r = self.patch(session, uid, offset, chunk, node)
            offset += len(chunk)
            if offset == len(data):
                self.assertStatus(r, 201, "last PATCH of upload %s" % uid)
                self.assertEqual(r.headers.get("Upload-Offset"), str(offset), "Upload-Offset of the 201")
                self.assertAsset(r.json, data, declared=fields.get("content_type"))
                return r.json
            self.assertStatus(r, 204, "PATCH up to %d of %d" % (offset, len(data)))
            self.assertEqual(r.headers.get("Upload-Offset"), str(offset), "Upload-Offset of the 204")
            g = self.upload_state(session, uid, node)
            self.assertStatus(g, 200)
            self.assertEqual((g.json.get("offset"), g.json.get("length")), (offset, len(data)), g.describe())
            self.assertDigits(g.json.get("expires_at_ms"), "expires_at_ms")
            h = self.upload_state(session, uid, node, method="HEAD")
            self.assertStatus(h, 200)
            self.assertEqual(h.headers.get("Upload-Offset"), str(offset), "HEAD Upload-Offset")
            self.assertEqual(h.headers.get("Upload-Length"), str(len(data)), "HEAD Upload-Length")
            self.assertEqual(h.raw, b"", "HEAD has no body")

    # -- downloads -----------------------------------------------------------------------------

    def download(self, session, asset_id, name=None, headers=(), method="GET", node=None):
        path = "/v1/assets/" + q(asset_id)
        if name is not None:
            path += "?name=" + q(name)
        return self.http(method, path, session, headers, node=node)

    def fetch(self, session, asset_id, data=None, node=None, **kw):
        """Downloads (200 asserted, and the bytes if `data` is given); returns the Response."""
        r = self.download(session, asset_id, node=node, **kw)
        self.assertStatus(r, 200, "download of %s" % asset_id)
        if data is not None:
            self.assertEqual(len(r.raw), len(data), "downloaded size of %s" % asset_id)
            self.assertTrue(r.raw == data, "downloaded bytes of %s differ from the uploaded ones" % asset_id)
        return r

    def assertGone(self, session, asset_id, node=None, msg=None):
        self.assertError(self.download(session, asset_id, node=node), 404, "asset_not_found", msg=msg)

    def wait_gone(self, sessions, asset_id, node=None, timeout=POLL_S):
        """Polls until `asset_id` is 404 asset_not_found for every session."""
        deadline = time.monotonic() + timeout
        for s in sessions:
            while True:
                r = self.download(s, asset_id, node=node)
                if r.status == 404:
                    self.assertError(r, 404, "asset_not_found")
                    break
                self.assertStatus(r, 200, "asset %s while waiting for it to go" % asset_id)
                if time.monotonic() > deadline:
                    self.fail("asset %s still served %.0f s later" % (asset_id, timeout))
                time.sleep(0.2)

    # -- attachments in messages ------------------------------------------------------------------

    @staticmethod
    def attach_send(attachments, to=None, conversation_id=None, text=None, ttl_s=None):
        body = {"attachments": list(attachments)}
        if text is not None:
            body["text"] = text
        send = {"client_id": uuid.uuid4().hex, "body": body}
        if to is not None:
            send["to"] = to
        if conversation_id is not None:
            send["conversation_id"] = conversation_id
        if ttl_s is not None:
            send["ttl_s"] = ttl_s
        return send

    def try_attach(self, client, attachments, **kw):
        """Sends a message with `attachments`; returns the answer frame."""
        return client.request({"send": self.attach_send(attachments, **kw)})

    def send_attached(self, client, attachments, **kw):
        f = self.try_attach(client, attachments, **kw)
        self.assertIn("accepted", f, "send with attachments %s: %s" % (attachments, f))
        return f["accepted"]

    def assertAttachment(self, att, asset, name="", duration_ms=0, every_field=False, what="attachment"):
        """An attachment of an event or of history, filled in by the node from `asset`.
        every_field: the JSON encodings (stream and REST) write every field, size as a
        string of digits."""
        self.assertIsInstance(att, dict, what)
        if every_field:
            for k in ATTACHMENT_FIELDS:
                self.assertIn(k, att, "%s lacks %s: %s" % (what, k, att))
            self.assertIsInstance(att["size"], str, "%s: size is a 64-bit field, a string in JSON: %s" % (what, att))
            self.assertTrue(att["size"].isdigit(), "%s: %s" % (what, att))
        self.assertEqual(att.get("asset_id"), asset["id"], "%s: %s" % (what, att))
        self.assertEqual(att.get("content_type"), asset["content_type"], "%s: %s" % (what, att))
        self.assertEqual(num(att, "size"), asset["size"], "%s: %s" % (what, att))
        self.assertEqual(att.get("name", ""), name, "%s: %s" % (what, att))
        self.assertEqual(num(att, "width"), asset.get("width", 0), "%s: %s" % (what, att))
        self.assertEqual(num(att, "height"), asset.get("height", 0), "%s: %s" % (what, att))
        self.assertEqual(att.get("thumbnail_id", ""), asset.get("thumbnail_id") or "", "%s: %s" % (what, att))
        self.assertEqual(num(att, "duration_ms"), duration_ms, "%s: %s" % (what, att))

    def event_attachments(self, client, message_id):
        ev = client.wait_event(ev_message(message_id), what="message %s" % message_id)
        return ((ev["message"].get("body") or {}).get("attachments")) or []

    def history_attachments(self, session, conversation_id, message_id, node=None):
        msgs = self.history(session, conversation_id=conversation_id, node=node)["messages"]
        found = [m for m in msgs if m.get("id") == message_id]
        self.assertEqual(len(found), 1, "message %s in the history of %s" % (message_id, conversation_id))
        return (found[0].get("body") or {}).get("attachments") or []

    # -- assertions ------------------------------------------------------------------------------

    def assertDigits(self, value, what):
        self.assertIsInstance(value, str, "%s is a string of decimal digits: %r" % (what, value))
        self.assertTrue(value.isdigit(), "%s is a string of decimal digits: %r" % (what, value))

    def assertAsset(self, asset, data, name=None, declared=None):
        """The asset object of `data`: its id is the hash, its size the length."""
        self.assertIsInstance(asset, dict, "asset object")
        self.assertEqual(asset.get("id"), blake(data), "an asset's id is the BLAKE2b-256 of its bytes: %s" % asset)
        self.assertEqual(asset.get("size"), len(data), asset)
        self.assertIsInstance(asset.get("content_type"), str, asset)
        self.assertTrue(asset["content_type"], asset)
        self.assertIsInstance(asset.get("name"), str, asset)
        self.assertIsInstance(asset.get("declared_type"), str, asset)
        self.assertDigits(asset.get("created_at_ms"), "created_at_ms")
        if name is not None:
            self.assertEqual(asset["name"], name, asset)
        if declared is not None:
            self.assertEqual(asset["declared_type"], declared, asset)
        if asset.get("thumbnail_id"):
            self.assertRegex(asset["thumbnail_id"], HEX64_RE)

    def assertServedHeaders(self, r, asset_id, size):
        """The headers every download carries (the table of GET /v1/assets/{id})."""
        h = r.headers
        self.assertEqual(h.get("ETag"), '"%s"' % asset_id, "ETag")
        self.assertEqual(h.get("Content-Length"), str(size), "Content-Length")
        cc = [t.strip().lower() for t in (h.get("Cache-Control") or "").split(",")]
        for token in ("private", "immutable", "max-age=31536000"):
            self.assertIn(token, cc, "Cache-Control: %r" % h.get("Cache-Control"))
        vary = [t.strip().lower() for t in (h.get("Vary") or "").split(",")]
        self.assertIn("authorization", vary, "Vary: %r (a browser's cache must not serve it without the token)"
                      % h.get("Vary"))
        self.assertEqual((h.get("Accept-Ranges") or "").lower(), "bytes", "Accept-Ranges")
        self.assertEqual((h.get("X-Content-Type-Options") or "").lower(), "nosniff", "X-Content-Type-Options")
        csp = h.get("Content-Security-Policy") or ""
        self.assertIn("sandbox", csp, "Content-Security-Policy: %r" % csp)
        self.assertIn("default-src 'none'", csp, "Content-Security-Policy: %r" % csp)

    def assertThumbnail(self, session, asset, node=None, px=THUMB_PX):
        """The asset's thumbnail downloads as a JPEG no larger than `px` on its longer side,
        its id the hash of its bytes; returns (bytes, (width, height))."""
        tid = asset.get("thumbnail_id")
        self.assertTrue(tid, "no thumbnail_id: %s" % asset)
        r = self.fetch(session, tid, node=node)
        thumb = r.raw
        self.assertEqual(thumb[:2], b"\xff\xd8", "the thumbnail is a JPEG")
        self.assertEqual(r.headers.get("Content-Type"), "image/jpeg")
        self.assertEqual(blake(thumb), tid, "a thumbnail is an asset: its id is the hash of its bytes")
        w, h = jpeg_size(thumb)
        self.assertTrue(0 < max(w, h) <= px, "thumbnail of %dx%d, thumbnail_px %d" % (w, h, px))
        return thumb, (w, h)

    def assertHealthy(self, node=None):
        r = (node or self.node).request("GET", "/healthz")
        self.assertStatus(r, 200, "/healthz")
        self.assertEqual(r.json, {"status": "ok"})


# =========================================================================================
# 1-3, 5-7: one node for the class (small max_asset_bytes, thumbnail_px, max_attachments)


class AssetsTest(AssetCase):

    # 1 ---------------------------------------------------------------------------------------

    def test_upload_in_one_request_is_content_addressed_sniffed_and_served_safely(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        html = (b"<!DOCTYPE html>\n<html><head><title>hi</title></head>\n<body><script>alert(document.cookie)"
                b"</script><p>" + uuid.uuid4().hex.encode() + b"</p></body></html>\n")
        # Declared as a PNG: the type is sniffed, the declaration kept as metadata only.
        asset = self.upload(a, html, name="page.html", declared="image/png")
        aid = asset["id"]
        self.assertEqual(asset["content_type"], "text/html", asset)
        self.assertEqual(asset["declared_type"], "image/png", asset)
        self.assertEqual(asset["name"], "page.html", asset)
        self.assertFalse(asset.get("thumbnail_id"), "HTML has no thumbnail: %s" % asset)
        # Stored once, whoever uploads it: the same id for another user, with their own name,
        # and their own time (the stored bytes' would tell since when alice has the file).
        time.sleep(0.05)
        before_bob = int(time.time() * 1000)
        again = self.upload(b, html, name="other.html", declared="text/html")
        self.assertEqual(again["id"], aid)
        self.assertLess(int(asset["created_at_ms"]), before_bob, asset)
        self.assertGreaterEqual(int(again["created_at_ms"]), before_bob - 5, again)
        self.assertEqual((again["name"], again["declared_type"]), ("other.html", "text/html"))
        self.assertEqual(again["content_type"], "text/html")
        # And again by the same user: still 201, same id.
        self.assertEqual(self.upload(a, html, name="page.html", declared="image/png")["id"], aid)

        # Active content: served as bytes to save, never as a page.
        r = self.fetch(a, aid, html)
        self.assertServedHeaders(r, aid, len(html))
        self.assertEqual(r.headers.get("Content-Type"), "application/octet-stream")
        kind, plain, _ = disposition(r)
        self.assertEqual(kind, "attachment", r.headers.get("Content-Disposition"))
        self.assertEqual(plain, "page.html", "the uploader's own declared name")
        r = self.fetch(b, aid, html)
        self.assertEqual(disposition(r)[:2], ("attachment", "other.html"), "each uploader's own name")
        # ?name= names the download (cleaned like any name).
        self.assertEqual(disposition(self.fetch(a, aid, name="report.txt"))[1], "report.txt")
        self.assertEqual(disposition(self.fetch(a, aid, name="../../x/saved.html"))[1], "saved.html")
        r = self.http("GET", "/v1/assets/%s?name=%%FF%%FEbad.txt" % q(aid), a)
        self.assertError(r, 400, "invalid_field", field="name")
        # HEAD: the same headers, no body.
        r = self.download(a, aid, method="HEAD")
        self.assertStatus(r, 200)
        self.assertServedHeaders(r, aid, len(html))
        self.assertEqual(r.raw, b"")

        # SVG is active content too, whatever it is sniffed as.
        svg = (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
               b'height="10"><script>alert(1)</script><!-- ' + uuid.uuid4().hex.encode() + b" --></svg>\n")
        s_asset = self.upload(a, svg, name="logo.svg", declared="image/svg+xml")
        r = self.fetch(a, s_asset["id"], svg)
        self.assertEqual(r.headers.get("Content-Type"), "application/octet-stream")
        self.assertEqual(disposition(r)[0], "attachment")

        # Plain text is safe to show, but not an image, audio or video: attachment.
        text = b"just some words, nothing active here " + uuid.uuid4().hex.encode() + b"\n"
        t_asset = self.upload(a, text, name="notes.txt")
        self.assertEqual(t_asset["content_type"], "text/plain", t_asset)
        self.assertEqual(t_asset["declared_type"], "", "no Content-Type given: declared_type is empty")
        r = self.fetch(a, t_asset["id"], text)
        self.assertTrue((r.headers.get("Content-Type") or "").startswith("text/plain"), r.headers.get("Content-Type"))
        self.assertEqual(disposition(r)[0], "attachment")

        # An image: served as what it is, inline.
        png = make_png(40, 30, seed=1)
        p_asset = self.upload(a, png, name="dot.png")
        self.assertEqual(p_asset["content_type"], "image/png", p_asset)
        r = self.fetch(a, p_asset["id"], png)
        self.assertServedHeaders(r, p_asset["id"], len(png))
        self.assertEqual(r.headers.get("Content-Type"), "image/png")
        self.assertEqual(disposition(r)[:2], ("inline", "dot.png"))

        # A name that is not ASCII: filename="…" is ASCII, filename*= carries it exactly.
        name = "café ☕ photo.png"
        png2 = make_png(20, 20, seed=2)
        self.assertEqual(self.upload(a, png2, name=name)["name"], name)
        kind, plain, star = disposition(self.fetch(a, blake(png2), png2))
        self.assertEqual(kind, "inline")
        self.assertIsNotNone(plain)
        self.assertTrue(all(ord(c) < 128 for c in plain), "filename=%r is not ASCII" % plain)
        self.assertEqual(star, name, "filename*=UTF-8''… is the name percent-encoded")

    def test_upload_larger_than_the_gateway_body_limit(self):
        # An asset is limited by assets.max_asset_bytes, not by gateway.max_body_bytes (64 KiB).
        alice = self.person("alice")
        a = alice.login()
        data = blob(300 * KIB, "big")
        asset = self.upload(a, data, name="big.bin")
        self.fetch(a, asset["id"], data)

    # 2 ---------------------------------------------------------------------------------------

    def test_resumable_upload_in_chunks(self):
        alice = self.person("alice")
        a = alice.login()
        data = blob(300 * KIB, "resumable")
        asset = self.resumable_upload(a, data, chunks=3, name="video.bin", content_type="video/mp4",
                                      hash=blake(data))
        self.assertEqual(asset["name"], "video.bin")
        self.assertEqual(asset["declared_type"], "video/mp4")
        r = self.fetch(a, asset["id"], data)
        self.assertServedHeaders(r, asset["id"], len(data))

    def test_a_resumable_upload_whose_bytes_were_lost_ends_and_can_start_again(self):
        """Restored from a backup (which keeps upload records, not their unfinished files), or
        its file gone: the next chunk is told the upload is gone, not a 500 until it expires."""
        alice = self.person("alice")
        a = alice.login()
        data = blob(200 * KIB, "lost")
        uid = self.new_upload(a, len(data), name="lost.bin")["upload_id"]
        self.assertStatus(self.patch(a, uid, 0, data[:100 * KIB]), 204)
        self.node.stop()
        files = glob.glob(os.path.join(self.node.data_dir, "assets", "**", uid + "*"), recursive=True)
        self.assertEqual(len(files), 1, files)
        os.remove(files[0])
        self.node.start()
        a = alice.login()
        r = self.patch(a, uid, 100 * KIB, data[100 * KIB:])
        self.assertError(r, 404, "upload_not_found")
        self.assertIn("start the upload again", r.json["error"]["message"])
        asset = self.resumable_upload(a, data, chunks=2, name="lost.bin")
        self.fetch(a, asset["id"], data)

    def test_resumable_upload_continues_after_a_dropped_connection(self):
        alice = self.person("alice")
        a = alice.login()
        data = blob(400 * KIB, "dropped")
        up = self.new_upload(a, len(data), name="voice.bin")
        uid = up["upload_id"]
        first = 100 * KIB
        r = self.patch(a, uid, 0, data[:first])
        self.assertStatus(r, 204)
        self.assertEqual(self.offset_of(a, uid), first)

        # A PATCH announcing the rest, of which only a part is sent before the connection drops.
        sent = 150 * KIB
        s = self.node.raw_socket()
        try:
            s.sendall(request_head(self.node, "PATCH", self.upath(uid), a["access_token"],
                                   [("Upload-Offset", str(first)), ("Content-Length", str(len(data) - first)),
                                    ("Content-Type", "application/offset+octet-stream")]))
            s.sendall(data[first:first + sent])
        finally:
            s.close()

        # The bytes that reached the node are kept: the offset moves past `first` (the node
        # notices the drop on its own time).
        deadline = time.monotonic() + POLL_S
        while True:
            offset = self.offset_of(a, uid)
            if offset > first:
                break
            if time.monotonic() > deadline:
                self.fail("the offset stayed at %d after a PATCH that sent %d bytes dropped" % (offset, sent))
            time.sleep(0.05)
        self.assertLessEqual(offset, first + sent, "more bytes kept than were sent")

        # Resume from where it stands, as a client would (it may still be busy a moment).
        deadline = time.monotonic() + POLL_S
        while True:
            offset = self.offset_of(a, uid)
            r = self.patch(a, uid, offset, data[offset:])
            if r.status == 409 and r.json and r.json["error"]["code"] in ("upload_busy", "offset_mismatch") \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            break
        self.assertStatus(r, 201, "resuming at %d" % offset)
        self.assertAsset(r.json, data, name="voice.bin")
        self.fetch(a, r.json["id"], data)

    def test_a_client_that_lost_the_completing_chunks_answer_learns_the_asset(self):
        """The connection drops after the last chunk was sent, before its answer was read: the
        upload, asked again, says it is complete and what it became (not 404: the client would
        have to send the whole file again)."""
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        data = blob(300 * KIB, "lost answer")
        uid = self.new_upload(a, len(data), name="film.bin")["upload_id"]
        first = 100 * KIB
        self.assertStatus(self.patch(a, uid, 0, data[:first]), 204)
        s = self.node.raw_socket()
        try:
            s.sendall(request_head(self.node, "PATCH", self.upath(uid), a["access_token"],
                                   [("Upload-Offset", str(first)), ("Content-Length", str(len(data) - first)),
                                    ("Content-Type", "application/offset+octet-stream")]))
            s.sendall(data[first:])
        finally:
            s.close()  # before the answer
        deadline = time.monotonic() + POLL_S
        while self.offset_of(a, uid) < len(data):
            if time.monotonic() > deadline:
                self.fail("the upload stayed at %d of %d after its last chunk" % (self.offset_of(a, uid), len(data)))
            time.sleep(0.05)
        r = self.upload_state(a, uid)
        self.assertStatus(r, 200)
        self.assertEqual((r.json["offset"], r.json["length"]), (len(data), len(data)), r.describe())
        self.assertEqual(r.headers.get("Upload-Length"), str(len(data)), r.describe())
        self.assertAsset(r.json.get("asset"), data, name="film.bin")
        head = self.upload_state(a, uid, method="HEAD")
        self.assertStatus(head, 200)
        self.assertEqual(head.headers.get("Upload-Offset"), str(len(data)), head.describe())
        # The last chunk sent again, as a client that never saw its answer would: the offset it
        # stands at, and that it is complete.
        again = self.patch(a, uid, first, data[first:])
        self.assertError(again, 409, "offset_mismatch")
        self.assertEqual(again.headers.get("Upload-Offset"), str(len(data)), again.describe())
        self.assertIn("complete", again.json["error"]["message"])
        # An empty chunk at the end: the completing answer again.
        done = self.patch(a, uid, len(data), b"")
        self.assertStatus(done, 201)
        self.assertAsset(done.json, data, name="film.bin")
        self.assertEqual(done.headers.get("Upload-Offset"), str(len(data)), done.describe())
        self.assertError(self.patch(a, uid, len(data), b"x"), 413, "upload_overflow")
        # Still the creator's alone; it holds no room of the quota nor a place among the uploads
        # in progress (test_too_many_uploads_in_progress); deleting it leaves the asset.
        self.assertError(self.upload_state(b, uid), 404, "upload_not_found")
        self.assertError(self.patch(b, uid, len(data), b""), 404, "upload_not_found")
        self.assertStatus(self.http("DELETE", self.upath(uid), a), 204)
        self.assertError(self.upload_state(a, uid), 404, "upload_not_found")
        self.fetch(a, blake(data), data)
        self.assertHealthy()

    def test_a_user_keeps_at_most_64_complete_uploads_answering(self):
        """Uploads completed again and again must not grow the store until they expire: a
        user's complete uploads answer what they became 64 at a time, the next is gone."""
        alice = self.person("alice")
        a = alice.login()
        ids = []
        for i in range(65):
            uid = self.new_upload(a, 1)["upload_id"]
            self.assertStatus(self.patch(a, uid, 0, bytes([i])), 201)
            ids.append(uid)
        for uid in ids[:64]:
            self.assertEqual(self.offset_of(a, uid), 1)
        self.assertError(self.upload_state(a, ids[64]), 404, "upload_not_found")
        # One deleted makes room again.
        self.assertStatus(self.http("DELETE", self.upath(ids[0]), a), 204)
        uid = self.new_upload(a, 1)["upload_id"]
        self.assertStatus(self.patch(a, uid, 0, b"x"), 201)
        self.assertEqual(self.offset_of(a, uid), 1)

    # 3 ---------------------------------------------------------------------------------------

    def test_upload_offsets_overflow_and_hash_mismatch(self):
        alice = self.person("alice")
        a = alice.login()
        data = blob(100, "offsets")
        uid = self.new_upload(a, len(data))["upload_id"]
        self.assertStatus(self.patch(a, uid, 0, data[:30]), 204)
        # Not the upload's offset: refused, and told where it stands.
        for wrong in (0, 10, 50):
            r = self.patch(a, uid, wrong, data[wrong:wrong + 10])
            self.assertError(r, 409, "offset_mismatch", msg="Upload-Offset %d" % wrong)
            self.assertEqual(r.headers.get("Upload-Offset"), "30", "the answer says where the upload stands")
        # Not a number.
        for bad in ("abc", "-1", "1.5"):
            r = self.patch(a, uid, bad, b"x")
            self.assertError(r, 400, "invalid_field", msg="Upload-Offset %r" % bad)
        # Past the declared length: refused, nothing written.
        r = self.patch(a, uid, 30, data[30:] + b"more than declared")
        self.assertError(r, 413, "upload_overflow")
        self.assertEqual(self.offset_of(a, uid), 30)
        # A Content-Length that would wrap the end around 2^64 (it once passed the check and
        # the node wrote whatever came, past the length, the quota and the size limit).
        for huge in (2 ** 64 - 1, 2 ** 64 - 30):
            r = self.patch(a, uid, 30, b"x" * 8, headers=[("Content-Length", str(huge))])
            self.assertError(r, 413, "upload_overflow", msg="Content-Length %d" % huge)
            self.assertEqual(self.offset_of(a, uid), 30)
        # The upload is unharmed by all of it.
        r = self.patch(a, uid, 30, data[30:])
        self.assertStatus(r, 201)
        self.assertAsset(r.json, data)
        self.fetch(a, blake(data), data)

        # A declared hash that the bytes do not have: nothing is stored, the upload is gone.
        data = blob(64, "mismatch")
        uid = self.new_upload(a, len(data), hash=blake(b"something else"))["upload_id"]
        self.assertStatus(self.patch(a, uid, 0, data[:32]), 204)
        self.assertError(self.patch(a, uid, 32, data[32:]), 400, "hash_mismatch")
        self.assertError(self.upload_state(a, uid), 404, "upload_not_found")
        self.assertError(self.patch(a, uid, 32, data[32:]), 404, "upload_not_found")
        self.assertGone(a, blake(data), msg="a hash_mismatch stores nothing")
        self.assertHealthy()

    def test_upload_lengths_and_content_length(self):
        alice = self.person("alice")
        a = alice.login()
        # The declared length of a resumable upload.
        self.assertError(self.create_upload(a, None), 400, "missing_field", field="length")
        for bad in (0, -1, "100", 1.5, True):
            body = {"length": bad}
            r = self.http("POST", "/v1/uploads", a, [("Content-Type", "application/json")],
                          json.dumps(body).encode())
            self.assertError(r, 400, "invalid_field", field="length", msg="length %r" % (bad,))
        self.assertError(self.create_upload(a, MAX_ASSET + 1), 413, "asset_too_large")
        self.assertStatus(self.create_upload(a, MAX_ASSET), 201)
        for bad in ("xyz", blake(b"x")[:63], 5):
            self.assertError(self.create_upload(a, 10, hash=bad), 400, "invalid_field", field="hash",
                             msg="hash %r" % (bad,))
        self.assertError(self.http("POST", "/v1/uploads", a, [("Content-Type", "application/json")], b"{nope"),
                         400, "invalid_json")

        # One request above max_asset_bytes, told by its Content-Length.
        big = blob(MAX_ASSET + 1, "too large")
        self.assertError(self.upload_request(a, big, name="big.bin"), 413, "asset_too_large")
        self.assertGone(a, blake(big))

        # No Content-Length: chunked uploads are refused, and so is a request without one.
        chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        r = self.http("POST", "/v1/assets?name=c.txt", a, [("Transfer-Encoding", "chunked")], chunked)
        self.assertError(r, 411, "length_required")
        r = self.http("POST", "/v1/assets?name=c.txt", a)
        self.assertError(r, 411, "length_required")
        self.assertGone(a, blake(b"hello world"))
        uid = self.new_upload(a, 11)["upload_id"]
        r = self.http("PATCH", self.upath(uid), a, [("Upload-Offset", "0"), ("Transfer-Encoding", "chunked"),
                                                    ("Content-Type", "application/offset+octet-stream")], chunked)
        self.assertError(r, 411, "length_required")
        self.assertEqual(self.offset_of(a, uid), 0)
        self.assertHealthy()

    def test_uploads_belong_to_their_creator_and_can_be_deleted(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        data = blob(50, "mine")
        uid = self.new_upload(a, len(data))["upload_id"]
        self.assertStatus(self.patch(a, uid, 0, data[:20]), 204)
        # Someone else's upload does not exist for them.
        self.assertError(self.upload_state(b, uid), 404, "upload_not_found")
        self.assertStatus(self.upload_state(b, uid, method="HEAD"), 404)
        self.assertError(self.patch(b, uid, 20, data[20:]), 404, "upload_not_found")
        self.assertError(self.http("DELETE", self.upath(uid), b), 404, "upload_not_found")
        self.assertError(self.upload_state(a, "no-such-upload"), 404, "upload_not_found")
        self.assertEqual(self.offset_of(a, uid), 20, "the others' attempts changed nothing")
        # Deleted: gone for its owner too.
        self.assertStatus(self.http("DELETE", self.upath(uid), a), 204)
        self.assertError(self.upload_state(a, uid), 404, "upload_not_found")
        self.assertError(self.patch(a, uid, 20, data[20:]), 404, "upload_not_found")
        self.assertError(self.http("DELETE", self.upath(uid), a), 404, "upload_not_found")
        self.assertGone(a, blake(data))
        self.assertHealthy()

    def test_file_names_are_cleaned(self):
        alice = self.person("alice")
        a = alice.login()
        cases = [
            ("../../etc/passwd", "passwd"),
            ("..\\..\\windows\\win.ini", "win.ini"),
            ("C:\\Users\\me\\cat.png", "cat.png"),
            ("a\x00b.txt", "a_b.txt"),
            ("tab\there\nnewline.txt", "tab_here_newline.txt"),
            ('x"*:<>?|.txt', "x_______.txt"),
            ("  ..hidden", "hidden"),
            ("../.profile", "profile"),
            ("dir/", ""),
            ("plain name (1).pdf", "plain name (1).pdf"),
            ("q" * 3000, "q" * 255),
        ]
        for given, want in cases:
            with self.subTest(name=given[:40]):
                data = blob(40, "name")
                r = self.upload_request(a, data, name=given)
                self.assertStatus(r, 201)
                self.assertEqual(r.json.get("name"), want, r.describe())
        # The same rules for the name of a resumable upload, and 10 KB names are cut to 255
        # bytes at a character boundary.
        for given, want in (("../../etc/shadow", "shadow"), ("n" * 10240, "n" * 255), ("é" * 5120, "é" * 127)):
            with self.subTest(name=given[:40]):
                data = blob(40, "name")
                asset = self.resumable_upload(a, data, chunks=1, name=given)
                self.assertEqual(asset["name"], want)
                self.assertLessEqual(len(asset["name"].encode()), 255)
        # Not UTF-8: refused.
        r = self.upload_request(a, blob(40, "name"), query="name=%FF%FEbad.txt")
        self.assertError(r, 400, "invalid_field", field="name")
        r = self.upload_request(a, blob(40, "name"), query="name=caf%C3")
        self.assertError(r, 400, "invalid_field", field="name")
        # A saved file's extension fits what the bytes are: a picture named as a page is
        # saved as a picture, a plain text named as a page as text.
        png = self.upload(a, make_png(8, 8, seed=11), name="holiday.png.html")
        text = self.upload(a, b"just words and nothing active\n" * 4, name="notes.txt")
        docx = io.BytesIO()
        with zipfile.ZipFile(docx, "w", zipfile.ZIP_STORED) as z:
            z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns='
                       '"http://schemas.openxmlformats.org/package/2006/content-types"></Types>')
            z.writestr("_rels/.rels", "<Relationships/>")
            z.writestr("word/document.xml", "<html><script>alert(1)</script></html>")
        office = self.upload(a, docx.getvalue(), name="report.docx")
        self.assertIn("officedocument", office["content_type"], office)
        for aid, asked, saved in ((png["id"], None, "holiday.png.html.png"),
                                  (png["id"], "Holiday.PNG", "Holiday.PNG"),
                                  (png["id"], "x.svg", "x.svg.png"),
                                  (text["id"], "page.html", "page.html.txt"),
                                  (text["id"], "data.csv", "data.csv"),
                                  (png["id"], "gone.hta", "gone.hta.png"),
                                  # Trailing dots and spaces, which systems drop when saving.
                                  (text["id"], "page.html.", "page.html.txt"),
                                  (text["id"], "page.html ", "page.html.txt"),
                                  # An Office document's type names "xml"; it is no page.
                                  (office["id"], "report.html", "report.html.bin"),
                                  (office["id"], "report.docx", "report.docx"),
                                  # Windows shell and location files fetch what they name.
                                  (text["id"], "icon.scf", "icon.scf.txt"),
                                  (text["id"], "Docs.Library-MS", "Docs.Library-MS.txt"),
                                  (text["id"], "place.webloc", "place.webloc.txt")):
            with self.subTest(asked=asked, saved=saved):
                self.assertEqual(disposition(self.fetch(a, aid, name=asked))[2], saved)
        self.assertHealthy()

    def test_every_asset_endpoint_needs_a_token(self):
        alice = self.person("alice")
        a = alice.login()
        data = blob(30, "token")
        aid = self.upload(a, data)["id"]
        uid = self.new_upload(a, 10)["upload_id"]
        for method, path, body in (("POST", "/v1/assets?name=x.bin", data),
                                   ("GET", "/v1/assets/" + aid, None),
                                   ("POST", "/v1/uploads", b'{"length": 10}'),
                                   ("GET", self.upath(uid), None),
                                   ("PATCH", self.upath(uid), b"0123456789"),
                                   ("DELETE", self.upath(uid), None)):
            with self.subTest(method=method, path=path):
                headers = [("Upload-Offset", "0")] if method == "PATCH" else []
                self.assertError(self.http(method, path, None, headers, body), 401, "missing_token")
                r = self.http(method, path, "not-a-token", headers, body)
                self.assertEqual(r.status, 401, r.describe())
        self.assertEqual(self.offset_of(a, uid), 0)
        self.fetch(a, aid, data)
        self.assertError(self.http("PUT", "/v1/assets/" + aid, a, body=b"x"), 405, "method_not_allowed")
        self.assertHealthy()

    # 5 ---------------------------------------------------------------------------------------

    def test_compressed_bombs_are_stored_as_they_are(self):
        """Sniffing never looks inside compressed data: 100 MiB of zeros, gzipped or zipped
        to about 100 KB, are stored and served as the archives they are."""
        alice = self.person("alice")
        a = alice.login()
        zeros = b"\0" * (100 << 20)
        gz = gzip.compress(zeros, 9)
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("zeros.bin", zeros)
        zp = packed.getvalue()
        del zeros
        for data, name, sniffed in ((gz, "bomb.gz", "application/gzip"), (zp, "bomb.zip", "application/zip")):
            up = self.upload(a, data, name=name)
            self.assertEqual(up["content_type"], sniffed, name)
            self.assertEqual(up["size"], len(data), name)
            self.assertNotIn("thumbnail_id", up, name)
            r = self.fetch(a, up["id"], data)
            self.assertEqual(r.headers.get("Content-Type"), "application/octet-stream", "an archive is not shown")
        self.assertStatus(self.node.request("GET", "/healthz"), 200)

    def test_who_may_download_an_attachment_in_a_direct_conversation(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A = self.ws(a)
        B_json, B_proto = self.ws(b, encoding="json"), self.ws(b, encoding="proto")
        C = self.ws(c)
        png = make_png(400, 300, seed=5)
        asset = self.upload(a, png, name="holiday.png")
        aid = asset["id"]
        self.assertEqual((asset.get("width"), asset.get("height")), (400, 300), asset)
        thumb_id = asset.get("thumbnail_id")
        self.assertTrue(thumb_id, asset)

        # No conversation holds it yet: bob and carol get exactly what a made-up id gets.
        missing = random_id()
        nothing = self.download(b, missing)
        self.assertError(nothing, 404, "asset_not_found")
        for s, who in ((b, "bob"), (c, "carol")):
            r = self.download(s, aid)
            self.assertError(r, 404, "asset_not_found", msg=who)
            self.assertEqual(r.raw.replace(aid.encode(), b"<id>"), nothing.raw.replace(missing.encode(), b"<id>"),
                             "an asset one may not see answers exactly like one that does not exist")
            self.assertGone(s, thumb_id, msg="%s, the thumbnail" % who)

        # Alice sends it to bob: a message with an attachment and no text.
        acc = self.send_attached(A, [{"asset_id": aid, "name": "../beach/holiday.png"}], to=bob.id)
        mid, cid = acc["message_id"], acc["conversation_id"]
        for client, enc in ((B_json, "json"), (B_proto, "proto"), (A, "sender")):
            atts = self.event_attachments(client, mid)
            self.assertEqual(len(atts), 1, "%s: %s" % (enc, atts))
            self.assertAttachment(atts[0], asset, name="holiday.png", every_field=(enc != "proto"),
                                  what="attachment on the %s stream" % enc)
        ev = B_json.wait_event(ev_message(mid))
        self.assertEqual(ev["message"]["body"].get("text"), "", "no text")
        # History shows it too.
        for s in (a, b):
            atts = self.history_attachments(s, cid, mid)
            self.assertEqual(len(atts), 1, atts)
            self.assertAttachment(atts[0], asset, name="holiday.png", every_field=True, what="attachment in history")

        # Bob may now download it and its thumbnail; the file name is his to choose.
        r = self.fetch(b, aid, png)
        self.assertServedHeaders(r, aid, len(png))
        self.assertEqual(r.headers.get("Content-Type"), "image/png")
        kind, plain, _ = disposition(r)
        self.assertEqual(kind, "inline")
        self.assertEqual(plain, aid + ".png", "not his upload, no ?name=: the id with an extension")
        self.assertEqual(disposition(self.fetch(b, aid, name="holiday.png"))[1], "holiday.png")
        thumb, (w, h) = self.assertThumbnail(b, asset)
        self.assertLess(w, 400)
        self.assertLess(h, 300)
        # Carol is in no conversation that holds it.
        self.assertGone(c, aid, msg="carol")
        self.assertGone(c, thumb_id, msg="carol, the thumbnail")

        # Bob may download it, so he may forward it: then carol may download it too.
        fwd = self.send_attached(B_json, [{"asset_id": aid, "name": "fwd.png"}], to=carol.id, text="look")
        atts = self.event_attachments(C, fwd["message_id"])
        self.assertAttachment(atts[0], asset, name="fwd.png", every_field=True)
        self.fetch(c, aid, png)
        self.assertEqual(self.fetch(c, thumb_id).raw, thumb)

    def test_attachments_in_a_group_and_removed_members(self):
        alice, bob, dave = self.person("alice"), self.person("bob"), self.person("dave")
        a, b, d = alice.login(), bob.login(), dave.login()
        A, B, D = self.ws(a), self.ws(b, encoding="proto"), self.ws(d)
        gid = self.group(a, [bob.id, dave.id], title="photos")
        png = make_png(300, 300, seed=7)
        photo = self.upload(a, png, name="group.png")
        note = blob(5000, "voice note")
        voice = self.upload(a, note, name="note.ogg", declared="audio/ogg")
        for s in (b, d):
            self.assertGone(s, photo["id"])
        acc = self.send_attached(A, [{"asset_id": photo["id"], "name": "group.png"},
                                     {"asset_id": voice["id"], "name": "note.ogg", "duration_ms": 4200}],
                                 conversation_id=gid, text="from the trip")
        mid = acc["message_id"]
        for client, every in ((B, False), (D, True)):
            atts = self.event_attachments(client, mid)
            self.assertEqual(len(atts), 2, atts)
            self.assertAttachment(atts[0], photo, name="group.png", every_field=every)
            self.assertAttachment(atts[1], voice, name="note.ogg", duration_ms=4200, every_field=every)
        for s in (b, d):
            self.fetch(s, photo["id"], png)
            self.fetch(s, voice["id"], note)
            self.assertThumbnail(s, photo)
        atts = self.history_attachments(d, gid, mid)
        self.assertAttachment(atts[1], voice, name="note.ogg", duration_ms=4200, every_field=True)

        # Dave is removed: only current members may download.
        self.assertStatus(self.remove_member(a, gid, dave.id), 204)
        for aid in (photo["id"], photo["thumbnail_id"], voice["id"]):
            self.assertGone(d, aid, msg="a removed member")
            self.fetch(b, aid)
        self.fetch(a, photo["id"], png)
        # Carol joins with the history hidden: what was sent before is not hers to fetch
        # (she cannot read the message either), until it is sent again after she joined.
        carol = self.person("carol")
        c = carol.login()
        C = self.ws(c)
        self.assertStatus(self.add_members(a, gid, [carol.id]), 200)
        self.assertError(self.api("GET", "/v1/messages/" + mid, c), 404, "message_not_found")
        for aid in (photo["id"], photo["thumbnail_id"], voice["id"]):
            self.assertGone(c, aid, msg="a member who joined after it, with the history hidden")
        again = self.send_attached(A, [{"asset_id": voice["id"], "name": "note.ogg"}], conversation_id=gid,
                                   text="once more")
        C.wait_event(ev_message(again["message_id"]), 10)
        self.fetch(c, voice["id"], note)
        self.assertGone(c, photo["id"], msg="still not sent to her")

    def test_send_checks_its_attachments(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A, B, C = self.ws(a), self.ws(b), self.ws(c, encoding="proto")
        mine = [self.upload(a, blob(100 + i, "attach %d" % i), name="f%d.bin" % i)
                for i in range(MAX_ATTACHMENTS + 1)]
        carols = self.upload(c, blob(64, "carol's"), name="secret.bin")

        def refused(client, code, attachments, to=bob.id):
            self.assertWsError(self.try_attach(client, attachments, to=to), code)

        # An asset the sender may not download, or that does not exist.
        refused(A, "asset_not_found", [{"asset_id": carols["id"]}])
        refused(A, "asset_not_found", [{"asset_id": random_id()}])
        refused(A, "asset_not_found", [{"asset_id": mine[0]["id"]}, {"asset_id": random_id()}])
        refused(C, "asset_not_found", [{"asset_id": mine[0]["id"]}], to=alice.id)  # over the proto encoding
        # Too many, a bad duration.
        refused(A, "invalid_field", [{"asset_id": m["id"]} for m in mine])
        refused(A, "invalid_field", [{"asset_id": mine[0]["id"], "duration_ms": 86400001}])
        # Neither text nor content nor attachments: as before.
        f = A.request({"send": {"client_id": uuid.uuid4().hex, "to": bob.id, "body": {}}})
        self.assertWsError(f, "missing_field")
        # None of that made bob able to see carol's file.
        self.assertGone(b, carols["id"])

        # The limit itself, a voice note's duration, an empty text: accepted.
        full = self.send_attached(A, [{"asset_id": m["id"], "name": m["name"]} for m in mine[:MAX_ATTACHMENTS]],
                                  to=bob.id, text="")
        voice = self.send_attached(A, [{"asset_id": mine[0]["id"], "duration_ms": 86400000}], to=bob.id)
        atts = self.event_attachments(B, full["message_id"])
        self.assertEqual([x["asset_id"] for x in atts], [m["id"] for m in mine[:MAX_ATTACHMENTS]])
        for x, m in zip(atts, mine):
            self.assertAttachment(x, m, name=m["name"], every_field=True)
        atts = self.event_attachments(B, voice["message_id"])
        self.assertAttachment(atts[0], mine[0], name="", duration_ms=86400000, every_field=True)
        # Refused sends stored nothing: bob got exactly the two accepted messages.
        self.assertEqual(message_ids(B.events()), [full["message_id"], voice["message_id"]])
        self.assertGone(b, mine[MAX_ATTACHMENTS]["id"], msg="the asset of a refused send")

    # 6 ---------------------------------------------------------------------------------------

    def test_ranges_and_conditional_requests(self):
        alice = self.person("alice")
        a = alice.login()
        data = blob(1000, "ranges")
        aid = self.upload(a, data, name="r.bin")["id"]
        size = len(data)

        def ranged(spec, extra=()):
            return self.download(a, aid, headers=[("Range", spec)] + list(extra))

        for spec, lo, hi in (("bytes=0-9", 0, 9), ("bytes=-5", size - 5, size - 1), ("bytes=10-", 10, size - 1),
                             ("bytes=0-0", 0, 0), ("bytes=990-5000", 990, size - 1),
                             ("bytes=999-999", size - 1, size - 1),
                             # numbers past 64 bits are cut to the size like any past it
                             ("bytes=0-99999999999999999999", 0, size - 1),
                             ("bytes=-99999999999999999999", 0, size - 1)):
            with self.subTest(range=spec):
                r = ranged(spec)
                self.assertStatus(r, 206, spec)
                self.assertEqual(r.headers.get("Content-Range"), "bytes %d-%d/%d" % (lo, hi, size))
                self.assertEqual(r.headers.get("Content-Length"), str(hi - lo + 1))
                self.assertEqual(r.headers.get("ETag"), '"%s"' % aid)
                self.assertTrue(r.raw == data[lo:hi + 1], "the bytes of %s" % spec)
        # A download resumed range after range reassembles the file.
        got = b""
        while len(got) < size:
            r = ranged("bytes=%d-%d" % (len(got), len(got) + 299))
            self.assertStatus(r, 206)
            self.assertTrue(r.raw, "an empty 206")
            got += r.raw
        self.assertTrue(got == data, "reassembled bytes differ")

        for spec in ("bytes=5-2", "bytes=abc", "bytes=0-1,4-5", "bytes=%d-" % size, "bytes=%d-%d" % (size, size + 9),
                     "bytes=--5", "bytes=99999999999999999999-", "=0-5", "bytes =0-5"):
            with self.subTest(range=spec):
                r = ranged(spec)
                self.assertError(r, 416, "range_not_satisfiable", msg=spec)
                self.assertEqual(r.headers.get("Content-Range"), "bytes */%d" % size)

        # Conditional requests: the ETag is the id.
        r = self.download(a, aid, headers=[("If-None-Match", '"%s"' % aid)])
        self.assertStatus(r, 304)
        self.assertEqual(r.raw, b"")
        r = self.download(a, aid, headers=[("If-None-Match", '"%s"' % random_id())])
        self.assertStatus(r, 200)
        self.assertTrue(r.raw == data)
        for tags in ('W/"%s"' % aid, '"%s", "%s"' % (random_id(), aid), "*"):
            with self.subTest(if_none_match=tags):
                r = self.download(a, aid, headers=[("If-None-Match", tags)])
                self.assertStatus(r, 304, "weak comparison, lists and * (RFC 9110 13.1.2)")
        # A unit other than bytes is ignored: the whole file (RFC 9110 14.2); bytes in any case.
        r = ranged("items=0-5")
        self.assertStatus(r, 200)
        self.assertTrue(r.raw == data)
        r = ranged("Bytes=0-9")
        self.assertStatus(r, 206)
        self.assertTrue(r.raw == data[:10])
        r = ranged("bytes=0-9", [("If-Range", '"%s"' % random_id())])
        self.assertStatus(r, 200, "If-Range with another tag serves the whole file")
        self.assertTrue(r.raw == data)
        r = ranged("bytes=0-9", [("If-Range", '"%s"' % aid)])
        self.assertStatus(r, 206)
        self.assertTrue(r.raw == data[:10])
        # Ranges and conditions never open an asset to someone who may not download it.
        bob = self.person("bob")
        b = bob.login()
        self.assertError(self.download(b, aid, headers=[("Range", "bytes=0-9")]), 404, "asset_not_found")
        self.assertError(self.download(b, aid, headers=[("If-None-Match", '"%s"' % aid)]), 404, "asset_not_found")

    # 7 ---------------------------------------------------------------------------------------

    def test_png_gets_dimensions_and_a_clean_thumbnail(self):
        alice = self.person("alice")
        a = alice.login()
        secret = b"GPS 52.5200N 13.4050E secret-" + uuid.uuid4().hex.encode()
        png = make_png(800, 600, seed=9, comment=secret)
        self.assertLess(len(png), MAX_ASSET)
        asset = self.upload(a, png, name="big.png", declared="image/png")
        self.assertEqual(asset["content_type"], "image/png")
        self.assertEqual((asset.get("width"), asset.get("height")), (800, 600), asset)
        # The original is kept byte for byte, metadata included.
        self.assertIn(secret, self.fetch(a, asset["id"], png).raw)
        # The thumbnail: a JPEG within thumbnail_px, the same shape, no metadata.
        thumb, (w, h) = self.assertThumbnail(a, asset)
        self.assertAlmostEqual(w / h, 800 / 600, delta=0.05, msg="thumbnail of %dx%d" % (w, h))
        self.assertNotIn(b"secret-", thumb, "the thumbnail carries the original's metadata")
        self.assertNotIn(b"GPS 52", thumb)

    def test_heic_gets_dimensions_and_a_thumbnail_of_its_primary_image(self):
        # A flat grey 800x600 HEIC (libvips' heifsave, HEVC): its thumbnail is made from the
        # image itself, never from a preview the file may carry (a sender picks that).
        a = self.person("alice").login()
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "grey-800x600.heic"), "rb") as f:
            heic = f.read()
        asset = self.upload(a, heic, name="photo.heic")
        self.assertEqual((asset["content_type"], asset.get("width"), asset.get("height")), ("image/heic", 800, 600))
        thumb, (w, h) = self.assertThumbnail(a, asset)
        self.assertAlmostEqual(w / h, 800 / 600, delta=0.05, msg="thumbnail of %dx%d" % (w, h))

    def test_images_over_max_image_pixels_get_no_thumbnail(self):
        alice = self.person("alice")
        a = alice.login()
        # A real image just over assets.max_image_pixels (1,000,000 here).
        png = make_png(1000, 1001, seed=11)
        asset = self.upload(a, png, name="large.png")
        self.assertEqual(asset["content_type"], "image/png")
        self.assertFalse(asset.get("thumbnail_id"), "over max_image_pixels: no thumbnail: %s" % asset)
        self.fetch(a, asset["id"], png)

        # A decompression bomb: a few KB claiming 50000 x 50000 pixels. Stored as it is,
        # never decoded.
        bomb = make_png_bomb(50000)
        self.assertLess(len(bomb), 64 * KIB)
        asset = self.upload(a, bomb, name="bomb.png", declared="image/png")
        self.assertEqual(asset["content_type"], "image/png")
        self.assertFalse(asset.get("thumbnail_id"), "a bomb gets no thumbnail: %s" % asset)
        self.fetch(a, asset["id"], bomb)
        self.assertHealthy()
        # Pixels are counted as up to 4 bytes each: 800 x 800 RGBA is under the limit with
        # 8-bit samples, and twice the memory (over it) with 16-bit ones.
        for depth, thumbnailed in ((8, True), (16, False)):
            ihdr = struct.pack(">IIBBBBB", 800, 800, depth, 6, 0, 0, 0)
            row = b"\x00" + bytes([depth]) * (800 * 4 * depth // 8)
            deep = PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(row * 800, 9)) + \
                png_chunk(b"IEND", b"")
            asset = self.upload(a, deep, name="rgba%d.png" % depth)
            self.assertEqual((asset["content_type"], asset.get("width"), asset.get("height")), ("image/png", 800, 800))
            self.assertEqual(bool(asset.get("thumbnail_id")), thumbnailed, "%d-bit RGBA: %s" % (depth, asset))
        # The node still works normally.
        small = make_png(300, 200, seed=12)
        self.assertThumbnail(a, self.upload(a, small, name="after.png"))

    def test_jpeg_keeps_its_metadata_and_its_thumbnail_has_none(self):
        # A photo with EXIF (GPS), XMP and a comment.
        secret = b"secret-location-" + uuid.uuid4().hex.encode()
        jpeg = make_jpeg(640, 480, seed=13, exif=exif_with_gps(b"exif " + secret), comment=b"comment " + secret,
                         xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><gps>' + secret + b"</gps></x:xmpmeta>")
        a = self.person("alice").login()
        asset = self.upload(a, jpeg, name="IMG_0001.JPG", declared="image/jpeg")
        self.assertEqual(asset["content_type"], "image/jpeg")
        self.assertEqual((asset.get("width"), asset.get("height")), (640, 480), asset)
        # The original is kept byte for byte, metadata included.
        r = self.fetch(a, asset["id"], jpeg)
        self.assertEqual(r.headers.get("Content-Type"), "image/jpeg")
        self.assertEqual(disposition(r)[0], "inline")
        thumb, (w, h) = self.assertThumbnail(a, asset)
        self.assertAlmostEqual(w / h, 640 / 480, delta=0.05)
        self.assertNotIn(b"secret-location-", thumb, "the thumbnail carries the original's metadata")
        self.assertNotIn(b"Exif\x00\x00", thumb, "the thumbnail carries an EXIF block")
        self.assertNotIn(b"http://ns.adobe.com/xap/1.0/", thumb, "the thumbnail carries an XMP block")


# =========================================================================================
# 4: quotas and limits


class QuotaTest(AssetCase):

    NODE_CONFIG = {"assets": {"quota_bytes": MIB, "max_asset_bytes": 512 * KIB, "max_uploads_per_user": 3}}

    def assertQuota(self, r, used, needed):
        err = self.assertError(r, 413, "quota_exceeded")
        for k in ("used_bytes", "limit_bytes", "needed_bytes"):
            self.assertIsInstance(err.get(k), int, "%s in %s" % (k, r.describe()))
            self.assertNotIsInstance(err.get(k), bool)
        self.assertEqual(err["limit_bytes"], MIB, r.describe())
        self.assertEqual(err["used_bytes"], used, r.describe())
        self.assertGreater(err["needed_bytes"], 0, r.describe())
        self.assertGreater(err["used_bytes"] + err["needed_bytes"], err["limit_bytes"], r.describe())
        if needed is not None:
            self.assertEqual(err["needed_bytes"], needed, r.describe())
        return err

    def test_uploads_arriving_at_once_count_against_the_quota(self):
        """Uploads in one request count while their bytes arrive: two of 400 KiB on their way
        leave no room for a third under a quota of 1 MiB, in one request or resumable. Each
        once passed a check that counted only stored bytes, so any number of them could fill
        the disk at once."""
        alice = self.person("alice")
        a = alice.login()
        tmp = os.path.join(self.node.data_dir, "assets", "tmp")
        first, second = blob(400 * KIB, "arriving 1"), blob(400 * KIB, "arriving 2")
        open_uploads = []
        for data in (first, second):
            s = self.node.raw_socket(HTTP_TIMEOUT_S)
            head = request_head(self.node, "POST", "/v1/assets", self.tok(a), [("Content-Length", str(len(data)))])
            s.sendall(head + data[:64 * KIB])
            open_uploads.append((s, data))
        # Both have started (each has its file in tmp/) and wait for the rest of their bytes.
        deadline = time.monotonic() + POLL_S
        while len(os.listdir(tmp)) < 2:
            self.assertLess(time.monotonic(), deadline, "the two uploads never started")
            time.sleep(0.05)
        # The bytes on their way are counted as in use, by a resumable upload's start too
        # (it once counted only stored bytes: twice the quota could be on the disk).
        self.assertQuota(self.upload_request(a, blob(300 * KIB, "third")), 800 * KIB, 300 * KIB)
        self.assertQuota(self.create_upload(a, 300 * KIB), 800 * KIB, 300 * KIB)
        for s, data in open_uploads:
            try:
                s.sendall(data[64 * KIB:])
                r = read_response(s, "POST")
            finally:
                s.close()
            self.assertStatus(r, 201)
        self.assertQuota(self.upload_request(a, blob(300 * KIB, "third")), 800 * KIB, 300 * KIB)

    def test_quota_counts_stored_bytes_and_uploads_in_progress(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        one, two = blob(400 * KIB, "q1"), blob(400 * KIB, "q2")
        self.upload(a, one)
        self.upload(a, two)  # 800 KiB of 1 MiB
        third = blob(400 * KIB, "q3")
        self.assertQuota(self.upload_request(a, third), 800 * KIB, None)
        self.assertGone(a, blake(third), msg="refused for the quota: nothing stored")
        # A resumable upload counts at its declared length from its creation.
        self.assertQuota(self.create_upload(a, 300 * KIB), 800 * KIB, 300 * KIB)
        uid = self.new_upload(a, 200 * KIB)["upload_id"]  # 1000 KiB counted
        small = blob(100 * KIB, "q4")
        self.assertQuota(self.upload_request(a, small), 1000 * KIB, None)
        # Deleting the upload gives its room back.
        self.assertStatus(self.http("DELETE", self.upath(uid), a), 204)
        self.upload(a, small)
        # Quotas are per user, and storing what others stored already still counts.
        self.assertEqual(self.upload(b, one)["id"], blake(one))
        self.assertEqual(self.upload(b, two)["id"], blake(two))
        self.assertQuota(self.create_upload(b, 300 * KIB), 800 * KIB, 300 * KIB)
        self.fetch(a, blake(one), one)
        self.fetch(b, blake(two), two)

    def test_too_many_uploads_in_progress(self):
        carol, dave = self.person("carol"), self.person("dave")
        c, d = carol.login(), dave.login()
        ups = [self.new_upload(c, 10)["upload_id"] for _ in range(3)]
        self.assertError(self.create_upload(c, 10), 429, "too_many_uploads")
        # Others are not affected.
        self.new_upload(d, 10)
        # A completed upload is no longer in progress, nor a deleted one.
        r = self.patch(c, ups[0], 0, b"0123456789")
        self.assertStatus(r, 201)
        self.new_upload(c, 10)
        self.assertError(self.create_upload(c, 10), 429, "too_many_uploads")
        self.assertStatus(self.http("DELETE", self.upath(ups[1]), c), 204)
        self.new_upload(c, 10)
        self.assertError(self.create_upload(c, 10), 429, "too_many_uploads")


# =========================================================================================
# 8: lifetime (grace, TTL, deletion, upload expiry), with a collector that runs every second


class LifetimeTest(AssetCase):
    """assets.collect_interval_s is not in docs/PROTOCOL.md; the node's config has it
    (default 60 s), and without a short one each of these tests would take minutes."""

    GRACE_S = 3
    UPLOAD_EXPIRY_S = 3
    NODE_CONFIG = {"assets": {"grace_s": GRACE_S, "upload_expiry_s": UPLOAD_EXPIRY_S, "collect_interval_s": 1}}

    def test_an_attachment_goes_with_its_expired_message(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        png = make_png(400, 300, seed=21)
        short = self.upload(a, png, name="short.png")
        kept_data = blob(2000, "kept")
        kept = self.upload(a, kept_data, name="kept.bin")
        acc = self.send_attached(A, [{"asset_id": short["id"]}], to=bob.id, ttl_s=3)
        keep_acc = self.send_attached(A, [{"asset_id": kept["id"]}], to=bob.id)
        B.wait_event(ev_message(acc["message_id"]))
        B.wait_event(ev_message(keep_acc["message_id"]))
        self.fetch(b, short["id"], png)
        # The message expires after 3 s, the asset grace_s later: gone for everyone.
        self.wait_gone([a, b], short["id"])
        if short.get("thumbnail_id"):
            self.assertGone(a, short["thumbnail_id"], msg="the thumbnail goes with its original")
            self.assertGone(b, short["thumbnail_id"])
        # The asset of a living message stays.
        self.fetch(a, kept["id"], kept_data)
        self.fetch(b, kept["id"], kept_data)

    def test_the_thumbnail_of_a_living_attachment_outlives_the_grace_period(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        png = make_png(320, 240, seed=33)
        photo = self.upload(a, png, name="living.png")
        self.assertIn("thumbnail_id", photo)
        # Uploaded with it and never attached: once it is gone, the collector has looked at
        # everything of that age, the thumbnail included.
        fence = self.upload(a, blob(500, "fence"))
        acc = self.send_attached(A, [{"asset_id": photo["id"]}], to=bob.id)
        B.wait_event(ev_message(acc["message_id"]))
        self.wait_gone([a], fence["id"])
        self.fetch(b, photo["id"], png)
        thumb = self.fetch(b, photo["thumbnail_id"])  # 200: it lives as long as its original
        self.assertEqual(thumb.raw[:2], b"\xff\xd8")

    def test_a_thumbnail_shared_by_two_originals_belongs_to_both(self):
        """The same pixels with other metadata are another original with the same thumbnail.
        Carol's copy once took the thumbnail over (bob, who may see alice's photo, got 404
        for it) and, collected, took it away for good."""
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A, B = self.ws(a), self.ws(b)
        x = self.upload(a, make_png(400, 300, seed=44, comment=b"alice's"), name="x.png")
        acc = self.send_attached(A, [{"asset_id": x["id"]}], to=bob.id)
        B.wait_event(ev_message(acc["message_id"]))
        thumb = self.fetch(b, x["thumbnail_id"]).raw
        y = self.upload(c, make_png(400, 300, seed=44, comment=b"carol's"), name="y.png")
        self.assertNotEqual(y["id"], x["id"])
        self.assertEqual(y["thumbnail_id"], x["thumbnail_id"], "the same pixels, the same thumbnail")
        self.fetch(b, x["thumbnail_id"], thumb)
        self.fetch(c, y["thumbnail_id"], thumb)
        # Carol never sends hers: it goes after the grace period; the thumbnail stays alice's.
        self.wait_gone([c], y["id"])
        self.assertGone(c, y["thumbnail_id"])
        self.fetch(b, x["thumbnail_id"], thumb)
        self.fetch(a, x["thumbnail_id"], thumb)

    def test_a_conversations_ttl_applies_to_its_attachments(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        gid = self.group(a, [bob.id], title="fleeting", ttl_s=3)
        data = blob(2500, "fleeting")
        aid = self.upload(a, data, name="fleeting.bin")["id"]
        acc = self.send_attached(A, [{"asset_id": aid}], conversation_id=gid)  # no ttl_s of its own
        B.wait_event(ev_message(acc["message_id"]))
        self.fetch(b, aid, data)
        # The group's ttl_s caps the message's; its attachment goes with it, grace_s later.
        self.wait_gone([a, b], aid)

    def test_deleting_the_message_for_everyone_releases_its_asset(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        data = blob(3000, "deleted")
        asset = self.upload(a, data, name="oops.bin")
        acc = self.send_attached(A, [{"asset_id": asset["id"]}], to=bob.id, text="wrong file")
        B.wait_event(ev_message(acc["message_id"]))
        self.fetch(b, asset["id"], data)
        self.assertStatus(self.delete_message(a, acc["message_id"], "everyone"), 204)
        self.wait_gone([a, b], asset["id"])

    def test_an_upload_never_attached_goes_after_grace_and_can_come_back(self):
        alice = self.person("alice")
        a = alice.login()
        data = blob(1000, "unattached")
        aid = self.upload(a, data)["id"]
        self.fetch(a, aid, data)
        self.wait_gone([a], aid)
        # Uploading the same bytes again makes it anew, with the same id.
        self.assertEqual(self.upload(a, data)["id"], aid)
        self.fetch(a, aid, data)

    def test_an_incomplete_upload_expires(self):
        alice = self.person("alice")
        a = alice.login()
        before = now_ms()
        up = self.new_upload(a, 100, name="never.bin")
        after = now_ms()
        exp = int(up["expires_at_ms"])
        lifetime_ms = self.UPLOAD_EXPIRY_S * 1000
        self.assertTrue(before + lifetime_ms - 1000 <= exp <= after + lifetime_ms + 1000,
                        "expires_at_ms %d, created between %d and %d, upload_expiry_s %d"
                        % (exp, before, after, self.UPLOAD_EXPIRY_S))
        uid = up["upload_id"]
        data = blob(100, "expiring")
        self.assertStatus(self.patch(a, uid, 0, data[:40]), 204)
        deadline = time.monotonic() + POLL_S
        while True:
            r = self.upload_state(a, uid)
            if r.status == 404:
                break
            self.assertStatus(r, 200)
            if time.monotonic() > deadline:
                self.fail("upload %s still there %.0f s after it expired" % (uid, POLL_S))
            time.sleep(0.2)
        self.assertError(r, 404, "upload_not_found")
        self.assertError(self.patch(a, uid, 40, data[40:]), 404, "upload_not_found")
        self.assertGone(a, blake(data))


# =========================================================================================
# 9: durability


class AssetCtlTest(AssetCase):
    """`petchatctl assets`: usage per user and in total, collection now, verification."""

    NODE_CONFIG = {"assets": {"grace_s": 0, "collect_interval_s": 3600}}

    def ctl_json(self, *args, rc=0):
        got, out, err = self.node.ctl("--json", *args)
        self.assertEqual(got, rc, "petchatctl %s: %s %s" % (" ".join(args), out, err))
        return json.loads(out)

    def test_usage_collection_and_verification(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A = self.ws(a)
        kept, damaged, loose = blob(3000, "kept"), blob(5000, "damaged"), blob(7000, "loose")
        kept_id = self.upload(a, kept)["id"]
        damaged_id = self.upload(a, damaged)["id"]
        self.upload(b, loose)
        acc = self.send_attached(A, [{"asset_id": kept_id}, {"asset_id": damaged_id}], to=bob.id)
        self.assertTrue(acc.get("message_id"))

        usage = self.ctl_json("assets")
        self.assertEqual(usage["assets"], 3)
        self.assertEqual(usage["bytes"], 3000 + 5000 + 7000)
        by_user = {u["user_id"]: u["bytes"] for u in usage["users"]}
        self.assertEqual(by_user, {alice.id: 8000, bob.id: 7000})
        rc, out, err = self.node.ctl("assets")
        self.assertEqual(rc, 0, err)
        self.assertIn(alice.id, out)

        # grace_s = 0: bob's unattached upload goes at once; the attached ones stay.
        done = self.ctl_json("assets", "collect")
        self.assertEqual(done["assets_removed"], 1)
        self.assertEqual(done["bytes_freed"], 7000)
        self.assertEqual(self.ctl_json("assets")["assets"], 2)
        self.assertGone(b, blake(loose))
        self.fetch(b, kept_id, kept)

        # A blob whose bytes changed on disk is found and moved to quarantine/.
        path = os.path.join(self.node.data_dir, "assets", "blobs", damaged_id[:2], damaged_id)
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(b"\x00\xff\x00")
        report = self.ctl_json("assets", "verify", rc=1)  # damage found: exit 1, the report still printed
        self.assertEqual((report["checked"], report["skipped"]), (2, 0))
        self.assertEqual(report["quarantined"], [damaged_id])
        self.assertEqual(report["missing"], [])
        self.assertTrue(os.path.exists(os.path.join(self.node.data_dir, "assets", "quarantine", damaged_id)))
        self.assertFalse(os.path.exists(path))
        # The intact one still serves; a second check finds the damaged one's bytes missing.
        self.fetch(b, kept_id, kept)
        again = self.ctl_json("assets", "verify", rc=1)
        self.assertEqual(again["missing"], [damaged_id])
        rc, out, err = self.node.ctl("assets", "verify")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("missing bytes: " + damaged_id, out)
        self.assertIn("names damaged or missing files", err)
        self.assertEqual(again["quarantined"], [])
        # Whoever has the right bytes uploads them again: the blob is back, and serves.
        self.assertEqual(self.upload(a, damaged)["id"], damaged_id)
        self.fetch(b, damaged_id, damaged)
        self.assertEqual(self.ctl_json("assets", "verify")["missing"], [])


class AssetDurabilityTest(AssetCase):

    NODE_CONFIG = None  # each test starts (and kills) its own node

    def test_assets_survive_kill9(self):
        self.node = self.start_node(config=MAIN_CONFIG)
        alice = self.person("alice")
        a = alice.login()
        single = blob(200 * KIB, "durable single")
        resumed = blob(150 * KIB, "durable resumable")
        partial = blob(100 * KIB, "durable partial")
        png = make_png(400, 300, seed=31)
        self.upload(a, single, name="single.bin")
        self.resumable_upload(a, resumed, chunks=3, name="resumed.bin")
        uid = self.new_upload(a, len(partial))["upload_id"]
        self.assertStatus(self.patch(a, uid, 0, partial[:40 * KIB]), 204)
        photo = self.upload(a, png, name="photo.png")
        self.node.kill9()  # right after the last 201

        self.node.start()
        a = alice.login("after restart")
        for data in (single, resumed, png):
            self.fetch(a, blake(data), data)
        self.assertThumbnail(a, photo)
        # The 204 of a PATCH meant durable too: the upload goes on from there.
        self.assertEqual(self.offset_of(a, uid), 40 * KIB)
        r = self.patch(a, uid, 40 * KIB, partial[40 * KIB:])
        self.assertStatus(r, 201)
        self.assertAsset(r.json, partial)
        self.fetch(a, blake(partial), partial)

    def test_kill9_while_collecting_loses_nothing_referenced_and_leaves_no_orphan(self):
        config = dict(MAIN_CONFIG, assets={"grace_s": 0, "collect_interval_s": 1})
        self.node = self.start_node(config=config)
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A = self.ws(a)
        kept = [blob(2000 + i, "kept %d" % i) for i in range(5)]
        for data in kept:
            aid = self.upload(a, data)["id"]
            self.send_attached(A, [{"asset_id": aid}], to=bob.id)
        loose = [self.upload(b, blob(1000 + i, "loose %d" % i))["id"] for i in range(150)]
        # Killed once the collector is at work: some loose ones gone, perhaps not all.
        deadline = time.monotonic() + POLL_S
        while self.download(b, loose[0]).status != 404 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.node.kill9()

        self.node.start()
        a = alice.login("after restart")
        for data in kept:
            self.fetch(a, blake(data), data)
        for aid in loose:
            self.wait_gone([b], aid)
        # Every file under blobs/ has its record, and every record its file.
        rc, out, err = self.node.ctl("--json", "assets")
        self.assertEqual(rc, 0, err)
        stored = json.loads(out)["assets"]
        blobs_dir = os.path.join(self.node.data_dir, "assets", "blobs")
        files = [f for d in os.listdir(blobs_dir) for f in os.listdir(os.path.join(blobs_dir, d))]
        self.assertEqual(len(files), stored, "blob files without records (or records without files) remain")
        self.assertEqual(sorted(files), sorted(blake(d) for d in kept))

    def test_a_resumable_upload_goes_on_after_the_disk_was_full(self):
        # A chunk whose write fails (ENOSPC) is refused and nothing of it counts; once space
        # is back, the upload goes on from its offset and its id is the hash of its bytes.
        config = dict(MAIN_CONFIG, assets=dict(MAIN_CONFIG["assets"], max_asset_bytes=8 * MIB))
        self.node = self.start_node(config=config, start=False)
        os.makedirs(self.node.data_dir)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m,mode=0700", "tmpfs", self.node.data_dir], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.node.data_dir], check=False)
        self.node.start()
        a = self.person("alice").login()
        data = blob(6 * MIB, "through a full disk")
        uid = self.new_upload(a, len(data))["upload_id"]
        self.assertStatus(self.patch(a, uid, 0, data[:2 * MIB]), 204)
        ballast = os.path.join(self.node.data_dir, "ballast")
        fill(ballast)  # full to the last byte
        r = self.patch(a, uid, 2 * MIB, data[2 * MIB:4 * MIB])
        self.assertError(r, 503, "store_unavailable")
        os.unlink(ballast)
        offset = self.offset_of(a, uid)
        self.assertEqual(offset, 2 * MIB, "a refused chunk counts for nothing")
        deadline = time.monotonic() + POLL_S
        while True:  # the stores take writes again within a second or so
            r = self.patch(a, uid, offset, data[offset:])
            if r.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
            offset = self.offset_of(a, uid)
        self.assertStatus(r, 201)
        self.assertAsset(r.json, data)
        self.fetch(a, blake(data), data)

    def test_a_directory_in_the_asset_store_is_left_alone_and_the_node_starts(self):
        # An operator's directory (or a copy tool's leftovers) where the store keeps files.
        self.node = self.start_node(config=MAIN_CONFIG)
        alice = self.person("alice")
        data = blob(3000, "beside a directory")
        aid = self.upload(alice.login(), data)["id"]
        self.node.stop()
        root = os.path.join(self.node.data_dir, "assets")
        made = [os.path.join(root, "uploads", "old"), os.path.join(root, "blobs", aid[:2], "junk")]
        for d in made:
            os.makedirs(d)
        # Beside them, a blob a crash left without its record: that one goes.
        stray = os.path.join(root, "blobs", aid[:2], aid[:2] + "e" * 62)
        with open(stray, "wb") as f:
            f.write(b"left by a crash")
        self.node.start()
        self.fetch(alice.login("after restart"), aid, data)
        for d in made:
            self.assertTrue(os.path.isdir(d), "%s is not the node's to remove" % d)
        self.assertFalse(os.path.exists(stray), "a blob file without a record is removed at start")


class DownloadHangUpTest(AssetCase):
    """Downloads larger than the socket buffers, cut off by the client."""

    NODE_CONFIG = {"assets": {"max_asset_bytes": 64 * MIB}}

    def test_clients_that_hang_up_mid_download_leave_the_node_serving(self):
        # A download goes from the file to the socket by sendfile: a client that closes with
        # most of the body unread makes the node's next send fail (over TCP, ECONNRESET),
        # which must end that one response and nothing else. (The SIGPIPE a closed socket
        # pair raises is test_tls.py's: over TLS the front closes such a pair.)
        alice = self.person("alice")
        a = alice.login()
        data = blob(48 * 1024 * KIB, "hang-up")
        aid = self.upload(a, data, name="big.bin")["id"]
        for attempt in range(5):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the body backs up at the node
            s.settimeout(HTTP_TIMEOUT_S)
            s.connect(("127.0.0.1", self.node.port))
            try:
                s.sendall(request_head(self.node, "GET", "/v1/assets/" + q(aid), a["access_token"]))
                got = s.recv(64 * KIB)
                self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:40])
            finally:
                s.close()  # unread bytes in our buffer: the kernel answers the node with a reset
        self.fetch(a, aid, data)
        self.assertIsNone(self.node.proc.poll(), "the node died when a client hung up mid-download")


class SlowUploadTest(AssetCase):
    """An upload's body may take longer than gateway.request_timeout_ms, but must keep up
    1,024 bytes per second on average after it."""

    NODE_CONFIG = {"gateway": {"request_timeout_ms": 1000}}

    def test_a_body_trickled_byte_by_byte_is_cut_off(self):
        a = self.person("alice").login()
        s = socket.create_connection(("127.0.0.1", self.node.port), timeout=HTTP_TIMEOUT_S)
        self.addCleanup(s.close)
        s.sendall(request_head(self.node, "POST", "/v1/assets?name=slow.bin", a["access_token"],
                               [("Content-Length", "100000")]))
        answer = b""
        started = time.monotonic()
        cut_while_sending = False
        try:
            for _ in range(40):  # one byte every 0.3 s: each read in time, the whole far too slow
                s.sendall(b"x")
                if select.select([s], [], [], 0.3)[0]:
                    cut_while_sending = True  # the node answered before the client stopped
                    break
        except OSError:
            cut_while_sending = True  # the node answered and closed: the answer is read below
        self.assertTrue(cut_while_sending, "a body trickled at 3 bytes/s for 12 s was not cut off")
        while True:
            try:
                chunk = s.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        self.assertTrue(answer.startswith(b"HTTP/1.1 408"), answer[:200])
        self.assertIn(b"request_timeout", answer)
        self.assertLess(time.monotonic() - started, 60)
        # A body that keeps pace is taken, however long past the request timeout it takes.
        data = blob(24 * KIB, "paced")
        s2 = socket.create_connection(("127.0.0.1", self.node.port), timeout=HTTP_TIMEOUT_S)
        self.addCleanup(s2.close)
        s2.sendall(request_head(self.node, "POST", "/v1/assets?name=paced.bin", a["access_token"],
                                [("Content-Length", str(len(data)))]))
        for i in range(0, len(data), 4 * KIB):  # 16 KiB/s for 1.5 s
            s2.sendall(data[i:i + 4 * KIB])
            time.sleep(0.25)
        head = s2.recv(4096)
        self.assertTrue(head.startswith(b"HTTP/1.1 201"), head[:300])



class DownloadLinksTest(AssetCase):
    """A browser's own download of an attachment (docs/PROTOCOL.md, "Download links"):
    POST /v1/assets/{id}/link, then a GET of its URL with no Authorization header."""

    LINK_TTL_S = 120
    NODE_CONFIG = {"assets": {"link_ttl_s": LINK_TTL_S}}

    def link(self, session, asset_id, status=200):
        r = self.http("POST", "/v1/assets/%s/link" % asset_id, session)
        self.assertStatus(r, status, "a link to %s" % asset_id)
        return r

    def test_a_link_serves_one_asset_to_its_session_as_a_download(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        png = make_png(64, 48, seed=9)
        text = b"notes " + uuid.uuid4().hex.encode() + b"\n"
        picture, notes = self.upload(a, png, name="p.png"), self.upload(a, text, name="notes.txt")
        made = now_ms()
        answer = self.link(a, picture["id"]).json
        self.assertTrue(answer["url"].startswith("/v1/assets/%s?link=" % picture["id"]), answer)
        expires = datetime.datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00")).timestamp() * 1000
        self.assertLessEqual(abs(expires - (made + self.LINK_TTL_S * 1000)), 5000, answer)

        r = self.http("GET", answer["url"])  # no token
        self.assertStatus(r, 200)
        self.assertTrue(r.raw == png, "the link's bytes are the asset's")
        self.assertEqual(r.headers.get("Content-Type"), "image/png")
        self.assertEqual(disposition(r)[0], "attachment", "shown in place by a token's GET, a download by a link's")
        self.assertEqual(disposition(r)[1], "p.png")
        self.assertEqual(r.headers.get("Cache-Control"), "no-store")
        self.assertIsNone(r.headers.get("Vary"))
        self.assertEqual(r.headers.get("Referrer-Policy"), "no-referrer")
        self.assertEqual(r.headers.get("X-Content-Type-Options"), "nosniff")
        self.assertEqual(r.headers.get("Content-Security-Policy"), "default-src 'none'; sandbox")
        head = self.http("HEAD", answer["url"])
        self.assertStatus(head, 200)
        self.assertEqual(head.headers.get("Content-Length"), str(len(png)))
        self.assertStatus(self.http("GET", answer["url"], headers=[("If-None-Match", '"%s"' % picture["id"])]), 304)
        part = self.http("GET", answer["url"], headers=[("Range", "bytes=0-9")])
        self.assertStatus(part, 206)
        self.assertEqual(part.raw, png[:10])
        self.assertEqual(disposition(self.http("GET", answer["url"] + "&name=holiday.png"))[1], "holiday.png")
        # A proxy's own credentials do not make it an ordinary (token) download.
        self.assertEqual(self.http("GET", answer["url"], headers=[("Authorization", "Basic cDpx")]).raw, png)

        token = answer["url"].split("?link=")[1]
        # The link opens its own asset only, and only as it was made.
        self.assertError(self.http("GET", "/v1/assets/%s?link=%s" % (notes["id"], token)), 401, "invalid_token")
        expiry, device, mac = token.split(".")
        middle = len(mac) // 2
        flipped = mac[:middle] + ("B" if mac[middle] != "B" else "C") + mac[middle + 1:]
        for bad in ("%s.%s.%s" % (expiry, device, flipped),
                    "%d.%s.%s" % (int(expiry) + 3600 * 1000, device, mac),
                    "%s.%s.%s" % (expiry, b["device_id"], mac), "x", ""):
            with self.subTest(token=bad):
                self.assertError(self.http("GET", "/v1/assets/%s?link=%s" % (picture["id"], bad)), 401, "invalid_token")
        # Only who may download the asset gets a link to it (bob is in no conversation that
        # holds it), and with a token the link in the query changes nothing.
        self.assertError(self.link(b, picture["id"], 404), 404, "asset_not_found")
        self.assertError(self.http("POST", "/v1/assets/%s/link" % picture["id"]), 401, "missing_token")
        self.assertError(self.http("GET", answer["url"], b), 404, "asset_not_found")
        self.assertError(self.http("GET", "/v1/assets/%s/link" % picture["id"], a), 405, "method_not_allowed")

        # It ends with its session.
        self.assertStatus(self.node.request("DELETE", "/v1/sessions/current", token=a["access_token"]), 204)
        self.assertError(self.http("GET", answer["url"]), 401, "session_revoked")


class DownloadLinkExpiryTest(AssetCase):

    NODE_CONFIG = {"assets": {"link_ttl_s": 1}}

    def test_a_link_ends_with_its_time(self):
        alice = self.person("alice")
        a = alice.login()
        text = b"brief " + uuid.uuid4().hex.encode()
        asset = self.upload(a, text, name="brief.txt")
        r = self.http("POST", "/v1/assets/%s/link" % asset["id"], a)
        self.assertStatus(r, 200)
        time.sleep(1.5)
        self.assertError(self.http("GET", r.json["url"]), 401, "token_expired")



class ReferenceFloodTest(AssetCase):
    """Who may download an attachment is found through the conversations that hold it,
    each looked at once: references elsewhere, however many, do not hide it from a member
    (a node that looked at only the newest 16,384 references did)."""

    FLOOD = 16400
    NODE_CONFIG = {"messages": {"max_per_second": 100000}}

    def test_references_elsewhere_do_not_hide_an_attachment_from_a_member(self):
        alice, bob, mallory = self.person("alice"), self.person("bob"), self.person("mallory")
        a, b, m = alice.login(), bob.login(), mallory.login()
        text = b"minutes " + uuid.uuid4().hex.encode() + b"\n"
        notes = self.upload(a, text, name="minutes.txt")
        A = self.ws(a)
        self.send_attached(A, [{"asset_id": notes["id"]}], to=bob.id)
        self.send_attached(A, [{"asset_id": notes["id"]}], to=mallory.id)
        self.fetch(b, notes["id"], text)
        # mallory, who got it too, sends it to herself again and again.
        M = self.ws(m)
        attachment = [{"asset_id": notes["id"]}]
        for start in range(0, self.FLOOD, 500):
            refs = []
            for _ in range(start, min(start + 500, self.FLOOD)):
                ref = M.next_ref()
                M.send_frame({"ref": ref, "send": self.attach_send(attachment, to=mallory.id)})
                refs.append(ref)
            for ref in refs:
                self.assertIn("accepted", M.wait_ref(ref), "send %s of the flood" % ref)
        self.fetch(b, notes["id"], text)
        self.fetch(m, notes["id"], text)
        # One who is in none of the conversations still gets nothing.
        self.assertGone(self.person("eve").login(), notes["id"])



class DroppedChunkTest(AssetCase):
    """A PATCH whose connection drops: what reached the node is kept, and the upload is
    free for the next PATCH at once (not after gateway.request_timeout_ms, here 60 s)."""

    NODE_CONFIG = {"gateway": {"request_timeout_ms": 60000}}

    def test_the_upload_is_free_again_as_soon_as_the_connection_drops(self):
        a = self.person("alice").login()
        data = os.urandom(1000)
        uid = self.new_upload(a, len(data))["upload_id"]
        s = socket.create_connection(("127.0.0.1", self.node.port), timeout=HTTP_TIMEOUT_S)
        s.sendall(request_head(self.node, "PATCH", self.upath(uid), a["access_token"],
                               [("Upload-Offset", "0"), ("Content-Type", "application/offset+octet-stream"),
                                ("Content-Length", str(len(data)))]) + data[:300])
        s.close()
        # Well within the 60 s a read waits for bytes, the 300 count and the rest goes on.
        deadline = time.monotonic() + 20
        while self.offset_of(a, uid) < 300:
            self.assertLess(time.monotonic(), deadline, "the 300 bytes that came did not count after the drop")
            time.sleep(0.05)
        while True:
            r = self.patch(a, uid, 300, data[300:])
            if r.status != 409:
                break
            self.assertError(r, 409, "upload_busy")
            self.assertLess(time.monotonic(), deadline, "the upload stayed busy after its connection dropped")
            time.sleep(0.1)
        self.assertStatus(r, 201)
        self.assertEqual(r.json["id"], blake(data))


class ThumbnailTimeLimitTest(AssetCase):
    """assets.thumbnail_time_limit_ms: an image whose thumbnail takes longer is stored
    without one, and the node's one thumbnail line goes on."""

    NODE_CONFIG = {"assets": {"thumbnail_time_limit_ms": 300}}

    def test_an_image_too_slow_to_thumbnail_is_stored_without_one(self):
        a = self.person("alice").login()
        # 64 megapixels to decode: over a second of CPU here, and far more than 300 ms
        # anywhere; the header and the set-up take a few milliseconds, so the limit stops
        # the pixel work itself.
        big = make_large_png(8000)
        asset = self.upload(a, big, name="big.png")
        self.assertEqual((asset["content_type"], asset.get("width"), asset.get("height")), ("image/png", 8000, 8000),
                         asset)
        self.assertFalse(asset.get("thumbnail_id"), "stopped at the time limit: %s" % asset)
        deadline = time.monotonic() + POLL_S  # the log is read by another thread
        while not any("stored without a thumbnail: not made within" in line
                      for line in self.node.stderr_lines + self.node.stdout_lines):
            self.assertLess(time.monotonic(), deadline, "the log says why")
            time.sleep(0.05)
        self.fetch(a, asset["id"], big)
        self.assertHealthy()
        # The limit raised, an upload of the same bytes makes the thumbnail that is missing.
        self.node.stop()
        self.node.config["assets"]["thumbnail_time_limit_ms"] = 120000
        with open(self.node.config_path, "w") as f:
            f.write(toml_text(self.node.config))
        self.node.start()
        a = self.person("carol").login()
        again = self.upload(a, big, name="again.png")
        self.assertEqual(again["id"], asset["id"])
        self.assertTrue(again.get("thumbnail_id"), again)
        self.assertThumbnail(a, again, px=320)  # (the default assets.thumbnail_px)

    def test_the_same_image_gets_its_thumbnail_without_the_limit(self):
        node = self.start_node(config={"assets": {"thumbnail_time_limit_ms": 120000}})
        node.new_user("bob")
        a = node.new_session("bob", device="phone")
        asset = self.upload(a, make_large_png(8000), name="big.png", node=node)
        self.assertTrue(asset.get("thumbnail_id"), asset)


if __name__ == "__main__":
    unittest.main()
