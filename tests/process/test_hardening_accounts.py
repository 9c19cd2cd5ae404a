"""Hardening of accounts, sessions and the gateway against abuse and operator mistakes:
deleted names stay dead, registration floods, logins under load, connections per address,
devices per user, the admin socket and the data dir, strict history filters, and integer
durations in the admin API. Each class is one regression; each test asserts what a user or
an operator would notice."""

import datetime
import http.client
import json
import os
import select
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wsclient  # noqa: E402
from harness import (REGION, UnixHTTPConnection, NodeStartError, NodeTestCase, _do_request,  # noqa: E402
                     parse_http_response, read_http_response)
from wsclient import ev_message  # noqa: E402

PW = "password123"


def error_code(resp):
    body = resp.json if isinstance(resp.json, dict) else {}
    err = body.get("error") if isinstance(body.get("error"), dict) else {}
    return err.get("code")


def request_from(node, source_ip, method, path, body=None, token=None, timeout=15):
    """One HTTP request to `node` from the local address `source_ip` (any 127.x.y.z works on
    Linux loopback), so that the node sees a second client address."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout, source_address=(source_ip, 0))
    return _do_request(conn, method, path, body, token)


def rfc3339(ms):
    t = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def wait_until(pred, timeout, poll=0.2):
    """Polls pred() until it returns something true or the time is up; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(poll)


class CtlMixin:
    """petchatctl --json against a given node; a non-zero exit fails the test."""

    def ctl_json(self, node, *args, input=None):
        rc, out, err = node.ctl("--json", *args, input=input)
        self.assertEqual(rc, 0, "petchatctl --json %s: rc %d\nstdout: %s\nstderr: %s" % (" ".join(args), rc, out, err))
        try:
            return json.loads(out)
        except ValueError:
            self.fail("petchatctl --json %s: stdout is not one JSON document: %r" % (" ".join(args), out))


# ---------------------------------------------------------------------------------------
# A. Deleted accounts


class DeletedAccountTest(CtlMixin, NodeTestCase):
    """Once an admin deletes an account, its name must never be handed to someone else:
    whoever registered it next would inherit the old conversations (the conversation id is
    derived from the two user ids) and everyone's trust in that name."""

    def test_deleted_name_is_not_reusable_and_nothing_old_is_reachable(self):
        node = self.start_node()
        node.new_user("alice")
        node.new_user("bob")
        a_sess = node.new_session("alice", device="alice phone")
        b_sess = node.new_session("bob", device="bob phone")
        a = wsclient.connect(node, a_sess)
        self.addCleanup(a.close)
        b = wsclient.connect(node, b_sess)
        self.addCleanup(b.close)

        # A real conversation in both directions, so there is history worth protecting.
        to_bob = a.send_message("bob@" + REGION, "hello bob")
        b.wait_event(ev_message(to_bob["message_id"]))
        to_alice = b.send_message("alice@" + REGION, "hi alice, here is my secret")
        a.wait_event(ev_message(to_alice["message_id"]))
        conv = to_bob["conversation_id"]
        self.assertEqual(to_alice["conversation_id"], conv)
        b.close()

        self.assertEqual(self.ctl_json(node, "users", "delete", "bob"), {"ok": True})

        # Nothing of the old bob answers any more.
        self.assertError(node.login("bob", PW), 401, "invalid_credentials")
        r = node.request("GET", "/v1/me", token=b_sess["access_token"])
        self.assertEqual(r.status, 401, r.describe())
        self.assertIn(error_code(r), ("session_revoked", "invalid_token"), r.describe())
        r = node.refresh(b_sess["refresh_token"])
        self.assertEqual(r.status, 401, "the deleted account's refresh token still works: " + r.describe())
        self.assertError(node.request("GET", "/v1/users/bob", token=a_sess["access_token"]), 404, "user_not_found")
        f = a.try_send("bob@" + REGION, "are you still there?")
        self.assertEqual(f.get("error", {}).get("code"), "user_not_found", "sending to a deleted user: %s" % f)
        names = [u["name"] for u in self.ctl_json(node, "users", "list")["users"]]
        self.assertNotIn("bob", names)

        # alice keeps her own copy of the conversation.
        r = node.request("GET", "/v1/conversations/%s/messages" % urllib.parse.quote(conv, safe=""),
                         token=a_sess["access_token"])
        self.assertStatus(r, 200)
        self.assertEqual([m["id"] for m in r.json["messages"]], [to_bob["message_id"], to_alice["message_id"]])

        # The name stays taken. If it is not, say what the impostor could see.
        r = node.register("bob", "impostor-password")
        if r.status == 201:
            leak = ""
            s = node.login("bob", "impostor-password")
            if s.status == 201:
                h = node.request("GET", "/v1/messages?peer=alice", token=s.json["access_token"])
                leak = "; the new 'bob' then reads the old history: %s" % h.describe()
            self.fail("a deleted user's name was registered again (%s)%s" % (r.describe(), leak))
        self.assertError(r, 409, "name_taken")
        # ... and the refused registration created nothing.
        self.assertError(node.login("bob", "impostor-password"), 401, "invalid_credentials")


# ---------------------------------------------------------------------------------------
# B. Registration flood


class RegistrationFloodTest(CtlMixin, NodeTestCase):
    """One client address cannot create accounts without bound; operators still can."""

    def test_sixth_registration_from_one_address_is_refused(self):
        node = self.start_node(config={"users": {"max_registrations_per_address": 5}})
        for i in range(5):
            self.assertStatus(node.register("flood%d" % i, PW), 201, "registration %d of 5" % (i + 1))
        r = node.register("flood5", PW)
        self.assertError(r, 429, "rate_limited")
        retry = r.headers.get("Retry-After")
        self.assertIsNotNone(retry, "429 without Retry-After: " + r.describe())
        self.assertRegex(retry, r"^\d+$", "Retry-After is not whole seconds")
        self.assertTrue(1 <= int(retry) <= 3600, "Retry-After %s outside the 3600 s window" % retry)

        # The limit is per address: someone else is not locked out by the flood.
        self.assertStatus(request_from(node, "127.0.0.2", "POST", "/v1/users", {"name": "neighbour", "password": PW}),
                          201, "registration from another address")

        # The admin is not limited, and the refused name was not created (else name_taken).
        entry = self.ctl_json(node, "users", "add", "flood5", input=PW + "\n")
        self.assertEqual(entry["name"], "flood5")
        node.new_session("flood5")
        node.new_session("flood0")

    def test_taken_names_and_wrong_tokens_count_as_registrations(self):
        node = self.start_node(config={"users": {"max_registrations_per_address": 3}})
        node.new_user("taken")  # from 127.0.0.1: one of its three
        self.assertError(node.register("taken", PW), 409, "name_taken")
        self.assertError(node.register("weak1", "short"), 400, "weak_password")  # does not count
        self.assertError(node.register("taken", PW), 409, "name_taken")
        self.assertError(node.register("taken", PW), 429, "rate_limited")  # probing which names exist
        self.assertError(node.register("fresh", PW), 429, "rate_limited")

    def test_a_registration_token_cannot_be_guessed_without_bound(self):
        node = self.start_node(config={"users": {"max_registrations_per_address": 3, "registration": "token",
                                                 "registration_token": "the right token, long enough"}})
        for i in range(3):
            self.assertError(node.register("guess%d" % i, PW, registration_token="guess %d" % i), 403,
                             "invalid_registration_token")
        self.assertError(node.register("guess9", PW, registration_token="the right token, long enough"), 429,
                         "rate_limited")
        r = request_from(node, "127.0.0.2", "POST", "/v1/users",
                         {"name": "invited", "password": PW, "registration_token": "the right token, long enough"})
        self.assertStatus(r, 201, "another address")


# ---------------------------------------------------------------------------------------
# C. A correct password is never a failed login


class BusyLoginTest(NodeTestCase):
    """A burst of correct logins that outruns the password hashing may be told to come back
    ("busy"), but must never count as failed logins and lock the rightful user out."""

    BURST = 24

    def test_correct_password_burst_never_fails_or_locks_out(self):
        node = self.start_node(config={"users": {"password_hash_ops": 2, "password_hash_memory_kib": 65536,
                                                 "login_free_attempts": 3}})
        node.new_user("victim")
        start = threading.Barrier(self.BURST, timeout=30)
        results = [None] * self.BURST

        def one(i):
            try:
                start.wait()
                results[i] = node.login("victim", PW, device="burst %d" % i)
            except Exception as e:  # reported below with the others
                results[i] = e

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(self.BURST)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # Right after the burst, as the user would retry: one more correct login.
        after = node.login("victim", PW, device="after the burst")

        summary = []
        for i, r in enumerate(results):
            if isinstance(r, Exception) or r is None:
                summary.append("#%d: %r" % (i, r))
            else:
                summary.append("#%d: %s %s" % (i, r.status, ((r.json or {}).get("error") or {}).get("message", "")))
        summary = "burst answers:\n  " + "\n  ".join(summary) + "\nthen: " + after.describe()

        for r in results:
            self.assertNotIsInstance(r, (Exception, type(None)), summary)
        self.assertFalse([r for r in results if r.status == 401], "a correct password was answered 401\n" + summary)
        for r in results:
            self.assertIn(r.status, (201, 429), summary)
            if r.status == 429:
                self.assertEqual(error_code(r), "rate_limited", summary)
                # Only "the node is busy" is acceptable; a lock-out for failed logins is not.
                msg = r.json["error"].get("message", "").lower()
                self.assertIn("busy", msg, "a correct password was refused as a failed login\n" + summary)
        self.assertTrue([r for r in results if r.status == 201], "no login of the burst succeeded\n" + summary)
        self.assertEqual(after.status, 201, "the rightful user is locked out after the burst\n" + summary)


class PasswordSprayTest(NodeTestCase):
    """An attacker with an account of their own guesses one password at many accounts from
    one address, logging into their own account between guesses: that success must not take
    off the failures at other accounts (only its own account's typos), so the address's
    allowance still ends."""

    def test_own_login_between_guesses_does_not_reset_the_address(self):
        node = self.start_node(config={"users": {"login_free_attempts_per_address": 6,
                                                 "login_backoff_initial_ms": 600000}})
        node.new_user("mallory")
        victims = ["victim%d" % i for i in range(9)]
        for v in victims:
            node.new_user(v)
        guesses = iter(victims)  # one guess per account: no account's own limit is reached

        def guess():
            r = node.login(next(guesses), "not-their-password")
            self.assertEqual((r.status, error_code(r)), (401, "invalid_credentials"), r.describe())

        self.assertEqual(node.login("mallory", "a typo!").status, 401)  # mallory's own typo
        for _ in range(5):  # with it, the address's free failures
            guess()
        self.assertEqual(node.login("mallory", PW).status, 201)  # takes her typo off, nothing more
        guess()  # the sixth failure again: still free
        self.assertEqual(node.login("mallory", PW).status, 201)  # takes nothing off
        r = node.login(victims[-1], "not-their-password")  # the seventh: counted, and the address locked
        self.assertEqual(r.status, 401, r.describe())
        r = node.login("mallory", PW)  # even the attacker's own right password waits now
        self.assertEqual((r.status, error_code(r)), (429, "rate_limited"), r.describe())
        self.assertGreater(int(r.headers.get("Retry-After", "0")), 0, r.describe())
        # Another address is not held up by this one.
        other = request_from(node, "127.0.0.2", "POST", "/v1/sessions",
                             {"name": "victim0", "password": PW, "device_name": "d"})
        self.assertEqual(other.status, 201, other.describe())


class KnownDeviceTest(NodeTestCase):
    """Anyone can lock an account against new logins by guessing wrong; its owner's devices
    that logged in before carry a known-device token, and are held back only by their own
    failures. The lock otherwise stands as before."""

    def test_the_owners_device_gets_in_while_the_account_is_locked(self):
        node = self.start_node(config={"users": {"login_free_attempts": 3, "login_backoff_initial_ms": 600000,
                                                 "login_free_attempts_per_address": 1000}})
        node.new_user("vera")
        node.new_user("otto")
        first = node.login("vera", PW, device="her laptop")
        self.assertEqual(first.status, 201, first.describe())
        token = first.json.get("device_token")
        self.assertTrue(token and token.startswith("pk1."), first.describe())
        others = node.login("otto", PW).json["device_token"]

        def login(token, password=PW, source="127.0.0.1"):
            body = {"name": "vera", "password": password, "device_name": "her laptop"}
            if token is not None:
                body["device_token"] = token
            return request_from(node, source, "POST", "/v1/sessions", body)

        for _ in range(4):  # someone else's wrong passwords, from another address: the account locks
            self.assertEqual(login(None, "guess", source="127.0.0.3").status, 401)
        locked = login(None)
        self.assertEqual((locked.status, error_code(locked)), (429, "rate_limited"), locked.describe())
        tampered = token[:-1] + ("B" if token[-1] == "A" else "A")
        for bad in (others, "pk1.garbage.garbage", tampered):  # another user's, or not one
            r = login(bad)
            self.assertEqual((r.status, error_code(r)), (429, "rate_limited"), r.describe())
        # Her laptop gets in, and is given a new token for the next time.
        again = login(token)
        self.assertEqual(again.status, 201, again.describe())
        self.assertTrue(again.json["device_token"].startswith("pk1."))
        # The token is no way around the limit: its own wrong passwords lock it too.
        for _ in range(4):
            self.assertIn(login(token, "typo!").status, (401, 429))
        r = login(token)
        self.assertEqual((r.status, error_code(r)), (429, "rate_limited"), r.describe())

    def test_the_owners_device_gets_in_while_their_address_is_locked(self):
        # Others behind the same address (a carrier NAT, a shared /64) guess wrong at any
        # account: the address locks for new devices, not for the owner's known one.
        node = self.start_node(config={"users": {"login_free_attempts": 1000, "login_free_attempts_per_address": 3,
                                                 "login_backoff_initial_ms": 600000}})
        node.new_user("vera")
        node.new_user("mallory")
        shared = "127.0.0.5"
        first = request_from(node, shared, "POST", "/v1/sessions",
                             {"name": "vera", "password": PW, "device_name": "her phone"})
        self.assertEqual(first.status, 201, first.describe())
        token = first.json["device_token"]
        for _ in range(4):
            r = request_from(node, shared, "POST", "/v1/sessions",
                             {"name": "mallory", "password": "guess", "device_name": "x"})
            self.assertIn(r.status, (401, 429), r.describe())
        body = {"name": "vera", "password": PW, "device_name": "her phone"}
        locked = request_from(node, shared, "POST", "/v1/sessions", body)
        self.assertEqual((locked.status, error_code(locked)), (429, "rate_limited"), locked.describe())
        again = request_from(node, shared, "POST", "/v1/sessions", dict(body, device_token=token))
        self.assertEqual(again.status, 201, again.describe())


class KnownDeviceResetTest(NodeTestCase):

    def test_a_new_password_makes_earlier_device_tokens_worthless(self):
        node = self.start_node(config={"users": {"login_free_attempts": 3, "login_backoff_initial_ms": 600000,
                                                 "login_free_attempts_per_address": 1000}})
        node.new_user("wanda")
        token = node.login("wanda", PW).json["device_token"]
        r = node.admin("POST", "/v1/admin/users/wanda/password", {"password": "a new password"})
        self.assertEqual(r.status, 200, r.describe())
        body = {"name": "wanda", "password": "guess", "device_name": "d"}
        for _ in range(4):
            self.assertEqual(request_from(node, "127.0.0.3", "POST", "/v1/sessions", body).status, 401)
        body = {"name": "wanda", "password": "a new password", "device_name": "d", "device_token": token}
        r = request_from(node, "127.0.0.1", "POST", "/v1/sessions", body)
        self.assertEqual((r.status, error_code(r)), (429, "rate_limited"), r.describe())


class RightPasswordFloodTest(NodeTestCase):
    """One address logging in again and again with right passwords (its own accounts) would
    keep the node's password checks busy for everyone: password checks per address are
    limited by rate too (users.login_checks_per_minute_per_address), whatever their
    outcome, and other addresses are not held up."""

    def test_right_passwords_from_one_address_are_limited_by_rate(self):
        node = self.start_node(config={"users": {"login_checks_per_minute_per_address": 10}})
        node.new_user("mallory")
        # Ten at once, then one every 6 s: however slow this machine is, the answers turn to
        # 429 after the ten and the few that the time taken refilled.
        started = time.monotonic()
        answers = []
        while len(answers) < 40 and (not answers or answers[-1].status == 201):
            answers.append(node.login("mallory", PW, device="loop %d" % len(answers)))
        refilled = int((time.monotonic() - started) / 6) + 1
        r = answers[-1]
        self.assertEqual((r.status, error_code(r)), (429, "rate_limited"), r.describe())
        self.assertTrue(10 <= len(answers) - 1 <= 10 + refilled, "%d logins let through" % (len(answers) - 1))
        self.assertIn("from your address", r.json["error"]["message"])
        self.assertGreaterEqual(int(r.headers.get("Retry-After", "0")), 1, r.describe())
        self.assertLessEqual(int(r.headers.get("Retry-After", "0")), 6, r.describe())
        other = request_from(node, "127.0.0.2", "POST", "/v1/sessions",
                             {"name": "mallory", "password": PW, "device_name": "elsewhere"})
        self.assertEqual(other.status, 201, other.describe())


    def test_a_64_refused_again_and_again_leaves_its_48_alone(self):
        # One subscriber's /64 logging in in a loop: past its own rate it is refused, and
        # those refusals must not use up the checks of the /48 every other /64 of it shares.
        node = self.start_node(config={"gateway": {"trusted_proxies": ["127.0.0.1"]},
                                       "users": {"login_checks_per_minute_per_address": 2}})
        node.new_user("mallory")
        node.new_user("victim")

        def login(name, xff):
            return node.request("POST", "/v1/sessions", {"name": name, "password": PW, "device_name": "d"},
                                headers={"X-Forwarded-For": xff})
        answers = [login("mallory", "2001:db8:0:1::1").status for _ in range(40)]
        self.assertEqual(answers.count(201), 2, answers)  # the /64's two a minute, then refused
        r = login("victim", "2001:db8:0:2::1")
        self.assertEqual(r.status, 201, "another /64 of the same /48: %s" % r.describe())


class PasswordSetDuringLoginTest(NodeTestCase):
    """An admin sets a user's password (all their sessions are revoked) while a login with the
    old one is being checked: that login must not leave a session behind. It once did (its
    write checked only that the account still existed), so someone locked out by a password
    reset kept a working device by logging in at the same moment."""

    def test_no_session_with_the_old_password_outlives_the_reset(self):
        node = self.start_node(config={"users": {"password_hash_ops": 3, "password_hash_memory_kib": 65536}})
        node.new_user("alice", "oldpassword1")
        done = {}

        def reset():
            done["reset"] = node.admin("POST", "/v1/admin/users/alice/password", {"password": "newpassword2"})

        for attempt in range(3):
            done.clear()
            t = threading.Thread(target=reset, daemon=True)
            t.start()
            time.sleep(0.02)  # the login reads the old hash while the new one is being made
            login = node.login("alice", "oldpassword1", device="in the race %d" % attempt)
            t.join(60)
            self.assertEqual(done["reset"].status, 200, done["reset"].describe())
            self.assertIn(login.status, (201, 401), login.describe())
            if login.status == 201:  # it won the race: the reset then revoked it
                me = node.request("GET", "/v1/me", token=login.json["access_token"])
                self.assertEqual((me.status, error_code(me)), (401, "session_revoked"),
                                 "a session made with the old password works after the reset")
                self.assertEqual(node.refresh(login.json["refresh_token"]).status, 401)
            sessions = node.admin("GET", "/v1/admin/sessions?user=alice").json["sessions"]
            self.assertEqual([x for x in sessions if not x.get("revoked")], [], sessions)
            self.assertEqual(node.login("alice", "newpassword2").status, 201)
            node.admin("POST", "/v1/admin/users/alice/password", {"password": "oldpassword1"})


# ---------------------------------------------------------------------------------------
# D. Connections per address


class ConnectionsPerAddressTest(NodeTestCase):
    """One address holding idle connections must not exhaust the gateway for everyone."""

    CAP = 10

    def refused_answer(self, sock):
        """What the gateway says to a connection over the cap. It may answer at once or
        only after a request: give it a moment unprompted (without consuming anything),
        then ask."""
        readable, _, _ = select.select([sock], [], [], 3)
        if not readable:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            return read_http_response(sock, 15)
        except ConnectionResetError:
            return b""

    def test_cap_per_address(self):
        node = self.start_node(config={"gateway": {"max_connections_per_address": self.CAP}})
        idle = []
        try:
            for _ in range(self.CAP):
                idle.append(socket.create_connection(("127.0.0.1", node.port), timeout=10))
            extra = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            try:
                data = self.refused_answer(extra)
                self.assertTrue(data, "connection %d closed without an answer" % (self.CAP + 1))
                status, headers, body = parse_http_response(data)
                self.assertEqual(status, 503, "connection %d from one address: %r" % (self.CAP + 1, data[:300]))
                self.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
                err = json.loads(body).get("error", {})
                self.assertEqual(err.get("code"), "too_many_connections", body)
                # ... and it is closed.
                extra.settimeout(10)
                try:
                    rest = extra.recv(65536)
                except ConnectionResetError:
                    rest = b""
                self.assertEqual(rest, b"", "the refused connection stayed open")
            finally:
                extra.close()

            # Another address is served meanwhile.
            r = request_from(node, "127.0.0.2", "GET", "/healthz")
            self.assertStatus(r, 200, "from 127.0.0.2 while 127.0.0.1 is at its cap")
        finally:
            for s in idle:
                s.close()

        # Once the idle connections are gone, the address is welcome again.
        def healthy():
            try:
                return node.request("GET", "/healthz", timeout=5).status == 200
            except (OSError, http.client.HTTPException):
                return False

        self.assertTrue(wait_until(healthy, 15), "127.0.0.1 still refused after closing its idle connections")

    def test_cap_of_the_node(self):
        """Past gateway.max_connections a plain-text client is told so (not just dropped),
        and the refusals are counted with the answers."""
        node = self.start_node(config={"gateway": {"max_connections": 4}})
        idle = []
        try:
            for _ in range(4):
                idle.append(socket.create_connection(("127.0.0.1", node.port), timeout=10))
            extra = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            try:
                data = self.refused_answer(extra)
                self.assertTrue(data, "connection 5 closed without an answer")
                status, headers, body = parse_http_response(data)
                self.assertEqual(status, 503, data[:300])
                err = json.loads(body).get("error", {})
                self.assertEqual(err.get("code"), "too_many_connections", body)
                self.assertIn("(4)", err.get("message", ""), "the node's limit, not the address's")
            finally:
                extra.close()
        finally:
            for s in idle:
                s.close()
        scraped = node.scrape().raw.decode()
        refused = [x for x in scraped.splitlines() if x.startswith('petchat_http_requests_total{api="user",status="5xx"}')]
        self.assertTrue(refused and float(refused[0].rsplit(" ", 1)[1]) >= 1, refused)


# ---------------------------------------------------------------------------------------
# E. Devices per user


class DeviceCapTest(CtlMixin, NodeTestCase):
    """Every login is a stored device; a script logging in forever must not grow the store
    without bound. The least recently used device makes room."""

    CAP = 5

    def test_least_recently_used_device_is_evicted(self):
        node = self.start_node(config={"users": {"max_devices_per_user": self.CAP}})
        node.new_user("roamer")
        logins = [node.new_session("roamer", device="device %d" % i) for i in range(12)]
        first, newest = logins[0], logins[-1]

        sessions = self.ctl_json(node, "sessions", "list", "--user", "roamer")["sessions"]
        listed = [s["device_id"] for s in sessions]
        self.assertLessEqual(len(sessions), self.CAP, "sessions listed after 12 logins: %s" % listed)
        self.assertIn(newest["device_id"], listed)
        self.assertNotIn(first["device_id"], listed)

        # The newest device works, access and refresh.
        self.assertStatus(node.request("GET", "/v1/me", token=newest["access_token"]), 200)
        self.assertStatus(node.refresh(newest["refresh_token"]), 200)
        # The evicted one does not, and says why.
        self.assertError(node.request("GET", "/v1/me", token=first["access_token"]), 401, "session_revoked")
        r = node.refresh(first["refresh_token"])
        self.assertEqual(r.status, 401, "the evicted device can still refresh: " + r.describe())


# ---------------------------------------------------------------------------------------
# F. Admin socket and data dir


class AdminSocketTakeoverTest(CtlMixin, NodeTestCase):
    """A second node started by mistake with the same admin socket must not steal it: the
    running node would lose its operator interface."""

    def test_second_node_on_the_same_socket_refuses_to_start(self):
        sock_dir = tempfile.mkdtemp(prefix="petchat-sock-")
        self.addCleanup(shutil.rmtree, sock_dir, True)
        sock = os.path.join(sock_dir, "admin.sock")
        first = self.start_node(config={"admin": {"socket": sock}}, name="first")
        self.assertEqual(self.ctl_json(first, "status")["region"], REGION)

        # Its own data dir and port: only the socket is shared.
        second = self.start_node(config={"admin": {"socket": sock}}, name="second", start=False)
        try:
            second.start()
            started = True
        except NodeStartError:
            started = False
        rc_during, _, err_during = first.ctl("--json", "status")
        if started:
            second.stop()  # as the operator would, on noticing
        rc_after, _, err_after = first.ctl("--json", "status")
        facts = ("second node started: %s; first node's admin socket while it ran: rc %d %s; after it exited: "
                 "rc %d %s" % (started, rc_during, err_during.strip(), rc_after, err_after.strip()))

        self.assertFalse(started, "a second node took over a running node's admin socket; " + facts)
        self.assertNotEqual(second.proc.returncode, 0, facts)
        stderr = "\n".join(second.stderr_lines)
        self.assertIn(sock, stderr, "the refusal does not name the socket")
        self.assertEqual(rc_during, 0, facts)
        self.assertEqual(rc_after, 0, facts)
        # The socket is still the first node's, answering as before.
        r = _do_request(UnixHTTPConnection(sock), "GET", "/v1/admin/status")
        self.assertStatus(r, 200)
        self.assertEqual(os.path.realpath(r.json.get("data_dir", "")), os.path.realpath(first.data_dir))


class DataDirPermissionsTest(NodeTestCase):
    """A data dir others can write to (a typo like --data-dir /tmp) holds the region key,
    the stores and the admin socket: refuse it, and do not chmod a shared directory."""

    def test_world_writable_data_dir_is_refused_and_left_alone(self):
        node = self.start_node(start=False)
        os.makedirs(node.data_dir)
        os.chmod(node.data_dir, 0o1777)
        try:
            node.start()
            started = True
        except NodeStartError:
            started = False
        if started:
            node.stop()
        mode = stat.S_IMODE(os.stat(node.data_dir).st_mode)

        self.assertFalse(started, "started on a world-writable data dir (its mode is now %o)" % mode)
        node.proc.wait(10)
        self.assertEqual(node.proc.returncode, 2, "a refusal a restart cannot cure: exit 2")
        self.assertEqual(mode, 0o1777, "the data dir's mode was changed to %o" % mode)
        stderr = "\n".join(node.stderr_lines)
        self.assertIn(node.data_dir, stderr, "the refusal does not name the data dir")
        self.assertRegex(stderr.lower(), r"writable|permission|mode|unsafe|insecure",
                         "the refusal does not say what is wrong with the data dir")


# ---------------------------------------------------------------------------------------
# G. History filters and admin durations


class HistoryFiltersTest(NodeTestCase):
    """A malformed filter must be refused, not quietly read as some other time; valid RFC
    3339 offsets must work; the paging flags must tell the truth."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.node = cls.start_class_node()
        cls.node.new_user("hanna")
        cls.node.new_user("ivo")
        cls.token = cls.node.new_session("hanna")["access_token"]
        c = wsclient.connect(cls.node, cls.token)
        try:
            cls.sent = []
            for i in range(3):
                cls.sent.append(c.send_message("ivo@" + REGION, "message %d" % i))
                time.sleep(0.05)  # distinct send times, with room between them
        finally:
            c.close()
        cls.conv = cls.sent[0]["conversation_id"]
        cls.ids = [s["message_id"] for s in cls.sent]
        cls.times = [int(s["sent_at_ms"]) for s in cls.sent]

    def history(self, **filters):
        query = "&".join("%s=%s" % (k, urllib.parse.quote(str(v), safe=":")) for k, v in filters.items())
        path = "/v1/conversations/%s/messages" % urllib.parse.quote(self.conv, safe="")
        return self.node.request("GET", path + ("?" + query if query else ""), token=self.token)

    def test_malformed_filters_are_refused(self):
        cases = [("since", "2026-01-01T00:00:nanZ"), ("since", "2026-01-01T-5:-9:00Z"),
                 ("since", "2026-02-31T00:00:00Z"), ("limit", "+5")]
        for key, value in cases:
            with self.subTest(**{key: value}):
                self.assertError(self.history(**{key: value}), 400, "invalid_field", field=key,
                                 msg="%s=%s" % (key, value))

    def test_offsets_are_accepted(self):
        # Each is the same instant as the Z form next to it, so the answers must match.
        for value, same in [("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00Z"),
                            ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z")]:
            with self.subTest(since=value):
                r = self.history(since=value)
                self.assertStatus(r, 200, "since=%s" % value)
                z = self.history(since=same)
                self.assertStatus(z, 200)
                self.assertEqual([m["id"] for m in r.json["messages"]], [m["id"] for m in z.json["messages"]])

    def test_has_more_before_with_since(self):
        between = (self.times[0] + self.times[1]) // 2
        self.assertLess(self.times[0], between)
        r = self.history(since=rfc3339(between))
        self.assertStatus(r, 200)
        self.assertEqual([m["id"] for m in r.json["messages"]], self.ids[1:])
        self.assertIs(r.json["has_more_before"], True, "an older message exists: %s" % r.describe())
        self.assertIs(r.json["has_more_after"], False, r.describe())

    def test_has_more_after_with_until_in_the_future(self):
        future = int(time.time() * 1000) + 86400 * 1000
        r = self.history(until=rfc3339(future))
        self.assertStatus(r, 200)
        self.assertEqual([m["id"] for m in r.json["messages"]], self.ids)
        self.assertIs(r.json["has_more_after"], False, "every message was returned: %s" % r.describe())
        self.assertIs(r.json["has_more_before"], False, r.describe())


class FederationDurationsTest(NodeTestCase):
    """`oldest_undelivered_s` is a duration: an integer, as every `_s` field of the API.
    It only appears for a federated node, so two regions share one nats-server and the
    other region is stopped, which leaves this region's envelopes unconfirmed and ageing."""

    def test_oldest_undelivered_s_is_an_integer(self):
        import fedharness  # needs nats-server; only this test does
        server = fedharness.NatsServer("shared")
        self.addCleanup(server.close)
        regions = fedharness.make_regions(["europe", "america"], {"europe": server, "america": server})
        regions.pop("_keys")
        for r in regions.values():
            self.addCleanup(r.node.close)
        europe = regions["europe"].node
        regions["america"].node.stop()

        europe.new_user("alice")
        c = wsclient.connect(europe, europe.new_session("alice"))
        try:
            c.send_message("bob@america", "waiting for america")
        finally:
            c.close()

        def aged():
            st = europe.admin("GET", "/v1/admin/federation")
            regs = (st.json or {}).get("regions") or []
            mine = [x for x in regs if x.get("region") == "america"]
            # Wait for a whole second or more, so that a fraction cannot hide the type.
            if mine and mine[0].get("outbox", 0) > 0 and mine[0].get("oldest_undelivered_s", 0) >= 2:
                return st
            return None

        st = wait_until(aged, 20)
        self.assertIsNotNone(st, "europe's outbox to america never aged 2 s: %s"
                             % europe.admin("GET", "/v1/admin/federation").describe())
        value = [x for x in st.json["regions"] if x["region"] == "america"][0]["oldest_undelivered_s"]
        self.assertIs(type(value), int, "oldest_undelivered_s is %r in %s" % (value, st.raw[:800]))

        rc, out, err = europe.ctl("--json", "federation", "status")
        self.assertEqual(rc, 0, err)
        value = [x for x in json.loads(out)["regions"] if x["region"] == "america"][0]["oldest_undelivered_s"]
        self.assertIs(type(value), int, "petchatctl --json federation status: oldest_undelivered_s is %r in %s"
                      % (value, out[:800]))


if __name__ == "__main__":
    unittest.main()
