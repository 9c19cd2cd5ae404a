"""Sessions: log in, refresh rotation and reuse detection, log out, token checks, disabled
users, login rate limiting."""

import base64
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REGION, NodeTestCase  # noqa: E402

PW = "password123"

# A refresh token that belongs to a revoked session: the protocol lists both codes among
# the refresh errors; `session_revoked` is the precise one, `invalid_refresh_token` is what
# a node that deletes revoked sessions answers.
REVOKED_REFRESH_CODES = ("session_revoked", "invalid_refresh_token")


def tamper(token, pos):
    c = token[pos]
    repl = "A" if c != "A" else "B"
    return token[:pos] + repl + token[pos + 1:]


class SessionsTest(NodeTestCase):
    """Shared node; many free login attempts so that tests which fail logins on purpose do
    not lock each other out (the address counter is shared)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.node = cls.start_class_node(config={"users": {"login_free_attempts": 1000, "login_free_attempts_per_address": 100000}})

    def me(self, token):
        return self.node.request("GET", "/v1/me", token=token)

    def users_commits(self):
        """The account store's commits so far (petchat_store_commit_seconds_count)."""
        prefix = 'petchat_store_commit_seconds_count{store="users"}'
        lines = [x for x in self.node.scrape().raw.decode().splitlines() if x.startswith(prefix)]
        self.assertEqual(len(lines), 1, lines)
        return float(lines[0].rsplit(" ", 1)[1])

    def assertRefreshRefusedAsRevoked(self, resp):
        self.assertEqual(resp.status, 401, resp.describe())
        code = (resp.json or {}).get("error", {}).get("code")
        self.assertIn(code, REVOKED_REFRESH_CODES, resp.describe())
        self.assertError(resp, 401, code)

    def test_login_created(self):
        self.node.new_user("alice")
        r = self.node.login("alice", PW, "alice's phone")
        self.assertStatus(r, 201)
        b = r.json
        self.assertEqual(b["user_id"], "alice@" + REGION)
        for k in ("device_id", "access_token", "refresh_token"):
            self.assertIsInstance(b.get(k), str, k)
            self.assertTrue(b[k], k)
        self.assertNotEqual(b["access_token"], b["refresh_token"])
        self.assertEqual(b["access_token_expires_in_s"], 900)
        self.assertEqual(b["refresh_token_expires_in_s"], 2592000)
        self.assertStatus(self.me(b["access_token"]), 200)
        # A second login is a second device.
        b2 = self.node.new_session("alice", device="alice's laptop")
        self.assertNotEqual(b2["device_id"], b["device_id"])
        self.assertNotEqual(b2["access_token"], b["access_token"])
        r = self.me(b2["access_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["device_id"], b2["device_id"])
        self.assertEqual(r.json["device_name"], "alice's laptop")

    def test_login_with_full_id(self):
        self.node.new_user("fullid")
        r = self.node.login("fullid@" + REGION, PW)
        self.assertStatus(r, 201)
        self.assertEqual(r.json["user_id"], "fullid@" + REGION)

    def test_login_body_errors(self):
        self.node.new_user("bodyerr")
        r = self.node.request("POST", "/v1/sessions", raw_body=b"{nope")
        self.assertError(r, 400, "invalid_json")
        r = self.node.request("POST", "/v1/sessions", raw_body=b"[]")
        self.assertError(r, 400, "invalid_json")
        r = self.node.request("POST", "/v1/sessions", {"name": "bodyerr", "device_name": "d"})
        self.assertError(r, 400, "missing_field", field="password")
        r = self.node.request("POST", "/v1/sessions", {"password": PW, "device_name": "d"})
        self.assertError(r, 400, "missing_field", field="name")
        r = self.node.request("POST", "/v1/sessions", {"name": 5, "password": PW, "device_name": "d"})
        self.assertError(r, 400, "invalid_field", field="name")
        r = self.node.request("POST", "/v1/sessions", {"name": "bodyerr", "password": PW, "device_name": 3})
        self.assertError(r, 400, "invalid_field", field="device_name")
        r = self.node.request("POST", "/v1/sessions", {"name": "bodyerr", "password": PW, "device_name": ""})
        self.assertError(r, 400, "invalid_field", field="device_name")
        r = self.node.request("POST", "/v1/sessions", {"name": "bodyerr", "password": PW, "device_name": "d" * 65})
        self.assertError(r, 400, "invalid_field", field="device_name")

    def test_wrong_password(self):
        self.node.new_user("bob")
        r = self.node.login("bob", "wrong password")
        self.assertError(r, 401, "invalid_credentials")
        r = self.node.login("bob", PW.upper())
        self.assertError(r, 401, "invalid_credentials")

    def test_unknown_user(self):
        r = self.node.login("nosuchuser", PW)
        self.assertError(r, 401, "invalid_credentials")
        r = self.node.login("nosuchuser@" + REGION, PW)
        self.assertError(r, 401, "invalid_credentials")

    def test_refresh_rotates(self):
        self.node.new_user("carol")
        s1 = self.node.new_session("carol")
        r = self.node.refresh(s1["refresh_token"])
        self.assertStatus(r, 200)
        s2 = r.json
        self.assertEqual(s2["device_id"], s1["device_id"])
        self.assertEqual(s2["user_id"], "carol@" + REGION)
        self.assertNotEqual(s2["refresh_token"], s1["refresh_token"])
        self.assertIsInstance(s2["access_token"], str)
        self.assertEqual(s2["access_token_expires_in_s"], 900)
        self.assertEqual(s2["refresh_token_expires_in_s"], 2592000)
        # The new access token works; the old one keeps working until it expires.
        r = self.me(s2["access_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["device_id"], s1["device_id"])
        self.assertStatus(self.me(s1["access_token"]), 200)
        # The new refresh token rotates again.
        r = self.node.refresh(s2["refresh_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["device_id"], s1["device_id"])
        self.assertNotIn(r.json["refresh_token"], (s1["refresh_token"], s2["refresh_token"]))

    def test_refresh_reuse_revokes_device(self):
        self.node.new_user("dave")
        s1 = self.node.new_session("dave", device="phone")
        other = self.node.new_session("dave", device="laptop")
        r = self.node.refresh(s1["refresh_token"])
        self.assertStatus(r, 200)
        r = self.node.refresh(r.json["refresh_token"])  # its successor used: no retry any more
        self.assertStatus(r, 200)
        s2 = r.json
        self.assertStatus(self.me(s2["access_token"]), 200)

        # Replaying the retired refresh token: reuse detected, the device is revoked.
        r = self.node.refresh(s1["refresh_token"])
        self.assertError(r, 401, "refresh_token_reused")
        self.assertError(self.me(s2["access_token"]), 401, "session_revoked")
        self.assertError(self.me(s1["access_token"]), 401, "session_revoked")
        self.assertRefreshRefusedAsRevoked(self.node.refresh(s2["refresh_token"]))

        # A made-up secret for the revoked session's device tells nothing of it: as for a
        # device that never was.
        device = s2["refresh_token"].split(".")[1]
        made_up = "pr1.%s.%s" % (device, base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))
        self.assertError(self.node.refresh(made_up), 401, "invalid_refresh_token")

        # Only that device: the user's other device is unaffected.
        self.assertStatus(self.me(other["access_token"]), 200)
        self.assertStatus(self.node.refresh(other["refresh_token"]), 200)
        # And the user can log in again.
        self.node.new_session("dave")

    def test_a_refresh_whose_answer_was_lost_can_be_retried(self):
        """A dropped connection (or a node that crashed after its write) loses the answer to
        a refresh: the client only has the token it sent. That token once counted as reused,
        and the session was revoked: the user logged out by a bad network."""
        self.node.new_user("rhea")
        s1 = self.node.new_session("rhea", device="phone")
        lost = self.node.refresh(s1["refresh_token"])
        self.assertStatus(lost, 200)
        again = self.node.refresh(s1["refresh_token"])  # the answer never arrived: retried
        self.assertStatus(again, 200)
        self.assertEqual(again.json["device_id"], s1["device_id"])
        self.assertNotIn(again.json["refresh_token"], (s1["refresh_token"], lost.json["refresh_token"]))
        third = self.node.refresh(s1["refresh_token"])  # and once more
        self.assertStatus(third, 200)
        self.assertStatus(self.me(third.json["access_token"]), 200)
        # The new token in use, the one retried is an old one like any other.
        latest = self.node.refresh(third.json["refresh_token"])
        self.assertStatus(latest, 200)
        self.assertError(self.node.refresh(s1["refresh_token"]), 401, "refresh_token_reused")
        self.assertError(self.me(latest.json["access_token"]), 401, "session_revoked")

    def test_a_lost_refresh_is_retried_at_most_three_times(self):
        """Each retry retires a successor among the last 16 retired tokens: unbounded retries
        would push the successor a thief's retry replaced out of that list, and its owner's
        next refresh would no longer be recognised as reuse."""
        self.node.new_user("uma")
        s1 = self.node.new_session("uma", device="phone")
        first = self.node.refresh(s1["refresh_token"])
        self.assertStatus(first, 200)
        for _ in range(3):
            self.assertStatus(self.node.refresh(s1["refresh_token"]), 200)
        self.assertError(self.node.refresh(s1["refresh_token"]), 401, "refresh_token_reused")
        self.assertRefreshRefusedAsRevoked(self.node.refresh(first.json["refresh_token"]))

    def test_a_successor_replaced_by_a_retry_counts_as_reused(self):
        """Whoever replays a refresh token during its retry grace gets a session, but the
        holder of the successor it replaced revokes it with their next refresh."""
        self.node.new_user("theo")
        s1 = self.node.new_session("theo", device="phone")
        legit = self.node.refresh(s1["refresh_token"])
        self.assertStatus(legit, 200)
        thief = self.node.refresh(s1["refresh_token"])
        self.assertStatus(thief, 200)
        self.assertError(self.node.refresh(legit.json["refresh_token"]), 401, "refresh_token_reused")
        self.assertError(self.me(thief.json["access_token"]), 401, "session_revoked")
        self.assertRefreshRefusedAsRevoked(self.node.refresh(thief.json["refresh_token"]))

    def test_refresh_reuse_of_an_older_generation(self):
        # A token stolen several rotations ago is still recognised when replayed.
        self.node.new_user("olga")
        s1 = self.node.new_session("olga", device="phone")
        tokens = [s1["refresh_token"]]
        for _ in range(3):
            r = self.node.refresh(tokens[-1])
            self.assertStatus(r, 200)
            tokens.append(r.json["refresh_token"])
        latest = self.node.refresh(tokens[-1])
        self.assertStatus(latest, 200)
        self.assertError(self.node.refresh(tokens[0]), 401, "refresh_token_reused")
        self.assertError(self.me(latest.json["access_token"]), 401, "session_revoked")

    def test_refresh_errors(self):
        r = self.node.refresh("not-a-refresh-token")
        self.assertError(r, 401, "invalid_refresh_token")
        r = self.node.refresh("")
        self.assertError(r, 401, "invalid_refresh_token")
        r = self.node.request("POST", "/v1/sessions/refresh", {})
        self.assertError(r, 400, "missing_field", field="refresh_token")
        r = self.node.request("POST", "/v1/sessions/refresh", {"refresh_token": 17})
        self.assertError(r, 400, "invalid_field", field="refresh_token")
        r = self.node.request("POST", "/v1/sessions/refresh", raw_body=b"nope")
        self.assertError(r, 400, "invalid_json")
        # An access token is not a refresh token.
        self.node.new_user("mixup")
        s = self.node.new_session("mixup")
        r = self.node.refresh(s["access_token"])
        self.assertError(r, 401, "invalid_refresh_token")
        # A tampered refresh token is refused and does not count as reuse.
        r = self.node.refresh(tamper(s["refresh_token"], len(s["refresh_token"]) // 2))
        self.assertError(r, 401, "invalid_refresh_token")
        self.assertStatus(self.me(s["access_token"]), 200)
        self.assertStatus(self.node.refresh(s["refresh_token"]), 200)

    def test_logout(self):
        self.node.new_user("erin")
        s = self.node.new_session("erin")
        other = self.node.new_session("erin", device="other")
        r = self.node.request("DELETE", "/v1/sessions/current", token=s["access_token"])
        self.assertEqual(r.status, 204, r.describe())
        self.assertEqual(r.raw, b"")
        self.assertError(self.me(s["access_token"]), 401, "session_revoked")
        self.assertRefreshRefusedAsRevoked(self.node.refresh(s["refresh_token"]))
        r = self.node.request("DELETE", "/v1/sessions/current", token=s["access_token"])
        self.assertError(r, 401, "session_revoked")
        # Other devices stay logged in.
        self.assertStatus(self.me(other["access_token"]), 200)

    def test_a_user_lists_and_ends_their_own_devices(self):
        self.node.new_user("fern")
        self.node.new_user("gus")
        phone = self.node.new_session("fern", device="fern's phone")
        laptop = self.node.new_session("fern", device="fern's laptop")
        gone = self.node.new_session("fern", device="logged out")
        self.assertStatus(self.node.request("DELETE", "/v1/sessions/current", token=gone["access_token"]), 204)
        gus = self.node.new_session("gus")
        r = self.node.request("GET", "/v1/sessions", token=phone["access_token"])
        self.assertStatus(r, 200)
        listed = {s["device_id"]: s for s in r.json["sessions"]}
        self.assertEqual(set(listed), {phone["device_id"], laptop["device_id"]},
                         "the caller's sessions that are not revoked, no one else's")
        self.assertEqual(listed[phone["device_id"]]["device_name"], "fern's phone")
        self.assertTrue(listed[phone["device_id"]]["current"])
        self.assertFalse(listed[laptop["device_id"]]["current"])
        for field in ("created_at", "last_refreshed_at"):
            self.assertRegex(listed[laptop["device_id"]][field], r"^\d{4}-\d\d-\d\dT")
        # Another user's device cannot be ended, nor told apart from none.
        for device in (gus["device_id"], "no-such-device", "x" * 200):
            with self.subTest(device=device):
                self.assertError(self.node.request("DELETE", "/v1/sessions/" + device, token=phone["access_token"]),
                                 404, "session_not_found")
        self.assertStatus(self.me(gus["access_token"]), 200)
        # The phone ends the laptop: its tokens stop working, the phone's do not.
        r = self.node.request("DELETE", "/v1/sessions/" + laptop["device_id"], token=phone["access_token"])
        self.assertEqual(r.status, 204, r.describe())
        self.assertError(self.me(laptop["access_token"]), 401, "session_revoked")
        self.assertRefreshRefusedAsRevoked(self.node.refresh(laptop["refresh_token"]))
        self.assertStatus(self.me(phone["access_token"]), 200)
        r = self.node.request("GET", "/v1/sessions", token=phone["access_token"])
        self.assertEqual([s["device_id"] for s in r.json["sessions"]], [phone["device_id"]])
        commits = self.users_commits()
        self.assertStatus(self.node.request("DELETE", "/v1/sessions/" + laptop["device_id"],
                                            token=phone["access_token"]), 204, "ending an ended device succeeds")
        self.assertEqual(self.users_commits(), commits, "and writes nothing again")
        self.assertError(self.node.request("GET", "/v1/sessions"), 401, "missing_token")
        self.assertError(self.node.request("PUT", "/v1/sessions/" + phone["device_id"], token=phone["access_token"]),
                         405, "method_not_allowed")

    def test_a_user_changes_their_password_and_their_other_devices_are_logged_out(self):
        self.node.new_user("hank")
        phone = self.node.new_session("hank", device="hank's phone")
        laptop = self.node.new_session("hank", device="hank's laptop (stolen)")
        change = lambda session, body: self.node.request("POST", "/v1/me/password", body,
                                                         token=session["access_token"])
        fresh = "a new password 456"
        # Wrong, weak or missing: nothing changes.
        # 403, not 401: the session's tokens are good (a client refreshing on a 401 must
        # not end up logging the user out over a typo).
        self.assertError(change(phone, {"current_password": "not it", "new_password": fresh}), 403,
                         "wrong_password", field="current_password")
        self.assertError(change(phone, {"current_password": PW, "new_password": "short"}), 400,
                         "weak_password", field="new_password")
        self.assertError(change(phone, {"new_password": fresh}), 400, "missing_field", field="current_password")
        self.assertError(self.node.request("POST", "/v1/me/password", {"current_password": PW, "new_password": fresh}),
                         401, "missing_token")
        self.assertError(self.node.request("GET", "/v1/me/password", token=phone["access_token"]), 405,
                         "method_not_allowed")
        self.assertStatus(self.me(laptop["access_token"]), 200)
        self.assertStatus(self.node.login("hank", PW), 201)
        # Changed: the old password no longer logs in, the new one does; the other devices
        # (the one logged in with the old password too) are out, the phone stays.
        r = change(phone, {"current_password": PW, "new_password": fresh})
        self.assertEqual(r.status, 200, r.describe())
        self.assertIsInstance(r.json.get("device_token"), str, r.describe())
        self.assertTrue(r.json["device_token"])
        self.assertError(self.me(laptop["access_token"]), 401, "session_revoked")
        self.assertRefreshRefusedAsRevoked(self.node.refresh(laptop["refresh_token"]))
        self.assertStatus(self.me(phone["access_token"]), 200)
        self.assertStatus(self.node.refresh(phone["refresh_token"]), 200)
        self.assertError(self.node.login("hank", PW), 401, "invalid_credentials")
        self.assertStatus(self.node.login("hank", fresh), 201)
        # A revoked session cannot change it back.
        self.assertError(change(laptop, {"current_password": fresh, "new_password": PW}), 401, "session_revoked")
        self.assertError(self.node.login("hank", PW), 401, "invalid_credentials")

    def test_a_user_ends_every_other_device(self):
        self.node.new_user("iris")
        self.node.new_user("jack")
        phone = self.node.new_session("iris", device="iris's phone")
        others = [self.node.new_session("iris", device="device %d" % i) for i in range(3)]
        jack = self.node.new_session("jack")
        self.assertStatus(self.node.request("DELETE", "/v1/sessions/current", token=others[2]["access_token"]), 204)
        r = self.node.request("DELETE", "/v1/sessions/others", token=phone["access_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json, {"ended": 2}, "the two live ones; the logged-out one was ended already")
        for other in others:
            self.assertError(self.me(other["access_token"]), 401, "session_revoked")
        self.assertStatus(self.me(phone["access_token"]), 200)
        self.assertStatus(self.me(jack["access_token"]), 200, "another user's devices are not touched")
        r = self.node.request("GET", "/v1/sessions", token=phone["access_token"])
        self.assertEqual([s["device_id"] for s in r.json["sessions"]], [phone["device_id"]])
        r = self.node.request("DELETE", "/v1/sessions/others", token=phone["access_token"])
        self.assertEqual(r.json, {"ended": 0}, r.describe())
        self.assertError(self.node.request("DELETE", "/v1/sessions/others", token=others[0]["access_token"]), 401,
                         "session_revoked")
        self.assertError(self.node.request("GET", "/v1/sessions/others", token=phone["access_token"]), 405,
                         "method_not_allowed")

    def test_logout_requires_token(self):
        r = self.node.request("DELETE", "/v1/sessions/current")
        self.assertError(r, 401, "missing_token")

    def test_tampered_token(self):
        self.node.new_user("frank")
        s = self.node.new_session("frank")
        tok = s["access_token"]
        self.assertStatus(self.me(tok), 200)
        for pos in (len(tok) // 2, len(tok) // 4, (3 * len(tok)) // 4):
            with self.subTest(pos=pos):
                bad = tamper(tok, pos)
                self.assertNotEqual(bad, tok)
                self.assertError(self.me(bad), 401, "invalid_token")
        # Truncated and extended tokens are refused too.
        self.assertError(self.me(tok[:-4]), 401, "invalid_token")
        self.assertError(self.me(tok + "AAAA"), 401, "invalid_token")
        # The genuine token is unaffected.
        self.assertStatus(self.me(tok), 200)

    def test_garbage_token(self):
        for tok in ("garbage", "x" * 300, "....", "a.b.c"):
            with self.subTest(tok=tok):
                self.assertError(self.me(tok), 401, "invalid_token")
        r = self.node.request("GET", "/v1/users/whoever", token="garbage")
        self.assertError(r, 401, "invalid_token")

    def test_disabled_user(self):
        self.node.new_user("gina")
        s = self.node.new_session("gina")
        self.assertStatus(self.me(s["access_token"]), 200)

        r = self.node.admin("POST", "/v1/admin/users/gina/disable")
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("name"), "gina")
        self.assertIs(r.json.get("disabled"), True)

        # Refused at once, on every authenticated endpoint.
        self.assertError(self.me(s["access_token"]), 403, "user_disabled")
        r = self.node.request("GET", "/v1/users/gina", token=s["access_token"])
        self.assertError(r, 403, "user_disabled")
        self.assertError(self.node.login("gina", PW), 403, "user_disabled")
        # user_disabled only after a correct password.
        self.assertError(self.node.login("gina", "wrong password"), 401, "invalid_credentials")
        self.assertError(self.node.refresh(s["refresh_token"]), 403, "user_disabled")

        r = self.node.admin("POST", "/v1/admin/users/gina/enable")
        self.assertStatus(r, 200)
        self.assertIs(r.json.get("disabled"), False)
        s2 = self.node.new_session("gina")
        self.assertStatus(self.me(s2["access_token"]), 200)

    def test_disable_unknown_user(self):
        r = self.node.admin("POST", "/v1/admin/users/nobodyhere/disable")
        self.assertError(r, 404, "user_not_found")


class TokenExpiryTest(NodeTestCase):

    def test_expired_access_token(self):
        node = self.start_node(config={"users": {"access_token_ttl_s": 1}})
        node.new_user("henry")
        s = node.new_session("henry")
        self.assertEqual(s["access_token_expires_in_s"], 1)
        time.sleep(2.5)
        r = node.request("GET", "/v1/me", token=s["access_token"])
        self.assertError(r, 401, "token_expired")
        # Refreshing still works after the access token expired.
        r = node.refresh(s["refresh_token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["device_id"], s["device_id"])
        self.assertEqual(r.json["access_token_expires_in_s"], 1)

    def test_an_access_token_does_not_outlive_its_session(self):
        """An access token lives no longer than its session's refresh token, whatever the
        configured lifetimes: the session is over, on REST as on the live stream."""
        node = self.start_node(config={"users": {"access_token_ttl_s": 3600, "refresh_token_ttl_s": 60}})
        node.new_user("hal")
        s = node.new_session("hal")
        self.assertStatus(node.request("GET", "/v1/me", token=s["access_token"]), 200)
        other = node.new_session("hal")
        # 61 s later both refresh tokens have run out (nothing refreshed them).
        time.sleep(61.5)
        self.assertError(node.request("GET", "/v1/me", token=s["access_token"]), 401, "session_revoked")
        self.assertError(node.request("GET", "/v1/sessions", token=other["access_token"]), 401, "session_revoked")
        self.assertError(node.refresh(s["refresh_token"]), 401, "invalid_refresh_token")

    def test_the_retry_grace_of_a_refresh_ends(self):
        node = self.start_node(config={"users": {"refresh_retry_grace_s": 1}})
        node.new_user("ida")
        s = node.new_session("ida")
        self.assertStatus(node.refresh(s["refresh_token"]), 200)
        time.sleep(1.5)
        self.assertError(node.refresh(s["refresh_token"]), 401, "refresh_token_reused")

    def test_no_retry_grace(self):
        node = self.start_node(config={"users": {"refresh_retry_grace_s": 0}})
        node.new_user("jon")
        s = node.new_session("jon")
        self.assertStatus(node.refresh(s["refresh_token"]), 200)
        self.assertError(node.refresh(s["refresh_token"]), 401, "refresh_token_reused")


class RateLimitTest(NodeTestCase):
    CONFIG = {"users": {"login_free_attempts": 3, "login_free_attempts_per_address": 3,
                        "login_backoff_initial_ms": 2000}}

    def assertRateLimited(self, resp, lo, hi):
        err = self.assertError(resp, 429, "rate_limited")
        retry = err.get("retry_after_s")
        self.assertIsInstance(retry, int, resp.describe())
        self.assertGreaterEqual(retry, lo, resp.describe())
        self.assertLessEqual(retry, hi, resp.describe())
        header = resp.headers.get("Retry-After")
        self.assertIsNotNone(header, "no Retry-After header")
        self.assertRegex(header.strip(), r"^\d+$")
        self.assertEqual(int(header), retry)
        return retry

    def test_per_account(self):
        node = self.start_node(config=self.CONFIG)
        node.new_user("ivan")
        for i in range(3):
            self.assertError(node.login("ivan", "wrong password"), 401, "invalid_credentials", msg="free #%d" % i)
        # The 4th failure is still answered, and starts a 2 s lock.
        self.assertError(node.login("ivan", "wrong password"), 401, "invalid_credentials")
        # Locked: even the right password is refused.
        retry = self.assertRateLimited(node.login("ivan", PW), 1, 2)
        time.sleep(retry + 0.3)

        # Lock over. A further failure doubles the back-off (4 s).
        self.assertError(node.login("ivan", "wrong password"), 401, "invalid_credentials")
        retry = self.assertRateLimited(node.login("ivan", PW), 3, 4)
        time.sleep(retry + 0.3)

        # The right password works, and clears the counters (the address's too: every failure
        # from it was at ivan's account): 3 free failures again.
        node.new_session("ivan")
        for i in range(3):
            self.assertError(node.login("ivan", "wrong password"), 401, "invalid_credentials", msg="free #%d" % i)
        node.new_session("ivan")

    def test_wrong_current_passwords_back_off_on_a_count_of_their_own(self):
        """A stolen session guessing at the password to change it waits as failed logins do;
        the account's logins are not locked by it."""
        node = self.start_node(config=self.CONFIG)
        node.new_user("judy")
        s = node.new_session("judy")
        guess = {"current_password": "a guess", "new_password": "a new password 456"}
        change = lambda body: node.request("POST", "/v1/me/password", body, token=s["access_token"])
        for i in range(4):
            self.assertError(change(guess), 403, "wrong_password", msg="guess #%d" % i)
        retry = self.assertRateLimited(change({"current_password": PW, "new_password": "a new password 456"}), 1, 2)
        self.assertStatus(node.login("judy", PW), 201, "the account's logins go on")
        time.sleep(retry + 0.3)
        self.assertStatus(change({"current_password": PW, "new_password": "a new password 456"}), 200)
        self.assertStatus(node.login("judy", "a new password 456"), 201)

    def test_concurrent_guesses_are_limited_too(self):
        # A burst of parallel guesses must not all be tried while the first ones hash.
        node = self.start_node(config=self.CONFIG)
        node.new_user("kurt")
        results = []
        lock = threading.Lock()

        def guess(i):
            r = node.login("kurt", "wrong password %d" % i)
            with lock:
                results.append(r.status)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 20)
        self.assertEqual(set(results) - {401, 429}, set(), results)
        # 3 free attempts plus the one that starts the lock; at most one more per I/O
        # thread can slip between the check and the count.
        self.assertLessEqual(results.count(401), 6, results)
        self.assertGreaterEqual(results.count(429), 14, results)

    def test_concurrent_guesses_at_the_current_password_are_limited_too(self):
        # The same for a stolen session guessing at the password to change it.
        node = self.start_node(config=self.CONFIG)
        node.new_user("lena")
        s = node.new_session("lena")
        results = []
        lock = threading.Lock()

        def guess(i):
            r = node.request("POST", "/v1/me/password", {"current_password": "guess %d" % i,
                                                          "new_password": "a new password 456"},
                             token=s["access_token"])
            with lock:
                results.append(r.status)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(set(results) - {403, 429}, set(), results)
        self.assertLessEqual(results.count(403), 6, results)
        self.assertGreaterEqual(results.count(429), 14, results)

    def test_per_address_across_accounts(self):
        node = self.start_node(config=self.CONFIG)
        node.new_user("judy")
        # Four failures from this address, each on a different (unknown) account.
        for i in range(4):
            self.assertError(node.login("ghost%d" % i, "wrong password"), 401, "invalid_credentials")
        # The address is locked: even a correct login for an account that has no failures
        # of its own is refused.
        retry = self.assertRateLimited(node.login("judy", PW), 1, 2)
        time.sleep(retry + 0.3)
        node.new_session("judy")
        # Judy's success takes off only her own failures from here (none): the guesses at
        # other accounts still count, so the next one locks the address again, for longer.
        self.assertError(node.login("phantom0", "wrong password"), 401, "invalid_credentials")
        self.assertRateLimited(node.login("judy", PW), 3, 4)

    def test_free_attempts_do_not_lock(self):
        # Failures up to the free allowance lock nobody.
        node = self.start_node(config=self.CONFIG)
        node.new_user("kate")
        node.new_user("leo")
        for _ in range(3):
            self.assertError(node.login("kate", "wrong password"), 401, "invalid_credentials")
        node.new_session("leo")
        node.new_session("kate")


if __name__ == "__main__":
    unittest.main()
