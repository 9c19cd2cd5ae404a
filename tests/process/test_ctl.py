"""petchatctl against a running node, and the admin API it speaks."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wsclient  # noqa: E402
from harness import CTL_BIN, NodeTestCase, run_ctl, run_node_cli  # noqa: E402

REGION = "ctl-west"
PW = "password123"
USER_ENTRY_KEYS = {"id", "name", "display_name", "disabled", "created_at", "sessions"}
SESSION_KEYS = {"device_id", "user_id", "device_name", "created_at", "last_refreshed_at", "revoked"}


def http_answer(status, body, content_type="application/json"):
    """An HTTP/1.1 answer as the node's admin socket gives one (Connection: close)."""
    body = body.encode() if isinstance(body, str) else body
    return (b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, content_type.encode(), len(body)) + body)


class FakeAdmin:
    """Something listening on an admin socket in the node's place. Records each request as
    "METHOD target" and answers it with what answer(method, target) returns: bytes to send
    before hanging up (b"": hang up at once), or None to hold the connection and answer
    nothing. Used by test_backup.py too."""

    def __init__(self, answer):
        self.dir = tempfile.mkdtemp(prefix="petchat-fake-")
        self.path = os.path.join(self.dir, "admin.sock")
        self.answer = answer
        self.requests = []
        self.changed = threading.Condition()
        self.held = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        # The whole request, body too: a Unix socket closed with unread bytes resets its peer.
        data = b""
        conn.settimeout(15)
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            while length and len(body) < int(length.group(1)):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
        except OSError:
            conn.close()
            return
        words = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        method, target = words[0], (words[1] if len(words) > 1 else "")
        reply = self.answer(method, target)
        with self.changed:
            self.requests.append("%s %s" % (method, target))
            self.changed.notify_all()
        if reply is None:
            self.held.append(conn)  # answers nothing; closed with the fake
            return
        try:
            conn.sendall(reply)
        except OSError:
            pass
        conn.close()

    def wait_for_requests(self, count, timeout=15):
        with self.changed:
            return self.changed.wait_for(lambda: len(self.requests) >= count, timeout)

    def close(self):
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.server.close()
        for c in self.held:
            c.close()
        shutil.rmtree(self.dir, True)


class CtlTest(NodeTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.node = cls.start_class_node(config={"node": {"region": REGION}})

    def ctl_ok(self, *args, input=None):
        rc, out, err = self.node.ctl(*args, input=input)
        self.assertEqual(rc, 0, "petchatctl %s: rc %d\nstdout: %s\nstderr: %s" % (" ".join(args), rc, out, err))
        return out

    def ctl_json(self, *args, input=None):
        out = self.ctl_ok("--json", *args, input=input)
        try:
            return json.loads(out)
        except ValueError:
            self.fail("petchatctl --json %s: stdout is not one JSON document: %r" % (" ".join(args), out))

    def ctl_error(self, code, *args, input=None):
        rc, out, err = self.node.ctl(*args, input=input)
        self.assertEqual(rc, 1, "petchatctl %s: want rc 1, got %d\nstdout: %s\nstderr: %s"
                         % (" ".join(args), rc, out, err))
        self.assertRegex(err, r"petchatctl: error: %s: \S" % re.escape(code))
        return err

    # -- status ------------------------------------------------------------------------------

    def test_status(self):
        st = self.ctl_json("status")
        for k in ("version", "region", "started_at", "uptime_s", "data_dir", "listen", "users", "sessions"):
            self.assertIn(k, st)
        self.assertEqual(st["region"], REGION)
        self.assertIsInstance(st["version"], str)
        self.assertTrue(st["version"])
        self.assertIsInstance(st["uptime_s"], int)
        self.assertGreaterEqual(st["uptime_s"], 0)
        self.assertTimestamp(st["started_at"], "started_at")
        self.assertEqual(os.path.realpath(st["data_dir"]), os.path.realpath(self.node.data_dir))
        self.assertIsInstance(st["listen"], str)
        self.assertTrue(st["listen"].startswith("127.0.0.1:"), st["listen"])
        self.assertIsInstance(st["users"].get("total"), int)
        self.assertIsInstance(st["users"].get("disabled"), int)
        self.assertIsInstance(st["sessions"].get("active"), int)
        # The same version as the binary reports.
        rc, vout, verr = run_node_cli("--version")
        self.assertEqual(rc, 0, verr)
        self.assertIn(st["version"], vout)
        # The table form shows the same facts.
        out = self.ctl_ok("status")
        self.assertIn(REGION, out)
        self.assertIn(st["version"], out)
        self.assertNotEqual(out.lstrip()[:1], "{", "status without --json printed JSON")

    def test_messages_compact(self):
        r = self.ctl_json("messages", "compact")
        self.assertIsInstance(r.get("expired"), int, r)
        self.assertGreaterEqual(r["expired"], 0)
        out = self.ctl_ok("messages", "compact")
        self.assertIn("store compacted", out)

    def test_status_counts(self):
        before = self.ctl_json("status")
        self.node.new_user("counted1")
        self.node.new_user("counted2")
        self.node.new_session("counted1")
        self.assertStatus(self.node.admin("POST", "/v1/admin/users/counted2/disable"), 200)
        after = self.ctl_json("status")
        self.assertEqual(after["users"]["total"], before["users"]["total"] + 2)
        self.assertEqual(after["users"]["disabled"], before["users"]["disabled"] + 1)
        self.assertEqual(after["sessions"]["active"], before["sessions"]["active"] + 1)

    def test_default_socket_from_data_dir(self):
        rc, out, err = run_ctl("--data-dir", self.node.data_dir, "--json", "status")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["region"], REGION)

    def test_default_data_dir_is_dot_data(self):
        # With neither --socket nor --data-dir: ./data/admin.sock relative to the cwd.
        rc, out, err = run_ctl("--json", "status", cwd=os.path.dirname(self.node.data_dir))
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["region"], REGION)

    def test_a_data_dir_others_can_write_is_not_used_unasked(self):
        # Anyone who can write ./data could put a socket there (between a check of the
        # socket's owner and the connection) that takes the passwords `users add` sends.
        where = tempfile.mkdtemp(prefix="petchat-cwd-")
        self.addCleanup(shutil.rmtree, where, True)
        os.mkdir(os.path.join(where, "data"))
        os.chmod(os.path.join(where, "data"), 0o777)
        rc, out, err = run_ctl("status", cwd=where)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("only they can write", err)

    def test_finds_the_node_through_its_config(self):
        # The socket the node's config names, as a packaged node's /etc/petchat/node.toml does.
        rc, out, err = run_ctl("--config", self.node.config_path, "--json", "status")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["region"], REGION)
        # A config that cannot be read is said, with exit code 2, not guessed around.
        rc, out, err = run_ctl("--config", "/nonexistent/node.toml", "status")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("/nonexistent/node.toml", err)

    def test_version_usage_errors_and_numbers(self):
        rc, out, err = run_ctl("--version")
        self.assertEqual(rc, 0, err)
        _, vout, _ = run_node_cli("--version")
        self.assertEqual(out.split()[-1], vout.split()[-1], "petchatctl and petchat-node are one version")
        self.assertTrue(out.startswith("petchatctl "), out)
        for args in (["no-such-command"], ["users", "frobnicate"], ["--no-such-flag", "status"], ["users", "disable"]):
            with self.subTest(args=args):
                rc, out, err = self.node.ctl(*args)
                self.assertEqual(rc, 2, "%s: %s%s" % (args, out, err))
                self.assertTrue(err.strip(), "no message for %s" % args)
        rc, out, err = run_ctl("--help")
        self.assertEqual(rc, 0, err)
        self.assertIn("Exit codes", out)
        # Numbers as people read them: no "0E0", an uptime in words.
        out = self.ctl_ok("status")
        self.assertNotRegex(out, r"\dE\d")
        self.assertRegex(out, r"uptime\s+\d+ (s|min)")
        out = self.ctl_ok("federation", "status")
        self.assertNotRegex(out, r"\dE\d")

    def test_online_and_log_level(self):
        self.node.new_user("olga")
        s1, s2 = self.node.new_session("olga", device="phone"), self.node.new_session("olga", device="laptop")
        streams = [wsclient.connect(self.node, s["access_token"]) for s in (s1, s2)]
        try:
            online = self.ctl_json("online")
            mine = sorted(x["device_id"] for x in online["streams"] if x["user_id"] == "olga@" + REGION)
            self.assertEqual(mine, sorted([s1["device_id"], s2["device_id"]]))
            self.assertGreaterEqual(online["users"], 1)
            out = self.ctl_ok("online")
            self.assertIn(s1["device_id"], out)
        finally:
            for c in streams:
                c.close()
        # Kicking a device ends its stream (close 4010); its session stays valid. First the
        # streams closed above are gone from the node too.
        deadline = time.monotonic() + 15
        while any(x["user_id"] == "olga@" + REGION for x in self.ctl_json("online")["streams"]):
            self.assertLess(time.monotonic(), deadline, "closed streams still online")
            time.sleep(0.05)
        phone = wsclient.connect(self.node, s1["access_token"])
        try:
            out = self.ctl_ok("kick", s1["device_id"])
            self.assertIn("kicked 1 live streams of " + s1["device_id"], out)
            self.assertEqual(phone.wait_closed(15), 4010)
            again = wsclient.connect(self.node, s1["access_token"])  # reconnecting is fine
            again.close()
        finally:
            phone.close()
        self.ctl_error("not_found", "kick", "no-such-device")
        # The level changes at once, without a restart.
        self.assertEqual(self.ctl_json("log-level")["level"], "info")
        self.assertEqual(self.ctl_json("log-level", "debug")["level"], "debug")
        self.assertEqual(self.ctl_json("log-level")["level"], "debug")
        self.ctl_ok("log-level", "info")
        rc, out, err = self.node.ctl("log-level", "loud")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("invalid_field", err)
        # The admin API names the field, as every invalid_field does.
        self.assertError(self.node.admin("PUT", "/v1/admin/log", {"level": "loud"}), 400, "invalid_field",
                         field="level")
        self.assertError(self.node.admin("GET", "/v1/admin/users?limit=0"), 400, "invalid_field", field="limit")

    def test_users_list_pages(self):
        for i in range(5):
            self.node.new_user("pager%d" % i)
        names = [u["name"] for u in self.ctl_json("users", "list")["users"]]
        first = self.ctl_json("users", "list", "--limit", "2")
        self.assertEqual([u["name"] for u in first["users"]], names[:2])
        self.assertEqual(first["next_after"], names[1])
        second = self.ctl_json("users", "list", "--limit", "2", "--after", first["next_after"])
        self.assertEqual([u["name"] for u in second["users"]], names[2:4])
        last = self.ctl_json("users", "list", "--after", names[-2])
        self.assertEqual([u["name"] for u in last["users"]], names[-1:])
        self.assertIsNone(last["next_after"])
        out = self.ctl_ok("users", "list", "--limit", "2")
        self.assertIn("more: petchatctl users list --after " + names[1], out)
        rc, out, err = self.node.ctl("users", "list", "--limit", "0")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("invalid_field", err)

    # -- users ---------------------------------------------------------------------------------

    def test_users_add_and_list(self):
        out = self.ctl_ok("users", "add", "carol", "--display-name", "Carol C", input="s3cret-pass\n")
        s = self.node.new_session("carol", "s3cret-pass")
        self.assertEqual(s["user_id"], "carol@" + REGION)
        r = self.node.request("GET", "/v1/me", token=s["access_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["display_name"], "Carol C")

        entry = self.ctl_json("users", "add", "zed", input="zed-password\n")
        self.assertTrue(USER_ENTRY_KEYS <= set(entry), entry)
        self.assertEqual(entry["name"], "zed")
        self.assertEqual(entry["id"], "zed@" + REGION)
        self.assertEqual(entry["display_name"], "zed")
        self.assertIs(entry["disabled"], False)
        self.assertEqual(entry["sessions"], 0)
        self.node.new_session("zed", "zed-password")
        # Only the first line of stdin is the password.
        self.ctl_ok("users", "add", "yan", input="first-line-pw\nsecond line\n")
        self.node.new_session("yan", "first-line-pw")

        out = self.ctl_ok("users", "list")
        for name in ("carol", "zed", "yan"):
            self.assertIn(name, out)
        listing = self.ctl_json("users", "list")
        users = listing["users"]
        names = [u["name"] for u in users]
        self.assertEqual(names, sorted(names), "users list is not sorted by name")
        by_name = {u["name"]: u for u in users}
        for name in ("carol", "zed", "yan"):
            self.assertIn(name, by_name)
            self.assertTrue(USER_ENTRY_KEYS <= set(by_name[name]), by_name[name])
        self.assertEqual(by_name["carol"]["display_name"], "Carol C")
        self.assertEqual(by_name["carol"]["sessions"], 1)
        self.assertIs(by_name["carol"]["disabled"], False)
        self.assertTimestamp(by_name["carol"]["created_at"])

    def test_users_add_errors(self):
        self.ctl_ok("users", "add", "taken", input=PW + "\n")
        self.ctl_error("name_taken", "users", "add", "taken", input=PW + "\n")
        self.ctl_error("invalid_name", "users", "add", "Bad-Name", input=PW + "\n")
        self.ctl_error("weak_password", "users", "add", "weakone", input="short\n")
        # Nothing was created by the refusals.
        self.ctl_error("user_not_found", "users", "disable", "weakone")

    def test_disable_enable(self):
        self.ctl_ok("users", "add", "dora", input=PW + "\n")
        s = self.node.new_session("dora")
        entry = self.ctl_json("users", "disable", "dora")
        self.assertIs(entry["disabled"], True)
        self.assertError(self.node.login("dora", PW), 403, "user_disabled")
        self.assertError(self.node.request("GET", "/v1/me", token=s["access_token"]), 403, "user_disabled")
        listing = {u["name"]: u for u in self.ctl_json("users", "list")["users"]}
        self.assertIs(listing["dora"]["disabled"], True)

        self.ctl_ok("users", "enable", "dora")
        self.node.new_session("dora")
        listing = {u["name"]: u for u in self.ctl_json("users", "list")["users"]}
        self.assertIs(listing["dora"]["disabled"], False)
        # A full user id works too.
        self.ctl_ok("users", "disable", "dora@" + REGION)
        self.assertError(self.node.login("dora", PW), 403, "user_disabled")
        self.ctl_ok("users", "enable", "dora@" + REGION)
        self.node.new_session("dora")

    def test_passwd(self):
        self.ctl_ok("users", "add", "eve", input="old-password\n")
        s = self.node.new_session("eve", "old-password")
        self.ctl_ok("users", "passwd", "eve", input="new-password\n")
        self.assertError(self.node.login("eve", "old-password"), 401, "invalid_credentials")
        self.node.new_session("eve", "new-password")
        self.assertError(self.node.request("GET", "/v1/me", token=s["access_token"]), 401, "session_revoked")
        self.ctl_error("weak_password", "users", "passwd", "eve", input="short\n")
        self.node.new_session("eve", "new-password")

    def test_delete(self):
        self.ctl_ok("users", "add", "fred", input=PW + "\n")
        s = self.node.new_session("fred")
        self.node.new_user("watcher")
        w = self.node.new_session("watcher")["access_token"]
        self.assertEqual(self.ctl_json("users", "delete", "fred"), {"ok": True})
        self.assertError(self.node.login("fred", PW), 401, "invalid_credentials")
        self.assertError(self.node.request("GET", "/v1/users/fred", token=w), 404, "user_not_found")
        r = self.node.request("GET", "/v1/me", token=s["access_token"])
        self.assertEqual(r.status, 401, r.describe())
        names = [u["name"] for u in self.ctl_json("users", "list")["users"]]
        self.assertNotIn("fred", names)
        self.ctl_error("user_not_found", "users", "delete", "fred")
        # The name is never free again: whoever took it would inherit what was meant for fred.
        self.assertError(self.node.register("fred", "another-password"), 409, "name_taken")
        self.ctl_error("name_taken", "users", "add", "fred", input=PW + "\n")

    def test_unknown_user_errors(self):
        for cmd in (["users", "disable", "ghost"], ["users", "enable", "ghost"], ["users", "delete", "ghost"]):
            with self.subTest(cmd=cmd):
                self.ctl_error("user_not_found", *cmd)
        self.ctl_error("user_not_found", "users", "passwd", "ghost", input=PW + "\n")

    # -- sessions ------------------------------------------------------------------------------

    def test_sessions_list_and_revoke(self):
        self.ctl_ok("users", "add", "gus", input=PW + "\n")
        self.ctl_ok("users", "add", "hal", input=PW + "\n")
        phone = self.node.new_session("gus", device="gus phone")
        laptop = self.node.new_session("gus", device="gus laptop")
        hal = self.node.new_session("hal")

        listing = self.ctl_json("sessions", "list", "--user", "gus")
        sessions = listing["sessions"]
        self.assertEqual(sorted(s["device_id"] for s in sessions), sorted([phone["device_id"], laptop["device_id"]]))
        for s in sessions:
            self.assertTrue(SESSION_KEYS <= set(s), s)
            self.assertEqual(s["user_id"], "gus@" + REGION)
            self.assertIs(s["revoked"], False)
            self.assertTimestamp(s["created_at"])
        self.assertEqual({s["device_name"] for s in sessions}, {"gus phone", "gus laptop"})

        all_ids = {s["device_id"] for s in self.ctl_json("sessions", "list")["sessions"]}
        self.assertTrue({phone["device_id"], laptop["device_id"], hal["device_id"]} <= all_ids)

        out = self.ctl_ok("sessions", "list", "--user", "gus")
        self.assertIn(phone["device_id"], out)
        self.assertIn(laptop["device_id"], out)
        self.assertNotIn(hal["device_id"], out)

        self.assertEqual(self.ctl_json("sessions", "revoke", phone["device_id"]), {"ok": True})
        self.assertError(self.node.request("GET", "/v1/me", token=phone["access_token"]), 401, "session_revoked")
        self.assertStatus(self.node.request("GET", "/v1/me", token=laptop["access_token"]), 200)
        self.assertStatus(self.node.request("GET", "/v1/me", token=hal["access_token"]), 200)
        states = {s["device_id"]: s["revoked"] for s in self.ctl_json("sessions", "list", "--user", "gus")["sessions"]}
        self.assertIs(states.get(laptop["device_id"]), False)
        # A revoked session is either listed with "revoked": true or no longer listed.
        if phone["device_id"] in states:
            self.assertIs(states[phone["device_id"]], True, "revoked session listed as active")

        self.ctl_error("session_not_found", "sessions", "revoke", "NoSuchDeviceId0000000")

    def test_sessions_list_unknown_user(self):
        self.ctl_error("user_not_found", "sessions", "list", "--user", "ghost")

    # -- usage and reachability ----------------------------------------------------------------

    def test_usage_errors(self):
        for args in ([], ["frobnicate"], ["users"], ["users", "add"], ["users", "frob", "x"],
                     ["sessions", "revoke"], ["--no-such-flag", "status"]):
            with self.subTest(args=args):
                rc, out, err = self.node.ctl(*args)
                self.assertEqual(rc, 2, "petchatctl %s: rc %d\nstdout: %s\nstderr: %s" % (args, rc, out, err))
                self.assertTrue(err.strip(), "no usage message on stderr")

    def test_not_running(self):
        tmp = tempfile.mkdtemp(prefix="petchat-ctl-")
        self.addCleanup(shutil.rmtree, tmp, True)
        sock = os.path.join(tmp, "nonexistent.sock")
        rc, out, err = run_ctl("--socket", sock, "status")
        self.assertEqual(rc, 3, "rc %d, stderr: %s" % (rc, err))
        self.assertIn("not running", err)
        self.assertIn(sock, err)
        rc, out, err = run_ctl("--socket", sock, "users", "list")
        self.assertEqual(rc, 3, err)
        # --data-dir: the default socket path inside it is named.
        rc, out, err = run_ctl("--data-dir", tmp, "--json", "status")
        self.assertEqual(rc, 3, err)
        self.assertIn("not running", err)
        self.assertIn(os.path.join(tmp, "admin.sock"), err)


    def test_a_node_that_does_not_answer_is_not_said_to_be_stopped(self):
        """Something listens but hangs up without an answer (a node that failed while
        compacting): exit 1 and said so (docs/PROTOCOL.md), never "not running" (exit 3),
        which would send the operator, or a script, to start a second node."""
        fake = FakeAdmin(lambda method, target: b"")
        self.addCleanup(fake.close)
        for args in (["messages", "compact"], ["status"]):
            rc, out, err = run_ctl("--socket", fake.path, *args)
            self.assertEqual(rc, 1, "%s: rc %d, stderr: %s" % (args, rc, err))
            self.assertIn("no usable answer from the node at " + fake.path, err)
            self.assertIn("closed the connection without an answer", err)
            self.assertNotIn("not running", err)
        self.assertEqual(fake.requests, ["POST /v1/admin/messages/compact", "GET /v1/admin/status"])


class CtlFakeNodeTest(unittest.TestCase):
    """petchatctl against something in the node's place on the admin socket that answers
    badly, late or never: the exit codes of docs/PROTOCOL.md ("petchatctl"), a message
    that says what happened, and never a crash."""

    def fake(self, answer):
        f = FakeAdmin(answer)
        self.addCleanup(f.close)
        return f

    def serving(self):
        """A fake answering 200 with the body serve(body) set last: (fake, serve)."""
        current = {}
        fake = self.fake(lambda method, target: http_answer(200, current["body"]))
        return fake, lambda body: current.__setitem__("body", body)

    def test_an_answer_that_is_not_http_is_said_so(self):
        fake = self.fake(lambda method, target: b"SSH-2.0-OpenSSH_9.2\r\n")
        rc, out, err = run_ctl("--socket", fake.path, "status")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no usable answer from the node at " + fake.path, err)
        self.assertIn("not HTTP", err)
        self.assertNotIn("not running", err)
        self.assertEqual(out, "")

    def test_a_status_line_that_is_no_status_is_not_a_success(self):
        # Before, "HTTP/1.1 abc" read as status 0, below 400: a success ("deleted alice").
        for line in (b"HTTP/1.1 abc", b"HTTP/1.1 20", b"HTTP/1.1 999 Odd", b"HTTP/1.1  200 OK", b"HTTP/1.1 302 Found",
                     b"HTTP/1.1 101 Switching"):
            with self.subTest(line=line):
                fake = self.fake(lambda method, target, line=line: line + b"\r\nContent-Length: 2\r\n\r\n{}")
                rc, out, err = run_ctl("--socket", fake.path, "users", "delete", "alice")
                self.assertEqual(rc, 1, out + err)
                self.assertIn("not HTTP", err)
                self.assertNotIn("deleted", out)

    def test_what_the_answer_names_is_printed_without_terminal_escapes(self):
        # Bytes a terminal acts on (an escape sequence retitling it, say), from whatever is
        # on the socket, are shown escaped, never sent to the terminal as they are.
        esc = "\\u001b]0;owned\\u0007"  # JSON escapes: the answer carries the bytes themselves
        answers = {
            ("users", "list"): '{"users": [], "next_after": "%s"}' % esc,
            ("assets", "verify"): '{"checked": 1, "missing": ["%s"], "quarantined": ["%s"]}' % (esc, esc),
        }
        fake, serve = self.serving()
        for args, body in answers.items():
            with self.subTest(args=args):
                serve(body)
                rc, out, err = run_ctl("--socket", fake.path, *args)
                self.assertNotIn("\x1b", out + err, "rc %d\nstdout: %r\nstderr: %r" % (rc, out, err))
                self.assertIn("owned", out, "the name is still shown (escaped)")

    def test_an_answer_of_another_shape_is_said_not_a_crash(self):
        """JSON, but not what the command prints: exit 1 with a message, not an abort; no
        half of a table on stdout; --json prints it as it is."""
        answers = {
            ("status",): "[]",
            ("users", "list"): '{"users": [{"id": "a@x", "disabled": "no"}]}',
            ("sessions", "list"): '{"sessions": 5}',
            ("online",): '{"users": 1, "streams": {}}',
            ("push", "status"): '{"enabled": true, "outbox": {"users": 1, "oldest_age_s": "long ago"}}',
            ("tokens", "list"): '{"tokens": [1]}',
            ("reload",): '{"applied": null}',
            # The first table is whole before "regions" turns out not to be a list.
            ("federation", "status"): '{"enabled": true, "region": "r", "connected": true, "server": "nats://s",'
                                      ' "regions": 5}',
        }
        fake, serve = self.serving()
        for args, body in answers.items():
            with self.subTest(args=args):
                serve(body)
                rc, out, err = run_ctl("--socket", fake.path, *args)
                self.assertEqual(rc, 1, "rc %d\nstdout: %s\nstderr: %s" % (rc, out, err))
                self.assertIn("the node's answer is not what petchatctl expects", err)
                self.assertEqual(out, "", "half a table printed")
                rc, out, err = run_ctl("--socket", fake.path, "--json", *args)
                self.assertEqual(rc, 0, out + err)
                self.assertEqual(json.loads(out), json.loads(body))
        # Not JSON at all, with 200: exit 1 too.
        serve("<html>hello</html>")
        rc, out, err = run_ctl("--socket", fake.path, "status")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("answered 200 with a body that is not JSON", err)

    def test_no_answer_in_time_is_said_to_be_busy(self):
        """A node that takes the request and never answers, and one whose queue of
        connections is full (connect() waits on a Unix socket): both given up after 30 s,
        exit 1, said to be busy rather than stopped (exit 3). The two run side by side: one
        wait."""
        silent = self.fake(lambda method, target: None)
        full_dir = tempfile.mkdtemp(prefix="petchat-full-")
        self.addCleanup(shutil.rmtree, full_dir, True)
        full_path = os.path.join(full_dir, "admin.sock")
        full = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(full.close)
        full.bind(full_path)
        full.listen(0)  # never accepted: the connections below fill its queue
        queued = []
        for _ in range(1000):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(full_path)
            except BlockingIOError:  # full: a blocking connect() now waits
                c.close()
                break
            queued.append(c)
            self.addCleanup(c.close)
        else:
            self.fail("the queue of a socket listening with a backlog of 0 never filled")
        began = time.monotonic()
        runs = {name: subprocess.Popen([CTL_BIN, "--socket", path, "status"], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for name, path in (("silent", silent.path), ("full", full_path))}
        results = {}
        for name, p in runs.items():
            try:
                out, err = p.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                self.fail("%s: petchatctl still waiting after 90 s" % name)
            results[name] = (p.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
        took = time.monotonic() - began
        self.assertGreater(took, 29, "gave up before 30 s")
        self.assertLess(took, 60)
        for name, path in (("silent", silent.path), ("full", full_path)):
            rc, out, err = results[name]
            with self.subTest(name=name):
                self.assertEqual(rc, 1, "rc %d\nstdout: %s\nstderr: %s" % (rc, out, err))
                self.assertIn("the node at %s did not answer" % path, err)
                self.assertIn("within 30 s", err)
                self.assertIn("see its log before asking again", err)
                self.assertNotIn("not running", err)
        self.assertIn("no answer within 30 s; it may still be working on it", results["silent"][2])
        self.assertIn("no connection accepted within 30 s; it is running, but takes no connections",
                      results["full"][2])
        self.assertEqual(silent.requests, ["GET /v1/admin/status"])


class CtlStoppedNodeTest(NodeTestCase):

    def test_stale_socket_after_stop(self):
        node = self.start_node()
        sock = node.admin_socket
        node.stop()
        rc, out, err = run_ctl("--socket", sock, "status")
        self.assertEqual(rc, 3, "rc %d, stderr: %s" % (rc, err))
        self.assertIn("not running", err)


class AdminApiTest(NodeTestCase):
    """The admin API directly (what petchatctl speaks)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.node = cls.start_class_node(config={"node": {"region": REGION}, "users": {"registration": "closed"}})

    def test_create_user_ignores_policy(self):
        r = self.node.admin("POST", "/v1/admin/users", {"name": "ivy", "password": PW, "display_name": "Ivy"})
        self.assertStatus(r, 201)
        self.assertTrue(USER_ENTRY_KEYS <= set(r.json), r.json)
        self.assertEqual(r.json["id"], "ivy@" + REGION)
        self.assertEqual(r.json["display_name"], "Ivy")
        self.assertError(self.node.register("ivy2", PW), 403, "registration_closed")
        self.node.new_session("ivy")

    def test_create_user_errors(self):
        self.assertStatus(self.node.admin("POST", "/v1/admin/users", {"name": "jack", "password": PW}), 201)
        self.assertError(self.node.admin("POST", "/v1/admin/users", {"name": "jack", "password": PW}), 409,
                         "name_taken")
        self.assertError(self.node.admin("POST", "/v1/admin/users", {"name": "Jack", "password": PW}), 400,
                         "invalid_name")
        self.assertError(self.node.admin("POST", "/v1/admin/users", {"name": "jacky", "password": "short"}), 400,
                         "weak_password")
        self.assertError(self.node.admin("POST", "/v1/admin/users", {"password": PW}), 400, "missing_field",
                         field="name")
        self.assertError(self.node.admin("POST", "/v1/admin/users", {"name": 1, "password": PW}), 400,
                         "invalid_field", field="name")
        self.assertError(self.node.admin("POST", "/v1/admin/users", raw_body=b"{"), 400, "invalid_json")

    def test_password_endpoint(self):
        self.assertStatus(self.node.admin("POST", "/v1/admin/users", {"name": "kim", "password": PW}), 201)
        s = self.node.new_session("kim")
        r = self.node.admin("POST", "/v1/admin/users/kim/password", {"password": "fresh-password"})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["name"], "kim")
        self.assertEqual(r.json["sessions"], 0)
        self.assertError(self.node.request("GET", "/v1/me", token=s["access_token"]), 401, "session_revoked")
        r = self.node.refresh(s["refresh_token"])
        self.assertEqual(r.status, 401, r.describe())
        # session_revoked, or invalid_refresh_token from a node that deletes revoked sessions.
        self.assertIn((r.json or {}).get("error", {}).get("code"), ("session_revoked", "invalid_refresh_token"),
                      r.describe())
        self.node.new_session("kim", "fresh-password")
        r = self.node.admin("POST", "/v1/admin/users/kim/password", {})
        self.assertError(r, 400, "missing_field", field="password")

    def test_sessions_endpoints(self):
        self.assertStatus(self.node.admin("POST", "/v1/admin/users", {"name": "lou", "password": PW}), 201)
        s = self.node.new_session("lou", device="lou tablet")
        r = self.node.admin("GET", "/v1/admin/sessions?user=lou")
        self.assertStatus(r, 200)
        self.assertEqual([x["device_id"] for x in r.json["sessions"]], [s["device_id"]])
        self.assertEqual(r.json["sessions"][0]["device_name"], "lou tablet")
        r = self.node.admin("DELETE", "/v1/admin/sessions/" + s["device_id"])
        self.assertEqual(r.status, 204, r.describe())
        self.assertEqual(r.raw, b"")
        self.assertError(self.node.request("GET", "/v1/me", token=s["access_token"]), 401, "session_revoked")
        self.assertError(self.node.admin("DELETE", "/v1/admin/sessions/NoSuchDeviceId0000000"), 404,
                         "session_not_found")
        self.assertError(self.node.admin("GET", "/v1/admin/sessions?user=ghost"), 404, "user_not_found")

    def test_delete_user(self):
        self.assertStatus(self.node.admin("POST", "/v1/admin/users", {"name": "max", "password": PW}), 201)
        r = self.node.admin("DELETE", "/v1/admin/users/max")
        self.assertEqual(r.status, 204, r.describe())
        self.assertError(self.node.admin("DELETE", "/v1/admin/users/max"), 404, "user_not_found")
        self.assertError(self.node.login("max", PW), 401, "invalid_credentials")

    def test_routing(self):
        self.assertError(self.node.admin("GET", "/v1/admin/nope"), 404, "not_found")
        r = self.node.admin("DELETE", "/v1/admin/status")
        self.assertError(r, 405, "method_not_allowed")
        self.assertEqual(r.headers.get("Allow"), "GET", "a 405 says what the endpoint allows (RFC 9110)")
        r = self.node.admin("PUT", "/v1/admin/registration-tokens")
        self.assertError(r, 405, "method_not_allowed")
        self.assertEqual(r.headers.get("Allow"), "GET, POST")

    def test_admin_api_not_on_gateway(self):
        # The admin API is only on the Unix socket.
        r = self.node.request("GET", "/v1/admin/status")
        self.assertError(r, 404, "not_found")
        r = self.node.request("POST", "/v1/admin/users", {"name": "sneaky", "password": PW})
        self.assertError(r, 404, "not_found")
        self.assertError(self.node.login("sneaky", PW), 401, "invalid_credentials")


if __name__ == "__main__":
    unittest.main()
