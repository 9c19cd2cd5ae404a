"""Upgrades: today's node opens a data directory written by an earlier key layout of the
message store and serves, continues and expires what is there (docs/ARCHITECTURE.md,
"The message store's keys"). The fixtures were made by fixtures/make_store_v1.py (the
first key layout) and fixtures/make_store_v2.py (group messages with per-member receipts,
made by the node of 40b1906) and fixtures/make_store_v4.py (attachments before their
references were indexed by conversation, made by the node of 25db49f)."""

import json
import os
import sys
import tarfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wsclient  # noqa: E402
from harness import Node, NodeTestCase  # noqa: E402
from pushrecv import Subscription  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def admin_status(node):
    r = node.admin("GET", "/v1/admin/status")
    if r.status != 200:
        raise AssertionError("admin status: %s" % r.describe())
    return r.json


def open_upgraded(test, name, old_format, config=None):
    """Starts a node on fixtures/store-<name>.tar.gz (facts in store-<name>.json) and checks
    that its data dir was upgraded from `old_format` to today's 8. Returns (node, facts)."""
    with open(os.path.join(FIXTURES, "store-%s.json" % name)) as f:
        facts = json.load(f)
    node = Node(start=False, config=config)
    test.addCleanup(node.close)
    with tarfile.open(os.path.join(FIXTURES, "store-%s.tar.gz" % name)) as tar:
        tar.extractall(node.workdir)
    node.start()
    with open(os.path.join(node.data_dir, "datadir.json")) as f:
        rec = json.load(f)
    test.assertEqual((rec["format"], rec["upgraded_from"]), (8, old_format), rec)
    return node, facts


class FirstLayoutTest(NodeTestCase):

    def open_fixture(self, **config):
        with open(os.path.join(FIXTURES, "store-v1.json")) as f:
            facts = json.load(f)
        node = Node(config=config or None, start=False)
        self.addCleanup(node.close)
        with tarfile.open(os.path.join(FIXTURES, "store-v1.tar.gz")) as tar:
            tar.extractall(node.workdir)
        node.start()
        return node, facts

    def test_serves_and_continues_the_first_layout(self):
        node, facts = self.open_fixture()
        heads = facts["heads"]
        sa, sb = node.new_session("alice", device="alice laptop"), node.new_session("bob", device="bob laptop")
        # Heads come from the old layout's head keys: a new device is told them.
        A = wsclient.connect(node, sa, after_seq=0)
        B = wsclient.connect(node, sb, after_seq=0)
        self.addCleanup(A.close)
        self.addCleanup(B.close)
        self.assertEqual(int(A.welcome["mailbox_seq"]), heads["alice"], A.welcome)
        self.assertEqual(int(B.welcome["mailbox_seq"]), heads["bob"], B.welcome)
        # Everything kept is served: the history, with its delivery and read marks ...
        path = "/v1/conversations/%s/messages" % urllib.parse.quote(facts["conversation_alice_bob"], safe="")
        r = node.request("GET", path, token=sa["access_token"])
        self.assertStatus(r, 200)
        msgs = r.json["messages"]
        self.assertEqual([m["id"] for m in msgs], facts["kept"], "the deleted message is not served")
        for m in msgs:  # bob acknowledged two and read up to the third
            self.assertNotEqual(int(m["delivered_at_ms"]), 0, m)
            self.assertNotEqual(int(m["read_at_ms"]), 0, m)
        # ... and bob's mailbox from the start: the three kept messages, the read mark and
        # the deletion (the deleted message's own event is skipped).
        B.wait_event(wsclient.ev_deleted(facts["deleted"]))
        B.wait_seq(heads["bob"])
        got = [m["message"]["id"] for m in B.events() if "message" in m]
        self.assertEqual(got, facts["kept"])
        # New events continue each mailbox where the old layout left it: no seq is reused.
        acc = A.send_message("bob@test", "after the upgrade")
        ev = B.wait_event(wsclient.ev_message(acc["message_id"]))
        self.assertEqual(int(ev["seq"]), heads["bob"] + 1)
        mine = A.wait_event(wsclient.ev_message(acc["message_id"]))
        self.assertEqual(int(mine["seq"]), heads["alice"] + 1)
        B.ack(heads["bob"] + 1, wait=True)
        receipt = A.wait_event(wsclient.ev_receipt(acc["message_id"], "DELIVERED"))
        self.assertEqual(int(receipt["seq"]), heads["alice"] + 2)
        # A retry of a send accepted under the old layout is still recognised.
        again = A.send_message("bob@test", "kept 0", client_id="kept-0")
        self.assertTrue(again.get("duplicate"), again)
        self.assertEqual(again["message_id"], facts["kept"][0])

    def test_data_dir_of_format_0_gets_its_record(self):
        # The fixture predates datadir.json (format 0: only `region`). The start migrates
        # it to the current format, dated from the region key's first start, and says so.
        with tarfile.open(os.path.join(FIXTURES, "store-v1.tar.gz")) as tar:
            key_made = tar.getmember("data/region.key").mtime
        node, facts = self.open_fixture()
        with open(os.path.join(node.data_dir, "datadir.json")) as f:
            rec = json.load(f)
        self.assertEqual((rec["region"], rec["format"], rec["upgraded_from"]), ("test", 8, 0), rec)
        self.assertEqual(rec["created_at"][:19], time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(key_made)))
        self.assertTrue(any("upgraded from format 0 to 8" in line for line in node.stderr_lines + node.stdout_lines))
        self.assertEqual(admin_status(node)["data_format"], 8)
        self.assertStatus(node.login("alice", facts.get("password", "password123")), 201)

    def test_old_expiry_entries_are_honoured(self):
        # The short-lived messages expired long ago; the sweep removes them with their
        # mailbox entries and idempotency records through the old layout's expiry entries.
        node, facts = self.open_fixture(messages={"expiry_sweep_interval_ms": 100})
        deadline = time.monotonic() + 30
        while True:
            rc, out, err = node.ctl("--json", "messages", "compact")
            self.assertEqual(rc, 0, err)
            entries = admin_status(node)["messages"]["stored_entries"]
            if entries["messages"] == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        heads = facts["heads"]
        # Left: the three kept messages and hello (the deleted one went at once); every
        # mailbox entry but those of the short-lived messages; the idempotency records of
        # the kept, deleted and hello sends.
        self.assertEqual(entries["messages"], 4, entries)
        self.assertEqual(entries["history"], 4, entries)
        self.assertEqual(entries["mailbox"], sum(heads.values()) - facts["short_mailbox_entries"], entries)
        self.assertEqual(entries["idempotency"], 5, entries)
        # carol's mailbox keeps its head although its first entries are gone.
        sc = node.new_session("carol", device="carol laptop")
        C = wsclient.connect(node, sc, after_seq=0)
        self.addCleanup(C.close)
        self.assertEqual(int(C.welcome["mailbox_seq"]), heads["carol"])
        sa = node.new_session("alice", device="alice tablet")
        A = wsclient.connect(node, sa)
        self.addCleanup(A.close)
        acc = A.send_message("carol@test", "still counting")
        self.assertEqual(int(C.wait_event(wsclient.ev_message(acc["message_id"]))["seq"]), heads["carol"] + 1)


class PerMemberDeliveriesTest(NodeTestCase):
    """A data dir of format 1 with group messages, their per-member receipt records and
    counts (made by fixtures/make_store_v2.py with the node of 40b1906), opened by today's
    node: what was recorded is served, and deliveries and reads made now add to it, none
    counted twice. A change to how group receipts are stored must keep this passing."""

    def test_old_receipt_records_and_new_deliveries_add_up(self):
        node, facts = open_upgraded(self, "v2", 1)
        sessions = {n: node.new_session(n, device=n + " laptop") for n in ("alice", "bob", "dave")}
        gid, first = facts["group"], facts["first"]

        def receipts():
            r = node.request("GET", "/v1/messages/%s/receipts" % urllib.parse.quote(first, safe=""),
                             token=sessions["alice"]["access_token"])
            self.assertStatus(r, 200)
            states = {m["user_id"].split("@")[0]: (m["delivered_at_ms"] != "0", m["read_at_ms"] != "0")
                      for m in r.json["members"]}
            return (r.json["delivered_count"], r.json["read_count"]), states

        # As the old layout recorded it: bob acknowledged, carol acknowledged and read.
        self.assertEqual(receipts(), ((2, 1), {"bob": (True, False), "carol": (True, True), "dave": (False, False)}))
        # dave acknowledges now and then reads; bob reads what he
        # acknowledged under the old layout. Each is delivered once and read once.
        D = wsclient.connect(node, sessions["dave"], after_seq=0)
        B = wsclient.connect(node, sessions["bob"], after_seq=0)
        self.addCleanup(D.close)
        self.addCleanup(B.close)
        D.wait_event(wsclient.ev_message(first))
        D.ack(int(facts["seqs_of_first"]["dave"]), wait=True)
        self.assertEqual(receipts(), ((3, 1), {"bob": (True, False), "carol": (True, True), "dave": (True, False)}))
        for client in (D, B):
            client.read(gid, first)
            client.wait_event(wsclient.ev_read_mark(first))
        self.assertEqual(receipts(), ((3, 3), {"bob": (True, True), "carol": (True, True), "dave": (True, True)}))



class AssetReferencesByConversationTest(NodeTestCase):
    """A data dir of format 4 (made by fixtures/make_store_v4.py with the node of 25db49f):
    a file alice sent to bob and to a group with carol. Format 5 finds who may download an
    asset through its references indexed by conversation, which today's node writes for
    an older store at its first start: without them nobody but alice could download it."""

    def test_attachments_sent_before_the_upgrade_stay_downloadable(self):
        node, facts = open_upgraded(self, "v4", 4)
        path = "/v1/assets/" + facts["asset"]
        for name in ("alice", "bob", "carol"):
            token = node.new_session(name, device=name + " laptop")["access_token"]
            r = node.request("GET", path, token=token)
            self.assertStatus(r, 200, name)
            self.assertEqual(len(r.raw), facts["size"], name)
        dave = node.new_session("dave", device="dave laptop")["access_token"]
        self.assertError(node.request("GET", path, token=dave), 404, "asset_not_found")
        # A restart does not index again; a message sent now is indexed as it is stored.
        node.stop()  # the log is read to its end
        self.assertTrue(any("indexed 2 asset references by conversation" in line
                            for line in node.stderr_lines + node.stdout_lines))
        seen = len(node.stderr_lines), len(node.stdout_lines)
        node.start()
        sd = node.new_session("dave", device="dave phone")
        sa = node.new_session("alice", device="alice phone")
        A = wsclient.connect(node, sa)
        self.addCleanup(A.close)
        frame = A.request({"send": {"to": "dave@test", "client_id": "to dave",
                                    "body": {"attachments": [{"asset_id": facts["asset"]}]}}})
        self.assertIn("accepted", frame, frame)
        self.assertStatus(node.request("GET", path, token=sd["access_token"]), 200)
        A.close()
        node.stop()
        self.assertFalse(any("indexed" in line
                             for line in node.stderr_lines[seen[0]:] + node.stdout_lines[seen[1]:]))


class PushTargetsByWhatTheyPushToTest(NodeTestCase):
    """A data dir of format 5 (made by fixtures/make_store_v5.py with the node of b5dd3a1):
    alice's and bob's old phones registered the same Web Push endpoint and the same Matrix
    pushkey. Format 6 indexes targets by what they push to, which today's node writes for
    an older store at its first start: without it, carol registering them now would leave
    theirs in place and they would go on being pushed to her phone."""

    def test_registering_what_older_targets_push_to_takes_it_from_them(self):
        node, facts = open_upgraded(self, "v5", 5, config={"push": {
            "enabled": True, "allow_networks": ["127.0.0.0/8"], "vapid_subject": "mailto:tests@example.org",
            "max_targets_per_host": 4}})
        listed = lambda name: sorted(t["id"] for t in node.admin(
            "GET", "/v1/admin/push/targets?user=" + name).json["targets"])
        self.assertEqual(listed("alice"), sorted(facts["targets"]["alice"]))
        self.assertEqual(listed("bob"), sorted(facts["targets"]["bob"]))
        # Format 8 indexes them by where they push too: all four go to one host, which may
        # have four (push.max_targets_per_host), so dave's fifth there is refused.
        node.new_user("dave")
        dave = node.new_session("dave")["access_token"]
        other = facts["endpoint"].rsplit("/", 1)[0] + "/daves-own"
        r = node.request("POST", "/v1/push/targets", token=dave, body={
            "kind": "webpush", "endpoint": other, "keys": Subscription().keys()})
        self.assertError(r, 409, "too_many_push_targets")
        token = node.new_session("carol", device="the phone, carol's now")["access_token"]
        r = node.request("POST", "/v1/push/targets", token=token, body={
            "kind": "webpush", "endpoint": facts["endpoint"], "keys": Subscription().keys()})
        self.assertStatus(r, 201)
        r = node.request("POST", "/v1/push/targets", token=token, body={
            "kind": "matrix", "gateway_url": facts["gateway_url"], "app_id": facts["app_id"],
            "pushkey": facts["pushkey"]})
        self.assertStatus(r, 201)
        self.assertEqual((listed("alice"), listed("bob")), ([], []))
        self.assertEqual(len(listed("carol")), 2)
        # Carol's took theirs: the host has two, and room for dave's.
        r = node.request("POST", "/v1/push/targets", token=dave, body={
            "kind": "webpush", "endpoint": other, "keys": Subscription().keys()})
        self.assertStatus(r, 201)
        node.stop()
        self.assertTrue(any("indexed 4 push targets by what they push to and where" in line
                            for line in node.stderr_lines + node.stdout_lines))


if __name__ == "__main__":
    import unittest
    unittest.main()
