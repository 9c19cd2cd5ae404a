"""The far side of push notifications, for process tests (docs/PROTOCOL.md, "Push
notifications"): what a push service, a UnifiedPush distributor or a Matrix push gateway
sees, and what a browser does with it.

- TestCA: a throwaway CA and a server certificate for "localhost", 127.0.0.1 and ::1,
  made once per process; its PEM is what the node trusts through `push.ca_file`.
- PushReceiver: an HTTPS server on 127.0.0.1 that records every request (monotonic time,
  method, path, headers, body) and answers per path from a script (status, headers, JSON,
  a delay, or "hang": never answer). Defaults: 201 (Web Push), 200 {"rejected": []}
  (paths with /_matrix/ in them).
- DeadEndpoint: a TCP listener that accepts and never says a word (no TLS handshake).
- From pushcrypto.py, re-exported here: Subscription (a browser's Web Push keys),
  decrypt_aes128gcm / encrypt_aes128gcm (RFC 8291), check_vapid (RFC 8292).

Standard library plus python3-cryptography (Debian 12: 38.0). Run this file to self-check
(the cryptography, then the receiver and the dead endpoint over real sockets).
"""

import atexit
import datetime
import http.server
import ipaddress
import json
import os
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import pushcrypto
from pushcrypto import (DecryptError, Subscription, VapidError, b64url, check_vapid, decrypt_aes128gcm,
                        encrypt_aes128gcm, make_vapid_jwt, parse_vapid_authorization, point_of, public_key_of,
                        unb64url)

__all__ = ["TestCA", "test_ca", "ca_file", "Reply", "HANG", "Request", "PushReceiver", "DeadEndpoint",
           # re-exported from pushcrypto
           "DecryptError", "Subscription", "VapidError", "b64url", "check_vapid", "decrypt_aes128gcm",
           "encrypt_aes128gcm", "make_vapid_jwt", "parse_vapid_authorization", "point_of", "public_key_of", "unb64url"]

WAIT_S = 20.0

# ---------------------------------------------------------------------------------------
# Test CA


class TestCA:
    """A CA (P-256) and a server certificate it signed for localhost / *.push.test /
    127.0.0.1 / ::1 (more with issue()), in a temporary directory removed at exit."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="petchat-push-ca-")
        atexit.register(shutil.rmtree, self.dir, True)
        now = datetime.datetime.utcnow()
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "petchat push test CA")])
        ca_cert = (x509.CertificateBuilder()
                   .subject_name(ca_name).issuer_name(ca_name)
                   .public_key(ca_key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
                   .sign(ca_key, hashes.SHA256()))
        self._ca_key, self._ca_name = ca_key, ca_name
        self.ca_file = os.path.join(self.dir, "ca.pem")
        with open(self.ca_file, "wb") as f:
            f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_file = os.path.join(self.dir, "server.pem")
        self.key_file = os.path.join(self.dir, "server.key")
        self.issue(self.cert_file, self.key_file)

    def issue(self, cert_file, key_file, common_name="localhost", days=30):
        """Writes a new key and a server certificate this CA signed (for localhost,
        *.push.test, 127.0.0.1 and ::1, named `common_name`); returns its serial number."""
        now = datetime.datetime.utcnow()
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(self._ca_name)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(now - datetime.timedelta(days=1 if days > 0 else 2 - days))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False, crl_sign=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.DNSName("*.push.test"),  # names stubdns.StubDns answers
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                               critical=False)
                .sign(self._ca_key, hashes.SHA256()))
        with open(cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        os.chmod(key_file, 0o600)  # the node refuses a key every user may read
        return serial

    @staticmethod
    def not_after(cert_file):
        """A certificate's end of validity, Unix seconds."""
        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        return int(cert.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp())

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return ctx


_ca = None
_ca_lock = threading.Lock()


def test_ca():
    """The process's TestCA (made on first use)."""
    global _ca
    with _ca_lock:
        if _ca is None:
            _ca = TestCA()
        return _ca


def ca_file():
    """The PEM file for the node's `push.ca_file`."""
    return test_ca().ca_file


# ---------------------------------------------------------------------------------------
# The receiver


class Reply:
    """One scripted answer. status None: the path's default (201, or 200 under /_matrix/).
    json: a body sent as application/json; body: raw bytes. delay: seconds to wait before
    answering. hang: never answer (the connection stays open until the server closes)."""

    def __init__(self, status=None, headers=None, json=None, body=None, delay=0.0, hang=False, flood=None):
        self.status = status
        self.headers = dict(headers or {})
        self.json = json
        self.body = body
        self.delay = delay
        self.hang = hang
        # flood: (head, filler, total): the answer's raw start, then `filler` written again
        # and again until `total` bytes went out or the node hung up; the request's
        # `flooded` is then the bytes the node took.
        self.flood = flood

    def __repr__(self):
        return "Reply(%s%s%s)" % (self.status, ", hang" if self.hang else "",
                                  ", delay %.1f" % self.delay if self.delay else "")


HANG = Reply(hang=True)


def is_matrix_path(path):
    return "/_matrix/" in path


class Request:
    """One recorded request. t: time.monotonic() when its body was read; headers: a dict
    with lower-case names (the last value wins; header_list keeps them all)."""

    def __init__(self, t, method, path, query, header_list, body, peer):
        self.t = t
        self.wall = time.time()
        self.method = method
        self.path = path
        self.query = query
        self.header_list = header_list
        self.headers = {k.lower(): v for k, v in header_list}
        self.flooded = None
        self.body = body
        self.peer = peer
        self.status = None  # the status it is answered with (None: not answered, e.g. hang)

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<%s %s%s %d bytes -> %s>" % (self.method, self.path, "?" + self.query if self.query else "",
                                             len(self.body), self.status)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pushrecv/1"

    def log_message(self, fmt, *args):
        pass

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        recv = self.server.receiver
        body = self._read_body()
        path, _, query = self.path.partition("?")
        req = Request(time.monotonic(), self.command, path, query, list(self.headers.items()), body,
                      self.client_address)
        reply = recv._record_and_choose(req)
        if reply.flood:
            head, filler, total = reply.flood
            sent = 0
            try:
                self.wfile.write(head)
                while sent < total and not recv._closed.is_set():
                    self.wfile.write(filler)
                    sent += len(filler)
            except OSError:
                pass
            with recv._cv:
                req.status, req.flooded = 200, sent
                recv._cv.notify_all()
            self.close_connection = True
            return
        if reply.hang:
            recv._hang(self.connection)
            self.close_connection = True
            return
        if reply.delay:
            if recv._closed.wait(reply.delay):
                self.close_connection = True
                return
        status = reply.status if reply.status is not None else (200 if is_matrix_path(path) else 201)
        if reply.json is not None:
            payload = json.dumps(reply.json).encode()
            ctype = "application/json"
        elif reply.body is not None:
            payload = reply.body
            ctype = "application/octet-stream"
        elif is_matrix_path(path) and reply.status is None:
            payload = b'{"rejected": []}'
            ctype = "application/json"
        else:
            payload = b""
            ctype = None
        with recv._cv:
            req.status = status
            recv._cv.notify_all()
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in reply.headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_POST = do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, receiver, context):
        self.receiver = receiver
        self.context = context
        super().__init__(addr, _Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake happens here, in the request's own thread, so that a client
        # that never completes it does not hold up the others.
        request.settimeout(60)
        self.receiver._before_handshake()
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.receiver._note_tls_error(client_address, e)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class PushReceiver:
    """An HTTPS push endpoint (push service, distributor or Matrix gateway) on 127.0.0.1.

    with PushReceiver() as recv:
        recv.script("/wp/1", [Reply(500), Reply(500)], then=Reply(201))
        url = recv.url("/wp/1")
        ...
        [req] = recv.wait_requests("/wp/1", 1)
    """

    def __init__(self, host="127.0.0.1"):
        self._cv = threading.Condition()
        self._closed = threading.Event()
        self._requests = []
        self._scripts = {}  # path -> [list of Reply, then-Reply]
        self._hung = []
        self._handshakes_held = 0  # connections to hold before their TLS handshake
        self._held = 0  # held now
        self._release = threading.Event()
        self.tls_errors = []
        self.host = host
        self._server = _TLSServer((host, 0), self, test_ca().server_context())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name="pushrecv")
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def origin(self):
        """The origin of its URLs, as VAPID's `aud` names it."""
        return "https://%s:%d" % (self.host, self.port)

    def url(self, path, host=None):
        return "https://%s:%d%s" % (host or self.host, self.port, path)

    # -- scripting --------------------------------------------------------------------------

    def script(self, path, replies=(), then=None):
        """Requests on `path` are answered by `replies` in order, then by `then` (default:
        201, or 200 {"rejected": []} under /_matrix/) for ever."""
        with self._cv:
            self._scripts[path] = [list(replies), then or Reply()]

    def _record_and_choose(self, req):
        with self._cv:
            self._requests.append(req)
            sc = self._scripts.get(req.path)
            if sc is None:
                reply = Reply()
            elif sc[0]:
                reply = sc[0].pop(0)
            else:
                reply = sc[1]
            self._cv.notify_all()
            return reply

    def hold_handshakes(self, n):
        """The next `n` connections wait before their TLS handshake until release()."""
        with self._cv:
            self._handshakes_held = n
            self._release.clear()

    def wait_held(self, n=1, timeout=WAIT_S):
        """Waits until `n` connections are held before their handshake."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._held >= n, timeout):
                raise AssertionError("no connection held within %.0f s" % timeout)

    def release(self):
        self._release.set()

    def _before_handshake(self):
        with self._cv:
            if self._handshakes_held == 0:
                return
            self._handshakes_held -= 1
            self._held += 1
            self._cv.notify_all()
        self._release.wait(60)

    def _hang(self, conn):
        with self._cv:
            self._hung.append(conn)
        self._closed.wait()

    def _note_tls_error(self, peer, e):
        with self._cv:
            self.tls_errors.append((peer, repr(e)))
            self._cv.notify_all()

    # -- reading ----------------------------------------------------------------------------

    def requests(self, path=None):
        """Requests received so far (on `path`, or all), oldest first."""
        with self._cv:
            return [r for r in self._requests if path is None or r.path == path]

    def count(self, path=None):
        return len(self.requests(path))

    def wait_requests(self, path, n=1, timeout=WAIT_S, answered=False):
        """Waits until `path` got at least n requests (answered: and they were answered);
        returns them all. Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                got = [r for r in self._requests if r.path == path]
                if answered:
                    got = [r for r in got if r.status is not None]
                if len(got) >= n:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("%d request(s) on %s within %.0f s, want %d; all requests: %s; "
                                         "TLS errors: %s" % (len(got), path, timeout, n, self._requests,
                                                             self.tls_errors))
                self._cv.wait(min(remaining, 0.5))

    def wait_for(self, pred, timeout=WAIT_S, what="a matching request"):
        """Waits for a request with pred(req) true; returns the first such."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for r in self._requests:
                    if pred(r):
                        return r
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no %s within %.0f s; requests: %s" % (what, timeout, self._requests))
                self._cv.wait(min(remaining, 0.5))

    def assert_quiet(self, path, seconds, already=None):
        """Asserts that no request (beyond `already`, default: those received so far) arrives
        on `path` (None: on any path) for `seconds`."""
        with self._cv:
            base = already if already is not None else len([r for r in self._requests
                                                            if path is None or r.path == path])
        time.sleep(seconds)
        got = self.requests(path)
        if len(got) > base:
            raise AssertionError("unexpected request(s) on %s: %s" % (path or "any path", got[base:]))

    def close(self):
        if self._closed.is_set():
            return
        self._closed.set()
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        with self._cv:
            hung = list(self._hung)
        for c in hung:
            try:
                c.close()
            except OSError:
                pass


class DeadEndpoint:
    """A TCP listener on 127.0.0.1 that accepts connections and never speaks (no TLS, no
    HTTP, no close): a push endpoint that has hung. Connections stay open until close()."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._cv = threading.Condition()
        self._conns = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="deadendpoint")
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def url(self, path):
        return "https://%s:%d%s" % (self.host, self.port, path)

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cv:
                self._conns.append(c)
                self._cv.notify_all()

    @property
    def accepted(self):
        with self._cv:
            return len(self._conns)

    def open_connections(self):
        """Accepted connections whose peer has not closed them."""
        n = 0
        with self._cv:
            conns = list(self._conns)
        for c in conns:
            try:
                c.setblocking(False)
                data = c.recv(65536, socket.MSG_PEEK)
                if data != b"":
                    n += 1  # it sent something (a ClientHello): still open
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def wait_accepted(self, n=1, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self._conns) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the dead endpoint accepted %d connection(s) within %.0f s, want %d"
                                         % (len(self._conns), timeout, n))
                self._cv.wait(remaining)

    def close(self):
        self._stop = True
        try:
            self._sock.close()
        except OSError:
            pass
        with self._cv:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        self._thread.join(2)


# ---------------------------------------------------------------------------------------
# Self-check (needs no petchat build)


def _self_check():
    import urllib.request

    pushcrypto.self_check()

    # The receiver: TLS with the test CA, scripts, recording, hang; the dead endpoint.
    with PushReceiver() as recv:
        recv.script("/a", [Reply(500), Reply(429, headers={"Retry-After": "2"})])
        ctx = test_ca().client_context()
        codes = []
        for host in ("127.0.0.1", "localhost"):
            for _ in range(2 if host == "127.0.0.1" else 1):
                req = urllib.request.Request(recv.url("/a", host=host), data=b"x" * 10, method="POST")
                try:
                    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                        codes.append(r.status)
                except urllib.error.HTTPError as e:
                    codes.append(e.code)
        assert codes == [500, 429, 201], codes
        req = urllib.request.Request(recv.url("/_matrix/push/v1/notify"), data=b"{}", method="POST")
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            assert r.status == 200 and json.loads(r.read()) == {"rejected": []}
        got = recv.wait_requests("/a", 3, timeout=2)
        assert [g.body for g in got] == [b"x" * 10] * 3 and got[0].t <= got[1].t <= got[2].t
        recv.assert_quiet("/a", 0.2)
        recv.script("/h", [HANG])
        s = socket.create_connection(("127.0.0.1", recv.port), timeout=5)
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        t.sendall(b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        recv.wait_requests("/h", 1, timeout=2)
        t.settimeout(0.5)
        try:
            t.recv(10)
            raise AssertionError("a hanging path answered")
        except socket.timeout:
            pass
        t.close()
    with DeadEndpoint() as dead:
        c = socket.create_connection(("127.0.0.1", dead.port), timeout=5)
        dead.wait_accepted(1, 2)
        assert dead.open_connections() == 1
        c.close()
    print("pushrecv self-check: ok (cryptography %s)" % __import__("cryptography").__version__)



if __name__ == "__main__":
    _self_check()
