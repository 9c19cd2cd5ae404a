"""Durability and process behaviour: restarts, kill -9, SIGTERM, key files, slow clients."""

import http.client
import os
import socket
import stat
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REGION, NodeTestCase, parse_http_response, read_http_response  # noqa: E402

PW = "password123"


class RestartTest(NodeTestCase):

    def test_clean_restart_keeps_everything(self):
        node = self.start_node()
        alice = node.new_user("alice", display_name="Alice")
        node.new_user("bob")
        sa = node.new_session("alice", device="phone")
        sb = node.new_session("bob")
        r = node.request("PATCH", "/v1/me", {"about": "persisted about"}, token=sa["access_token"])
        self.assertStatus(r, 200)
        r = node.refresh(sb["refresh_token"])
        self.assertStatus(r, 200)
        r = node.refresh(r.json["refresh_token"])  # used: bob's first token has no retry grace left
        self.assertStatus(r, 200)
        sb2 = r.json

        node.restart()

        # Profiles.
        r = node.request("GET", "/v1/users/alice", token=sa["access_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["display_name"], "Alice")
        self.assertEqual(r.json["about"], "persisted about")
        self.assertEqual(r.json["created_at"], alice["created_at"])
        # Sessions: access tokens issued before the restart still verify...
        r = node.request("GET", "/v1/me", token=sa["access_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["device_id"], sa["device_id"])
        self.assertEqual(r.json["device_name"], "phone")
        # ...refresh tokens still rotate...
        r = node.refresh(sa["refresh_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["device_id"], sa["device_id"])
        # ...and the retired-token history survived: replaying bob's first refresh token is reuse.
        r = node.refresh(sb["refresh_token"])
        self.assertError(r, 401, "refresh_token_reused")
        r = node.request("GET", "/v1/me", token=sb2["access_token"])
        self.assertError(r, 401, "session_revoked")
        # Accounts: passwords work, names stay taken.
        node.new_session("bob")
        self.assertError(node.register("alice", "other password"), 409, "name_taken")
        r = node.request("GET", "/readyz")
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("region"), REGION)

    def test_logout_survives_restart(self):
        node = self.start_node()
        node.new_user("carol")
        s = node.new_session("carol")
        r = node.request("DELETE", "/v1/sessions/current", token=s["access_token"])
        self.assertEqual(r.status, 204, r.describe())
        node.restart()
        r = node.request("GET", "/v1/me", token=s["access_token"])
        self.assertError(r, 401, "session_revoked")

    def test_disable_survives_restart(self):
        node = self.start_node()
        node.new_user("dave")
        self.assertStatus(node.admin("POST", "/v1/admin/users/dave/disable"), 200)
        node.restart()
        self.assertError(node.login("dave", PW), 403, "user_disabled")


class CrashTest(NodeTestCase):

    def test_kill9_during_concurrent_registrations(self):
        node = self.start_node()
        port = node.port
        stop = threading.Event()
        lock = threading.Lock()
        created = []
        unexpected = []

        def worker(w):
            i = 0
            while not stop.is_set() and i < 200:
                name = "w%dn%d" % (w, i)
                i += 1
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("POST", "/v1/users", body=('{"name": "%s", "password": "%s"}' % (name, PW)).encode(),
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    conn.close()
                except (OSError, http.client.HTTPException):
                    # The node died under us (or refused: it is gone). Nothing to record.
                    if stop.is_set() or node.proc.poll() is not None:
                        return
                    time.sleep(0.01)
                    continue
                with lock:
                    if resp.status == 201:
                        created.append(name)
                    elif resp.status not in (503,):
                        unexpected.append((name, resp.status))

        threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(4)]
        for t in threads:
            t.start()
        # Let registrations flow, then pull the plug while they are in flight.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                if len(created) >= 20:
                    break
            time.sleep(0.05)
        time.sleep(0.2)
        node.kill9()
        stop.set()
        for t in threads:
            t.join(15)
        self.assertFalse(any(t.is_alive() for t in threads), "worker threads hung")
        self.assertEqual(unexpected, [])
        with lock:
            acknowledged = list(created)
        self.assertGreater(len(acknowledged), 0, "no registration succeeded before the kill")

        node.start()  # same data dir; the stale admin socket must not stop it
        missing = []
        for name in acknowledged:
            r = node.login(name, PW)
            if r.status != 201:
                missing.append((name, r.describe()))
        self.assertEqual(missing, [], "acknowledged registrations lost after kill -9 (%d of %d)"
                         % (len(missing), len(acknowledged)))
        # The node is fully usable after the crash.
        node.new_user("aftercrash")
        r = node.admin("GET", "/v1/admin/status")
        self.assertStatus(r, 200)
        self.assertGreaterEqual(r.json["users"]["total"], len(acknowledged) + 1)


class SignalTest(NodeTestCase):

    def test_sigterm_exits_zero(self):
        node = self.start_node()
        node.new_user("sig")
        node.new_session("sig")
        elapsed = node.stop()  # asserts exit code 0 within 5 s
        self.assertLess(elapsed, 5.0)

    def test_sigterm_finishes_the_request_in_flight(self):
        # Expensive hashing keeps the registration in flight when SIGTERM arrives: the node
        # must finish it (201, durable) before it exits 0, not drop it.
        node = self.start_node(config={"users": {"password_hash_ops": 10, "password_hash_memory_kib": 65536}})
        result = {}

        def register():
            result["response"] = node.register("inflight", "in-flight password")

        t = threading.Thread(target=register)
        t.start()
        time.sleep(0.15)
        elapsed = node.stop()  # asserts exit code 0
        t.join(10)
        self.assertLess(elapsed, 5.0)
        self.assertIn("response", result, "the registration got no answer")
        self.assertEqual(result["response"].status, 201, result["response"].describe())
        node.restart()
        self.assertEqual(node.login("inflight", "in-flight password").status, 201)

    def test_sigterm_with_open_connections(self):
        node = self.start_node()
        # An idle keep-alive connection that has completed a request...
        conn = node.connection()
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        resp.read()
        # ...and a client that sent half a request and went quiet.
        slow = node.raw_socket()
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            time.sleep(0.2)
            elapsed = node.stop()
            self.assertLess(elapsed, 5.0)
        finally:
            conn.close()
            slow.close()


class FilesTest(NodeTestCase):

    def test_region_key_and_admin_socket_modes(self):
        node = self.start_node()
        key_path = os.path.join(node.data_dir, "region.key")
        self.assertTrue(os.path.isfile(key_path), "no %s" % key_path)
        st = os.stat(key_path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, "region.key mode is %o" % stat.S_IMODE(st.st_mode))
        with open(key_path, "rb") as f:
            key1 = f.read()
        self.assertTrue(key1)

        sock_mode = stat.S_IMODE(os.stat(node.admin_socket).st_mode)
        self.assertTrue(stat.S_ISSOCK(os.stat(node.admin_socket).st_mode))
        self.assertEqual(sock_mode, 0o600, "admin socket mode is %o" % sock_mode)
        self.assertEqual(os.path.realpath(node.admin_socket),
                         os.path.realpath(os.path.join(node.data_dir, "admin.sock")))

        node.new_user("keyed")
        s = node.new_session("keyed")
        node.restart()
        with open(key_path, "rb") as f:
            key2 = f.read()
        self.assertEqual(key1, key2, "region.key changed across a restart")
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        # Tokens are bound to the key: they still verify.
        self.assertStatus(node.request("GET", "/v1/me", token=s["access_token"]), 200)

        node.kill9()
        node.start()
        with open(key_path, "rb") as f:
            self.assertEqual(f.read(), key1, "region.key changed across kill -9 and restart")


class SlowClientTest(NodeTestCase):

    def test_request_timeout(self):
        node = self.start_node(config={"gateway": {"request_timeout_ms": 1000}})
        s = node.raw_socket(timeout=10)
        try:
            t0 = time.monotonic()
            s.sendall(b"GET /healthz HT")
            # Meanwhile other clients are served.
            time.sleep(0.3)
            self.assertStatus(node.request("GET", "/healthz", timeout=2), 200)
            try:
                data = read_http_response(s, 6)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                self.fail("a half-sent request was neither answered nor closed within 6 s")
            elapsed = time.monotonic() - t0
        finally:
            s.close()
        self.assertGreater(elapsed, 0.5, "answered before the request timeout could have expired")
        self.assertLess(elapsed, 5.0)
        if data:
            status, headers, body = parse_http_response(data)
            self.assertEqual(status, 408, data)
            self.assertIn(b'"request_timeout"', body)
        # The node keeps serving.
        self.assertStatus(node.request("GET", "/healthz"), 200)
        node.new_user("patient")

    def test_slow_body(self):
        node = self.start_node(config={"gateway": {"request_timeout_ms": 1000}})
        s = node.raw_socket(timeout=10)
        try:
            t0 = time.monotonic()
            s.sendall(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"name\": ")
            try:
                data = read_http_response(s, 6)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                self.fail("a half-sent body was neither answered nor closed within 6 s")
            elapsed = time.monotonic() - t0
        finally:
            s.close()
        self.assertGreater(elapsed, 0.5)
        self.assertLess(elapsed, 5.0)
        if data:
            status, headers, body = parse_http_response(data)
            self.assertEqual(status, 408, data)
            self.assertIn(b'"request_timeout"', body)
        self.assertStatus(node.request("GET", "/healthz"), 200)


if __name__ == "__main__":
    unittest.main()
