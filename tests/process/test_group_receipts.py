"""Group receipts against the rules of docs/PROTOCOL.md ("Receipts in groups"): every
recipient is delivered once and read once per message, whatever order their
acknowledgements and reads come in and however many groups they are in; a member who
reads what was said before they joined (a group with history visible) was no recipient
of it and changes none of its receipts; only current members mark read.

Written from the protocol document only. No sleeps: what must arrive is waited for; what
must not is checked behind a later event of the same stream.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_groups import GroupCase  # noqa: E402
from wsclient import ev_message, ev_read_mark, ev_receipt, num  # noqa: E402


class GroupReceiptRulesTest(GroupCase):

    def counts(self, session, mid):
        r = self.receipts(session, mid)
        self.assertStatus(r, 200)
        return r.json

    def test_reads_after_acknowledgements_in_many_groups_count_once(self):
        # Bob is in twelve groups with alice; one acknowledgement delivers all twelve
        # messages, then he reads each: one DELIVERED and one READ per message, the
        # delivery no later than the read, in every group (more groups than a member's
        # delivered mark keeps in itself).
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        groups = [self.group(a, [bob.id], title="g%d" % i) for i in range(12)]
        mids = [self.send_to(A, gid, "hello %d" % i)["message_id"] for i, gid in enumerate(groups)]
        seqs = [num(B.wait_event(ev_message(mid)), "seq") for mid in mids]
        B.ack(max(seqs), wait=True)
        for mid in mids:
            A.wait_event(ev_receipt(mid, "DELIVERED"))
        for gid, mid in zip(groups, mids):
            B.read(gid, mid)
            B.wait_event(ev_read_mark(mid))
            A.wait_event(ev_receipt(mid, "READ"))
        # Fence: a later message to bob's stream, acknowledged and read, has its receipts;
        # every receipt before it has arrived too.
        last = self.send_to(A, groups[0], "fence")["message_id"]
        B.ack(num(B.wait_event(ev_message(last)), "seq"), wait=True)
        A.wait_event(ev_receipt(last, "DELIVERED"))
        for gid, mid in zip(groups, mids):
            got = [e["receipt"].get("status") for e in A.events()
                   if "receipt" in e and e["receipt"].get("message_id") == mid]
            self.assertEqual(got, ["DELIVERED", "READ"], "receipts of %s in %s" % (mid, gid))
            body = self.counts(a, mid)
            self.assertEqual((body.get("recipients"), body.get("delivered_count"), body.get("read_count")), (1, 1, 1),
                             body)
            (m,) = body["members"]
            self.assertEqual(m.get("user_id"), bob.id)
            self.assertNotEqual(m.get("delivered_at_ms"), "0", m)
            self.assertLessEqual(int(m["delivered_at_ms"]), int(m["read_at_ms"]), m)

        # A second round the other way round in half of them: read first, then the
        # acknowledgement; the same single DELIVERED and READ each.
        again = [self.send_to(A, gid, "again")["message_id"] for gid in groups[:6]]
        seqs = [num(B.wait_event(ev_message(mid)), "seq") for mid in again]
        for gid, mid in zip(groups, again):
            B.read(gid, mid)
            B.wait_event(ev_read_mark(mid))
            A.wait_event(ev_receipt(mid, "READ"))
        B.ack(max(seqs), wait=True)
        fence = self.send_to(A, groups[0], "fence again")["message_id"]
        B.ack(num(B.wait_event(ev_message(fence)), "seq"), wait=True)
        A.wait_event(ev_receipt(fence, "DELIVERED"))
        for mid in again:
            got = [e["receipt"].get("status") for e in A.events()
                   if "receipt" in e and e["receipt"].get("message_id") == mid]
            self.assertEqual(got, ["DELIVERED", "READ"], mid)
            body = self.counts(a, mid)
            self.assertEqual((body.get("delivered_count"), body.get("read_count")), (1, 1), body)

    def test_history_read_from_before_joining_changes_no_receipt(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A, B, C = self.ws(a), self.ws(b), self.ws(c)
        gid = self.group(a, [bob.id], title="open past", history_visible=True)
        before = self.send_to(A, gid, "before carol")["message_id"]
        B.ack(num(B.wait_event(ev_message(before)), "seq"), wait=True)
        A.wait_event(ev_receipt(before, "DELIVERED"))
        self.assertStatus(self.add_members(a, gid, [carol.id]), 200)
        # Carol reads up to the message from before she came: her read mark moves, the
        # message's receipts stay bob's alone.
        C.read(gid, before)
        C.wait_event(ev_read_mark(before))
        self.assertEqual(self.summary(c, gid).get("unread_count"), 0)
        after = self.send_to(A, gid, "after carol")["message_id"]
        for R in (B, C):
            R.ack(num(R.wait_event(ev_message(after)), "seq"), wait=True)
        C.read(gid, after)
        C.wait_event(ev_read_mark(after))
        A.wait_event(ev_receipt(after, "READ"))
        body = self.counts(a, before)
        self.assertEqual((body.get("recipients"), body.get("delivered_count"), body.get("read_count")), (1, 1, 0),
                         body)
        self.assertEqual([m.get("user_id") for m in body["members"]], [bob.id])
        self.assertFalse([e for e in A.events() if "receipt" in e and e["receipt"].get("message_id") == before
                          and e["receipt"].get("by") == carol.id], "no receipt by carol for a message before her")
        body = self.counts(a, after)
        self.assertEqual((body.get("recipients"), body.get("delivered_count"), body.get("read_count")), (2, 2, 1),
                         body)


    def test_only_current_members_mark_read(self):
        # Membership is checked against the reader's own part in the group: a user never
        # in it and a member removed from it are refused, and their reads count nowhere.
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a, b, c, d = alice.login(), bob.login(), carol.login(), dave.login()
        A, B, C, D = self.ws(a), self.ws(b), self.ws(c), self.ws(d)
        gid = self.group(a, [bob.id, carol.id], title="members only")
        mid = self.send_to(A, gid, "hello")["message_id"]
        for R in (B, C):
            R.ack(num(R.wait_event(ev_message(mid)), "seq"), wait=True)
        self.assertStatus(self.remove_member(a, gid, bob.id), 204)
        for R in (D, B):
            ref = R.next_ref()
            R.read(gid, mid, ref=ref)
            self.assertWsError(R.wait_ref(ref), "conversation_not_found", ref)
        C.read(gid, mid)
        C.wait_event(ev_read_mark(mid))
        A.wait_event(ev_receipt(mid, "READ"))
        body = self.counts(a, mid)
        self.assertEqual((body.get("recipients"), body.get("delivered_count"), body.get("read_count")), (2, 2, 1),
                         body)
        self.assertEqual({m["user_id"]: m["read_at_ms"] != "0" for m in body["members"]},
                         {bob.id: False, carol.id: True})

if __name__ == "__main__":
    unittest.main()
