"""Leaving a group homed in another region (docs/PROTOCOL.md, "Conversations and groups";
docs/FEDERATION.md, "Groups across regions"): the leave is done in the leaver's own region
at once, whatever home does: home may be away for days, or hostile and never make it. Home
then makes it as its own change for the others; an owner's leave naming a successor who
has gone meanwhile still happens there (the heir takes the role).

Written from the documents only. Regions: HOME ("europe", where the groups are created)
and B ("america"). A hostile home is played by a test holding its real key with its node
stopped, as in test_groups_federation_replicas.py. No sleeps.
"""

import os
import signal
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import test_federation  # noqa: E402
from test_groups import change_versions  # noqa: E402
from test_groups_federation import B, CROSS_S, HEAL_S, HOME, GroupFederationCase  # noqa: E402
from wsclient import ev_message  # noqa: E402

# proto/client.proto's change kinds, as a forged state names them.
MEMBERS_ADDED, DETAILS_CHANGED = 2, 5


def lane_bodies(pb, spy, want):
    """The bodies of the lane `spy` listens to, up to the first for which `want(body)`:
    (that body, all of them, the last bundle)."""
    while True:
        bundle = pb.bundle.FromString(pb.envelope.FromString(spy.next_msg()[1]).body)
        bodies = [pb.body.FromString(raw) for raw in bundle.bodies]
        found = next((bd for bd in bodies if want(bd)), None)
        if found is not None:
            return found, bodies, bundle


class LeavingWhileHomeIsAway(GroupFederationCase):
    """A member who leaves a group homed elsewhere is out at once, not when home answers:
    their devices are told, they can no longer send, nothing is shared through the group."""

    names = (HOME, B)

    def test_the_leave_is_done_here_before_home_answers(self):
        owner, alice, carol = self.user(HOME, "olga"), self.user(B, "alice"), self.user(B, "carol")
        S = {u: self.connect(u) for u in (owner, alice, carol)}
        gid = self.create_group(owner, [alice, carol], title="soon without alice")              # v1
        for u in (alice, carol):
            self.wait_change(S[u], gid, 1, "CREATED")
        for u in (alice, carol):
            self.send_to(S[u], gid, "%s writes" % u)
        self.assertStatus(self.call(carol, "GET", "/v1/presence/%s" % alice), 200, "both wrote in the group")
        home = self.node(HOME).proc
        os.kill(home.pid, signal.SIGSTOP)
        self.addCleanup(lambda: home.poll() is None and os.kill(home.pid, signal.SIGCONT))
        self.assertQueued(self.remove_member(alice, gid, alice), "alice leaves; home is away")
        cc = self.wait_change(S[alice], gid, 2, "MEMBER_LEFT")
        self.assertChange(cc, gid, 2, "MEMBER_LEFT", alice, users=[alice])
        self.assertEqual(self.try_send_to(S[alice], gid, "alice, gone")["error"]["code"], "not_a_member")
        self.assertError(self.call(alice, "GET", "/v1/conversations/%s" % gid), 403, "not_a_member")
        # Asked again while home still lists her: sent again, nothing more done here.
        self.assertQueued(self.remove_member(alice, gid, alice), "a second leave, home still away")
        r = self.call(alice, "GET", "/v1/conversations")
        self.assertStatus(r, 200)
        [summary] = [c for c in r.json.get("conversations") or [] if c.get("id") == gid]
        self.assertIs(summary.get("member"), False, summary)
        self.assertError(self.call(carol, "GET", "/v1/presence/%s" % alice), 403, "presence_hidden",
                         "alice left: nothing is shared through the group any more")
        self.assertError(self.call(alice, "GET", "/v1/presence/%s" % carol), 403, "presence_hidden")
        # Home comes back and makes the leave: the others are told; alice is not told twice.
        os.kill(home.pid, signal.SIGCONT)
        for u in (owner, carol):
            cc = self.wait_change(S[u], gid, 2, "MEMBER_LEFT", HEAL_S)
            self.assertChange(cc, gid, 2, "MEMBER_LEFT", alice, users=[alice])
        later = self.send_to(S[owner], gid, "after alice")["message_id"]
        S[carol].wait_event(ev_message(later), CROSS_S)
        fence = S[owner].send_message(alice, "direct, after the group's message")["message_id"]
        S[alice].wait_event(ev_message(fence), CROSS_S)
        self.assertEqual(change_versions(S[alice], gid), [(1, "CREATED"), (2, "MEMBER_LEFT")])
        self.assertFalse([e for e in S[alice].events() if (e.get("message") or {}).get("message_id") == later])
        self.assertEqual(sorted(m["user_id"] for m in self.details(carol, gid)["members"]), sorted([owner, carol]))
        # Home made it (once: the second request found her gone): a leave now is refused.
        self.assertError(self.remove_member(alice, gid, alice), 403, "not_a_member", "a leave home made")
        self.assertEqual(change_versions(S[owner], gid), [(1, "CREATED"), (2, "MEMBER_LEFT")])


class HostileHomeKeepsALeaver(GroupFederationCase):
    """A group's home (its real key, its node stopped) never makes a member's leave: its
    states go on naming her. She is out all the same, and gets nothing of the group, until
    home adds her again (an add, counted and checked as any add)."""

    names = (HOME, B)

    def test_a_home_that_never_makes_the_leave_does_not_keep_the_leaver(self):
        pb = test_federation.fed_pb2()
        owner, alice, carol = self.user(HOME, "olga"), self.user(B, "alice"), self.user(B, "carol")
        S = {u: self.connect(u) for u in (alice, carol)}
        port = self.servers[0].port
        subject = "petchat.v1.fed.%s.%s" % (B, HOME)
        spy = test_federation.RawNats(port)
        spy.sub(subject)
        gid = self.create_group(owner, [alice, carol], title="hotel california")                # v1
        for u in (alice, carol):
            self.wait_change(S[u], gid, 1, "CREATED")
        genuine, bodies, bundle = lane_bodies(
            pb, spy, lambda bd: bd.HasField("group_state") and bd.group_state.conversation_id == gid)
        spy.close()
        home = self.node(HOME).proc  # stopped: from here on, HOME is whoever holds its key
        os.kill(home.pid, signal.SIGSTOP)
        self.addCleanup(lambda: home.poll() is None and os.kill(home.pid, signal.SIGCONT))
        self.assertQueued(self.remove_member(alice, gid, alice))
        self.wait_change(S[alice], gid, 2, "MEMBER_LEFT")
        next_seq = max(bd.lane_seq for bd in bodies) + 1

        def state(version, changes, members):
            bd = pb.body()
            bd.CopyFrom(genuine)
            bd.lane_seq = next_seq
            bd.created_at_ms = int(time.time() * 1000)
            gs = bd.group_state
            gs.version = version
            del gs.members[:]
            del gs.roles[:]
            for u in members:
                gs.members.append(u)
                gs.roles.append(3 if u == owner else 1)  # OWNER, MEMBER (proto/client.proto)
            del gs.changes[:]
            for v, kind, users, title in changes:
                ch = gs.changes.add()
                ch.conversation_id, ch.version, ch.kind, ch.at_ms = gid, v, kind, bd.created_at_ms
                setattr(ch, "by", owner)
                ch.users.extend(users)
                ch.title = title
            gs.title = title or gs.title
            return bd

        def publish(bd):
            nonlocal next_seq
            next_seq += 1
            pub = test_federation.RawNats(port)
            pub.pub(subject, test_federation.envelope(pb, HOME, bd, sign=test_federation.region_signer(self.node(HOME)),
                                                      lane_epoch=bundle.lane_epoch, lane_base=bundle.lane_base))
            pub.close()

        # Home renames the group and still names alice: carol is told, alice is not.
        publish(state(2, [(2, DETAILS_CHANGED, [], "you can never leave")], [owner, alice, carol]))
        self.wait_change(S[carol], gid, 2, "DETAILS_CHANGED")
        fence = S[carol].send_message(alice, "direct, after home's rename")["message_id"]
        S[alice].wait_event(ev_message(fence), CROSS_S)
        self.assertEqual(change_versions(S[alice], gid), [(1, "CREATED"), (2, "MEMBER_LEFT")])
        self.assertEqual(self.try_send_to(S[alice], gid, "still here?")["error"]["code"], "not_a_member")
        self.assertError(self.call(alice, "GET", "/v1/conversations/%s" % gid), 403, "not_a_member")
        # Home adds her again (as if the state that removed her never reached america): an
        # add, judged as any join, and she is in.
        publish(state(3, [(3, MEMBERS_ADDED, [alice], "")], [owner, alice, carol]))
        self.wait_change(S[alice], gid, 3, "MEMBERS_ADDED")
        self.assertIn("accepted", self.try_send_to(S[alice], gid, "back again"))
        self.assertEqual(self.details(alice, gid)["id"], gid)


class OwnerLeavesWithAGoneSuccessor(GroupFederationCase):
    """The owner, of another region than home, leaves naming a successor who is no longer a
    member when home gets the leave (the owner's region did not know yet). Their region has
    ended their part already, so home makes the leave all the same: ownership goes to the
    heir (the first admin), not nowhere."""

    names = (HOME, B)

    def test_the_heir_takes_the_role_when_the_successor_is_gone(self):
        pb = test_federation.fed_pb2()
        olga, mia, bert = self.user(HOME, "olga"), self.user(HOME, "mia"), self.user(B, "bert")
        O, Bc = self.connect(olga), self.connect(bert)
        gid = self.create_group(olga, [mia, bert], title="handed on")                           # v1
        self.wait_change(Bc, gid, 1, "CREATED")
        self.assertStatus(self.set_role(olga, gid, bert, "owner"), 200)                         # v2, v3
        self.wait_change(Bc, gid, 3, "ROLE_CHANGED")
        port = self.servers[0].port
        subject = "petchat.v1.fed.%s.%s" % (HOME, B)
        spy = test_federation.RawNats(port)
        spy.sub(subject)
        self.assertQueued(self.patch(bert, gid, title="bert's"))                                 # v4
        genuine, _, bundle = lane_bodies(pb, spy, lambda bd: bd.HasField("group_request"))
        spy.close()
        self.wait_change(O, gid, 4, "DETAILS_CHANGED")
        region_b = self.node(B).proc  # stopped: from here on, B is whoever holds its key
        os.kill(region_b.pid, signal.SIGSTOP)
        self.addCleanup(lambda: region_b.poll() is None and os.kill(region_b.pid, signal.SIGCONT))
        bd = pb.body()
        bd.CopyFrom(genuine)
        bd.lane_seq = genuine.lane_seq + 1
        bd.created_at_ms = int(time.time() * 1000)
        r = bd.group_request
        r.request = pb.group_request.REMOVE
        r.ClearField("title")
        r.users.append(bert)
        r.successor = "gone%d@%s" % (uuid.uuid4().int % 10 ** 8, B)
        r.request_id = "leave-%s" % uuid.uuid4().hex[:12]
        pub = test_federation.RawNats(port)
        pub.pub(subject, test_federation.envelope(pb, B, bd, sign=test_federation.region_signer(self.node(B)),
                                                  lane_epoch=bundle.lane_epoch, lane_base=bundle.lane_base))
        pub.close()
        self.wait_change(O, gid, 7, "MEMBER_LEFT")
        self.assertEqual(change_versions(O, gid)[-3:], [(5, "ROLE_CHANGED"), (6, "ROLE_CHANGED"), (7, "MEMBER_LEFT")])
        self.assertEqual(self.roles(self.details(olga, gid)), {olga: "owner", mia: "member"})


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        fedharness.close_all_servers()
