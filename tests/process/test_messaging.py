"""Messaging core: the live stream (WebSocket /v1/ws) in both encodings, history, deletion,
expiry, limits, presence and typing, durability (docs/PROTOCOL.md, proto/client.proto)."""

import base64
import concurrent.futures
import datetime
import itertools
import http.client
import json
import math
import os
import random
import socket
import stat
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websocket  # noqa: E402

import wsclient  # noqa: E402
from harness import REGION, NodeStartError, NodeTestCase, _do_request  # noqa: E402
from wsclient import (SUBPROTOCOLS, ev_deleted, ev_message, ev_read_mark, ev_receipt,  # noqa: E402
                      is_error, is_presence, is_typing, num, ref_of)

MESSAGE_ID_RE = r"^[A-Za-z0-9_-]{22}$"
DEFAULT_RETENTION_MS = 2592000 * 1000
QUIET_S = 0.4  # how long "nothing more arrives" is watched

_names = itertools.count(1)


def now_ms():
    return int(time.time() * 1000)


def rfc3339(ms):
    t = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def message_ids(events):
    return [e["message"]["id"] for e in events if "message" in e]


def tamper(s, pos):
    return s[:pos] + ("A" if s[pos] != "A" else "B") + s[pos + 1:]


class Person:
    """A registered user of `node` with a unique name."""

    def __init__(self, node, base):
        self.node = node
        self.name = "%s%d" % (base, next(_names))
        node.new_user(self.name)
        self.id = self.name + "@" + REGION

    def login(self, device="phone"):
        """A new device session: {"user_id", "device_id", "access_token", ...}."""
        return self.node.new_session(self.name, device=device)


class MessagingCase(NodeTestCase):
    """Helpers. ENCODING is the live stream encoding; NODE_CONFIG, if not None, is the
    config of a node shared by the class (self.node)."""

    ENCODING = "json"
    NODE_CONFIG = None
    node = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        wsclient.pb2()  # generate the Protobuf classes once, before any test
        if cls.NODE_CONFIG is not None:
            cls.node = cls.start_class_node(config=cls.NODE_CONFIG)

    # -- people and connections -------------------------------------------------------------

    def person(self, base, node=None):
        return Person(node or self.node, base)

    def ws(self, session, node=None, encoding=None, **kw):
        """A live stream connection (closed at the end of the test); waits for welcome
        unless wait_welcome=False."""
        c = wsclient.connect(node or self.node, session, encoding=encoding or self.ENCODING, **kw)
        self.addCleanup(c.close)
        return c

    # -- REST --------------------------------------------------------------------------------

    def api(self, method, path, session=None, params=None, node=None):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        token = session["access_token"] if isinstance(session, dict) else session
        return (node or self.node).request(method, path, token=token)

    def history_request(self, session, peer=None, conversation_id=None, node=None, **params):
        if conversation_id is not None:
            path = "/v1/conversations/%s/messages" % urllib.parse.quote(conversation_id, safe="")
            q = dict(params)
        else:
            path = "/v1/messages"
            q = dict(peer=peer, **params)
        return self.api("GET", path, session, q, node)

    def history(self, session, peer=None, conversation_id=None, node=None, **params):
        r = self.history_request(session, peer, conversation_id, node, **params)
        self.assertStatus(r, 200, "history %s %s %s" % (peer, conversation_id, params))
        body = r.json
        self.assertIsInstance(body.get("messages"), list, r.describe())
        self.assertIsInstance(body.get("has_more_before"), bool, r.describe())
        self.assertIsInstance(body.get("has_more_after"), bool, r.describe())
        return body

    def history_ids(self, session, peer=None, conversation_id=None, node=None, **params):
        return [m["id"] for m in self.history(session, peer, conversation_id, node, **params)["messages"]]

    def get_message(self, session, message_id, node=None):
        return self.api("GET", "/v1/messages/" + urllib.parse.quote(message_id, safe=""), session, node=node)

    def delete_message(self, session, message_id, for_=None, node=None):
        params = {"for": for_} if for_ is not None else None
        return self.api("DELETE", "/v1/messages/" + urllib.parse.quote(message_id, safe=""), session, params, node)

    # -- assertions --------------------------------------------------------------------------

    def assertMessageId(self, value, what="message id"):
        self.assertIsInstance(value, str, what)
        self.assertRegex(value, MESSAGE_ID_RE, "%s is not 22 characters of base64url" % what)

    def assertWsError(self, frame, code, ref=None):
        self.assertIn("error", frame, "want error %s, got %s" % (code, frame))
        err = frame["error"]
        self.assertEqual(err.get("code"), code, "wrong error code: %s" % (frame,))
        self.assertIsInstance(err.get("message"), str, "error.message missing: %s" % (frame,))
        self.assertTrue(err["message"], "error.message empty: %s" % (frame,))
        if ref is not None:
            self.assertEqual(ref_of(frame), str(ref), "error does not carry the frame's ref: %s" % (frame,))
        return err

    def assertSendRefused(self, client, code, **send):
        """Sends a `send` frame built from `send` and asserts the error `code` with its ref."""
        ref = client.next_ref()
        client.send_frame({"ref": ref, "send": send})
        f = client.wait_ref(ref)
        self.assertWsError(f, code, ref)

    def assertMessageFields(self, m, accepted, frm, to, text):
        self.assertEqual(m.get("id"), accepted["message_id"], m)
        self.assertEqual(m.get("conversation_id"), accepted["conversation_id"], m)
        self.assertEqual(m.get("from"), frm, m)
        self.assertEqual(m.get("to"), to, m)
        self.assertEqual(m.get("client_id"), accepted["client_id"], m)
        self.assertEqual(num(m, "sent_at_ms"), num(accepted, "sent_at_ms"), m)
        self.assertEqual((m.get("body") or {}).get("text"), text, m)
        self.assertGreater(num(m, "expires_at_ms"), num(m, "sent_at_ms"), m)

    def assertQuietly(self, client, pred, what, since=0, duration=QUIET_S):
        """Nothing matching `pred` is among the frames `client` received (from index
        `since` of frames() on) after waiting a while."""
        time.sleep(duration)
        hits = [f for f in client.frames()[since:] if pred(f)]
        self.assertEqual(hits, [], "unexpected %s" % what)

    def assertAuthRefused(self, token, code, **kw):
        c = self.ws(token, wait_welcome=False, **kw)
        f = c.wait_for(lambda f: "error" in f or "welcome" in f, 5, what="error %s" % code)
        self.assertWsError(f, code)
        self.assertEqual(c.wait_closed(5), 4001, "close code after %s" % code)


# =========================================================================================
# The core, in both encodings


class CoreTests:
    """Mixed into one TestCase per encoding (default config)."""

    NODE_CONFIG = {}

    # -- connecting ------------------------------------------------------------------------

    def test_an_ack_beyond_the_mailbox_is_refused_and_the_stream_goes_on(self):
        alice, bob = self.person("alice"), self.person("bob")
        B = self.ws(bob.login("phone"))
        A = self.ws(alice.login("phone"))
        sent = A.send_message(bob.id, "hello")
        ev = B.wait_event(ev_message(sent["message_id"]))
        for _ in range(3):  # the same again gets the same answer
            f = B.request({"ack": {"seq": str(1 << 60)}})
            self.assertEqual(f.get("error", {}).get("code"), "invalid_field", f)
        self.assertIn("acked", B.ack(ev["seq"], wait=True))
        again = A.send_message(bob.id, "still here")
        B.wait_event(ev_message(again["message_id"]))

    def test_connect_auth_variants_and_subprotocol(self):
        alice = self.person("alice")
        s = alice.login("phone")
        for auth_in in ("frame", "header", "query"):
            with self.subTest(auth_in=auth_in):
                c = self.ws(s, auth_in=auth_in)
                self.assertEqual(c.ws.getsubprotocol(), SUBPROTOCOLS[self.ENCODING])
                self.assertEqual(c.welcome.get("user_id"), alice.id)
                self.assertEqual(c.welcome.get("device_id"), s["device_id"])
                self.assertEqual(num(c.welcome, "mailbox_seq"), 0)
                self.assertEqual(num(c.welcome, "resume_after"), 0)
                c.ping()
                c.close()
        # A client that offers no subprotocol gets JSON text frames.
        c = self.ws(s, encoding="json", offer=[])
        self.assertEqual(c.welcome.get("user_id"), alice.id)
        c.ping()

    def test_auth_errors(self):
        alice = self.person("alice")
        s = alice.login("phone")
        # Any frame before auth: not_authenticated, close 4001.
        c = self.ws(None, wait_welcome=False)
        ref = c.next_ref()
        c.send_frame({"ref": ref, "ping": {}})
        f = c.wait_for(lambda f: "error" in f or "pong" in f, 5, what="not_authenticated")
        self.assertWsError(f, "not_authenticated", ref)
        self.assertEqual(c.wait_closed(5), 4001)
        # Also a send before auth.
        c = self.ws(None, wait_welcome=False)
        c.send_frame({"ref": "5", "send": wsclient.WSClient.send_body(alice.id, "hi")})
        f = c.wait_for(lambda f: "error" in f or "accepted" in f, 5, what="not_authenticated")
        self.assertWsError(f, "not_authenticated", 5)
        self.assertEqual(c.wait_closed(5), 4001)
        # Bad token in the auth frame.
        self.assertAuthRefused("not-a-token", "invalid_token")
        self.assertAuthRefused(tamper(s["access_token"], len(s["access_token"]) // 2), "invalid_token")
        # Bad token on the upgrade: refused there (401) or like an auth frame.
        try:
            c = wsclient.connect(self.node, "not-a-token", encoding=self.ENCODING, auth_in="header",
                                 wait_welcome=False)
        except websocket.WebSocketBadStatusException as e:
            self.assertEqual(e.status_code, 401)
        else:
            self.addCleanup(c.close)
            f = c.wait_for(lambda f: "error" in f or "welcome" in f, 5, what="invalid_token")
            self.assertWsError(f, "invalid_token")
            self.assertEqual(c.wait_closed(5), 4001)
        # A logged-out device.
        gone = alice.login("logged out")
        self.assertStatus(self.api("DELETE", "/v1/sessions/current", gone), 204)
        self.assertAuthRefused(gone, "session_revoked")
        # A disabled user.
        dave = self.person("dave")
        d = dave.login("phone")
        self.assertStatus(self.node.admin("POST", "/v1/admin/users/%s/disable" % dave.name), 200)
        self.assertAuthRefused(d, "user_disabled")
        # The good token still works after all that.
        self.ws(s).ping()

    def test_silent_connection_is_closed_after_the_auth_deadline(self):
        # A connection that never authenticates must not hold its socket forever.
        c = self.ws(None, wait_welcome=False)
        f = c.wait_for(lambda f: "error" in f, 15, what="not_authenticated after the deadline")
        self.assertWsError(f, "not_authenticated")
        self.assertEqual(c.wait_closed(5), 4001)

    # -- the conversation, step by step ------------------------------------------------------

    def test_conversation_step_by_step(self):
        alice, bob = self.person("alice"), self.person("bob")
        a1 = alice.login("alice phone")
        b1, b2 = bob.login("bob phone"), bob.login("bob laptop")
        # 1. Both clients hold an authenticated WebSocket (bob on two devices).
        A, B1, B2 = self.ws(a1), self.ws(b1), self.ws(b2)
        for c, s, p in ((A, a1, alice), (B1, b1, bob), (B2, b2, bob)):
            self.assertEqual(c.welcome.get("user_id"), p.id)
            self.assertEqual(c.welcome.get("device_id"), s["device_id"])
            self.assertEqual(num(c.welcome, "mailbox_seq"), 0)
        self.assertEqual(A.events(), [])
        self.assertEqual([f for f in A.frames() if "accepted" in f], [])

        # 2./3. Send; `accepted` answers that send (its ref), with the message's identity.
        t0 = now_ms()
        ref = A.next_ref()
        A.send_frame({"ref": ref, "send": {"client_id": "step-1", "to": bob.id, "body": {"text": "hi bob"}}})
        f = A.wait_ref(ref)
        t1 = now_ms()
        self.assertIn("accepted", f, f)
        acc = f["accepted"]
        self.assertEqual(acc.get("client_id"), "step-1")
        self.assertMessageId(acc.get("message_id"))
        self.assertIsInstance(acc.get("conversation_id"), str)
        self.assertTrue(acc["conversation_id"])
        sent = num(acc, "sent_at_ms")
        self.assertTrue(t0 - 2000 <= sent <= t1 + 2000, "sent_at_ms %d not within [%d, %d]" % (sent, t0, t1))
        self.assertFalse(acc.get("duplicate", False))
        mid, cid = acc["message_id"], acc["conversation_id"]

        # 4. The message is seq 1 in bob's mailbox (every device) and seq 1 in alice's own.
        for c in (B1, B2):
            ev = c.wait_event(ev_message(mid))
            self.assertEqual(num(ev, "seq"), 1)
            if self.ENCODING == "json":
                self.assertIsInstance(ev["seq"], str, "64-bit integers are JSON strings")
                self.assertIsInstance(ev["message"]["sent_at_ms"], str, "64-bit integers are JSON strings")
            self.assertMessageFields(ev["message"], acc, alice.id, bob.id, "hi bob")
            exp = num(ev["message"], "expires_at_ms")
            self.assertLessEqual(abs(exp - (sent + DEFAULT_RETENTION_MS)), 5000,
                                 "expires_at_ms is not sent_at_ms + the default retention (30 days)")
        own = A.wait_event(ev_message(mid))
        self.assertEqual(num(own, "seq"), 1)
        self.assertMessageFields(own["message"], acc, alice.id, bob.id, "hi bob")

        # 5./6. Bob's phone acknowledges: alice gets DELIVERED (by bob), seq 2.
        B1.ack(1)
        ev = A.wait_event(ev_receipt(mid, "DELIVERED"))
        self.assertEqual(num(ev, "seq"), 2)
        r = ev["receipt"]
        self.assertEqual(r.get("conversation_id"), cid)
        self.assertEqual(r.get("by"), bob.id)
        self.assertTrue(sent - 1000 <= num(r, "at_ms") <= now_ms() + 2000, r)
        # ... once per message: the laptop's ack adds nothing.
        B2.ack(1)
        B2.sync()

        # 7./8. Bob reads on the phone: alice gets READ, the laptop gets read_mark.
        B1.read(cid, mid)
        ev = A.wait_event(ev_receipt(mid, "READ"))
        self.assertEqual(num(ev, "seq"), 3)
        self.assertEqual(ev["receipt"].get("by"), bob.id)
        self.assertEqual(ev["receipt"].get("conversation_id"), cid)
        ev = B2.wait_event(ev_read_mark(mid))
        self.assertEqual(num(ev, "seq"), 2)
        self.assertEqual(ev["read_mark"].get("conversation_id"), cid)
        self.assertTrue(sent <= num(ev["read_mark"], "at_ms") <= now_ms() + 2000)

        time.sleep(QUIET_S)
        self.assertEqual(A.seqs(), [1, 2, 3], "alice's mailbox: message, DELIVERED, READ")
        self.assertEqual(len([e for e in A.events() if ev_receipt(mid, "DELIVERED")(e)]), 1,
                         "DELIVERED is sent once per message")
        self.assertEqual(message_ids(B1.events()), [mid])
        self.assertEqual(message_ids(B2.events()), [mid])
        # Nobody got an error along the way.
        for c in (A, B1, B2):
            self.assertEqual([f for f in c.frames() if "error" in f], [])

    def test_offline_recipient_and_receipts_on_reconnect(self):
        alice, bob = self.person("alice"), self.person("bob")
        a1, b1 = alice.login("alice phone"), bob.login("bob phone")
        A = self.ws(a1)
        acc1 = A.send_message(bob.id, "are you there?")
        m1, cid = acc1["message_id"], acc1["conversation_id"]
        self.assertEqual(num(A.wait_event(ev_message(m1)), "seq"), 1)

        # Bob was offline; he connects later and gets the message.
        B = self.ws(b1)
        self.assertEqual(num(B.welcome, "mailbox_seq"), 1)
        self.assertEqual(num(B.welcome, "resume_after"), 0)
        ev = B.wait_event(ev_message(m1))
        self.assertEqual(num(ev, "seq"), 1)
        self.assertMessageFields(ev["message"], acc1, alice.id, bob.id, "are you there?")
        # Alice stayed online: DELIVERED arrives live.
        B.ack(1)
        ev = A.wait_event(ev_receipt(m1, "DELIVERED"))
        self.assertEqual(num(ev, "seq"), 2)
        self.assertEqual(ev["receipt"].get("by"), bob.id)

        # Alice sends again, acknowledges what she processed and goes offline.
        acc2 = A.send_message(bob.id, "second")
        m2 = acc2["message_id"]
        self.assertEqual(num(A.wait_event(ev_message(m2)), "seq"), 3)
        A.ack(3, wait=True)  # durable before alice goes: her next connection resumes after it
        A.close()
        # Bob receives, acknowledges and reads while alice is offline.
        self.assertEqual(num(B.wait_event(ev_message(m2)), "seq"), 2)
        B.ack(2)
        B.read(cid, m2)
        B.sync()
        time.sleep(0.2)

        # Alice comes back on the same device: she gets exactly the receipts after her ack.
        A2 = self.ws(a1)
        self.assertEqual(num(A2.welcome, "resume_after"), 3)
        A2.wait_event(ev_receipt(m2, "READ"))
        A2.wait_event(ev_receipt(m2, "DELIVERED"))
        time.sleep(QUIET_S)
        evs = A2.events()
        self.assertEqual(A2.seqs(), [4, 5], evs)
        self.assertEqual([(e["receipt"]["message_id"], e["receipt"]["status"]) for e in evs],
                         [(m2, "DELIVERED"), (m2, "READ")])
        self.assertEqual({e["receipt"].get("by") for e in evs}, {bob.id})
        self.assertGreaterEqual(num(A2.welcome, "mailbox_seq"), 3)

    def test_resume_after_seq(self):
        alice, bob = self.person("alice"), self.person("bob")
        A = self.ws(alice.login("alice phone"))
        ids = [A.send_message(bob.id, "m%d" % i)["message_id"] for i in range(5)]
        d = bob.login("bob phone")

        B = self.ws(d, after_seq=0)
        self.assertEqual(num(B.welcome, "mailbox_seq"), 5)
        self.assertEqual(num(B.welcome, "resume_after"), 0)
        B.wait_seq(5)
        time.sleep(QUIET_S)
        self.assertEqual(B.seqs(), [1, 2, 3, 4, 5])
        self.assertEqual(message_ids(B.events()), ids)
        B.close()

        # Processed up to 2: exactly 3..5, no gaps, no duplicates.
        B = self.ws(d, after_seq=2)
        self.assertEqual(num(B.welcome, "resume_after"), 2)
        self.assertEqual(num(B.welcome, "mailbox_seq"), 5)
        B.wait_seq(5)
        time.sleep(QUIET_S)
        self.assertEqual(B.seqs(), [3, 4, 5])
        self.assertEqual(message_ids(B.events()), ids[2:])
        f = B.ack(4, wait=True)
        self.assertEqual(num(f["acked"], "seq"), 4)
        B.close()

        # Without after_seq: after this device's acknowledged seq.
        B = self.ws(d)
        self.assertEqual(num(B.welcome, "resume_after"), 4)
        B.wait_seq(5)
        # New events follow live, consecutively.
        m6 = A.send_message(bob.id, "m5")["message_id"]
        B.wait_event(ev_message(m6))
        time.sleep(QUIET_S)
        self.assertEqual(B.seqs(), [5, 6])
        self.assertEqual(message_ids(B.events()), [ids[4], m6])
        B.close()

        # Up to date: nothing to send.
        B = self.ws(d, after_seq=6)
        self.assertEqual(num(B.welcome, "mailbox_seq"), 6)
        self.assertEqual(num(B.welcome, "resume_after"), 6)
        B.sync()
        time.sleep(QUIET_S)
        self.assertEqual(B.events(), [])
        B.close()

        # A device that never acknowledged anything starts from the beginning.
        B2 = self.ws(bob.login("bob tablet"))
        self.assertEqual(num(B2.welcome, "resume_after"), 0)
        B2.wait_seq(6)
        time.sleep(QUIET_S)
        self.assertEqual(B2.seqs(), [1, 2, 3, 4, 5, 6])
        self.assertEqual(message_ids(B2.events()), ids + [m6])

    def test_retry_with_same_client_id(self):
        alice, bob = self.person("alice"), self.person("bob")
        a = alice.login("alice phone")
        A, B = self.ws(a), self.ws(bob.login("bob phone"))
        acc1 = A.send_message(bob.id, "only once", client_id="retry-1")
        self.assertFalse(acc1.get("duplicate", False))
        acc2 = A.send_message(bob.id, "only once", client_id="retry-1")
        self.assertTrue(acc2.get("duplicate", False), acc2)
        for k in ("client_id", "message_id", "conversation_id", "sent_at_ms"):
            self.assertEqual(acc2.get(k), acc1.get(k), k)
        # Also from a new connection (after a dropped one).
        A.close()
        A2 = self.ws(a)
        acc3 = A2.send_message(bob.id, "only once", client_id="retry-1")
        self.assertTrue(acc3.get("duplicate", False), acc3)
        self.assertEqual(acc3.get("message_id"), acc1["message_id"])
        # A new client_id is a new message.
        acc4 = A2.send_message(bob.id, "twice", client_id="retry-2")
        self.assertFalse(acc4.get("duplicate", False))
        self.assertNotEqual(acc4["message_id"], acc1["message_id"])
        B.wait_event(ev_message(acc4["message_id"]))
        time.sleep(QUIET_S)
        self.assertEqual(message_ids(B.events()), [acc1["message_id"], acc4["message_id"]])
        self.assertEqual(B.seqs(), [1, 2])
        self.assertEqual(self.history_ids(a, peer=bob.id), [acc1["message_id"], acc4["message_id"]])

    def test_multi_device_fan_out(self):
        alice, bob = self.person("alice"), self.person("bob")
        A1, A2 = self.ws(alice.login("alice phone")), self.ws(alice.login("alice laptop"))
        B1, B2 = self.ws(bob.login("bob phone")), self.ws(bob.login("bob laptop"))
        b3 = bob.login("bob tablet")  # offline for now
        # A bare name means a user of this region.
        acc = A1.send_message(bob.name, "to all your devices")
        mid, cid = acc["message_id"], acc["conversation_id"]
        for c in (B1, B2, A1, A2):
            ev = c.wait_event(ev_message(mid))
            self.assertEqual(num(ev, "seq"), 1)
            self.assertMessageFields(ev["message"], acc, alice.id, bob.id, "to all your devices")
        # Read on the laptop: read_mark on the phone, READ on both of alice's devices.
        B2.read(cid, mid)
        ev = B1.wait_event(ev_read_mark(mid))
        self.assertEqual(ev["read_mark"].get("conversation_id"), cid)
        for c in (A1, A2):
            ev = c.wait_event(ev_receipt(mid, "READ"))
            self.assertEqual(ev["receipt"].get("by"), bob.id)
        # The offline device gets both on connecting.
        B3 = self.ws(b3)
        B3.wait_event(ev_message(mid))
        B3.wait_event(ev_read_mark(mid))
        self.assertEqual(message_ids(B3.events()), [mid])

    # -- expiry --------------------------------------------------------------------------------

    def test_message_ttl(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login("alice phone"), bob.login("bob phone")
        A, B = self.ws(a), self.ws(b)
        acc = A.send_message(bob.id, "this will self-destruct", ttl_s=1)
        mid, sent = acc["message_id"], num(acc, "sent_at_ms")
        # Online: delivered at once, with its expiry.
        ev = B.wait_event(ev_message(mid))
        self.assertEqual(num(ev, "seq"), 1)
        exp = num(ev["message"], "expires_at_ms")
        self.assertTrue(sent + 900 <= exp <= sent + 2000, "expires_at_ms %d, sent_at_ms %d, ttl 1 s" % (exp, sent))
        ctrl = A.send_message(bob.id, "this stays")["message_id"]
        self.assertEqual(num(B.wait_event(ev_message(ctrl)), "seq"), 2)
        time.sleep(max(0.0, (sent + 2500 - now_ms()) / 1000.0))

        for s in (a, b):
            self.assertError(self.get_message(s, mid), 404, "message_not_found")
            self.assertStatus(self.get_message(s, ctrl), 200)
        self.assertEqual(self.history_ids(a, peer=bob.id), [ctrl])
        self.assertEqual(self.history_ids(b, peer=alice.id), [ctrl])
        # A device connecting afterwards never gets it: seq 1 is skipped.
        B2 = self.ws(bob.login("bob laptop"))
        ev = B2.wait_event(ev_message(ctrl))
        self.assertEqual(num(ev, "seq"), 2)
        time.sleep(QUIET_S)
        self.assertEqual(message_ids(B2.events()), [ctrl])
        A2 = self.ws(alice.login("alice laptop"))
        A2.wait_event(ev_message(ctrl))
        time.sleep(QUIET_S)
        self.assertEqual(message_ids(A2.events()), [ctrl])

    # -- history -------------------------------------------------------------------------------

    def test_a_page_of_large_messages_ends_early_and_paging_back_finds_them_all(self):
        # 100 messages of some 16 KiB each: one page of them would be about 1.6 MiB stored
        # (more as JSON), held per connection until its reader takes it. It ends at about
        # 1 MiB instead.
        alice, bob = self.person("alice"), self.person("bob")
        a = alice.login("alice phone")
        A = self.ws(a)
        ids = []
        for i in range(100):
            acc = A.send_message(bob.id, ("%02d" % i) * 2000, content={"blob": "y" * 12000})
            ids.append(acc["message_id"])
        first = self.history(a, peer=bob.id, limit=200)
        got = [m["id"] for m in first["messages"]]
        self.assertLess(len(got), 100, "a page of 1.6 MiB of messages was not cut")
        self.assertGreater(len(got), 40)
        self.assertEqual(got, ids[-len(got):], "the newest ones")
        self.assertTrue(first["has_more_before"])
        collected, p = got, first
        while p["has_more_before"]:
            p = self.history(a, peer=bob.id, before=collected[0], limit=200)
            self.assertTrue(p["messages"])
            collected = [m["id"] for m in p["messages"]] + collected
        self.assertEqual(collected, ids, "paging back finds every message, once")
        # Forward from the first: cut as well, and complete.
        p = self.history(a, peer=bob.id, after=ids[0], limit=200)
        self.assertTrue(p["has_more_after"])
        self.assertEqual([m["id"] for m in p["messages"]], ids[1:1 + len(p["messages"])])

    def test_history_and_paging(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login("alice phone"), bob.login("bob phone"), carol.login("carol phone")
        A, B = self.ws(a), self.ws(b)
        sent = []  # (accepted, from, to, text) in send order
        for i in range(7):
            text = "history %d" % i
            if i % 3 == 2:
                sent.append((B.send_message(alice.id, text), bob.id, alice.id, text))
            else:
                sent.append((A.send_message(bob.id, text), alice.id, bob.id, text))
            time.sleep(0.005)  # time-ordered ids: keep sends in distinct milliseconds
        ids = [s[0]["message_id"] for s in sent]
        cid = sent[0][0]["conversation_id"]
        self.assertEqual({s[0]["conversation_id"] for s in sent}, {cid}, "one conversation, whoever writes")

        full = self.history(a, peer=bob.id, limit=200)
        self.assertEqual([m["id"] for m in full["messages"]], ids, "oldest first, in id order")
        self.assertFalse(full["has_more_before"])
        self.assertFalse(full["has_more_after"])
        for m, (acc, frm, to, text) in zip(full["messages"], sent):
            self.assertMessageFields(m, acc, frm, to, text)
        msgs = full["messages"]
        # The same through every way of naming the conversation, for both members.
        self.assertEqual(self.history_ids(a, peer=bob.id), ids)  # default limit 50
        self.assertEqual(self.history_ids(a, peer=bob.name), ids)
        self.assertEqual(self.history_ids(b, peer=alice.id), ids)
        self.assertEqual(self.history_ids(a, conversation_id=cid), ids)
        self.assertEqual(self.history_ids(b, conversation_id=cid), ids)
        # One message by id.
        for i in (0, 2, 6):
            r = self.get_message(b, ids[i])
            self.assertStatus(r, 200)
            self.assertEqual(r.json, msgs[i])

        # limit: the newest ones.
        p = self.history(a, peer=bob.id, limit=3)
        self.assertEqual([m["id"] for m in p["messages"]], ids[4:])
        self.assertTrue(p["has_more_before"])
        self.assertFalse(p["has_more_after"])
        # Paging back with before=<first id>.
        collected = [m["id"] for m in p["messages"]]
        for _ in range(10):
            if not p["has_more_before"]:
                break
            p = self.history(a, conversation_id=cid, before=collected[0], limit=3)
            self.assertTrue(p["messages"], "an empty page although has_more_before was true")
            self.assertTrue(p["has_more_after"])
            collected = [m["id"] for m in p["messages"]] + collected
        self.assertEqual(collected, ids)
        self.assertEqual(len(p["messages"]), 1)
        # Paging forward with after=<last id>.
        p = self.history(a, conversation_id=cid, after=ids[0], limit=3)
        self.assertEqual([m["id"] for m in p["messages"]], ids[1:4])
        self.assertTrue(p["has_more_before"])
        self.assertTrue(p["has_more_after"])
        collected = [ids[0]] + [m["id"] for m in p["messages"]]
        for _ in range(10):
            if not p["has_more_after"]:
                break
            p = self.history(b, peer=alice.id, after=collected[-1], limit=3)
            self.assertTrue(p["messages"], "an empty page although has_more_after was true")
            self.assertTrue(p["has_more_before"])
            collected += [m["id"] for m in p["messages"]]
        self.assertEqual(collected, ids)
        # Edges and both bounds.
        p = self.history(a, peer=bob.id, after=ids[-1])
        self.assertEqual(p["messages"], [])
        self.assertFalse(p["has_more_after"])
        p = self.history(a, peer=bob.id, before=ids[0])
        self.assertEqual(p["messages"], [])
        self.assertFalse(p["has_more_before"])
        self.assertEqual(self.history_ids(a, peer=bob.id, after=ids[1], before=ids[5]), ids[2:5])

        # since (at or after) / until (before).
        t = [num(m, "sent_at_ms") for m in msgs]
        self.assertEqual(t, sorted(t))
        self.assertEqual(self.history_ids(a, peer=bob.id, since=rfc3339(t[3])),
                         [m["id"] for m in msgs if num(m, "sent_at_ms") >= t[3]])
        self.assertEqual(self.history_ids(a, peer=bob.id, until=rfc3339(t[3])),
                         [m["id"] for m in msgs if num(m, "sent_at_ms") < t[3]])
        self.assertEqual(self.history_ids(a, peer=bob.id, since=rfc3339(t[1]), until=rfc3339(t[5])),
                         [m["id"] for m in msgs if t[1] <= num(m, "sent_at_ms") < t[5]])
        self.assertEqual(self.history_ids(a, peer=bob.id, until=rfc3339(t[5]), limit=2),
                         [m["id"] for m in msgs if num(m, "sent_at_ms") < t[5]][-2:])
        self.assertEqual(self.history_ids(a, peer=bob.id, since=rfc3339(t[6] + 60000)), [])

        # Bad filters.
        for bad in ({"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"since": "yesterday"},
                    {"until": "2026-13-45T99:00:00.000Z"}, {"before": "!!!"}, {"after": "!!!"}):
            with self.subTest(filter=bad):
                self.assertError(self.history_request(a, peer=bob.id, **bad), 400, "invalid_field")
        self.assertError(self.history_request(a, peer="nosuchuser%d" % next(_names)), 404, "user_not_found")
        # Bad filters are refused the same with a peer one has no conversation with.
        stranger = self.person("stranger")
        self.assertError(self.history_request(a, peer=stranger.id, limit=999), 400, "invalid_field")
        self.assertError(self.history_request(a, peer=stranger.id, before="!!!"), 400, "invalid_field")
        self.assertStatus(self.history_request(a, peer=stranger.id, limit=5), 200)
        # A filter that does not decode is refused, not dropped (which would answer everything).
        broken = self.node.request("GET", "/v1/messages?peer=%s&since=%%ZZ" % urllib.parse.quote(bob.id),
                                   token=a["access_token"])
        self.assertError(broken, 400, "invalid_field")
        self.assertError(self.history_request(a, conversation_id=tamper(cid, 0)), 404, "conversation_not_found")
        self.assertError(self.history_request(None, peer=bob.id), 401, "missing_token")
        self.assertError(self.get_message(None, ids[0]), 401, "missing_token")
        self.assertError(self.get_message(a, tamper(ids[0], 11)), 404, "message_not_found")
        # Carol is not a member: to her, alice and bob's conversation does not exist (its id
        # is theirs, worked out from their names: any other answer tells they talked).
        carol_sees = self.history_request(c, conversation_id=cid)
        self.assertError(carol_sees, 404, "conversation_not_found")
        made_up = tamper(cid, 0)
        never = self.history_request(c, conversation_id=made_up)
        self.assertEqual((carol_sees.status, carol_sees.json["error"]["message"].replace(cid, "?")),
                         (never.status, never.json["error"]["message"].replace(made_up, "?")))
        self.assertError(self.get_message(c, ids[0]), 404, "message_not_found")

    def test_delete(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login("alice phone"), bob.login("bob phone"), carol.login("carol phone")
        A, B = self.ws(a), self.ws(b)
        accs = [A.send_message(bob.id, "delete me %d" % i) for i in range(4)]
        accs.append(B.send_message(alice.id, "bob's"))
        m = [x["message_id"] for x in accs]
        cid = accs[0]["conversation_id"]
        B.wait_event(ev_message(m[3]))
        A.wait_event(ev_message(m[4]))

        # for=me hides only for the caller.
        self.assertStatus(self.delete_message(b, m[0], "me"), 204)
        self.assertEqual(self.history_ids(b, peer=alice.id), m[1:])
        self.assertEqual(self.history_ids(a, peer=bob.id), m)
        self.assertError(self.get_message(b, m[0]), 404, "message_not_found")
        self.assertStatus(self.get_message(a, m[0]), 200)
        # A message deleted for oneself can still be read up to (else it would stay unread).
        B.read(cid, m[0])
        B.wait_event(ev_read_mark(m[0]))
        # No `for` means me.
        self.assertStatus(self.delete_message(a, m[1]), 204)
        self.assertEqual(self.history_ids(a, peer=bob.id), [m[0]] + m[2:])
        self.assertStatus(self.get_message(b, m[1]), 200)

        # for=everyone: only the sender.
        self.assertError(self.delete_message(b, m[2], "everyone"), 403, "not_sender")
        self.assertStatus(self.get_message(b, m[2]), 200)
        self.assertStatus(self.delete_message(a, m[2], "everyone"), 204)
        for cl in (A, B):
            ev = cl.wait_event(ev_deleted(m[2]))
            d = ev["deleted"]
            self.assertEqual(d.get("by"), alice.id)
            self.assertEqual(d.get("conversation_id"), cid)
            self.assertTrue(now_ms() - 60000 <= num(d, "at_ms") <= now_ms() + 2000)
        for s in (a, b):
            self.assertError(self.get_message(s, m[2]), 404, "message_not_found")
        self.assertEqual(self.history_ids(a, peer=bob.id), [m[0], m[3], m[4]])
        self.assertEqual(self.history_ids(b, peer=alice.id), [m[1], m[3], m[4]])
        # Bob may delete his own for everyone.
        self.assertStatus(self.delete_message(b, m[4], "everyone"), 204)
        self.assertEqual(A.wait_event(ev_deleted(m[4]))["deleted"].get("by"), bob.id)
        self.assertEqual(self.history_ids(a, peer=bob.id), [m[0], m[3]])

        # Deleted messages are not delivered to a device that connects afterwards.
        B2 = self.ws(bob.login("bob laptop"))
        B2.wait_event(ev_message(m[3]))
        time.sleep(QUIET_S)
        self.assertEqual(message_ids(B2.events()), [m[1], m[3]])

        # Errors.
        self.assertError(self.delete_message(a, m[3], "bogus"), 400, "invalid_field")
        # A value that does not decode is refused, not taken for an absent one ("me").
        broken = self.node.request("DELETE", "/v1/messages/%s?for=%%ZZ" % urllib.parse.quote(m[3], safe=""),
                                   token=a["access_token"])
        self.assertError(broken, 400, "invalid_field")
        self.assertError(self.delete_message(a, tamper(m[3], 11), "me"), 404, "message_not_found")
        self.assertError(self.delete_message(c, m[3], "me"), 404, "message_not_found")
        self.assertError(self.delete_message(c, m[3], "everyone"), 404, "message_not_found")
        self.assertError(self.delete_message(None, m[3], "me"), 401, "missing_token")
        self.assertStatus(self.get_message(a, m[3]), 200)

        # Its sender may still take back for everyone a message they hid for themselves (on
        # another device, say); a repeat of either is 404: it was done.
        taken = A.send_message(bob.id, "hidden, then taken back")["message_id"]
        B.wait_event(ev_message(taken))
        self.assertStatus(self.delete_message(a, taken, "me"), 204)
        self.assertError(self.delete_message(a, taken, "me"), 404, "message_not_found")
        self.assertStatus(self.delete_message(a, taken, "everyone"), 204)
        self.assertEqual(B.wait_event(ev_deleted(taken))["deleted"].get("by"), alice.id)
        self.assertError(self.delete_message(a, taken, "everyone"), 404, "message_not_found")
        self.assertError(self.get_message(b, taken), 404, "message_not_found")
        self.assertStatus(self.get_message(b, m[3]), 200)

    def test_ids_do_not_count_the_nodes_messages(self):
        # A message id's last 8 bytes order ids made in the same millisecond; they start
        # afresh at random each millisecond, so two of one's own ids do not tell how many
        # messages the node stamped between them (here 20 of others).
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        A, B = self.ws(alice.login()), self.ws(bob.login())
        first = A.send_message(carol.id, "before")["message_id"]
        time.sleep(0.01)
        for i in range(20):
            B.send_message(carol.id, "between %d" % i)
        time.sleep(0.01)
        second = A.send_message(carol.id, "after")["message_id"]
        raw = [base64.urlsafe_b64decode(i + "==") for i in (first, second)]
        counter = [int.from_bytes(r[8:], "big") for r in raw]
        self.assertNotEqual(counter[1] - counter[0], 21, "the ids count the node's messages")
        self.assertLess(raw[0], raw[1])  # still in order (ids of different milliseconds)

    # -- malformed input -------------------------------------------------------------------------

    def test_malformed_frames(self):
        alice = self.person("alice")
        A = self.ws(alice.login("phone"))
        json_mode = self.ENCODING == "json"

        def expect(code, ref=None):
            f = A.wait_for(is_error(), 5, what="error %s" % code)
            self.assertWsError(f, code, ref)
            A.ping()  # the connection stays open
            self.assertFalse(A.closed)

        # Not JSON / not Protobuf.
        A.send_raw("this is not json" if json_mode else b"\xff\xff\xff")
        expect("malformed_frame")
        # Valid JSON / Protobuf but not a client_frame.
        A.send_raw("[1, 2, 3]" if json_mode else b"\x08\x07\x7a\x01\xff")
        expect("malformed_frame")
        if json_mode:
            A.send_raw('{"ref": "7", "ping": 5}')
            expect("malformed_frame")
        # A client_frame without a known kind.
        A.send_raw('{"ref": "8"}' if json_mode else b"\x08\x08")
        expect("unknown_frame", 8)
        A.send_raw('{"ref": "9", "fly": {}}' if json_mode else b"\x08\x09\x98\x06\x01")
        expect("unknown_frame", 9)
        if not json_mode:
            # A text field that is not UTF-8: refused, and no raw line of the Protobuf library's
            # own lands in the node's log for it (a client could write them as fast as it sends).
            for _ in range(20):
                A.send_raw(b"\x08\x0a\x5a\x08\x0a\x02\xff\xfe\x12\x02\xff\xfe")  # ref 10, send{client_id, to}
                expect("malformed_frame")
            self.assertEqual([line for line in self.node.stderr_lines if "libprotobuf" in line or "UTF-8" in line], [])
        self.assertEqual(A.events(), [])

    def test_send_field_errors(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        A, B = self.ws(alice.login("phone")), self.ws(bob.login("phone"))
        C = self.ws(carol.login("phone"))
        self.assertSendRefused(A, "user_not_found", client_id="e1", to="nosuchuser%d" % next(_names),
                               body={"text": "anyone?"})
        self.assertSendRefused(A, "missing_field", to=bob.id, body={"text": "no client id"})
        self.assertSendRefused(A, "missing_field", client_id="e2", body={"text": "no recipient"})
        self.assertSendRefused(A, "invalid_field", client_id="x" * 65, to=bob.id, body={"text": "long id"})
        # Sizes are checked before shapes: content over its size with an attachment whose
        # name is too long is body_too_large (before, invalid_field).
        self.assertSendRefused(A, "body_too_large", client_id="e3", to=bob.id,
                               body={"text": "both", "content": {"k": "x" * 17000},
                                     "attachments": [{"asset_id": "a", "name": "n" * 1025}]})
        # Reads about conversations or messages that are not the user's.
        acc = A.send_message(bob.id, "fine")
        ev = B.wait_event(ev_message(acc["message_id"]))
        self.assertEqual(message_ids(B.events()), [acc["message_id"]], "no refused send was delivered")
        self.assertEqual(num(ev, "seq"), 1)
        ref = C.next_ref()
        C.read(acc["conversation_id"], acc["message_id"], ref=ref)
        self.assertWsError(C.wait_ref(ref), "conversation_not_found", ref)
        ref = B.next_ref()
        B.read(acc["conversation_id"], tamper(acc["message_id"], 11), ref=ref)
        self.assertWsError(B.wait_ref(ref), "message_not_found", ref)
        for cl in (A, B, C):
            cl.ping()
        self.assertEqual([e for e in A.events() if "receipt" in e], [], "a refused read made no receipt")

    # -- presence and typing ---------------------------------------------------------------------

    def test_presence(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b1, b2, c = alice.login("phone"), bob.login("phone"), bob.login("laptop"), carol.login("phone")
        A = self.ws(a)
        A.send_message(bob.id, "hello")  # now they share a conversation
        # Bob has not written yet: alice does not see him come and go.
        B0 = self.ws(bob.login("setup"))
        self.assertError(self.api("GET", "/v1/presence/" + bob.id, a), 403, "presence_hidden")
        B0.send_message(alice.id, "hi")  # now both have written: they share presence
        B0.close()
        A.wait_for(is_presence(bob.id, "OFFLINE"), what="presence OFFLINE of bob's setup connection")
        C = self.ws(c)
        B1 = self.ws(b1)
        p = A.wait_for(is_presence(bob.id, "ONLINE"), what="presence ONLINE of bob")["presence"]
        self.assertEqual(p.get("user_id"), bob.id)
        # On connecting, bob got alice's current presence.
        B1.wait_for(is_presence(alice.id, "ONLINE"), what="presence ONLINE of alice")

        r = self.api("GET", "/v1/presence/" + bob.id, a)
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("user_id"), bob.id)
        self.assertEqual(r.json.get("state"), "ONLINE")
        r = self.api("GET", "/v1/presence/" + bob.name, a)
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("state"), "ONLINE")
        r = self.api("GET", "/v1/presence/" + alice.id, a)  # oneself
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("state"), "ONLINE")
        self.assertError(self.api("GET", "/v1/presence/" + bob.id, c), 403, "presence_hidden")
        self.assertError(self.api("GET", "/v1/presence/" + carol.id, a), 403, "presence_hidden")
        self.assertError(self.api("GET", "/v1/presence/" + bob.id), 401, "missing_token")

        # A second device is not news; nor is it leaving while the first stays.
        n = len(A.frames())
        B2 = self.ws(b2)
        B2.close()
        self.assertQuietly(A, is_presence(bob.id), "presence change of bob while a device stayed online",
                           since=n)
        # The last device leaving is: OFFLINE with last_seen_ms.
        t0 = now_ms()
        B1.close()
        p = A.wait_for(is_presence(bob.id, "OFFLINE"), what="presence OFFLINE of bob")["presence"]
        self.assertTrue(t0 - 2000 <= num(p, "last_seen_ms") <= now_ms() + 2000, p)
        r = self.api("GET", "/v1/presence/" + bob.id, a)
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("state"), "OFFLINE")
        self.assertTimestamp(r.json.get("last_seen_at"), "last_seen_at")
        # Back online: no last-seen time any more (as the stream's ONLINE frame says).
        B1 = self.ws(b2)
        A.wait_for(is_presence(bob.id, "ONLINE"), what="presence ONLINE of bob again")
        r = self.api("GET", "/v1/presence/" + bob.id, a)
        self.assertEqual((r.json.get("state"), r.json.get("last_seen_at", "absent")), ("ONLINE", None), r.json)
        # Carol shares nothing with bob: she heard nothing about him.
        self.assertEqual([f for f in C.frames() if is_presence(bob.id)(f)], [])

    def test_typing(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        A, B = self.ws(alice.login("phone")), self.ws(bob.login("phone"))
        C = self.ws(carol.login("phone"))
        cid = A.send_message(bob.id, "hello")["conversation_id"]
        A.typing(bob.id, True)
        t = B.wait_for(is_typing(alice.id), what="typing notice")["typing"]
        self.assertEqual(t.get("from"), alice.id)
        self.assertEqual(t.get("conversation_id"), cid)
        self.assertTrue(t.get("active", False))
        A.typing(bob.id, False)
        t = B.wait_for(is_typing(alice.id), what="typing notice (stopped)")["typing"]
        self.assertFalse(t.get("active", False))
        self.assertEqual([f for f in A.frames() if "error" in f], [])
        # Never stored: a device that connects later gets none of it.
        B.close()
        A.typing(bob.id, True)
        A.sync()
        B2 = self.ws(bob.login("laptop"), after_seq=0)
        B2.wait_seq(1)
        self.assertQuietly(B2, is_typing(), "typing notice on a later connection")
        self.assertEqual(len(B2.events()), 1)
        self.assertEqual([f for f in C.frames() if is_typing()(f)], [], "carol got someone else's typing")
        # Both kinds of target, or neither, as a send: refused, not taken for one of them.
        for typing, code in (({"to": bob.id, "conversation_id": cid, "active": True}, "invalid_field"),
                             ({"active": True}, "missing_field")):
            with self.subTest(typing=typing):
                ref = A.next_ref()
                A.send_frame({"ref": ref, "typing": typing})
                self.assertWsError(A.wait_ref(ref), code)


class CoreJSONTest(CoreTests, MessagingCase):
    ENCODING = "json"

    def test_a_name_given_twice_counts_its_last_value(self):
        # docs/PROTOCOL.md: a name given twice in one JSON object is not refused; the last
        # value counts. A frame the fast reader leaves to Protobuf's parser (here for its
        # null) once merged both bodies: the first's content came with the second's text.
        alice, bob = self.person("alice"), self.person("bob")
        A, B = self.ws(alice.login("phone")), self.ws(bob.login("phone"))
        A.send_raw('{"ref": "11", "send": {"client_id": "twice-1", "to": "%s", '
                   '"body": {"text": "first", "content": {"x": 1}}, '
                   '"body": {"text": "second", "content": null}}}' % bob.id)
        acc = A.wait_ref(11)
        self.assertIn("accepted", acc, acc)
        ev = B.wait_event(ev_message(acc["accepted"]["message_id"]))
        body = ev["message"]["body"]
        self.assertEqual(body.get("text"), "second", ev)
        self.assertIn(body.get("content"), (None, {}), "the first body's content was kept: %s" % ev)


class CoreProtoTest(CoreTests, MessagingCase):
    ENCODING = "proto"


# =========================================================================================
# Limits, in both encodings


class LimitsTests:
    NODE_CONFIG = {"messages": {"max_text_bytes": 100, "max_frame_bytes": 2048, "max_per_second": 5,
                                "max_streams_per_user": 2, "delete_for_everyone_window_s": 1}}

    def test_text_size(self):
        alice, bob = self.person("alice"), self.person("bob")
        A, B = self.ws(alice.login("phone")), self.ws(bob.login("phone"))
        ok = [A.send_message(bob.id, "x" * 100)["message_id"],
              A.send_message(bob.id, "\u00e9" * 50)["message_id"]]  # 100 bytes of UTF-8
        for text in ("x" * 101, "\u00e9" * 51):
            f = A.try_send(bob.id, text)
            self.assertWsError(f, "body_too_large", ref_of(f))
        A.ping()
        B.wait_event(ev_message(ok[1]))
        time.sleep(QUIET_S)
        self.assertEqual(message_ids(B.events()), ok)
        self.assertEqual([e["message"]["body"]["text"] for e in B.events()], ["x" * 100, "\u00e9" * 50])

    def test_frame_too_large(self):
        alice, bob = self.person("alice"), self.person("bob")
        A = self.ws(alice.login("phone"))
        # Under the frame limit, over the text limit: an error, the connection stays.
        f = A.try_send(bob.id, "y" * 1500)
        self.assertWsError(f, "body_too_large")
        A.ping()
        # Over the frame limit: closed with 1009.
        n = len(A.frames())
        A.send_async(bob.id, "z" * 4000)
        self.assertEqual(A.wait_closed(5), 1009)
        for f in A.frames()[n:]:
            if "error" in f:
                self.assertWsError(f, "frame_too_large")
        # Nothing was delivered.
        B = self.ws(bob.login("phone"))
        B.sync()
        time.sleep(QUIET_S)
        self.assertEqual(B.events(), [])

    def test_rate_limit(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a = alice.login("phone")
        A, B, C = self.ws(a), self.ws(bob.login("phone")), self.ws(carol.login("phone"))
        t0 = time.monotonic()
        refs = [A.send_async(bob.id, "burst %d" % i, client_id="burst-%d" % i) for i in range(30)]
        answers = [A.wait_ref(r) for r in refs]
        elapsed = time.monotonic() - t0
        accepted = [f["accepted"] for f in answers if "accepted" in f]
        limited = [f for f in answers if "accepted" not in f]
        for f in limited:
            self.assertWsError(f, "rate_limited")
            self.assertIn(num(f["error"], "retry_after_s"), (1, 2), "when to send again: %s" % f)
        self.assertGreaterEqual(len(limited), 1, "30 sends in %.2f s at 5 per second" % elapsed)
        self.assertGreaterEqual(len(accepted), 1)
        # The bucket holds a burst of 10 and refills at 5 per second while the sends arrive
        # (the server's span is within the client's `elapsed`).
        self.assertLessEqual(len(accepted), 10 + math.floor(5 * elapsed),
                             "%d accepted in %.2f s at 5 per second" % (len(accepted), elapsed))
        # Per user: carol is not limited by alice's burst.
        C.send_message(bob.id, "not me")
        # Every accepted message is delivered, once; the refused ones never.
        want = {x["message_id"] for x in accepted}
        B.wait_until(lambda: want <= set(message_ids(B.events())), what="all accepted messages delivered")
        time.sleep(QUIET_S)
        got = [e["message"] for e in B.events() if "message" in e and e["message"].get("from") == alice.id]
        self.assertEqual(len(got), len(accepted), "delivered %d, accepted %d" % (len(got), len(accepted)))
        self.assertEqual({m["id"] for m in got}, want)
        self.assertEqual({m["client_id"] for m in got}, {x["client_id"] for x in accepted})
        self.assertEqual(sorted(self.history_ids(a, peer=bob.id, limit=200)), sorted(want))
        # The limit recovers.
        time.sleep(1.2)
        A.send_message(bob.id, "after a pause")

    def test_deletions_count_against_the_rate(self):
        """Each deletion puts events in mailboxes (and hides a message in history walks): it
        costs a send. Bob, who never sent anything, deletes 24 messages as fast as he can."""
        bob = self.person("bob")
        b = bob.login("phone")
        sent = []
        for n in range(4):
            someone = self.person("sender%d" % n)
            S = self.ws(someone.login("phone"))
            sent += [S.send_message(bob.id, "to hide %d.%d" % (n, i))["message_id"] for i in range(6)]
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(sent)) as pool:  # all at once
            answers = list(zip(sent, pool.map(lambda mid: self.delete_message(b, mid, for_="me"), sent)))
        elapsed = time.monotonic() - t0
        hidden = [mid for mid, r in answers if r.status == 204]
        limited = [(mid, r) for mid, r in answers if r.status != 204]
        for mid, r in limited:
            self.assertError(r, 429, "rate_limited")
            self.assertEqual(r.headers.get("Retry-After"), "1", r.describe())
        self.assertGreaterEqual(len(limited), 1, "24 deletions in %.2f s at 5 per second" % elapsed)
        self.assertLessEqual(len(hidden), 10 + math.floor(5 * elapsed) + 1, "%.2f s" % elapsed)
        # What was refused is still there; what was not is gone.
        seen = set()
        for mid in sent:
            r = self.get_message(b, mid)
            self.assertIn(r.status, (200, 404), r.describe())
            if r.status == 200:
                seen.add(mid)
        self.assertEqual(seen, {mid for mid, _ in limited})
        time.sleep(1.2)
        self.assertEqual(self.delete_message(b, limited[0][0], for_="me").status, 204)

    def test_mutes_count_against_the_rate(self):
        """A mute is a write every send waits behind: toggling it as fast as one can is
        refused past the rate, and a refused toggle changes nothing."""
        bob, carol = self.person("bob"), self.person("carol")
        b = bob.login("phone")
        C = self.ws(carol.login("phone"))
        conv = C.send_message(bob.id, "hello")["conversation_id"]
        path = "/v1/conversations/" + urllib.parse.quote(conv, safe="")
        flags = [n % 2 == 0 for n in range(24)]
        with concurrent.futures.ThreadPoolExecutor(len(flags)) as pool:  # all at once
            answers = list(pool.map(
                lambda muted: self.node.request("PATCH", path, {"muted": muted}, token=b["access_token"]), flags))
        limited = [r for r in answers if r.status != 200]
        for r in limited:
            self.assertError(r, 429, "rate_limited")
            self.assertEqual(r.headers.get("Retry-After"), "1", r.describe())
        self.assertGreaterEqual(len(limited), 1, "24 mutes at once at 5 per second")
        time.sleep(1.2)
        r = self.node.request("PATCH", path, {"muted": True}, token=b["access_token"])
        self.assertStatus(r, 200)
        self.assertTrue(r.json.get("muted"), r.describe())

    def test_too_many_streams(self):
        bob, carol = self.person("bob"), self.person("carol")
        s1, s2, s3 = bob.login("one"), bob.login("two"), bob.login("three")
        B1, B2 = self.ws(s1), self.ws(s2)
        B3 = self.ws(s3, wait_welcome=False)
        self.assertEqual(B3.wait_closed(5), 4029)
        for f in B3.frames():
            if "error" in f:
                self.assertWsError(f, "too_many_streams")
        B1.ping()
        B2.ping()
        self.ws(carol.login("phone")).ping()  # other users are not affected
        # A freed slot can be used again.
        B1.close()
        deadline = time.monotonic() + 3
        while True:
            try:
                self.ws(s3).ping()
                break
            except Exception:  # noqa: BLE001 - refused (4029) while the server still counts B1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def test_the_same_device_again_supersedes_its_oldest_stream(self):
        # A phone that changes networks connects again before its old connection is seen to
        # have died: at the limit, its own oldest stream ends (4011, "superseded"), not the
        # new one; another device at the limit is still refused.
        bob = self.person("bob")
        phone, tablet, laptop = bob.login("phone"), bob.login("tablet"), bob.login("laptop")
        P1, T = self.ws(phone), self.ws(tablet)
        P2 = self.ws(phone)
        self.assertEqual(P1.wait_closed(5), 4011)
        self.assertEqual(P1.close_reason, "superseded")
        P2.ping()
        T.ping()
        L = self.ws(laptop, wait_welcome=False)
        self.assertEqual(L.wait_closed(5), 4029)

    def test_delete_window(self):
        alice, bob = self.person("alice"), self.person("bob")
        a = alice.login("phone")
        A = self.ws(a)
        old = A.send_message(bob.id, "old")["message_id"]
        time.sleep(1.5)
        self.assertError(self.delete_message(a, old, "everyone"), 403, "delete_window_passed")
        new = A.send_message(bob.id, "new")["message_id"]
        self.assertStatus(self.delete_message(a, new, "everyone"), 204)
        self.assertStatus(self.delete_message(a, old, "me"), 204)
        self.assertEqual(self.history_ids(a, peer=bob.id), [])
        self.assertEqual(self.history_ids(bob.login("phone"), peer=alice.id), [old])


class LimitsJSONTest(LimitsTests, MessagingCase):
    ENCODING = "json"


class LimitsProtoTest(LimitsTests, MessagingCase):
    ENCODING = "proto"


# =========================================================================================
# Expiry and space, durability, slow consumers (one node per test, JSON)


# Markers for the space test: random characters from two scripts whose UTF-8 lead bytes
# differ (CJK: E4-E9, Hangul: EA-ED), so that neither marker shares 4 bytes with the other
# or with anything else the node stores, and a compressor keeps them as literals.
def marker(lo, hi, n=16):
    rnd = random.SystemRandom()
    return "".join(chr(rnd.randint(lo, hi)) for _ in range(n))


def marker_forms(s):
    """The byte strings a store might hold the text as: UTF-8, or JSON \\u escapes."""
    esc = "".join("\\u%04x" % ord(ch) for ch in s)
    return [s.encode("utf-8"), esc.encode(), esc.upper().replace("\\U", "\\u").encode()]


def scan_tree(root, patterns):
    """Which of `patterns` (bytes) occur in any regular file under root: {pattern: [paths]}.
    Reads only the data parts of sparse files."""
    found = {}
    maxlen = max(len(p) for p in patterns)
    for dirpath, _, files in os.walk(root):
        for fn in files:
            path = os.path.join(dirpath, fn)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            with open(path, "rb") as f:
                fd = f.fileno()
                size = st.st_size
                pos = 0
                while pos < size:
                    try:
                        start = os.lseek(fd, pos, os.SEEK_DATA)
                    except OSError:
                        break  # no more data
                    try:
                        end = os.lseek(fd, start, os.SEEK_HOLE)
                    except OSError:
                        end = size
                    f.seek(start)
                    cur, prev = start, b""
                    while cur < end:
                        chunk = f.read(min(1 << 20, end - cur))
                        if not chunk:
                            break
                        buf = prev + chunk
                        for p in patterns:
                            if p in buf:
                                found.setdefault(p, set()).add(os.path.relpath(path, root))
                        prev = buf[-(maxlen - 1):] if maxlen > 1 else b""
                        cur += len(chunk)
                    pos = max(end, pos + 1)
    return found


class MetricsTest(MessagingCase):

    def metric(self, text, line_prefix):
        total = 0.0
        for line in text.splitlines():
            if line.startswith(line_prefix):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def scrape(self, node):
        r = node.scrape()
        self.assertStatus(r, 200)
        self.assertTrue(r.headers.get("Content-Type").startswith("text/plain"), r.headers.get("Content-Type"))
        return r.raw.decode()

    def test_metrics_are_not_public_unless_asked(self):
        # The chat gateway does not show the node's figures; the metrics listener does,
        # and nothing else.
        node = self.start_node()
        self.assertError(node.request("GET", "/metrics"), 404, "not_found")
        self.assertIn("petchat_build_info{", self.scrape(node))
        conn = http.client.HTTPConnection("127.0.0.1", node.metrics_port, timeout=10)
        self.assertError(_do_request(conn, "GET", "/v1/regions"), 404, "not_found")
        conn = http.client.HTTPConnection("127.0.0.1", node.metrics_port, timeout=10)
        r = _do_request(conn, "POST", "/metrics", {})
        self.assertError(r, 405, "method_not_allowed")
        # The admin status says where it listens.
        st = node.admin("GET", "/v1/admin/status").json
        self.assertEqual(st["metrics_listen"], "127.0.0.1:%d" % node.metrics_port)
        node.stop()
        # On the gateway too when the operator says so; none at all with "".
        node = self.start_node(config={"metrics": {"listen": "", "on_gateway": True}})
        self.assertIsNone(node.metrics_port)
        self.assertNotIn("metrics on", node.ready_line)
        r = node.request("GET", "/metrics")
        self.assertStatus(r, 200)
        self.assertIn("petchat_build_info{", r.raw.decode())
        self.assertIsNone(node.admin("GET", "/v1/admin/status").json["metrics_listen"])
        # Alike wherever it is served: the same type, HEAD taken, other methods 405.
        scraped = [r, node.admin("GET", "/metrics")]
        for got in scraped:
            self.assertStatus(got, 200)
            self.assertEqual(got.headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertStatus(node.request("HEAD", "/metrics"), 200)
        self.assertStatus(node.admin("HEAD", "/metrics"), 200)
        for got in (node.request("DELETE", "/metrics"), node.admin("POST", "/metrics", {})):
            self.assertError(got, 405, "method_not_allowed")
            self.assertEqual(got.headers.get("Allow"), "GET, HEAD")

    def test_a_taken_metrics_port_is_named(self):
        first = self.start_node()
        node = self.start_node(start=False, config={"metrics": {"listen": "127.0.0.1:%d" % first.metrics_port}})
        with self.assertRaises(NodeStartError) as caught:
            node.start()
        self.assertIn('metrics.listen = "127.0.0.1:%d": Address already in use' % first.metrics_port,
                      str(caught.exception))
        self.assertNotIn("/usr/include", str(caught.exception))

    def test_metrics_count_what_happens(self):
        node = self.start_node()
        before = self.scrape(node)
        self.assertIn('petchat_build_info{', before)
        self.assertIn('region="%s"' % REGION, before)
        alice, bob = self.person("alice", node), self.person("bob", node)
        A, B = self.ws(alice.login("phone"), node=node), self.ws(bob.login("phone"), node=node)
        for i in range(3):
            A.send_message(bob.id, "counted %d" % i)
        self.assertError(node.login(alice.name, "wrong password"), 401, "invalid_credentials")
        after = self.scrape(node)
        self.assertEqual(self.metric(after, "petchat_messages_accepted_total"), 3)
        self.assertEqual(self.metric(after, "petchat_login_failures_total"), 1)
        self.assertEqual(self.metric(after, "petchat_ws_streams"), 2)
        self.assertEqual(self.metric(after, "petchat_ws_sessions"), 2)  # the old name, kept
        self.assertGreater(self.metric(after, 'petchat_store_commit_seconds_count{store="messages"}'), 0)
        self.assertGreater(self.metric(after, 'petchat_store_commit_seconds_count{store="users"}'), 0)
        self.assertGreater(self.metric(after, 'petchat_http_requests_total{api="user",status="2xx"}'),
                           self.metric(before, 'petchat_http_requests_total{api="user",status="2xx"}'))
        self.assertGreaterEqual(self.metric(after, 'petchat_http_requests_total{api="user",status="4xx"}'), 1)
        # A request refused before it is read (headers too large: 431) is counted too.
        s = node.raw_socket()
        s.settimeout(10)
        answer = b""
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
            while not answer.startswith(b"HTTP/1.1 431") or b"\r\n\r\n" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        s.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 431"), answer[:200])
        refused = self.scrape(node)
        self.assertEqual(self.metric(refused, 'petchat_http_requests_total{api="user",status="4xx"}'),
                         self.metric(after, 'petchat_http_requests_total{api="user",status="4xx"}') + 1)


class RawWebSocket:
    """A WebSocket client written out by hand, to send what a library would not: any
    opcode, fragments, unmasked frames, bad UTF-8, and to see the server's frames as they
    are (control frames included)."""

    def __init__(self, node, version="13", key="dGhlIHNhbXBsZSBub25jZQ==", protocol="petchat.v1.json", token=None,
                 early=()):
        """`protocol`: one Sec-WebSocket-Protocol line, or a list of lines. `early`: frames
        (opcode, payload) sent with the upgrade request, in the same write."""
        self.sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        lines = ["GET /v1/ws HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Version: " + version]
        lines += ["Sec-WebSocket-Protocol: " + p for p in ([protocol] if isinstance(protocol, str) else protocol)]
        if key is not None:
            lines.append("Sec-WebSocket-Key: " + key)
        if token is not None:
            lines.append("Authorization: Bearer " + token)
        frames = b"".join(self.frame(op, payload) for op, payload in early)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + frames)
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.headers = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.decode().partition(":")
            self.headers[k.strip().lower()] = v.strip()

    def send(self, opcode, payload=b"", fin=True, masked=True, rsv=0):
        self.sock.sendall(self.frame(opcode, payload, fin, masked, rsv))

    @staticmethod
    def frame(opcode, payload=b"", fin=True, masked=True, rsv=0):
        if isinstance(payload, str):
            payload = payload.encode()
        head = bytes([(0x80 if fin else 0) | rsv | opcode])
        n = len(payload)
        mask_bit = 0x80 if masked else 0
        if n < 126:
            head += bytes([mask_bit | n])
        elif n < 65536:
            head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
        if masked:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        return head + payload

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def recv(self):
        """The next frame: (opcode, payload bytes, fin); server frames are never masked."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "the server masked a frame"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            self._need(10)
            n, off = int.from_bytes(self.buf[2:10], "big"), 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return b0 & 0x0F, payload, bool(b0 & 0x80)

    def recv_close(self):
        """Skips data frames up to the close frame; returns its code (None: no code)."""
        return self.until_close()[1]

    def until_close(self):
        """The text frames (parsed as JSON) up to the close frame, and its code (None: no code)."""
        texts = []
        while True:
            op, payload, _ = self.recv()
            if op == 8:
                return texts, (int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None)
            if op == 1:
                texts.append(json.loads(payload))

    def at_eof(self, timeout=3):
        """True if the server closes the TCP connection within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return True
        except OSError:
            return False

    def close(self):
        self.sock.close()


class WebSocketProtocolTest(MessagingCase):
    """The live stream's WebSocket layer (RFC 6455) seen from the wire: the handshake,
    ping/pong, fragments, the closing handshake, and protocol violations closed with the
    right code."""

    NODE_CONFIG = {}

    def raw(self, **kw):
        c = RawWebSocket(self.node, **kw)
        self.addCleanup(c.close)
        return c

    def authed(self):
        c = self.raw()
        self.assertEqual(c.status, 101)
        token = self.person("raw").login()["access_token"]
        c.send(1, json.dumps({"ref": "1", "auth": {"access_token": token}}))
        op, payload, _ = c.recv()
        self.assertIn("welcome", json.loads(payload))
        return c

    def test_handshake(self):
        c = self.raw()
        self.assertEqual(c.status, 101)
        self.assertEqual(c.headers["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")  # RFC 6455's example
        self.assertEqual(c.headers["upgrade"].lower(), "websocket")
        self.assertEqual(c.headers["sec-websocket-protocol"], "petchat.v1.json")
        refused = self.raw(version="8")
        self.assertEqual(refused.status, 426)
        self.assertEqual(refused.headers.get("x-content-type-options"), "nosniff", "as every other answer")
        self.assertEqual(refused.headers.get("sec-websocket-version"), "13")
        self.assertEqual(self.error_of(refused)["code"], "bad_request", "an error object, as every other answer")
        for key in (None, "not a key"):
            refused = self.raw(key=key)
            self.assertEqual(refused.status, 400)
            self.assertEqual(self.error_of(refused)["code"], "bad_request")

    @staticmethod
    def error_of(c):
        """The error object of a refused upgrade's answer."""
        length = int(c.headers["content-length"])
        while len(c.buf) < length:
            chunk = c.sock.recv(4096)
            if not chunk:
                break
            c.buf += chunk
        c.sock.close()
        assert c.headers["content-type"] == "application/json", c.headers
        return json.loads(c.buf[:length])["error"]

    def test_frames_sent_with_the_upgrade_request_are_read_after_it(self):
        """A client that does not wait for the 101 (its auth in the same packet as the
        request) is read in order, not stalled until the 10 s authentication deadline."""
        token = self.person("eager").login()["access_token"]
        c = self.raw(early=[(1, json.dumps({"ref": "1", "auth": {"access_token": token}})),
                            (1, json.dumps({"ref": "2", "ping": {}}))])
        self.assertEqual(c.status, 101)
        c.sock.settimeout(5)  # well before the 10 s deadline a lost auth frame would run into
        first, second = json.loads(c.recv()[1]), json.loads(c.recv()[1])
        self.assertIn("welcome", first)
        self.assertEqual((second.get("ref"), "pong" in second), ("2", True), second)
        # Authenticated on the upgrade, with a ping right behind the request.
        c = self.raw(token=token, early=[(9, b"right away")])
        self.assertIn("welcome", json.loads(c.recv()[1]))
        self.assertEqual(c.recv()[:2], (10, b"right away"))

    def test_the_subprotocol_offer_may_take_several_header_lines(self):
        c = self.raw(protocol=["petchat.v1.json", "petchat.v1.proto"])
        self.assertEqual(c.status, 101)
        self.assertEqual(c.headers["sec-websocket-protocol"], "petchat.v1.proto")
        # Items separated by a comma and optional white space, tabs included (RFC 9110, 5.6.1).
        c = self.raw(protocol="petchat.v1.json,\tpetchat.v1.proto\t")
        self.assertEqual(c.status, 101)
        self.assertEqual(c.headers["sec-websocket-protocol"], "petchat.v1.proto")

    def test_pings_in_one_write_before_authenticating_are_answered_in_order_the_last_one_always(self):
        """Each pong answers a ping that was sent, in order, and the last ping is answered; a
        pong still queued is replaced by the next ping's (RFC 6455 5.5.3), so a client that
        pings faster than it reads holds one pong in the server, not a queue of them."""
        c = self.raw()
        self.assertEqual(c.status, 101)
        payloads = [b"p%03d" % i for i in range(300)]  # pongs short enough to live inside their frame
        c.sock.sendall(b"".join(c.frame(9, p) for p in payloads))
        c.sock.settimeout(5)
        got = []
        while not got or got[-1] != payloads[-1]:
            op, payload, _ = c.recv()
            self.assertEqual(op, 10, payload)
            self.assertIn(payload, payloads)
            got.append(payload)
        self.assertEqual(got, sorted(got), "pongs in the order of the pings")
        self.assertEqual(len(got), len(set(got)), "no ping answered twice")

    def test_ping_fragments_and_closing_handshake(self):
        c = self.authed()
        c.send(9, b"are you there")
        self.assertEqual(c.recv()[:2], (10, b"are you there"))  # pong with the same payload
        # A petchat ping split over three fragments, with a WebSocket ping between them.
        frame = json.dumps({"ref": "7", "ping": {}})
        c.send(1, frame[:5], fin=False)
        c.send(0, frame[5:9], fin=False)
        c.send(9, b"between")
        c.send(0, frame[9:], fin=True)
        self.assertEqual(c.recv()[:2], (10, b"between"))
        op, payload, fin = c.recv()
        self.assertEqual((op, fin), (1, True))
        self.assertIn("pong", json.loads(payload))
        # The client closes: the server answers with the same code and ends the connection.
        c.send(8, (4000).to_bytes(2, "big") + b"bye")
        self.assertEqual(c.recv_close(), 4000)
        self.assertTrue(c.at_eof())

    def test_protocol_violations_are_closed_with_their_code(self):
        cases = [
            ("unmasked frame", dict(opcode=1, payload="{}", masked=False), 1002),
            ("reserved bit", dict(opcode=1, payload="{}", rsv=0x40), 1002),
            ("reserved opcode", dict(opcode=3, payload="x"), 1002),
            ("fragmented ping", dict(opcode=9, payload="x", fin=False), 1002),
            ("continuation of nothing", dict(opcode=0, payload="x"), 1002),
            ("text that is not UTF-8", dict(opcode=1, payload=b"\xff\xfe"), 1007),
            ("close code 1005 sent", dict(opcode=8, payload=(1005).to_bytes(2, "big")), 1002),
        ]
        for what, frame, code in cases:
            with self.subTest(what):
                c = self.authed()
                c.send(**frame)
                self.assertEqual(c.recv_close(), code)
                self.assertTrue(c.at_eof())
        # And the node serves on.
        self.authed()

    def test_shutdown_closes_sessions_with_1001(self):
        node = self.start_node()
        token = self.person("leaving", node).login()["access_token"]
        c = RawWebSocket(node)
        self.addCleanup(c.close)
        c.send(1, json.dumps({"ref": "1", "auth": {"access_token": token}}))
        self.assertIn("welcome", json.loads(c.recv()[1]))
        node.stop()
        self.assertEqual(c.recv_close(), 1001)

    def test_sessions_ended_every_way_leave_nothing_open(self):
        # However a session ends, the node forgets the connection: at shutdown there is
        # nothing left to force closed.
        node = self.start_node()
        token = self.person("ender", node).login()["access_token"]
        kept = []

        def authed():
            c = RawWebSocket(node)
            kept.append(c)
            c.send(1, json.dumps({"ref": "1", "auth": {"access_token": token}}))
            self.assertIn("welcome", json.loads(c.recv()[1]))
            return c

        # The server closes (refused token) and the client never answers the close.
        c = RawWebSocket(node)
        kept.append(c)
        c.send(1, json.dumps({"ref": "1", "auth": {"access_token": "not-a-token"}}))
        self.assertEqual(c.recv_close(), 4001)
        # The client vanishes halfway through a frame.
        c = authed()
        c.sock.sendall(b"\x81\xfe\x01\x00\x00\x00\x00\x00" + b"{" * 10)
        c.close()
        # The client half-closes its side.
        c = authed()
        c.sock.shutdown(socket.SHUT_WR)
        # The client sends a protocol violation and keeps sending after the close.
        c = authed()
        c.send(3, b"x")
        self.assertEqual(c.recv_close(), 1002)
        c.send(1, json.dumps({"ref": "2", "ping": {}}))
        # An idle session whose client will not answer the shutdown's close (1001): it is
        # not waited for past the linger.
        authed()
        time.sleep(2.5)  # past the linger for the close nobody answered
        node.stop()
        forced = [line for line in node.stderr_lines if "forcing" in line]
        self.assertEqual(forced, [], "connections left open:\n" + "\n".join(forced))

    def test_server_initiated_close(self):
        # A token the server refuses: the session ends with 4001 and the TCP connection
        # closes once the client has answered the close.
        c = self.raw()
        c.send(1, json.dumps({"ref": "1", "auth": {"access_token": "not-a-token"}}))
        self.assertEqual(c.recv_close(), 4001)
        c.send(8, (4001).to_bytes(2, "big"))
        self.assertTrue(c.at_eof())


class LiveSessionAuthTest(MessagingCase):
    """An open live stream is held to its token: expiry, revocation and disabling end it,
    and a fresh token sent as an `auth` frame keeps it going."""

    def test_expired_token_ends_the_stream(self):
        node = self.start_node(config={"users": {"access_token_ttl_s": 2}})
        alice = self.person("alice", node)
        t0 = time.monotonic()
        A = self.ws(alice.login(), node=node)
        err = A.wait_for(is_error("token_expired"), 6)
        self.assertEqual(A.wait_closed(3), 4001)
        self.assertGreater(time.monotonic() - t0, 1.5, "closed before the token expired")
        self.assertIn("message", err["error"])

    def test_fresh_token_in_an_auth_frame_keeps_the_stream(self):
        node = self.start_node(config={"users": {"access_token_ttl_s": 2}})
        alice, bob = self.person("alice", node), self.person("bob", node)
        session = alice.login()
        A = self.ws(session, node=node)
        time.sleep(1.0)
        fresh = node.refresh(session["refresh_token"])
        self.assertStatus(fresh, 200)
        ref = A.next_ref()
        A.send_frame({"ref": ref, "auth": {"access_token": fresh.json["access_token"]}})
        w = A.wait_ref(ref)
        self.assertIn("welcome", w, w)
        self.assertEqual(w["welcome"]["user_id"], alice.id)
        time.sleep(1.6)  # past the first token's expiry
        A.ping()
        B = self.ws(bob.login(), node=node)
        acc = B.send_message(alice.id, "still there?")
        A.wait_event(ev_message(acc["message_id"]))
        # someone else's token does not take over the session
        other = bob.login("other")
        ref = A.next_ref()
        A.send_frame({"ref": ref, "auth": {"access_token": other["access_token"]}})
        self.assertEqual(A.wait_ref(ref)["error"]["code"], "invalid_token")
        A.ping()

    def test_revoked_session_ends_the_stream(self):
        node = self.start_node()
        alice = self.person("alice", node)
        session = alice.login()
        A = self.ws(session, node=node)
        rc, out, err = node.ctl("sessions", "revoke", session["device_id"])
        self.assertEqual(rc, 0, err)
        A.wait_for(is_error("session_revoked"), 8)  # checked every 5 s
        self.assertEqual(A.wait_closed(3), 4001)

    def test_a_stream_takes_nothing_after_its_session_ends(self):
        # The stream is told when the session ends (a logout from elsewhere, a revocation,
        # disabling), not at its next periodic check: a send right after is not taken.
        node = self.start_node()
        alice, bob = self.person("alice", node), self.person("bob", node)
        for how in ("revoke", "logout", "disable"):
            with self.subTest(how=how):
                session = alice.login("device-" + how)
                A = self.ws(session, node=node)
                if how == "revoke":
                    rc, out, err = node.ctl("sessions", "revoke", session["device_id"])
                    self.assertEqual(rc, 0, err)
                elif how == "logout":
                    self.assertStatus(self.api("DELETE", "/v1/sessions/current", session, node=node), 204)
                else:
                    rc, out, err = node.ctl("users", "disable", alice.name)
                    self.assertEqual(rc, 0, err)
                try:
                    f = A.try_send(bob.id, "sent after the session ended (%s)" % how)
                    self.assertNotIn("accepted", f, "a send taken after the session ended: %s" % f)
                except wsclient.WSClosed:
                    pass
                self.assertEqual(A.wait_closed(3), 4001)
                if how == "disable":
                    rc, out, err = node.ctl("users", "enable", alice.name)
                    self.assertEqual(rc, 0, err)
        page = self.api("GET", "/v1/conversations", bob.login(), node=node)
        self.assertStatus(page, 200)
        self.assertEqual(page.json["conversations"], [], "bob got none of those messages")

    def test_token_in_the_upgrade_request_is_held_too(self):
        # A token sent with the upgrade (header or query) is re-checked like one sent in an
        # auth frame: the session checks must not be lost to the unauthenticated deadline.
        node = self.start_node()
        alice = self.person("alice", node)
        for auth_in in ("header", "query"):
            with self.subTest(auth_in=auth_in):
                session = alice.login("device-" + auth_in)
                A = self.ws(session, node=node, auth_in=auth_in)
                rc, out, err = node.ctl("sessions", "revoke", session["device_id"])
                self.assertEqual(rc, 0, err)
                A.wait_for(is_error("session_revoked"), 8)
                self.assertEqual(A.wait_closed(3), 4001)


class ExpiryTest(MessagingCase):

    def test_retention_expires_messages_without_ttl(self):
        node = self.start_node(config={"messages": {"retention_s": 2}})
        alice, bob = self.person("alice", node), self.person("bob", node)
        a, b = alice.login("phone"), bob.login("phone")
        A, B = self.ws(a, node=node), self.ws(b, node=node)
        acc = A.send_message(bob.id, "short-lived by default")
        mid, sent = acc["message_id"], num(acc, "sent_at_ms")
        ev = B.wait_event(ev_message(mid))
        exp = num(ev["message"], "expires_at_ms")
        self.assertTrue(sent + 1900 <= exp <= sent + 3000, "expires_at_ms %d, sent_at_ms %d, retention 2 s"
                        % (exp, sent))
        time.sleep(max(0.0, (sent + 3500 - now_ms()) / 1000.0))
        for s in (a, b):
            self.assertError(self.get_message(s, mid, node=node), 404, "message_not_found")
        self.assertEqual(self.history_ids(a, peer=bob.id, node=node), [])
        ctrl = A.send_message(bob.id, "fresh")["message_id"]
        B2 = self.ws(bob.login("laptop"), node=node)
        B2.wait_event(ev_message(ctrl))
        time.sleep(QUIET_S)
        self.assertEqual(message_ids(B2.events()), [ctrl])

    def test_compaction_reclaims_expired_messages(self):
        # No background sweep during the test: the compaction is what removes it.
        node = self.start_node(config={"messages": {"expiry_sweep_interval_ms": 60000}})
        alice, bob = self.person("alice", node), self.person("bob", node)
        a = alice.login("phone")
        A = self.ws(a, node=node)
        gone, kept = marker(0x4E00, 0x9FA5), marker(0xAC00, 0xD7A3)
        acc_gone = A.send_message(bob.id, "gone " + gone, ttl_s=1)
        acc_kept = A.send_message(bob.id, "kept " + kept)
        time.sleep(max(0.0, (num(acc_gone, "sent_at_ms") + 2500 - now_ms()) / 1000.0))
        self.assertError(self.get_message(a, acc_gone["message_id"], node=node), 404, "message_not_found")
        r = node.admin("POST", "/v1/admin/messages/compact")
        self.assertStatus(r, 200)
        self.assertIsInstance(r.json.get("expired"), int, r.describe())
        self.assertGreaterEqual(r.json["expired"], 1, r.describe())
        self.assertStatus(self.get_message(a, acc_kept["message_id"], node=node), 200)
        A.close()
        node.stop()

        gone_forms, kept_forms = marker_forms(gone), marker_forms(kept)
        found = scan_tree(node.data_dir, gone_forms + kept_forms)
        self.assertTrue(any(p in found for p in kept_forms),
                        "the control message's text is nowhere under %s: the scan cannot see stored text"
                        % node.data_dir)
        leftovers = sorted(set().union(*[found[p] for p in gone_forms if p in found]))
        self.assertEqual(leftovers, [], "the expired message's text is still on disk after compaction")


class DurabilityTest(MessagingCase):

    def test_accepted_survives_kill9(self):
        node = self.start_node()
        alice, bob = self.person("alice", node), self.person("bob", node)
        A = self.ws(alice.login("phone"), node=node)
        refs = [A.send_async(bob.id, "durable %d" % i, client_id="dur-%d" % i) for i in range(5)]
        answers = [A.wait_ref(r) for r in refs]
        node.kill9()  # right after the last `accepted`
        for f in answers:
            self.assertIn("accepted", f, f)
        ids = [f["accepted"]["message_id"] for f in answers]
        node.start()
        B = self.ws(bob.login("phone"), node=node)
        B.wait_seq(5)
        time.sleep(QUIET_S)
        self.assertEqual(message_ids(B.events()), ids)
        self.assertEqual([e["message"]["body"]["text"] for e in B.events()], ["durable %d" % i for i in range(5)])
        self.assertEqual(B.seqs(), [1, 2, 3, 4, 5])
        # Alice's own mailbox and the retry table survived too.
        A2 = self.ws(alice.login("laptop"), node=node)
        acc = A2.send_message(bob.id, "durable 4", client_id="dur-4")
        self.assertTrue(acc.get("duplicate", False), acc)
        self.assertEqual(acc["message_id"], ids[4])
        A2.wait_seq(5)
        self.assertEqual(message_ids(A2.events()), ids)


class SlowConsumerTest(MessagingCase):

    def test_long_backlog_on_reconnect_is_streamed_not_cut_off(self):
        # A device that comes back to far more pending events than its send queue holds
        # is a fast reader with a backlog, not a slow consumer: it must get everything.
        node = self.start_node(config={"messages": {"send_queue_frames": 16, "max_per_second": 5000}})
        alice, bob = self.person("alice", node), self.person("bob", node)
        A = self.ws(alice.login("phone"), node=node)
        for i in range(300):
            A.send_message(bob.id, "backlog %03d" % i)
        B = self.ws(bob.login("phone"), node=node)
        events = B.wait_seq(300, timeout=30)
        self.assertEqual(B.seqs(), list(range(1, 301)))
        self.assertFalse(B.closed)
        self.assertEqual(events[-1]["message"]["body"]["text"], "backlog 299")

    def test_a_backlog_of_large_messages_is_streamed_whole_in_order(self):
        # Frames of some 20 KiB: the queue's 1 MiB fills long before its frame watermark
        # (256 here), so the backlog is read from the store in pieces cut mid-batch.
        node = self.start_node(config={"messages": {"send_queue_frames": 512, "max_per_second": 5000}})
        alice, bob = self.person("alice", node), self.person("bob", node)
        A = self.ws(alice.login("phone"), node=node)
        for i in range(200):
            A.send_message(bob.id, ("%03d" % i) * 1300, content={"blob": "z" * 12000})
        B = self.ws(bob.login("phone"), node=node)
        events = B.wait_seq(200, timeout=60)
        self.assertEqual(B.seqs(), list(range(1, 201)), "every event once, in order")
        self.assertFalse(B.closed)
        texts = [e["message"]["body"]["text"][:3] for e in events if "message" in e]
        self.assertEqual(texts, ["%03d" % i for i in range(200)])

    def test_slow_consumer_is_disconnected(self):
        node = self.start_node(config={"messages": {"send_queue_frames": 16, "max_per_second": 5000}})
        alice, bob, carol = self.person("alice", node), self.person("bob", node), self.person("carol", node)
        A, C = self.ws(alice.login("phone"), node=node), self.ws(carol.login("phone"), node=node)
        accepted_ids = [A.send_message(bob.id, "hello")["message_id"]]
        B0 = self.ws(bob.login("setup"), node=node)
        accepted_ids.append(B0.send_message(alice.id, "hi")["message_id"])  # both have written: presence
        B0.close()
        A.wait_for(is_presence(bob.id, "OFFLINE"), what="presence OFFLINE of bob's setup connection")
        # Bob connects and never reads, with a tiny receive buffer.
        slow = self.ws(bob.login("phone"), node=node, wait_welcome=False, reader=False,
                       sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        A.wait_for(is_presence(bob.id, "ONLINE"), what="presence ONLINE of bob")
        seen = len(A.frames())  # the setup connection's OFFLINE is older than this

        latencies, ping_errors = [], []
        stop = threading.Event()

        def pinger():
            while not stop.is_set():
                t = time.monotonic()
                try:
                    C.ping(timeout=5)
                except Exception as e:  # noqa: BLE001
                    ping_errors.append(repr(e))
                    return
                latencies.append(time.monotonic() - t)
                stop.wait(0.05)

        th = threading.Thread(target=pinger, daemon=True)
        th.start()
        text = "z" * 1000
        sent, offline, t0 = 0, False, time.monotonic()
        try:
            # Small batches: alice's own connection (2 frames per send) must keep up.
            while sent < 3000 and time.monotonic() - t0 < 30:
                refs = [A.send_async(bob.id, "%05d %s" % (sent + i, text)) for i in range(20)]
                for r in refs:
                    f = A.wait_ref(r, timeout=30)
                    self.assertIn("accepted", f, "send %d of a flood to a slow consumer: %s" % (sent, f))
                    accepted_ids.append(f["accepted"]["message_id"])
                sent += len(refs)
                offline = any(is_presence(bob.id, "OFFLINE")(f) for f in A.frames()[seen:])
                if offline and sent >= 500:
                    break
        finally:
            stop.set()
            th.join(10)
        if not offline:
            A.wait_for(is_presence(bob.id, "OFFLINE"), 15, what="presence OFFLINE of the slow bob")
        self.assertEqual(ping_errors, [], "a third user's connection stopped answering")
        self.assertTrue(latencies)
        self.assertLess(max(latencies), 2.0, "pings of a third user took up to %.2f s" % max(latencies))
        self.assertFalse(C.closed)
        C.ping()

        # Bob's connection was dropped by the server: no close frame (it could not get
        # through the full socket), no error frame.
        slow.start_reading()
        self.assertIsNone(slow.wait_closed(15), slow.close_reason)
        self.assertEqual([f for f in slow.frames() if "error" in f], [])
        self.assertLess(len(message_ids(slow.events())), sent + 1, "the slow consumer got everything")
        # The end of the stream is counted with its reason (operators alert on it).
        metrics = node.scrape().raw.decode()
        self.assertRegex(metrics, r'petchat_ws_disconnects_total\{reason="slow_consumer"\} [1-9]', metrics[-2000:])
        self.assertRegex(metrics, r'petchat_ws_disconnects_total\{reason="client_closed"\} [1-9]')  # B0
        # Nothing is lost: it is all in bob's history (read over REST: replaying this
        # backlog through a 16-frame send queue is not the point here).
        b = bob.login("laptop")
        p = self.history(b, peer=alice.id, node=node, limit=200)
        ids = [m["id"] for m in p["messages"]]
        for _ in range(100):
            if not p["has_more_before"]:
                break
            p = self.history(b, peer=alice.id, node=node, limit=200, before=ids[0])
            ids = [m["id"] for m in p["messages"]] + ids
        self.assertEqual(len(ids), sent + 2)
        self.assertEqual(ids, accepted_ids)


if __name__ == "__main__":
    unittest.main()
