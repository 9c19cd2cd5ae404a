"""Groups across regions: what a region does when its replica and another region's
disagree (docs/FEDERATION.md, "Groups across regions"): a member whose region has no such
account is removed by home (an owner's role goes on first), and a group message that
reaches a region before the change it followed (its sender's region had applied the change,
this region had not) waits for that change instead of being dropped, and a region restored
from a backup (its replica behind what it stamped before) is still heard.

Written from the documents only. Regions: HOME ("europe", where the groups are created),
B ("america") and C ("asia"). No sleeps: see test_groups_federation.py.
"""

import os
import shutil
import signal
import sys
import time
import unittest
import uuid
from urllib.parse import quote as _quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import test_federation  # noqa: E402
from harness import run_ctl  # noqa: E402
from test_groups import as_int, changes  # noqa: E402
from test_groups_federation import (B, C, CROSS_S, HEAL_S, HOME, GroupFederationCase,  # noqa: E402
                                    first_group_event, group_messages)
from test_hardening_live import poll_until  # noqa: E402
from wsclient import ev_message, ev_receipt, is_presence, num  # noqa: E402


class HostileHomePadsItsChanges(GroupFederationCase):
    """A group's home (its real key, its node stopped) sends a state whose change carries
    100 KB in `reason` and a `by` that is no user id: each change is one event in every
    local member's mailbox, so such a state was stored once per member, at any rate the
    home liked. It is refused as malformed; a plain change after it still applies."""

    names = (HOME, B)

    def test_a_state_with_padded_change_fields_is_refused(self):
        pb = test_federation.fed_pb2()
        owner, bob = self.user(HOME, "olga"), self.user(B, "bob")
        Bc = self.connect(bob)
        port = self.servers[0].port
        subject = "petchat.v1.fed.%s.%s" % (B, HOME)
        spy = test_federation.RawNats(port)
        spy.sub(subject)
        gid = self.create_group(owner, [bob], title="padded")
        self.wait_change(Bc, gid, 1, "CREATED")
        genuine = None
        while genuine is None:  # the lane's envelopes since the spy subscribed, up to the state
            bundle = pb.bundle.FromString(pb.envelope.FromString(spy.next_msg()[1]).body)
            bodies = [pb.body.FromString(raw) for raw in bundle.bodies]
            genuine = next((bd for bd in bodies if bd.HasField("group_state")
                            and bd.group_state.conversation_id == gid), None)
        spy.close()
        home = self.node(HOME).proc  # stopped: from here on, HOME is whoever holds its key
        os.kill(home.pid, signal.SIGSTOP)
        self.addCleanup(lambda: home.poll() is None and os.kill(home.pid, signal.SIGCONT))
        sign = test_federation.region_signer(self.node(HOME))
        next_seq = max(bd.lane_seq for bd in bodies) + 1

        def state(version, title, **change):
            bd = pb.body()
            bd.CopyFrom(genuine)
            bd.lane_seq = next_seq + version - 2
            bd.created_at_ms = int(time.time() * 1000)
            gs = bd.group_state
            gs.version = version
            gs.title = title
            del gs.changes[:]
            ch = gs.changes.add()
            ch.conversation_id, ch.version, ch.kind = gid, version, 5  # DETAILS_CHANGED (proto/client.proto)
            ch.at_ms = bd.created_at_ms
            ch.title = title
            setattr(ch, "by", change.get("by", owner))
            ch.reason = change.get("reason", "")
            return bd

        before = test_federation.fed_status(self.node(B))["rejects"].get("malformed", 0)
        pub = test_federation.RawNats(port)
        for bd in (state(2, "padded", reason="x" * 100000), state(3, "padded", by="z" * 5000)):
            pub.pub(subject, test_federation.envelope(pb, HOME, bd, sign=sign, lane_epoch=bundle.lane_epoch,
                                                      lane_base=bundle.lane_base))
        pub.close()
        st = test_federation.wait_status(self.node(B), lambda st: st["rejects"].get("malformed", 0) >= before + 2,
                                         CROSS_S)
        self.assertEqual(st["rejects"].get("malformed", 0), before + 2, st["rejects"])
        # A plain change, next on the lane, is applied: the refusals were about the padding.
        pub = test_federation.RawNats(port)
        plain = state(2, "renamed")
        plain.lane_seq = next_seq + 2
        pub.pub(subject, test_federation.envelope(pb, HOME, plain, sign=sign, lane_epoch=bundle.lane_epoch,
                                                  lane_base=bundle.lane_base))
        pub.close()
        cc = self.wait_change(Bc, gid, 2)
        self.assertEqual((cc.get("kind"), cc.get("title"), cc.get("reason", "")), ("DETAILS_CHANGED", "renamed", ""))
        self.assertFalse([e for e in changes(Bc, gid) if len(str(e)) > 10000], "no padded change reached bob")


class HostileHomeNamesAThirdRegionsWriter(GroupFederationCase):
    """A group's home (its real key, its node stopped) names a user of a third region a
    member of its group and a writer in it. That user shares presence with someone of this
    region already (a 1:1 conversation), so this region knows it: were home believed about
    that user's writing, whoever wrote in the group here would see their presence. Home
    speaks for its own users only."""

    def test_home_is_not_believed_about_a_third_regions_writer(self):
        pb = test_federation.fed_pb2()
        owner, alice, dave = self.user(HOME, "olga"), self.user(B, "alice"), self.user(B, "dave")
        carol = self.user(C, "carol")
        self.contacts(dave, carol)  # asia tells america carol's presence from here on
        S = self.connect(alice)
        port = self.servers[0].port
        subject = "petchat.v1.fed.%s.%s" % (B, HOME)
        spy = test_federation.RawNats(port)
        spy.sub(subject)
        gid = self.create_group(owner, [alice], title="lure")
        self.wait_change(S, gid, 1, "CREATED")
        genuine = None
        while genuine is None:  # the lane's envelopes since the spy subscribed, up to the state
            bundle = pb.bundle.FromString(pb.envelope.FromString(spy.next_msg()[1]).body)
            bodies = [pb.body.FromString(raw) for raw in bundle.bodies]
            genuine = next((bd for bd in bodies if bd.HasField("group_state")
                            and bd.group_state.conversation_id == gid), None)
        spy.close()
        home = self.node(HOME).proc  # stopped: from here on, HOME is whoever holds its key
        os.kill(home.pid, signal.SIGSTOP)
        self.addCleanup(lambda: home.poll() is None and os.kill(home.pid, signal.SIGCONT))
        bd = pb.body()
        bd.CopyFrom(genuine)
        bd.lane_seq = max(b.lane_seq for b in bodies) + 1
        bd.created_at_ms = int(time.time() * 1000)
        gs = bd.group_state
        gs.version = 2
        gs.members.append(carol)
        gs.roles.append(gs.roles[-1])
        del gs.changes[:]
        ch = gs.changes.add()
        ch.conversation_id, ch.version, ch.kind = gid, 2, 2  # MEMBERS_ADDED (proto/client.proto)
        ch.at_ms = bd.created_at_ms
        setattr(ch, "by", owner)
        ch.users.append(carol)
        del gs.writers[:]
        gs.writers.append(carol)
        pub = test_federation.RawNats(port)
        pub.pub(subject, test_federation.envelope(pb, HOME, bd, sign=test_federation.region_signer(self.node(HOME)),
                                                  lane_epoch=bundle.lane_epoch, lane_base=bundle.lane_base))
        pub.close()
        self.wait_change(S, gid, 2, "MEMBERS_ADDED")  # the roster is home's to say
        self.send_to(S, gid, "alice writes in the group")
        self.assertError(self.call(alice, "GET", "/v1/presence/%s" % carol), 403, "presence_hidden",
                         "carol never wrote in the group")
        self.assertStatus(self.call(dave, "GET", "/v1/presence/%s" % carol), 200, "dave and carol wrote 1:1")
        self.assertFalse([f for f in S.frames() if is_presence(carol)(f)], "no presence of carol reached alice")


def q(text):
    return _quote(text, safe="")


class AGroupThatEndsInARegion(GroupFederationCase):
    """A region whose last member goes keeps no roster of the group (a home could otherwise
    leave rosters of any size there, one real user at a time): the group ended there. Its
    former member still sees it as it was; added again, it starts again from there."""

    def test_the_last_member_of_a_region_goes_and_comes_back(self):
        anna, bert, chen = self.user(HOME, "anna"), self.user(B, "bert"), self.user(C, "chen")
        S = {u: self.connect(u) for u in (anna, bert, chen)}
        gid = self.create_group(anna, [bert, chen], title="comes and goes")                      # v1
        self.wait_changes(S.values(), gid, 1, "CREATED")
        first = self.send_to(S[chen], gid, "chen, before")
        self.wait_messages(S.values(), [first["message_id"]])
        self.assertStatus(self.remove_member(anna, gid, chen), 204)                              # v2
        self.wait_changes(S.values(), gid, 2, "MEMBER_REMOVED")
        # Asia has no member left: chen's list shows the group as it was when he went.
        r = self.call(chen, "GET", "/v1/conversations")
        self.assertStatus(r, 200)
        [summ] = [c for c in r.json.get("conversations") or [] if c.get("id") == gid]
        self.assertIs(summ.get("member"), False, summ)
        self.assertEqual((summ.get("title"), summ.get("member_count")), ("comes and goes", 2), summ)
        self.assertError(self.call(chen, "GET", "/v1/conversations/%s" % q(gid)), 403, "not_a_member")
        self.assertEqual(self.try_send_to(S[chen], gid, "chen, gone")["error"]["code"], "not_a_member")
        # Added again: the group starts again at asia, and everything flows both ways.
        self.assertStatus(self.add_members(anna, gid, [chen]), 200)                              # v3
        self.wait_change(S[chen], gid, 3, "MEMBERS_ADDED")
        back = self.send_to(S[chen], gid, "chen, back")
        reply = self.send_to(S[bert], gid, "bert, welcome back")
        self.wait_messages(S.values(), [back["message_id"], reply["message_id"]])
        det = self.call(chen, "GET", "/v1/conversations/%s" % q(gid))
        self.assertStatus(det, 200)
        self.assertEqual(sorted(m.get("user_id") for m in det.json.get("members") or []), sorted([anna, bert, chen]),
                         det.describe())
        self.assertEqual(as_int(det.json.get("version")), 3, det.describe())


class RemoteRequestsAreCharged(GroupFederationCase):
    """A region (its real key, its node stopped) passes on its admin's requests to change a
    group at any rate: each is an event in every member's mailbox and a state to every
    region. Home charges them to the requester's region (messages.max_per_second, bursts of
    20 seconds' worth) and refuses the rest."""

    names = (HOME, B)
    node_config = {"messages": {"max_per_second": 5}}  # a region's bursts: 100

    def test_a_flood_of_requests_from_another_region_is_refused_past_the_rate(self):
        pb = test_federation.fed_pb2()
        owner, bea = self.user(HOME, "olga"), self.user(B, "bea")
        A = self.connect(owner)
        gid = self.create_group(owner, [bea], title="steady")
        self.wait_change(A, gid, 1, "CREATED")
        self.assertStatus(self.set_role(owner, gid, bea, "admin"), 200)
        self.wait_change(A, gid, 2)
        port = self.servers[0].port
        subject = "petchat.v1.fed.%s.%s" % (HOME, B)
        spy = test_federation.RawNats(port)
        spy.sub(subject)
        self.assertStatus(self.patch(bea, gid, title="asked for at america"), 202)
        genuine = None
        while genuine is None:  # the lane's envelopes since the spy subscribed, up to the request
            bundle = pb.bundle.FromString(pb.envelope.FromString(spy.next_msg()[1]).body)
            bodies = [pb.body.FromString(raw) for raw in bundle.bodies]
            genuine = next((bd for bd in bodies if bd.HasField("group_request")), None)
        spy.close()
        self.wait_change(A, gid, 3, "DETAILS_CHANGED")
        region_b = self.node(B).proc  # stopped: from here on, B is whoever holds its key
        os.kill(region_b.pid, signal.SIGSTOP)
        self.addCleanup(lambda: region_b.poll() is None and os.kill(region_b.pid, signal.SIGCONT))
        forged = []
        for i in range(160):
            bd = pb.body()
            bd.CopyFrom(genuine)
            bd.lane_seq = genuine.lane_seq + 1 + i
            bd.created_at_ms = int(time.time() * 1000)
            bd.group_request.title = "flood %d" % i
            bd.group_request.request_id = "flood-%d-%s" % (i, uuid.uuid4().hex[:8])
            forged.append(bd)
        refused = lambda: test_federation.fed_status(self.node(HOME))["rejects"].get("group_request_refused", 0)
        before = refused()
        pub = test_federation.RawNats(port)
        pub.pub(subject, test_federation.envelope(pb, B, forged, sign=test_federation.region_signer(self.node(B)),
                                                  lane_epoch=bundle.lane_epoch, lane_base=bundle.lane_base))
        pub.close()
        flood = lambda: [c for c in changes(A, gid) if (c.get("title") or "").startswith("flood ")]
        poll_until(lambda: refused() - before + len(flood()) >= len(forged), CROSS_S)
        self.assertEqual(refused() - before + len(flood()), len(forged))
        self.assertGreater(len(flood()), 0, "requests within the rate are made")
        self.assertLessEqual(len(flood()), 130, "a burst (100) and what the rate (5/s) refills meanwhile, not 160")


class NamesWithNoAccount(GroupFederationCase):
    # Count receipts above 2 recipients, so that a small group shows them.
    node_config = {"messages": {"max_per_second": 5000, "group_receipt_events_max_members": 2}}

    def test_many_made_up_names_go_in_one_change(self):
        # Names nobody has at B, added by the hundred, cost every member one removal, not one
        # each (a change, and a state to every region, per name).
        a1, b1 = self.user(HOME, "anya"), self.user(B, "bodo")
        ghosts = ["nobody%d.%d@%s" % (uuid.uuid4().int % 10 ** 6, i, B) for i in range(150)]
        A, BB = self.connect(a1), self.connect(b1)
        gid = self.create_group(a1, [b1] + ghosts, title="made-up names")                        # v1
        for cl in (A, BB):
            cc = self.wait_change(cl, gid, 2)
            self.assertEqual((cc.get("kind"), cc.get("by", ""), sorted(cc.get("users") or []), cc.get("reason")),
                             ("MEMBER_REMOVED", "", sorted(ghosts), "user_not_found"), cc)
        mid = self.send_to(A, gid, "after the removal")["message_id"]
        BB.wait_event(ev_message(mid), CROSS_S)
        self.assertEqual([num(x, "version") for x in changes(A, gid)], [1, 2], "one change removed them all")
        for u in (a1, b1):
            d = self.details(u, gid)
            self.assertEqual(self.roles(d), {a1: "owner", b1: "member"}, u)
            self.assertEqual(as_int(d.get("version")), 2, u)

    def test_who_may_add_me_holds_for_groups_homed_elsewhere(self):
        # A user of B who takes group adds only from people they wrote to, added by a
        # stranger at home: B refuses them the group, and home removes them saying why.
        a1, b1, b2 = self.user(HOME, "ayla"), self.user(B, "bram"), self.user(B, "bea")
        self.assertStatus(self.call(b1, "PATCH", "/v1/me", {"group_adds": "contacts"}), 200)
        A, BR, BE = self.connect(a1), self.connect(b1), self.connect(b2)
        gid = self.create_group(a1, [b1, b2], title="not asked")                                   # v1
        for cl in (A, BE):
            cc = self.wait_change(cl, gid, 2)
            self.assertEqual((cc.get("kind"), cc.get("users"), cc.get("reason")),
                             ("MEMBER_REMOVED", [b1], "group_adds_restricted"), cc)
        mid = self.send_to(A, gid, "to those who may be here")["message_id"]
        BE.wait_event(ev_message(mid), CROSS_S)
        fence = A.send_message(b1, "a direct message after it")["message_id"]
        BR.wait_event(ev_message(fence), CROSS_S)
        self.assertEqual([e for e in BR.events() if e.get("conversation_change") or
                          (e.get("message") or {}).get("conversation_id") == gid], [])

    def test_a_member_whose_region_has_no_such_account_is_removed(self):
        a1 = self.user(HOME, "anna")
        b1, b2 = self.user(B, "bert"), self.user(B, "beth")
        c1 = self.user(C, "chen")
        ghost = "ghost%d@%s" % (uuid.uuid4().int % 10 ** 8, B)
        A = self.connect(a1)
        R = {u: self.connect(u) for u in (b1, b2, c1)}
        everyone = [A] + list(R.values())
        # Home cannot check a name of another region: the creation adds it (as a 1:1
        # message to it is accepted), and B, which has no such account, has it removed.
        gid = self.create_group(a1, [b1, ghost, b2, c1], title="with a name nobody has")          # v1
        # Bert sends as soon as B has the group (most likely before home's removal is back):
        # B's replica still lists the name, which gets nothing of it (checked at the end).
        self.wait_change(R[b1], gid, 1, "CREATED")
        early = self.send_to(R[b1], gid, "bert, at once")["message_id"]
        for cl in everyone:
            cc = self.wait_change(cl, gid, 2)
            self.assertEqual((cc.get("kind"), cc.get("by", ""), cc.get("users"), cc.get("reason")),
                             ("MEMBER_REMOVED", "", [ghost], "user_not_found"), cc)
        for u in (a1, b1, c1):
            d = self.details(u, gid)
            self.assertEqual(self.roles(d), {a1: "owner", b1: "member", b2: "member", c1: "member"}, u)
            self.assertEqual(as_int(d.get("member_count")), 4, u)
            self.assertEqual(as_int(d.get("version")), 2, u)
        self.assertSameChanges(gid, everyone, [1, 2])
        self.assertChange(changes(A, gid)[0], gid, 1, "CREATED", a1, users=[a1, b1, ghost, b2, c1])
        for cl in (A, R[b2], R[c1]):
            cl.wait_event(ev_message(early), CROSS_S)

        # Messages count the three real recipients: the count receipts reach all of them.
        mid = self.send_to(A, gid, "to three, not four")["message_id"]
        for cl in R.values():
            cl.wait_event(ev_message(mid), CROSS_S)
            cl.ack(cl.max_seq())
        done = A.wait_event(lambda e: ev_receipt(mid, "DELIVERED")(e) and num(e["receipt"], "delivered_count") == 3,
                            CROSS_S, what="DELIVERED count receipt at 3")
        self.assertEqual(num(done["receipt"], "recipients"), 3, done)

        # Added again, through C by an admin of C (C cannot check B's names either): added at
        # home, then removed again, in that order for everyone.
        self.assertStatus(self.set_role(a1, gid, c1, "admin"), 200)                              # v3
        self.wait_change(R[c1], gid, 3, "ROLE_CHANGED")  # C's replica says chen is an admin
        self.assertQueued(self.add_members(c1, gid, [ghost]))                                     # v4
        for cl in everyone:
            self.wait_change(cl, gid, 5)
        ref = {num(x, "version"): x for x in changes(A, gid)}
        self.assertChange(ref[4], gid, 4, "MEMBERS_ADDED", c1, users=[ghost])
        self.assertEqual((ref[5].get("kind"), ref[5].get("by", ""), ref[5].get("users"), ref[5].get("reason")),
                         ("MEMBER_REMOVED", "", [ghost], "user_not_found"), ref[5])
        self.assertSameChanges(gid, everyone, [1, 2, 3, 4, 5])
        self.assertEqual([e for e in R[c1].events() if "request_refused" in e], [])

        # Someone who takes the name at B afterwards gets nothing of the group: not in their
        # list, no event in their mailbox before a message sent to them afterwards.
        self.node(B).new_user(ghost.split("@")[0])
        G = self.connect(ghost)
        after = A.send_message(ghost, "hello, new account")["message_id"]
        G.wait_event(ev_message(after), CROSS_S)
        self.assertEqual([e for e in G.events() if gid in repr(e)], [], "the group, seen by the name's new owner")
        r = self.call(ghost, "GET", "/v1/conversations")
        self.assertStatus(r, 200)
        self.assertNotIn(gid, [c.get("id") for c in r.json.get("conversations") or []], r.describe())


class DeletedAccounts(GroupFederationCase):
    names = (HOME, B)

    def test_a_deleted_owner_of_another_regions_group_hands_on_and_goes(self):
        a1, b1 = self.user(HOME, "anna"), self.user(B, "bert")
        A, Bc = self.connect(a1), self.connect(b1)
        gid = self.create_group(a1, [b1], title="bert will own it")                               # v1
        self.assertStatus(self.set_role(a1, gid, b1, "owner"), 200)                              # v2, v3
        self.wait_change(Bc, gid, 3, "ROLE_CHANGED")
        # B's admin deletes bert: B asks home, which makes anna (the first admin) owner and
        # removes bert, by nobody; both regions see it.
        r = self.node(B).admin("DELETE", "/v1/admin/users/" + b1.split("@")[0])
        self.assertEqual(r.status, 204, r.describe())
        self.wait_change(A, gid, 5)
        ref = {num(x, "version"): x for x in changes(A, gid)}
        want = {4: ("ROLE_CHANGED", [a1]), 5: ("MEMBER_REMOVED", [b1])}
        for v, (kind, users) in want.items():
            cc = ref[v]
            self.assertEqual((cc.get("kind"), cc.get("by", ""), cc.get("users"), cc.get("reason")),
                             (kind, "", users, "user_not_found"), cc)
        self.assertEqual(self.roles(self.details(a1, gid)), {a1: "owner"})


class GroupLimitAcrossRegions(GroupFederationCase):
    names = (HOME, B)
    node_config = {"messages": {"max_per_second": 5000, "max_groups_per_user": 2}}

    def test_a_user_added_past_their_limit_by_another_region_is_removed_again(self):
        bert = self.user(B, "bert")
        Bc = self.connect(bert)
        owners = [self.user(HOME, "owner") for _ in range(3)]
        gids = [self.create_group(o, [bert], title="g%d" % i) for i, o in enumerate(owners)]
        for gid in gids[:2]:
            self.wait_change(Bc, gid, 1, "CREATED")
        # The third is one too many for bert's region: he never becomes a member there, and
        # home removes him, saying why.
        O = self.connect(owners[2])
        cc = self.wait_change(O, gids[2], 2)
        self.assertEqual((cc.get("kind"), cc.get("by", ""), cc.get("users"), cc.get("reason")),
                         ("MEMBER_REMOVED", "", [bert], "too_many_groups"), cc)
        self.assertEqual(self.roles(self.details(owners[2], gids[2])), {owners[2]: "owner"})
        self.assertEqual([e for e in changes(Bc, gids[2])], [], "bert got nothing of the third group")
        self.assertEqual(self.call(bert, "GET", "/v1/conversations/" + gids[2]).status, 404)


class ReplicasBehind(GroupFederationCase):
    topology = staticmethod(fedharness.leaf_topology)

    def test_an_owner_whose_region_has_no_such_account_hands_on_to_the_first_admin(self):
        a1 = self.user(HOME, "anna")
        c1, c2 = self.user(C, "chen"), self.user(C, "cora")
        ghost = "ghost%d@%s" % (uuid.uuid4().int % 10 ** 8, B)
        S = {u: self.connect(u) for u in (a1, c1, c2)}
        self.regions[B].nats.stop()
        try:
            # While B cannot say that it has no such account, the owner hands ownership on to
            # the name, and becomes an admin (who may no longer change roles).
            gid = self.create_group(a1, [c1, ghost, c2], title="handed to nobody")                # v1
            self.assertStatus(self.set_role(a1, gid, ghost, "owner"), 200)                       # v2, v3
            self.assertStatus(self.set_role(a1, gid, c2, "admin"), 403)
            self.wait_changes([S[c1], S[c2]], gid, 3, "ROLE_CHANGED")
        finally:
            self.regions[B].nats.start()
        # B returns and says so: home gives ownership to the first admin (anna), then
        # removes the name, both by nobody.
        for cl in S.values():
            self.wait_change(cl, gid, 5, timeout=HEAL_S)
        ref = {num(x, "version"): x for x in changes(S[c1], gid)}
        want = {4: ("ROLE_CHANGED", [a1], "OWNER"), 5: ("MEMBER_REMOVED", [ghost], None)}
        for v, (kind, users, role) in want.items():
            cc = ref[v]
            self.assertEqual((cc.get("kind"), cc.get("by", ""), cc.get("users"), cc.get("reason")),
                             (kind, "", users, "user_not_found"), cc)
            if role:
                self.assertEqual(cc.get("role"), role, cc)
        self.assertSameChanges(gid, list(S.values()), [1, 2, 3, 4, 5])
        for u in (a1, c1):
            self.assertEqual(self.roles(self.details(u, gid)), {a1: "owner", c1: "member", c2: "member"}, u)
        # The owner's powers are anna's again.
        self.assertStatus(self.set_role(a1, gid, c2, "admin"), 200)                              # v6
        self.wait_change(S[c2], gid, 6, "ROLE_CHANGED")

    def test_who_takes_a_name_before_home_removes_it_may_do_nothing_in_the_group(self):
        """B applies a group naming ghost@B (no such account) while home cannot hear B's
        answer; someone registers that name at B meanwhile. Until home removes it they may not
        send, type or ask for changes, and get nothing of the group; then home removes it."""
        a1, b1 = self.user(HOME, "anna"), self.user(B, "bert")
        ghost = "ghost%d@%s" % (uuid.uuid4().int % 10 ** 8, B)
        b_node, home = self.node(B), self.node(HOME)
        b_node.kill9()  # B's nats-server keeps B's stream: home's state waits there
        published = home.admin("GET", "/v1/admin/federation").json["published"]
        gid = self.create_group(a1, [b1, ghost], title="a name taken too late")                   # v1
        self.assertTrue(poll_until(
            lambda: home.admin("GET", "/v1/admin/federation").json["published"] > published, HEAL_S),
            "home published the group's state to B's stream")
        self.regions[HOME].nats.stop()
        try:
            b_node.start()
            Bc = self.connect(b1)
            self.wait_change(Bc, gid, 1, "CREATED", HEAL_S)
            b_node.new_user(ghost.split("@")[0])
            G = self.connect(ghost)
            f = self.try_send_to(G, gid, "I am ghost now")
            self.assertEqual((f.get("error") or {}).get("code"), "conversation_not_found", f)
            # Never a member: the group is not theirs, as for a group of this region's (404,
            # not 403, which would tell that a replica is here).
            self.assertError(self.call(ghost, "PATCH", "/v1/conversations/" + gid, {"title": "mine"}), 404,
                             "conversation_not_found")
            self.assertEqual(self.call(ghost, "GET", "/v1/conversations/" + gid).status, 404)
            G.send_frame({"typing": {"conversation_id": gid, "active": True}})
            # Bert's message reaches bert, not the name's new owner.
            mid = self.send_to(Bc, gid, "bert, while home is away")["message_id"]
            fence = Bc.send_message(ghost, "bert to ghost, after the group message")["message_id"]
            G.wait_event(ev_message(fence), CROSS_S)
            self.assertEqual([e for e in G.events() if gid in repr(e)], [], "the group, seen by the name's new owner")
            self.assertEqual([e for e in Bc.events() if "typing" in e], [], "typing from the name's new owner")
            # Nor anyone's presence through the group: bert goes offline and comes back.
            Bc.close()
            Bc = self.connect(b1)
            fence = Bc.send_message(ghost, "bert to ghost, after coming back")["message_id"]
            G.wait_event(ev_message(fence), CROSS_S)
            self.assertEqual([f for f in G.frames() if "presence" in f], [], "presence, seen by the name's new owner")
        finally:
            self.regions[HOME].nats.start()
        cc = self.wait_change(Bc, gid, 2, "MEMBER_REMOVED", HEAL_S)
        self.assertEqual((cc.get("users"), cc.get("reason")), ([ghost], "user_not_found"), cc)
        self.assertEqual([e for e in G.events() if gid in repr(e)], [])
        self.assertNotIn(mid, [e.get("message", {}).get("id") for e in G.events()])

    def test_a_message_that_reaches_a_region_before_the_change_it_followed_waits_for_it(self):
        """Home adds a member of C while C is cut off; B applies the add and bert sends at
        once. C comes back while home is down, so it hears bert's message before the add:
        it keeps the message until its replica has the add, then the new member gets both,
        the add first."""
        a1, b1 = self.user(HOME, "anna"), self.user(B, "bert")
        c0, c1 = self.user(C, "cleo"), self.user(C, "chen")
        S = {u: self.connect(u) for u in (b1, c0, c1)}
        gid = self.create_group(a1, [b1], title="C joins late")                                    # v1
        self.wait_change(S[b1], gid, 1, "CREATED")
        home = self.node(HOME)
        self.regions[C].nats.stop()
        try:
            self.assertStatus(self.add_members(a1, gid, [c1]), 200)                              # v2
            self.wait_change(S[b1], gid, 2, "MEMBERS_ADDED")
            first = self.send_to(S[b1], gid, "bert, right after chen joined")["message_id"]
            home.kill9()  # home's state for C stays in its outbox
        finally:
            self.regions[C].nats.start()
        try:
            # Fence: bert's direct message to cleo follows the group message on the lane B -> C.
            direct = S[b1].send_message(c0, "bert to cleo, after the group message")["message_id"]
            S[c0].wait_event(ev_message(direct), HEAL_S)
            self.assertEqual([e for e in S[c1].events() if gid in repr(e)], [], "C has not got the add yet")
        finally:
            home.start()
        S[c1].wait_event(ev_message(first), HEAL_S)
        self.assertEqual(first_group_event(S[c1], gid), ("change", 2, "MEMBERS_ADDED"))
        self.assertEqual([m.get("id") for m in group_messages(S[c1], gid)], [first])
        self.assertEqual(self.roles(self.details(c1, gid)), {a1: "owner", b1: "member", c1: "member"})


def back_up(case, region):
    """A backup of `region`'s node, in its work dir; returns its path."""
    node = case.node(region)
    backup = os.path.join(node.workdir, "backup-%s" % uuid.uuid4().hex[:8])
    rc, out, err = node.ctl("backup", backup, timeout=120)
    case.assertEqual(rc, 0, out + err)
    return backup


def lose_and_restore(case, region, backup):
    """`region`'s machine is lost (the node's data and its nats-server's stream) and `backup`
    restored into a new data dir; the node and its nats-server are left stopped."""
    node = case.node(region)
    node.kill9()
    case.regions[region].nats.stop()
    case.regions[region].nats.wipe_store()
    shutil.move(node.data_dir, node.data_dir + ".lost")
    rc, out, err = run_ctl("restore", backup, node.data_dir)
    case.assertEqual(rc, 0, out + err)


class RestoredOrigin(GroupFederationCase):
    topology = staticmethod(fedharness.leaf_topology)

    def test_a_region_restored_from_a_backup_is_heard_before_its_replica_catches_up(self):
        """B is restored from a backup taken before the group's last change, and cannot hear
        home yet: its replica is older than what it stamped bert's messages with before. A
        message bert sends then is accepted at B, and C (which saw the newer stamp) takes it:
        nothing accepted is lost. Home takes it too once it is heard again."""
        a1, b1, c1 = self.user(HOME, "anna"), self.user(B, "bert"), self.user(C, "chen")
        S = {u: self.connect(u) for u in (a1, b1, c1)}
        gid = self.create_group(a1, [b1, c1], title="before the backup")                        # v1
        self.wait_changes(S.values(), gid, 1, "CREATED")
        b_node = self.node(B)
        backup = back_up(self, B)
        self.assertStatus(self.patch(a1, gid, title="after the backup"), 200)                     # v2
        self.wait_changes(S.values(), gid, 2, "DETAILS_CHANGED")
        before = self.send_to(S[b1], gid, "bert, stamped 2")["message_id"]
        self.wait_messages([S[a1], S[c1]], [before])
        S[b1].close()
        # B's machine is lost and its backup restored, while home's nats-server is down.
        lose_and_restore(self, B, backup)
        self.regions[HOME].nats.stop()
        try:
            self.regions[B].nats.start()
            self.assertTrue(os.path.exists(os.path.join(b_node.data_dir, "RESTORED-FROM-BACKUP")))
            b_node.start()
            self.assertFalse(os.path.exists(os.path.join(b_node.data_dir, "RESTORED-FROM-BACKUP")),
                             "the node's first federated start takes the new epoch and removes the marker")
            S[b1] = self.connect(b1)
            self.assertEqual(as_int(self.details(b1, gid).get("version")), 1, "B's replica is the backup's")
            after = self.send_to(S[b1], gid, "bert, after the restore")["message_id"]
            S[c1].wait_event(ev_message(after), HEAL_S)
        finally:
            self.regions[HOME].nats.start()
        S[a1].wait_event(ev_message(after), HEAL_S)
        # B hears home again: its replica catches up with the change after the backup.
        self.wait_change(S[b1], gid, 2, "DETAILS_CHANGED", HEAL_S)
        self.assertEqual(self.details(b1, gid).get("title"), "after the backup")


class RestoredHome(GroupFederationCase):
    topology = staticmethod(fedharness.leaf_topology)

    def test_a_home_restored_from_a_backup_takes_its_members_messages_and_its_changes_reach_them(self):
        """HOME is restored from a backup taken before the group's last change, which B and C
        hold. bert's message, stamped with that newer version, must not wait at home for a
        state of its own group that never comes; and home's changes after the restore must
        reach replicas that are ahead of its restored version: its groups' versions jump."""
        a1, b1, c1 = self.user(HOME, "anna"), self.user(B, "bert"), self.user(C, "chen")
        S = {u: self.connect(u) for u in (a1, b1, c1)}
        gid = self.create_group(a1, [b1, c1], title="before the backup")                        # v1
        self.wait_changes(S.values(), gid, 1, "CREATED")
        backup = back_up(self, HOME)
        self.assertStatus(self.patch(a1, gid, title="after the backup"), 200)                     # v2
        self.wait_changes(S.values(), gid, 2, "DETAILS_CHANGED")
        S[a1].close()
        lose_and_restore(self, HOME, backup)
        self.regions[HOME].nats.start()
        self.node(HOME).start()
        S[a1] = self.connect(a1)
        jumped = as_int(self.details(a1, gid).get("version"))
        # 2^20 versions, and one a millisecond since the backup (restored twice, the second
        # copy's versions pass the first's).
        self.assertGreaterEqual(jumped, 1 + (1 << 20), "the group's versions continue far past the backup's")
        self.assertLess(jumped, 1 + (1 << 20) + 600000)
        sent = self.send_to(S[b1], gid, "bert, stamped 2")["message_id"]
        S[a1].wait_event(ev_message(sent), HEAL_S)
        S[c1].wait_event(ev_message(sent), HEAL_S)
        self.assertStatus(self.patch(a1, gid, title="after the restore"), 200)
        for u in (b1, c1):
            self.wait_change(S[u], gid, jumped + 1, "DETAILS_CHANGED", HEAL_S)
            self.assertEqual(self.details(u, gid).get("title"), "after the restore")


class RestoredRequester(GroupFederationCase):
    topology = staticmethod(fedharness.leaf_topology)

    def test_a_request_sent_again_by_a_restored_region_runs_once_at_home(self):
        """bert (B) leaves while home cannot hear B; B is backed up with the leave still
        unconfirmed, home applies it, anna adds bert again, and B is restored: B sends the
        leave again under its new lane epoch, and home must not run it a second time."""
        a1, b1, c1 = self.user(HOME, "anna"), self.user(B, "bert"), self.user(C, "chen")
        S = {u: self.connect(u) for u in (a1, b1, c1)}
        gid = self.create_group(a1, [b1, c1], title="leave once")                                # v1
        self.wait_changes(S.values(), gid, 1, "CREATED")
        self.regions[HOME].nats.stop()
        try:
            self.assertQueued(self.remove_member(b1, gid, b1))  # waits in B's outbox
            backup = back_up(self, B)
        finally:
            self.regions[HOME].nats.start()
        self.wait_change(S[a1], gid, 2, "MEMBER_LEFT", HEAL_S)                                   # v2
        self.assertStatus(self.add_members(a1, gid, [b1]), 200)                                 # v3
        self.wait_change(S[c1], gid, 3, "MEMBERS_ADDED", HEAL_S)
        S[b1].close()
        lose_and_restore(self, B, backup)
        self.regions[B].nats.start()
        self.node(B).start()
        # The leave comes again on B's lane, before anything bert sends now: once bert's
        # message reaches anna, home has had the leave again.
        # B's backup has bert's leave made there (docs/PROTOCOL.md): he is a member at B again
        # once home has sent B its lane again from there (the leave, then the add).
        S[b1] = self.connect(b1)
        self.wait_change(S[b1], gid, 3, "MEMBERS_ADDED", HEAL_S)
        fence = self.send_to(S[b1], gid, "still here")["message_id"]
        S[a1].wait_event(ev_message(fence), HEAL_S)
        members = [m["user_id"] for m in self.details(a1, gid)["members"]]
        self.assertIn(b1, members, "the leave ran twice at home")


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        fedharness.close_all_servers()
