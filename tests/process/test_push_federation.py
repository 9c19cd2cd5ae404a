"""Push notifications across regions (docs/PROTOCOL.md, "Push notifications": "A user is
pushed only by the home region of their account, whatever region the message came from"):
two regions ("europe" and "america") on one shared nats-server, each with a [push] section
that trusts the test CA and allow-lists loopback; one HTTPS receiver (pushrecv.py) stands
for the push service.

Written from the protocol document only. Nothing is timed: the message's trip to the other
region and the push are waited for with generous deadlines.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import harness  # noqa: E402
import test_federation  # noqa: E402  (FederationCase: regions, users, streams)
import test_push  # noqa: E402  (push_config, PushCase's checks)
from pushrecv import PushReceiver, Subscription  # noqa: E402
from wsclient import ev_message  # noqa: E402

EUROPE, AMERICA = "europe", "america"
CROSS_S = 30.0  # a message's trip to the other region and its push
QUIET_S = 3.0


class PushFederationTest(test_federation.FederationCase):

    names = (EUROPE, AMERICA)

    # Checks of other test cases that only need unittest's assertions.
    assertStatus = harness.NodeTestCase.assertStatus
    assertTimestamp = harness.NodeTestCase.assertTimestamp
    open_webpush = test_push.PushCase.open_webpush
    assertNotification = test_push.PushCase.assertNotification

    @classmethod
    def setUpClass(cls):
        cls.servers, cls.regions = fedharness.shared_topology(
            list(cls.names), config={"messages": {"max_per_second": 5000}, "push": test_push.push_config()})
        cls.keys = cls.regions.pop("_keys")

    def setUp(self):
        super().setUp()
        self.recv = PushReceiver()
        self.addCleanup(self.recv.close)

    def vapid_key(self, region):
        r = self.node(region).request("GET", "/v1/push/vapid")
        self.assertStatus(r, 200, "GET /v1/push/vapid at %s" % region)
        return r.json["public_key"]

    def register(self, user_id, path):
        """A webpush target of a new device of `user_id`, registered at its home region;
        returns (session, target, subscription)."""
        region = user_id.split("@")[1]
        s = self.session(user_id, device="phone")
        sub = Subscription()
        r = self.node(region).request("POST", "/v1/push/targets", token=s["access_token"],
                                      body={"kind": "webpush", "endpoint": self.recv.url(path), "keys": sub.keys()})
        self.assertStatus(r, 201, "register a target for %s at %s" % (user_id, region))
        self.addCleanup(self.remove, self.node(region), s, r.json)
        return s, r.json, sub

    def admin_push(self, region):
        r = self.node(region).admin("GET", "/v1/admin/push")
        self.assertStatus(r, 200, "GET /v1/admin/push at %s" % region)
        return r.json

    def pushed_by_home_region(self, sender, recipient, path):
        """`sender` writes to `recipient` (of the other region) who has a target at home and
        no live stream: exactly one push arrives, signed by the recipient's region."""
        home, away = recipient.split("@")[1], sender.split("@")[1]
        home_key, away_key = self.vapid_key(home), self.vapid_key(away)
        self.assertNotEqual(home_key, away_key, "each region has its own VAPID key")
        session, target, sub = self.register(recipient, path)
        targets_home, targets_away = self.admin_push(home)["targets"], self.admin_push(away)["targets"]
        a = self.connect(sender)
        acc = a.send_message(recipient, "across the ocean, by push")
        [req] = self.recv.wait_requests(path, 1, CROSS_S)
        n = self.open_webpush(req, sub, home_key, self.recv, secrets=["across the ocean, by push"])
        self.assertNotification(n, recipient, sender, acc, count=1)
        self.recv.assert_quiet(path, QUIET_S)
        self.assertEqual(self.recv.count(path), 1, "exactly one push, from %s only" % home)
        self.assertEqual(self.admin_push(away)["targets"], targets_away, "%s keeps no target of %s" % (away, recipient))
        self.assertGreaterEqual(targets_home, 1)
        ids = [t["id"] for t in self.admin_targets(home, recipient.split("@")[0])]
        self.assertIn(target["id"], ids)
        r = self.node(away).admin("GET", "/v1/admin/push/targets?user=" + recipient.split("@")[0])
        self.assertTrue(r.status == 404 or r.json.get("targets") == [], "%s lists no target of %s: %s"
                        % (away, recipient, r.describe()))
        return acc, session, target

    def remove(self, node, session, target):
        """Deletes a target at the end of its test: the regions are shared by the class."""
        try:
            node.request("DELETE", "/v1/push/targets/" + target["id"], token=session["access_token"])
        except Exception:
            pass

    def admin_targets(self, region, name):
        r = self.node(region).admin("GET", "/v1/admin/push/targets?user=" + name)
        self.assertStatus(r, 200)
        return r.json["targets"]

    def test_a_message_from_europe_is_pushed_by_america(self):
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        acc, session, _ = self.pushed_by_home_region(alice, bob, "/wp/bob-at-america")
        self.assertEqual(self.admin_push(EUROPE)["targets"], 0, "europe holds no push target at all")
        self.assertEqual(self.admin_push(AMERICA)["targets"], 1, "america holds bob's")
        # The message itself reached bob's region (he sees it when he connects).
        b = self.connect(bob, session)
        b.wait_event(ev_message(acc["message_id"]), CROSS_S)

    def test_a_message_from_america_is_pushed_by_europe(self):
        carol, dave = self.user(AMERICA, "carol"), self.user(EUROPE, "dave")
        self.pushed_by_home_region(carol, dave, "/wp/dave-at-europe")
        self.assertEqual(self.admin_push(AMERICA)["targets"], 0, "america holds no push target at all")


if __name__ == "__main__":
    unittest.main(verbosity=2)
