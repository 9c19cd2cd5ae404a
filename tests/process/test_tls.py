"""TLS on the chat gateway (gateway.tls_cert_file / gateway.tls_key_file; docs/OPERATIONS.md,
"TLS"): HTTPS and WebSocket over TLS verified against a test CA, modern protocol versions
and ciphers only, a plain-HTTP client refused, a handshake that never finishes closed, the
certificate replaced by a reload (SIGHUP) while open connections carry on, a broken
certificate refused by the reload, by --check-config and at start.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import warnings

import harness
import pushrecv
import wsclient
from harness import NODE_BIN, Node, NodeTestCase


def peer_serial(node):
    """The serial number of the certificate the gateway presents now (verified)."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw:
        with node.tls_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return int(tls.getpeercert()["serialNumber"], 16)


def expiry_metric(node):
    """petchat_tls_certificate_expiry_timestamp_seconds as the node exports it."""
    for line in node.scrape().raw.decode().splitlines():
        if line.startswith('petchat_tls_certificate_expiry_timestamp_seconds{listener="gateway"} '):
            return int(float(line.split()[-1]))
    raise AssertionError("no petchat_tls_certificate_expiry_timestamp_seconds")


def gateway_connections(node):
    """petchat_http_connections{listener="gateway"}: open connections, TLS ones included."""
    for line in node.scrape().raw.decode().splitlines():
        if line.startswith('petchat_http_connections{listener="gateway"} '):
            return int(float(line.split()[-1]))
    raise AssertionError("no petchat_http_connections")


def wait_for(cond, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class TlsGatewayTest(NodeTestCase):
    def setUp(self):
        super().setUp()
        self.ca = pushrecv.TestCA()
        self.dir = tempfile.mkdtemp(prefix="petchat-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.cert = os.path.join(self.dir, "chat.pem")
        self.key = os.path.join(self.dir, "chat.key")
        self.serial = self.ca.issue(self.cert, self.key, "chat.test")

    def start_tls_node(self, **gateway):
        node = self.start_node(config={"gateway": dict({"tls_cert_file": self.cert, "tls_key_file": self.key},
                                                       **gateway)}, start=False)
        node.ca_file = self.ca.ca_file
        node.start()
        return node

    def test_https_and_websocket_over_tls(self):
        node = self.start_tls_node()
        self.assertTrue(node.ready_line.startswith("petchat-node ready:"), node.ready_line)
        self.assertIn("chat on https://127.0.0.1:%d" % node.port, node.ready_line)
        self.assertEqual(node.scheme, "https")
        self.assertStatus(node.request("GET", "/readyz"), 200)
        self.assertEqual(peer_serial(node), self.serial)
        self.assertEqual(expiry_metric(node), self.ca.not_after(self.cert))
        # Two people chat over wss://, each end verifying the certificate.
        node.new_user("alice")
        node.new_user("bob")
        alice = node.new_session("alice")
        bob = node.new_session("bob")
        for encoding in wsclient.ENCODINGS:
            with self.subTest(encoding=encoding):
                a = wsclient.connect(node, alice, encoding=encoding)
                b = wsclient.connect(node, bob, encoding=encoding)
                try:
                    text = "over TLS in " + encoding
                    accepted = a.send_message("bob@test", text)
                    event = b.wait_event(wsclient.ev_message(accepted["message_id"]), what="the message")
                    self.assertEqual(event["message"]["body"]["text"], text)
                finally:
                    a.close()
                    b.close()
        # The REST API over HTTPS sees the conversation.
        convs = node.request("GET", "/v1/conversations", token=bob["access_token"])
        self.assertStatus(convs, 200)
        self.assertIn("alice@test", convs.raw.decode())
        # The web client's page tells the browser to keep to https for this host.
        page = node.request("GET", "/")
        self.assertStatus(page, 200)
        self.assertRegex(page.headers.get("Strict-Transport-Security") or "", r"^max-age=\d{7,}", page.describe())

    def test_a_large_file_goes_up_and_comes_back_whole(self):
        node = self.start_tls_node()
        node.new_user("alice")
        token = node.new_session("alice")["access_token"]
        data = os.urandom(3 * 1024 * 1024 + 12345)  # many TLS records and relay pieces each way
        up = node.request("POST", "/v1/assets?name=big.bin", token=token, raw_body=data,
                          headers={"Content-Type": "application/octet-stream"}, timeout=60)
        self.assertStatus(up, 201)
        self.assertEqual(up.json["size"], len(data))
        down = node.request("GET", "/v1/assets/" + up.json["id"], token=token, timeout=60)
        self.assertStatus(down, 200)
        self.assertEqual(down.raw, data)
        part = node.request("GET", "/v1/assets/" + up.json["id"], token=token, headers={"Range": "bytes=1000000-1999999"})
        self.assertStatus(part, 206)
        self.assertEqual(part.raw, data[1000000:2000000])

        # Clients that hang up with most of a download unread: the front closes its end of
        # the pair the body goes into, and the node's next send there fails (EPIPE), which
        # ends that response, not the process.
        for attempt in range(3):
            raw = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            with node.tls_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(("GET /v1/assets/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                             % (up.json["id"], token)).encode())
                self.assertTrue(tls.recv(4096).startswith(b"HTTP/1.1 200"))
        again = node.request("GET", "/v1/assets/" + up.json["id"], token=token, timeout=60)
        self.assertStatus(again, 200)
        self.assertEqual(again.raw, data)
        self.assertIsNone(node.proc.poll(), "the node died when a client hung up mid-download")

    def test_modern_protocols_and_ciphers_only(self):
        node = self.start_tls_node()

        def handshake(ctx):
            with socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    return tls.version(), tls.cipher()[0]

        version, _ = handshake(node.tls_context())
        self.assertEqual(version, "TLSv1.3")
        tls12 = node.tls_context()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        version, cipher = handshake(tls12)
        self.assertEqual(version, "TLSv1.2")
        self.assertTrue(cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher)
        # A client offering only CBC ciphers (with SHA-2 or SHA-1 MACs) gets none. (Ciphers
        # without forward secrecy cannot be offered with this ECDSA certificate anyway.)
        for weak in ("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"):
            with self.subTest(ciphers=weak):
                ctx = node.tls_context()
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
                ctx.set_ciphers(weak)
                with self.assertRaises(ssl.SSLError) as refused:
                    handshake(ctx)
                self.assertIn("HANDSHAKE_FAILURE", str(refused.exception))  # the server's alert
        # TLS 1.1 and older are refused (the client is allowed them here; the server is not).
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(self.ca.ca_file)
        old.set_ciphers("ALL:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # which is the point
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with self.assertRaises(ssl.SSLError) as refused:
            handshake(old)
        self.assertIn("PROTOCOL_VERSION", str(refused.exception))  # the server's alert
        # Finite-field key exchange (costly for the server) is not offered: a client that
        # asks only for it gets no handshake.
        ffdhe = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % node.port, "-tls1_3",
                                "-groups", "ffdhe2048:ffdhe8192", "-CAfile", self.ca.ca_file],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertNotEqual(ffdhe.returncode, 0, ffdhe.stdout)
        self.assertIn("handshake failure", ffdhe.stdout + ffdhe.stderr)
        ecdhe = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % node.port, "-tls1_3",
                                "-groups", "ffdhe2048:X25519", "-CAfile", self.ca.ca_file],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertIn("Server Temp Key: X25519", ecdhe.stdout, ecdhe.stdout + ecdhe.stderr)
        self.assertStatus(node.request("GET", "/readyz"), 200)

    def test_plain_http_and_stalled_handshakes_are_closed(self):
        node = self.start_tls_node(request_timeout_ms=500)
        # Plain HTTP to a TLS port: no HTTP answer (at most a TLS alert), the connection closes.
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = harness.read_to_end(s, 10)
            self.assertTrue(got == b"" or got[:1] == b"\x15", got)  # 0x15: a TLS alert record
        # A client that connects and never says anything is closed after the handshake's
        # deadline (gateway.request_timeout_ms = 500 here; 10 s at most).
        with socket.create_connection(("127.0.0.1", node.port), timeout=15) as s:
            t0 = time.monotonic()
            self.assertEqual(s.recv(1), b"")
            self.assertLess(time.monotonic() - t0, 8.0, "closed by the 500 ms deadline, not the 10 s cap")
        # Neither holds a connection slot.
        wait_for(lambda: gateway_connections(node) == 0, "the gateway's connections to drop to 0")
        self.assertStatus(node.request("GET", "/readyz"), 200)

    def test_connections_are_counted_until_their_end(self):
        node = self.start_tls_node()
        node.new_user("alice")
        alice = node.new_session("alice")
        # Keep-alive HTTPS and a live stream: counted while open, released when closed.
        conn = node.connection()
        conn.request("GET", "/readyz")
        self.assertIn(b'"status":"ready"', conn.getresponse().read())
        stream = wsclient.connect(node, alice)
        wait_for(lambda: gateway_connections(node) == 2, "two open connections")
        conn.close()
        stream.close()
        wait_for(lambda: gateway_connections(node) == 0, "the gateway's connections to drop to 0")

    def test_stop_with_open_streams_and_pending_handshakes(self):
        node = self.start_tls_node()
        node.new_user("alice")
        stream = wsclient.connect(node, node.new_session("alice"))
        silent = socket.create_connection(("127.0.0.1", node.port), timeout=15)  # no handshake yet
        self.addCleanup(silent.close)
        wait_for(lambda: gateway_connections(node) == 2, "two open connections")
        elapsed = node.stop()
        # The stream is told the node is going away; the pending handshake does not hold
        # the stop for the whole grace period.
        stream.wait_closed()
        self.assertEqual(stream.close_code, 1001, (stream.close_code, stream.close_reason))
        self.assertFalse(any("forcing" in line for line in node.stdout_lines + node.stderr_lines),
                         node.diagnostics())
        self.assertLess(elapsed, 4.0)

    def test_reload_replaces_the_certificate_and_open_connections_carry_on(self):
        node = self.start_tls_node()
        node.new_user("alice")
        node.new_user("bob")
        alice = node.new_session("alice")
        bob = node.new_session("bob")
        b = wsclient.connect(node, bob)
        a = wsclient.connect(node, alice)
        try:
            # Renewed in place, as certbot does: the next handshake gets the new one.
            renewed = self.ca.issue(self.cert, self.key, "chat.test renewed")
            os.kill(node.proc.pid, signal.SIGHUP)
            wait_for(lambda: peer_serial(node) == renewed, "the renewed certificate")
            # What Prometheus is told (PetchatTLSCertificateExpiring) follows the renewal.
            self.assertEqual(expiry_metric(node), self.ca.not_after(self.cert))
            wait_for(lambda: any("reload: applied gateway TLS certificate" in line and "renewed" in line
                                 for line in node.stdout_lines + node.stderr_lines), "the reload's log line")
            # The streams opened before the reload still carry messages.
            accepted = a.send_message("bob@test", "after the renewal")
            b.wait_event(wsclient.ev_message(accepted["message_id"]), what="the message")

            # A broken renewal (a key of another certificate) is refused: nothing changes.
            other_key = os.path.join(self.dir, "other.key")
            self.ca.issue(os.path.join(self.dir, "other.pem"), other_key)
            shutil.copyfile(other_key, self.key)
            reload = node.admin("POST", "/v1/admin/reload")
            err = self.assertError(reload, 400, "config_invalid")
            self.assertIn("does not belong to certificate", err["message"])
            self.assertEqual(peer_serial(node), renewed)
            # Nor is a stale one a renewal hook installed (expired yesterday): every new
            # connection would fail with it.
            self.ca.issue(self.cert, self.key, "chat.test stale", days=-1)
            reload = node.admin("POST", "/v1/admin/reload")
            err = self.assertError(reload, 400, "config_invalid")
            self.assertIn("is not valid now", err["message"])
            self.assertIn("EXPIRED", err["message"])
            self.assertEqual(peer_serial(node), renewed)
            self.assertStatus(node.request("GET", "/readyz"), 200)
        finally:
            a.close()
            b.close()

    def test_broken_files_are_named_at_check_and_start(self):
        missing = os.path.join(self.dir, "missing.key")
        garbage = os.path.join(self.dir, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        other_key = os.path.join(self.dir, "other.key")
        self.ca.issue(os.path.join(self.dir, "other.pem"), other_key)
        open_key = os.path.join(self.dir, "open.key")  # this certificate's key, mode 0644
        shutil.copyfile(self.key, open_key)
        os.chmod(open_key, 0o644)
        cases = [
            ({"tls_cert_file": self.cert, "tls_key_file": missing}, "key " + missing + ": No such file or directory"),
            ({"tls_cert_file": garbage, "tls_key_file": self.key}, "certificate " + garbage + ": no start line"),
            ({"tls_cert_file": self.cert, "tls_key_file": other_key}, "does not belong to certificate"),
            ({"tls_cert_file": self.cert}, "gateway.tls_cert_file and gateway.tls_key_file: set both or neither"),
            ({"tls_cert_file": self.cert, "tls_key_file": open_key}, "readable by every user"),
        ]
        for gateway, message in cases:
            with self.subTest(gateway=gateway):
                node = Node(config={"gateway": gateway}, start=False)
                self.addCleanup(node.close)
                check = subprocess.run([NODE_BIN, "--check-config", node.config_path], capture_output=True,
                                       text=True, timeout=30)
                self.assertNotEqual(check.returncode, 0)
                self.assertIn(message, check.stderr)
                with self.assertRaises(harness.NodeStartError) as started:
                    node.start()
                self.assertIn(message, str(started.exception))


if __name__ == "__main__":
    unittest.main()
