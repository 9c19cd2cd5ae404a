"""Groups across regions (docs/FEDERATION.md, "Groups across regions"; docs/PROTOCOL.md,
"Conversations and groups"): real nats-server processes and real petchat-node regions,
spoken to as clients do.

A group's home region is its creator's; changes are made there and replicated to every
region with members in home's order; members of other regions ask for changes through
their own region (202 {"queued": true}); every region sends its own members' messages
itself, checked against its replica; receipts travel back to the sender's region.

Written from the documents only. Region names: HOME ("europe", where the groups are
created), B ("america") and C ("asia").

No sleeps: what must arrive is waited for (cross-region delivery, and the resend after a
partition, with generous timeouts); what must NOT arrive is checked behind an ordering
fence: a later event that travelled the same path (the same lane from one origin region to
one destination region, whose bodies are applied in the origin's commit order), or a later
event of a mailbox after the region had already applied what is checked.
"""

import itertools
import os
import socket
import sys
import time
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import test_federation  # noqa: E402  (FederationCase: topology, users, streams)
import test_groups  # noqa: E402  (GroupCase's assertion helpers)
from test_groups import (as_int, change_versions, changes, cpath, ev_change, ev_receipt_by,  # noqa: E402
                         group_message_ids)
from wsclient import ev_deleted, ev_message, is_presence, is_typing, num  # noqa: E402

HOME, B, C = "europe", "america", "asia"

CROSS_S = 30.0  # one cross-region trip (normally well under a second)
HEAL_S = 90.0  # everything held back by a partition or a crash, after it ended (backoff, resend)

_texts = itertools.count(1)


# ---------------------------------------------------------------------------------------
# Small helpers over streams (JSON-mapping dicts, as in test_groups / wsclient)


def group_messages(client, cid):
    """The message objects of group `cid` this stream received, in arrival order."""
    return [e["message"] for e in client.events()
            if "message" in e and e["message"].get("conversation_id") == cid]


def texts_from(client, cid, sender):
    """Texts of the group messages from `sender` on this stream, in arrival order."""
    return [(m.get("body") or {}).get("text") for m in group_messages(client, cid) if m.get("from") == sender]


def origin_log(client, cid, region):
    """What a stream got of group `cid` that its home region `region` wrote: every change
    (made at home) and the messages of senders of that region, in arrival order."""
    out = []
    for e in client.events():
        if ev_change(cid)(e):
            cc = e["conversation_change"]
            out.append(("change", num(cc, "version"), cc.get("kind")))
        elif "message" in e and e["message"].get("conversation_id") == cid \
                and e["message"].get("from", "").endswith("@" + region):
            out.append(("message", e["message"].get("id")))
    return out


def first_group_event(client, cid):
    for e in client.events():
        if ev_change(cid)(e):
            cc = e["conversation_change"]
            return ("change", num(cc, "version"), cc.get("kind"))
        if "message" in e and e["message"].get("conversation_id") == cid:
            return ("message", e["message"].get("id"))
    return None


def region_of(user_id):
    return user_id.split("@", 1)[1]


# ---------------------------------------------------------------------------------------


class GroupFederationCase(test_federation.FederationCase):
    """FederationCase (regions, users, streams, restarting what a failed test left down)
    with three regions and the group API spoken to each user's own region."""

    names = (HOME, B, C)

    # GroupCase's assertion helpers (they only need unittest's assertions).
    assertChange = test_groups.GroupCase.assertChange
    assertSameChanges = test_groups.GroupCase.assertSameChanges
    roles = test_groups.GroupCase.roles

    def setUp(self):
        super().setUp()
        self._rest_sessions = {}

    # -- REST, at the caller's own region ---------------------------------------------------

    def rest_session(self, user_id):
        s = self._rest_sessions.get(user_id)
        if s is None:
            s = self._rest_sessions[user_id] = self.session(user_id, device="rest")
        return s

    def call(self, user_id, method, path, body=None, params=None):
        """A REST request by `user_id` to their own region's node."""
        if params:
            path += "?" + urllib.parse.urlencode(params)
        return self.node(region_of(user_id)).request(method, path, body=body,
                                                     token=self.rest_session(user_id)["access_token"])

    def assertStatus(self, resp, status, msg=None):
        if resp.status != status:
            self.fail("want HTTP %s, got %s%s" % (status, resp.describe(), (": " + msg) if msg else ""))

    def assertError(self, resp, status, code, msg=None):
        where = (" (%s)" % msg) if msg else ""
        self.assertEqual(resp.status, status, "want HTTP %s %s, got %s%s" % (status, code, resp.describe(), where))
        self.assertIsInstance(resp.json, dict, resp.describe())
        err = resp.json.get("error")
        self.assertIsInstance(err, dict, resp.describe())
        self.assertEqual(err.get("code"), code, "wrong error code: %s%s" % (resp.describe(), where))
        return err

    def assertQueued(self, resp, msg=None):
        """A member of another region than the group's home: 202 {"queued": true}."""
        self.assertStatus(resp, 202, msg)
        self.assertIsInstance(resp.json, dict, resp.describe())
        self.assertIs(resp.json.get("queued"), True, resp.describe())

    def create_group(self, owner, members, title="group", **extra):
        """`owner` creates a group at their region (the group's home) with `members`;
        every member could be added. Returns the group's id."""
        body = dict(extra, title=title, members=list(members))
        r = self.call(owner, "POST", "/v1/conversations", body)
        self.assertStatus(r, 201, "create group %r with %s" % (title, list(members)))
        self.assertEqual(r.json.get("failed"), [], r.describe())
        self.assertEqual(sorted(r.json.get("added") or []), sorted(members), r.describe())
        gid = (r.json.get("conversation") or {}).get("id")
        self.assertIsInstance(gid, str, r.describe())
        self.assertTrue(gid.startswith("g"), "a group's id starts with 'g': %r" % gid)
        return gid

    def details(self, user_id, cid):
        r = self.call(user_id, "GET", cpath(cid))
        self.assertStatus(r, 200, "details of %s for %s" % (cid, user_id))
        self.assertEqual(r.json.get("id"), cid, r.describe())
        return r.json

    def add_members(self, user_id, cid, members):
        return self.call(user_id, "POST", cpath(cid, "members"), {"members": list(members)})

    def remove_member(self, user_id, cid, member):
        return self.call(user_id, "DELETE", cpath(cid, "members", member))

    def set_role(self, user_id, cid, member, role):
        return self.call(user_id, "PATCH", cpath(cid, "members", member), {"role": role})

    def patch(self, user_id, cid, **fields):
        return self.call(user_id, "PATCH", cpath(cid), fields)

    def receipts(self, user_id, message_id):
        return self.call(user_id, "GET", "/v1/messages/%s/receipts" % urllib.parse.quote(message_id, safe=""))

    # -- live stream -------------------------------------------------------------------------

    def try_send_to(self, client, cid, text, client_id=None):
        ref = client.next_ref()
        client.send_frame({"ref": ref, "send": {"client_id": client_id or uuid.uuid4().hex,
                                                "conversation_id": cid, "body": {"text": text}}})
        return client.wait_ref(ref)

    def send_to(self, client, cid, text=None, client_id=None):
        """Sends to group `cid` and returns `accepted` (its text as "text")."""
        text = text if text is not None else "message %d" % next(_texts)
        f = self.try_send_to(client, cid, text, client_id)
        self.assertIn("accepted", f, "send to group %s: %s" % (cid, f))
        acc = dict(f["accepted"], text=text)
        self.assertEqual(acc.get("conversation_id"), cid, acc)
        return acc

    def wait_change(self, client, cid, version, kind=None, timeout=CROSS_S):
        ev = client.wait_event(ev_change(cid, version, kind), timeout,
                               what="conversation_change v%d %s of %s" % (version, kind or "", cid))
        return ev["conversation_change"]

    def wait_changes(self, clients, cid, version, kind=None, timeout=CROSS_S):
        for cl in clients:
            self.wait_change(cl, cid, version, kind, timeout)

    def wait_messages(self, clients, message_ids, timeout=CROSS_S):
        """Every stream in `clients` got every message in `message_ids`."""
        for cl in clients:
            for mid in message_ids:
                cl.wait_event(ev_message(mid), timeout, what="message %s" % mid)


# =========================================================================================
# One shared nats-server, three regions


class GroupsAcrossRegions(GroupFederationCase):

    # 1 ---------------------------------------------------------------------------------------

    def test_group_with_members_in_three_regions(self):
        a1, a2 = self.user(HOME, "anna"), self.user(HOME, "axel")
        b1, c1 = self.user(B, "bert"), self.user(C, "chen")
        members = [a1, a2, b1, c1]
        S = {u: self.connect(u) for u in members}
        gid = self.create_group(a1, [a2, b1, c1], title="three regions", description="across the world")

        # Every member's stream, in every region, gets CREATED (version 1), the same change.
        for u in members:
            cc = self.wait_change(S[u], gid, 1, "CREATED")
            self.assertChange(cc, gid, 1, "CREATED", a1, users=[a1, a2, b1, c1])
            self.assertEqual(cc.get("title"), "three regions", cc)
            self.assertEqual(cc.get("description"), "across the world", cc)
        # Each region's replica answers its own members.
        for u in (b1, c1):
            det = self.details(u, gid)
            self.assertEqual(det.get("owner"), a1, det)
            self.assertEqual(self.roles(det), {a1: "owner", a2: "member", b1: "member", c1: "member"})
            self.assertEqual(as_int(det.get("version")), 1, det)
            self.assertEqual(det.get("title"), "three regions", det)

        # A member in each region sends one message; it reaches every member once.
        senders = (a1, b1, c1)
        acc = {u: self.send_to(S[u], gid, "hello from %s" % u, client_id="cid-" + u.split("@")[0])
               for u in senders}
        self.wait_messages(S.values(), [x["message_id"] for x in acc.values()])
        for u in members:
            for sender, x in acc.items():
                got = [m for m in group_messages(S[u], gid) if m.get("id") == x["message_id"]]
                self.assertEqual(len(got), 1, "message of %s on the stream of %s: %s" % (sender, u, got))
                m = got[0]
                self.assertEqual(m.get("from"), sender, m)
                self.assertEqual(m.get("to", ""), "", "a group message's `to` is empty: %s" % m)
                self.assertEqual(m.get("conversation_id"), gid, m)
                self.assertEqual(m.get("client_id"), x["client_id"], "client ids are the same everywhere")
                self.assertEqual(num(m, "sent_at_ms"), num(x, "sent_at_ms"), m)
                self.assertEqual((m.get("body") or {}).get("text"), x["text"], m)

        # The members acknowledge; each sender gets a DELIVERED receipt per other member
        # (a small group: per member, `by` set).
        for u in members:
            S[u].ack(S[u].max_seq(), wait=True)
        for sender, x in acc.items():
            for u in members:
                if u != sender:
                    r = S[sender].wait_event(ev_receipt_by(x["message_id"], "DELIVERED", u), CROSS_S,
                                             what="DELIVERED by %s of %s's message" % (u, sender))["receipt"]
                    self.assertEqual(r.get("conversation_id"), gid, r)
        # The sender's region knows every recipient's delivery.
        for sender, x in acc.items():
            r = self.receipts(sender, x["message_id"])
            self.assertStatus(r, 200, "receipts of %s's message" % sender)
            body = r.json
            self.assertEqual(body.get("message_id"), x["message_id"], body)
            self.assertEqual(body.get("conversation_id"), gid, body)
            self.assertEqual(body.get("recipients"), 3, body)
            self.assertEqual(body.get("delivered_count"), 3, body)
            self.assertEqual(body.get("read_count"), 0, body)
            entries = body.get("members") or []
            self.assertEqual([e.get("user_id") for e in entries], [u for u in members if u != sender],
                             "one entry per recipient, in the order they were added: %s" % body)
            for e in entries:
                self.assertNotEqual(e.get("delivered_at_ms"), "0", "not delivered to %s: %s" % (e.get("user_id"), body))
                self.assertEqual(e.get("read_at_ms"), "0", body)

        # Fence: each sender's next message travels the same lanes as its first message and
        # as the receipts for the others' messages. Once every stream has them, nothing
        # earlier on those paths can still come: every message once, every receipt once.
        fences = {u: self.send_to(S[u], gid, "fence from %s" % u) for u in senders}
        self.wait_messages(S.values(), [x["message_id"] for x in fences.values()])
        for u in members:
            for sender in senders:
                self.assertEqual(texts_from(S[u], gid, sender), [acc[sender]["text"], fences[sender]["text"]],
                                 "%s's messages on the stream of %s" % (sender, u))
            self.assertEqual(texts_from(S[u], gid, a2), [], "a2 sent nothing")
        for sender, x in acc.items():
            delivered = [e["receipt"].get("by") for e in S[sender].events()
                         if "receipt" in e and e["receipt"].get("message_id") == x["message_id"]
                         and e["receipt"].get("status") == "DELIVERED"]
            self.assertEqual(sorted(delivered), sorted(u for u in members if u != sender),
                             "one DELIVERED per member for %s's message" % sender)
        self.assertSameChanges(gid, S.values(), [1])

    def test_a_read_tells_a_sender_of_another_region_read_once(self):
        """A member reads three messages of a sender of another region at once: the sender
        gets one READ (for the newest), as within a region, and their region still records
        each message as read."""
        a1, b1 = self.user(HOME, "rosa"), self.user(B, "rolf")
        S = {u: self.connect(u) for u in (a1, b1)}
        gid = self.create_group(a1, [b1], title="reads")
        self.wait_changes(S.values(), gid, 1, "CREATED")
        sent = [self.send_to(S[a1], gid, "to be read %d" % i) for i in range(3)]
        self.wait_messages([S[b1]], [x["message_id"] for x in sent])
        S[b1].read(gid, sent[-1]["message_id"])
        S[a1].wait_event(ev_receipt_by(sent[-1]["message_id"], "READ", b1), CROSS_S, what="READ of the newest")
        # The older ones' receipts travel on the same lane: once the sender's region has
        # them as read, whatever it tells of them has been told.
        deadline = time.time() + CROSS_S
        for x in sent[:-1]:
            while True:
                r = self.receipts(a1, x["message_id"])
                self.assertStatus(r, 200, "receipts of %s" % x["message_id"])
                if r.json.get("read_count") == 1 or time.time() >= deadline:
                    break
                time.sleep(0.05)
            self.assertEqual(r.json.get("read_count"), 1, r.json)
        S[a1].sync()
        reads = [e["receipt"].get("message_id") for e in S[a1].events()
                 if "receipt" in e and e["receipt"].get("status") == "READ"]
        self.assertEqual(reads, [sent[-1]["message_id"]], "READ events of the sender")

    # 2 ---------------------------------------------------------------------------------------

    def test_remote_member_changes_go_through_home(self):
        a1 = self.user(HOME, "anna")
        b1, b2 = self.user(B, "bert"), self.user(B, "beth")
        c1, c2 = self.user(C, "chen"), self.user(C, "cora")
        outsider = self.user(HOME, "dora")
        S = {u: self.connect(u) for u in (a1, b1, b2, c1, c2)}
        gid = self.create_group(a1, [b1, b2, c1], title="changes")                               # v1
        self.wait_changes([S[u] for u in (a1, b1, b2, c1)], gid, 1, "CREATED")

        # The owner, at home, makes bert (region B) an admin: 200 at once.
        r = self.set_role(a1, gid, b1, "admin")                                                   # v2
        self.assertStatus(r, 200, "the owner sets a role at home")
        for u in (a1, b1, b2, c1):
            cc = self.wait_change(S[u], gid, 2)
            self.assertChange(cc, gid, 2, "ROLE_CHANGED", a1, users=[b1], role="ADMIN")

        # Once B's replica knows bert is an admin, he adds a user of C through his region.
        r = self.add_members(b1, gid, [c2])                                                       # v3
        self.assertQueued(r, "an admin of another region adds")
        for u in (a1, b1, b2, c1, c2):
            cc = self.wait_change(S[u], gid, 3)
            self.assertChange(cc, gid, 3, "MEMBERS_ADDED", b1, users=[c2])
        self.assertEqual(first_group_event(S[c2], gid), ("change", 3, "MEMBERS_ADDED"),
                         "the added member's first event of the group is the change that added them")

        # A member of C leaves through their region.
        r = self.remove_member(c1, gid, c1)                                                       # v4
        self.assertQueued(r, "a member of another region leaves")
        for u in (a1, b1, b2, c1, c2):
            cc = self.wait_change(S[u], gid, 4)
            self.assertChange(cc, gid, 4, "MEMBER_LEFT", c1, users=[c1])

        # A plain member of B may not add: refused at once by B (its replica knows her role).
        self.assertError(self.add_members(b2, gid, [outsider]), 403, "forbidden_role", "a plain member adds")

        # The admin in B renames the group: the next version is his change, so nothing came
        # of the refused request in between.
        r = self.patch(b1, gid, title="renamed from america")                                    # v5
        self.assertQueued(r, "an admin of another region renames")
        for u in (a1, b1, b2, c2):
            cc = self.wait_change(S[u], gid, 5)
            self.assertChange(cc, gid, 5, "DETAILS_CHANGED", b1)
            self.assertEqual(cc.get("title"), "renamed from america", cc)
        self.assertSameChanges(gid, [S[u] for u in (a1, b1, b2)], [1, 2, 3, 4, 5])
        self.assertSameChanges(gid, [S[c2]], [3, 4, 5])
        self.assertEqual(changes(S[c2], gid), changes(S[a1], gid)[2:], "c2's changes are the group's")

        # The member who left gets nothing after their MEMBER_LEFT. Fence: a direct message
        # from home sent after home made v5 (the same lane, home -> C, after v5's state).
        fence = S[a1].send_message(c1, "direct, after the rename")
        S[c1].wait_event(ev_message(fence["message_id"]), CROSS_S)
        self.assertEqual(change_versions(S[c1], gid),
                         [(1, "CREATED"), (2, "ROLE_CHANGED"), (3, "MEMBERS_ADDED"), (4, "MEMBER_LEFT")])
        self.assertError(self.call(c1, "GET", cpath(gid)), 403, "not_a_member", "a former member")

        # Home and every replica agree on the group.
        want_roles = {a1: "owner", b1: "admin", b2: "member", c2: "member"}
        for u in (a1, b2, c2):
            det = self.details(u, gid)
            self.assertEqual(self.roles(det), want_roles, "details at the region of %s" % u)
            self.assertEqual(as_int(det.get("version")), 5, det)
            self.assertEqual(det.get("title"), "renamed from america", det)
            self.assertEqual(det.get("owner"), a1, det)
            self.assertEqual(det.get("member_count"), 4, det)

    # 3 ---------------------------------------------------------------------------------------

    def test_removed_member_cannot_send_or_receive_once_removal_applied(self):
        a1 = self.user(HOME, "anna")
        b1, b2 = self.user(B, "bert"), self.user(B, "beth")
        c1 = self.user(C, "chen")
        S = {u: self.connect(u) for u in (a1, b1, b2, c1)}
        gid = self.create_group(a1, [b1, b2, c1], title="removal")                               # v1
        self.wait_changes(S.values(), gid, 1, "CREATED")
        # Before the removal bert sends and receives like everyone.
        before = self.send_to(S[b1], gid, "bert, before")
        self.wait_messages(S.values(), [before["message_id"]])

        # The owner removes bert; his stream gets the removal as his last change.
        self.assertStatus(self.remove_member(a1, gid, b1), 204, "the owner removes at home")     # v2
        for u in (a1, b1, b2, c1):
            cc = self.wait_change(S[u], gid, 2)
            self.assertChange(cc, gid, 2, "MEMBER_REMOVED", a1, users=[b1])

        # B applied the removal: bert's send is refused.
        f = self.try_send_to(S[b1], gid, "bert, after his removal")
        self.assertIn("error", f, f)
        self.assertEqual(f["error"].get("code"), "not_a_member", f)
        self.assertError(self.call(b1, "GET", cpath(gid)), 403, "not_a_member", "a removed member")

        # Messages sent afterwards from home and from C (which applied the removal too).
        after_a = self.send_to(S[a1], gid, "anna, after the removal")
        after_c = self.send_to(S[c1], gid, "chen, after the removal")
        # Beth (B, still a member) and bert's region applied both ...
        self.wait_messages([S[b2]], [after_a["message_id"], after_c["message_id"]])
        # ... and then a direct message from anna to bert: behind after_a on the lane home -> B,
        # and sent after B applied after_c. Bert's stream has no group message before it.
        fence = S[a1].send_message(b1, "direct, after the group messages")
        S[b1].wait_event(ev_message(fence["message_id"]), CROSS_S)
        self.assertEqual(group_message_ids(S[b1], gid), [before["message_id"]],
                         "the removed member got group messages sent after his removal")
        self.assertEqual(change_versions(S[b1], gid), [(1, "CREATED"), (2, "MEMBER_REMOVED")])

        # Bert's refused send reached nobody. Fence: beth's next message, on the lanes B -> home
        # and B -> C, sent after the refusal.
        last = self.send_to(S[b2], gid, "beth, last")
        want = [before["message_id"], after_a["message_id"], after_c["message_id"], last["message_id"]]
        self.wait_messages([S[u] for u in (a1, b2, c1)], want)
        for u in (a1, b2, c1):
            self.assertEqual(texts_from(S[u], gid, b1), ["bert, before"], "bert's messages on %s's stream" % u)
            # Messages of different regions have no order between them: compare as lists sorted.
            self.assertEqual(sorted(group_message_ids(S[u], gid)), sorted(want), "group messages on %s's stream" % u)

    def test_deletion_and_typing_reach_every_region(self):
        a1, b1, c1 = self.user(HOME, "anna"), self.user(B, "bert"), self.user(C, "chen")
        S = {u: self.connect(u) for u in (a1, b1, c1)}
        gid = self.create_group(a1, [b1, c1], title="delete and type")
        self.wait_changes(S.values(), gid, 1, "CREATED")
        # Bert (not of the home region) deletes his own message for everyone: every region's
        # members get the deletion, and history no longer serves it anywhere.
        acc = self.send_to(S[b1], gid, "soon gone")
        self.wait_messages(S.values(), [acc["message_id"]])
        r = self.call(b1, "DELETE", "/v1/messages/%s" % acc["message_id"], params={"for": "everyone"})
        self.assertStatus(r, 204, "bert deletes his message for everyone")
        for u in (a1, b1, c1):
            S[u].wait_event(ev_deleted(acc["message_id"]), CROSS_S)
            h = self.call(u, "GET", cpath(gid, "messages"))
            self.assertStatus(h, 200)
            self.assertNotIn(acc["message_id"], [m["id"] for m in h.json["messages"]], u)
        # Typing in the group reaches the members of the other regions, with the group's id:
        # one notice per region (america has two members here), not one per member.
        b2 = self.user(B, "bea")
        r = self.add_members(a1, gid, [b2])
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("added"), [b2], r.describe())
        S[b2] = self.connect(b2)
        S[b2].wait_for(lambda f: gid in repr(f), CROSS_S, what="bea added to the group")
        pb = test_federation.fed_pb2()
        spy = test_federation.RawNats(self.servers[0].port)
        spy.sub("petchat.v1.live.%s.%s" % (B, C))
        S[c1].send_frame({"typing": {"conversation_id": gid, "active": True}})
        for u in (a1, b1, b2):
            f = S[u].wait_for(is_typing(c1), CROSS_S, what="chen typing in the group")
            self.assertEqual((f["typing"].get("conversation_id"), f["typing"].get("active")), (gid, True), f)
        notices = []
        # What asia sent america until a second of quiet, or 3 s at most (the lane also
        # carries confirmations about every second: on a busy machine a quiet second may
        # never come, and the loop ran until the test's timeout).
        deadline = time.monotonic() + 3
        try:
            while time.monotonic() < deadline:
                _, data = spy.next_msg(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
                for raw in pb.bundle.FromString(pb.envelope.FromString(data).body).bodies:
                    body = pb.body.FromString(raw)
                    if body.HasField("typing"):
                        notices.append(body.typing_to)
        except (socket.timeout, TimeoutError):
            pass
        finally:
            spy.close()
        self.assertEqual(notices, ["*@" + B], "one typing notice for america's two members")
        # A region sending far more notices than its users may type (30 at once, signed with
        # asia's real key): america's members get at most a second's worth a second, 10.
        before = len([f for f in S[b2].frames() if is_typing(c1)(f)])
        bundle = pb.bundle()
        for i in range(30):
            body = pb.body()
            body.origin, body.destination, body.typing_to = C, B, "*@" + B
            body.created_at_ms = int(time.time() * 1000)
            setattr(body.typing, "from", c1)
            body.typing.conversation_id, body.typing.active = gid, i % 2 == 0
            bundle.bodies.append(body.SerializeToString())
        env = pb.envelope()
        env.origin, env.body = C, bundle.SerializeToString()
        env.signature = test_federation.region_signer(self.node(C))(env.body)
        pub = test_federation.RawNats(self.servers[0].port)
        pub.pub("petchat.v1.live.%s.%s" % (B, C), env.SerializeToString())
        pub.close()
        S[b2].wait_until(lambda: len([f for f in S[b2].frames() if is_typing(c1)(f)]) > before, CROSS_S,
                         what="the first of the notices")
        time.sleep(1.5)  # the rest came in the same envelope: a quiet window, then count
        got = len([f for f in S[b2].frames() if is_typing(c1)(f)]) - before
        self.assertGreater(got, 0, "some of the notices arrive")
        # 10 a second: 20 at most should the 30 (applied in one go) straddle two seconds.
        self.assertLessEqual(got, 20, "no more than a second's worth a second")

    def test_group_members_see_each_others_presence_across_regions(self):
        a1, b1, c1 = self.user(HOME, "anna"), self.user(B, "bert"), self.user(C, "chen")
        Sb = self.connect(b1)
        gid = self.create_group(a1, [b1, c1], title="who is online")
        self.wait_change(Sb, gid, 1, "CREATED")
        # Nobody wrote to anybody: only the group links them, and that reveals nothing.
        Sc = self.connect(c1)
        self.wait_change(Sc, gid, 1, "CREATED")
        self.assertError(self.call(b1, "GET", "/v1/presence/%s" % c1), 403, "presence_hidden")
        # Both write in the group (each region learns it from the other's message): chen
        # (asia), online, is shown to bert (america), in frames and GET /v1/presence.
        self.send_to(Sc, gid, "chen here")
        self.send_to(Sb, gid, "bert here")
        f = Sb.wait_for(is_presence(c1, "ONLINE"), CROSS_S, what="chen online, pushed to bert")
        self.assertEqual(f["presence"]["user_id"], c1)
        r = self.call(b1, "GET", "/v1/presence/%s" % c1)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["state"], "ONLINE", r.describe())
        self.assertError(self.call(a1, "GET", "/v1/presence/%s" % c1), 403, "presence_hidden",
                         "anna, the group's owner, never wrote in it")
        Sc.close()
        Sb.wait_for(is_presence(c1, "OFFLINE"), CROSS_S, what="chen offline, pushed to bert")

    def test_a_region_that_joins_late_learns_who_of_home_wrote_before(self):
        # anna (home, europe) and bert (america) wrote in the group before asia had any
        # member; chen (asia) joins and writes. asia learns from home's state that anna
        # wrote (home speaks for its own users): the two see each other. That bert wrote,
        # asia learns from bert's own region: from his next message.
        a1, b1, c1 = self.user(HOME, "anna"), self.user(B, "bert"), self.user(C, "chen")
        A, Sb = self.connect(a1), self.connect(b1)
        gid = self.create_group(a1, [b1], title="late")
        self.wait_change(Sb, gid, 1, "CREATED")
        self.send_to(A, gid, "anna, before asia")
        self.send_to(Sb, gid, "bert, before asia")
        Sc = self.connect(c1)
        self.add_members(a1, gid, [c1])
        self.wait_change(Sc, gid, 2, "MEMBERS_ADDED")
        got = self.send_to(Sc, gid, "chen, just in")
        A.wait_event(ev_message(got["message_id"]), CROSS_S)
        Sb.wait_event(ev_message(got["message_id"]), CROSS_S)
        f = Sc.wait_for(is_presence(a1, "ONLINE"), CROSS_S, what="anna online, shown to chen")
        self.assertEqual(f["presence"]["user_id"], a1)
        self.assertStatus(self.call(c1, "GET", "/v1/presence/%s" % a1), 200)
        A.wait_for(is_presence(c1, "ONLINE"), CROSS_S, what="chen online, shown to anna")
        self.assertError(self.call(c1, "GET", "/v1/presence/%s" % b1), 403, "presence_hidden",
                         "that bert wrote is not home's to say")
        again = self.send_to(Sb, gid, "bert again")
        Sc.wait_event(ev_message(again["message_id"]), CROSS_S)
        f = Sc.wait_for(is_presence(b1, "ONLINE"), CROSS_S, what="bert online, shown to chen")
        self.assertStatus(self.call(c1, "GET", "/v1/presence/%s" % b1), 200)
        Sb.wait_for(is_presence(c1, "ONLINE"), CROSS_S, what="chen online, shown to bert")

    # 6 ---------------------------------------------------------------------------------------

    def test_home_killed_during_membership_changes(self):
        a1 = self.user(HOME, "anna")
        b1, b2 = self.user(B, "bert"), self.user(B, "beth")
        c1, c2 = self.user(C, "chen"), self.user(C, "cora")
        S = {u: self.connect(u) for u in (a1, b1, b2, c1, c2)}
        gid = self.create_group(a1, [b1, c1], title="crash")                                     # v1
        self.wait_changes([S[u] for u in (a1, b1, c1)], gid, 1, "CREATED")

        # A membership change answered at home, and home killed right after the answer.
        r = self.add_members(a1, gid, [b2])                                                       # v2
        self.assertStatus(r, 200, "the owner adds at home")
        self.assertEqual(r.json.get("added"), [b2], r.describe())
        home = self.node(HOME)
        home.kill9()
        home.start()

        # The change reaches the other regions (B gains a member, C keeps one).
        for u in (b1, b2, c1):
            cc = self.wait_change(S[u], gid, 2, timeout=HEAL_S)
            self.assertChange(cc, gid, 2, "MEMBERS_ADDED", a1, users=[b2])
        self.assertEqual(first_group_event(S[b2], gid), ("change", 2, "MEMBERS_ADDED"))

        # Later changes continue from the next version.
        A = self.connect(a1)  # the old stream died with the node; a new device reads the mailbox
        r = self.patch(a1, gid, title="after the crash")                                         # v3
        self.assertStatus(r, 200)
        r = self.add_members(a1, gid, [c2])                                                       # v4
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("added"), [c2], r.describe())
        for u in (b1, b2, c1, c2):
            self.wait_change(S[u], gid, 4, "MEMBERS_ADDED", timeout=HEAL_S)
        self.wait_change(A, gid, 4, "MEMBERS_ADDED")

        # Fence: a message from home after v4, on the same lanes (home -> B, home -> C).
        fence = self.send_to(A, gid, "after the crash")
        self.wait_messages([S[u] for u in (b1, b2, c1, c2)] + [A], [fence["message_id"]], HEAL_S)
        # Exactly once: strictly increasing versions, none twice, the same changes everywhere.
        self.assertSameChanges(gid, [A, S[b1], S[c1]], [1, 2, 3, 4])
        self.assertSameChanges(gid, [S[b2]], [2, 3, 4])
        self.assertSameChanges(gid, [S[c2]], [4])
        ref = {num(x, "version"): x for x in changes(A, gid)}
        self.assertChange(ref[3], gid, 3, "DETAILS_CHANGED", a1)
        self.assertEqual(ref[3].get("title"), "after the crash")
        self.assertChange(ref[4], gid, 4, "MEMBERS_ADDED", a1, users=[c2])
        for cl in (S[b1], S[b2], S[c1], S[c2]):
            for x in changes(cl, gid):
                self.assertEqual(x, ref[num(x, "version")], "a change differs between regions")
        det = self.details(c2, gid)
        self.assertEqual(as_int(det.get("version")), 4, det)
        self.assertEqual(self.roles(det), {a1: "owner", b1: "member", c1: "member", b2: "member", c2: "member"})


# =========================================================================================
# One nats-server per region (leaf nodes of a hub): a region is cut off by stopping its
# own nats-server.


class GroupsAcrossPartitions(GroupFederationCase):
    topology = staticmethod(fedharness.leaf_topology)

    def cut_off(self, region):
        self.regions[region].nats.stop()

    def restore(self, region):
        self.regions[region].nats.start()

    # 4 ---------------------------------------------------------------------------------------

    def test_home_cut_off_others_keep_chatting_and_changes_apply_in_order(self):
        a1, a2 = self.user(HOME, "anna"), self.user(HOME, "axel")
        b1 = self.user(B, "bert")
        c1, c2 = self.user(C, "chen"), self.user(C, "cora")
        S = {u: self.connect(u) for u in (a1, a2, b1, c1, c2)}
        gid = self.create_group(a1, [a2, b1, c1], title="before the cut")                        # v1
        self.wait_changes([S[u] for u in (a1, a2, b1, c1)], gid, 1, "CREATED")

        self.cut_off(HOME)
        try:
            # Home goes on making changes for its own users: answered at once (200).
            r = self.add_members(a1, gid, [c2])                                                   # v2
            self.assertStatus(r, 200, "home adds while cut off")
            self.assertEqual(r.json.get("added"), [c2], r.describe())
            r = self.patch(a1, gid, title="while cut off")                                        # v3
            self.assertStatus(r, 200, "home renames while cut off")
            self.assertEqual(r.json.get("title"), "while cut off", r.describe())
            self.wait_changes([S[a1], S[a2]], gid, 3, "DETAILS_CHANGED")

            # B and C go on chatting with their replicas.
            sent = {b1: [], c1: []}
            for i in range(3):
                for u in (b1, c1):
                    sent[u].append(self.send_to(S[u], gid, "%s during the cut %d" % (u, i)))
            ids = [x["message_id"] for xs in sent.values() for x in xs]
            self.wait_messages([S[b1], S[c1]], ids)
            for cl in (S[b1], S[c1]):
                for u in (b1, c1):
                    self.assertEqual(texts_from(cl, gid, u), [x["text"] for x in sent[u]])
                # Home was cut off before making v2 and v3: nothing of them could arrive.
                self.assertEqual(change_versions(cl, gid), [(1, "CREATED")])
        finally:
            self.restore(HOME)

        # B and C apply v2 and v3; home's members get B's and C's messages.
        for u in (b1, c1, c2):
            self.wait_change(S[u], gid, 3, "DETAILS_CHANGED", HEAL_S)
        self.wait_messages([S[a1], S[a2]], ids, HEAL_S)

        # Fences, each behind what it proves on its lanes: anna's (home -> B, home -> C,
        # behind v2 and v3), bert's and chen's (B -> home, C -> home, behind their messages;
        # sent once every region applied v3, so cora gets them).
        fences = {u: self.send_to(S[u], gid, "%s after the cut" % u) for u in (a1, b1, c1)}
        self.wait_messages(S.values(), [x["message_id"] for x in fences.values()], HEAL_S)

        # The changes: in version order, once, the same everywhere.
        self.assertSameChanges(gid, [S[u] for u in (a1, a2, b1, c1)], [1, 2, 3])
        self.assertSameChanges(gid, [S[c2]], [2, 3])
        ref = {num(x, "version"): x for x in changes(S[a1], gid)}
        self.assertChange(ref[2], gid, 2, "MEMBERS_ADDED", a1, users=[c2])
        self.assertChange(ref[3], gid, 3, "DETAILS_CHANGED", a1)
        self.assertEqual(ref[3].get("title"), "while cut off")
        self.assertEqual(changes(S[c2], gid), [ref[2], ref[3]])
        # The messages: every member's stream has each sender's messages once, in order.
        for u in (a1, a2, b1, c1):
            for sender in (b1, c1):
                self.assertEqual(texts_from(S[u], gid, sender), [x["text"] for x in sent[sender]]
                                 + [fences[sender]["text"]], "%s's messages on the stream of %s" % (sender, u))
            self.assertEqual(texts_from(S[u], gid, a1), [fences[a1]["text"]])
        # Cora joined when C applied v2, after C had the messages of the cut: she starts there.
        self.assertEqual(first_group_event(S[c2], gid), ("change", 2, "MEMBERS_ADDED"))
        self.assertEqual(sorted(group_message_ids(S[c2], gid)), sorted(x["message_id"] for x in fences.values()))
        det = self.details(b1, gid)
        self.assertEqual(as_int(det.get("version")), 3, det)
        self.assertEqual(det.get("title"), "while cut off", det)

    # 5 ---------------------------------------------------------------------------------------

    def test_cut_off_member_region_gets_everything_in_order_once(self):
        a1, a2 = self.user(HOME, "anna"), self.user(HOME, "axel")
        a3 = self.user(HOME, "abel")
        b1, b2 = self.user(B, "bert"), self.user(B, "beth")
        c1 = self.user(C, "chen")
        S = {u: self.connect(u) for u in (a1, a2, a3, b1, c1)}
        gid = self.create_group(a1, [a2, b1, b2, c1], title="while asia sleeps")                 # v1
        self.wait_changes([S[u] for u in (a1, a2, b1, c1)], gid, 1, "CREATED")

        self.cut_off(C)
        try:
            sent = {a1: [], b1: []}

            def chat(n, start):
                for i in range(start, start + n):
                    for u in (a1, b1):
                        sent[u].append(self.send_to(S[u], gid, "%s while C is cut off %d" % (u, i)))

            chat(2, 0)
            # Home and B have each other's first messages before the changes.
            self.wait_messages([S[a1], S[a2], S[b1]], [x["message_id"] for xs in sent.values() for x in xs])
            self.assertStatus(self.remove_member(a1, gid, b2), 204, "the owner removes beth")  # v2
            r = self.add_members(a1, gid, [a3])                                                   # v3
            self.assertStatus(r, 200, "the owner adds abel")
            self.assertEqual(r.json.get("added"), [a3], r.describe())
            self.wait_change(S[b1], gid, 3, "MEMBERS_ADDED")  # B applied both
            chat(2, 2)
            self.wait_messages([S[a1], S[a2], S[b1]], [x["message_id"] for xs in sent.values() for x in xs])
        finally:
            self.restore(C)

        # C's member gets everything that was sent and changed while C was cut off.
        all_ids = [x["message_id"] for xs in sent.values() for x in xs]
        self.wait_messages([S[c1]], all_ids, HEAL_S)
        self.wait_change(S[c1], gid, 3, "MEMBERS_ADDED", HEAL_S)
        # Fences behind all of it on the lanes home -> C and B -> C.
        fences = {u: self.send_to(S[u], gid, "%s after the cut" % u) for u in (a1, b1)}
        fence_ids = [x["message_id"] for x in fences.values()]
        self.wait_messages([S[u] for u in (a1, a2, a3, b1, c1)], fence_ids, HEAL_S)

        # Once each, in each sender's order.
        for sender in (a1, b1):
            self.assertEqual(texts_from(S[c1], gid, sender), [x["text"] for x in sent[sender]]
                             + [fences[sender]["text"]], "%s's messages on chen's stream" % sender)
        self.assertEqual(texts_from(S[c1], gid, c1), [])
        # The changes in version order, once, the same as at home...
        self.assertSameChanges(gid, [S[a1], S[a2], S[b1], S[c1]], [1, 2, 3])
        ref = {num(x, "version"): x for x in changes(S[a1], gid)}
        self.assertChange(ref[2], gid, 2, "MEMBER_REMOVED", a1, users=[b2])
        self.assertChange(ref[3], gid, 3, "MEMBERS_ADDED", a1, users=[a3])
        # ... and interleaved with home's messages exactly as home committed them.
        self.assertEqual(origin_log(S[c1], gid, HOME), origin_log(S[a1], gid, HOME),
                         "C applied home's changes and messages in home's order")

        # Abel joined at v3: his first event of the group is that change, then what was
        # sent after it (anna's later messages at home; bert's, sent after home answered v3).
        self.assertEqual(first_group_event(S[a3], gid), ("change", 3, "MEMBERS_ADDED"))
        self.assertEqual(change_versions(S[a3], gid), [(3, "MEMBERS_ADDED")])
        for sender in (a1, b1):
            self.assertEqual(texts_from(S[a3], gid, sender), [x["text"] for x in sent[sender][2:]]
                             + [fences[sender]["text"]], "%s's messages on abel's stream" % sender)
        det = self.details(c1, gid)
        self.assertEqual(as_int(det.get("version")), 3, det)
        self.assertEqual(self.roles(det), {a1: "owner", a2: "member", b1: "member", c1: "member", a3: "member"})


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        fedharness.close_all_servers()
