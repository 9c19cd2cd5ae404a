"""Read marks against a hostile reader: what a read may cost the node, and that a read still
reads what it should. A read's walk once went past the reader's own messages without end
(up to 2,000 loaded per read, and reads cost nothing), so one account could keep the
region's single store writer busy; and a reader's own messages counted against that walk,
so a read after many of them left the peer's message unread."""

import http.client
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wsclient  # noqa: E402
from harness import REGION, NodeTestCase, _do_request  # noqa: E402
from wsclient import ev_read_mark, ev_receipt  # noqa: E402


class ReadMarksTest(NodeTestCase):

    def people(self, node, *names):
        out = []
        for name in names:
            node.new_user(name)
            c = wsclient.connect(node, node.new_session(name))
            self.addCleanup(c.close)
            out.append(c)
        return out

    def test_a_read_after_many_own_messages_reads_the_peers_message(self):
        node = self.start_node(config={"messages": {"max_per_second": 100000}})
        alice, bob = self.people(node, "alice", "bob")
        m1 = bob.send_message("alice@" + REGION, "one from bob")
        # 2,100 of her own after it: more than a read once walked.
        refs = [alice.send_async("bob@" + REGION, "mine %d" % i) for i in range(2100)]
        last = None
        for ref in refs:
            answer = alice.wait_ref(ref, timeout=60)
            self.assertIn("accepted", answer, answer)
            last = answer["accepted"]
        alice.read(last["conversation_id"], last["message_id"])
        receipt = bob.wait_event(ev_receipt(m1["message_id"], "READ"), timeout=30,
                                 what="bob's message read by alice")
        self.assertEqual(receipt["receipt"]["by"], "alice@" + REGION)
        listed = node.request("GET", "/v1/conversations", token=node.new_session("alice")["access_token"])
        self.assertEqual([c.get("unread_count") for c in listed.json["conversations"]], [0], listed.describe())

    def test_in_a_group_too(self):
        node = self.start_node(config={"messages": {"max_per_second": 100000}})
        alice, bob = self.people(node, "alice", "bob")
        made = node.request("POST", "/v1/conversations", {"title": "two", "members": ["bob@" + REGION]},
                            token=node.new_session("alice")["access_token"])
        self.assertEqual(made.status, 201, made.describe())
        group = made.json["conversation"]["id"]
        first = bob.request({"send": {"client_id": "b1", "conversation_id": group, "body": {"text": "from bob"}}})
        m1 = first["accepted"]["message_id"]
        refs = []
        for i in range(2100):
            refs.append(alice.next_ref())
            alice.send_frame({"ref": refs[-1], "send": {"client_id": "a%d" % i, "conversation_id": group,
                                                        "body": {"text": "mine %d" % i}}})
        for ref in refs:
            answer = alice.wait_ref(ref, timeout=60)
            self.assertIn("accepted", answer, answer)
        alice.read(group, answer["accepted"]["message_id"])
        bob.wait_event(ev_receipt(m1, "READ"), timeout=30, what="bob's group message read by alice")
        # A second read further on walks from there, and reads what came between.
        m2 = bob.request({"send": {"client_id": "b2", "conversation_id": group, "body": {"text": "again"}}})
        m2 = m2["accepted"]["message_id"]
        mine = alice.request({"send": {"client_id": "a-last", "conversation_id": group, "body": {"text": "last"}}})
        alice.read(group, mine["accepted"]["message_id"])
        bob.wait_event(ev_receipt(m2, "READ"), timeout=30, what="bob's second message read by alice")

    def read_answer(self, client, conversation_id, message_id):
        """Sends a read; returns its error frame, or its read_mark event (the confirmation)."""
        ref = client.next_ref()
        client.read(conversation_id, message_id, ref=ref)
        return client.wait_for(lambda f: ("error" in f and wsclient.ref_of(f) == ref) or
                               ev_read_mark(message_id)(f.get("event") or {}), what="read %s answered" % ref)

    def test_a_read_that_moves_the_mark_costs_a_send(self):
        # messages.max_per_second = 1: two at once, then one a second. Reads that move the
        # mark take from the same allowance; a read that moves nothing is free.
        node = self.start_node(config={"messages": {"max_per_second": 1}})
        alice, _ = self.people(node, "alice", "bob")
        refused = None
        for _attempt in range(5):  # a stall of a second between two requests refills one
            accepted = None
            while True:  # spend the allowance
                answer = alice.try_send("bob@" + REGION, "spending")
                if "error" in answer:
                    self.assertEqual(answer["error"]["code"], "rate_limited", answer)
                    break
                accepted = answer["accepted"]
            if accepted is None:
                continue
            answer = self.read_answer(alice, accepted["conversation_id"], accepted["message_id"])
            if "error" in answer:
                refused = answer
                break
        self.assertIsNotNone(refused, "a read that moved the mark was never refused with the allowance spent")
        self.assertEqual(refused["error"]["code"], "rate_limited", refused)
        # Once the allowance is back the same read is stored.
        for _ in range(30):
            answer = self.read_answer(alice, accepted["conversation_id"], accepted["message_id"])
            if "error" not in answer:
                break
            self.assertEqual(answer["error"]["code"], "rate_limited", answer)
            time.sleep(0.5)
        self.assertNotIn("error", answer, "the read was never stored")
        # Reading there again moves nothing and costs nothing, however often.
        refs = []
        for _ in range(5):
            refs.append(alice.next_ref())
            alice.read(accepted["conversation_id"], accepted["message_id"], ref=refs[-1])
        alice.sync()  # a ping's answer: every frame sent before it has been handled
        errors = [f for f in alice.frames() if "error" in f and wsclient.ref_of(f) in refs]
        self.assertEqual(errors, [])


class HistoryCostTest(NodeTestCase):
    """A history page looks past the caller's hidden messages only so far: 10,000 in a row,
    and 8 MiB of them in a row (large hidden messages once cost seconds of parsing per page,
    for any number of pages)."""

    def setUp(self):
        super().setUp()
        self.node = self.start_node(config={"messages": {"max_per_second": 100000}})
        for name in ("alice", "bob"):
            self.node.new_user(name)
        self.session = self.node.new_session("alice")
        self.alice = wsclient.connect(self.node, self.session)
        self.addCleanup(self.alice.close)

    def hidden_run(self, n):
        """n messages of ~19 KB from alice, then hidden for her; their ids."""
        pad = {"pad": "y" * 15000}
        refs = [self.alice.send_async("bob@" + REGION, "x" * 4000, content=pad) for _ in range(n)]
        ids = []
        for ref in refs:
            answer = self.alice.wait_ref(ref, timeout=60)
            self.assertIn("accepted", answer, answer)
            ids.append(answer["accepted"]["message_id"])
        conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=30)
        for mid in ids:
            r = _do_request(conn, "DELETE", "/v1/messages/%s?for=me" % mid, token=self.session["access_token"])
            self.assertEqual(r.status, 204, r.describe())
        conn.close()
        return ids

    def test_a_page_stops_after_8_mib_of_hidden_messages(self):
        node, session = self.node, self.session
        first = self.alice.send_message("bob@" + REGION, "the oldest, still shown")
        ids = self.hidden_run(600)  # about 11 MiB she cannot see, newer than `first`
        path = "/v1/conversations/%s/messages?limit=10" % first["conversation_id"]
        page = node.request("GET", path, token=session["access_token"])
        self.assertEqual(page.status, 200, page.describe())
        self.assertEqual(page.json["messages"], [], "the walk went past 8 MiB of hidden messages")
        self.assertIs(page.json["has_more_before"], False)
        # Paging from just above it still reaches it.
        older = node.request("GET", path + "&before=" + ids[0], token=session["access_token"])
        self.assertEqual([m["id"] for m in older.json["messages"]], [first["message_id"]], older.describe())

    def test_the_8_mib_are_the_pages_not_each_runs(self):
        # Shown messages between runs of hidden ones do not give a page a new budget: one
        # page of 10 would otherwise walk up to 10 runs of 8 MiB. Cut short, the page ends
        # at the last message it shows and says there is more.
        shown = [self.alice.send_message("bob@" + REGION, "shown 1")["message_id"]]
        self.hidden_run(300)  # ~5.5 MiB each run: under the budget alone, over it together
        shown.append(self.alice.send_message("bob@" + REGION, "shown 2")["message_id"])
        self.hidden_run(300)
        shown.append(self.alice.send_message("bob@" + REGION, "shown 3")["message_id"])
        token = self.session["access_token"]
        conversation = self.node.request("GET", "/v1/messages/" + shown[0], token=token).json["conversation_id"]
        path = "/v1/conversations/%s/messages?limit=10" % conversation
        page = self.node.request("GET", path, token=token)
        self.assertEqual([m["id"] for m in page.json["messages"]], shown[1:], page.describe())
        self.assertIs(page.json["has_more_before"], True)
        older = self.node.request("GET", path + "&before=" + shown[1], token=token)
        self.assertEqual([m["id"] for m in older.json["messages"]], shown[:1], older.describe())


if __name__ == "__main__":
    unittest.main()
