#!/usr/bin/env python3
"""The node at the edge: behind a reverse proxy (gateway.trusted_proxies), whose
X-Forwarded-For / Forwarded headers name the client for rate limits and logs, and from
anyone else are ignored."""
import http.client
import json
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REPO_ROOT, NodeTestCase, _do_request, toml_text  # noqa: E402

PW = "password123"
PROXY = "127.0.0.2"  # a second loopback address plays the reverse proxy
LIMITS = {"login_free_attempts": 1000, "login_free_attempts_per_address": 3, "login_backoff_initial_ms": 60000}


def login_from(node, source_ip, name, password, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=15, source_address=(source_ip, 0))
    body = {"name": name, "password": password, "device_name": "proxied"}
    return _do_request(conn, "POST", "/v1/sessions", body, None, headers)


class TrustedProxyTest(NodeTestCase):
    def test_one_attackers_failures_do_not_lock_out_others(self):
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY]}, "users": LIMITS})
        node.new_user("alice")
        attacker = {"X-Forwarded-For": "198.51.100.66"}
        # Bogus names, as a password sprayer sends them; the proxy adds the attacker's
        # address, and whatever the attacker wrote to the left of it is not believed.
        for i in range(4):
            r = login_from(node, PROXY, "ghost%d" % i, "wrong", {"X-Forwarded-For": "10.9.9.%d, 198.51.100.66" % i})
            self.assertError(r, 401, "invalid_credentials", msg="failure %d" % i)
        self.assertError(login_from(node, PROXY, "ghost9", "wrong", attacker), 429, "rate_limited")
        # Alice, through the same proxy from her own address, logs in.
        r = login_from(node, PROXY, "alice", PW, {"X-Forwarded-For": "203.0.113.7"})
        self.assertStatus(r, 201, "alice behind the proxy while the attacker is locked out")
        # The proxy writes X-Forwarded-For (the default gateway.forwarded_header): a
        # Forwarded header is the attacker's own, passed on by the proxy, and not read. A new
        # address in it per attempt buys no attempts.
        for i in range(3):
            r = login_from(node, PROXY, "alice", PW, {"Forwarded": "for=203.0.113.%d" % (50 + i),
                                                       "X-Forwarded-For": "198.51.100.66"})
            self.assertError(r, 429, "rate_limited", msg="the attacker naming another address in Forwarded")

    def test_new_64s_of_one_48_buy_no_more_free_attempts(self):
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY]}, "users": LIMITS})
        node.new_user("alice")
        # 3 wrong passwords (each /64's free attempts) from each of 16 /64s of one /48 use up
        # the /48's free attempts (16 times as many); a 17th /64's first failure locks it.
        for net in range(17):
            for i in range(3 if net < 16 else 1):
                r = login_from(node, PROXY, "ghost%d" % i, "wrong",
                               {"X-Forwarded-For": "2001:db8:7:%x::%d" % (net, i + 1)})
                self.assertError(r, 401, "invalid_credentials", msg="/64 %d, failure %d" % (net, i))
        r = login_from(node, PROXY, "ghost", "wrong", {"X-Forwarded-For": "2001:db8:7:ff::1"})
        self.assertError(r, 429, "rate_limited", msg="an 18th /64 of the same /48")
        # Another /48 is not held back.
        self.assertStatus(login_from(node, PROXY, "alice", PW, {"X-Forwarded-For": "2001:db8:8::1"}), 201)

    def test_proxies_that_write_forwarded(self):
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY], "forwarded_header": "forwarded"},
                                       "users": LIMITS})
        node.new_user("erin")
        for i in range(4):
            r = login_from(node, PROXY, "ghost%d" % i, "wrong", {"Forwarded": 'for="[2001:db8::66]:4711";proto=https'})
            self.assertError(r, 401, "invalid_credentials", msg="failure %d" % i)
        # X-Forwarded-For is now the attacker's own header, and not read.
        r = login_from(node, PROXY, "erin", PW, {"Forwarded": "for=2001:db8::66", "X-Forwarded-For": "203.0.113.9"})
        self.assertError(r, 429, "rate_limited")
        r = login_from(node, PROXY, "erin", PW, {"Forwarded": "for=6.6.6.6, for=203.0.113.7",
                                                  "X-Forwarded-For": "2001:db8::66"})
        self.assertStatus(r, 201, "erin behind the proxy while the attacker is locked out")

    def test_headers_from_anyone_else_are_ignored(self):
        # 127.0.0.1 is not a trusted proxy: its X-Forwarded-For is its own claim, and a new
        # address per attempt does not buy new attempts.
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY]}, "users": LIMITS})
        node.new_user("bob")
        for i in range(4):
            r = login_from(node, "127.0.0.1", "ghost%d" % i, "wrong", {"X-Forwarded-For": "198.51.100.%d" % i})
            self.assertError(r, 401, "invalid_credentials", msg="failure %d" % i)
        r = login_from(node, "127.0.0.1", "bob", PW, {"X-Forwarded-For": "203.0.113.99"})
        self.assertError(r, 429, "rate_limited")
        # The proxy's clients are not affected by what 127.0.0.1 did.
        self.assertStatus(login_from(node, PROXY, "bob", PW, {"X-Forwarded-For": "203.0.113.8"}), 201)

    def test_without_trusted_proxies_the_peer_is_the_client(self):
        node = self.start_node(config={"users": LIMITS})
        node.new_user("carol")
        for i in range(4):
            r = login_from(node, PROXY, "ghost%d" % i, "wrong", {"X-Forwarded-For": "198.51.100.%d" % i})
            self.assertError(r, 401, "invalid_credentials", msg="failure %d" % i)
        r = login_from(node, PROXY, "carol", PW, {"X-Forwarded-For": "203.0.113.5"})
        self.assertError(r, 429, "rate_limited")

    def test_a_proxy_is_not_held_to_the_per_address_connection_cap(self):
        cap = 4
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY], "max_connections_per_address": cap}})
        node.new_user("dave")
        held = []
        try:
            for _ in range(cap + 2):
                s = socket.create_connection(("127.0.0.1", node.port), timeout=10, source_address=(PROXY, 0))
                held.append(s)
            # Every held connection is served, as a proxy's pooled connections must be.
            for s in held:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: petchat\r\n\r\n")
                head = s.recv(64)
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        finally:
            for s in held:
                s.close()


def json_lines(lines):
    out = []
    for line in lines:
        if line.strip() and not line.startswith("=== start"):
            out.append(json.loads(line))  # every line of every stream is JSON
    return out


class AuditLogTest(NodeTestCase):
    """Security events in their own log category, with the client's address (behind the
    trusted proxy: the one it names), as fail2ban-style tools and an ELK stack read them."""

    def audit_events(self, node, action, count=1):
        """The audit events of `action` once at least `count` are in the node's stderr (a
        line is read a moment after the request it tells of was answered)."""
        deadline = time.monotonic() + 15
        while True:
            events = [e for e in json_lines(list(node.stderr_lines))
                      if e.get("log.logger") == "audit" and e.get("event.action") == action]
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.1)

    def test_logins_refreshes_revocations_and_admin_actions(self):
        # log.level = error: the audit category is still written.
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY]}, "log": {"level": "error"}},
                               extra_args=["--log-format", "json"])
        node.new_user("erin")
        self.assertError(login_from(node, PROXY, "erin", "wrong", {"X-Forwarded-For": "198.51.100.23"}),
                         401, "invalid_credentials")
        ok = login_from(node, PROXY, "erin", PW, {"X-Forwarded-For": "203.0.113.4"})
        self.assertStatus(ok, 201)

        failed = self.audit_events(node, "user-login", count=2)
        by_outcome = {e["event.outcome"]: e for e in failed}
        self.assertEqual(set(by_outcome), {"success", "failure"}, failed)
        bad = by_outcome["failure"]
        self.assertEqual(bad["client.ip"], "198.51.100.23")
        self.assertEqual(bad["user.name"], "erin")
        self.assertEqual(bad["event.reason"], "invalid_credentials")
        self.assertEqual(bad["log.level"], "warn")
        self.assertEqual(bad["event.category"], "authentication")
        self.assertEqual(bad["labels.region"], node.config["node"]["region"])
        self.assertTrue(bad["service.version"])
        self.assertEqual(by_outcome["success"]["client.ip"], "203.0.113.4")

        # A refresh token used again after its successor ends the session, and says so.
        tokens = ok.json
        successor = node.refresh(tokens["refresh_token"])
        self.assertStatus(successor, 200)
        self.assertStatus(node.refresh(successor.json["refresh_token"]), 200)
        self.assertError(node.refresh(tokens["refresh_token"]), 401, "refresh_token_reused")
        reuse = self.audit_events(node, "token-refresh-reuse")
        self.assertEqual(len(reuse), 1, reuse)
        self.assertEqual(reuse[0]["event.outcome"], "failure")

        # A device revoked by its owner.
        s1, s2 = node.new_session("erin", device="laptop"), node.new_session("erin", device="phone")
        r = node.request("DELETE", "/v1/sessions/" + s2["device_id"], token=s1["access_token"])
        self.assertStatus(r, 204)
        self.assertIsNone(r.headers.get("Clear-Site-Data"), "another device's end leaves this browser's cache")
        revoked = self.audit_events(node, "session-revoke")
        self.assertEqual([(e["user.name"], e["labels.device_id"]) for e in revoked], [("erin", s2["device_id"])])
        # Ending one's own device is logging out: the browser's cache goes too, as with
        # DELETE /v1/sessions/current (it holds the attachments the session downloaded).
        s3 = node.new_session("erin", device="tablet")
        r = node.request("DELETE", "/v1/sessions/" + s3["device_id"], token=s3["access_token"])
        self.assertStatus(r, 204)
        self.assertEqual(r.headers.get("Clear-Site-Data"), '"cache"')
        s4 = node.new_session("erin", device="desk")
        r = node.request("DELETE", "/v1/sessions/current", token=s4["access_token"])
        self.assertStatus(r, 204)
        self.assertEqual(r.headers.get("Clear-Site-Data"), '"cache"')

        # Admin actions, with what they changed.
        rc, out, err = node.ctl("users", "disable", "erin")
        self.assertEqual(rc, 0, err)
        admin = self.audit_events(node, "admin-user-disable")
        self.assertEqual(len(admin), 1, admin)
        self.assertEqual(admin[0]["user.target.name"], "erin")
        self.assertEqual(admin[0]["event.category"], "configuration")
        self.assertEqual(admin[0]["http.response.status_code"], 200)
        rc, out, err = node.ctl("users", "add", "frank", input="a long password\n")
        self.assertEqual(rc, 0, err)
        added = self.audit_events(node, "admin-user-add")
        self.assertEqual([(e["user.target.name"], e["event.outcome"]) for e in added], [("frank", "success")])
        self.assertNotIn("a long password", "\n".join(node.stderr_lines))
        node.stop()
        # Nothing on stdout is anything but JSON either (the ready line among it).
        ready = [e for e in json_lines(node.stdout_lines) if e.get("event.action") == "node-ready"]
        self.assertEqual(len(ready), 1, node.stdout_lines)
        self.assertTrue(ready[0]["message"].startswith("petchat-node ready:"), ready)

    def test_a_login_moves_an_old_hash_to_the_configured_cost(self):
        # An operator raises the password cost: existing accounts follow at their next login
        # (the audit line says so once), and nothing else changes for their owners.
        node = self.start_node(extra_args=["--log-format", "json"])
        node.new_user("heidi")
        before = node.new_session("heidi")
        node.stop()
        node.config["users"].update({"password_hash_ops": 2, "password_hash_memory_kib": 16384})
        with open(node.config_path, "w") as f:
            f.write(toml_text(node.config))
        node.start()
        self.assertStatus(node.request("GET", "/v1/me", token=before["access_token"]), 200)
        self.assertStatus(node.login("heidi", PW), 201)
        self.assertStatus(node.login("heidi", PW), 201)
        self.assertError(node.login("heidi", "password124"), 401, "invalid_credentials")
        logins = self.audit_events(node, "user-login", count=4)
        self.assertEqual([(e["event.outcome"], e.get("labels.password_rehashed") == "true") for e in logins],
                         [("success", False), ("success", True), ("success", False), ("failure", False)])
        # The session from before the new hash still works, and the new hash survives a restart.
        self.assertStatus(node.request("GET", "/v1/me", token=before["access_token"]), 200)
        node.restart()
        self.assertStatus(node.login("heidi", PW), 201)
        self.assertEqual(len(self.audit_events(node, "user-login", count=5)), 5)
        self.assertNotEqual(self.audit_events(node, "user-login")[4].get("labels.password_rehashed"), "true")

    def test_a_name_cannot_forge_a_human_log_line(self):
        node = self.start_node(config={"log": {"level": "warn"}})
        forged = "x\n2026-12-02 10:00:00.000 info  [audit] user-login for 'admin' from 10.0.0.1"
        self.assertError(node.login(forged, "wrong"), 401, "invalid_credentials")
        node.stop()
        audit = [l for l in node.stderr_lines if "[audit]" in l]
        self.assertEqual(len(audit), 1, audit)
        self.assertIn("user-login failed for 'x\\n2026-12-02", audit[0])
        self.assertIn("client.ip=127.0.0.1", audit[0])

    def test_what_costs_a_client_nothing_cannot_flood_the_log(self):
        node = self.start_node(extra_args=["--log-format", "json"])
        # A name of 60 KiB (the body's cap is 64 KiB) is kept as its first 64 bytes.
        huge = "n" * 61440
        self.assertError(node.login(huge, "wrong", device=""), 400, "invalid_field")
        first = self.audit_events(node, "user-login")
        self.assertEqual(len(first), 1, first)
        self.assertEqual(first[0]["user.name"], "n" * 64 + "... (61440 bytes)")
        self.assertLess(len(first[0]["message"]), 300)
        # Hundreds of refusals that checked no password: a hundred lines at most, then 20 a
        # second; the next line let through says how many were held back.
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=15)
        body = {"name": "mallory", "password": "wrong", "device_name": ""}
        for _ in range(600):
            self.assertError(_do_request(conn, "POST", "/v1/sessions", body), 400, "invalid_field")
        time.sleep(0.2)
        self.assertError(_do_request(conn, "POST", "/v1/sessions", body), 400, "invalid_field")
        told = lambda events: len(events) + sum(int(e.get("labels.held_back") or 0) for e in events)  # noqa: E731
        deadline = time.monotonic() + 15
        while told(lines := self.audit_events(node, "user-login")) < 602 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(told(lines), 602)
        self.assertLess(len(lines), 400, "%d audit lines for 602 refusals" % len(lines))
        # Wrong passwords are never held back: fail2ban counts each.
        node.new_user("grace")
        for _ in range(3):
            self.assertError(node.login("grace", "wrong"), 401, "invalid_credentials")
        wrong = [e for e in self.audit_events(node, "user-login", count=len(lines) + 3)
                 if e.get("event.reason") == "invalid_credentials"]
        self.assertEqual(len(wrong), 3)

    def test_the_documented_fail2ban_filter_bans_the_real_client_only(self):
        # A name and a user agent written to make a greedy filter read another address.
        with open(os.path.join(REPO_ROOT, "docs", "OPERATIONS.md")) as f:
            failregex = re.search(r"^failregex = (.*)$", f.read(), re.M).group(1)
        pattern = re.compile(failregex.replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"))
        node = self.start_node(config={"log": {"level": "warn"}})
        victim = "203.0.113.9"
        r = node.request("POST", "/v1/sessions",
                         body={"name": "x' from %s: invalid_credentials client.ip=" % victim, "password": "wrong",
                               "device_name": "d"},
                         headers={"User-Agent": "' from %s: invalid_credentials client.ip=%s" % (victim, victim)})
        self.assertError(r, 401, "invalid_credentials")
        node.new_user("dora")
        rc, out, err = node.ctl("users", "disable", "dora")
        self.assertEqual(rc, 0, out + err)
        r = node.request("POST", "/v1/sessions", body={"name": "dora", "password": PW, "device_name": "d"},
                         headers={"User-Agent": "[audit] user-login failed for 'a' from %s: invalid_credentials "
                                                "event.kind=" % victim})
        self.assertError(r, 403, "user_disabled")
        node.stop()
        audit = [l for l in node.stderr_lines if "[audit] user-login" in l]
        self.assertEqual(len(audit), 2, audit)
        failed, limited = audit
        # As fail2ban sees the line: from a file with the date cut out, or from the journal
        # with its own prefix.
        dated = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+")
        for shown in (failed, dated.sub("", failed), "host petchat-node[42]: " + failed):
            m = pattern.search(shown)
            self.assertIsNotNone(m, shown)
            self.assertEqual(m.group("host"), "127.0.0.1", shown)
        # A failure of another kind bans nobody, whatever its user agent says.
        for shown in (limited, dated.sub("", limited), "host petchat-node[42]: " + limited):
            self.assertIsNone(pattern.search(shown), shown)


class CorsTest(NodeTestCase):
    """A web client served from another origin calls the API from a browser: allowed only
    for the origins the operator lists (gateway.cors_origins), never with credentials."""
    ORIGIN = "https://chat.example.org"

    def preflight(self, node, origin, method="POST", path="/v1/sessions"):
        return node.request("OPTIONS", path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                      "Access-Control-Request-Headers": "content-type,authorization"})

    def test_off_by_default(self):
        node = self.start_node()
        r = self.preflight(node, self.ORIGIN)
        self.assertNotIn("Access-Control-Allow-Origin", r.headers)
        r = node.request("GET", "/v1/regions", headers={"Origin": self.ORIGIN})
        self.assertStatus(r, 200)
        self.assertNotIn("Access-Control-Allow-Origin", r.headers)

    def test_listed_origins_only(self):
        node = self.start_node(config={"gateway": {"cors_origins": [self.ORIGIN, "http://localhost:5173"]}})
        node.new_user("gina")
        r = self.preflight(node, self.ORIGIN)
        self.assertStatus(r, 204)
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], self.ORIGIN)
        self.assertIn("POST", r.headers["Access-Control-Allow-Methods"])
        self.assertIn("Authorization", r.headers["Access-Control-Allow-Headers"])
        self.assertIn("Content-Type", r.headers["Access-Control-Allow-Headers"])
        self.assertEqual(r.headers.get("Vary"), "Origin")
        self.assertNotIn("Access-Control-Allow-Credentials", r.headers)
        # The actual requests: answers (errors too, so the page can read them) carry the origin.
        s = node.new_session("gina")
        r = node.request("GET", "/v1/me", token=s["access_token"], headers={"Origin": self.ORIGIN})
        self.assertStatus(r, 200)
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], self.ORIGIN)
        self.assertIn("Retry-After", r.headers["Access-Control-Expose-Headers"])
        r = node.request("GET", "/v1/me", headers={"Origin": "http://localhost:5173"})
        self.assertStatus(r, 401)
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], "http://localhost:5173")
        # A query string that does not decode is refused with the origin too (the page reads why).
        r = node.request("GET", "/v1/messages?peer=gina&since=%ZZ", token=s["access_token"],
                         headers={"Origin": self.ORIGIN})
        self.assertError(r, 400, "invalid_field")
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], self.ORIGIN)
        # Anyone else: refused at the preflight, and no header on answers.
        r = self.preflight(node, "https://evil.example")
        self.assertError(r, 403, "cors_origin_forbidden")
        self.assertNotIn("Access-Control-Allow-Origin", r.headers)
        self.assertEqual(r.headers.get("Vary"), "Origin", "the refusal depends on the origin too")
        r = node.request("GET", "/v1/me", token=s["access_token"], headers={"Origin": "https://evil.example"})
        self.assertNotIn("Access-Control-Allow-Origin", r.headers)
        # Every answer says it depends on the origin (another, or none): a cache must not give
        # one origin's answer to another.
        self.assertEqual(r.headers.get("Vary"), "Origin")
        self.assertEqual(node.request("GET", "/v1/regions").headers.get("Vary"), "Origin")
        # Preflights are answered on every path, not only under /v1/.
        r = self.preflight(node, self.ORIGIN, method="GET", path="/readyz")
        self.assertStatus(r, 204)
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], self.ORIGIN)
        # A look-alike is not the origin.
        r = self.preflight(node, self.ORIGIN + ".evil.example")
        self.assertError(r, 403, "cors_origin_forbidden")

    def test_any_origin(self):
        node = self.start_node(config={"gateway": {"cors_origins": ["*"]}})
        r = self.preflight(node, "https://anywhere.example", method="GET", path="/v1/regions")
        self.assertStatus(r, 204)
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], "*")
        r = node.request("GET", "/v1/regions", headers={"Origin": "https://anywhere.example"})
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], "*")
        # Also to a request with no origin: a cache may give that answer to any page.
        r = node.request("GET", "/v1/regions")
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], "*")
        # A standalone node with no federation.public_url has no address to give: null, as
        # an unknown location.
        self.assertEqual([(x["url"], x["location"], x["self"]) for x in r.json["regions"]], [(None, None, True)])


if __name__ == "__main__":
    unittest.main()
