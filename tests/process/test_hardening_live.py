"""Hardening of the live stream and its neighbours: regressions for defects a user could
hit with an ordinary (or slightly hostile) client, each seen from the outside as the user
would notice it (docs/PROTOCOL.md, proto/client.proto).

One class per defect:

- ContentDepthTest       deeply nested body.content, non-finite numbers on the binary stream
- TypingFloodTest        a typing flood must not get the recipient dropped
- ManyContactsTest       a user with 1,200 contacts connects and stays connected
- PresencePrivacyTest    presence is for mutual contacts only
- DeliveryOrderTest      history order equals live delivery order; ids grow with seq
- ReadBeforeAckTest      reading a message also delivers it (DELIVERED before READ)
- ReadUpToTest           READ means "everything up to this message"
- ResumeCountsAsAckTest  resuming after a seq acknowledges everything up to it
- FrameTooLargeTest      an oversized frame gets an error frame, then close 1009
- UncheckedBytesTest     unknown body fields are not passed on; errors quote little input
- PreAuthFrameTest       before authentication, frames of at most 4,096 bytes
- CorruptUserRecordTest  an unreadable user record does not take the node down
- ExpiredNeverDeliveredTest  a message that expired before it was received gets no receipt
"""

import base64
import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wsclient  # noqa: E402
from harness import REGION  # noqa: E402
from test_messaging import MessagingCase, Person, RawWebSocket, message_ids  # noqa: E402
from wsclient import WSClosed, WSTimeout, ev_message, ev_receipt, is_presence, is_typing, num, ref_of  # noqa: E402

MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
QUIET_S = 1.0  # how long "nothing more arrives" is watched; generous for a busy machine
WAIT_S = 20.0  # generous wait for something that should happen promptly

def poll_until(cond, timeout, interval=0.1):
    """Calls cond() outside any client lock until it is true or `timeout` passes; returns
    its last value. For conditions over many frames, which wsclient's wait_until would
    re-evaluate on every frame received."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def id_bytes(message_id):
    """A message id as the 16 bytes it encodes. Ids must be compared as bytes: the
    base64url alphabet (A-Z a-z 0-9 - _) is not in ASCII order, so comparing the strings
    would order them differently."""
    if not isinstance(message_id, str) or not MESSAGE_ID_RE.match(message_id):
        raise AssertionError("message id %r is not 22 characters of base64url" % (message_id,))
    raw = base64.urlsafe_b64decode(message_id + "==")
    if len(raw) != 16:
        raise AssertionError("message id %r decodes to %d bytes, want 16" % (message_id, len(raw)))
    return raw


def pb_field(number, payload):
    """A length-delimited Protobuf field, written out by hand (to send what a library would
    not: unknown fields, repeated messages)."""
    def varint(n):
        out = b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out
    return varint(number << 3 | 2) + varint(len(payload)) + payload


class LiveCase(MessagingCase):
    """test_messaging's helpers (people, connections, REST), with history read by
    conversation id."""

    def raw_ws(self, token):
        """A hand-written WebSocket client (test_messaging.RawWebSocket), upgraded with `token`
        (None: none), closed at the end of the test."""
        conn = RawWebSocket(self.node, token=token)
        self.addCleanup(conn.close)
        self.assertEqual(conn.status, 101, conn.headers)
        return conn

    def conversation_request(self, session, conversation_id, node=None, **params):
        path = "/v1/conversations/%s/messages" % urllib.parse.quote(conversation_id, safe="")
        return self.api("GET", path, session, params, node)

    def history(self, session, conversation_id, node=None, **params):  # by conversation id only
        r = self.conversation_request(session, conversation_id, node, **params)
        self.assertStatus(r, 200, "history of %s %s" % (conversation_id, params))
        self.assertIsInstance(r.json.get("messages"), list, r.describe())
        return r.json

    def history_messages(self, session, conversation_id, node=None, **params):
        return self.history(session, conversation_id, node, **params)["messages"]

    def get_message(self, session, message_id, node=None):
        return self.api("GET", "/v1/messages/" + urllib.parse.quote(message_id, safe=""), session, node=node)

    def assertWsError(self, frame, code, ref=None):
        self.assertIn("error", frame, "want error %s, got %s" % (code, json.dumps(frame)[:300]))
        err = frame["error"]
        self.assertEqual(err.get("code"), code, "wrong error code: %s" % (frame,))
        self.assertTrue(err.get("message"), "error.message missing or empty: %s" % (frame,))
        if ref is not None:
            self.assertEqual(ref_of(frame), str(ref), "error does not carry the frame's ref: %s" % (frame,))
        return err

    def send_and_answer(self, client, to, text, content=None, timeout=WAIT_S):
        """Sends a message and returns the server's answer: the frame with its ref, or an
        error without one (a frame the server could not parse at all cannot be answered
        with its ref), so a refusal of the wrong kind is reported, not waited out."""
        return self.answer_to(client, client.send_async(to, text, content=content), timeout)

    @staticmethod
    def answer_to(client, ref, timeout=WAIT_S):
        ref = str(ref)
        return client.wait_for(lambda f: ref_of(f) == ref or (ref_of(f) == "0" and "error" in f), timeout,
                               what="the answer to ref %s" % ref)

    def wait_receipt(self, client, message_id, status, why, timeout=WAIT_S):
        """The receipt event, or a failure that says what the user misses."""
        try:
            return client.wait_event(ev_receipt(message_id, status), timeout, what="%s receipt" % status)
        except (WSTimeout, WSClosed) as e:
            got = [e2["receipt"] for e2 in client.events() if "receipt" in e2]
            self.fail("no %s receipt for %s within %.0f s although %s; receipts received: %s (%s)"
                      % (status, message_id, timeout, why, json.dumps(got)[:600], str(e)[:200]))


# =========================================================================================
# 1. Content depth


def nested_content(depth, kind):
    """A body.content object nested `depth` deep, counting the content object itself as 1
    and every object or list inside it as one more. kind: "objects" (objects in objects),
    "lists" (lists in lists under one key) or "mixed" (objects and lists alternating)."""
    if depth < 1:
        raise ValueError("depth >= 1")
    if kind == "objects":
        v = {"leaf": "x"}
        for _ in range(depth - 1):
            v = {"n": v}
        return v
    if kind == "lists":
        if depth == 1:
            return {"leaf": "x"}
        v = ["x"]
        for _ in range(depth - 2):
            v = [v]
        return {"n": v}
    if kind == "mixed":
        # Innermost first: containers alternate list, object, list, ... going outwards,
        # and the outermost is always the content object.
        v = "x"
        for level in range(depth, 1, -1):
            v = [v] if (depth - level) % 2 == 0 else {"n": v}
        return {"n": v}
    raise ValueError(kind)


def depth_of(v):
    if isinstance(v, dict):
        return 1 + max([depth_of(x) for x in v.values()] + [0])
    if isinstance(v, list):
        return 1 + max([depth_of(x) for x in v] + [0])
    return 0


KINDS = ("objects", "lists", "mixed")


class ContentDepthTest(LiveCase):
    """body.content nested deeper than 16 is refused (invalid_field, with the send's ref)
    and never stored; depth 16 is served everywhere. Before the fix 40 nested lists were
    accepted and the conversation's history then answered 500 to both members for good
    (40 nested objects were refused, but as malformed_frame without the send's ref)."""

    NODE_CONFIG = {}

    def setUp(self):
        super().setUp()
        # The tests rely on nested_content() building exactly the depth asked for: a
        # precondition of each test, not a test of the node.
        for kind in KINDS:
            for d in (1, 2, 3, 16, 17, 40):
                self.assertEqual(depth_of(nested_content(d, kind)), d, (kind, d))

    def test_deep_content_is_refused_and_history_stays_readable(self):
        for kind in KINDS:
            with self.subTest(kind=kind):
                alice, bob = self.person("alice"), self.person("bob")
                a, b = alice.login(), bob.login()
                A, B = self.ws(a), self.ws(b)
                first = A.send_message(bob.id, "before")
                cid = first["conversation_id"]

                answer = self.send_and_answer(A, bob.id, "deep", content=nested_content(40, kind))
                # What a user notices first: can both still open the conversation?
                for who, s in (("alice", a), ("bob", b)):
                    r = self.conversation_request(s, cid, limit=50)
                    self.assertStatus(r, 200, "%s opening the conversation after a 40-deep content (%s) "
                                              "was sent; the send was answered %s"
                                      % (who, kind, json.dumps(answer)[:200]))
                self.assertWsError(answer, "invalid_field", ref_of(answer))
                self.assertNotEqual(ref_of(answer), "0", "the refusal does not carry the send's ref")

                # Nothing was stored: bob's stream and the history hold only the
                # messages around it.
                last = A.send_message(bob.id, "after")
                B.wait_event(ev_message(last["message_id"]), WAIT_S)
                want = [first["message_id"], last["message_id"]]
                self.assertEqual(message_ids(B.events()), want, "bob's stream")
                for s in (a, b):
                    self.assertEqual([m["id"] for m in self.history_messages(s, cid, limit=50)], want)
                A.ping()  # the sender's connection stayed open

    def test_a_binary_send_deeper_than_protobufs_own_limit_gets_invalid_field_with_its_ref(self):
        """Protobuf's parser stops at 100 nested messages (about 48 levels of content), before
        the protocol's 16 are checked: that refusal, too, is invalid_field with the send's ref
        (once malformed_frame with ref 0, which a client cannot match to its send)."""
        field = pb_field
        struct = field(1, field(1, b"leaf") + field(2, field(3, b"x")))  # {"leaf": "x"}
        for _ in range(199):  # {"n": ...}: 200 levels
            struct = field(1, field(1, b"n") + field(2, field(5, struct)))
        alice, bob = self.person("alice"), self.person("bob")
        A, B = self.ws(alice.login(), encoding="proto"), self.ws(bob.login())
        pb = wsclient.pb2()
        frame = pb.client_frame()
        frame.ref = int(A.next_ref())
        frame.send.client_id = uuid.uuid4().hex
        frame.send.to = bob.id
        frame.send.body.text = "200 deep"
        # A second occurrence of `send` merges into the first: it brings the content.
        A.send_raw(frame.SerializeToString() + field(11, field(3, field(2, struct))))
        answer = self.answer_to(A, frame.ref)
        self.assertWsError(answer, "invalid_field")
        self.assertEqual(ref_of(answer), str(frame.ref), "the refusal carries the send's ref")
        last = A.send_message(bob.id, "after")
        B.wait_event(ev_message(last["message_id"]), WAIT_S)
        self.assertEqual(message_ids(B.events()), [last["message_id"]], "nothing of the deep send was stored")

    def test_depth_16_is_served_and_17_refused(self):
        for kind in KINDS:
            with self.subTest(kind=kind):
                alice, bob = self.person("alice"), self.person("bob")
                a, b = alice.login(), bob.login()
                A = self.ws(a)
                B = self.ws(b, encoding="json")  # a JSON recipient must get a parseable frame

                too_deep = self.send_and_answer(A, bob.id, "17 deep", content=nested_content(17, kind))
                self.assertWsError(too_deep, "invalid_field")
                self.assertNotEqual(ref_of(too_deep), "0", "the refusal does not carry the send's ref")

                content = nested_content(16, kind)
                acc = A.send_message(bob.id, "16 deep", content=content)
                mid, cid = acc["message_id"], acc["conversation_id"]
                # The live event is a non-empty frame that parses (wsclient raises
                # WSProtocolError on anything else) and carries the content intact.
                ev = B.wait_event(ev_message(mid), WAIT_S)
                self.assertEqual(ev["message"].get("body", {}).get("content"), content, "content on bob's stream")
                for who, s in (("alice", a), ("bob", b)):
                    r = self.get_message(s, mid)
                    self.assertStatus(r, 200, "%s fetching the 16-deep message" % who)
                    self.assertEqual(r.json.get("body", {}).get("content"), content)
                    msgs = self.history_messages(s, cid, limit=50)
                    self.assertEqual([m["id"] for m in msgs], [mid], "%s's history" % who)
                    self.assertEqual(msgs[0].get("body", {}).get("content"), content)
                # The refused 17-deep send left nothing behind.
                self.assertEqual(message_ids(B.events()), [mid])

    def test_non_finite_numbers_are_refused_on_the_binary_stream(self):
        # JSON cannot carry NaN or infinities, so such content could never be served to a
        # JSON client or in history: it must be refused when sent.
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A = self.ws(a, encoding="proto")
        B = self.ws(b, encoding="json")
        first = A.send_message(bob.id, "finite", content={"n": 1.5})
        cid = first["conversation_id"]
        pb = wsclient.pb2()
        cases = [
            ("NaN", {"x": float("nan")}),
            ("+infinity", {"x": float("inf")}),
            ("-infinity", {"x": float("-inf")}),
            ("nested infinity", {"a": {"b": [1.0, float("inf")]}}),
        ]
        answers = {}
        for what, content in cases:
            frame = pb.client_frame()
            frame.ref = int(A.next_ref())
            frame.send.client_id = uuid.uuid4().hex
            frame.send.to = bob.id
            frame.send.body.text = what
            frame.send.body.content.update(content)
            A.send_raw(frame.SerializeToString())
            answers[what] = self.answer_to(A, frame.ref)
        last = A.send_message(bob.id, "after")
        B.wait_event(ev_message(last["message_id"]), WAIT_S)
        for what, _ in cases:
            with self.subTest(content=what):
                self.assertWsError(answers[what], "invalid_field")
                self.assertNotEqual(ref_of(answers[what]), "0", "the refusal does not carry the send's ref")
        want = [first["message_id"], last["message_id"]]
        self.assertEqual(message_ids(B.events()), want, "bob's JSON stream")
        for s in (a, b):
            self.assertEqual([m["id"] for m in self.history_messages(s, cid, limit=50)], want)


    def test_numbers_in_content_come_back_exactly_from_history_too(self):
        """History, a message by id and the conversation list print body.content as the live
        stream does: every double as the shortest text that reads back as the same double.
        (They once went through a JSON library that read some of them one unit off.)"""
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a, encoding="json"), self.ws(b, encoding="json")
        values = [14871.466378840501, -906834.6387644875, -2.5e-300, 5e-324, 1.7976931348623157e308, 0.1, 1e21,
                  1e-7, 1.5, 123456789.12345679, 2.2250738585072014e-308, -0.0001234567890123457]
        acc = A.send_message(bob.id, "numbers", content={"v": values, "line\u2028sep": "a\u2028b"})
        mid, cid = acc["message_id"], acc["conversation_id"]
        event = B.wait_event(ev_message(mid), WAIT_S)
        self.assertEqual(event["message"]["body"]["content"]["v"], values, "the live stream")
        r = self.get_message(b, mid)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["body"]["content"]["v"], values, "GET /v1/messages/{id}")
        page = self.history_messages(b, cid, limit=10)
        self.assertEqual([m["body"]["content"]["v"] for m in page], [values], "history")
        listed = [c for c in self.api("GET", "/v1/conversations", b).json["conversations"] if c["id"] == cid]
        self.assertEqual(listed[0]["last_message"]["body"]["content"]["v"], values, "the conversation list")
        # The same text as on the stream, U+2028 escaped (a JavaScript literal cannot hold it raw).
        self.assertNotIn("\u2028".encode(), r.raw)
        self.assertEqual(r.json["body"]["content"]["line\u2028sep"], "a\u2028b")


# =========================================================================================
# 2. Typing flood


class TypingFloodTest(LiveCase):
    """A sender who floods typing indicators does not get the recipient disconnected as a
    slow consumer: notices beyond the rate limit are dropped, not queued."""

    NODE_CONFIG = {}
    FLOOD = 3000

    def test_typing_flood_does_not_drop_the_recipient(self):
        alice, bob = self.person("alice"), self.person("bob")
        A, B = self.ws(alice.login()), self.ws(bob.login())
        # Both have written: typing is relayed in either direction.
        m1 = A.send_message(bob.id, "hello")["message_id"]
        m2 = B.send_message(alice.id, "hello back")["message_id"]
        B.wait_event(ev_message(m1), WAIT_S)
        A.wait_event(ev_message(m2), WAIT_S)

        # As fast as the client can: frames encoded once, sent back to back.
        on = wsclient.encode_client_frame({"typing": {"to": bob.id, "active": True}}, "json")
        off = wsclient.encode_client_frame({"typing": {"to": bob.id, "active": False}}, "json")
        for i in range(self.FLOOD):
            A.send_raw(on if i % 2 == 0 else off)

        # Alice was not disconnected: her frames were all handled and she can still send.
        A.sync(WAIT_S)
        after = A.send_message(bob.id, "after the flood", timeout=WAIT_S)["message_id"]
        try:
            B.wait_event(ev_message(after), WAIT_S)
        except WSClosed:
            self.fail("bob was disconnected by alice's typing flood (close code %s, %s); errors he got: %s"
                      % (B.close_code, B.close_reason,
                         [f["error"] for f in B.frames() if "error" in f]))
        self.assertFalse(B.closed, "bob's connection closed (code %s)" % B.close_code)
        self.assertIsNone(B.close_code, "bob's connection got a close code")
        B.ping(WAIT_S)
        self.assertGreaterEqual(len([f for f in B.frames() if is_typing(alice.id)(f)]), 1,
                                "no typing notice was relayed at all")
        self.assertEqual([f["error"] for f in B.frames() if "error" in f], [], "errors on bob's stream")
        # Dropping excess typing is silent or rate_limited; nothing else.
        self.assertEqual({f["error"].get("code") for f in A.frames() if "error" in f} - {"rate_limited"}, set(),
                         "unexpected errors on alice's stream")
        self.assertFalse(A.closed, "alice was disconnected (code %s)" % A.close_code)


# =========================================================================================
# 3. Many contacts, and presence privacy

# Registrations are limited per client address (users.max_registrations_per_address) and
# this test registers all its users from 127.0.0.1, so it lifts the limit.
REGISTRATION_LIMIT = {"max_registrations_per_address": 100000}


class ManyContactsTest(LiveCase):
    """A user with 1,200 (mutual) contacts connects, stays connected, and gets the presence
    of every one of them. Before the fix the presence burst on connecting overflowed the
    send queue and the user was dropped as a slow consumer, on every connection."""

    CONTACTS = 1200
    WORKERS = 8

    def test_user_with_1200_contacts_connects_and_gets_every_presence(self):
        node = self.start_node(config={
            # The cheapest argon2id libsodium allows: 2,400 hashes (register + log in)
            # would otherwise dominate the test.
            "users": dict(REGISTRATION_LIMIT, password_hash_memory_kib=8),
            "messages": {"max_per_second": 100000},
        })
        t0 = time.monotonic()
        bob = Person(node, "bob")
        b = bob.login()
        names = ["c%05d" % i for i in range(self.CONTACTS)]
        contact_ids = {n + "@" + REGION for n in names}

        def register_and_login(name):
            node.new_user(name)
            return node.new_session(name)

        with concurrent.futures.ThreadPoolExecutor(self.WORKERS) as ex:
            sessions = dict(zip(names, ex.map(register_and_login, names)))
        t_users = time.monotonic()

        # Bob writes first to each (pipelined in chunks so his own stream, which gets an
        # `accepted` and an event per send, never has much queued).
        R = self.ws(b, node=node)
        for i in range(0, len(names), 100):
            refs = [R.send_async(n + "@" + REGION, "hi %s" % n) for n in names[i:i + 100]]
            for ref in refs:
                f = R.wait_ref(ref, WAIT_S)
                self.assertIn("accepted", f, "bob's send: %s" % json.dumps(f)[:300])

        # Each contact answers once (so the contact is mutual), from its own connection.
        def reply(name):
            c = wsclient.connect(node, sessions[name], timeout=WAIT_S)
            try:
                return c.send_message(bob.id, "hi bob", timeout=WAIT_S)["message_id"]
            finally:
                c.close()

        with concurrent.futures.ThreadPoolExecutor(self.WORKERS) as ex:
            replies = set(ex.map(reply, names))
        self.assertTrue(poll_until(lambda: replies <= set(message_ids(R.events())), 60),
                        "bob's stream did not get every reply (closed: %s, code %s)" % (R.closed, R.close_code))
        head = R.max_seq()
        R.close()
        t_setup = time.monotonic()
        sys.stderr.write("\n[many contacts] %d users registered and logged in in %.1f s; setup %.1f s\n"
                         % (self.CONTACTS, t_users - t0, t_setup - t0))

        # The point: bob connects (resuming after everything he has seen, so only
        # presence is news) and stays connected.
        V = self.ws(b, node=node, after_seq=head)

        def seen():
            return {f["presence"].get("user_id") for f in V.frames() if "presence" in f}

        poll_until(lambda: contact_ids <= seen() or V.closed, 60)
        errors = [f["error"] for f in V.frames() if "error" in f]
        self.assertFalse(V.closed, "bob was disconnected after connecting (close code %s, %s) with presence "
                                   "of %d of %d contacts received; errors: %s"
                         % (V.close_code, V.close_reason, len(seen() & contact_ids), self.CONTACTS, errors))
        missing = contact_ids - seen()
        self.assertEqual(len(missing), 0, "no presence for %d of %d contacts, e.g. %s"
                         % (len(missing), self.CONTACTS, sorted(missing)[:5]))
        V.ping(WAIT_S)
        self.assertFalse(V.closed)
        self.assertEqual(errors, [], "errors on bob's stream")


class PresencePrivacyTest(LiveCase):
    """Presence is shared between mutual contacts only (both have written in the 1:1
    conversation). A stranger who writes first learns nothing about whether the
    recipient is online until the recipient answers."""

    NODE_CONFIG = {}

    def presence(self, session, user_id):
        return self.api("GET", "/v1/presence/" + urllib.parse.quote(user_id, safe="@"), session)

    def test_unanswered_stranger_does_not_see_presence(self):
        carol, dave, frank = self.person("carol"), self.person("dave"), self.person("frank")
        c, d, fs = carol.login(), dave.login(), frank.login()

        # Frank and dave are mutual contacts: frank's view of dave is the control that
        # shows when dave's presence has been announced. They become contacts before
        # frank's stream opens, so that stream knows dave from its start.
        f0, d0 = self.ws(fs), self.ws(d)
        f0.send_message(dave.id, "hi dave")
        d0.send_message(frank.id, "hi frank")
        d0.close()
        f0.close()
        F = self.ws(fs)
        F.wait_for(is_presence(dave.id, "OFFLINE"), WAIT_S, what="dave OFFLINE at frank")
        C = self.ws(c)

        # Carol, a stranger, writes to dave; dave never answers.
        C.send_message(dave.id, "hello, do you know me?")
        self.assertError(self.presence(c, dave.id), 403, "presence_hidden",
                         msg="carol asking for dave's presence after her unanswered message")

        nf = len(F.frames())
        D = self.ws(d)
        self.assertTrue(poll_until(lambda: any(is_presence(dave.id, "ONLINE")(f) for f in F.frames()[nf:]), WAIT_S),
                        "frank, dave's contact, did not see him come online")
        D.sync()
        time.sleep(QUIET_S)
        self.assertEqual([f for f in C.frames() if is_presence(dave.id)(f)], [],
                         "carol's stream told her about dave's presence")
        self.assertError(self.presence(c, dave.id), 403, "presence_hidden",
                         msg="carol asking for dave's presence while he is online")

        # Once dave answers they are contacts: carol may see him.
        D.send_message(carol.id, "hi carol")
        deadline = time.monotonic() + WAIT_S
        while True:
            r = self.presence(c, dave.id)
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertStatus(r, 200, "carol asking for dave's presence after he answered")
        self.assertEqual(r.json.get("user_id"), dave.id)
        self.assertEqual(r.json.get("state"), "ONLINE")
        # And the streams that were open all along are told at once, both ways: carol's
        # that dave is online, dave's that carol is (not only at the next change).
        C.wait_for(is_presence(dave.id, "ONLINE"), WAIT_S, what="dave ONLINE on carol's open stream")
        D.wait_for(is_presence(carol.id, "ONLINE"), WAIT_S, what="carol ONLINE on dave's open stream")


# =========================================================================================
# 4. History order equals delivery order


HEAVY_CONTENT = {"f%03d" % j: "v%03d" % j for j in range(600)}


class DeliveryOrderTest(LiveCase):
    """Messages sent concurrently from several devices: their ids grow with their seq,
    so history (id order) is the order the recipient saw them live, and paging with
    `after` a live message returns exactly what followed it."""

    NODE_CONFIG = {"messages": {"max_per_second": 100000}}
    # Real traffic mixes sizes: a small message sent while a large one from another device
    # is being processed must still be ordered the same way live and in history. Every
    # other message carries a large structured content (about 9 KiB, under the 16 KiB
    # limit) for that.
    DEVICES = 6
    PER_DEVICE = 30

    def test_ids_follow_seq_and_history_matches_live_order(self):
        alice, bob = self.person("alice"), self.person("bob")
        b = bob.login()
        B = self.ws(b)
        devices = [self.ws(alice.login("device %d" % i)) for i in range(self.DEVICES)]
        total = self.DEVICES * self.PER_DEVICE

        start = threading.Barrier(self.DEVICES)
        results, failures = [], []
        lock = threading.Lock()

        def run(i, client):
            try:
                start.wait(WAIT_S)
                refs = []
                for k in range(self.PER_DEVICE):
                    heavy = (i + k) % 2 == 0
                    refs.append(client.send_async(bob.id, "device %d message %d" % (i, k),
                                                  content=HEAVY_CONTENT if heavy else None))
                answers = [client.wait_ref(r, WAIT_S) for r in refs]
                with lock:
                    results.extend(answers)
            except Exception as e:  # noqa: BLE001 - reported below with the device
                with lock:
                    failures.append("device %d: %r" % (i, e))

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * WAIT_S + 10)
        self.assertEqual(failures, [])
        refused = [f for f in results if "accepted" not in f]
        self.assertEqual(refused, [], "sends not accepted")
        accepted = {f["accepted"]["message_id"] for f in results}
        cid = results[0]["accepted"]["conversation_id"]
        self.assertEqual(len(accepted), total)

        B.wait_until(lambda: accepted <= set(message_ids(B.events())), 2 * WAIT_S, what="all messages at bob")
        live = sorted((e for e in B.events() if "message" in e), key=lambda e: num(e, "seq"))
        self.assertEqual(len(live), total, "bob got a message twice")
        ids = [e["message"]["id"] for e in live]

        # Ids grow with seq (as bytes), and so does the send time.
        for prev, cur in zip(live, live[1:]):
            p, c = prev["message"], cur["message"]
            self.assertLess(id_bytes(p["id"]), id_bytes(c["id"]),
                            "message ids are not increasing in delivery order: seq %s id %s (%s) then seq %s "
                            "id %s (%s)" % (prev["seq"], p["id"], id_bytes(p["id"]).hex(), cur["seq"], c["id"],
                                            id_bytes(c["id"]).hex()))
            self.assertLessEqual(num(p, "sent_at_ms"), num(c, "sent_at_ms"),
                                 "sent_at_ms goes back in delivery order: seq %s then seq %s"
                                 % (prev["seq"], cur["seq"]))

        # History is in the same order: the newest page (it may end early, at about 1 MiB of
        # JSON), and paged forward with `after`.
        newest = self.history(b, cid, limit=200)
        got = [m["id"] for m in newest["messages"]]
        self.assertEqual(got, ids[len(ids) - len(got):], "history order differs from delivery order")
        self.assertEqual(newest["has_more_before"], len(got) < len(ids))
        paged, after = [], ids[0]
        for _ in range(total):
            page = self.history(b, cid, after=after, limit=40)
            got = [m["id"] for m in page["messages"]]
            paged += got
            if not page["has_more_after"] or not got:
                break
            after = got[-1]
        self.assertEqual(paged, ids[1:], "history paged forward with after= differs from delivery order")
        # "What came after the k-th message I saw live?"
        for k in (0, 1, self.PER_DEVICE - 1, total // 2, total - 2, total - 1):
            with self.subTest(k=k):
                got = [m["id"] for m in self.history_messages(b, cid, after=ids[k], limit=200)]
                self.assertEqual(got, ids[k + 1:],
                                 "history after the message of seq %s is not what followed it live"
                                 % live[k]["seq"])


# =========================================================================================
# 5.-7. Receipts


class ReadBeforeAckTest(LiveCase):
    """A recipient that reads a message without acknowledging it first has received it:
    the sender gets DELIVERED, then READ."""

    NODE_CONFIG = {}

    def test_read_without_ack_gives_delivered_then_read(self):
        alice, bob = self.person("alice"), self.person("bob")
        a = alice.login()
        A, B = self.ws(a), self.ws(bob.login())
        acc = A.send_message(bob.id, "m1")
        m1, cid = acc["message_id"], acc["conversation_id"]
        B.wait_event(ev_message(m1), WAIT_S)
        B.read(cid, m1)  # and never an ack
        read = self.wait_receipt(A, m1, "READ", "bob read it")
        delivered = self.wait_receipt(A, m1, "DELIVERED", "bob read it (reading implies having received it)")
        self.assertLess(num(delivered, "seq"), num(read, "seq"), "READ came before DELIVERED")
        self.assertEqual(delivered["receipt"].get("by"), bob.id)
        m = [x for x in self.history_messages(a, cid) if x["id"] == m1]
        self.assertEqual(len(m), 1)
        self.assertGreater(num(m[0], "delivered_at_ms"), 0, "history: m1 not delivered: %s" % m[0])
        self.assertGreater(num(m[0], "read_at_ms"), 0, "history: m1 not read: %s" % m[0])


class ReadUpToTest(LiveCase):
    """READ of a message means everything up to it is read: history shows the earlier
    messages read too."""

    NODE_CONFIG = {}

    def test_reading_the_newest_marks_earlier_messages_read(self):
        alice, bob = self.person("alice"), self.person("bob")
        a = alice.login()
        A, B = self.ws(a), self.ws(bob.login())
        m1 = A.send_message(bob.id, "m1")["message_id"]
        acc2 = A.send_message(bob.id, "m2")
        m2, cid = acc2["message_id"], acc2["conversation_id"]
        ev = B.wait_event(ev_message(m2), WAIT_S)
        # Acknowledge first, so this test is about READ alone.
        B.ack(num(ev, "seq"))
        self.wait_receipt(A, m2, "DELIVERED", "bob acknowledged it")
        B.read(cid, m2)
        self.wait_receipt(A, m2, "READ", "bob read it")
        msgs = {m["id"]: m for m in self.history_messages(a, cid)}
        self.assertEqual(set(msgs), {m1, m2})
        self.assertGreater(num(msgs[m2], "read_at_ms"), 0, "history: m2 (the one read) not read: %s" % msgs[m2])
        self.assertGreater(num(msgs[m1], "read_at_ms"), 0,
                           "history: m1 not read although bob read up to m2, which came after it: %s" % msgs[m1])


class ResumeCountsAsAckTest(LiveCase):
    """A device that reconnects with auth.after_seq = n says it has processed every event
    up to n: the senders of those messages get DELIVERED."""

    NODE_CONFIG = {}

    def test_resume_point_acknowledges_everything_up_to_it(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        sent = [A.send_message(bob.id, "m%d" % i)["message_id"] for i in range(5)]
        last = B.wait_event(ev_message(sent[-1]), WAIT_S)
        self.assertEqual(message_ids(B.events()), sent)
        B.close()  # never acknowledged
        self.assertEqual([e for e in A.events() if "receipt" in e], [], "a receipt without an ack")

        B2 = self.ws(b, after_seq=num(last, "seq"))
        self.assertEqual(num(B2.welcome, "resume_after"), num(last, "seq"))
        for mid in sent:
            self.wait_receipt(A, mid, "DELIVERED",
                              "bob resumed after seq %s, the message's event or later" % last["seq"])


# =========================================================================================
# 8. frame_too_large


class EscapedSendFitsTest(LiveCase):
    """With the default messages.max_frame_bytes, every send within the body limits fits
    one frame however its JSON is spelt: a client may escape every character (\\u0001 is 6
    bytes for 1), and such a send must be accepted, not closed with 1009."""

    NODE_CONFIG = {}

    def test_a_send_at_the_body_limits_with_every_character_escaped_is_accepted(self):
        alice, bob = self.person("alice"), self.person("bob")
        A = self.ws(alice.login(), encoding="json")
        ref = A.next_ref()
        body = {"text": "\x01" * 4096, "content": {"k": "\x01" * 16000}}
        payload = json.dumps({"ref": ref, "send": {"client_id": "escaped", "to": bob.id, "body": body}},
                             ensure_ascii=True)
        self.assertGreater(len(payload), 100000, "the frame is larger than the old default of 65,536")
        A.ws.send(payload)
        f = A.wait_ref(ref)
        self.assertIn("accepted", f, f)


class FrameTooLargeTest(LiveCase):
    """A frame above messages.max_frame_bytes is answered with an `error` frame
    (frame_too_large) and then close 1009, so the client can tell why it was closed."""

    NODE_CONFIG = {"messages": {"max_frame_bytes": 2048}}

    def test_oversized_frame_gets_error_then_1009(self):
        for encoding in wsclient.ENCODINGS:
            with self.subTest(encoding=encoding):
                alice, bob = self.person("alice"), self.person("bob")
                A = self.ws(alice.login(), encoding=encoding)
                A.ping()
                n = len(A.frames())
                A.send_async(bob.id, "z" * 4000)
                self.assertEqual(A.wait_closed(WAIT_S), 1009, "close code (%s)" % A.close_reason)
                errors = [f["error"].get("code") for f in A.frames()[n:] if "error" in f]
                self.assertEqual(errors, ["frame_too_large"], "error frames before the close")

    def test_oversized_header_alone_is_answered(self):
        # The server refuses from the frame header, before the payload: a client that has
        # announced a huge frame gets the error and the close without sending the payload.
        alice = self.person("alice")
        conn = self.raw_ws(alice.login()["access_token"])
        conn.sock.sendall(bytes([0x81, 0x80 | 127]) + (1 << 20).to_bytes(8, "big") + os.urandom(4) + b"{\"ref\"")
        texts, close = conn.until_close()
        self.assertEqual(close, 1009)
        self.assertEqual([f["error"].get("code") for f in texts if "error" in f], ["frame_too_large"],
                         "frames before the close: %s" % texts)


class UncheckedBytesTest(LiveCase):
    """What a client sends the node does not check is neither stored nor passed on: fields of
    a binary send's body that the protocol does not define are dropped (once they reached
    every recipient, up to the frame limit past the text limit), and an error quoting the
    client's own input quotes at most 256 bytes of it (once the whole of a 60 KiB id, in
    each of the ~1,000 answers a client that does not read may have queued)."""

    NODE_CONFIG = {}

    def test_a_binary_sends_unknown_body_fields_do_not_reach_the_recipient(self):
        alice, bob = self.person("alice"), self.person("bob")
        A, B = self.ws(alice.login(), encoding="proto"), self.ws(bob.login(), encoding="proto")
        pb = wsclient.pb2()
        frame = pb.client_frame()
        frame.ref = int(A.next_ref())
        frame.send.client_id = uuid.uuid4().hex
        frame.send.to = bob.id
        body = pb.client_frame().send.body
        body.text = "hi"
        # The body with a field 99 of 30 KiB, as a send's field 3 and the frame's field 11.
        send = frame.send.SerializeToString() + pb_field(3, body.SerializeToString() + pb_field(99, b"x" * 30720))
        A.send_raw(pb.client_frame(ref=frame.ref).SerializeToString() + pb_field(11, send))
        accepted = self.answer_to(A, frame.ref)
        self.assertIn("accepted", accepted, accepted)
        event = B.wait_event(ev_message(accepted["accepted"]["message_id"]), WAIT_S)
        self.assertEqual(event["message"]["body"].get("text"), "hi")
        self.assertLess(B.largest_frame, 4096, "the 30 KiB the protocol does not define reached bob")

    def test_an_error_quotes_at_most_256_bytes_of_the_clients_input(self):
        alice = self.person("alice")
        for encoding in wsclient.ENCODINGS:
            with self.subTest(encoding=encoding):
                A = self.ws(alice.login(), encoding=encoding)
                ref = A.next_ref()
                A.read("d" + "é" * 20000, "A" * 22, ref=ref)
                err = self.assertWsError(self.answer_to(A, ref), "conversation_not_found", ref)
                self.assertLessEqual(len(err["message"].encode("utf-8")), 259, err["message"][:300])


class PreAuthFrameTest(LiveCase):
    """Before authenticating, a connection may send frames of at most 4,096 bytes: thousands
    of connections with no token must not each make the node hold max_frame_bytes."""

    NODE_CONFIG = {}

    def test_large_frame_before_auth_is_refused_after_auth_taken(self):
        conn = self.raw_ws(None)
        # A masked text frame announcing 8,000 bytes (under the default max_frame_bytes),
        # and a few of them: refused from the header.
        conn.sock.sendall(bytes([0x81, 0x80 | 126]) + (8000).to_bytes(2, "big") + os.urandom(4) + b"{\"auth\"")
        texts, close = conn.until_close()
        self.assertEqual(close, 1009)
        self.assertEqual([f["error"].get("code") for f in texts if "error" in f], ["frame_too_large"], texts)
        # Authenticated, the same size is an ordinary frame.
        alice, bob = self.person("alice"), self.person("bob")
        A = self.ws(alice.login())
        acc = A.send_message(bob.id, "y" * 4000, content={"note": "z" * 1500})  # a frame of ~5.6 KB
        self.assertIn("message_id", acc)


# =========================================================================================
# 9. An unreadable user record


class CorruptUserRecordTest(LiveCase):
    """A user record that cannot be parsed (disk corruption, a bad restore) costs that
    user their session, not everyone their node: the live stream's periodic token check
    reads the record, and before the fix the exception aborted the process."""

    def corrupt_account(self, node, name):
        import lmdb  # Debian's python3-lmdb, installed by scripts/setup-deps

        path = os.path.join(node.data_dir, "users")
        data = os.path.join(path, "data.mdb")
        self.assertTrue(os.path.isfile(data), "no LMDB environment at %s" % path)
        # Never map less than the node does (64 MiB by default, more once it grew).
        env = lmdb.open(path, max_dbs=8, create=False, map_size=max(os.path.getsize(data), 64 << 20))
        try:
            db = env.open_db(b"accounts", create=False)
            with env.begin(write=True, db=db) as txn:
                self.assertIsNotNone(txn.get(name.encode()), "no account record for %r" % name)
                txn.put(name.encode(), b"\xff\xff\xff garbage")
        finally:
            env.close()

    def test_unparseable_record_of_a_connected_user_does_not_abort_the_node(self):
        node = self.start_node()
        alice, bob, carol = self.person("alice", node), self.person("bob", node), self.person("carol", node)
        a, b = alice.login(), bob.login()
        A, B = self.ws(a, node=node), self.ws(b, node=node)
        B.send_message(alice.id, "hi")

        self.corrupt_account(node, bob.name)

        # The stream re-checks bob's token (and so reads his record) every 5 s: give it
        # a few rounds to notice. It may close the stream or report an error; it must not
        # take the process with it.
        try:
            B.wait_until(lambda: B.closed or any("error" in f for f in B.frames()), WAIT_S,
                         what="bob's stream closed or told of an error")
        except WSTimeout:
            pass
        try:
            rc = node.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is not None:
            node._join_readers()  # so that its last words are in stderr_lines
        crash = [line for line in node.stderr_lines
                 if "what()" in line or "terminate" in line or "corrupt" in line][-3:]
        self.assertIsNone(rc, "the node exited with code %s after bob's record became unreadable: %s"
                          % (rc, crash))
        self.assertTrue(B.closed or any("error" in f for f in B.frames()),
                        "bob's stream went on as if nothing happened")

        r = node.request("GET", "/healthz")
        self.assertStatus(r, 200)
        # Everyone else carries on: carol logs in and writes, alice receives it live.
        C = self.ws(carol.login(), node=node)
        mid = C.send_message(alice.id, "still here?")["message_id"]
        A.wait_event(ev_message(mid), WAIT_S)
        self.assertFalse(A.closed, "alice's stream closed")
        # Bob's own requests get an answer (an error), not a dead connection.
        r = self.api("GET", "/v1/me", b, node=node)
        self.assertGreaterEqual(r.status, 400, r.describe())
        self.assertIsInstance((r.json or {}).get("error"), dict, r.describe())
        self.assertTrue(node.running(), "the node died answering bob's request")



class ExpiredNeverDeliveredTest(MessagingCase):
    """A message that expired before its recipient got it is skipped by the stream
    (docs/PROTOCOL.md: "an expired message is never delivered"), and until the sweep removes
    it an acknowledgement or a read past its seq must not say otherwise to its sender: it
    once got DELIVERED (and, by a read, READ) for a message nobody saw."""

    NODE_CONFIG = {"messages": {"expiry_sweep_interval_ms": 3600000}}  # the sweep never comes

    def expire_then_connect(self, alice, bob, send_short, send_kept):
        A = self.ws(alice.login())
        short = send_short(A)
        kept = send_kept(A)
        # Waits out the short message's 1 s TTL (a timer of the test's own making).
        time.sleep(max(0.0, (num(short, "sent_at_ms") + 1500 - int(time.time() * 1000)) / 1000.0))
        B = self.ws(bob.login())
        B.wait_event(ev_message(kept["message_id"]), WAIT_S)
        self.assertNotIn(short["message_id"], [e["message"]["id"] for e in B.events() if "message" in e])
        return A, B, short, kept

    def assertNoReceipt(self, A, message_id):
        got = [e["receipt"] for e in A.events() if "receipt" in e and e["receipt"].get("message_id") == message_id]
        self.assertEqual(got, [], "receipts for a message that expired unseen")

    def test_acknowledged_past_it(self):
        alice, bob = self.person("alice"), self.person("bob")
        A, B, short, kept = self.expire_then_connect(
            alice, bob, lambda A: A.send_message(bob.id, "gone in a second", ttl_s=1),
            lambda A: A.send_message(bob.id, "stays"))
        B.ack(B.max_seq(), wait=True)
        # Both receipts would be in one write, the expired one's first: once kept's is here,
        # the other would be too.
        A.wait_event(ev_receipt(kept["message_id"], "DELIVERED"), WAIT_S)
        self.assertNoReceipt(A, short["message_id"])

    def test_read_past_it(self):
        alice, bob = self.person("alice"), self.person("bob")
        A, B, short, kept = self.expire_then_connect(
            alice, bob, lambda A: A.send_message(bob.id, "gone in a second", ttl_s=1),
            lambda A: A.send_message(bob.id, "stays"))
        B.read(kept["conversation_id"], kept["message_id"])
        A.wait_event(ev_receipt(kept["message_id"], "READ"), WAIT_S)
        self.assertNoReceipt(A, short["message_id"])

    def test_in_a_group(self):
        alice, bob = self.person("alice"), self.person("bob")
        a = alice.login()
        r = self.node.request("POST", "/v1/conversations", body={"title": "short", "members": [bob.id]},
                              token=a["access_token"])
        self.assertEqual(r.status, 201, r.describe())
        gid = r.json["conversation"]["id"]

        def send(A, text, ttl_s=None):
            send = {"client_id": uuid.uuid4().hex, "conversation_id": gid, "body": {"text": text}}
            if ttl_s:
                send["ttl_s"] = ttl_s
            f = A.request({"send": send})
            self.assertIn("accepted", f, f)
            return f["accepted"]

        A, B, short, kept = self.expire_then_connect(alice, bob, lambda A: send(A, "gone in a second", 1),
                                                     lambda A: send(A, "stays"))
        B.ack(B.max_seq(), wait=True)
        A.wait_event(ev_receipt(kept["message_id"], "DELIVERED"), WAIT_S)
        B.read(gid, kept["message_id"])
        A.wait_event(ev_receipt(kept["message_id"], "READ"), WAIT_S)
        self.assertNoReceipt(A, short["message_id"])


if __name__ == "__main__":
    unittest.main()
