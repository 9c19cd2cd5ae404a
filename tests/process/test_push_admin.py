"""Push notifications, the operator's side (docs/PROTOCOL.md, "Push notifications",
"Admin API", "petchatctl", "Metrics"): a device's targets go with its session (log out,
revocation, account deletion), and what GET /v1/admin/push, GET /v1/admin/push/targets,
`petchatctl push ...` and the push metrics show.

Written from the protocol document only; helpers in test_push.PushCase.
"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pushrecv import Subscription  # noqa: E402
from test_push import QUIET_S, WAIT_S, PushCase  # noqa: E402


class SessionEndTest(PushCase):
    """A device's targets go with its session: log out, revocation, account deletion."""

    def test_logout_revocation_and_deletion_remove_the_targets(self):
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        a = self.ws(alice.login())
        phone, tablet, laptop = bob.login("phone"), bob.login("tablet"), bob.login("laptop")
        tp, _, path_p = self.webpush(phone, recv)
        tt, sub_t, path_t = self.webpush(tablet, recv)
        tl, sub_l, path_l = self.webpush(laptop, recv, kind="unifiedpush")
        removed0 = self.metric("petchat_push_targets_removed_total", reason="session_ended")

        self.assertStatus(self.call("DELETE", "/v1/sessions/current", phone), 204)
        self.wait_until(lambda: tp["id"] not in [t["id"] for t in self.admin_targets(bob.name)],
                        "the logged-out phone's target leaves the admin list")
        self.wait_metric("petchat_push_targets_removed_total", removed0 + 1, reason="session_ended")
        acc = a.send_message(bob.id, "after the phone logged out")
        n = self.open_webpush(recv.wait_requests(path_t, 1, WAIT_S)[0], sub_t, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc)
        recv.wait_requests(path_l, 1, WAIT_S)
        recv.assert_quiet(path_p, QUIET_S, already=0)

        self.assertStatus(self.node.admin("DELETE", "/v1/admin/sessions/" + tablet["device_id"]), 204)
        self.wait_until(lambda: [t["id"] for t in self.admin_targets(bob.name)] == [tl["id"]],
                        "the revoked tablet's target leaves the admin list")
        rc, out, err = self.node.ctl("push", "targets", bob.name)
        self.assertEqual(rc, 0, err)
        self.assertNotIn(path_t, out)
        self.assertIn(path_l, out)
        self.wait_metric("petchat_push_targets_removed_total", removed0 + 2, reason="session_ended")
        n_t, n_l = recv.count(path_t), recv.count(path_l)
        acc = a.send_message(bob.id, "after the tablet was revoked")
        n = self.open_webpush(recv.wait_requests(path_l, n_l + 1, WAIT_S)[-1], sub_l, key, recv)
        self.assertEqual(n.get("message_id"), acc["message_id"], n)
        recv.assert_quiet(path_t, QUIET_S, already=n_t)

        self.assertStatus(self.node.admin("DELETE", "/v1/admin/users/" + bob.name), 204)
        self.wait_metric("petchat_push_targets_removed_total", removed0 + 3, reason="session_ended")
        self.wait_until(lambda: self.admin_push()["targets"] == 0, "no target left on the node")
        self.assertEqual(recv.count(path_p), 0, "the logged-out phone was never pushed")


class AdminTest(PushCase):

    def test_admin_api_petchatctl_and_metrics(self):
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        st = self.admin_push()
        self.assertIs(st.get("enabled"), True, st)
        self.assertIsInstance(st.get("outbox"), dict, st)
        for k in ("users", "oldest_age_s"):
            self.assertIn(k, st["outbox"], st)
            self.assertIsInstance(st["outbox"][k], (int, float), st)
        for k in ("in_flight", "retrying", "targets"):
            self.assertIsInstance(st.get(k), int, "%s: %s" % (k, st))
        self.assertEqual(st["targets"], 0)
        alice, bob = self.person("alice"), self.person("bob")
        s = bob.login("phone")
        t, sub, path = self.webpush(s, recv)
        mx, pushkey, gw = self.matrix(s, recv)
        ok0 = self.metric("petchat_push_sent_total", kind="webpush", result="ok")
        acc = self.ws(alice.login()).send_message(bob.id, "for the operator's eyes only")
        n = self.open_webpush(recv.wait_requests(path, 1, WAIT_S)[0], sub, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)
        recv.wait_requests(gw, 1, WAIT_S)
        self.wait_metric("petchat_push_sent_total", ok0 + 1, kind="webpush", result="ok")
        self.wait_metric("petchat_push_sent_total", 1, kind="matrix", result="ok")
        self.wait_until(lambda: self.metric("petchat_push_outbox_users") == 0, "the outbox gauge back to 0")
        self.wait_until(lambda: self.metric("petchat_push_in_flight") == 0 and
                        self.metric("petchat_push_outbox_oldest_seconds") == 0, "nothing in flight or pending")

        st = self.wait_until(lambda: (lambda s: s if s["outbox"]["users"] == 0 and s["in_flight"] == 0 else None)(
            self.admin_push()), "the admin status shows nothing pending")
        self.assertEqual(st["targets"], 2, st)
        self.assertEqual(st["retrying"], 0, st)
        listed = {x["id"]: x for x in self.admin_targets(bob.name)}
        self.assertEqual(set(listed), {t["id"], mx["id"]})
        w = listed[t["id"]]
        for k in ("id", "user_id", "device_id", "kind", "endpoint", "created_at", "pushed_through_seq", "last_push_at",
                  "failures", "next_try_at"):
            self.assertIn(k, w, "admin target entry: %s" % w)
        self.assertEqual((w["user_id"], w["device_id"], w["kind"], w["endpoint"]),
                         (bob.id, s["device_id"], "webpush", recv.url(path)), w)
        self.assertEqual(int(w["pushed_through_seq"]), int(n["seq"]), w)
        self.assertTimestamp(w["last_push_at"], "last_push_at")
        self.assertEqual(w["failures"], 0, w)
        self.assertIsNone(w["next_try_at"], w)
        m = listed[mx["id"]]
        self.assertEqual((m.get("gateway_url"), m.get("app_id"), m.get("pushkey"), m.get("kind")),
                         (recv.url(gw), "org.example.app", pushkey, "matrix"), m)
        self.assertEqual(self.admin_targets(alice.id), [], "a full user id of the region works too")
        self.assertError(self.node.admin("GET", "/v1/admin/push/targets?user=nobody"), 404, "user_not_found")
        # bob of another region is not this region's bob: his targets are not listed for it.
        self.assertError(self.node.admin("GET", "/v1/admin/push/targets?user=%s@elsewhere" % bob.name), 404,
                         "user_not_found")

        rc, out, err = self.node.ctl("push", "status")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.strip(), "push status prints something")
        rc, out, err = self.node.ctl("push", "targets", bob.name)
        self.assertEqual(rc, 0, err)
        self.assertIn("webpush", out)
        self.assertIn(recv.url(path), out)
        self.assertIn("matrix", out)
        rc, out, err = self.node.ctl("--json", "push", "targets", bob.name)
        self.assertEqual(rc, 0, err)
        self.assertEqual({x["id"] for x in json.loads(out)["targets"]}, {t["id"], mx["id"]})
        rc, out, err = self.node.ctl("--json", "push", "status")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["targets"], 2)
        rc, out, err = self.node.ctl("push", "targets", "nobody")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("user_not_found", err)
        rc, out, err = self.node.ctl("push", "targets")
        self.assertEqual(rc, 2, "a missing argument is a usage error: %s %s" % (out, err))


class TargetsPerHostTest(PushCase):
    """Each target is one request per message: many accounts of one person must not make a
    message's push thousands of requests to a host of their choosing. Targets of all users
    whose requests go to one host and port are limited (push.max_targets_per_host), except
    at the push services the operator lists in push.bulk_hosts."""

    def test_targets_at_one_host_are_limited_across_users(self):
        self.start(push={"max_targets_per_host": 3})
        recv = self.receiver()
        ann, ben, cat = (self.person(n).login("phone") for n in ("ann", "ben", "cat"))
        first, _, _ = self.webpush(ann, recv)
        self.webpush(ann, recv)
        self.matrix(ben, recv)  # a Matrix gateway there counts too
        r = self.add_target(cat, {"kind": "webpush", "endpoint": recv.url("/wp/one-too-many"),
                                  "keys": Subscription().keys()})
        self.assertError(r, 409, "too_many_push_targets")
        self.assertIn("max_targets_per_host", r.json["error"]["message"])
        # The same host and port spelt otherwise is the same place.
        for endpoint in ("https://127.0.0.1:0%d/wp/zeros" % recv.port, "https://[::ffff:127.0.0.1]:%d/wp/v6" % recv.port,
                         "https://[0:0:0:0:0:ffff:7f00:1]:%d/wp/v6-long" % recv.port):
            with self.subTest(endpoint=endpoint):
                r = self.add_target(cat, {"kind": "webpush", "endpoint": endpoint, "keys": Subscription().keys()})
                self.assertError(r, 409, "too_many_push_targets")
        self.assertEqual(self.targets(cat), [])
        # The same endpoint registered again is no new target; another host is not held back.
        self.webpush(ann, recv, path=first["endpoint"].split(str(recv.port), 1)[1], sub=Subscription())
        self.webpush(cat, self.receiver())
        # One going makes room.
        self.assertStatus(self.call("DELETE", "/v1/push/targets/" + first["id"], ann), 204)
        self.webpush(cat, recv)
        self.assertEqual(len(self.targets(cat)), 2)

    def test_bulk_hosts_are_not_counted(self):
        self.start(push={"max_targets_per_host": 1, "bulk_hosts": ["127.0.0.1"]})
        recv = self.receiver()
        for name in ("ann", "ben", "cat"):
            self.webpush(self.person(name).login("phone"), recv, host="127.0.0.1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
