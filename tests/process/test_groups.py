"""Conversations and groups (docs/PROTOCOL.md, "Conversations and groups"): creating groups,
the conversation list, sending to a conversation, membership changes and roles, history
windows, receipts in small and large groups, conversation TTL, limits, typing and presence
in groups, durability.

Written from the protocol document only, as a client author would read it. Streams use the
JSON encoding (the Protobuf mapping is the same dicts, see wsclient.py).

No sleeps: what must arrive is waited for; what must NOT arrive is checked behind an
ordering fence, a later event of the same mailbox (events come in seq order) or a later
frame of the same sender.
"""

import os
import sys
import threading
import time
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REGION  # noqa: E402
from test_messaging import MessagingCase, message_ids, tamper  # noqa: E402
from wsclient import ev_deleted, ev_message, ev_read_mark, ev_receipt, is_presence, is_typing, num  # noqa: E402


def now_ms():
    return int(time.time() * 1000)


def tick():
    """Returns once the wall clock's millisecond has moved on: the node's timestamp of the
    next action is then strictly later than that of every action answered before (same
    clock). Used only where the order under test is by millisecond (activity order of the
    conversation list); it waits for the clock, never for the node."""
    t = now_ms()
    while now_ms() <= t:
        time.sleep(0.0002)


def as_int(v, what="integer"):
    """A REST integer: a JSON number, or (the *_ms fields) a string of decimal digits."""
    if isinstance(v, bool):
        raise AssertionError("%s is a boolean: %r" % (what, v))
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    raise AssertionError("%s is not an integer: %r" % (what, v))


def ev_change(cid, version=None, kind=None):
    """A conversation_change event of conversation `cid` (optionally of that version/kind)."""
    def pred(e):
        cc = e.get("conversation_change")
        return (cc is not None and cc.get("conversation_id") == cid
                and (version is None or num(cc, "version") == version)
                and (kind is None or cc.get("kind") == kind))
    return pred


def ev_receipt_by(message_id, status, by):
    return lambda e: ev_receipt(message_id, status)(e) and e["receipt"].get("by", "") == by


def changes(client, cid):
    """The conversation_change objects of `cid` this stream received, in arrival order."""
    return [e["conversation_change"] for e in client.events() if ev_change(cid)(e)]


def change_versions(client, cid):
    return [(num(c, "version"), c.get("kind")) for c in changes(client, cid)]


def group_log(events, cid):
    """A stream's events about conversation `cid`, summarised in arrival order:
    ("change", version, kind) and ("message", id)."""
    out = []
    for e in events:
        if ev_change(cid)(e):
            cc = e["conversation_change"]
            out.append(("change", num(cc, "version"), cc.get("kind")))
        elif "message" in e and e["message"].get("conversation_id") == cid:
            out.append(("message", e["message"]["id"]))
    return out


def group_message_ids(client, cid):
    return [e["message"]["id"] for e in client.events()
            if "message" in e and e["message"].get("conversation_id") == cid]


def cpath(cid, *parts):
    """/v1/conversations/{cid}[/parts...]; user ids keep their '@' (as in /v1/presence/{id})."""
    return "/v1/conversations/" + urllib.parse.quote(cid, safe="") + "".join(
        "/" + urllib.parse.quote(p, safe="@") for p in parts)


class GroupCase(MessagingCase):
    """test_messaging's helpers (people, streams, history, assertions) plus the group API.
    Every helper talks to self.node (a test may set self.node to a node of its own)."""

    NODE_CONFIG = {}

    # -- REST ------------------------------------------------------------------------------

    def call(self, method, path, session=None, body=None, params=None):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        token = session["access_token"] if isinstance(session, dict) else session
        return self.node.request(method, path, body=body, token=token)

    def create_request(self, session, title=None, members=None, **extra):
        body = dict(extra)
        if title is not None:
            body["title"] = title
        if members is not None:
            body["members"] = list(members)
        return self.call("POST", "/v1/conversations", session, body)

    def create(self, session, title="group", members=(), **extra):
        """Creates a group (201 asserted); returns the whole answer
        {"conversation": <details>, "failed": [...]}."""
        r = self.create_request(session, title, members, **extra)
        self.assertStatus(r, 201, "create group %r with %s" % (title, list(members)))
        body = r.json
        self.assertIsInstance(body.get("conversation"), dict, r.describe())
        self.assertIsInstance(body.get("failed"), list, r.describe())
        gid = body["conversation"].get("id")
        self.assertIsInstance(gid, str, r.describe())
        self.assertTrue(gid.startswith("g"), "a group's id starts with 'g': %r" % gid)
        return body

    def group(self, session, members=(), title="group", **extra):
        """Creates a group in which every member could be added; returns its id."""
        body = self.create(session, title, members, **extra)
        self.assertEqual(body["failed"], [], "every member could be added")
        return body["conversation"]["id"]

    def details_request(self, session, cid):
        return self.call("GET", cpath(cid), session)

    def details(self, session, cid):
        r = self.details_request(session, cid)
        self.assertStatus(r, 200, "details of %s" % cid)
        self.assertIsInstance(r.json, dict, r.describe())
        self.assertEqual(r.json.get("id"), cid, r.describe())
        return r.json

    def list_request(self, session, **params):
        return self.call("GET", "/v1/conversations", session, params=params)

    def list_page(self, session, **params):
        r = self.list_request(session, **params)
        self.assertStatus(r, 200, "conversation list %s" % params)
        body = r.json
        self.assertIsInstance(body.get("conversations"), list, r.describe())
        self.assertIn("next", body, "the list always carries `next` (a cursor or null)")
        self.assertTrue(body["next"] is None or isinstance(body["next"], str), r.describe())
        return body

    def all_conversations(self, session):
        body = self.list_page(session, limit=200)
        self.assertIsNone(body["next"], "more than 200 conversations in a test")
        return body["conversations"]

    def summary(self, session, cid):
        found = [s for s in self.all_conversations(session) if s.get("id") == cid]
        self.assertEqual(len(found), 1, "conversation %s once in the caller's list" % cid)
        return found[0]

    def patch(self, session, cid, **fields):
        return self.call("PATCH", cpath(cid), session, fields)

    def add_members(self, session, cid, members):
        return self.call("POST", cpath(cid, "members"), session, {"members": list(members)})

    def remove_member(self, session, cid, user_id, successor=None):
        params = {"successor": successor} if successor is not None else None
        return self.call("DELETE", cpath(cid, "members", user_id), session, params=params)

    def set_role(self, session, cid, user_id, role):
        return self.call("PATCH", cpath(cid, "members", user_id), session, {"role": role})

    def receipts(self, session, message_id):
        return self.call("GET", "/v1/messages/%s/receipts" % urllib.parse.quote(message_id, safe=""), session)

    # -- live stream -----------------------------------------------------------------------

    @staticmethod
    def group_send_body(cid, text, client_id=None, ttl_s=None):
        send = {"client_id": client_id or uuid.uuid4().hex, "conversation_id": cid, "body": {"text": text}}
        if ttl_s is not None:
            send["ttl_s"] = ttl_s
        return send

    def try_send_to(self, client, cid, text, client_id=None, ttl_s=None):
        """Sends to a conversation by id; returns the answer frame (accepted or error)."""
        ref = client.next_ref()
        client.send_frame({"ref": ref, "send": self.group_send_body(cid, text, client_id, ttl_s)})
        return client.wait_ref(ref)

    def send_to(self, client, cid, text, client_id=None, ttl_s=None):
        """Sends to a conversation by id and returns `accepted`; fails on anything else."""
        f = self.try_send_to(client, cid, text, client_id, ttl_s)
        self.assertIn("accepted", f, "send to conversation %s: %s" % (cid, f))
        acc = f["accepted"]
        self.assertEqual(acc.get("conversation_id"), cid, acc)
        self.assertMessageId(acc.get("message_id"))
        return acc

    def assertSendToRefused(self, client, cid, code):
        ref = client.next_ref()
        client.send_frame({"ref": ref, "send": self.group_send_body(cid, "refused?")})
        self.assertWsError(client.wait_ref(ref), code, ref)

    def wait_change(self, client, cid, version, kind=None):
        ev = client.wait_event(ev_change(cid, version, kind),
                               what="conversation_change v%d %s of %s" % (version, kind or "", cid))
        return ev["conversation_change"]

    # -- assertions ------------------------------------------------------------------------

    def failed_map(self, body):
        """{user_id: code} of a create / add answer's `failed`, checking each entry's shape."""
        out = {}
        for f in body.get("failed") or []:
            self.assertIsInstance(f.get("user_id"), str, f)
            self.assertIsInstance(f.get("code"), str, f)
            self.assertIsInstance(f.get("message"), str, f)
            self.assertTrue(f["message"], "failed[].message is empty: %s" % f)
            out[f["user_id"]] = f["code"]
        return out

    def assertFailed(self, failed, given, code):
        """`given` (as sent) is in `failed` with `code`; a bare name may come back as the
        full user id."""
        keys = [k for k in (given, given + "@" + REGION) if k in failed]
        self.assertTrue(keys, "%r is not in failed: %s" % (given, failed))
        self.assertEqual(failed[keys[0]], code, "failed entry of %r: %s" % (given, failed))

    def roles(self, details):
        """{user_id: role} of a details object's members."""
        members = details.get("members")
        self.assertIsInstance(members, list, details)
        out = {}
        for m in members:
            self.assertNotIn(m.get("user_id"), out, "member listed twice: %s" % members)
            out[m.get("user_id")] = m.get("role")
        return out

    def assertChange(self, cc, cid, version, kind, by, users=None, role=None):
        self.assertEqual(cc.get("conversation_id"), cid, cc)
        self.assertEqual(num(cc, "version"), version, cc)
        self.assertEqual(cc.get("kind"), kind, cc)
        self.assertEqual(cc.get("by"), by, cc)
        self.assertGreater(num(cc, "at_ms"), 0, cc)
        if users is not None:
            self.assertEqual(cc.get("users", []), list(users), cc)
        if role is not None:
            self.assertEqual(cc.get("role"), role, cc)

    def assertSameChanges(self, cid, clients, versions):
        """Every client in `clients` got exactly the changes `versions` of `cid`, in order,
        and all got the same ones (one write: same content, same time)."""
        seen = None
        for c in clients:
            got = changes(c, cid)
            self.assertEqual([num(x, "version") for x in got], list(versions),
                             "changes of %s on the stream of %s" % (cid, c.welcome.get("user_id")))
            by_version = {num(x, "version"): x for x in got}
            if seen is None:
                seen = by_version
            else:
                for v in versions:
                    if v in seen:
                        self.assertEqual(by_version[v], seen[v], "change v%d differs between members" % v)


# =========================================================================================
# Default limits, one node for the class


class GroupsTest(GroupCase):

    def test_bad_requests_get_clear_errors_and_change_nothing(self):
        alice, bob = self.person("alice"), self.person("bob")
        a = alice.login()
        gid = self.group(a, [bob.id], title="kept as is")
        before = self.details(a, gid)
        raw = self.node.request("POST", "/v1/conversations", raw_body=b"{not json", token=a["access_token"])
        self.assertError(raw, 400, "invalid_json")
        for body, field in (({"title": 5}, "title"), ({"title": "t", "members": "bob"}, "members"),
                            ({"title": "t", "members": [1]}, "members"), ({"title": "t", "ttl_s": -1}, "ttl_s"),
                            ({"title": "t", "ttl_s": "5"}, "ttl_s"), ({"title": "t", "history_visible": "yes"},
                                                                      "history_visible"),
                            ({"members": [bob.id]}, "title")):
            r = self.call("POST", "/v1/conversations", a, body)
            self.assertEqual(r.status, 400, r.describe())
            self.assertIn(r.json["error"]["code"], ("invalid_field", "missing_field"), r.describe())
            self.assertEqual(r.json["error"].get("field"), field, r.describe())
        self.assertError(self.call("PATCH", cpath(gid, "members", bob.id), a, {"role": "king"}), 400, "invalid_field")
        self.assertError(self.call("PATCH", cpath(gid), a, {"muted": "yes"}), 400, "invalid_field", field="muted")
        self.assertError(self.call("PATCH", cpath(gid), a, {"title": None}), 400, "invalid_field", field="title")
        self.assertError(self.call("GET", "/v1/conversations", a, params={"limit": "0"}), 400, "invalid_field")
        self.assertError(self.call("GET", "/v1/conversations", a, params={"before": "garbage"}), 400,
                         "invalid_field")
        unknown = "g" + "Z" * 22
        self.assertError(self.call("GET", cpath(unknown), a), 404, "conversation_not_found")
        self.assertError(self.call("POST", cpath(unknown, "members"), a, {"members": [bob.id]}), 404,
                         "conversation_not_found")
        self.assertError(self.call("DELETE", cpath(unknown, "members", bob.id), a), 404, "conversation_not_found")
        self.assertError(self.call("GET", cpath(gid, "members", bob.id, "extra"), a), 404, "not_found")
        self.assertError(self.node.request("GET", "/v1/conversations"), 401, "missing_token")
        self.assertError(self.call("PUT", cpath(gid), a, {}), 405, "method_not_allowed")
        # None of it changed the group.
        self.assertEqual(self.details(a, gid), before)

    def test_a_create_asked_again_with_its_client_id_makes_no_second_group(self):
        """A client whose create's answer was lost asks again with the same client_id: it
        gets the group it made (200, not 201), and no one is told of a second."""
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b = alice.login(), bob.login()
        B = self.ws(b)
        first = self.create_request(a, "trip", [bob.id], client_id="create-1")
        self.assertStatus(first, 201)
        gid = first.json["conversation"]["id"]
        again = self.create_request(a, "trip", [bob.id], client_id="create-1")
        self.assertStatus(again, 200)
        self.assertEqual(again.json["conversation"]["id"], gid)
        self.assertEqual((again.json["added"], again.json["failed"]), ([], []))
        # The client_id names the create: another body with it is still that group.
        other = self.create_request(a, "another", [carol.id], client_id="create-1")
        self.assertStatus(other, 200)
        self.assertEqual(other.json["conversation"]["id"], gid)
        listed = [c["id"] for c in self.call("GET", "/v1/conversations", a).json["conversations"]]
        self.assertEqual(listed.count(gid), 1)
        self.assertEqual(len([c for c in listed if c.startswith("g")]), 1, listed)
        # Bob was told of one group, once.
        self.wait_change(B, gid, 1, "CREATED")
        B.sync()
        self.assertEqual(change_versions(B, gid), [(1, "CREATED")])
        self.assertEqual(len([e for e in B.events() if "conversation_change" in e]), 1, B.events())
        # Another client_id, or another creator with the same one, is another group.
        self.assertNotEqual(self.create_request(a, "trip", [], client_id="create-2").json["conversation"]["id"], gid)
        mine = self.create_request(b, "bob's", [], client_id="create-1")
        self.assertStatus(mine, 201)
        self.assertNotEqual(mine.json["conversation"]["id"], gid)
        for bad in ("", "x" * 65, 5):
            self.assertError(self.create_request(a, "t", [], client_id=bad), 400, "invalid_field", field="client_id")
        # Its other fields are not looked at; and a creator who left since gets the group's id.
        self.assertStatus(self.create_request(a, "x" * 1000, [], client_id="create-1"), 200)
        self.assertStatus(self.call("DELETE", cpath(gid, "members", alice.id), a, params={"successor": bob.id}), 204)
        left = self.create_request(a, "trip", [bob.id], client_id="create-1")
        self.assertStatus(left, 200)
        # Only its id: before, a made-up view said member true, with no title or members.
        self.assertEqual(left.json["conversation"], {"id": gid}, left.describe())

    # 1 ---------------------------------------------------------------------------------------

    def test_create_group_reports_failed_members_and_tells_every_initial_member(self):
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a, b, c, d = alice.login(), bob.login(), carol.login(), dave.login()
        A, B, C, D = self.ws(a), self.ws(b), self.ws(c), self.ws(d)
        ghost = "ghost%d" % int(uuid.uuid4().int % 10 ** 8)  # a valid name nobody registered
        remote = "someone@nowhere"  # a region not in /v1/regions
        not_an_id = "Not A Name!"
        members = [bob.id, carol.name, ghost, remote, not_an_id, bob.id, alice.id]
        body = self.create(a, "Weekend plans", members, description="where do we go?")
        conv = body["conversation"]
        gid = conv["id"]

        # Per-member failures, everyone else added; repeats and the creator count once.
        failed = self.failed_map(body)
        self.assertEqual(len(body["failed"]), 3, body["failed"])
        self.assertFailed(failed, ghost, "user_not_found")
        self.assertFailed(failed, remote, "user_not_found")
        self.assertFailed(failed, not_an_id, "user_not_found")

        # The details: owner and roles.
        self.assertEqual(conv.get("kind"), "group")
        self.assertEqual(conv.get("title"), "Weekend plans")
        self.assertEqual(conv.get("description"), "where do we go?")
        self.assertEqual(conv.get("owner"), alice.id)
        self.assertEqual(self.roles(conv), {alice.id: "owner", bob.id: "member", carol.id: "member"})
        self.assertEqual(conv.get("member_count"), 3)
        self.assertIs(conv.get("member"), True)
        self.assertEqual(as_int(conv.get("version"), "version"), 1)
        self.assertEqual(conv.get("ttl_s"), 0)
        self.assertIs(conv.get("history_visible"), False)
        self.assertIsNone(conv.get("last_message"))
        self.assertEqual(conv.get("unread_count"), 0)
        self.assertIsNone(conv.get("read_mark"))
        self.assertIs(conv.get("muted"), False)
        self.assertGreater(as_int(conv.get("created_at_ms"), "created_at_ms"), 0)
        # A member reads the same details; a user who never was a member cannot.
        seen_by_bob = self.details(b, gid)
        self.assertEqual(seen_by_bob.get("owner"), alice.id)
        self.assertEqual(self.roles(seen_by_bob), self.roles(conv))
        self.assertError(self.details_request(d, gid), 404, "conversation_not_found")

        # Every initial member's stream gets CREATED, version 1, the creator first.
        for cl in (A, B, C):
            cc = self.wait_change(cl, gid, 1, "CREATED")
            self.assertChange(cc, gid, 1, "CREATED", alice.id)
            users = cc.get("users", [])
            self.assertEqual(users[:1], [alice.id], "the creator comes first: %s" % users)
            self.assertEqual(sorted(users), sorted([alice.id, bob.id, carol.id]), "each member once: %s" % users)
            self.assertEqual(cc.get("title"), "Weekend plans")
            self.assertEqual(cc.get("description"), "where do we go?")
            self.assertEqual(cc.get("ttl_s", 0), 0)
            self.assertIs(cc.get("history_visible", False), False)
        self.assertSameChanges(gid, (A, B, C), [1])
        # Dave is no member: a later message to him is his first event, nothing came before.
        mid = A.send_message(dave.id, "not in your group")["message_id"]
        D.wait_event(ev_message(mid))
        self.assertEqual([e for e in D.events() if "conversation_change" in e], [])
        # The group is in the members' lists, not in dave's.
        self.assertEqual(self.summary(c, gid).get("kind"), "group")
        self.assertNotIn(gid, [s.get("id") for s in self.all_conversations(d)])

    # 2 ---------------------------------------------------------------------------------------

    def test_conversation_list_orders_counts_unread_and_pages(self):
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a, b, c, d = alice.login(), bob.login(), carol.login(), dave.login()
        A, B, C = self.ws(a), self.ws(b), self.ws(c)

        # Activity, oldest first: a direct message from bob, group G1 created by alice, a
        # direct message from carol, group G2 created by dave with alice, messages in G1.
        d_bob = B.send_message(alice.id, "hi alice")
        tick()
        g1 = self.group(a, [bob.id, carol.id], title="G1")
        tick()
        d_carol = C.send_message(alice.id, "hello from carol")
        tick()
        g2 = self.group(d, [alice.id], title="G2")
        tick()
        self.send_to(B, g1, "bob in G1 (1)")
        g1m2 = self.send_to(B, g1, "bob in G1 (2)")
        g1m3 = self.send_to(A, g1, "alice in G1")  # her own: never unread for her
        A.wait_event(ev_message(g1m3["message_id"]))

        order = [g1, g2, d_carol["conversation_id"], d_bob["conversation_id"]]
        convs = self.all_conversations(a)
        self.assertEqual([s.get("id") for s in convs], order, "newest activity first")
        by_id = {s["id"]: s for s in convs}
        activity = [as_int(s.get("last_activity_ms"), "last_activity_ms") for s in convs]
        self.assertEqual(activity, sorted(activity, reverse=True))
        for s in convs:
            self.assertIsInstance(s.get("last_activity_ms"), str, "last_activity_ms is a string: %s" % s)
            self.assertIs(s.get("member"), True, s)
            self.assertIs(s.get("muted"), False, s)

        s = by_id[g1]
        self.assertEqual(s.get("kind"), "group")
        self.assertEqual(s.get("title"), "G1")
        self.assertEqual(s.get("member_count"), 3)
        self.assertEqual(s.get("unread_count"), 2, "bob's two messages; alice's own does not count")
        self.assertEqual((s.get("last_message") or {}).get("id"), g1m3["message_id"])
        self.assertEqual((s.get("last_message") or {}).get("from"), alice.id)
        self.assertEqual(as_int(s["last_activity_ms"]), num(g1m3, "sent_at_ms"),
                         "activity is the last message's time")
        s = by_id[g2]
        self.assertEqual(s.get("kind"), "group")
        self.assertEqual(s.get("title"), "G2")
        self.assertEqual(s.get("member_count"), 2)
        self.assertIsNone(s.get("last_message"))
        self.assertEqual(s.get("unread_count"), 0)
        self.assertIsNone(s.get("read_mark"))
        for acc, peer, text in ((d_carol, carol, "hello from carol"), (d_bob, bob, "hi alice")):
            s = by_id[acc["conversation_id"]]
            self.assertTrue(s["id"].startswith("d"), "a direct conversation's id starts with 'd': %s" % s)
            self.assertEqual(s.get("kind"), "direct")
            self.assertEqual(s.get("peer"), peer.id)
            self.assertEqual(s.get("title"), peer.id, "a direct conversation is titled with the other member")
            self.assertEqual(s.get("member_count"), 2)
            self.assertEqual(s.get("unread_count"), 1)
            self.assertIsNone(s.get("read_mark"))
            self.assertEqual((s.get("last_message") or {}).get("id"), acc["message_id"])
            self.assertEqual(((s.get("last_message") or {}).get("body") or {}).get("text"), text)
            self.assertEqual(as_int(s["last_activity_ms"]), num(acc, "sent_at_ms"))
        # Bob's view of G1: alice's message is his one unread.
        self.assertEqual(self.summary(b, g1).get("unread_count"), 1)

        # Paging: `next` as `before` continues; null at the end.
        p1 = self.list_page(a, limit=3)
        self.assertEqual([s.get("id") for s in p1["conversations"]], order[:3])
        self.assertIsInstance(p1["next"], str, "more follow: next is a cursor")
        p2 = self.list_page(a, limit=3, before=p1["next"])
        self.assertEqual([s.get("id") for s in p2["conversations"]], order[3:])
        self.assertIsNone(p2["next"], "no more: next is null")
        p = self.list_page(a, limit=1)
        collected = [s.get("id") for s in p["conversations"]]
        for _ in range(10):
            if p["next"] is None:
                break
            p = self.list_page(a, limit=1, before=p["next"])
            collected += [s.get("id") for s in p["conversations"]]
        self.assertEqual(collected, order)
        self.assertEqual([s.get("id") for s in self.list_page(a)["conversations"]], order, "default limit 50")
        for bad in (0, 201, "many"):
            with self.subTest(limit=bad):
                self.assertError(self.list_request(a, limit=bad), 400, "invalid_field")

        # Reading up to bob's second message: nothing unread (alice's own is after it).
        A.read(g1, g1m2["message_id"])
        rm = A.wait_event(ev_read_mark(g1m2["message_id"]))["read_mark"]
        self.assertEqual(rm.get("conversation_id"), g1)
        s = self.summary(a, g1)
        self.assertEqual(s.get("unread_count"), 0)
        self.assertEqual(s.get("read_mark"), g1m2["message_id"])
        # A new message from someone else is unread again, after the read mark.
        g1m4 = self.send_to(C, g1, "carol in G1")
        A.wait_event(ev_message(g1m4["message_id"]))
        s = self.summary(a, g1)
        self.assertEqual(s.get("unread_count"), 1)
        self.assertEqual(s.get("read_mark"), g1m2["message_id"])
        self.assertEqual((s.get("last_message") or {}).get("id"), g1m4["message_id"])
        # The direct conversation read on the stream too.
        A.read(d_bob["conversation_id"], d_bob["message_id"])
        A.wait_event(ev_read_mark(d_bob["message_id"]))
        s = self.summary(a, d_bob["conversation_id"])
        self.assertEqual(s.get("unread_count"), 0)
        self.assertEqual(s.get("read_mark"), d_bob["message_id"])

        # Muting is the caller's own flag, in a group and in a direct conversation.
        for cid in (g1, d_carol["conversation_id"]):
            r = self.patch(a, cid, muted=True)
            self.assertStatus(r, 200)
            self.assertIs(r.json.get("muted"), True, r.describe())
            self.assertIs(self.summary(a, cid).get("muted"), True)
        self.assertIs(self.summary(b, g1).get("muted"), False, "bob did not mute G1")
        self.assertEqual(as_int(self.details(a, g1).get("version")), 1, "muting is no change of the group")
        # ...and no event: bob's next message is the next thing alice's stream gets of G1.
        fence = self.send_to(B, g1, "after the mute")
        A.wait_event(ev_message(fence["message_id"]))
        self.assertEqual(change_versions(A, g1), [(1, "CREATED")])
        r = self.patch(a, g1, muted=False)
        self.assertStatus(r, 200)
        self.assertIs(self.summary(a, g1).get("muted"), False)
        # A former member changes nothing of it: refused, and not kept either.
        self.assertStatus(self.remove_member(a, g1, bob.id), 204)
        self.assertError(self.patch(b, g1, muted=True), 403, "not_a_member")
        self.assertIs(self.summary(b, g1).get("muted"), False, "the refused mute was stored")

    def test_the_list_passes_over_messages_that_are_gone(self):
        """last_message is the newest the caller may still see, and a read up to it leaves
        nothing unread, whatever was deleted or hidden after it."""
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        m1 = B.send_message(alice.id, "older")
        cid, m1 = m1["conversation_id"], m1["message_id"]
        m2 = B.send_message(alice.id, "newest")["message_id"]
        A.wait_event(ev_message(m2))
        self.assertStatus(self.delete_message(b, m2, "everyone"), 204)
        s = self.summary(a, cid)
        self.assertEqual(((s.get("last_message") or {}).get("id"), s.get("unread_count")), (m1, 2),
                         "the older message is the last; the deleted one counts until a read")
        A.read(cid, m1)
        A.wait_event(ev_read_mark(m1))
        self.assertEqual(self.summary(a, cid).get("unread_count"), 0, "nothing after the read mark is left")
        # One deleted for oneself is passed over the same way.
        m3 = B.send_message(alice.id, "hide me")["message_id"]
        A.wait_event(ev_message(m3))
        self.assertStatus(self.delete_message(a, m3, "me"), 204)
        s = self.summary(a, cid)
        self.assertEqual(((s.get("last_message") or {}).get("id"), s.get("unread_count")), (m1, 0))
        self.assertEqual((self.summary(b, cid).get("last_message") or {}).get("id"), m3, "bob still sees it")

    def test_the_lists_walk_back_is_cut_at_16_and_stops_where_a_period_starts(self):
        """last_message looks at most 16 messages back: past that it is null and the count
        stays as it was; a member's walk ends where their membership period starts, and a walk
        that found nothing there leaves nothing unread."""
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A, C = self.ws(a), self.ws(c)
        B = self.ws(b)
        sent = [B.send_message(alice.id, "m%d" % i) for i in range(18)]
        cid, ids = sent[0]["conversation_id"], [f["message_id"] for f in sent]
        A.wait_event(ev_message(ids[-1]))
        for mid in reversed(ids[3:]):  # 15 hidden for alice: the 16th looked at is shown
            self.assertStatus(self.delete_message(a, mid, "me"), 204)
        s = self.summary(a, cid)
        self.assertEqual(((s.get("last_message") or {}).get("id"), s.get("unread_count")), (ids[2], 18))
        self.assertStatus(self.delete_message(a, ids[2], "me"), 204)
        s = self.summary(a, cid)
        self.assertEqual((s.get("last_message"), s.get("unread_count")), (None, 18),
                         "16 looked at, all hidden: no last message, and the count as it was")
        A.read(cid, ids[1])
        A.wait_event(ev_read_mark(ids[1]))
        s = self.summary(a, cid)
        self.assertEqual((s.get("last_message"), s.get("unread_count")), (None, 16),
                         "a cut walk clears nothing: the 16 after the mark stay counted")
        self.assertEqual((self.summary(b, cid).get("last_message") or {}).get("id"), ids[-1], "bob sees them all")

        # Carol joins a group whose history is hidden, and hides the one message of her period.
        gid = self.group(a, [bob.id], title="before carol")
        self.send_to(A, gid, "before carol (1)")
        self.send_to(B, gid, "before carol (2)")
        self.assertStatus(self.add_members(a, gid, [carol.id]), 200)
        n3 = self.send_to(A, gid, "carol is here")["message_id"]
        C.wait_event(ev_message(n3))
        s = self.summary(c, gid)
        self.assertEqual(((s.get("last_message") or {}).get("id"), s.get("unread_count")), (n3, 1))
        self.assertStatus(self.delete_message(c, n3, "me"), 204)
        s = self.summary(c, gid)
        self.assertEqual((s.get("last_message"), s.get("unread_count")), (None, 0),
                         "nothing of her period is left to her: nothing unread, no older message shown")
        self.assertEqual((self.summary(b, gid).get("last_message") or {}).get("id"), n3)

    def test_unread_counts_stay_exact_past_many_own_messages(self):
        """A member's own messages never count as unread for them, also when more of them
        follow the read mark than the node keeps track of one by one (64)."""
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        gid = self.group(a, [bob.id], title="chatty")
        own = [self.send_to(A, gid, "alice %d" % i)["message_id"] for i in range(70)]
        bobs = self.send_to(B, gid, "bob's only one")["message_id"]
        self.assertEqual(self.summary(a, gid)["unread_count"], 1)
        self.assertEqual(self.summary(b, gid)["unread_count"], 70)
        # Alice reads up to her own 35th: 35 of hers follow the mark, and bob's one.
        A.read(gid, own[34])
        A.wait_event(ev_read_mark(own[34]))
        self.assertEqual(self.summary(a, gid)["unread_count"], 1)
        # Bob reads up to the same one: 35 of alice's follow it, and his own.
        B.read(gid, own[34])
        B.wait_event(ev_read_mark(own[34]))
        self.assertEqual(self.summary(b, gid)["unread_count"], 35)
        A.read(gid, bobs)
        A.wait_event(ev_read_mark(bobs))
        self.assertEqual(self.summary(a, gid)["unread_count"], 0)

    # 3 ---------------------------------------------------------------------------------------

    def test_group_send_reaches_every_member_with_empty_to(self):
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a1, a2, b, c, d = alice.login("phone"), alice.login("laptop"), bob.login(), carol.login(), dave.login()
        A1, A2, B, C, D = self.ws(a1), self.ws(a2), self.ws(b), self.ws(c), self.ws(d)
        gid = self.group(a1, [bob.id, carol.id], title="send")

        acc = self.send_to(A1, gid, "hello group", client_id="group-send-1")
        mid = acc["message_id"]
        self.assertFalse(acc.get("duplicate", False))
        for cl in (A1, A2, B, C):  # every member, the sender's devices included
            m = cl.wait_event(ev_message(mid))["message"]
            self.assertEqual(m.get("conversation_id"), gid, m)
            self.assertEqual(m.get("from"), alice.id, m)
            self.assertEqual(m.get("to", ""), "", "a group message's `to` is empty: %s" % m)
            self.assertEqual(m.get("client_id"), "group-send-1", m)
            self.assertEqual((m.get("body") or {}).get("text"), "hello group", m)
            self.assertEqual(num(m, "sent_at_ms"), num(acc, "sent_at_ms"), m)
        # A retry is the same message, never a second one.
        dup = self.send_to(A1, gid, "hello group", client_id="group-send-1")
        self.assertTrue(dup.get("duplicate", False), dup)
        self.assertEqual(dup["message_id"], mid)
        # Bob answers in the group.
        reply = self.send_to(B, gid, "hi all")
        for cl in (A1, A2, B, C):
            cl.wait_event(ev_message(reply["message_id"]))
            self.assertEqual(group_message_ids(cl, gid), [mid, reply["message_id"]])
        hist = self.history(c, conversation_id=gid)["messages"]
        self.assertEqual([m["id"] for m in hist], [mid, reply["message_id"]])
        self.assertEqual([m.get("to", "") for m in hist], ["", ""])

        # A direct conversation can be named by its id too; `to` is then the recipient.
        direct = A1.send_message(dave.id, "hi dave")
        dcid = direct["conversation_id"]
        by_id = self.send_to(A1, dcid, "by conversation id")
        m = D.wait_event(ev_message(by_id["message_id"]))["message"]
        self.assertEqual(m.get("from"), alice.id)
        self.assertEqual(m.get("to"), dave.id)
        # Dave (no member) got nothing of the group before those.
        self.assertEqual(group_message_ids(D, gid), [])
        self.assertEqual(message_ids(D.events()), [direct["message_id"], by_id["message_id"]])

        # Both `to` and `conversation_id`: invalid_field.
        ref = A1.next_ref()
        A1.send_frame({"ref": ref, "send": {"client_id": uuid.uuid4().hex, "to": bob.id, "conversation_id": gid,
                                            "body": {"text": "both"}}})
        self.assertWsError(A1.wait_ref(ref), "invalid_field", ref)
        # No such conversation, and a conversation the sender never was a member of.
        self.assertSendToRefused(A1, tamper(gid, len(gid) // 2), "conversation_not_found")
        self.assertSendToRefused(D, gid, "conversation_not_found")
        # None of the refused sends reached anyone: the next message follows the reply.
        last = self.send_to(C, gid, "still here")
        B.wait_event(ev_message(last["message_id"]))
        self.assertEqual(group_message_ids(B, gid), [mid, reply["message_id"], last["message_id"]])

    # 4b --------------------------------------------------------------------------------------

    def test_sends_racing_the_senders_removal_fall_on_one_side_of_it(self):
        """A member sends a burst while the owner removes them: every send is either
        accepted and before the removal in every member's mailbox, or refused with
        not_a_member and seen by nobody."""
        owner, other, leaving = self.person("owner"), self.person("other"), self.person("leaving")
        o, x = owner.login(), leaving.login()
        O, OT, X = self.ws(o), self.ws(other.login()), self.ws(x)
        gid = self.group(o, [other.id, leaving.id], title="race")
        for c in (O, OT, X):
            self.wait_change(c, gid, 1, "CREATED")
        refs = []
        for i in range(40):  # pipelined: the node takes them as they come, while the removal runs
            ref = X.next_ref()
            X.send_frame({"ref": ref, "send": self.group_send_body(gid, "racing %d" % i)})
            refs.append(ref)
            if i == 5:
                removal = threading.Thread(target=lambda: self.remove_member(o, gid, leaving.id))
                removal.start()
        removal.join()
        answers = [X.wait_ref(ref) for ref in refs]
        accepted = {a["accepted"]["message_id"] for a in answers if "accepted" in a}
        for a in answers:
            if "accepted" not in a:
                self.assertWsError(a, "not_a_member", a.get("ref"))
        removed = self.wait_change(O, gid, 2, "MEMBER_REMOVED")
        self.assertEqual(removed.get("users"), [leaving.id])
        # Fence: after the removal, the owner writes to the group and then to the removed member.
        after = self.send_to(O, gid, "after the removal")["message_id"]
        fence = O.send_message(leaving.id, "direct, after the removal")["message_id"]
        X.wait_event(ev_message(fence))
        for c, who in ((O, "owner"), (OT, "other member"), (X, "removed member")):
            if c is not X:
                c.wait_event(ev_message(after))
            log = group_log(c.events(), gid)
            cut = log.index(("change", 2, "MEMBER_REMOVED"))
            before = {item[1] for item in log[:cut] if item[0] == "message"}
            later = {item[1] for item in log[cut + 1:] if item[0] == "message"}
            self.assertEqual(before, accepted, "%s: the accepted sends, all before the removal" % who)
            self.assertEqual(later, set() if c is X else {after}, "%s: nothing of the removed member after it" % who)

    # 4 ---------------------------------------------------------------------------------------

    def test_membership_changes_are_seen_in_one_order_and_removal_cuts_off(self):
        alice, bob, carol, dave, erin = (self.person(n) for n in ("alice", "bob", "carol", "dave", "erin"))
        a, b, c, d, e = alice.login(), bob.login(), carol.login(), dave.login(), erin.login()
        A, B, C, D, E = self.ws(a), self.ws(b), self.ws(c), self.ws(d), self.ws(e)
        gid = self.group(a, [bob.id, carol.id], title="membership")                          # v1

        self.assertStatus(self.set_role(a, gid, bob.id, "admin"), 200)                         # v2
        r = self.add_members(b, gid, [dave.id])                                                # v3
        self.assertStatus(r, 200, "an admin adds")
        self.assertEqual(r.json.get("added"), [dave.id], r.describe())
        self.assertEqual(r.json.get("failed"), [], r.describe())
        self.assertIn(dave.id, self.roles(r.json.get("conversation") or {}))
        self.assertError(self.add_members(c, gid, [erin.id]), 403, "forbidden_role", msg="a member adds")
        r = self.add_members(b, gid, [carol.id])
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("added"), [], r.describe())
        self.assertFailed(self.failed_map(r.json), carol.id, "already_member")
        self.assertEqual(as_int(self.details(a, gid).get("version")), 3, "nobody added: no change")
        r = self.add_members(a, gid, [erin.id])                                                # v4
        self.assertStatus(r, 200, "the owner adds")
        self.assertEqual(r.json.get("added"), [erin.id], r.describe())
        self.assertError(self.remove_member(c, gid, dave.id), 403, "forbidden_role", msg="a member removes")
        self.assertStatus(self.remove_member(b, gid, dave.id), 204, "an admin removes a member")  # v5
        self.assertError(self.remove_member(a, gid, dave.id), 404, "user_not_found", msg="not a member any more")
        self.assertStatus(self.remove_member(e, gid, erin.id), 204, "erin leaves")                # v6

        # The same changes, in the same order, on every stream that was a member then.
        self.wait_change(C, gid, 6)
        for cl in (A, B):
            self.wait_change(cl, gid, 6)
        self.wait_change(D, gid, 5)
        self.wait_change(E, gid, 6)
        self.assertSameChanges(gid, (A, B, C), [1, 2, 3, 4, 5, 6])
        cc = {num(x, "version"): x for x in changes(A, gid)}
        self.assertChange(cc[2], gid, 2, "ROLE_CHANGED", alice.id, [bob.id], "ADMIN")
        self.assertChange(cc[3], gid, 3, "MEMBERS_ADDED", bob.id, [dave.id])
        self.assertChange(cc[4], gid, 4, "MEMBERS_ADDED", alice.id, [erin.id])
        self.assertChange(cc[5], gid, 5, "MEMBER_REMOVED", bob.id, [dave.id])
        self.assertChange(cc[6], gid, 6, "MEMBER_LEFT", erin.id, [erin.id])
        for cl in (D, E):
            for x in changes(cl, gid):
                self.assertEqual(x, cc[num(x, "version")], "change v%d differs for a later member"
                                 % num(x, "version"))

        # A message after all that: the members get it, dave and erin do not. Their fence:
        # a direct message sent after the group message was accepted.
        after = self.send_to(A, gid, "after the changes")
        for cl in (A, B, C):
            cl.wait_event(ev_message(after["message_id"]))
        for cl, person in ((D, dave), (E, erin)):
            fence = A.send_message(person.id, "fence")
            cl.wait_event(ev_message(fence["message_id"]))
        # dave: from the change that added him to the one that removed him, nothing after.
        self.assertEqual(group_log(D.events(), gid), [("change", 3, "MEMBERS_ADDED"), ("change", 4, "MEMBERS_ADDED"),
                                                      ("change", 5, "MEMBER_REMOVED")])
        self.assertEqual(group_log(E.events(), gid), [("change", 4, "MEMBERS_ADDED"), ("change", 5, "MEMBER_REMOVED"),
                                                      ("change", 6, "MEMBER_LEFT")])

        # Gone is gone: their sends are refused, the details are closed to them, the list
        # still shows the group as a former one.
        self.assertSendToRefused(D, gid, "not_a_member")
        self.assertSendToRefused(E, gid, "not_a_member")
        for s in (d, e):
            self.assertError(self.details_request(s, gid), 403, "not_a_member")
            summ = self.summary(s, gid)
            self.assertIs(summ.get("member"), False, summ)
            self.assertEqual(summ.get("unread_count"), 0, summ)
        det = self.details(a, gid)
        self.assertEqual(self.roles(det), {alice.id: "owner", bob.id: "admin", carol.id: "member"})
        self.assertEqual(det.get("member_count"), 3)
        self.assertEqual(as_int(det.get("version")), 6)
        # Their refused sends reached nobody.
        last = self.send_to(B, gid, "last")
        C.wait_event(ev_message(last["message_id"]))
        self.assertEqual(group_message_ids(C, gid), [after["message_id"], last["message_id"]])

    # 5 ---------------------------------------------------------------------------------------

    def test_roles_table_and_handing_ownership_on(self):
        alice, bob, carol, dave, olga = (self.person(n) for n in ("alice", "bob", "carol", "dave", "olga"))
        a, b, c, d = alice.login(), bob.login(), carol.login(), dave.login()
        A, B, C, D = self.ws(a), self.ws(b), self.ws(c), self.ws(d)
        gid = self.group(a, [bob.id, carol.id, dave.id], title="roles")                          # v1
        self.assertStatus(self.set_role(a, gid, bob.id, "admin"), 200)                             # v2
        self.assertStatus(self.set_role(a, gid, carol.id, "admin"), 200)                           # v3

        # What an admin may not do.
        self.assertError(self.remove_member(b, gid, carol.id), 403, "forbidden_role", msg="admin removes admin")
        self.assertError(self.remove_member(b, gid, alice.id), 403, "forbidden_role", msg="admin removes owner")
        self.assertError(self.set_role(b, gid, dave.id, "admin"), 403, "forbidden_role", msg="admin sets a role")
        self.assertError(self.set_role(b, gid, carol.id, "member"), 403, "forbidden_role",
                         msg="admin demotes admin")
        self.assertError(self.set_role(b, gid, bob.id, "owner"), 403, "forbidden_role",
                         msg="admin makes himself owner")
        # Details: admins yes, members no.
        self.assertError(self.patch(d, gid, title="dave's"), 403, "forbidden_role", msg="member renames")
        r = self.patch(b, gid, title="renamed by bob")                                           # v4
        self.assertStatus(r, 200, "admin renames")
        self.assertEqual(r.json.get("title"), "renamed by bob")
        # Bad role requests.
        self.assertError(self.set_role(a, gid, dave.id, "superuser"), 400, "invalid_field")
        self.assertError(self.set_role(a, gid, alice.id, "member"), 400, "invalid_field", msg="the owner's own role")
        self.assertError(self.set_role(a, gid, olga.id, "admin"), 404, "user_not_found", msg="not a member")
        det = self.details(a, gid)
        self.assertEqual(self.roles(det), {alice.id: "owner", bob.id: "admin", carol.id: "admin", dave.id: "member"})
        self.assertEqual(as_int(det.get("version")), 4, "refused actions change nothing")

        # The owner hands ownership on: two ROLE_CHANGED in one write, new owner first.
        r = self.set_role(a, gid, bob.id, "owner")                                               # v5, v6
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("owner"), bob.id, r.describe())
        self.assertEqual(self.roles(r.json),
                         {alice.id: "admin", bob.id: "owner", carol.id: "admin", dave.id: "member"})
        for cl in (A, B, C, D):
            self.wait_change(cl, gid, 6)
        self.assertSameChanges(gid, (A, B, C, D), [1, 2, 3, 4, 5, 6])
        cc = {num(x, "version"): x for x in changes(D, gid)}
        self.assertChange(cc[4], gid, 4, "DETAILS_CHANGED", bob.id)
        self.assertEqual(cc[4].get("title"), "renamed by bob")
        self.assertChange(cc[5], gid, 5, "ROLE_CHANGED", alice.id, [bob.id], "OWNER")
        self.assertChange(cc[6], gid, 6, "ROLE_CHANGED", alice.id, [alice.id], "ADMIN")
        # The former owner is an admin now.
        self.assertError(self.set_role(a, gid, dave.id, "admin"), 403, "forbidden_role", msg="former owner")

        # The owner leaving must name a successor, a current member.
        self.assertError(self.remove_member(b, gid, bob.id), 409, "owner_must_hand_over")
        self.assertError(self.remove_member(b, gid, bob.id, successor=olga.id), 400, "invalid_field",
                         msg="successor not a member")
        self.assertStatus(self.remove_member(b, gid, bob.id, successor=carol.id), 204)           # v7, v8, v9
        for cl in (A, B, C, D):
            self.wait_change(cl, gid, 9)
        self.assertSameChanges(gid, (A, B, C, D), list(range(1, 10)))
        cc = {num(x, "version"): x for x in changes(A, gid)}
        self.assertChange(cc[7], gid, 7, "ROLE_CHANGED", bob.id, [carol.id], "OWNER")
        self.assertChange(cc[8], gid, 8, "ROLE_CHANGED", bob.id, [bob.id], "ADMIN")
        self.assertChange(cc[9], gid, 9, "MEMBER_LEFT", bob.id, [bob.id])
        det = self.details(c, gid)
        self.assertEqual(det.get("owner"), carol.id)
        self.assertEqual(self.roles(det), {alice.id: "admin", carol.id: "owner", dave.id: "member"})
        self.assertError(self.details_request(b, gid), 403, "not_a_member")
        # The new owner may remove an admin.
        self.assertStatus(self.remove_member(c, gid, alice.id), 204)                              # v10
        self.assertEqual(self.roles(self.details(c, gid)), {carol.id: "owner", dave.id: "member"})

        # The last member leaving needs no successor: the group ends.
        solo = self.group(d, [], title="solo")
        self.assertEqual(self.roles(self.details(d, solo)), {dave.id: "owner"})
        self.assertStatus(self.remove_member(d, solo, dave.id), 204)
        cc = self.wait_change(D, solo, 2)
        self.assertChange(cc, solo, 2, "MEMBER_LEFT", dave.id, [dave.id])
        summ = self.summary(d, solo)
        self.assertIs(summ.get("member"), False, summ)
        self.assertEqual(summ.get("member_count"), 0, summ)
        self.assertError(self.details_request(d, solo), 403, "not_a_member")
        self.assertSendToRefused(D, solo, "not_a_member")
        # It takes no changes any more.
        r = self.add_members(d, solo, [alice.id])
        self.assertGreaterEqual(r.status, 400, "adding to an ended group: %s" % r.describe())
        self.assertEqual(self.summary(d, solo).get("member_count"), 0)
        self.assertNotIn(solo, [s.get("id") for s in self.all_conversations(a)])

    # 6 ---------------------------------------------------------------------------------------

    def test_a_deleted_account_leaves_its_groups_and_its_ownership_passes_on(self):
        alice, bob, carol = (self.person(n) for n in ("alice", "bob", "carol"))
        a, b, c = alice.login(), bob.login(), carol.login()
        B, C = self.ws(b), self.ws(c)
        gid = self.group(a, [bob.id, carol.id], title="the owner goes")                          # v1
        self.assertStatus(self.set_role(a, gid, carol.id, "admin"), 200)                          # v2
        hello = self.ws(a).send_message(bob.id, "before I go")["message_id"]
        r = self.node.admin("DELETE", "/v1/admin/users/" + alice.name)
        self.assertEqual(r.status, 204, r.describe())
        # bob keeps his direct conversation with her, found by her id as by its own.
        self.assertEqual(self.history_ids(b, peer=alice.id), [hello])
        self.assertError(self.history_request(c, peer=alice.id), 404, "user_not_found")
        # The first admin is owner now, then the name goes: no group is left without an owner.
        for cl in (B, C):
            self.wait_change(cl, gid, 4)
        self.assertSameChanges(gid, (B, C), [1, 2, 3, 4])
        cc = {num(x, "version"): x for x in changes(B, gid)}
        self.assertEqual((cc[3].get("kind"), cc[3].get("by", ""), cc[3].get("users"), cc[3].get("role")),
                         ("ROLE_CHANGED", "", [carol.id], "OWNER"), cc[3])
        self.assertEqual((cc[4].get("kind"), cc[4].get("by", ""), cc[4].get("users"), cc[4].get("reason")),
                         ("MEMBER_REMOVED", "", [alice.id], "user_not_found"), cc[4])
        det = self.details(c, gid)
        self.assertEqual((det.get("owner"), self.roles(det)), (carol.id, {bob.id: "member", carol.id: "owner"}))
        self.assertStatus(self.set_role(c, gid, bob.id, "admin"), 200)  # the heir has the owner's say
        # Deleting it again: already gone, and nothing more changes.
        self.assertEqual(self.node.admin("DELETE", "/v1/admin/users/" + alice.name).status, 404)
        self.assertEqual(as_int(self.details(c, gid).get("version")), 5)

    def test_history_runs_from_joining_to_removal(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A, B, C = self.ws(a), self.ws(b), self.ws(c)

        # History not visible: carol sees from her joining on.
        gid = self.group(a, [bob.id], title="private past")
        m1 = self.send_to(A, gid, "before carol (1)")["message_id"]
        m2 = self.send_to(B, gid, "before carol (2)")["message_id"]
        self.assertStatus(self.add_members(a, gid, [carol.id]), 200)
        p = self.history(c, conversation_id=gid)
        self.assertEqual(p["messages"], [])
        self.assertFalse(p["has_more_before"], "nothing older that carol may see")
        s = self.summary(c, gid)
        self.assertIsNone(s.get("last_message"), s)
        self.assertEqual(s.get("unread_count"), 0, s)
        self.assertError(self.get_message(c, m1), 404, "message_not_found")
        self.assertError(self.get_message(c, m2), 404, "message_not_found")
        # Nor can she mark them read: the answer is the one an id that does not exist gets,
        # so it does not tell her that they do.
        for mid in (m2, m2[:-1] + ("A" if m2[-1] != "A" else "B")):
            ref = C.next_ref()
            C.read(gid, mid, ref=ref)
            self.assertWsError(C.wait_ref(ref), "message_not_found", ref)
        m3 = self.send_to(A, gid, "carol is here")["message_id"]
        self.assertEqual(self.history_ids(c, conversation_id=gid), [m3])
        s = self.summary(c, gid)
        self.assertEqual((s.get("last_message") or {}).get("id"), m3)
        self.assertEqual(s.get("unread_count"), 1)
        self.assertStatus(self.get_message(c, m3), 200)

        # Bob is removed: his history stops there, the earlier messages stay his.
        self.assertStatus(self.remove_member(a, gid, bob.id), 204)
        m4 = self.send_to(A, gid, "bob is gone")["message_id"]
        C.wait_event(ev_message(m4))
        self.assertEqual(group_message_ids(C, gid), [m3, m4], "carol's stream: from her joining on")
        self.assertEqual(self.history_ids(c, conversation_id=gid), [m3, m4])
        p = self.history(b, conversation_id=gid)
        self.assertEqual([m["id"] for m in p["messages"]], [m1, m2, m3])
        self.assertFalse(p["has_more_after"], "nothing newer that bob may see")
        self.assertEqual(self.history_ids(b, conversation_id=gid, after=m3), [])
        self.assertStatus(self.get_message(b, m1), 200)
        self.assertError(self.get_message(b, m4), 404, "message_not_found")
        # His part is read-only: his own message, within the window, stays for the others.
        self.assertError(self.delete_message(b, m2, "everyone"), 403, "not_a_member")
        self.assertStatus(self.get_message(a, m2), 200)
        self.assertStatus(self.delete_message(b, m1, "me"), 204)  # what he keeps is his to tidy
        self.assertEqual(self.history_ids(b, conversation_id=gid), [m2, m3])
        self.assertStatus(self.get_message(a, m1), 200)
        s = self.summary(b, gid)
        self.assertIs(s.get("member"), False, s)
        self.assertEqual((s.get("last_message") or {}).get("id"), m3, "bob's newest visible message")
        self.assertEqual(s.get("unread_count"), 0)
        # Bob's stream never gets m4: a direct message after it is his next event.
        fence = A.send_message(bob.id, "fence")
        B.wait_event(ev_message(fence["message_id"]))
        self.assertEqual(group_message_ids(B, gid), [m1, m2, m3])
        self.assertEqual(self.history_ids(a, conversation_id=gid), [m1, m2, m3, m4])

        # History visible: carol sees what was said before she came.
        gv = self.group(a, [bob.id], title="open past", history_visible=True)
        self.assertIs(self.details(a, gv).get("history_visible"), True)
        n1 = self.send_to(A, gv, "before carol")["message_id"]
        n2 = self.send_to(B, gv, "also before carol")["message_id"]
        self.assertStatus(self.add_members(a, gv, [carol.id]), 200)
        self.assertEqual(self.history_ids(c, conversation_id=gv), [n1, n2])
        self.assertStatus(self.get_message(c, n1), 200)
        self.assertEqual((self.summary(c, gv).get("last_message") or {}).get("id"), n2)

    def test_a_member_who_went_before_the_first_message_sees_nothing_after(self):
        """Removed, or gone of their own accord, before anyone wrote: the period is over with
        no message in it, and what is said later is not theirs (it once read as a period still
        open: both saw every later message)."""
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A = self.ws(a)
        gid = self.group(a, [bob.id, carol.id], title="quiet start")
        self.assertStatus(self.remove_member(a, gid, bob.id), 204)
        self.assertStatus(self.remove_member(c, gid, carol.id), 204)  # carol leaves
        secret = self.send_to(A, gid, "after they went")["message_id"]
        for who in (b, c):
            p = self.history(who, conversation_id=gid)
            self.assertEqual(p["messages"], [], "history of someone who went before any message")
            self.assertFalse(p["has_more_after"], p)
            self.assertError(self.get_message(who, secret), 404, "message_not_found")
            s = self.summary(who, gid)
            self.assertIs(s.get("member"), False, s)
            self.assertIsNone(s.get("last_message"), s)
            self.assertEqual(s.get("unread_count"), 0, s)
        self.assertEqual(self.history_ids(a, conversation_id=gid), [secret])

    def test_group_events_about_a_message_reach_only_those_whose_period_holds_it(self):
        """A sender who left hears no more receipts for what they said (the counts stay theirs
        to ask for); a deletion for everyone is told to the members who could see the message,
        not to one who joined after it with the history hidden (it names its sender and time)."""
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a, b, c, d = alice.login(), bob.login(), carol.login(), dave.login()
        A, B, C, D = self.ws(a), self.ws(b), self.ws(c), self.ws(d)
        gid = self.group(a, [bob.id, carol.id], title="after they go")
        said = self.send_to(B, gid, "bob's last word")["message_id"]
        self.assertStatus(self.remove_member(b, gid, bob.id), 204)  # bob leaves
        cseq = num(C.wait_event(ev_message(said)), "seq")
        C.ack(cseq, wait=True)
        C.read(gid, said)
        C.wait_event(ev_read_mark(said))
        fence = A.send_message(bob.id, "fence")["message_id"]
        B.wait_event(ev_message(fence))
        told = [e["receipt"] for e in B.events() if "receipt" in e and e["receipt"].get("message_id") == said]
        self.assertEqual(told, [], "bob left before carol got and read his message")
        r = self.receipts(b, said)
        self.assertStatus(r, 200)
        self.assertEqual((r.json.get("delivered_count"), r.json.get("read_count")), (1, 1), r.json)

        old = self.send_to(A, gid, "before dave")["message_id"]
        C.wait_event(ev_message(old))
        self.assertStatus(self.add_members(a, gid, [dave.id]), 200)
        self.assertStatus(self.delete_message(a, old, "everyone"), 204)
        C.wait_event(ev_deleted(old))
        later = self.send_to(A, gid, "dave is here")["message_id"]
        D.wait_event(ev_message(later))
        self.assertEqual([e for e in D.events() if "deleted" in e], [], "dave never saw it")

    # 7 ---------------------------------------------------------------------------------------

    def test_small_group_receipts_per_member(self):
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a, b, c, d = alice.login(), bob.login(), carol.login(), dave.login()
        A, B, C = self.ws(a), self.ws(b), self.ws(c)
        gid = self.group(a, [bob.id, carol.id], title="receipts")
        acc = self.send_to(A, gid, "did you get this?")
        mid = acc["message_id"]

        def rest_receipts(delivered, read, states):
            r = self.receipts(a, mid)
            self.assertStatus(r, 200)
            body = r.json
            self.assertEqual(body.get("message_id"), mid)
            self.assertEqual(body.get("conversation_id"), gid)
            self.assertEqual(body.get("recipients"), 2)
            self.assertEqual(body.get("delivered_count"), delivered, body)
            self.assertEqual(body.get("read_count"), read, body)
            members = body.get("members")
            self.assertIsInstance(members, list, body)
            self.assertEqual([m.get("user_id") for m in members], [bob.id, carol.id], "in the order added")
            for m, (dl, rd) in zip(members, states):
                for key, want in (("delivered_at_ms", dl), ("read_at_ms", rd)):
                    v = m.get(key)
                    self.assertIsInstance(v, str, "%s is a string: %s" % (key, m))
                    self.assertTrue(v.isdigit(), m)
                    self.assertEqual(v != "0", want, "%s of %s: %s" % (key, m.get("user_id"), m))
            return body

        rest_receipts(0, 0, [(False, False), (False, False)])
        # Bob's device acknowledges: DELIVERED by bob.
        seq = num(B.wait_event(ev_message(mid)), "seq")
        B.ack(seq)
        r = A.wait_event(ev_receipt_by(mid, "DELIVERED", bob.id))["receipt"]
        self.assertEqual(r.get("conversation_id"), gid)
        self.assertGreater(num(r, "at_ms"), 0)
        # Bob reads: READ by bob; the read mark goes to bob's devices.
        B.read(gid, mid)
        self.assertEqual(B.wait_event(ev_read_mark(mid))["read_mark"].get("conversation_id"), gid)
        r = A.wait_event(ev_receipt_by(mid, "READ", bob.id))["receipt"]
        self.assertEqual(r.get("conversation_id"), gid)
        rest_receipts(1, 1, [(True, True), (False, False)])
        # Carol reads without acknowledging: DELIVERED comes first, then READ.
        cseq = num(C.wait_event(ev_message(mid)), "seq")
        C.read(gid, mid)
        A.wait_event(ev_receipt_by(mid, "READ", carol.id))
        # Her acknowledgement after the read adds nothing: no second DELIVERED, no count.
        C.ack(cseq, wait=True)
        got = [(e["receipt"].get("by"), e["receipt"].get("status")) for e in A.events()
               if "receipt" in e and e["receipt"].get("message_id") == mid]
        self.assertEqual(got, [(bob.id, "DELIVERED"), (bob.id, "READ"), (carol.id, "DELIVERED"), (carol.id, "READ")],
                         "one receipt per member and status, DELIVERED before READ")
        rest_receipts(2, 2, [(True, True), (True, True)])
        # In groups the message's own delivery fields stay "0".
        m = self.history(a, conversation_id=gid)["messages"][0]
        self.assertEqual((m.get("delivered_at_ms"), m.get("read_at_ms")), ("0", "0"), m)
        # Bob's read mark is his alone: carol's stream has only her own (fence: a later message).
        later = self.send_to(A, gid, "later")
        C.wait_event(ev_message(later["message_id"]))
        C.wait_event(ev_read_mark(mid))
        self.assertEqual(len([e for e in C.events() if "read_mark" in e]), 1, "carol got bob's read mark")

        # Only the sender asks.
        self.assertError(self.receipts(b, mid), 403, "not_sender")
        self.assertError(self.receipts(d, mid), 404, "message_not_found")
        # A 1:1 message: the same shape, one recipient.
        direct = A.send_message(dave.id, "just you")
        r = self.receipts(a, direct["message_id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("conversation_id"), direct["conversation_id"])
        self.assertEqual(r.json.get("recipients"), 1)
        self.assertEqual(r.json.get("delivered_count"), 0)
        self.assertEqual(r.json.get("read_count"), 0)
        self.assertEqual([(x.get("user_id"), x.get("delivered_at_ms"), x.get("read_at_ms"))
                          for x in r.json.get("members") or []], [(dave.id, "0", "0")])

    # 9 ---------------------------------------------------------------------------------------

    def test_conversation_ttl_set_by_owner_caps_message_lifetime(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        gid = self.group(a, [bob.id], title="disappearing")

        r = self.patch(a, gid, ttl_s=60)
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("ttl_s"), 60, r.describe())
        for cl in (A, B):
            cc = self.wait_change(cl, gid, 2)
            self.assertChange(cc, gid, 2, "SETTINGS_CHANGED", alice.id)
            self.assertEqual(cc.get("ttl_s"), 60, cc)
            self.assertIs(cc.get("history_visible", False), False, cc)
        # Every later message lives 60 s; a send's own ttl_s only shortens it.
        for ttl, want_ms in ((None, 60000), (30, 30000), (120, 60000)):
            with self.subTest(send_ttl_s=ttl):
                acc = self.send_to(B, gid, "ttl %s" % ttl, ttl_s=ttl)
                m = A.wait_event(ev_message(acc["message_id"]))["message"]
                self.assertEqual(num(m, "expires_at_ms") - num(m, "sent_at_ms"), want_ms, m)
        # A member may not change it; the same value again is no change.
        self.assertError(self.patch(b, gid, ttl_s=5), 403, "forbidden_role")
        r = self.patch(a, gid, ttl_s=60)
        self.assertStatus(r, 200)
        det = self.details(b, gid)
        self.assertEqual(det.get("ttl_s"), 60)
        self.assertEqual(as_int(det.get("version")), 2, "nothing changed: no new version")
        self.assertError(self.patch(a, gid, ttl_s=2592001), 400, "invalid_field", msg="beyond retention_s")
        # Turned off again: the default lifetime (retention_s, 30 days).
        self.assertStatus(self.patch(a, gid, ttl_s=0), 200)
        self.assertEqual(self.wait_change(B, gid, 3, "SETTINGS_CHANGED").get("ttl_s", 0), 0)
        acc = self.send_to(B, gid, "no ttl")
        m = A.wait_event(ev_message(acc["message_id"]))["message"]
        self.assertEqual(num(m, "expires_at_ms") - num(m, "sent_at_ms"), 2592000 * 1000, m)
        self.assertEqual(change_versions(A, gid), [(1, "CREATED"), (2, "SETTINGS_CHANGED"), (3, "SETTINGS_CHANGED")])

        # In a direct conversation either member sets it.
        direct = A.send_message(bob.id, "direct")
        r = self.patch(b, direct["conversation_id"], ttl_s=45)
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("ttl_s"), 45, r.describe())
        acc = A.send_message(bob.id, "direct, 45 s")
        m = B.wait_event(ev_message(acc["message_id"]))["message"]
        self.assertEqual(num(m, "expires_at_ms") - num(m, "sent_at_ms"), 45000, m)

    # 11 --------------------------------------------------------------------------------------

    def test_group_typing_and_presence_between_members(self):
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a1, a2, b, c, d = alice.login("phone"), alice.login("laptop"), bob.login(), carol.login(), dave.login()
        A = self.ws(a1)
        D = self.ws(d)
        direct = A.send_message(dave.id, "hi dave")  # alice and dave share a direct conversation
        gid = self.group(a1, [bob.id, carol.id], title="typing")

        # Presence: co-members see each other only once both have written in the group, as
        # in a direct conversation. Being added to a group reveals nothing of anyone.
        B = self.ws(b)
        hidden = "presence is not shared before both wrote in the group"
        self.assertError(self.call("GET", "/v1/presence/" + bob.id, a1), 403, "presence_hidden", msg=hidden)
        self.assertError(self.call("GET", "/v1/presence/" + alice.id, b), 403, "presence_hidden", msg=hidden)
        members = {m.get("user_id"): m for m in self.details(b, gid).get("members") or []}
        self.assertIsNone(members[alice.id].get("presence"), members[alice.id])
        self.send_to(A, gid, "hello group")  # alice writes; bob has not
        self.assertError(self.call("GET", "/v1/presence/" + bob.id, a1), 403, "presence_hidden", msg=hidden)
        members = {m.get("user_id"): m for m in self.details(a1, gid).get("members") or []}
        self.assertIsNone(members[bob.id].get("presence"), members[bob.id])
        self.assertEqual([f for f in A.frames() if is_presence(bob.id)(f)], [], hidden)
        self.assertEqual([f for f in B.frames() if is_presence(alice.id)(f)], [], hidden)
        self.send_to(B, gid, "hi all")  # bob's first message: now both have
        A.wait_for(is_presence(bob.id, "ONLINE"), what="bob's presence, once both wrote")
        B.wait_for(is_presence(alice.id, "ONLINE"), what="alice's presence, once both wrote")
        r = self.call("GET", "/v1/presence/" + bob.id, a1)
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("user_id"), bob.id)
        self.assertEqual(r.json.get("state"), "ONLINE")
        self.assertStatus(self.call("GET", "/v1/presence/" + alice.id, b), 200)
        self.assertError(self.call("GET", "/v1/presence/" + carol.id, a1), 403, "presence_hidden",
                         msg="carol never wrote in the group")
        self.assertError(self.call("GET", "/v1/presence/" + bob.id, d), 403, "presence_hidden")
        members = {m.get("user_id"): m for m in self.details(a1, gid).get("members") or []}
        self.assertEqual((members[bob.id].get("presence") or {}).get("state"), "ONLINE", members[bob.id])
        self.assertIsNone(members[carol.id].get("presence"), members[carol.id])

        # Typing in the group: the other online members are told, with the conversation.
        C, A2 = self.ws(c), self.ws(a2)
        self.assertEqual([f for f in A.frames() if is_presence(carol.id)(f)], [], "carol has not written")
        self.send_to(C, gid, "carol here")
        A.wait_for(is_presence(carol.id, "ONLINE"), what="presence ONLINE of carol, once she wrote")
        A.send_frame({"typing": {"conversation_id": gid, "active": True}})
        for cl in (B, C):
            t = cl.wait_for(lambda f: is_typing(alice.id)(f) and f["typing"].get("conversation_id") == gid,
                            what="alice typing in the group")["typing"]
            self.assertTrue(t.get("active", False), t)
        # Dave is no member. Fence: alice's next typing frame, to dave directly.
        A.send_frame({"typing": {"to": dave.id, "active": True}})
        t = D.wait_for(is_typing(alice.id), what="alice typing to dave")["typing"]
        self.assertEqual(t.get("conversation_id"), direct["conversation_id"], "the first notice dave gets is "
                         "the direct one: the group's did not reach him")
        # Alice's own devices are not told. Fence: bob typing after alice's notice was out.
        B.send_frame({"typing": {"conversation_id": gid, "active": True}})
        for cl in (A, A2, C):
            t = cl.wait_for(is_typing(bob.id), what="bob typing in the group")["typing"]
            self.assertEqual(t.get("conversation_id"), gid)
        for cl in (A, A2):
            self.assertEqual([f for f in cl.frames() if is_typing(alice.id)(f)], [], "alice told of her own typing")
        # A non-member cannot type into the group.
        ref = D.next_ref()
        D.send_frame({"ref": ref, "typing": {"conversation_id": gid, "active": True}})
        self.assertWsError(D.wait_ref(ref), "conversation_not_found", ref)
        self.assertEqual([f for f in B.frames() if is_typing(dave.id)(f)], [])

        # Carol's last device leaving: the co-members see her go.
        C.close()
        p = A.wait_for(is_presence(carol.id, "OFFLINE"), what="presence OFFLINE of carol")["presence"]
        self.assertGreater(num(p, "last_seen_ms"), 0, p)

    def test_a_member_added_again_shares_presence_only_once_they_write_again(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        gid = self.group(a, [bob.id], title="again")
        self.send_to(A, gid, "hello")
        self.send_to(B, gid, "hi")
        self.assertStatus(self.call("GET", "/v1/presence/" + bob.id, a), 200)
        self.assertStatus(self.remove_member(a, gid, bob.id), 204)
        self.assertError(self.call("GET", "/v1/presence/" + bob.id, a), 403, "presence_hidden")
        self.assertStatus(self.add_members(a, gid, [bob.id]), 200)
        hidden = "added again, bob has not written since"
        self.assertError(self.call("GET", "/v1/presence/" + bob.id, a), 403, "presence_hidden", msg=hidden)
        self.assertError(self.call("GET", "/v1/presence/" + alice.id, b), 403, "presence_hidden", msg=hidden)
        self.send_to(B, gid, "back")
        self.assertStatus(self.call("GET", "/v1/presence/" + bob.id, a), 200)
        self.assertStatus(self.call("GET", "/v1/presence/" + alice.id, b), 200)


# =========================================================================================
# 8: count receipts, with a low per-member receipt threshold


class GroupsProtoTest(GroupsTest):
    """The same in binary frames: a group message's members share its encoded bytes."""
    ENCODING = "proto"


class GroupCountReceiptsTest(GroupCase):
    NODE_CONFIG = {"messages": {"group_receipt_events_max_members": 2}}

    def test_large_group_sends_count_receipts_at_powers_of_two_and_at_all(self):
        alice = self.person("alice")
        others = [self.person("member") for _ in range(5)]
        a = alice.login()
        A = self.ws(a)
        streams = [self.ws(p.login()) for p in others]
        gid = self.group(a, [p.id for p in others], title="five recipients")
        mid = self.send_to(A, gid, "to five")["message_id"]
        seqs = [num(R.wait_event(ev_message(mid)), "seq") for R in streams]

        def counts(status):
            return [e["receipt"] for e in A.events() if ev_receipt(mid, status)(e)]

        # The five acknowledge one after another: receipts at 1, 2, 4 and 5 (all).
        for i, (R, seq) in enumerate(zip(streams, seqs), 1):
            R.ack(seq, wait=True)
            if i in (1, 2, 4, 5):
                A.wait_event(lambda e, i=i: ev_receipt(mid, "DELIVERED")(e)
                             and num(e["receipt"], "delivered_count") == i,
                             what="DELIVERED count receipt at %d" % i)
        delivered = counts("DELIVERED")
        self.assertEqual([num(r, "delivered_count") for r in delivered], [1, 2, 4, 5])
        for r in delivered:
            self.assertEqual(r.get("by", ""), "", "a count receipt names nobody: %s" % r)
            self.assertEqual(num(r, "recipients"), 5, r)
            self.assertEqual(r.get("conversation_id"), gid, r)

        # And the same for READ.
        for i, R in enumerate(streams, 1):
            R.read(gid, mid)
            R.wait_event(ev_read_mark(mid))
            if i in (1, 2, 4, 5):
                A.wait_event(lambda e, i=i: ev_receipt(mid, "READ")(e) and num(e["receipt"], "read_count") == i,
                             what="READ count receipt at %d" % i)
        read = counts("READ")
        self.assertEqual([num(r, "read_count") for r in read], [1, 2, 4, 5])
        for r in read:
            self.assertEqual(r.get("by", ""), "", r)
            self.assertEqual(num(r, "recipients"), 5, r)
        self.assertEqual([num(r, "delivered_count") for r in counts("DELIVERED")], [1, 2, 4, 5],
                         "reading after delivery adds no DELIVERED receipt")

        r = self.receipts(a, mid)
        self.assertStatus(r, 200)
        self.assertEqual((r.json.get("recipients"), r.json.get("delivered_count"), r.json.get("read_count")),
                         (5, 5, 5), r.describe())
        self.assertEqual([m.get("user_id") for m in r.json.get("members") or []], [p.id for p in others])
        # Each member's times: delivered (by the acknowledgement) no later than read.
        for m in r.json["members"]:
            self.assertNotEqual(m.get("delivered_at_ms"), "0", m)
            self.assertNotEqual(m.get("read_at_ms"), "0", m)
            self.assertLessEqual(int(m["delivered_at_ms"]), int(m["read_at_ms"]), m)

        # All five acknowledge at once (acknowledgements that arrive together share a
        # write): the count still goes up one by one, with the same receipts, and ends at 5.
        mid3 = self.send_to(A, gid, "to five, again")["message_id"]
        seqs = [num(R.wait_event(ev_message(mid3)), "seq") for R in streams]
        for R, seq in zip(streams, seqs):
            R.ack(seq)
        A.wait_event(lambda e: ev_receipt(mid3, "DELIVERED")(e) and num(e["receipt"], "delivered_count") == 5,
                     what="DELIVERED count receipt at 5")
        together = [e["receipt"] for e in A.events() if ev_receipt(mid3, "DELIVERED")(e)]
        self.assertEqual([num(r, "delivered_count") for r in together], [1, 2, 4, 5])
        r = self.receipts(a, mid3)
        self.assertStatus(r, 200)
        self.assertEqual((r.json.get("delivered_count"), r.json.get("read_count")), (5, 0), r.describe())
        self.assertEqual([(m.get("user_id"), m.get("delivered_at_ms") != "0", m.get("read_at_ms"))
                          for m in r.json.get("members") or []], [(p.id, True, "0") for p in others], r.describe())
        # A member who reads after acknowledging: READ, and still one DELIVERED each.
        streams[0].read(gid, mid3)
        streams[0].wait_event(ev_read_mark(mid3))
        A.wait_event(lambda e: ev_receipt(mid3, "READ")(e) and num(e["receipt"], "read_count") == 1,
                     what="READ count receipt at 1")
        r = self.receipts(a, mid3)
        self.assertEqual((r.json.get("delivered_count"), r.json.get("read_count")), (5, 1), r.describe())
        first = r.json["members"][0]
        self.assertNotEqual(first.get("delivered_at_ms"), "0", first)
        self.assertNotEqual(first.get("read_at_ms"), "0", first)

        # Up to the threshold (2 recipients) receipts are per member.
        small = self.group(a, [others[0].id, others[1].id], title="two recipients")
        mid2 = self.send_to(A, small, "to two")["message_id"]
        seq = num(streams[0].wait_event(ev_message(mid2)), "seq")
        streams[0].ack(seq)
        r = A.wait_event(ev_receipt(mid2, "DELIVERED"))["receipt"]
        self.assertEqual(r.get("by"), others[0].id, r)


# =========================================================================================
# 10: limits, on a node with small ones


class LongHistoryTest(GroupCase):
    """Pages of a busy group's history for a late joiner and a former member: the walks
    stop at the period's bounds (docs/PROTOCOL.md, "History, membership periods and TTL"),
    and the pages still say exactly what the member may see."""

    NODE_CONFIG = {"messages": {"max_per_second": 100000}}

    def send_many(self, client, gid, n, prefix):
        """n group messages, pipelined; their ids in order."""
        refs = []
        for i in range(n):
            ref = client.next_ref()
            refs.append(ref)
            client.send_frame({"ref": ref, "send": {"client_id": uuid.uuid4().hex, "conversation_id": gid,
                                                    "body": {"text": "%s %d" % (prefix, i)}}})
        ids = []
        for ref in refs:
            f = client.wait_ref(ref, 60)
            self.assertIn("accepted", f, f)
            ids.append(f["accepted"]["message_id"])
        return ids

    def test_late_joiner_and_former_member_of_a_busy_group(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A = self.ws(a)
        gid = self.group(a, [bob.id], title="busy")
        before = self.send_many(A, gid, 1500, "before carol")
        self.assertStatus(self.add_members(a, gid, [carol.id]), 200)
        p = self.history(c, conversation_id=gid, limit=10)
        self.assertEqual((p["messages"], p["has_more_before"], p["has_more_after"]), ([], False, False))
        self.assertEqual(self.history_ids(c, conversation_id=gid, before=before[-1]), [])
        self.assertError(self.get_message(c, before[0]), 404, "message_not_found")
        mine = self.send_many(A, gid, 3, "carol is here")
        p = self.history(c, conversation_id=gid, limit=10)
        self.assertEqual([m["id"] for m in p["messages"]], mine)
        self.assertEqual((p["has_more_before"], p["has_more_after"]), (False, False))
        p = self.history(c, conversation_id=gid, limit=2)
        self.assertEqual([m["id"] for m in p["messages"]], mine[1:])
        self.assertTrue(p["has_more_before"])
        self.assertEqual(self.history_ids(c, conversation_id=gid, before=mine[1]), mine[:1])

        # Bob goes; 1,500 more messages follow. His pages end where he left.
        self.assertStatus(self.remove_member(a, gid, bob.id), 204)
        self.send_many(A, gid, 1500, "after bob")
        p = self.history(b, conversation_id=gid, limit=3)
        self.assertEqual([m["id"] for m in p["messages"]], mine)
        self.assertEqual((p["has_more_before"], p["has_more_after"]), (True, False))
        self.assertEqual(self.history_ids(b, conversation_id=gid, after=mine[-1]), [])
        self.assertEqual(self.history_ids(b, conversation_id=gid, limit=5, after=before[-3]),
                         before[-2:] + mine)


    def test_a_former_members_history_outlasts_8_mib_sent_after_they_left(self):
        # Their walks start at the last message of their period: what the group says after
        # they went (here 8.5 MiB, a few seconds of a busy or hostile group) is never walked
        # past, so it cannot use up a page's budget and blank the history they keep.
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        gid = self.group(a, [bob.id], title="busy")
        A = self.ws(a)
        kept = self.send_many(A, gid, 3, "while bob is here")
        self.assertStatus(self.remove_member(a, gid, bob.id), 204)
        refs = []
        for i in range(450):  # ~19 KB each
            ref = A.next_ref()
            refs.append(ref)
            A.send_frame({"ref": ref, "send": {"client_id": uuid.uuid4().hex, "conversation_id": gid,
                                               "body": {"text": "%04d" % i + "x" * 4000, "content": {"pad": "y" * 15000}}}})
        for ref in refs:
            self.assertIn("accepted", A.wait_ref(ref, 60))
        p = self.history(b, conversation_id=gid, limit=10)
        self.assertEqual([m["id"] for m in p["messages"]], kept, "bob's history after the group went on without him")
        self.assertEqual((p["has_more_before"], p["has_more_after"]), (False, False))


class LargePagesTest(GroupCase):
    """Pages of messages whose JSON is six times their stored size (text and content made
    of characters JSON escapes): a history page and a page of the conversation list end at
    about 1.5 MiB of JSON (docs/PROTOCOL.md), and paging still reaches every one."""

    NODE_CONFIG = {"messages": {"max_per_second": 100000}}
    PAGE_JSON = int(1.5 * 1024 * 1024)

    def sender(self, session):
        # Protobuf: as JSON the send itself would be over the 64 KiB frame limit.
        return self.ws(session, encoding="proto")

    def escaped_body(self, cid, i):
        # 4,096 bytes of text and ~16 KiB of content, each byte \u0001 in JSON.
        return {"client_id": uuid.uuid4().hex, "conversation_id": cid,
                "body": {"text": "%04d" % i + "\x01" * 4092, "content": {"a": "\x01" * 16370}}}

    def send_escaped(self, client, cid, i):
        ref = client.next_ref()
        client.send_frame({"ref": ref, "send": self.escaped_body(cid, i)})
        f = client.wait_ref(ref, 60)
        self.assertIn("accepted", f, f)
        return f["accepted"]["message_id"]

    def test_history_pages_of_escaped_messages(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        gid = self.group(a, [bob.id], title="escapes")
        A = self.sender(a)
        sent = [self.send_escaped(A, gid, i) for i in range(16)]
        got, before, pages = [], None, 0
        while True:
            params = {"limit": 200}
            if before:
                params["before"] = before
            r = self.history_request(b, conversation_id=gid, **params)
            self.assertStatus(r, 200)
            self.assertLess(len(r.raw), self.PAGE_JSON, "a history page of %d messages" % len(r.json["messages"]))
            page = [m["id"] for m in r.json["messages"]]
            self.assertTrue(page, r.describe())
            got = page + got
            pages += 1
            if not r.json["has_more_before"]:
                break
            before = page[0]
        self.assertEqual(got, sent)
        self.assertGreater(pages, 1)
        self.assertEqual(r.json["messages"][0]["body"]["text"], "0000" + "\x01" * 4092, "the text as sent")

    def test_conversation_list_pages_of_escaped_last_messages(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A = self.sender(a)
        groups = []
        for i in range(16):
            gid = self.group(a, [bob.id], title="escapes %d" % i)
            self.send_escaped(A, gid, i)
            groups.append(gid)
        seen, before, pages = [], None, 0
        while True:
            params = {"limit": 200}
            if before:
                params["before"] = before
            r = self.list_request(b, **params)
            self.assertStatus(r, 200)
            self.assertLess(len(r.raw), self.PAGE_JSON, "a list page of %d" % len(r.json["conversations"]))
            self.assertTrue(r.json["conversations"], r.describe())
            seen += [s["id"] for s in r.json["conversations"]]
            pages += 1
            if r.json["next"] is None:
                break
            before = r.json["next"]
        self.assertEqual(seen, list(reversed(groups)), "every group once, newest activity first")
        self.assertGreater(pages, 1)


class GroupLimitsTest(GroupCase):
    NODE_CONFIG = {"messages": {"max_group_members": 3, "max_groups_per_user": 2}}

    def test_group_limits_title_and_groups_per_user(self):
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a = alice.login()

        # Members of a group: per member group_full.
        gid = self.group(a, [bob.id, carol.id], title="full")
        r = self.add_members(a, gid, [dave.id])
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("added"), [], r.describe())
        self.assertFailed(self.failed_map(r.json), dave.id, "group_full")
        det = self.details(a, gid)
        self.assertEqual(det.get("member_count"), 3)
        self.assertEqual(as_int(det.get("version")), 1, "nobody added: no change")
        hank, ivan, judy, kate = (self.person(n) for n in ("hank", "ivan", "judy", "kate"))
        body = self.create(hank.login(), "too many at once", [ivan.id, judy.id, kate.id])
        self.assertEqual(body["conversation"].get("member_count"), 3)
        failed = self.failed_map(body)
        self.assertEqual(list(failed.values()), ["group_full"], body["failed"])
        self.assertEqual(len(self.roles(body["conversation"])), 3)

        # Title and description sizes, missing title, too many entries.
        lena = self.person("lena")
        s = lena.login()
        ok = self.group(s, [], title="\u00e9" * 64)  # 128 bytes of UTF-8
        self.assertEqual(self.details(s, ok).get("title"), "\u00e9" * 64)
        for bad in ("\u00e9" * 64 + "x", "x" * 129, "", "esc\u001b[2J", "c1\u009b2J", "rlo\u202etxt.exe", "a\nb"):
            with self.subTest(title_bytes=len(bad.encode())):
                self.assertError(self.create_request(s, bad), 400, "invalid_field", field="title")
        self.assertError(self.create_request(s, None, [bob.id]), 400, "missing_field", field="title")
        self.assertError(self.create_request(s, "desc", description="d" * 1025), 400, "invalid_field",
                         field="description")
        self.assertError(self.create_request(s, "desc", description="iso\u2067late"), 400, "invalid_field",
                         field="description")
        self.assertError(self.create_request(s, "crowd", ["nobody%04d" % i for i in range(1001)]), 400,
                         "invalid_field", field="members")
        self.assertError(self.patch(a, gid, title="t" * 129), 400, "invalid_field", field="title")
        self.assertEqual(self.details(a, gid).get("title"), "full")
        self.assertEqual([c.get("id") for c in self.all_conversations(s)], [ok], "refused creates created nothing")

        # Groups per user: the creator is refused, an added member fails alone.
        mike, nina = self.person("mike"), self.person("nina")
        m = mike.login()
        self.group(m, [], title="mike 1")
        second = self.group(m, [], title="mike 2")
        self.assertError(self.create_request(m, "mike 3"), 409, "too_many_groups")
        body = self.create(nina.login(), "with mike", [mike.id])
        self.assertFailed(self.failed_map(body), mike.id, "too_many_groups")
        self.assertEqual(body["conversation"].get("member_count"), 1)
        # Leaving a group frees a place.
        self.assertStatus(self.remove_member(m, second, mike.id), 204)
        self.group(m, [], title="mike 3")


# =========================================================================================
# 12: durability (a node of its own: it is killed)


class GroupDurabilityTest(GroupCase):
    NODE_CONFIG = None

    def test_membership_change_and_group_send_survive_kill9(self):
        self.node = self.start_node()
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a, b, c, d = alice.login(), bob.login(), carol.login(), dave.login()
        A = self.ws(a)
        gid = self.group(a, [bob.id, carol.id], title="durable")                                 # v1
        m1 = self.send_to(A, gid, "before the changes")["message_id"]
        self.assertStatus(self.remove_member(a, gid, carol.id), 204)                              # v2
        r = self.add_members(a, gid, [dave.id])                                                   # v3
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("added"), [dave.id])
        m2 = self.send_to(A, gid, "right before the crash")["message_id"]
        self.node.kill9()  # right after the answers
        self.node.start()

        det = self.details(a, gid)
        self.assertEqual(as_int(det.get("version")), 3)
        self.assertEqual(det.get("owner"), alice.id)
        self.assertEqual(self.roles(det), {alice.id: "owner", bob.id: "member", dave.id: "member"})
        self.assertEqual((det.get("last_message") or {}).get("id"), m2)
        first = self.all_conversations(a)[0]
        self.assertEqual(first.get("id"), gid)
        self.assertEqual((first.get("last_message") or {}).get("id"), m2)
        self.assertIs(self.summary(c, gid).get("member"), False)
        self.assertIs(self.summary(d, gid).get("member"), True)
        self.assertEqual(self.history_ids(b, conversation_id=gid), [m1, m2])
        self.assertEqual(self.history_ids(d, conversation_id=gid), [m2])

        # Every member's mailbox, read from the start.
        c1, c2, c3 = ("change", 1, "CREATED"), ("change", 2, "MEMBER_REMOVED"), ("change", 3, "MEMBERS_ADDED")
        want = {
            alice.id: (a, [c1, ("message", m1), c2, c3, ("message", m2)]),
            bob.id: (b, [c1, ("message", m1), c2, c3, ("message", m2)]),
            carol.id: (c, [c1, ("message", m1), c2]),
            dave.id: (d, [c3, ("message", m2)]),
        }
        for user_id, (session, log) in want.items():
            with self.subTest(user=user_id):
                S = self.ws(session, after_seq=0)
                self.assertEqual(num(S.welcome, "mailbox_seq"), len(log))
                S.wait_seq(len(log))
                self.assertEqual(S.seqs(), list(range(1, len(log) + 1)))
                self.assertEqual(group_log(S.events(), gid), log)
                S.close()


    def interrupt_deletion(self, name):
        """What a crash between a deletion's two steps leaves (node stopped): the account a
        tombstone and its sessions gone (the accounts store's commit), the message store's
        part (groups, push targets) not done, and the note that it is not."""
        import lmdb  # Debian's python3-lmdb, installed by scripts/setup-deps

        path = os.path.join(self.node.data_dir, "users")
        data = os.path.join(path, "data.mdb")
        env = lmdb.open(path, max_dbs=16, create=False, map_size=max(os.path.getsize(data), 64 << 20))
        try:
            accounts = env.open_db(b"accounts", create=False)
            devices = env.open_db(b"devices", create=False)
            user_devices = env.open_db(b"user_devices", create=False)
            unfinished = env.open_db(b"unfinished_deletions")
            key = name.encode()
            with env.begin(write=True) as txn:
                self.assertIsNotNone(txn.get(key, db=accounts), "no account record for %r" % name)
                # user_record: name (field 1), deleted (field 7)
                txn.put(key, b"\x0a" + bytes([len(key)]) + key + b"\x38\x01", db=accounts)
                cur = txn.cursor(db=user_devices)
                gone = []
                if cur.set_range(key + b"\0"):
                    for k, _ in cur:
                        if not k.startswith(key + b"\0"):
                            break
                        gone.append(k)
                for k in gone:
                    txn.delete(k[len(key) + 1:], db=devices)
                    txn.delete(k, db=user_devices)
                self.assertTrue(gone, "%s had no sessions" % name)
                txn.put(key, b"", db=unfinished)
        finally:
            env.close()

    def test_a_deletion_a_crash_interrupted_is_finished_at_the_next_start(self):
        self.node = self.start_node()
        alice, bob, carol = (self.person(n) for n in ("alice", "bob", "carol"))
        a, b, c = alice.login(), bob.login(), carol.login()
        gid = self.group(a, [bob.id, carol.id], title="the owner goes")                          # v1
        self.assertStatus(self.set_role(a, gid, carol.id, "admin"), 200)                          # v2
        self.node.stop()
        self.interrupt_deletion(alice.name)
        self.node.start()
        # The start finishes it as the admin's DELETE would have: the first admin is owner,
        # then the name goes.
        B = self.ws(b, after_seq=0)
        B.wait_event(ev_change(gid, 4))
        cc = {num(x, "version"): x for x in changes(B, gid)}
        self.assertEqual((cc[3].get("kind"), cc[3].get("users"), cc[3].get("role")),
                         ("ROLE_CHANGED", [carol.id], "OWNER"), cc[3])
        self.assertEqual((cc[4].get("kind"), cc[4].get("users"), cc[4].get("reason")),
                         ("MEMBER_REMOVED", [alice.id], "user_not_found"), cc[4])
        det = self.details(c, gid)
        self.assertEqual((det.get("owner"), self.roles(det)), (carol.id, {bob.id: "member", carol.id: "owner"}))
        # Done once: another start changes nothing more.
        B.close()
        self.node.restart()
        self.assertStatus(self.set_role(c, gid, bob.id, "admin"), 200)                           # v5
        self.assertEqual(as_int(self.details(c, gid).get("version")), 5)
        self.assertError(self.node.login(alice.name, "password123"), 401, "invalid_credentials")


class SharedChangesTest(GroupCase):
    """A change told to many members is stored once for them all: what a member reads back
    from their mailbox later is the whole change, as the live streams got it."""
    NODE_CONFIG = {"messages": {"max_per_second": 100000}}

    def test_changes_read_back_are_whole(self):
        people = [self.person("mem") for _ in range(120)]
        owner, rest = people[0], people[1:]
        o = owner.login()
        O = self.ws(o)
        gid = self.group(o, [p.id for p in rest[:100]], title="big")                           # v1
        r = self.add_members(o, gid, [p.id for p in rest[100:]])                               # v2
        self.assertStatus(r, 200)
        self.assertStatus(self.set_role(o, gid, rest[0].id, "admin"), 200)                     # v3
        self.assertStatus(self.remove_member(o, gid, rest[1].id), 204)                         # v4
        self.wait_change(O, gid, 4)
        live = {num(x, "version"): x for x in changes(O, gid)}
        self.assertEqual(len(live[1].get("users") or []) + len(live[2].get("users") or []), 120,
                         "CREATED and MEMBERS_ADDED name everyone")
        for person, versions in ((rest[0], [1, 2, 3, 4]), (rest[1], [1, 2, 3, 4]), (rest[-1], [2, 3, 4])):
            with self.subTest(member=person.id):
                S = self.ws(person.login(), after_seq=0)
                self.wait_change(S, gid, versions[-1])
                got = {num(x, "version"): x for x in changes(S, gid)}
                self.assertEqual(sorted(got), versions)
                for v in versions:
                    self.assertEqual(got[v], live[v], "change v%d read back differs from the live one" % v)
                S.close()
        # And after a restart (the shared records are in the store, not in memory).
        self.node.restart()
        S = self.ws(rest[2].login(), after_seq=0)
        self.wait_change(S, gid, 4)
        self.assertEqual({num(x, "version"): x for x in changes(S, gid)}, live)


if __name__ == "__main__":
    unittest.main()
