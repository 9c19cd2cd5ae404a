"""Groups across regions, the rules test_groups_federation.py does not cover
(docs/FEDERATION.md, "Groups across regions"; docs/PROTOCOL.md, "Conversations and groups"):
one message body per destination region, whatever its members; settings (TTL, history
visible to new members) set by an admin of another region and applied by every region;
READ receipts and count receipts across regions; sends racing a removal; per-member errors
of queued requests and their refusals, told to the requester; requests made while their
region is cut off, or while the home region is down or killed.

Written from the documents only (and the wire format of proto/federation.proto, which a
spy on the shared nats-server decodes). Regions: HOME ("europe", where the groups are
created), B ("america") and C ("asia"). No sleeps: see test_groups_federation.py.
"""

import collections
import os
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import test_federation  # noqa: E402
from test_groups import as_int, change_versions, changes, cpath, ev_change  # noqa: E402
from test_groups_federation import (B, C, CROSS_S, HEAL_S, HOME, GroupFederationCase,  # noqa: E402
                                    first_group_event, group_messages, region_of)
from wsclient import ev_message, ev_read_mark, ev_receipt, num  # noqa: E402


def bodies_on_the_wire(spy, pb, want, seen, timeout):
    """Reads envelopes from `spy` (subscribed to every durable federation subject) into
    `seen`: (origin, destination, message id) -> the lane seqs of the message bodies that
    carried it (a resend repeats its lane seq), until every key in `want` was seen."""
    deadline = time.monotonic() + timeout
    while not want <= set(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("never saw bodies for %s" % sorted(want - set(seen)))
        _, data = spy.next_msg(timeout=left)
        env = pb.envelope()
        env.ParseFromString(data)
        bundle = pb.bundle()
        bundle.ParseFromString(env.body)
        for raw in bundle.bodies:
            body = pb.body()
            body.ParseFromString(raw)
            if body.WhichOneof("kind") == "message":
                seen[(body.origin, body.destination, body.message.id)].add(body.lane_seq)


class GroupRulesAcrossRegions(GroupFederationCase):
    # Count receipts above 2 recipients, so that a small group shows them.
    node_config = {"messages": {"max_per_second": 5000, "group_receipt_events_max_members": 2}}

    def test_one_message_body_per_destination_region(self):
        a1 = self.user(HOME, "anna")
        bs = [self.user(B, "bea") for _ in range(4)]
        cs = [self.user(C, "cai") for _ in range(3)]
        A, Sb, Sc = self.connect(a1), self.connect(bs[0]), self.connect(cs[0])
        gid = self.create_group(a1, bs + cs, title="seven abroad")
        self.wait_changes([A, Sb, Sc], gid, 1, "CREATED")

        pb = test_federation.fed_pb2()
        spy = test_federation.RawNats(self.servers[0].port)
        self.addCleanup(spy.close)
        spy.sub("petchat.v1.fed.*.*")
        from_home = [self.send_to(A, gid) for _ in range(3)]
        from_b = [self.send_to(Sb, gid) for _ in range(2)]
        self.wait_messages([A, Sb, Sc], [x["message_id"] for x in from_home + from_b])
        # Fences: each origin's next message. Envelopes of one origin reach the spy in the
        # order they were published, so once the fences' bodies are seen, every body of the
        # earlier messages has been seen too (however many there were).
        fences = {HOME: self.send_to(A, gid, "fence"), B: self.send_to(Sb, gid, "fence")}
        want = set()
        for origin, sent in ((HOME, from_home + [fences[HOME]]), (B, from_b + [fences[B]])):
            for x in sent:
                for dest in {HOME, B, C} - {origin}:
                    want.add((origin, dest, x["message_id"]))
        seen = collections.defaultdict(set)
        bodies_on_the_wire(spy, pb, want, seen, CROSS_S)

        # Four members in B and three in C: still one body per message and region.
        for origin, sent in ((HOME, from_home), (B, from_b)):
            for x in sent:
                got = {k[1]: sorted(v) for k, v in seen.items() if k[0] == origin and k[2] == x["message_id"]}
                self.assertEqual(sorted(got), sorted({HOME, B, C} - {origin}),
                                 "regions that got a body of %s's message" % origin)
                for dest, lanes in got.items():
                    self.assertEqual(len(lanes), 1, "bodies of one message from %s to %s: lane seqs %s"
                                     % (origin, dest, lanes))
        # And each destination fanned it out to every member there.
        for u in bs + cs:
            r = self.call(u, "GET", cpath(gid, "messages"))
            self.assertStatus(r, 200, "history of %s" % u)
            ids = [m["id"] for m in r.json["messages"]]
            for x in from_home + from_b:
                self.assertIn(x["message_id"], ids, "%s's history" % u)

    def test_settings_changed_by_an_admin_of_another_region_apply_everywhere(self):
        a1, a2 = self.user(HOME, "anna"), self.user(HOME, "axel")
        b1 = self.user(B, "bert")
        c1, c2 = self.user(C, "chen"), self.user(C, "cora")
        S = {u: self.connect(u) for u in (a1, a2, b1, c1, c2)}
        gid = self.create_group(a1, [a2, b1, c1], title="settings")                               # v1
        self.assertStatus(self.set_role(a1, gid, b1, "admin"), 200)                              # v2
        self.assertStatus(self.set_role(a1, gid, a2, "admin"), 200)                              # v3
        self.wait_change(S[b1], gid, 3, "ROLE_CHANGED")

        # Bert (admin, region B) changes the description, then TTL and history visibility:
        # each asked for through B, made at home, told to every member in every region.
        self.assertQueued(self.patch(b1, gid, description="asked for in america"))               # v4
        self.assertQueued(self.patch(b1, gid, ttl_s=60, history_visible=True))                   # v5
        for u in (a1, a2, b1, c1):
            cc = self.wait_change(S[u], gid, 4)
            self.assertChange(cc, gid, 4, "DETAILS_CHANGED", b1)
            self.assertEqual((cc.get("title"), cc.get("description")), ("settings", "asked for in america"), cc)
            cc = self.wait_change(S[u], gid, 5)
            self.assertChange(cc, gid, 5, "SETTINGS_CHANGED", b1)
            self.assertEqual((cc.get("ttl_s"), cc.get("history_visible")), (60, True), cc)
        for u in (a1, b1, c1):
            det = self.details(u, gid)
            self.assertEqual((det.get("ttl_s"), det.get("history_visible"), det.get("description")),
                             (60, True, "asked for in america"), "details at the region of %s" % u)

        # Every region applies the group's TTL to its own members' sends, and the copies in
        # the other regions carry it.
        sent = {u: self.send_to(S[u], gid, "lives a minute, from %s" % u) for u in (a1, b1, c1)}
        for sender, x in sent.items():
            for u in (a1, a2, b1, c1):
                m = S[u].wait_event(ev_message(x["message_id"]), CROSS_S)["message"]
                self.assertEqual(num(m, "expires_at_ms") - num(m, "sent_at_ms"), 60000,
                                 "%s's message on the stream of %s: %s" % (sender, u, m))

        # History visible: cora (region C), added by bert through B, sees what was said
        # before she came, from her own region's copy.
        self.assertQueued(self.add_members(b1, gid, [c2]))                                       # v6
        self.wait_change(S[c2], gid, 6, "MEMBERS_ADDED")
        r = self.call(c2, "GET", cpath(gid, "messages"))
        self.assertStatus(r, 200)
        self.assertEqual(sorted(m["id"] for m in r.json["messages"]), sorted(x["message_id"] for x in sent.values()))
        self.assertEqual(first_group_event(S[c2], gid), ("change", 6, "MEMBERS_ADDED"),
                         "the earlier messages are history, not events of hers")

        # An admin at home (not the owner) turns the TTL off: 200 at once, and the default
        # lifetime again in every region.
        r = self.patch(a2, gid, ttl_s=0)                                                          # v7
        self.assertStatus(r, 200, "an admin at home changes a setting")
        self.assertEqual(r.json.get("ttl_s"), 0, r.describe())
        self.wait_changes([S[u] for u in (a1, b1, c1, c2)], gid, 7, "SETTINGS_CHANGED")
        x = self.send_to(S[c2], gid, "lives as long as any message")
        m = S[a1].wait_event(ev_message(x["message_id"]), CROSS_S)["message"]
        self.assertEqual(num(m, "expires_at_ms") - num(m, "sent_at_ms"), 2592000 * 1000, m)
        # A plain member's request is refused by their own region, at once.
        self.assertError(self.patch(c1, gid, ttl_s=5), 403, "forbidden_role", "a member of C")
        self.assertEqual([v for v, _ in change_versions(S[a1], gid)], [1, 2, 3, 4, 5, 6, 7])
        self.assertEqual(changes(S[c1], gid), changes(S[a1], gid), "the same changes at home and in C")

    def test_read_receipts_and_read_marks_across_regions(self):
        a1, b1, c1 = self.user(HOME, "anna"), self.user(B, "bert"), self.user(C, "chen")
        A, Sc = self.connect(a1), self.connect(c1)
        Sb1, Sb2 = self.connect(b1), self.connect(b1, session=self.session(b1, device="tablet"))
        gid = self.create_group(a1, [b1, c1], title="two recipients")  # per-member receipts
        self.wait_changes([Sb1, Sc], gid, 1, "CREATED")
        m1 = self.send_to(A, gid, "first")["message_id"]
        m2 = self.send_to(A, gid, "second")["message_id"]
        for cl in (Sb1, Sb2, Sc):
            cl.wait_event(ev_message(m2), CROSS_S)

        # Bert reads up to m2 on one device (without acknowledging): his other device gets
        # the read mark; anna gets DELIVERED by bert for both messages and READ for the
        # newest (as within a region: it stands for the first, which her region records as
        # read all the same, below).
        Sb1.read(gid, m2)
        for cl in (Sb1, Sb2):
            self.assertEqual(cl.wait_event(ev_read_mark(m2))["read_mark"].get("conversation_id"), gid)
        for mid, status in ((m1, "DELIVERED"), (m2, "DELIVERED"), (m2, "READ")):
            r = A.wait_event(lambda e, mid=mid, status=status: ev_receipt(mid, status)(e)
                             and e["receipt"].get("by") == b1, CROSS_S,
                             what="%s by bert of %s" % (status, mid))["receipt"]
            self.assertEqual(r.get("conversation_id"), gid, r)
        # Chen acknowledges both and reads only the first.
        Sc.ack(Sc.max_seq(), wait=True)
        Sc.read(gid, m1)
        Sc.wait_event(ev_read_mark(m1))
        A.wait_event(lambda e: ev_receipt(m1, "READ")(e) and e["receipt"].get("by") == c1, CROSS_S,
                     what="READ by chen of the first")
        A.wait_event(lambda e: ev_receipt(m2, "DELIVERED")(e) and e["receipt"].get("by") == c1, CROSS_S,
                     what="DELIVERED by chen of the second")

        want = {m1: (2, 2, {b1: (True, True), c1: (True, True)}),
                m2: (2, 1, {b1: (True, True), c1: (True, False)})}
        for mid, (delivered, read, members) in want.items():
            r = self.receipts(a1, mid)
            self.assertStatus(r, 200)
            self.assertEqual((r.json.get("recipients"), r.json.get("delivered_count"), r.json.get("read_count")),
                             (2, delivered, read), r.describe())
            self.assertEqual({e["user_id"]: (e["delivered_at_ms"] != "0", e["read_at_ms"] != "0")
                              for e in r.json["members"]}, members, r.describe())
        # Each reader's own region keeps their read mark and unread count.
        for u, mark, unread in ((b1, m2, 0), (c1, m1, 1)):
            s = self.details(u, gid)
            self.assertEqual((s.get("read_mark"), s.get("unread_count")), (mark, unread), "%s: %s" % (u, s))
        # Fence (a later message from home, on the same lanes as m1 and m2): one READ per
        # reader, for the newest message their read covered, nothing more.
        fence = self.send_to(A, gid, "fence")["message_id"]
        Sb1.wait_event(ev_message(fence), CROSS_S)
        Sc.wait_event(ev_message(fence), CROSS_S)
        reads = sorted((e["receipt"]["message_id"], e["receipt"]["by"]) for e in A.events()
                       if "receipt" in e and e["receipt"].get("status") == "READ")
        self.assertEqual(reads, sorted([(m2, b1), (m1, c1)]))

    def test_count_receipts_across_regions(self):
        a1, a2 = self.user(HOME, "anna"), self.user(HOME, "axel")
        others = [a2, self.user(B, "bert"), self.user(B, "beth"), self.user(C, "chen"), self.user(C, "cora")]
        A = self.connect(a1)
        R = {u: self.connect(u) for u in others}
        gid = self.create_group(a1, others, title="five recipients")  # above 2: count receipts
        self.wait_changes(R.values(), gid, 1, "CREATED")
        mid = self.send_to(A, gid, "to five in three regions")["message_id"]
        for cl in R.values():
            cl.wait_event(ev_message(mid), CROSS_S)

        def counts(status, field):
            return [num(e["receipt"], field) for e in A.events() if ev_receipt(mid, status)(e)]

        # Acknowledgements from three regions, in any order: the count goes up one by one,
        # with receipts at 1, 2, 4 and 5 (all), naming nobody.
        for cl in R.values():
            cl.ack(cl.max_seq())
        A.wait_event(lambda e: ev_receipt(mid, "DELIVERED")(e) and num(e["receipt"], "delivered_count") == 5,
                     CROSS_S, what="DELIVERED count receipt at 5")
        self.assertEqual(counts("DELIVERED", "delivered_count"), [1, 2, 4, 5])
        for cl in R.values():
            cl.read(gid, mid)
        A.wait_event(lambda e: ev_receipt(mid, "READ")(e) and num(e["receipt"], "read_count") == 5,
                     CROSS_S, what="READ count receipt at 5")
        self.assertEqual(counts("READ", "read_count"), [1, 2, 4, 5])
        for e in A.events():
            if ev_receipt(mid)(e):
                self.assertEqual(e["receipt"].get("by", ""), "", e)
                self.assertEqual(num(e["receipt"], "recipients"), 5, e)
        r = self.receipts(a1, mid)
        self.assertStatus(r, 200)
        self.assertEqual((r.json.get("recipients"), r.json.get("delivered_count"), r.json.get("read_count")),
                         (5, 5, 5), r.describe())
        self.assertEqual([e.get("user_id") for e in r.json["members"]], others)

    def test_sends_racing_a_removal_made_in_another_region(self):
        """Bert (region B) sends a burst while the owner removes him at home. B accepts his
        sends until it applies the removal and refuses the rest (not_a_member). Every
        region keeps all that B accepted, in order: B's members get them all before the
        removal; another region may get some after it (sent before B learnt of it: each
        carries the group's version at B then, older than the removal's)."""
        a1, b1, b2, c1 = self.user(HOME, "anna"), self.user(B, "bert"), self.user(B, "beth"), self.user(C, "chen")
        S = {u: self.connect(u) for u in (a1, b1, b2, c1)}
        gid = self.create_group(a1, [b1, b2, c1], title="race across regions")                  # v1
        self.wait_changes(S.values(), gid, 1, "CREATED")
        refs, texts = [], []
        removal = None
        for i in range(150):  # pipelined: B takes them as they come, while the removal travels
            ref = S[b1].next_ref()
            texts.append("racing %d" % i)
            S[b1].send_frame({"ref": ref, "send": {"client_id": uuid.uuid4().hex, "conversation_id": gid,
                                                   "body": {"text": texts[-1]}}})
            refs.append(ref)
            if i == 5:
                removal = threading.Thread(target=lambda: self.remove_member(a1, gid, b1))        # v2
                removal.start()
        removal.join()
        answers = [S[b1].wait_ref(ref) for ref in refs]
        accepted = [t for t, a in zip(texts, answers) if "accepted" in a]
        self.assertEqual([t for t, a in zip(texts, answers) if "accepted" in a], texts[:len(accepted)],
                         "B accepts until it applies the removal, then refuses")
        for a in answers[len(accepted):]:
            self.assertEqual((a.get("error") or {}).get("code"), "not_a_member", a)
        self.wait_changes(S.values(), gid, 2, "MEMBER_REMOVED")

        # Fences: beth's message follows bert's on the lanes B -> home and B -> C; anna's
        # direct message to bert follows the removal on the lane home -> B.
        fence = self.send_to(S[b2], gid, "beth, after the race")["message_id"]
        self.wait_messages([S[a1], S[b2], S[c1]], [fence])
        direct = S[a1].send_message(b1, "direct, after the race")["message_id"]
        S[b1].wait_event(ev_message(direct), CROSS_S)
        for u in (a1, b1, b2, c1):
            log = []
            for e in S[u].events():
                if ev_change(gid)(e):
                    log.append(("change", num(e["conversation_change"], "version")))
                elif "message" in e and e["message"].get("conversation_id") == gid:
                    log.append((e["message"].get("from"), (e["message"].get("body") or {}).get("text")))
            cut = log.index(("change", 2))
            self.assertEqual([t for who, t in log if who == b1], accepted, "bert's messages on the stream of %s" % u)
            if region_of(u) == B:  # B wrote all it accepted to its members' mailboxes before applying the removal
                self.assertNotIn(b1, [who for who, _ in log[cut + 1:]], "bert's messages after the removal (%s)" % u)
            others = [t for who, t in log[cut + 1:] if who not in ("change", b1)]
            self.assertEqual(others, [] if u == b1 else ["beth, after the race"], u)

    def test_per_member_errors_and_refusals_of_queued_requests(self):
        a1 = self.user(HOME, "anna")
        b1, b2 = self.user(B, "bert"), self.user(B, "beth")
        c1 = self.user(C, "chen")
        S = {u: self.connect(u) for u in (a1, b1, b2, c1)}
        gid = self.create_group(a1, [b1], title="who can be added")                               # v1
        self.assertStatus(self.set_role(a1, gid, b1, "admin"), 200)                              # v2
        self.wait_change(S[b1], gid, 2, "ROLE_CHANGED")
        ghost = "ghost%d" % (uuid.uuid4().int % 10 ** 8)

        # At home: each member that cannot be added is reported, the others are added.
        r = self.add_members(a1, gid, [ghost, "someone@nowhere", "Not A Name!", c1])            # v3
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("added"), [c1], r.describe())
        failed = {f["user_id"]: f["code"] for f in r.json.get("failed") or []}
        self.assertEqual(failed, {ghost + "@" + HOME: "user_not_found", "someone@nowhere": "user_not_found",
                                  "Not A Name!": "user_not_found"}, r.describe())
        self.wait_change(S[b1], gid, 3, "MEMBERS_ADDED")  # B's replica has chen as a member (below)

        # Through B: B reports what it can check (ids, regions, its own users, members
        # already) with the 202; home checks its own users and adds the rest.
        r = self.add_members(b1, gid, ["ghost%d" % (uuid.uuid4().int % 10 ** 8), "x@nowhere", b2.split("@")[0],
                                       ghost + "@" + HOME, c1])                                  # v4
        self.assertQueued(r)
        add_id = r.json.get("request_id")
        self.assertIsInstance(add_id, str, r.describe())
        failed = [(f["user_id"].split("@")[1], f["code"]) for f in r.json.get("failed") or []]
        want = [(C, "already_member"), (B, "user_not_found"), ("nowhere", "user_not_found")]
        self.assertEqual(sorted(failed), sorted(want), r.describe())
        for u in (a1, b1, b2, c1):
            cc = self.wait_change(S[u], gid, 4)
            self.assertChange(cc, gid, 4, "MEMBERS_ADDED", b1, users=[b2])
        self.assertEqual(self.roles(self.details(c1, gid)), {a1: "owner", b1: "admin", c1: "member", b2: "member"})
        # Home could not add its unknown user: bert is told, naming his request.
        rr = S[b1].wait_event(lambda e: "request_refused" in e, CROSS_S, what="request_refused")["request_refused"]
        self.assertEqual((rr.get("conversation_id"), rr.get("request_id"), rr.get("code", "")), (gid, add_id, ""), rr)
        self.assertEqual([(f.get("user_id"), f.get("code")) for f in rr.get("failed") or []],
                         [(ghost + "@" + HOME, "user_not_found")], rr)
        self.assertGreater(num(rr, "at_ms"), 0, rr)

        # A request that home refuses whole (an admin may not remove the owner): only the
        # requester hears of it, with the code home would have answered.
        r = self.remove_member(b1, gid, a1)
        self.assertQueued(r, "an admin asks to remove the owner")
        remove_id = r.json.get("request_id")
        self.assertNotEqual(remove_id, add_id)
        rr = S[b1].wait_event(lambda e: "request_refused" in e and e["request_refused"].get("request_id") == remove_id,
                              CROSS_S, what="the removal's request_refused")["request_refused"]
        self.assertEqual((rr.get("conversation_id"), rr.get("code"), rr.get("failed", [])),
                         (gid, "forbidden_role", []), rr)
        self.assertTrue(rr.get("message"), rr)
        # Fence: a later change by bert, made at home after the refusal (home -> B, home -> C).
        self.assertQueued(self.patch(b1, gid, title="still here"))                               # v5
        for u in (a1, b1, b2, c1):
            self.wait_change(S[u], gid, 5, "DETAILS_CHANGED")
        self.assertEqual(len([e for e in S[b1].events() if "request_refused" in e]), 2)
        for u in (a1, b2, c1):
            self.assertEqual([e for e in S[u].events() if "request_refused" in e], [], u)
            self.assertEqual([v for v, _ in change_versions(S[u], gid)][-2:], [4, 5], u)
        # Nobody left to ask for: B answers as home does, 200 with nobody added.
        r = self.add_members(b1, gid, [a1, b2, "y@nowhere"])
        self.assertStatus(r, 200, "an add of members only")
        self.assertEqual(r.json.get("added"), [], r.describe())
        self.assertEqual(sorted((f["user_id"], f["code"]) for f in r.json.get("failed") or []),
                         sorted([(a1, "already_member"), (b2, "already_member"), ("y@nowhere", "user_not_found")]))
        self.assertEqual(as_int((r.json.get("conversation") or {}).get("version")), 5, r.describe())


# =========================================================================================
# Requests in flight: the requester's region cut off (leaf topology), the home region
# down or killed.


class GroupRequestsInFlight(GroupFederationCase):
    topology = staticmethod(fedharness.leaf_topology)

    def test_requests_made_while_cut_off_are_applied_after_home_changes_in_home_order(self):
        a1 = self.user(HOME, "anna")
        b1, b2 = self.user(B, "bert"), self.user(B, "beth")
        c1, c2 = self.user(C, "chen"), self.user(C, "cora")
        S = {u: self.connect(u) for u in (a1, b1, b2, c1, c2)}
        gid = self.create_group(a1, [b1, c1], title="before the cut")                            # v1
        self.assertStatus(self.set_role(a1, gid, b1, "admin"), 200)                              # v2
        self.wait_changes([S[b1], S[c1]], gid, 2, "ROLE_CHANGED")

        self.regions[B].nats.stop()
        try:
            # Bert asks for two changes while his region is cut off: queued durably.
            self.assertQueued(self.add_members(b1, gid, [b2]))
            self.assertQueued(self.patch(b1, gid, title="asked for while cut off"))
            # Home goes on with its own change, which C applies.
            r = self.add_members(a1, gid, [c2])                                                   # v3
            self.assertStatus(r, 200)
            self.wait_changes([S[c1], S[c2]], gid, 3, "MEMBERS_ADDED")
            self.assertEqual(as_int(self.details(b1, gid).get("version")), 2, "B's replica is cut off")
        finally:
            self.regions[B].nats.start()

        # B returns: home makes bert's changes after its own, in the order he asked.
        for u in (a1, b1, c1, c2):
            self.wait_change(S[u], gid, 5, "DETAILS_CHANGED", HEAL_S)
        self.wait_change(S[b2], gid, 5, "DETAILS_CHANGED", HEAL_S)
        ref = {num(x, "version"): x for x in changes(S[a1], gid)}
        self.assertChange(ref[3], gid, 3, "MEMBERS_ADDED", a1, users=[c2])
        self.assertChange(ref[4], gid, 4, "MEMBERS_ADDED", b1, users=[b2])
        self.assertChange(ref[5], gid, 5, "DETAILS_CHANGED", b1)
        self.assertEqual(ref[5].get("title"), "asked for while cut off")
        self.assertSameChanges(gid, [S[u] for u in (a1, b1, c1)], [1, 2, 3, 4, 5])
        self.assertSameChanges(gid, [S[c2]], [3, 4, 5])
        self.assertSameChanges(gid, [S[b2]], [4, 5])
        self.assertEqual(first_group_event(S[b2], gid), ("change", 4, "MEMBERS_ADDED"))

    def test_requests_wait_for_a_home_that_is_down_or_killed(self):
        a1 = self.user(HOME, "anna")
        b1, b2, b3 = self.user(B, "bert"), self.user(B, "beth"), self.user(B, "bodo")
        c1, c2 = self.user(C, "chen"), self.user(C, "cora")
        S = {u: self.connect(u) for u in (b1, b2, b3, c1, c2)}
        gid = self.create_group(a1, [b1, c1], title="home goes down")                            # v1
        self.assertStatus(self.set_role(a1, gid, b1, "admin"), 200)                              # v2
        self.wait_changes([S[b1], S[c1]], gid, 2, "ROLE_CHANGED")
        home = self.node(HOME)

        # Home's node is down (its nats-server keeps what comes for it): requests are
        # answered by B and wait; home makes them when it is back.
        home.kill9()
        try:
            self.assertQueued(self.add_members(b1, gid, [b2]))                                   # v3
            self.assertQueued(self.patch(b1, gid, title="asked while home was down"))            # v4
        finally:
            home.start()
        for u in (b1, b2, c1):
            self.wait_change(S[u], gid, 4, "DETAILS_CHANGED", HEAL_S)

        # Home killed right after three more requests were answered (while it may be
        # applying them): after its restart each is made once, in the order asked.
        self.assertQueued(self.add_members(b1, gid, [c2]))                                       # v5
        self.assertQueued(self.patch(b1, gid, description="asked before the crash"))             # v6
        self.assertQueued(self.add_members(b1, gid, [b3]))                                       # v7
        home.kill9()
        home.start()
        for u in (b1, b2, b3, c1, c2):
            self.wait_change(S[u], gid, 7, "MEMBERS_ADDED", HEAL_S)
        # Fence: a change made at home after the restart, on the lanes home -> B and home -> C.
        A = self.connect(a1)
        self.assertStatus(self.patch(a1, gid, title="after the crash"), 200)                     # v8
        for u in (b1, b2, b3, c1, c2):
            self.wait_change(S[u], gid, 8, "DETAILS_CHANGED", HEAL_S)
        self.wait_change(A, gid, 8, "DETAILS_CHANGED")

        self.assertSameChanges(gid, [A, S[b1], S[c1]], [1, 2, 3, 4, 5, 6, 7, 8])
        ref = {num(x, "version"): x for x in changes(A, gid)}
        self.assertChange(ref[3], gid, 3, "MEMBERS_ADDED", b1, users=[b2])
        self.assertChange(ref[4], gid, 4, "DETAILS_CHANGED", b1)
        self.assertChange(ref[5], gid, 5, "MEMBERS_ADDED", b1, users=[c2])
        self.assertChange(ref[6], gid, 6, "DETAILS_CHANGED", b1)
        self.assertEqual(ref[6].get("description"), "asked before the crash")
        self.assertChange(ref[7], gid, 7, "MEMBERS_ADDED", b1, users=[b3])
        for cl in (S[b2], S[b3], S[c2]):
            for x in changes(cl, gid):
                self.assertEqual(x, ref[num(x, "version")], "a change differs between regions")
        det = self.details(c2, gid)
        self.assertEqual(as_int(det.get("version")), 8, det)
        self.assertEqual(self.roles(det), {a1: "owner", b1: "admin", c1: "member", b2: "member", c2: "member",
                                           b3: "member"})
        self.assertEqual(group_messages(S[b1], gid), [])



class RemoteLeaveRate(GroupFederationCase):
    names = (HOME, B)
    node_config = {"messages": {"max_per_second": 2}}

    def test_leaving_a_group_whose_home_is_down_counts_as_a_send(self):
        """A leave sent to another region's home waits in this region's queue until home
        answers: counted as a send (docs/PROTOCOL.md, limits), so a member cannot fill the
        queue with leaves while home is away (each once answered 202 and queued)."""
        a1, b1 = self.user(HOME, "anna"), self.user(B, "bert")
        S = self.connect(b1)
        gid = self.create_group(a1, [b1], title="home goes away")                                # v1
        self.wait_changes([S], gid, 1, "CREATED")
        home = self.node(HOME)
        home.kill9()
        try:
            answers = [self.remove_member(b1, gid, b1) for _ in range(12)]
        finally:
            home.start()
        self.assertQueued(answers[0])
        limited = [r for r in answers if r.status == 429]
        self.assertTrue(limited, "12 leaves at once, with 2 sends a second (4 at once): %s"
                        % [r.status for r in answers])
        self.assertError(limited[0], 429, "rate_limited")
        self.assertTrue(limited[0].headers.get("Retry-After"), limited[0].describe())
        cc = self.wait_change(S, gid, 2, "MEMBER_LEFT", HEAL_S)
        self.assertChange(cc, gid, 2, "MEMBER_LEFT", b1, users=[b1])

if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        fedharness.close_all_servers()
