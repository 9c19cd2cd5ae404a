"""Web Push cryptography as a browser and a push service see it, for process tests
(docs/PROTOCOL.md, "Web Push and UnifiedPush"): written from the RFCs, independent of the
node.

- Subscription: a browser's subscription keys (a P-256 pair, 16 bytes of auth secret) and
  their base64url forms for `keys.p256dh` and `keys.auth`.
- decrypt_aes128gcm / encrypt_aes128gcm: RFC 8291 (the RFC 8188 `aes128gcm` coding).
- check_vapid: RFC 8292's `Authorization: vapid t=<JWT>, k=<key>`, checked in full.

Standard library plus python3-cryptography (Debian 12: 38.0). pushrecv.py re-exports all
of it. Run this file to self-check (RFC 8291 Appendix A, round trips, JWTs).
"""

import base64
import json
import os
import struct
import time

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["b64url", "unb64url", "point_of", "public_key_of", "Subscription", "DecryptError", "decrypt_aes128gcm",
           "encrypt_aes128gcm", "VapidError", "parse_vapid_authorization", "check_vapid", "make_vapid_jwt"]

# ---------------------------------------------------------------------------------------
# base64url


def b64url(data):
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text):
    """base64url, padding optional; raises ValueError on anything else."""
    if isinstance(text, str):
        text = text.encode("ascii")
    if b"+" in text or b"/" in text:
        raise ValueError("not base64url: %r" % text[:40])
    text = text.rstrip(b"=")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


# ---------------------------------------------------------------------------------------
# Web Push subscription keys and RFC 8291


def point_of(public_key):
    """The 65-byte uncompressed point of a P-256 public key."""
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def public_key_of(point):
    """A P-256 public key from its encoded point; raises ValueError if it is not one."""
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(point))


class Subscription:
    """What `pushManager.subscribe` makes in a browser: a P-256 key pair and 16 random
    bytes of auth secret. keys() is the `keys` object of a target's registration."""

    def __init__(self, private_key=None, auth=None):
        self.private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        self.public = point_of(self.private_key.public_key())
        self.auth = auth if auth is not None else os.urandom(16)

    @property
    def p256dh(self):
        return b64url(self.public)

    @property
    def auth_b64(self):
        return b64url(self.auth)

    def keys(self):
        return {"p256dh": self.p256dh, "auth": self.auth_b64}

    def decrypt(self, body):
        """The plaintext of an aes128gcm body (see decrypt_aes128gcm); returns (plaintext, info)."""
        return decrypt_aes128gcm(body, self.private_key, self.auth)


def _hkdf(salt, ikm, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _webpush_keys(ecdh_secret, auth, ua_public, as_public, salt):
    """RFC 8291 section 3.3 and 3.4, RFC 8188 section 2.2 and 2.3: (CEK, base nonce)."""
    ikm = _hkdf(auth, ecdh_secret, b"WebPush: info\x00" + ua_public + as_public, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    return cek, nonce


def _record_nonce(base, seq):
    n = int.from_bytes(base, "big") ^ seq
    return n.to_bytes(12, "big")


class DecryptError(AssertionError):
    pass


def decrypt_aes128gcm(body, ua_private, auth):
    """Decrypts an RFC 8291 message. Returns (plaintext, info): info has salt, rs, keyid
    (the sender's public key), records (their count). Raises DecryptError with a reason."""
    if len(body) < 21:
        raise DecryptError("aes128gcm body of %d bytes is shorter than its header" % len(body))
    salt = body[:16]
    rs = struct.unpack(">I", body[16:20])[0]
    idlen = body[20]
    if len(body) < 21 + idlen:
        raise DecryptError("aes128gcm body ends inside its key id")
    keyid = body[21:21 + idlen]
    data = body[21 + idlen:]
    info = {"salt": salt, "rs": rs, "idlen": idlen, "keyid": keyid, "records": 0}
    if rs < 18:
        raise DecryptError("record size %d below 18" % rs)
    if idlen != 65:
        raise DecryptError("key id of %d bytes; RFC 8291 puts the 65-byte sender key there" % idlen)
    try:
        as_key = public_key_of(keyid)
    except ValueError as e:
        raise DecryptError("the key id is not a P-256 point: %s" % e)
    ua_public = point_of(ua_private.public_key())
    secret = ua_private.exchange(ec.ECDH(), as_key)
    cek, base_nonce = _webpush_keys(secret, auth, ua_public, keyid, salt)
    aes = AESGCM(cek)
    if not data:
        raise DecryptError("no records")
    records = [data[i:i + rs] for i in range(0, len(data), rs)]
    out = b""
    for seq, rec in enumerate(records):
        if len(rec) < 17:
            raise DecryptError("record %d of %d bytes is too short" % (seq, len(rec)))
        try:
            plain = aes.decrypt(_record_nonce(base_nonce, seq), rec, None)
        except InvalidTag:
            raise DecryptError("record %d does not decrypt (wrong keys, derivation or nonce)" % seq)
        stripped = plain.rstrip(b"\x00")
        if not stripped:
            raise DecryptError("record %d has no padding delimiter" % seq)
        last = seq == len(records) - 1
        delim = stripped[-1]
        if delim != (2 if last else 1):
            raise DecryptError("record %d ends with delimiter %#x, want %#x" % (seq, delim, 2 if last else 1))
        out += stripped[:-1]
    info["records"] = len(records)
    return out, info


def encrypt_aes128gcm(plaintext, ua_public, auth, rs=4096, as_private=None, salt=None, pad=0):
    """RFC 8291 encryption in one record (for the self-check; the node has its own)."""
    as_private = as_private or ec.generate_private_key(ec.SECP256R1())
    salt = salt if salt is not None else os.urandom(16)
    as_public = point_of(as_private.public_key())
    secret = as_private.exchange(ec.ECDH(), public_key_of(ua_public))
    cek, nonce = _webpush_keys(secret, auth, ua_public, as_public, salt)
    record = AESGCM(cek).encrypt(nonce, plaintext + b"\x02" + b"\x00" * pad, None)
    if len(record) > rs:
        raise ValueError("plaintext does not fit in one record")
    return salt + struct.pack(">I", rs) + bytes([len(as_public)]) + as_public + record


# ---------------------------------------------------------------------------------------
# VAPID (RFC 8292)


class VapidError(AssertionError):
    pass


def parse_vapid_authorization(value):
    """`vapid t=<jwt>, k=<key>` -> (jwt, k). Raises VapidError."""
    if not value:
        raise VapidError("no Authorization header")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "vapid":
        raise VapidError("Authorization scheme %r, want vapid: %r" % (scheme, value[:80]))
    params = {}
    for part in rest.split(","):
        k, eq, v = part.strip().partition("=")
        if not eq:
            raise VapidError("Authorization parameter without '=': %r" % part)
        params[k.strip().lower()] = v.strip()
    if "t" not in params or "k" not in params:
        raise VapidError("Authorization lacks t= or k=: %r" % value[:120])
    return params["t"], params["k"]


def check_vapid(value, expected_key, audience, expected_sub=None, now=None, max_ahead_s=24 * 3600):
    """Checks an RFC 8292 Authorization header: k is `expected_key` (base64url of the 65-byte
    point the node publishes), the ES256 signature verifies with it, the header is
    {"typ": "JWT", "alg": "ES256"}, aud == `audience` (the endpoint's origin), exp is in the
    future and at most `max_ahead_s` ahead, sub is present (and == expected_sub if given).
    Returns (header, claims)."""
    jwt, k = parse_vapid_authorization(value)
    try:
        k_bytes, expected = unb64url(k), unb64url(expected_key)
    except ValueError as e:
        raise VapidError("k is not base64url: %s" % e)
    if k_bytes != expected:
        raise VapidError("k=%s is not the node's published VAPID key %s" % (k, expected_key))
    if len(k_bytes) != 65 or k_bytes[0] != 4:
        raise VapidError("k is not a 65-byte uncompressed point")
    parts = jwt.split(".")
    if len(parts) != 3:
        raise VapidError("the JWT has %d parts, want 3" % len(parts))
    try:
        header = json.loads(unb64url(parts[0]))
        claims = json.loads(unb64url(parts[1]))
        sig = unb64url(parts[2])
    except ValueError as e:
        raise VapidError("the JWT is not base64url JSON: %s" % e)
    if header.get("alg") != "ES256":
        raise VapidError("JWT alg %r, want ES256" % header.get("alg"))
    if header.get("typ", "JWT") != "JWT":
        raise VapidError("JWT typ %r, want JWT" % header.get("typ"))
    if len(sig) != 64:
        raise VapidError("ES256 signature of %d bytes, want 64 (r || s)" % len(sig))
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        public_key_of(k_bytes).verify(der, (parts[0] + "." + parts[1]).encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VapidError("the JWT's signature does not verify with k")
    if claims.get("aud") != audience:
        raise VapidError("aud %r, want the endpoint's origin %r" % (claims.get("aud"), audience))
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise VapidError("exp %r is not an integer" % (exp,))
    now = time.time() if now is None else now
    if exp <= now:
        raise VapidError("exp %d is not in the future (now %d)" % (exp, now))
    if exp > now + max_ahead_s + 5:
        raise VapidError("exp is %d s ahead, more than %d" % (exp - now, max_ahead_s))
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise VapidError("sub missing: %r" % claims)
    if expected_sub is not None and sub != expected_sub:
        raise VapidError("sub %r, want %r" % (sub, expected_sub))
    return header, claims


def make_vapid_jwt(private_key, claims):
    """An ES256 JWT (for the self-check)."""
    head = b64url(json.dumps({"typ": "JWT", "alg": "ES256"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    der = private_key.sign((head + "." + body).encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return head + "." + body + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


# ---------------------------------------------------------------------------------------
# Self-check (needs no petchat build)


def self_check():
    import hashlib
    import hmac

    # RFC 8291 Appendix A.
    ua_priv = ec.derive_private_key(int.from_bytes(unb64url("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"), "big"),
                                    ec.SECP256R1())
    as_priv = ec.derive_private_key(int.from_bytes(unb64url("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"), "big"),
                                    ec.SECP256R1())
    auth = unb64url("BTBZMqHH6r4Tts7J_aSIgg")
    body = unb64url("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6Tlz"
                    "AC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")
    assert b64url(point_of(ua_priv.public_key())) == \
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
    plain, info = decrypt_aes128gcm(body, ua_priv, auth)
    assert plain == b"When I grow up, I want to be a watermelon", plain
    assert info["rs"] == 4096 and info["records"] == 1 and info["keyid"] == point_of(as_priv.public_key())
    again = encrypt_aes128gcm(plain, point_of(ua_priv.public_key()), auth, as_private=as_priv, salt=info["salt"])
    assert again == body, "the encryptor does not reproduce RFC 8291 Appendix A"

    # The derivation again with plain HMAC (RFC 5869 by hand), against the HKDF class.
    def hm(k, m):
        return hmac.new(k, m, hashlib.sha256).digest()
    secret = ua_priv.exchange(ec.ECDH(), as_priv.public_key())
    ikm = hm(hm(auth, secret), b"WebPush: info\x00" + point_of(ua_priv.public_key())
             + point_of(as_priv.public_key()) + b"\x01")
    prk = hm(info["salt"], ikm)
    cek, nonce = _webpush_keys(secret, auth, point_of(ua_priv.public_key()), point_of(as_priv.public_key()),
                               info["salt"])
    assert cek == hm(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    assert nonce == hm(prk, b"Content-Encoding: nonce\x00\x01")[:12]

    # A round trip with fresh keys and padding; a wrong auth secret fails.
    sub = Subscription()
    msg = json.dumps({"v": 1, "text": "h\u00e9llo"}).encode()
    enc = encrypt_aes128gcm(msg, sub.public, sub.auth, pad=37)
    assert sub.decrypt(enc)[0] == msg
    try:
        decrypt_aes128gcm(enc, sub.private_key, os.urandom(16))
        raise AssertionError("decrypted with a wrong auth secret")
    except DecryptError:
        pass
    assert len(unb64url(sub.p256dh)) == 65 and unb64url(sub.p256dh)[0] == 4 and len(unb64url(sub.auth_b64)) == 16
    assert "=" not in sub.p256dh + sub.auth_b64

    # VAPID: a good header passes; a wrong key, audience, expiry or signature fails.
    vk = ec.generate_private_key(ec.SECP256R1())
    k = b64url(point_of(vk.public_key()))
    now = int(time.time())
    good = "vapid t=%s, k=%s" % (make_vapid_jwt(vk, {"aud": "https://127.0.0.1:1234", "exp": now + 43200,
                                                     "sub": "mailto:x@example.org"}), k)
    check_vapid(good, k, "https://127.0.0.1:1234", expected_sub="mailto:x@example.org")
    other = b64url(point_of(ec.generate_private_key(ec.SECP256R1()).public_key()))
    bad_cases = [
        (good, other, "https://127.0.0.1:1234"),
        (good, k, "https://127.0.0.1:1235"),
        ("vapid t=%s, k=%s" % (make_vapid_jwt(vk, {"aud": "https://a", "exp": now - 1, "sub": "x"}), k), k, "https://a"),
        ("vapid t=%s, k=%s" % (make_vapid_jwt(vk, {"aud": "https://a", "exp": now + 90000, "sub": "x"}), k), k,
         "https://a"),
        ("vapid t=%s, k=%s" % (make_vapid_jwt(vk, {"aud": "https://a", "exp": now + 60}), k), k, "https://a"),
        (good[:-60] + ("A" if good[-60] != "A" else "B") + good[-59:], k, "https://127.0.0.1:1234"),
    ]
    for value, key, aud in bad_cases:
        try:
            check_vapid(value, key, aud)
        except VapidError:
            continue
        raise AssertionError("check_vapid accepted %r" % value[:60])

    print("pushcrypto self-check: ok (cryptography %s)" % __import__("cryptography").__version__)


if __name__ == "__main__":
    self_check()
