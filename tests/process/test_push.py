"""Push notifications, the API (docs/PROTOCOL.md, "Push notifications"): the VAPID key,
registering, listing and deleting push targets of the three kinds, which endpoints are
allowed, and the device's settings. What ends a device's targets and the operator's view
(admin API, petchatctl, metrics) are in test_push_admin.py; delivery in
test_push_delivery.py and test_push_reliability.py; across regions in
test_push_federation.py.

Written from the protocol document only. Every test starts its own node with a [push]
section that trusts the test CA (pushrecv.py) and, unless the test is about the endpoint
rules, allow-lists 127.0.0.0/8 so that the receivers on loopback can be used. Nothing is
timed: what the node does in the background is waited for with generous deadlines, and
"nothing arrives" is watched for a few seconds after something else proves the node has
done its work.

PushCase (the helpers) is shared with the other push test files.
"""

import json
import os
import re
import socket
import stat
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pushrecv  # noqa: E402
from pushrecv import PushReceiver, Subscription, b64url, unb64url  # noqa: E402
from harness import NodeStartError, toml_text  # noqa: E402
from test_messaging import MessagingCase, rfc3339  # noqa: E402
from wsclient import num  # noqa: E402

WAIT_S = 20.0  # for anything the node does by itself (a push, a removal)
QUIET_S = 2.5  # how long "no push arrives" is watched, once the node has shown it is working
SUBJECT = "mailto:push-tests@example.org"
TTL_S = 3600
ID_RE = r"^[A-Za-z0-9_-]+$"


def push_config(**over):
    """A [push] section for tests: loopback allowed, the test CA trusted, short timings."""
    cfg = {"enabled": True, "allow_networks": ["127.0.0.0/8"], "ca_file": pushrecv.ca_file(),
           "coalesce_ms": 1500, "live_delay_ms": 500, "retry_initial_ms": 200, "retry_max_ms": 1000,
           "ttl_s": TTL_S, "vapid_subject": SUBJECT, "connect_timeout_ms": 3000, "response_timeout_ms": 5000,
           "registrations_per_minute": 10000}
    cfg.update(over)
    return {k: v for k, v in cfg.items() if v is not None}


def parse_metrics(text):
    """Prometheus text -> [(name, {label: value}, float)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(3))))
        except ValueError:
            pass
    return out


class PushCase(MessagingCase):
    """MessagingCase (people, live streams) plus the push API and what receivers got."""

    NODE_CONFIG = None  # each test starts its own node with start()

    def start(self, push=None, **sections):
        """Starts this test's node (self.node) with push_config(**push) and other sections."""
        cfg = {"push": push_config(**(push or {})), "messages": {"max_per_second": 5000}}
        for k, v in sections.items():
            cfg.setdefault(k, {}).update(v)
        self.node = self.start_node(config=cfg)
        return self.node

    def receiver(self):
        r = PushReceiver()
        self.addCleanup(r.close)
        return r

    @staticmethod
    def tok(session):
        if session is None or isinstance(session, str):
            return session
        return session["access_token"]

    def call(self, method, path, session=None, body=None, raw=None, node=None):
        return (node or self.node).request(method, path, body=body, token=self.tok(session), raw_body=raw)

    # -- the API ----------------------------------------------------------------------------

    def vapid_key(self, node=None):
        r = self.call("GET", "/v1/push/vapid", node=node)
        self.assertStatus(r, 200, "GET /v1/push/vapid")
        key = r.json.get("public_key")
        self.assertIsInstance(key, str, r.describe())
        self.assertNotIn("=", key, "base64url without padding: %r" % key)
        raw = unb64url(key)
        self.assertEqual(len(raw), 65, "an uncompressed P-256 point is 65 bytes: %r" % key)
        self.assertEqual(raw[0], 4, "an uncompressed point starts with 0x04")
        pushrecv.public_key_of(raw)  # raises if it is not a point of the curve
        return key

    def add_target(self, session, body, node=None):
        return self.call("POST", "/v1/push/targets", session, body, node=node)

    def webpush(self, session, recv, path=None, kind="webpush", sub=None, node=None, host=None):
        """Registers a Web Push (or UnifiedPush) target at recv.url(path, host); returns
        (target, subscription, path)."""
        path = path or "/wp/%s" % os.urandom(6).hex()
        sub = sub or Subscription()
        endpoint = recv.url(path, host=host)
        r = self.add_target(session, {"kind": kind, "endpoint": endpoint, "keys": sub.keys()}, node)
        self.assertStatus(r, 201, "register a %s target at %s" % (kind, endpoint))
        self.assertTarget(r.json, kind, session, endpoint=endpoint)
        return r.json, sub, path

    def matrix(self, session, recv, path=None, app_id="org.example.app", pushkey=None, data=None, node=None):
        """Registers a Matrix gateway target; returns (target, pushkey, path)."""
        path = path or "/gw/%s/_matrix/push/v1/notify" % os.urandom(6).hex()
        pushkey = pushkey or "pk-" + os.urandom(12).hex()
        body = {"kind": "matrix", "gateway_url": recv.url(path), "app_id": app_id, "pushkey": pushkey}
        if data is not None:
            body["data"] = data
        r = self.add_target(session, body, node)
        self.assertStatus(r, 201, "register a matrix target at %s" % body["gateway_url"])
        self.assertTarget(r.json, "matrix", session, gateway_url=body["gateway_url"], app_id=app_id,
                          pushkey=pushkey)
        return r.json, pushkey, path

    def targets(self, session, node=None):
        r = self.call("GET", "/v1/push/targets", session, node=node)
        self.assertStatus(r, 200, "GET /v1/push/targets")
        self.assertIsInstance(r.json.get("targets"), list, r.describe())
        return r.json["targets"]

    def put_settings(self, session, previews=False, dnd=None, node=None):
        return self.call("PUT", "/v1/push/settings", session, {"previews": previews, "dnd": dnd}, node=node)

    def admin_push(self, node=None):
        r = (node or self.node).admin("GET", "/v1/admin/push")
        self.assertStatus(r, 200, "GET /v1/admin/push")
        return r.json

    def admin_targets(self, name, node=None):
        r = (node or self.node).admin("GET", "/v1/admin/push/targets?user=" + urllib.parse.quote(name))
        self.assertStatus(r, 200, "GET /v1/admin/push/targets?user=%s" % name)
        self.assertIsInstance(r.json.get("targets"), list, r.describe())
        return r.json["targets"]

    def metric(self, name, node=None, **labels):
        r = (node or self.node).scrape()
        self.assertStatus(r, 200, "GET /metrics")
        return sum(v for n, lab, v in parse_metrics(r.raw.decode("utf-8", "replace"))
                   if n == name and all(lab.get(k) == str(x) for k, x in labels.items()))

    def wait_until(self, cond, what, timeout=WAIT_S):
        """Polls cond() until it returns something true; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("%s: not within %.0f s" % (what, timeout))
            time.sleep(0.1)

    def wait_metric(self, name, at_least, node=None, **labels):
        return self.wait_until(lambda: self.metric(name, node, **labels) >= at_least,
                               "%s%s reaching %s (now %s)" % (name, labels, at_least,
                                                              self.metric(name, node, **labels)))

    def wait_target_gone(self, session, target_id, node=None):
        self.wait_until(lambda: target_id not in [t.get("id") for t in self.targets(session, node)],
                        "target %s removed" % target_id)

    # -- what the receivers got ----------------------------------------------------------------

    def open_webpush(self, req, sub, vapid_key, recv, secrets=()):
        """Checks an RFC 8030 push request (headers, VAPID, RFC 8291) and returns the
        notification (dict). recv: the receiver, or the endpoint's origin (VAPID's aud).
        `secrets`: texts that must appear nowhere in clear."""
        origin = recv if isinstance(recv, str) else recv.origin
        self.assertEqual(req.method, "POST", req)
        h = req.headers
        self.assertEqual(h.get("content-encoding"), "aes128gcm", h)
        self.assertEqual((h.get("content-type") or "").split(";")[0].strip(), "application/octet-stream", h)
        self.assertEqual(h.get("ttl"), str(TTL_S), "TTL is push.ttl_s: %s" % h)
        self.assertEqual((h.get("urgency") or "").lower(), "high", h)
        self.assertEqual(h.get("topic"), "petchat", h)
        _, claims = pushrecv.check_vapid(h.get("authorization"), vapid_key, origin, expected_sub=SUBJECT)
        self.assertLessEqual(claims["exp"], time.time() + 12 * 3600 + 120, "exp is 12 hours ahead at most")
        plain, info = sub.decrypt(req.body)
        self.assertEqual(info["rs"], 4096, "record size 4096")
        self.assertEqual(info["records"], 1, "one record")
        for s in secrets:
            raw = s.encode("utf-8")
            self.assertNotIn(raw, req.body, "the text in clear in the push body")
            self.assertFalse(any(s in v for v in h.values()), "the text in a push header")
        n = json.loads(plain.decode("utf-8"))
        self.assertIsInstance(n, dict, plain)
        return n

    def assertNotification(self, n, user, sender, acc, count=None):
        """The facts of a notification (docs: "The notification") about `acc`, the newest
        message it covers."""
        self.assertEqual(n.get("v"), 1, n)
        self.assertEqual(n.get("type"), "messages", n)
        self.assertEqual(n.get("user_id"), user, n)
        self.assertEqual(n.get("sender_id"), sender, n)
        self.assertEqual(n.get("message_id"), acc["message_id"], n)
        self.assertEqual(n.get("conversation_id"), acc["conversation_id"], n)
        self.assertEqual(n.get("sent_at"), rfc3339(num(acc, "sent_at_ms")), n)
        self.assertIsInstance(n.get("seq"), str, "seq is a string of digits: %s" % n)
        self.assertTrue(n["seq"].isdigit() and int(n["seq"]) > 0, n)
        for k in ("count", "unread"):
            self.assertIsInstance(n.get(k), int, "%s is an integer: %s" % (k, n))
            self.assertNotIsInstance(n.get(k), bool, n)
        self.assertTrue(1 <= n["count"] <= 100, n)
        self.assertGreaterEqual(n["unread"], n["count"], "nothing was read: %s" % n)
        if count is not None:
            self.assertEqual(n["count"], count, n)

    def assertTarget(self, t, kind, session, **fields):
        self.assertIsInstance(t, dict)
        self.assertIsInstance(t.get("id"), str, t)
        self.assertRegex(t["id"], ID_RE, "a target's id is base64url: %s" % t)
        self.assertEqual(t.get("kind"), kind, t)
        self.assertEqual(t.get("device_id"), session["device_id"], t)
        self.assertTimestamp(t.get("created_at"), "created_at")
        for k, v in fields.items():
            self.assertEqual(t.get(k), v, "%s of %s" % (k, t))
        self.assertNotIn("keys", t, "keys are never shown: %s" % t)
        if kind == "matrix":
            self.assertNotIn("endpoint", t, t)

    def assertOneOf(self, resp, status, codes, msg=None):
        """An error whose code is one of `codes` (where the document allows either)."""
        code = ((resp.json or {}).get("error") or {}).get("code")
        self.assertIn(code, codes, "%s%s" % (resp.describe(), (": " + msg) if msg else ""))
        return self.assertError(resp, status, code, msg=msg)


# =========================================================================================


class VapidKeyTest(PushCase):

    def test_key_is_published_kept_in_the_data_dir_and_survives_restarts(self):
        node = self.start()
        r = node.request("GET", "/v1/push/vapid")  # no token needed
        self.assertStatus(r, 200)
        key = self.vapid_key()
        path = os.path.join(node.data_dir, "vapid.pem")
        self.assertTrue(os.path.isfile(path), "the key pair is kept in <data_dir>/vapid.pem")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, "vapid.pem is 0600")
        node.restart()
        self.assertEqual(self.vapid_key(), key, "the same key after a restart")
        node.kill9()
        node.start()
        self.assertEqual(self.vapid_key(), key, "the same key after kill -9")
        other = self.start_node(config={"push": push_config()})
        self.assertNotEqual(self.vapid_key(node=other), key, "each node makes its own key pair")
        # A key others can read is refused, not used (whoever reads it can push in its name).
        node.stop()
        os.chmod(path, 0o644)
        with self.assertRaises(NodeStartError):
            node.start()
        node.proc.wait(10)
        self.assertEqual(node.proc.returncode, 2, "an operator must act: exit 2, which systemd does not restart")
        self.assertIn("chmod 600", "\n".join(node.stdout_lines[-20:] + node.stderr_lines[-20:]))
        os.chmod(path, 0o600)
        node.start()
        self.assertEqual(self.vapid_key(node=node), key, "the same key once it is private again")


class TargetsTest(PushCase):

    def test_register_list_and_delete_each_kind(self):
        self.start()
        recv = self.receiver()
        bob = self.person("bob")
        s = bob.login("phone")
        self.assertEqual(self.targets(s), [], "a new device has no targets")
        wp, _, _ = self.webpush(s, recv, kind="webpush")
        up, _, _ = self.webpush(s, recv, kind="unifiedpush")
        mx, _, _ = self.matrix(s, recv, data={"format": "event_id_only"})
        self.assertEqual(len({wp["id"], up["id"], mx["id"]}), 3, "three targets, three ids")
        listed = {t["id"]: t for t in self.targets(s)}
        self.assertEqual(set(listed), {wp["id"], up["id"], mx["id"]})
        for t in (wp, up, mx):
            self.assertTarget(listed[t["id"]], t["kind"], s)
            for k in ("endpoint", "gateway_url", "app_id", "pushkey", "created_at"):
                self.assertEqual(listed[t["id"]].get(k), t.get(k), "%s as registered" % k)
        r = self.call("DELETE", "/v1/push/targets/" + up["id"], s)
        self.assertStatus(r, 204)
        self.assertEqual({t["id"] for t in self.targets(s)}, {wp["id"], mx["id"]})
        self.assertError(self.call("DELETE", "/v1/push/targets/" + up["id"], s), 404, "push_target_not_found")
        self.assertError(self.call("DELETE", "/v1/push/targets/AAAAAAAAAAAAAAAAAAAAAA", s), 404,
                         "push_target_not_found")
        self.assertEqual(self.admin_push()["targets"], 2, "the admin API counts the targets registered")

    def test_the_same_endpoint_or_pushkey_replaces_the_target_and_keeps_its_id(self):
        self.start()
        recv = self.receiver()
        s = self.person("bob").login("phone")
        first, _, path = self.webpush(s, recv)
        again, _, _ = self.webpush(s, recv, path=path, sub=Subscription())  # new keys, same endpoint
        self.assertEqual(again["id"], first["id"], "re-registering an endpoint keeps the target's id")
        mx, pushkey, gw = self.matrix(s, recv, data={"format": "event_id_only"})
        mx2, _, _ = self.matrix(s, recv, path=gw, pushkey=pushkey, data={"n": 2})
        self.assertEqual(mx2["id"], mx["id"], "the same app_id and pushkey keep the target's id")
        other, _, _ = self.matrix(s, recv, path=gw, pushkey=pushkey, app_id="org.example.other")
        self.assertNotEqual(other["id"], mx["id"], "another app_id is another target")
        self.assertEqual(len(self.targets(s)), 3)

    def test_targets_belong_to_the_device(self):
        self.start()
        recv = self.receiver()
        bob = self.person("bob")
        phone, laptop = bob.login("phone"), bob.login("laptop")
        t, _, _ = self.webpush(phone, recv)
        self.assertEqual(self.targets(laptop), [], "another device of the user sees none of them")
        self.assertError(self.call("DELETE", "/v1/push/targets/" + t["id"], laptop), 404, "push_target_not_found")
        carol = self.person("carol").login("phone")
        self.assertError(self.call("DELETE", "/v1/push/targets/" + t["id"], carol), 404, "push_target_not_found")
        self.assertEqual([x["id"] for x in self.targets(phone)], [t["id"]], "still there")

    def test_too_many_targets_per_device(self):
        self.start(push={"max_targets_per_device": 2})
        recv = self.receiver()
        bob = self.person("bob")
        s = bob.login("phone")
        a, _, path_a = self.webpush(s, recv)
        self.matrix(s, recv)
        r = self.add_target(s, {"kind": "webpush", "endpoint": recv.url("/wp/third"), "keys": Subscription().keys()})
        self.assertError(r, 409, "too_many_push_targets")
        # Replacing one of the two is not a third target.
        again, _, _ = self.webpush(s, recv, path=path_a)
        self.assertEqual(again["id"], a["id"])
        # The limit is per device.
        self.webpush(bob.login("laptop"), recv)
        self.assertEqual(len(self.targets(s)), 2)

    def test_too_many_targets_per_user(self):
        # Each target is one request per message: over all of a user's devices they are
        # limited too, so that one message cannot become hundreds of requests to one host.
        self.start(push={"max_targets_per_device": 3, "max_targets_per_user": 4})
        recv = self.receiver()
        bob = self.person("bob")
        phone, laptop = bob.login("phone"), bob.login("laptop")
        paths = [self.webpush(phone, recv)[2] for _ in range(3)]
        self.webpush(laptop, recv)
        r = self.add_target(laptop, {"kind": "webpush", "endpoint": recv.url("/wp/fifth"),
                                     "keys": Subscription().keys()})
        self.assertError(r, 409, "too_many_push_targets")
        self.assertIn("your devices", r.json["error"]["message"])
        # At the user's limit, moving an endpoint from one device to another, or naming it with
        # another kind, adds none: it is taken from where it was.
        moved = paths[0]
        self.webpush(laptop, recv, path=moved, sub=Subscription())
        self.assertEqual((len(self.targets(phone)), len(self.targets(laptop))), (2, 2))
        self.webpush(laptop, recv, path=moved, kind="unifiedpush")
        self.assertEqual([t["kind"] for t in self.targets(laptop)].count("unifiedpush"), 1)
        self.assertEqual(len(self.targets(laptop)), 2)
        # Another user is not held back by bob's.
        self.webpush(self.person("carol").login("tablet"), recv)
        # A device logged out takes its targets along, and makes room.
        self.assertStatus(self.call("DELETE", "/v1/sessions/" + phone["device_id"], phone), 204)
        self.webpush(laptop, recv)

    def test_registrations_are_rate_limited_and_full_devices_refused_before_any_lookup(self):
        self.start(push={"max_targets_per_device": 1, "registrations_per_minute": 3})
        recv = self.receiver()
        s = self.person("bob").login("phone")
        self.webpush(s, recv)
        # A device with all its targets is refused before the endpoint's name is looked up
        # (before, the lookup came first: any number of them, of names the user chose).
        r = self.add_target(s, {"kind": "webpush", "endpoint": "https://nonexistent.invalid/wp",
                                "keys": Subscription().keys()})
        self.assertError(r, 409, "too_many_push_targets")
        self.assertStatus(self.add_target(s, {"kind": "webpush", "endpoint": recv.url("/wp/x"),
                                              "keys": Subscription().keys()}), 409)
        # The fourth in the minute is refused as too many, whatever it asks.
        r = self.add_target(s, {"kind": "webpush", "endpoint": recv.url("/wp/y"), "keys": Subscription().keys()})
        self.assertError(r, 429, "rate_limited")
        self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
        # Another user has registrations of their own.
        self.webpush(self.person("carol").login("tablet"), recv)

    def test_registrations_sent_at_once_keep_to_the_limit(self):
        # Sent at once, registrations land in one write batch of the store: each must still
        # see the others (endpoints by address, so no lookup spreads them out).
        import concurrent.futures
        self.start(push={"max_targets_per_device": 2})
        recv = self.receiver()
        s = self.person("bob").login("phone")

        def register(path):
            return self.add_target(s, {"kind": "webpush", "endpoint": recv.url(path, host="127.0.0.1"),
                                       "keys": Subscription().keys()})
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(register, ["/wp/many%d" % i for i in range(40)]))
        self.assertEqual(sorted(r.status for r in answers), [201] * 2 + [409] * 38,
                         [r.describe() for r in answers if r.status not in (201, 409)])
        self.assertEqual(len(self.targets(s)), 2)
        # The same endpoint many times at once is one target.
        laptop = self.person("carol").login("laptop")
        keys = Subscription().keys()

        def again(_):
            return self.add_target(laptop, {"kind": "webpush", "endpoint": recv.url("/wp/same", host="127.0.0.1"),
                                            "keys": keys})
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(again, range(20)))
        self.assertEqual({r.status for r in answers}, {201})
        self.assertEqual(len({r.json["id"] for r in answers}), 1, "one target, one id")
        self.assertEqual(len(self.targets(laptop)), 1)

    def test_every_push_endpoint_needs_a_token(self):
        self.start()
        for method, path, body in (("POST", "/v1/push/targets", {"kind": "webpush"}), ("GET", "/v1/push/targets", None),
                                   ("DELETE", "/v1/push/targets/abc", None), ("GET", "/v1/push/settings", None),
                                   ("PUT", "/v1/push/settings", {"previews": True, "dnd": None})):
            with self.subTest(method=method, path=path):
                self.assertError(self.call(method, path, body=body), 401, "missing_token")

    def test_push_disabled(self):
        self.start(push={"enabled": False})
        s = self.person("bob").login("phone")
        r = self.add_target(s, {"kind": "webpush", "endpoint": "https://127.0.0.1:9/wp", "keys": Subscription().keys()})
        self.assertError(r, 503, "push_disabled")
        self.assertIs(self.admin_push()["enabled"], False)

    def test_a_device_that_logs_out_while_push_is_disabled_loses_its_targets(self):
        """Targets go with their device's session even while push is disabled: an endpoint is
        a capability, not to be kept in the store (and its backups) for a device gone for
        good. Once they stayed until push was enabled again and a push fell due."""
        node = self.start()
        recv = self.receiver()
        bob = self.person("bob")
        phone, laptop = bob.login("phone"), bob.login("laptop")
        self.webpush(phone, recv)
        self.webpush(laptop, recv)
        self.assertEqual(self.admin_push()["targets"], 2)

        def restart(enabled):
            node.stop()
            node.config["push"]["enabled"] = enabled
            with open(node.config_path, "w") as f:
                f.write(toml_text(node.config))
            node.start()

        restart(False)
        self.assertStatus(self.call("DELETE", "/v1/sessions/" + phone["device_id"], phone), 204)
        restart(True)
        self.assertEqual(self.admin_push()["targets"], 1, "the laptop's, still logged in")
        self.assertEqual([t["device_id"] for t in self.admin_targets(bob.name)],
                         [laptop["device_id"]])


class BadInputTest(PushCase):

    def test_registration_errors(self):
        self.start()
        recv = self.receiver()
        s = self.person("bob").login("phone")
        keys = Subscription().keys()
        url = recv.url("/wp/x")
        pub = Subscription().public
        not_a_point = b"\x04" + b"\x01" * 64  # (1, 1) is not on P-256
        cases = [
            ("kind unknown", {"kind": "apns", "endpoint": url, "keys": keys}, "invalid_field", ("kind",)),
            ("kind not a string", {"kind": 5, "endpoint": url, "keys": keys}, "invalid_field", ("kind",)),
            ("kind absent", {"endpoint": url, "keys": keys}, "missing_field", ("kind",)),
            ("http", {"kind": "webpush", "endpoint": "http://127.0.0.1:%d/wp" % recv.port, "keys": keys},
             "invalid_field", ("endpoint",)),
            ("ftp", {"kind": "webpush", "endpoint": "ftp://127.0.0.1/wp", "keys": keys}, "invalid_field", ("endpoint",)),
            ("not a URL", {"kind": "webpush", "endpoint": "push endpoint", "keys": keys}, "invalid_field", ("endpoint",)),
            ("endpoint not a string", {"kind": "webpush", "endpoint": 5, "keys": keys}, "invalid_field", ("endpoint",)),
            ("endpoint absent", {"kind": "webpush", "keys": keys}, "missing_field", ("endpoint",)),
            ("keys absent", {"kind": "webpush", "endpoint": url}, "missing_field", ("keys",)),
            ("keys not an object", {"kind": "webpush", "endpoint": url, "keys": "k"}, "invalid_field", ("keys",)),
            ("p256dh of 64 bytes", {"kind": "webpush", "endpoint": url,
                                    "keys": {"p256dh": b64url(pub[1:]), "auth": keys["auth"]}}, "invalid_field", None),
            ("p256dh compressed (33 bytes)", {"kind": "webpush", "endpoint": url,
                                              "keys": {"p256dh": b64url(bytes([2 + pub[64] % 2]) + pub[1:33]),
                                                       "auth": keys["auth"]}}, "invalid_field", None),
            ("p256dh not on the curve", {"kind": "webpush", "endpoint": url,
                                         "keys": {"p256dh": b64url(not_a_point), "auth": keys["auth"]}},
             "invalid_field", None),
            ("p256dh not base64url", {"kind": "webpush", "endpoint": url, "keys": {"p256dh": "!!!", "auth": keys["auth"]}},
             "invalid_field", None),
            ("auth of 15 bytes", {"kind": "webpush", "endpoint": url,
                                  "keys": {"p256dh": keys["p256dh"], "auth": b64url(os.urandom(15))}}, "invalid_field", None),
            ("auth of 17 bytes", {"kind": "unifiedpush", "endpoint": url,
                                  "keys": {"p256dh": keys["p256dh"], "auth": b64url(os.urandom(17))}},
             "invalid_field", None),
            ("matrix http", {"kind": "matrix", "gateway_url": "http://127.0.0.1/_matrix/push/v1/notify", "app_id": "a",
                             "pushkey": "p"}, "invalid_field", ("gateway_url",)),
            ("matrix app_id empty", {"kind": "matrix", "gateway_url": url, "app_id": "", "pushkey": "p"},
             "invalid_field", ("app_id",)),
            ("matrix app_id of 65 bytes", {"kind": "matrix", "gateway_url": url, "app_id": "a" * 65, "pushkey": "p"},
             "invalid_field", ("app_id",)),
            ("matrix pushkey of 513 bytes", {"kind": "matrix", "gateway_url": url, "app_id": "a", "pushkey": "p" * 513},
             "invalid_field", ("pushkey",)),
            ("matrix pushkey absent", {"kind": "matrix", "gateway_url": url, "app_id": "a"}, "missing_field", ("pushkey",)),
            ("matrix data not an object", {"kind": "matrix", "gateway_url": url, "app_id": "a", "pushkey": "p",
                                           "data": ["format"]}, "invalid_field", ("data",)),
            ("matrix data over 1024 bytes", {"kind": "matrix", "gateway_url": url, "app_id": "a", "pushkey": "p",
                                             "data": {"x": "y" * 1100}}, "invalid_field", ("data",)),
        ]
        for what, body, code, fields in cases:
            with self.subTest(what):
                err = self.assertError(self.add_target(s, body), 400, code, msg=what)
                if fields:
                    self.assertIn(err.get("field"), fields, "error.field for %s: %s" % (what, err))
        for raw in (b"{", b"[]", b'"webpush"', b"\xff\xfe"):
            with self.subTest(raw=raw):
                self.assertError(self.call("POST", "/v1/push/targets", s, raw=raw), 400, "invalid_json")
        self.assertEqual(self.targets(s), [], "nothing was registered")
        # The limits themselves are fine.
        self.matrix(s, recv, app_id="a" * 64, pushkey="p" * 512, data={"x": "y" * 900})

    def test_endpoint_length(self):
        self.start()
        recv = self.receiver()
        s = self.person("bob").login("phone")
        base = recv.url("/wp/")
        exact = base + "a" * (1024 - len(base))
        self.assertEqual(len(exact), 1024)
        self.webpush(s, recv, path=exact[len(recv.url("")):])
        # The document lists "at most 1024 bytes" among the endpoint rules without naming the
        # error: either 400 code is taken.
        r = self.add_target(s, {"kind": "webpush", "endpoint": exact + "a", "keys": Subscription().keys()})
        self.assertOneOf(r, 400, ("invalid_field", "push_endpoint_forbidden"), "an endpoint of 1025 bytes")
        self.assertEqual(len(self.targets(s)), 1)


class EndpointPolicyTest(PushCase):
    """Which endpoints: only public https addresses, unless allow-listed."""

    def test_private_and_special_addresses_are_refused(self):
        self.start(push={"allow_networks": []})
        s = self.person("bob").login("phone")
        keys = Subscription().keys()
        forbidden = [
            "https://127.0.0.1:8443/wp", "https://127.9.9.9/wp", "https://10.1.2.3/wp", "https://172.16.0.1/wp",
            "https://192.168.1.1/wp", "https://169.254.169.254/latest/meta-data", "https://100.64.0.1/wp",
            "https://0.0.0.0/wp", "https://224.0.0.1/wp", "https://240.0.0.1/wp", "https://255.255.255.255/wp",
            "https://[::1]/wp", "https://[::]/wp", "https://[fe80::1]/wp", "https://[fc00::1]/wp", "https://[fd12::1]/wp",
            "https://[ff02::1]/wp", "https://[::ffff:127.0.0.1]/wp", "https://[::ffff:10.0.0.1]/wp",
            "https://[::ffff:169.254.169.254]/wp", "https://localhost/wp", "https://localhost:8443/wp",
            "https://nonexistent.invalid/wp",
        ]
        for url in forbidden:
            with self.subTest(url=url):
                self.assertError(self.add_target(s, {"kind": "webpush", "endpoint": url, "keys": keys}), 400,
                                 "push_endpoint_forbidden", msg=url)
                r = self.add_target(s, {"kind": "matrix", "gateway_url": url, "app_id": "a", "pushkey": "p"})
                self.assertError(r, 400, "push_endpoint_forbidden", msg="gateway_url " + url)
        # Other spellings of loopback are refused, as invalid or as forbidden, never taken.
        for url in ("https://127.1/wp", "https://2130706433/wp", "https://0x7f000001/wp", "https://017700000001/wp"):
            with self.subTest(url=url):
                r = self.add_target(s, {"kind": "webpush", "endpoint": url, "keys": keys})
                self.assertOneOf(r, 400, ("invalid_field", "push_endpoint_forbidden"), url)
        # User information is among the endpoint rules without its own error: either code.
        for url in ("https://user@8.8.8.8/wp", "https://user:pw@8.8.8.8/wp"):
            with self.subTest(url=url):
                r = self.add_target(s, {"kind": "webpush", "endpoint": url, "keys": keys})
                self.assertOneOf(r, 400, ("invalid_field", "push_endpoint_forbidden"), url)
        # A public address at another port than 443 (its mail, SSH or database server's) is
        # not the node's to knock on; the port is named.
        for url in ("https://8.8.8.8:8443/wp", "https://8.8.8.8:25/wp", "https://[2001:4860:4860::8888]:22/wp"):
            with self.subTest(url=url):
                err = self.assertError(self.add_target(s, {"kind": "webpush", "endpoint": url, "keys": keys}), 400,
                                       "push_endpoint_forbidden", msg=url)
                self.assertIn("port", err["message"])
        self.assertEqual(self.targets(s), [])
        # A public address is taken (registering sends nothing), at 443 written out too.
        r = self.add_target(s, {"kind": "webpush", "endpoint": "https://8.8.8.8:443/wp/ok", "keys": keys})
        self.assertStatus(r, 201, "a public address, port 443 written out")
        r = self.add_target(s, {"kind": "webpush", "endpoint": "https://8.8.8.8/wp/ok", "keys": keys})
        self.assertStatus(r, 201, "a public address")
        r = self.add_target(s, {"kind": "webpush", "endpoint": "https://[2001:4860:4860::8888]/wp", "keys": keys})
        self.assertStatus(r, 201, "a public IPv6 address")

    def test_allow_networks_is_exact(self):
        self.start(push={"allow_networks": ["127.0.0.0/8"]})
        s = self.person("bob").login("phone")
        keys = Subscription().keys()
        self.assertStatus(self.add_target(s, {"kind": "webpush", "endpoint": "https://127.0.0.1:9/wp",
                                              "keys": keys}), 201)
        for url in ("https://10.1.2.3/wp", "https://[::1]/wp", "https://169.254.169.254/wp"):
            with self.subTest(url=url):
                self.assertError(self.add_target(s, {"kind": "webpush", "endpoint": url, "keys": keys}), 400,
                                 "push_endpoint_forbidden")

    def test_allow_hosts_lets_a_named_host_through(self):
        self.start(push={"allow_networks": [], "allow_hosts": ["localhost"]})
        recv = self.receiver()
        key = self.vapid_key()
        bob, alice = self.person("bob"), self.person("alice")
        s = bob.login("phone")
        self.assertError(self.add_target(s, {"kind": "webpush", "endpoint": recv.url("/wp/ip"),
                                             "keys": Subscription().keys()}), 400, "push_endpoint_forbidden",
                         msg="the host list names hosts, not their addresses")
        t, sub, path = self.webpush(s, recv, host="localhost")
        self.assertEqual(t["endpoint"], "https://localhost:%d%s" % (recv.port, path))
        addrs = {a[4][0] for a in socket.getaddrinfo("localhost", recv.port, type=socket.SOCK_STREAM)}
        if not all(a.startswith("127.") for a in addrs):
            return  # the receiver listens on 127.0.0.1 only: no delivery check on this machine
        acc = self.ws(alice.login()).send_message(bob.id, "to a named host")
        [req] = recv.wait_requests(path, 1, WAIT_S)
        n = self.open_webpush(req, sub, key, "https://localhost:%d" % recv.port)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)


class SettingsTest(PushCase):

    def test_settings_round_trip_and_errors(self):
        self.start()
        bob = self.person("bob")
        s, other = bob.login("phone"), bob.login("laptop")
        r = self.call("GET", "/v1/push/settings", s)
        self.assertStatus(r, 200)
        self.assertEqual(r.json, {"previews": False, "dnd": None}, "the defaults")
        want = {"previews": True, "dnd": {"start": "22:00", "end": "07:00", "utc_offset_min": 60}}
        r = self.put_settings(s, **want)
        self.assertStatus(r, 200)
        self.assertEqual(r.json, want)
        self.assertEqual(self.call("GET", "/v1/push/settings", s).json, want)
        self.assertEqual(self.call("GET", "/v1/push/settings", other).json, {"previews": False, "dnd": None},
                         "settings are the device's")
        for dnd in ({"start": "00:00", "end": "00:00", "utc_offset_min": -840},
                    {"start": "23:59", "end": "00:01", "utc_offset_min": 840}, None):
            r = self.put_settings(s, previews=False, dnd=dnd)
            self.assertStatus(r, 200, "dnd %s" % dnd)
            self.assertEqual(r.json, {"previews": False, "dnd": dnd})
        bad = [
            {"previews": "yes", "dnd": None},
            {"previews": 1, "dnd": None},
            {"previews": False, "dnd": "22:00-07:00"},
            {"previews": False, "dnd": {"start": "24:00", "end": "07:00", "utc_offset_min": 0}},
            {"previews": False, "dnd": {"start": "22:60", "end": "07:00", "utc_offset_min": 0}},
            {"previews": False, "dnd": {"start": "22:00", "end": "noon", "utc_offset_min": 0}},
            # "HH:MM" exactly: no signs, spaces or single digits.
            {"previews": False, "dnd": {"start": " 7:00", "end": "07:00", "utc_offset_min": 0}},
            {"previews": False, "dnd": {"start": "+7:00", "end": "07:00", "utc_offset_min": 0}},
            {"previews": False, "dnd": {"start": "07:+5", "end": "07:00", "utc_offset_min": 0}},
            {"previews": False, "dnd": {"start": "22:00", "end": "-0:00", "utc_offset_min": 0}},
            {"previews": False, "dnd": {"start": 2200, "end": "07:00", "utc_offset_min": 0}},
            {"previews": False, "dnd": {"start": "22:00", "end": "07:00", "utc_offset_min": 841}},
            {"previews": False, "dnd": {"start": "22:00", "end": "07:00", "utc_offset_min": -841}},
            {"previews": False, "dnd": {"start": "22:00", "end": "07:00", "utc_offset_min": "60"}},
            {"previews": False, "dnd": {"start": "22:00", "end": "07:00", "utc_offset_min": 1.5}},
        ]
        for body in bad:
            with self.subTest(body=body):
                self.assertError(self.call("PUT", "/v1/push/settings", s, body), 400, "invalid_field")
        self.assertError(self.call("PUT", "/v1/push/settings", s, raw=b"{nope"), 400, "invalid_json")
        self.assertEqual(self.call("GET", "/v1/push/settings", s).json, {"previews": False, "dnd": None},
                         "a refused PUT changes nothing")


if __name__ == "__main__":
    unittest.main(verbosity=2)
