"""A member's events of group messages sent in one burst, against docs/PROTOCOL.md: every
stream resumes after exactly the seq it names, acknowledgements that end anywhere deliver
each message once, messages deleted for everyone or expired in the middle of a burst go
and the rest stay, and seqs are never handed out twice, also after kill -9.

The sends of a burst are written to the stream without waiting for their answers, so
that the node commits several of them together (the store keeps a member's events of one
commit under one key: docs/ARCHITECTURE.md, "Groups: store once, point many"). What is
asserted holds however the node batches them.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_groups import GroupCase  # noqa: E402
from wsclient import ev_deleted, ev_message, ev_receipt, num  # noqa: E402

BURST = 40


class MailboxRunsTest(GroupCase):

    NODE_CONFIG = {"messages": {"expiry_sweep_interval_ms": 100, "max_per_second": 100000}}

    def burst(self, client, gid, n=BURST, ttl_of=lambda i: None, others=()):
        """Sends n messages from `client` (and from each of `others`, in turn) without
        waiting in between; returns their ids in the order each client sent them."""
        clients = (client,) + tuple(others)
        refs = {c: [] for c in clients}
        for i in range(n):
            for c in clients:
                ref = c.next_ref()
                c.send_frame({"ref": ref, "send": self.group_send_body(gid, "burst %d" % i, ttl_s=ttl_of(i))})
                refs[c].append(ref)
        out = []
        for c in clients:
            for ref in refs[c]:
                f = c.wait_ref(ref)
                self.assertIn("accepted", f, f)
                out.append(f["accepted"]["message_id"])
        return out

    def seqs_of(self, client, mids):
        return [num(client.wait_event(ev_message(mid)), "seq") for mid in mids]

    def resumed(self, session, after, fence):
        """The message events (seq, id) a stream resuming after `after` gets, up to `fence`."""
        c = self.ws(session, after_seq=after)
        c.wait_event(ev_message(fence))
        got = [(num(e, "seq"), e["message"]["id"]) for e in c.events() if "message" in e]
        c.close()
        return got

    def test_every_resumption_point_gets_exactly_the_rest(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A = self.ws(a)
        gid = self.group(a, [bob.id])
        B = self.ws(b)
        mids = self.burst(A, gid)
        seqs = self.seqs_of(B, mids)
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + BURST)), "one gapless stretch of seqs")
        expected = list(zip(seqs, mids))
        for k in range(-1, BURST - 1):  # after the last: checked below behind a fence
            after = seqs[0] - 1 if k < 0 else seqs[k]
            self.assertEqual(self.resumed(b, after, mids[-1]), expected[k + 1:], "resuming after seq %d" % after)
        fence = self.send_to(A, gid, "fence")["message_id"]
        self.assertEqual(self.resumed(b, seqs[-1], fence), [(seqs[-1] + 1, fence)])

    def test_bursts_of_two_senders_arrive_in_order_once(self):
        # Alice and carol send bursts at the same time: their sends share commits, and each
        # member's stream gets every event once, in seq order, without gaps.
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A = self.ws(a)
        gid = self.group(a, [bob.id, carol.id])
        B, C = self.ws(b), self.ws(c)
        mids = set(self.burst(A, gid, others=(C,)))
        for stream in (A, B, C):
            for mid in mids:
                stream.wait_event(ev_message(mid))
            got = [(num(e, "seq"), e["message"]["id"]) for e in stream.events()
                   if "message" in e and e["message"]["id"] in mids]
            seqs = [s for s, _ in got]
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + 2 * BURST)), "in order, no gaps, once each")
            self.assertEqual({m for _, m in got}, mids)

    def test_acknowledgements_ending_anywhere_deliver_each_message_once(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A = self.ws(a)
        gid = self.group(a, [bob.id, carol.id])
        B, C = self.ws(b), self.ws(c)
        mids = self.burst(A, gid)
        seqs = self.seqs_of(B, mids)
        self.seqs_of(C, mids)
        # Bob acknowledges in uneven steps, ending inside and at the ends of whatever the
        # node stored together; carol never acknowledges.
        at = 0
        for step in (1, 3, 7, 2, 11, 5, 1, 4, 6):
            at = min(at + step, BURST)
            B.ack(seqs[at - 1], wait=True)
        for mid in mids:
            A.wait_event(ev_receipt(mid, "DELIVERED"))
        fence = self.send_to(A, gid, "fence")["message_id"]
        B.ack(num(B.wait_event(ev_message(fence)), "seq"), wait=True)
        A.wait_event(ev_receipt(fence, "DELIVERED"))
        for mid in mids:
            got = [(e["receipt"].get("status"), e["receipt"].get("by")) for e in A.events()
                   if "receipt" in e and e["receipt"].get("message_id") == mid]
            self.assertEqual(got, [("DELIVERED", bob.id)], "receipts of %s" % mid)
            r = self.receipts(a, mid)
            self.assertStatus(r, 200)
            self.assertEqual((r.json.get("delivered_count"), r.json.get("read_count")), (1, 0), r.json)

    def test_deleted_and_expired_messages_leave_the_rest_of_a_burst(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A = self.ws(a)
        gid = self.group(a, [bob.id])
        B = self.ws(b)
        # Every third message lives one second; two others are deleted for everyone.
        mids = self.burst(A, gid, ttl_of=lambda i: 1 if i % 3 == 0 else None)
        seqs = self.seqs_of(B, mids)
        deleted = [mids[4], mids[5]]
        for mid in deleted:
            self.assertStatus(self.delete_message(a, mid, "everyone"), 204)
            B.wait_event(ev_deleted(mid))
        expired = [mid for i, mid in enumerate(mids) if i % 3 == 0]
        kept = [(s, mid) for s, mid in zip(seqs, mids) if mid not in deleted and mid not in expired]
        # Once they have expired (the sweep, every 100 ms, erases them from their runs), a
        # stream from before the burst gets the rest, in order, once each.
        deadline = time.monotonic() + 30
        while True:
            fence = self.send_to(A, gid, "fence %f" % time.monotonic())["message_id"]
            got = self.resumed(b, seqs[0] - 1, fence)
            if [m for _, m in got if m in expired] == [] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual([x for x in got if x[1] in mids], kept)
        self.assertEqual(len({s for s, _ in got}), len(got), "no seq twice")

        # Deleting the rest of the burst leaves none of it; the seqs go on after it, also
        # after a kill -9.
        for _, mid in kept:
            self.assertStatus(self.delete_message(a, mid, "everyone"), 204)
        fence = self.send_to(A, gid, "after the burst")["message_id"]
        got = self.resumed(b, seqs[0] - 1, fence)
        self.assertEqual([m for _, m in got if m in mids], [])
        last = max(s for s, _ in got)
        self.node.kill9()
        self.node.start()
        A = self.ws(alice.login())
        B = self.ws(bob.login(), after_seq=last)
        nxt = self.send_to(A, gid, "after the restart")["message_id"]
        self.assertEqual(num(B.wait_event(ev_message(nxt)), "seq"), last + 1)


if __name__ == "__main__":
    unittest.main()
