"""Accounts: registration, validation, HTTP-level errors, profiles, health endpoints."""

import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REGION, NodeTestCase, parse_http_response, read_http_response  # noqa: E402

PUBLIC_PROFILE_KEYS = {"id", "name", "region", "display_name", "about", "created_at"}
REG_TOKEN = "let-me-in-0123456789"


class AccountsTest(NodeTestCase):
    """One shared node with open registration and a small body limit (4096 bytes)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.node = cls.start_class_node(config={"gateway": {"max_body_bytes": 4096}})

    def profile_ok(self, body, name, display_name=None, about=""):
        self.assertIsInstance(body, dict)
        missing = PUBLIC_PROFILE_KEYS - set(body)
        self.assertFalse(missing, "profile lacks %s: %r" % (missing, body))
        self.assertEqual(body["id"], "%s@%s" % (name, REGION))
        self.assertEqual(body["name"], name)
        self.assertEqual(body["region"], REGION)
        self.assertEqual(body["display_name"], display_name if display_name is not None else name)
        self.assertEqual(body["about"], about)
        self.assertTimestamp(body["created_at"], "created_at")
        for k in body:
            self.assertNotIn("password", k.lower(), "profile leaks %s" % k)
            self.assertNotIn("hash", k.lower(), "profile leaks %s" % k)

    # -- registration ------------------------------------------------------------------------

    def test_register_created(self):
        r = self.node.register("alice", "correct horse", display_name="Alice A")
        self.assertStatus(r, 201)
        self.profile_ok(r.json, "alice", display_name="Alice A")
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))

    def test_register_display_name_defaults_to_name(self):
        r = self.node.register("noname", "password123")
        self.assertStatus(r, 201)
        self.profile_ok(r.json, "noname", display_name="noname")

    def test_register_duplicate_name(self):
        self.node.new_user("dupe")
        r = self.node.register("dupe", "another password")
        self.assertError(r, 409, "name_taken")
        # The first account is untouched: its password still works.
        self.node.new_session("dupe", "password123")
        r = self.node.login("dupe", "another password")
        self.assertError(r, 401, "invalid_credentials")

    def test_register_invalid_names(self):
        bad = ["Alice", "aLICE", "ab", "a", "1abc", "9lives", "_abc", "-abc", ".abc", "al ice", "al!ce",
               "al/ce", "al#ce", "\u00e5lice", "a" * 33]
        for name in bad:
            with self.subTest(name=name):
                r = self.node.register(name, "password123")
                self.assertError(r, 400, "invalid_name", msg="name %r" % name)

    def test_register_valid_name_edges(self):
        for name in ["abc", "a" * 32, "a.b_c-9", "z00"]:
            with self.subTest(name=name):
                r = self.node.register(name, "password123")
                self.assertStatus(r, 201, "name %r" % name)
                self.assertEqual(r.json["id"], name + "@" + REGION)

    def test_register_weak_password(self):
        r = self.node.register("weakling", "short12")  # 7 bytes
        self.assertError(r, 400, "weak_password")
        r = self.node.register("weakling", "")
        self.assertError(r, 400, "weak_password")
        r = self.node.register("weakling", "x" * 1025)
        self.assertError(r, 400, "weak_password")
        # None of the refusals created the account.
        r = self.node.register("weakling", "x" * 8)
        self.assertStatus(r, 201)

    def test_register_password_length_is_in_bytes(self):
        r = self.node.register("longpw", "y" * 1024)
        self.assertStatus(r, 201)
        self.node.new_session("longpw", "y" * 1024)
        # 4 characters, 8 bytes in UTF-8: long enough.
        r = self.node.register("utfpw", "\u00e9\u00e9\u00e9\u00e9")
        self.assertStatus(r, 201)
        self.node.new_session("utfpw", "\u00e9\u00e9\u00e9\u00e9")

    def test_register_malformed_json(self):
        for raw in [b'{"name": "abc", ', b"not json", b"", b"{'name': 'abc'}"]:
            with self.subTest(raw=raw):
                r = self.node.request("POST", "/v1/users", raw_body=raw)
                self.assertError(r, 400, "invalid_json")

    def test_register_and_login_only_as_json(self):
        # A browser sends these types cross-site without asking the node (CORS): another
        # site could make its visitors register accounts or try passwords.
        body = json.dumps({"name": "viaform", "password": "password123", "device_name": "x"}).encode()
        for ctype in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                      "application/jsonx", None]:
            for path in ["/v1/users", "/v1/sessions", "/v1/sessions/refresh"]:
                with self.subTest(ctype=ctype, path=path):
                    conn = self.node.connection()
                    conn.request("POST", path, body=body, headers={"Content-Type": ctype} if ctype else {})
                    r = conn.getresponse()
                    raw = r.read()
                    self.assertEqual(r.status, 415, raw)
                    self.assertEqual(json.loads(raw)["error"]["code"], "unsupported_media_type")
        # The type's parameters and case do not matter; and nothing was registered before.
        conn = self.node.connection()
        conn.request("POST", "/v1/users", body=body, headers={"Content-Type": "Application/JSON; charset=utf-8"})
        self.assertEqual(conn.getresponse().status, 201, "not name_taken: the refused ones registered nothing")

    def test_register_json_not_an_object(self):
        for raw in [b'["abc", "password123"]', b'"abc"', b"42", b"null"]:
            with self.subTest(raw=raw):
                r = self.node.request("POST", "/v1/users", raw_body=raw)
                self.assertError(r, 400, "invalid_json")

    def test_register_wrong_types(self):
        r = self.node.request("POST", "/v1/users", {"name": 5, "password": "password123"})
        self.assertError(r, 400, "invalid_field", field="name")
        r = self.node.request("POST", "/v1/users", {"name": "typed", "password": 12345678})
        self.assertError(r, 400, "invalid_field", field="password")
        r = self.node.request("POST", "/v1/users", {"name": "typed", "password": "password123", "display_name": 7})
        self.assertError(r, 400, "invalid_field", field="display_name")
        r = self.node.request("POST", "/v1/users", {"name": ["typed"], "password": "password123"})
        self.assertError(r, 400, "invalid_field", field="name")
        r = self.node.request("POST", "/v1/users", {"name": "typed", "password": "password123", "display_name": ""})
        self.assertError(r, 400, "invalid_field", field="display_name")
        # A name that shows nothing: spaces, a zero-width space, a Hangul filler.
        for blank in ["   ", "\u200b", "\u3164\u00a0"]:
            r = self.node.request("POST", "/v1/users", {"name": "typed", "password": "password123", "display_name": blank})
            self.assertError(r, 400, "invalid_field", field="display_name")
        # Nothing was created by the refused requests.
        r = self.node.register("typed", "password123")
        self.assertStatus(r, 201)

    def test_register_missing_fields(self):
        r = self.node.request("POST", "/v1/users", {"password": "password123"})
        self.assertError(r, 400, "missing_field", field="name")
        r = self.node.request("POST", "/v1/users", {"name": "missing"})
        self.assertError(r, 400, "missing_field", field="password")

    def test_register_unknown_fields_ignored(self):
        r = self.node.register("extra", "password123", favourite_colour="green", registration_token="whatever")
        self.assertStatus(r, 201)
        self.assertNotIn("favourite_colour", r.json)

    def test_body_limit(self):
        # Under the 4096-byte limit (unknown fields are ignored): accepted.
        r = self.node.register("bigbody", "password123", padding="p" * 3500)
        self.assertStatus(r, 201)
        # Over it: refused, and nothing registered.
        r = self.node.register("toobig", "password123", padding="p" * 5000)
        self.assertError(r, 413, "body_too_large")
        r = self.node.register("toobig", "password123")
        self.assertStatus(r, 201)

    def test_header_limit(self):
        # Default max_header_bytes is 8192: 5000 bytes of headers pass, 10000 do not.
        r = self.node.request("GET", "/healthz", headers={"X-Filler": "f" * 5000})
        self.assertStatus(r, 200)
        r = self.node.request("GET", "/healthz", headers={"X-Filler": "f" * 10000})
        self.assertError(r, 431, "header_too_large")
        # The node still serves.
        self.assertStatus(self.node.request("GET", "/healthz"), 200)

    def test_malformed_http(self):
        s = self.node.raw_socket(timeout=10)
        try:
            s.sendall(b"this is not http at all\r\n\r\n")
            data = read_http_response(s, 10)
        finally:
            s.close()
        self.assertTrue(data, "connection closed without a response")
        status, headers, body = parse_http_response(data)
        self.assertEqual(status, 400, data)
        self.assertIn(b'"bad_request"', body)
        self.assertStatus(self.node.request("GET", "/healthz"), 200)

    # -- routing ------------------------------------------------------------------------------

    def test_unknown_path(self):
        # "/" is the web client's page when the node serves one (test_web.py).
        for method, path in [("GET", "/v1/nope"), ("GET", "/nope.html"), ("POST", "/v1/nope"), ("GET", "/v2/users"),
                             ("GET", "/healthzz")]:
            with self.subTest(method=method, path=path):
                r = self.node.request(method, path, body={} if method == "POST" else None)
                self.assertError(r, 404, "not_found")

    def test_wrong_method(self):
        self.node.new_user("methodist")
        tok = self.node.new_session("methodist")["access_token"]
        for method, path in [("DELETE", "/v1/users"), ("GET", "/v1/users"), ("POST", "/healthz"),
                             ("GET", "/v1/sessions/refresh"), ("PUT", "/v1/me"), ("POST", "/v1/me"),
                             ("PUT", "/v1/sessions")]:
            with self.subTest(method=method, path=path):
                r = self.node.request(method, path, token=tok,
                                      body={} if method in ("POST", "PUT") else None)
                self.assertError(r, 405, "method_not_allowed")

    # -- profiles -----------------------------------------------------------------------------

    def test_profile_by_id_and_bare_name(self):
        created = self.node.new_user("bob", display_name="Bob B")
        self.node.new_user("viewer")
        tok = self.node.new_session("viewer")["access_token"]
        for ident in ["bob@" + REGION, "bob"]:
            with self.subTest(ident=ident):
                r = self.node.request("GET", "/v1/users/" + ident, token=tok)
                self.assertStatus(r, 200)
                self.profile_ok(r.json, "bob", display_name="Bob B")
                self.assertEqual(r.json["created_at"], created["created_at"])

    def test_profile_unknown_user(self):
        self.node.new_user("looker")
        tok = self.node.new_session("looker")["access_token"]
        r = self.node.request("GET", "/v1/users/nobody", token=tok)
        self.assertError(r, 404, "user_not_found")
        r = self.node.request("GET", "/v1/users/nobody@" + REGION, token=tok)
        self.assertError(r, 404, "user_not_found")
        # Users of other regions are unknown until federation lands.
        r = self.node.request("GET", "/v1/users/looker@elsewhere", token=tok)
        self.assertError(r, 404, "user_not_found")

    def test_profile_requires_token(self):
        self.node.new_user("private")
        r = self.node.request("GET", "/v1/users/private")
        self.assertError(r, 401, "missing_token")
        r = self.node.request("GET", "/v1/me")
        self.assertError(r, 401, "missing_token")
        r = self.node.request("PATCH", "/v1/me", {"about": "x"})
        self.assertError(r, 401, "missing_token")

    def test_me(self):
        self.node.new_user("selfie", display_name="Self Ie")
        sess = self.node.new_session("selfie", device="selfie's laptop")
        r = self.node.request("GET", "/v1/me", token=sess["access_token"])
        self.assertStatus(r, 200)
        self.profile_ok({k: v for k, v in r.json.items() if k not in ("device_id", "device_name")},
                        "selfie", display_name="Self Ie")
        self.assertEqual(r.json.get("device_id"), sess["device_id"])
        self.assertEqual(r.json.get("device_name"), "selfie's laptop")

    def test_patch_me(self):
        self.node.new_user("carol")
        self.node.new_user("dave")
        carol = self.node.new_session("carol")["access_token"]
        dave = self.node.new_session("dave")["access_token"]

        r = self.node.request("PATCH", "/v1/me", {"display_name": "Carol \u2603", "about": "likes cats\nand dogs"},
                              token=carol)
        self.assertStatus(r, 200)
        self.profile_ok(r.json, "carol", display_name="Carol \u2603", about="likes cats\nand dogs")
        # Invisible characters that names and texts need are kept: an emoji's zero-width
        # joiner, a right-to-left mark, a paragraph separator in the about text.
        name = "\U0001F469\u200d\U0001F4BB \u05e9\u05e8\u05d4\u200f"
        r = self.node.request("PATCH", "/v1/me", {"display_name": name, "about": "one\u2029two"}, token=carol)
        self.assertStatus(r, 200)
        self.assertEqual((r.json["display_name"], r.json["about"]), (name, "one\u2029two"))
        self.assertStatus(self.node.request("PATCH", "/v1/me", {"display_name": "Carol \u2603"}, token=carol), 200)

        # Absent fields are left as they are.
        r = self.node.request("PATCH", "/v1/me", {"about": "only cats"}, token=carol)
        self.assertStatus(r, 200)
        self.profile_ok(r.json, "carol", display_name="Carol \u2603", about="only cats")

        # Another user sees the change.
        r = self.node.request("GET", "/v1/users/carol", token=dave)
        self.assertStatus(r, 200)
        self.profile_ok(r.json, "carol", display_name="Carol \u2603", about="only cats")

        # Empty about is allowed (0 to 280 characters); 64-char display name and 280-char about too.
        r = self.node.request("PATCH", "/v1/me", {"display_name": "d" * 64, "about": ""}, token=carol)
        self.assertStatus(r, 200)
        self.profile_ok(r.json, "carol", display_name="d" * 64, about="")
        r = self.node.request("PATCH", "/v1/me", {"about": "\u00e9" * 280}, token=carol)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["about"], "\u00e9" * 280)

        # dave's profile is untouched.
        r = self.node.request("GET", "/v1/me", token=dave)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["display_name"], "dave")
        self.assertEqual(r.json["about"], "")

    def test_patch_me_invalid(self):
        self.node.new_user("erin", display_name="Erin")
        tok = self.node.new_session("erin")["access_token"]
        cases = [
            ({"display_name": 5}, "display_name"),
            ({"display_name": None}, "display_name"),
            ({"about": ["x"]}, "about"),
            ({"about": {"a": 1}}, "about"),
            ({"display_name": ""}, "display_name"),
            ({"display_name": "d" * 65}, "display_name"),
            ({"display_name": "bell\u0007"}, "display_name"),
            ({"about": "a" * 281}, "about"),
            ({"about": "nul\u0000byte"}, "about"),
            # C1 controls (a terminal's CSI and OSC, as UTF-8), direction overrides and
            # isolates, and line separators on one line.
            ({"display_name": "a\u009b31mb"}, "display_name"),
            ({"display_name": "\u009d52;c;cm0gLXJm\u009c"}, "display_name"),
            ({"display_name": "invoice\u202efdp.exe"}, "display_name"),
            ({"display_name": "x\u2066y\u2069"}, "display_name"),
            ({"display_name": "two\u2028lines"}, "display_name"),
            ({"about": "esc\u0085"}, "about"),
            ({"about": "\u202dforced"}, "about"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                r = self.node.request("PATCH", "/v1/me", body, token=tok)
                self.assertError(r, 400, "invalid_field", field=field)
        r = self.node.request("PATCH", "/v1/me", raw_body=b"[1]", token=tok)
        self.assertError(r, 400, "invalid_json")
        r = self.node.login("erin", "password123", device="phone\u009b2J")
        self.assertError(r, 400, "invalid_field", field="device_name")
        r = self.node.request("GET", "/v1/me", token=tok)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["display_name"], "Erin")
        self.assertEqual(r.json["about"], "")

    def test_profile_changes_are_limited_in_rate(self):
        """Each change of a profile is a commit every login waits behind: 30 a minute, as
        many at once; one that changes nothing costs nothing."""
        self.node.new_user("fiona")
        tok = self.node.new_session("fiona")["access_token"]
        started = time.monotonic()
        answers = []
        for i in range(40):
            body = {"group_adds": "contacts" if i % 2 == 0 else "everyone"}
            r = self.node.request("PATCH", "/v1/me", body, token=tok)
            answers.append(r)
            if r.status == 429:
                break
        took = time.monotonic() - started
        self.assertTrue(all(a.status == 200 for a in answers[:30]), [a.status for a in answers])
        # One comes back every 2 s: a slow machine may have been given a few more.
        self.assertEqual(answers[-1].status, 429, "%d changes in %.1f s" % (len(answers), took))
        self.assertLessEqual(len(answers) - 1, 30 + int(took / 2) + 1)
        self.assertError(answers[-1], 429, "rate_limited")
        self.assertGreaterEqual(int(answers[-1].headers["Retry-After"]), 1)
        last = answers[-2].json["group_adds"]
        self.assertEqual(self.node.request("GET", "/v1/me", token=tok).json["group_adds"], last, "not changed")
        # Saving the settings as they are is still answered.
        r = self.node.request("PATCH", "/v1/me", {"group_adds": last, "display_name": "fiona"}, token=tok)
        self.assertStatus(r, 200)
        # Another account has its own allowance.
        self.node.new_user("gemma")
        other = self.node.new_session("gemma")["access_token"]
        self.assertStatus(self.node.request("PATCH", "/v1/me", {"about": "hi"}, token=other), 200)

    # -- health --------------------------------------------------------------------------------

    def test_healthz(self):
        r = self.node.request("GET", "/healthz")
        self.assertStatus(r, 200)
        self.assertEqual(r.json, {"status": "ok"})

    def test_head_has_no_body_and_keeps_the_connection_in_step(self):
        conn = self.node.connection()
        try:
            conn.request("HEAD", "/healthz")
            head = conn.getresponse()
            self.assertEqual(head.status, 200)
            self.assertEqual(head.read(), b"")
            self.assertGreater(int(head.getheader("Content-Length")), 0)
            # The next answer on the same connection must start where the HEAD answer ended.
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read()), {"status": "ok"})
        finally:
            conn.close()

    def test_readyz(self):
        r = self.node.request("GET", "/readyz")
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("status"), "ready")
        self.assertEqual(r.json.get("region"), REGION)
        self.assertEqual(r.json.get("stores"), {"users": "open", "messages": "open"})
        self.assertEqual(r.json.get("federation"), "standalone")

    def test_keep_alive(self):
        conn = self.node.connection()
        try:
            for _ in range(3):
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                resp.read()
        finally:
            conn.close()


class RegistrationPolicyTest(NodeTestCase):

    def test_closed(self):
        node = self.start_node(config={"users": {"registration": "closed"}})
        r = node.register("shut", "password123")
        self.assertError(r, 403, "registration_closed")
        r = node.register("shut", "password123", registration_token="anything-at-all-1234")
        self.assertError(r, 403, "registration_closed")
        # The admin API ignores the policy.
        r = node.admin("POST", "/v1/admin/users", {"name": "shut", "password": "password123"})
        self.assertStatus(r, 201)
        node.new_session("shut")

    def test_token(self):
        node = self.start_node(config={"users": {"registration": "token", "registration_token": REG_TOKEN}})
        r = node.register("tok", "password123")
        self.assertError(r, 403, "invalid_registration_token")
        r = node.register("tok", "password123", registration_token="wrong-token-0123456789")
        self.assertError(r, 403, "invalid_registration_token")
        r = node.register("tok", "password123", registration_token=REG_TOKEN[:-1])
        self.assertError(r, 403, "invalid_registration_token")
        r = node.register("tok", "password123", registration_token=REG_TOKEN)
        self.assertStatus(r, 201)
        self.assertEqual(r.json["id"], "tok@" + REGION)
        node.new_session("tok")

    def test_tokens_made_by_the_admin(self):
        # No token in the config: only tokens made with petchatctl tokens create work.
        node = self.start_node(config={"users": {"registration": "token"}})
        rc, out, err = node.ctl("--json", "tokens", "create", "--uses", "2", "--expires", "1d", "--note", "Lisbon team")
        self.assertEqual(rc, 0, err)
        made = json.loads(out)
        token = made["token"]
        self.assertRegex(token, r"^prt1\.[A-Za-z0-9_-]{12}\.[A-Za-z0-9_-]{32}$")
        self.assertEqual((made["state"], made["uses"], made["max_uses"]), ("active", 0, 2))
        # Two registrations, then it is used up; a wrong secret with the right id is refused.
        self.assertError(node.register("tic", "password123", registration_token=token[:-2] + "AA"), 403,
                         "invalid_registration_token")
        self.assertStatus(node.register("tic", "password123", registration_token=token), 201)
        self.assertError(node.register("tic", "password123", registration_token=token), 409, "name_taken")
        self.assertStatus(node.register("tac", "password123", registration_token=token), 201)
        self.assertError(node.register("toe", "password123", registration_token=token), 403,
                         "invalid_registration_token")
        rc, out, err = node.ctl("tokens", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn(made["id"], out)
        self.assertIn("used_up", out)
        self.assertIn("2 of 2", out)
        self.assertIn("Lisbon team", out)
        self.assertNotIn(token.split(".")[2], out, "the secret is shown only once")
        # Concurrent registrations cannot overshoot a token's uses.
        rc, out, err = node.ctl("--json", "tokens", "create", "--uses", "3", "--expires", "never")
        one_more = json.loads(out)
        self.assertIsNone(one_more["expires_at"])
        results = []
        threads = [threading.Thread(target=lambda n=n: results.append(
            node.register("race%d" % n, "password123", registration_token=one_more["token"]).status))
            for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), [201] * 3 + [403] * 5)
        # Revoked: refused at once; an unknown id is not_found.
        rc, out, err = node.ctl("--json", "tokens", "create", "--uses", "0")
        unlimited = json.loads(out)
        self.assertStatus(node.register("before", "password123", registration_token=unlimited["token"]), 201)
        rc, out, err = node.ctl("tokens", "revoke", unlimited["id"])
        self.assertEqual(rc, 0, err)
        self.assertIn("revoked", out)
        self.assertError(node.register("after", "password123", registration_token=unlimited["token"]), 403,
                         "invalid_registration_token")
        rc, out, err = node.ctl("tokens", "revoke", "AAAAAAAAAAAA")
        self.assertEqual(rc, 1)
        self.assertIn("not_found", err)
        # Every id, as printed, is revoked as typed (an id starting with '-' would read as an option);
        # after `--` even such a one is taken as the id.
        for _ in range(64):
            made_id = node.admin("POST", "/v1/admin/registration-tokens", {"uses": 1}).json["id"]
            rc, out, err = node.ctl("tokens", "revoke", made_id)
            self.assertEqual(rc, 0, made_id + ": " + err)
        rc, out, err = node.ctl("tokens", "revoke", "--", "-AAAAAAAAAAA")
        self.assertEqual(rc, 1, err)
        self.assertIn("not_found", err)
        rc, out, err = node.ctl("tokens", "create", "--expires", "soon")
        self.assertEqual(rc, 2)
        # Tokens survive a restart with their counts.
        node.restart()
        listed = {t["id"]: t for t in node.admin("GET", "/v1/admin/registration-tokens").json["tokens"]}
        self.assertEqual((listed[made["id"]]["uses"], listed[made["id"]]["state"]), (2, "used_up"))
        self.assertEqual(listed[unlimited["id"]]["state"], "revoked")

    def test_expired_token_is_refused(self):
        node = self.start_node(config={"users": {"registration": "token"}})
        r = node.admin("POST", "/v1/admin/registration-tokens", {"uses": 5, "expires_in_s": 1})
        self.assertStatus(r, 201)
        self.assertEqual(r.json["state"], "active")
        time.sleep(1.1)  # past its expiry, whatever the machine's load
        self.assertError(node.register("late", "password123", registration_token=r.json["token"]), 403,
                         "invalid_registration_token")
        listed = node.admin("GET", "/v1/admin/registration-tokens").json["tokens"]
        self.assertEqual(listed[0]["state"], "expired")
        r = node.admin("POST", "/v1/admin/registration-tokens", {"uses": -1})
        self.assertError(r, 400, "invalid_field")

    def test_default_is_open(self):
        node = self.start_node()
        r = node.register("opened", "password123")
        self.assertStatus(r, 201)


if __name__ == "__main__":
    unittest.main()
