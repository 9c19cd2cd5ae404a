"""Federation over NATS JetStream (docs/FEDERATION.md): real nats-server processes and real
petchat-node regions, spoken to as clients do. Cross-region chat with every receipt,
offline recipients, retries, multi-device, partitions and crashes (no loss, no duplicate,
per-conversation order), forged and replayed envelopes, presence and typing, both
topologies (one shared nats-server; per-region servers as leaf nodes of a hub)."""

import base64
import contextlib
import itertools
import re
import shutil
import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import wsclient  # noqa: E402
from harness import CTL_BIN, run_ctl  # noqa: E402
from wsclient import ev_message, ev_receipt, is_presence, is_typing  # noqa: E402

_names = itertools.count(1)
DELIVERY_TIMEOUT_S = 20.0


def uname(prefix):
    return "%s%d" % (prefix, next(_names))


def receipt_status(status):
    return lambda e: "receipt" in e and e["receipt"].get("status") == status


def messages_of(client):
    return [e["message"] for e in client.events() if "message" in e]


# ---------------------------------------------------------------------------------------
# Raw NATS and envelopes, for injecting traffic as a hostile or broken region would.


class RawNats:
    """A minimal NATS protocol client (publish, subscribe) over a plain socket."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        info = self.file.readline()
        if not info.startswith(b"INFO"):
            raise AssertionError("not a NATS server: %r" % info)
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n')
        self.flush()

    def flush(self):
        self.sock.sendall(b"PING\r\n")
        while True:
            line = self.file.readline()
            if line.startswith(b"PONG"):
                return
            if not line:
                raise AssertionError("NATS connection closed")

    def pub(self, subject, payload, reply=None):
        to = subject if reply is None else "%s %s" % (subject, reply)
        self.sock.sendall(b"PUB %s %d\r\n" % (to.encode(), len(payload)) + payload + b"\r\n")
        self.flush()

    def sub(self, subject, sid=1):
        self.sock.sendall(b"SUB %s %d\r\n" % (subject.encode(), sid))
        self.flush()

    def next_msg(self, timeout=10):
        """The next message: (subject, payload)."""
        subject, _, data = self.next_request(timeout)
        return subject, data

    def next_request(self, timeout=10):
        """The next message with its reply subject: (subject, reply or None, payload)."""
        self.sock.settimeout(timeout)
        while True:
            line = self.file.readline()
            if not line:
                raise AssertionError("NATS connection closed")
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
                continue
            parts = line.split()
            if line.startswith(b"MSG"):  # MSG subject sid [reply] bytes
                size = int(parts[-1])
                data = self.file.read(size + 2)[:size]
                return parts[1].decode(), (parts[3].decode() if len(parts) == 5 else None), data
            if line.startswith(b"HMSG"):  # HMSG subject sid [reply] header-bytes total-bytes
                headers, size = int(parts[-2]), int(parts[-1])
                data = self.file.read(size + 2)[:size]
                return parts[1].decode(), (parts[3].decode() if len(parts) == 6 else None), data[headers:]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def fed_pb2():
    """federation_pb2, sharing wsclient's client_pb2 module."""
    import importlib
    import tempfile
    out = tempfile.mkdtemp(prefix="petchat-fedpb2-")
    proto_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "proto")
    subprocess.run(["protoc", "--proto_path=" + proto_dir, "--python_out=" + out, "federation.proto"], check=True)
    sys.modules.setdefault("client_pb2", wsclient.pb2())
    sys.path.insert(0, out)
    return importlib.import_module("federation_pb2")


def region_signer(node):
    """Signs as `node`'s region, with its real key (libsodium layout: seed || public key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    with open(os.path.join(node.data_dir, "region.key"), "rb") as f:
        secret = f.read()
    key = Ed25519PrivateKey.from_private_bytes(secret[:32])
    return lambda data: key.sign(b"petchat-federation-v1\0" + data)


def envelope(pb, origin, body, sign=None, signature=None, lane_epoch=1, lane_base=0):
    """One envelope of a bundle of `body` (a body, or a list of them)."""
    bundle = pb.bundle()
    for b in (body if isinstance(body, list) else [body]):
        bundle.bodies.append(b.SerializeToString())
    bundle.lane_epoch = lane_epoch
    bundle.lane_base = lane_base
    env = pb.envelope()
    env.origin = origin
    env.body = bundle.SerializeToString()
    env.signature = signature if signature is not None else sign(env.body)
    return env.SerializeToString()


def wait_status(node, pred, timeout=10, poll=0.2):
    """Polls `petchatctl federation status` until pred(status) holds or the time is up;
    returns the last status either way (the caller asserts on it)."""
    deadline = time.time() + timeout
    while True:
        st = fed_status(node)
        if pred(st) or time.time() >= deadline:
            return st
        time.sleep(poll)


def fed_status(node):
    out = subprocess.run([CTL_BIN, "--socket", node.admin_socket, "--json", "federation", "status"],
                         capture_output=True, text=True, timeout=15)
    if out.returncode != 0:
        raise AssertionError("petchatctl federation status failed: %s %s" % (out.stdout, out.stderr))
    return json.loads(out.stdout)


# ---------------------------------------------------------------------------------------


class FederationCase(unittest.TestCase):
    topology = staticmethod(fedharness.shared_topology)
    names = ("europe", "america")

    federation = None  # [federation] settings over fedharness's
    node_config = {"messages": {"max_per_second": 5000}}  # every region's config (tables replace fedharness's)

    @classmethod
    def setUpClass(cls):
        cls.servers, cls.regions = cls.topology(list(cls.names), config=cls.node_config, federation=cls.federation)
        cls.keys = cls.regions.pop("_keys")

    @classmethod
    def tearDownClass(cls):
        for r in cls.regions.values():
            r.node.close()
        for s in cls.servers:
            s.close()

    def setUp(self):
        self.clients = []
        # A test that failed half-way may have left a server or a node down.
        for srv in self.servers:
            if srv.proc is None or srv.proc.poll() is not None:
                srv.start()
        for r in self.regions.values():
            if not r.node.running():
                r.node.start()

    def tearDown(self):
        for c in self.clients:
            c.close()
        result = getattr(self._outcome, "result", None)
        problems = (result.errors + result.failures) if result else []
        if any(test is self for test, _ in problems):
            for r in self.regions.values():
                sys.stderr.write("\n--- %s stderr ---\n%s\n" % (r.name, "\n".join(r.node.stderr_lines[-40:])))

    def node(self, region):
        return self.regions[region].node

    def user(self, region, prefix="u"):
        name = uname(prefix)
        self.node(region).new_user(name)
        return name + "@" + region

    def session(self, user_id, device="test device"):
        name, region = user_id.split("@")
        return self.node(region).new_session(name, device=device)

    def connect(self, user_id, session=None, **kw):
        region = user_id.split("@")[1]
        c = wsclient.connect(self.node(region), session or self.session(user_id), **kw)
        self.clients.append(c)
        return c

    def contacts(self, alice, bob):
        """Connects both, and has each write to the other, so that they share presence
        (docs/PROTOCOL.md, Presence). Returns their live streams."""
        a = self.connect(alice)
        acc = a.send_message(bob, "contacts now")
        b = self.connect(bob)
        b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        reply = b.send_message(alice, "contacts indeed")
        a.wait_event(ev_message(reply["message_id"]), DELIVERY_TIMEOUT_S)
        return a, b

    def assert_exactly(self, client, texts, timeout=DELIVERY_TIMEOUT_S, quiet_s=0.5):
        """`client` received messages with exactly these texts, in this order, once each."""
        client.wait_until(lambda: len(messages_of(client)) >= len(texts), timeout,
                          what="%d messages" % len(texts))
        time.sleep(quiet_s)
        got = [m["body"]["text"] for m in messages_of(client)]
        self.assertEqual(got, list(texts))

    def send_many(self, client, to, prefix, n):
        """Sends n messages "prefix 0".. "prefix n-1"; returns their texts."""
        for i in range(n):
            client.send_message(to, "%s %d" % (prefix, i))
        return ["%s %d" % (prefix, i) for i in range(n)]

    def assert_outbox_drains(self, region):
        """`region` forgets its outbox entries: the other region confirmed applying them."""
        st = wait_status(self.node(region), lambda st: st["regions"][0]["outbox"] == 0)
        self.assertEqual(st["regions"][0]["outbox"], 0)


class TwoRegionChat(FederationCase):
    """The eight steps across regions, on one shared nats-server."""

    def test_full_sequence_with_every_receipt(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.connect(alice), self.connect(bob)
        acc = a.send_message(bob, "hello across the ocean")
        self.assertRegex(acc["message_id"], r"^[A-Za-z0-9_-]{22}$")
        ev = b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        msg = ev["message"]
        self.assertEqual((msg["from"], msg["to"], msg["body"]["text"]), (alice, bob, "hello across the ocean"))
        self.assertEqual(msg["client_id"], acc["client_id"])
        self.assertEqual(msg["conversation_id"], acc["conversation_id"])
        self.assertEqual(msg["sent_at_ms"], acc["sent_at_ms"])
        # Nothing pretends delivery before the recipient's device acknowledged.
        time.sleep(0.3)
        self.assertFalse(any("receipt" in e for e in a.events()), "a receipt came before bob acknowledged")
        b.ack(ev["seq"])
        r = a.wait_event(receipt_status("DELIVERED"), DELIVERY_TIMEOUT_S)
        self.assertEqual((r["receipt"]["message_id"], r["receipt"]["by"]), (acc["message_id"], bob))
        b.read(msg["conversation_id"], msg["id"])
        r = a.wait_event(receipt_status("READ"), DELIVERY_TIMEOUT_S)
        self.assertEqual((r["receipt"]["message_id"], r["receipt"]["by"]), (acc["message_id"], bob))
        # Replies go the other way with the same ids.
        acc2 = b.send_message(alice, "hello back")
        ev2 = a.wait_event(ev_message(acc2["message_id"]), DELIVERY_TIMEOUT_S)
        self.assertEqual(ev2["message"]["conversation_id"], acc["conversation_id"])
        a.ack(ev2["seq"])
        b.wait_event(receipt_status("DELIVERED"), DELIVERY_TIMEOUT_S)
        # Each side's history holds the whole conversation, oldest first, same ids.
        for uid, node in ((alice, self.node("europe")), (bob, self.node("america"))):
            s = self.session(uid, device="history")
            h = node.request("GET", "/v1/conversations/%s/messages" % acc["conversation_id"], token=s["access_token"])
            self.assertEqual(h.status, 200, h.describe())
            self.assertEqual([m["id"] for m in h.json["messages"]], [acc["message_id"], acc2["message_id"]])
        # Each side's conversation list: the peer, the last message, and what is unread
        # there (bob read the first message and wrote the second; alice read nothing).
        acc3 = a.send_message(bob, "one more")
        b.wait_event(ev_message(acc3["message_id"]), DELIVERY_TIMEOUT_S)
        for uid, node, peer, unread in ((alice, self.node("europe"), bob, 1), (bob, self.node("america"), alice, 1)):
            s = self.session(uid, device="list")
            listed = node.request("GET", "/v1/conversations", token=s["access_token"])
            self.assertEqual(listed.status, 200, listed.describe())
            [conv] = [c for c in listed.json["conversations"] if c["id"] == acc["conversation_id"]]
            self.assertEqual((conv["kind"], conv["peer"], conv["last_message"]["id"], conv["unread_count"]),
                             ("direct", peer, acc3["message_id"], unread), conv)

    def history_of(self, user_id, conversation_id):
        name, region = user_id.split("@")
        s = self.session(user_id, device="history")
        h = self.node(region).request("GET", "/v1/conversations/%s/messages" % conversation_id, token=s["access_token"])
        self.assertEqual(h.status, 200, h.describe())
        return h.json["messages"]

    def test_offline_recipient_gets_it_on_connect_and_sender_then_sees_delivered(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        accs = [a.send_message(bob, "while you were away %d" % i) for i in range(5)]
        time.sleep(0.5)
        self.assertFalse(any("receipt" in e for e in a.events()), "delivered before bob ever connected")
        # The sender's history says "sent, not delivered".
        hist = self.history_of(alice, accs[0]["conversation_id"])
        self.assertEqual(len(hist), 5)
        self.assertTrue(all(int(m.get("delivered_at_ms", 0)) == 0 for m in hist), hist)
        b = self.connect(bob)
        self.assert_exactly(b, ["while you were away %d" % i for i in range(5)])
        b.ack(b.max_seq())
        a.wait_until(lambda: len([e for e in a.events() if "receipt" in e]) == 5, DELIVERY_TIMEOUT_S,
                     what="5 DELIVERED receipts")
        got = sorted(e["receipt"]["message_id"] for e in a.events() if "receipt" in e)
        self.assertEqual(got, sorted(x["message_id"] for x in accs))
        hist = self.history_of(alice, accs[0]["conversation_id"])
        self.assertTrue(all(int(m.get("delivered_at_ms", 0)) > 0 for m in hist), hist)

    def test_resume_after_reconnect_and_retry_is_not_a_second_message(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        bob_session = self.session(bob)
        b = self.connect(bob, bob_session)
        first = a.send_message(bob, "one", client_id="cid-1")
        b.wait_event(ev_message(first["message_id"]), DELIVERY_TIMEOUT_S)
        b.ack(b.max_seq())
        b.sync()
        b.close()
        again = a.send_message(bob, "one", client_id="cid-1")  # a retry: same client id
        self.assertTrue(again["duplicate"])
        self.assertEqual(again["message_id"], first["message_id"])
        a.send_message(bob, "two")
        b2 = self.connect(bob, bob_session)  # resumes after its acknowledged seq
        self.assert_exactly(b2, ["two"])

    def test_multi_device_recipient_in_another_region(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        b1 = self.connect(bob, self.session(bob, "phone"))
        b2 = self.connect(bob, self.session(bob, "laptop"))
        acc = a.send_message(bob, "to all of bob's devices")
        e1 = b1.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        b2.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        b1.ack(e1["seq"])
        b2.ack(e1["seq"])
        a.wait_event(receipt_status("DELIVERED"), DELIVERY_TIMEOUT_S)
        b1.read(acc["conversation_id"], acc["message_id"])
        b2.wait_event(lambda e: "read_mark" in e, DELIVERY_TIMEOUT_S)  # the other device syncs
        a.wait_event(receipt_status("READ"), DELIVERY_TIMEOUT_S)
        time.sleep(0.5)
        delivered = [e for e in a.events() if receipt_status("DELIVERED")(e)]
        self.assertEqual(len(delivered), 1, "one DELIVERED per message, whichever device acks first")

    def test_unknown_user_of_another_region_is_undeliverable(self):
        alice = self.user("europe", "alice")
        a = self.connect(alice)
        acc = a.send_message("nobody-here@america", "hello?")
        r = a.wait_event(receipt_status("UNDELIVERABLE"), DELIVERY_TIMEOUT_S)
        self.assertEqual(r["receipt"]["message_id"], acc["message_id"])
        self.assertEqual(r["receipt"]["by"], "nobody-here@america")

    def test_unknown_region_is_refused_at_once(self):
        alice = self.user("europe", "alice")
        a = self.connect(alice)
        f = a.try_send("bob@atlantis", "hi")
        self.assertEqual(f.get("error", {}).get("code"), "user_not_found", f)

    def test_deleted_for_everyone_crosses_regions(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.connect(alice), self.connect(bob)
        acc = a.send_message(bob, "oops")
        b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        s = self.session(alice, "rest")
        r = self.node("europe").request("DELETE", "/v1/messages/%s?for=everyone" % acc["message_id"],
                                        token=s["access_token"])
        self.assertIn(r.status, (200, 204), r.describe())
        b.wait_event(lambda e: "deleted" in e and e["deleted"]["message_id"] == acc["message_id"],
                     DELIVERY_TIMEOUT_S)
        sb = self.session(bob, "rest")
        g = self.node("america").request("GET", "/v1/messages/%s" % acc["message_id"], token=sb["access_token"])
        self.assertEqual(g.status, 404, g.describe())

    def test_presence_and_typing_cross_regions(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        acc = a.send_message(bob, "let's be contacts")
        b = self.connect(bob)
        b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        # Presence is shared once both have written (docs/PROTOCOL.md, Presence).
        reply = b.send_message(alice, "we are")
        a.wait_event(ev_message(reply["message_id"]), DELIVERY_TIMEOUT_S)
        # bob's region tells europe that bob is online (on change, and in the 1 s refresh)
        a.wait_for(is_presence(bob, "ONLINE"), DELIVERY_TIMEOUT_S)
        sa = self.session(alice, "rest")
        p = self.node("europe").request("GET", "/v1/presence/%s" % bob, token=sa["access_token"])
        self.assertEqual((p.status, p.json["state"]), (200, "ONLINE"), p.describe())
        # Someone who shares no conversation with bob does not see it.
        carol = self.user("europe", "carol")
        hidden = self.node("europe").request("GET", "/v1/presence/%s" % bob,
                                             token=self.session(carol)["access_token"])
        self.assertEqual((hidden.status, hidden.json["error"]["code"]), (403, "presence_hidden"), hidden.describe())
        b.typing(alice, True)
        t = a.wait_for(is_typing(bob), DELIVERY_TIMEOUT_S)
        self.assertEqual(t["typing"]["conversation_id"], acc["conversation_id"])
        b.close()
        a.wait_for(is_presence(bob, "OFFLINE"), DELIVERY_TIMEOUT_S)
        p = self.node("europe").request("GET", "/v1/presence/%s" % bob, token=sa["access_token"])
        self.assertEqual(p.json["state"], "OFFLINE", p.describe())
        self.assertIsNotNone(p.json["last_seen_at"])

    def test_a_presence_list_read_before_a_change_does_not_undo_it(self):
        """A region's full list of its online users is queued behind changes told meanwhile:
        one read before alice went offline, and sent after, must not bring her back online."""
        pb = fed_pb2()
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        acc = a.send_message(bob, "let's be contacts")
        b = self.connect(bob)
        b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        reply = b.send_message(alice, "we are")
        a.wait_event(ev_message(reply["message_id"]), DELIVERY_TIMEOUT_S)
        b.wait_for(is_presence(alice, "ONLINE"), DELIVERY_TIMEOUT_S)
        sb = self.session(bob, "rest")
        state = lambda: self.node("america").request("GET", "/v1/presence/%s" % alice,
                                                     token=sb["access_token"]).json["state"]
        # europe is held still (its own reports would blur the order); its key speaks for it.
        europe = self.node("europe")
        sign = region_signer(europe)
        os.kill(europe.proc.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, europe.proc.pid, signal.SIGCONT)
        pub = RawNats(self.servers[0].port)
        self.addCleanup(pub.close)
        now = int(time.time() * 1000)

        def report(online, created_at, read_at=0, full=False):
            bd = pb.body()
            bd.origin, bd.destination, bd.created_at_ms = "europe", "america", created_at
            if online is not None:
                e = bd.presence.entries.add()
                e.user_id, e.online, e.last_seen_ms = alice, online, 0 if online else created_at
            bd.presence.full, bd.presence.read_at_ms, bd.presence.interval_s = full, read_at, 10
            pub.pub("petchat.v1.live.america.europe", envelope(pb, "europe", bd, sign=sign))

        report(False, now)  # alice leaves: told at once
        b.wait_for(is_presence(alice, "OFFLINE"), DELIVERY_TIMEOUT_S)
        # (full lists are taken twice a second at most, europe's own last one included: hence
        # the pauses)
        time.sleep(0.6)
        report(True, now + 200, read_at=now - 1000, full=True)  # the list read before, sent after
        time.sleep(0.6)
        report(None, now + 300, read_at=now - 900, full=True)  # (and one that names no one)
        time.sleep(0.6)
        newer = now + 500
        report(True, newer, read_at=newer, full=True)  # a list read after: it counts
        b.wait_for(is_presence(alice, "ONLINE"), DELIVERY_TIMEOUT_S)
        time.sleep(0.5)  # (anything the older lists caused has arrived by now)
        presences = [f["presence"]["state"] for f in b.frames() if is_presence(alice)(f)]
        self.assertEqual(presences, ["ONLINE", "OFFLINE", "ONLINE"],
                         "a list read before the change undid it: %s" % presences)
        self.assertEqual(state(), "ONLINE")

    def test_region_directory(self):
        r = self.node("america").request("GET", "/v1/regions")
        self.assertEqual(r.status, 200, r.describe())
        regions = {x["name"]: x for x in r.json["regions"]}
        self.assertEqual(set(regions), {"europe", "america"})
        self.assertTrue(regions["america"]["self"])
        self.assertFalse(regions["europe"]["self"])
        self.assertEqual(regions["europe"]["url"], "http://europe.example.test")
        self.assertEqual(regions["europe"]["public_keys"], [self.keys["europe"]])
        ready = self.node("america").request("GET", "/readyz")
        self.assertEqual(ready.json["federation"], "connected", ready.describe())

    def test_applied_latency_histogram_counts_each_message(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.connect(alice), self.connect(bob)

        def applied_from_america():
            m = re.search(r'(?m)^petchat_federation_applied_seconds_count\{region="america"\} (\d+)',
                          self.node("europe").scrape().raw.decode())
            return int(m.group(1)) if m else 0

        before = applied_from_america()
        texts = self.send_many(b, alice, "timed", 5)
        a.wait_until(lambda: len([m for m in messages_of(a) if m["from"] == bob]) >= len(texts), DELIVERY_TIMEOUT_S)
        deadline = time.monotonic() + 10
        while applied_from_america() < before + 5:  # the histogram is observed right after the write
            self.assertLess(time.monotonic(), deadline, "applied_seconds did not count the 5 messages")
            time.sleep(0.1)
        raw = self.node("europe").scrape().raw.decode()
        self.assertRegex(raw, r'(?m)^petchat_federation_applied_seconds_bucket\{region="america",le="3600"\} \d')

    def test_status_shows_link_and_regions(self):
        st = fed_status(self.node("europe"))
        self.assertTrue(st["enabled"])
        self.assertTrue(st["connected"])
        self.assertEqual([r["region"] for r in st["regions"]], ["america"])
        out = subprocess.run([CTL_BIN, "--socket", self.node("europe").admin_socket, "federation", "status"],
                             capture_output=True, text=True, timeout=15)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("america", out.stdout)
        self.assertIn("connected to nats://", out.stdout)
        metrics = self.node("europe").scrape().raw.decode()
        self.assertRegex(metrics, r"(?m)^petchat_federation_connected(\{[^}]*\})? 1")
        for name in ("published", "applied"):
            self.assertRegex(metrics, r"(?m)^petchat_federation_envelopes_%s_total \d" % name)
        self.assertRegex(metrics, r'(?m)^petchat_federation_outbox_entries\{region="america"\} \d')
        self.assertRegex(metrics, r'(?m)^petchat_federation_oldest_undelivered_seconds\{region="america"\} \d')


class ForgedEnvelopes(FederationCase):
    """Envelopes injected straight onto america's federation subject are refused, counted,
    never stored, and the link keeps working; a lane epoch dated ahead of the clock is named
    in the log."""

    def test_forged_replayed_malformed_and_wrongly_signed(self):
        pb = fed_pb2()
        client_pb = wsclient.pb2()
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        b = self.connect(bob)
        a = self.connect(alice)
        port = self.servers[0].port
        spy = RawNats(port)
        spy.sub("petchat.v1.fed.america.europe")
        acc = a.send_message(bob, "genuine")
        _, captured = spy.next_msg()  # a copy of the genuine envelope
        b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        spy.close()

        europe_sign = region_signer(self.node("europe"))

        def body(text, origin="europe", destination="america", sender=None, lane_seq=1000000):
            bd = pb.body()
            bd.origin = origin
            bd.destination = destination
            bd.lane_seq = lane_seq
            bd.created_at_ms = int(time.time() * 1000)
            m = bd.message
            m.id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            m.conversation_id = "forged"
            m.to = bob
            m.sent_at_ms = bd.created_at_ms
            m.expires_at_ms = bd.created_at_ms + 3600000
            setattr(m, "from", sender or alice)
            m.body.text = text
            return bd

        sent = {}
        pub = RawNats(port)
        subject = "petchat.v1.fed.america.europe"
        pub.pub(subject, b"\x00garbage, not an envelope")
        sent["malformed"] = 1
        # Signed by europe, but more bodies than a bundle may hold (256): refused whole.
        big = pb.bundle()
        for i in range(257):
            big.bodies.append(body("one of too many", lane_seq=2000000 + i).SerializeToString())
        big.lane_epoch = 1
        env = pb.envelope()
        env.origin, env.body = "europe", big.SerializeToString()
        env.signature = europe_sign(env.body)
        pub.pub(subject, env.SerializeToString())
        sent["malformed"] += 1
        pub.pub(subject, envelope(pb, "europe", body("bad signature"), signature=os.urandom(64)))
        america_sign = region_signer(self.node("america"))  # a real key, but not europe's
        pub.pub(subject, envelope(pb, "europe", body("signed by the wrong region"), sign=america_sign))
        sent["bad_signature"] = 2
        pub.pub("petchat.v1.fed.america.mars", envelope(pb, "mars", body("unknown region", origin="mars"),
                                                         sign=europe_sign))
        sent["unknown_region"] = 1
        # Signed by europe, but speaking for a user of america (on the live subject: typing).
        typing = pb.body()
        typing.origin, typing.destination = "europe", "america"
        typing.created_at_ms = int(time.time() * 1000)
        setattr(typing.typing, "from", "eve@america")
        typing.typing.conversation_id = "x"
        typing.typing_to = bob
        pub.pub("petchat.v1.live.america.europe", envelope(pb, "europe", typing, sign=europe_sign))
        sent["foreign_user"] = 1
        # Signed by europe, from an id that ends in "@europe" but names a user of america.
        setattr(typing.typing, "from", "eve@america@europe")
        pub.pub("petchat.v1.live.america.europe", envelope(pb, "europe", typing, sign=europe_sign))
        sent["foreign_user"] += 1
        # Signed by europe, a group's state for a group homed in america, and a group change
        # asked for by a user of america: neither is europe's to say (refused when opened, so
        # counted even on the live subject, before the kind is found to be a durable one).
        state = pb.body()
        state.origin, state.destination, state.lane_seq = "europe", "america", 1000000
        state.group_state.conversation_id = "g" + "A" * 22
        state.group_state.home_region = "america"
        state.group_state.members.append(bob)
        state.group_state.version = 99
        pub.pub("petchat.v1.live.america.europe", envelope(pb, "europe", state, sign=europe_sign))
        request = pb.body()
        request.origin, request.destination, request.lane_seq = "europe", "america", 1000000
        request.group_request.conversation_id = "g" + "B" * 22
        request.group_request.by = "eve@america"
        request.group_request.request = pb.group_request.ADD
        request.group_request.users.append("mallory@europe")
        pub.pub("petchat.v1.live.america.europe", envelope(pb, "europe", request, sign=europe_sign))
        sent["foreign_user"] += 2
        # Signed by europe, from an older epoch of its lane: a replay, whatever it says.
        pub.pub(subject, envelope(pb, "europe", body("an old epoch"), sign=europe_sign))
        sent["replayed"] = 1
        # Signed by europe, its lane's epoch dated two days ahead of america's clock: it would
        # outrank every epoch europe makes until then, so it is refused, and the log says why.
        ahead = (int(time.time() * 1000) + 2 * 86400 * 1000) << 16
        pub.pub(subject, envelope(pb, "europe", body("from the future"), sign=europe_sign, lane_epoch=ahead))
        sent["malformed"] += 1
        pub.pub(subject, envelope(pb, "europe", body("to another region", destination="asia"), sign=europe_sign))
        sent["wrong_destination"] = 1
        pub.pub(subject, envelope(pb, "america", body("claims america", origin="america"), sign=europe_sign))
        sent["unknown_region"] += 1  # a region cannot send to itself through the bus
        pub.pub(subject, captured)  # the genuine envelope again
        sent["replayed"] += 1
        pub.close()
        del client_pb

        rejects = wait_status(self.node("america"),
                              lambda st: all(st["rejects"].get(k, 0) >= v for k, v in sent.items()),
                              DELIVERY_TIMEOUT_S)["rejects"]
        self.assertEqual({k: rejects.get(k, 0) for k in sent}, sent)
        america = self.node("america")
        self.assertTrue(any("lane epoch is dated" in line and "europe" in line
                            for line in america.stderr_lines + america.stdout_lines), "the clock named in the log")
        # None of it reached bob; the genuine link still works afterwards.
        acc2 = a.send_message(bob, "still genuine")
        self.assert_exactly(b, ["genuine", "still genuine"])
        self.assertEqual(messages_of(b)[1]["id"], acc2["message_id"])
        ready = self.node("america").request("GET", "/readyz")
        self.assertEqual(ready.status, 200)


class SignedButBreakingASendsRules(FederationCase):
    """europe's real key (its node stopped: whoever holds the key) sends bob 1:1 messages
    that break what a send in europe would have to keep: a sender that is not a user id, a
    client id over 64 bytes; and group requests with a 100,000-character group id, 1,001
    users, made by a name that is no name, or naming one (as a user or a successor). Each is refused as malformed, reaches no one and still takes its lane position:
    a proper message next on the lane is delivered."""

    def test_malformed_senders_and_client_ids_are_refused(self):
        pb = fed_pb2()
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        b = self.connect(bob)
        a = self.connect(alice)
        port = self.servers[0].port
        subject = "petchat.v1.fed.america.europe"
        spy = RawNats(port)
        spy.sub(subject)
        acc = a.send_message(bob, "genuine")
        genuine = None
        while genuine is None:  # the lane's envelopes since the spy subscribed, up to the message
            bundle = pb.bundle.FromString(pb.envelope.FromString(spy.next_msg()[1]).body)
            bodies = [pb.body.FromString(raw) for raw in bundle.bodies]
            genuine = next((bd for bd in bodies if bd.HasField("message") and bd.message.id == acc["message_id"]),
                           None)
        spy.close()
        europe = self.node("europe").proc  # stopped: from here on, europe is whoever holds its key
        os.kill(europe.pid, signal.SIGSTOP)
        self.addCleanup(lambda: europe.poll() is None and os.kill(europe.pid, signal.SIGCONT))
        b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        sign = region_signer(self.node("europe"))
        next_seq = max(bd.lane_seq for bd in bodies) + 1
        raw_id = base64.urlsafe_b64decode(genuine.message.id + "=" * (-len(genuine.message.id) % 4))

        def forged(n, text, sender=alice, client_id=None):
            bd = pb.body()
            bd.CopyFrom(genuine)
            bd.lane_seq = next_seq + n
            bd.created_at_ms = int(time.time() * 1000)
            m = bd.message
            # Another id of europe's making: its time and region bytes, other random bytes.
            m.id = base64.urlsafe_b64encode(raw_id[:8] + bytes([n + 1]) * (len(raw_id) - 8)).decode().rstrip("=")
            m.client_id = client_id if client_id is not None else "forged-%d" % n
            setattr(m, "from", sender)
            m.body.text = text
            return bd

        def forged_request(n, conversation_id, users, by=alice, successor=None):
            """A member's request to a group homed in america: with an id no group has, or
            naming more users than one add may (each would cost america's writer), or made
            by a "user" whose name is no name (logged, kept in a key)."""
            bd = forged(n, "")
            bd.ClearField("message")
            r = bd.group_request
            r.conversation_id = conversation_id
            r.by = by
            r.request = pb.group_request.ADD
            r.users.extend(users)
            r.request_id = "r%016d" % n
            if successor is not None:
                r.successor = successor
            return bd

        before = fed_status(self.node("america"))["rejects"].get("malformed", 0)
        pub = RawNats(port)
        for bd in (forged(0, "from no user id", sender="not a name!@europe"),
                   forged(1, "a long client id", client_id="c" * 65),
                   forged_request(2, "g" + "A" * 100000, [bob]),
                   forged_request(3, "gAAAAAAAAAAAAAAAAAAAAAAAAAA", ["u%d@america" % i for i in range(1001)]),
                   forged_request(4, "gAAAAAAAAAAAAAAAAAAAAAAAAAA", [bob], by="x\nforged log line " * 5000 + "@europe"),
                   # A name of any bytes among those named (logged in the refusal's line):
                   forged_request(5, "gAAAAAAAAAAAAAAAAAAAAAAAAAA", ["x\nforged log line " * 5000 + "@america"]),
                   forged_request(6, "gAAAAAAAAAAAAAAAAAAAAAAAAAA", [bob], successor="not a name!@america")):
            pub.pub(subject, envelope(pb, "europe", bd, sign=sign, lane_epoch=bundle.lane_epoch,
                                      lane_base=bundle.lane_base))
        plain = forged(7, "plain, next on the lane")
        pub.pub(subject, envelope(pb, "europe", plain, sign=sign, lane_epoch=bundle.lane_epoch,
                                  lane_base=bundle.lane_base))
        pub.close()
        b.wait_event(ev_message(plain.message.id), DELIVERY_TIMEOUT_S)
        st = fed_status(self.node("america"))
        self.assertEqual(st["rejects"].get("malformed", 0), before + 7, st["rejects"])
        self.assert_exactly(b, ["genuine", "plain, next on the lane"])
        america = self.node("america")
        america.stop()  # every line it logged is read
        self.assertEqual([line for line in america.stderr_lines + america.stdout_lines if "forged log line" in line], [])


class RepeatedUndeliverable(FederationCase):
    """america (its real key, its node stopped) says again and again that alice's message
    can never be delivered: alice is told once (before, each copy added a receipt to her
    mailbox, at whatever rate america sent them)."""

    def test_an_undeliverable_receipt_is_told_once(self):
        pb = fed_pb2()
        alice = self.user("europe", "alice")
        a = self.connect(alice)
        port = self.servers[0].port
        spy = RawNats(port)
        spy.sub("petchat.v1.fed.europe.america")
        acc = a.send_message("nobody-here@america", "hello?")
        a.wait_event(receipt_status("UNDELIVERABLE"), DELIVERY_TIMEOUT_S)
        genuine = None
        while genuine is None:  # america's lane to europe, up to that receipt
            bundle = pb.bundle.FromString(pb.envelope.FromString(spy.next_msg()[1]).body)
            bodies = [pb.body.FromString(raw) for raw in bundle.bodies]
            genuine = next((bd for bd in bodies if bd.HasField("receipt")
                            and bd.receipt.message_id == acc["message_id"]), None)
        spy.close()
        america = self.node("america").proc
        os.kill(america.pid, signal.SIGSTOP)
        self.addCleanup(lambda: america.poll() is None and os.kill(america.pid, signal.SIGCONT))
        sign = region_signer(self.node("america"))
        next_seq = max(bd.lane_seq for bd in bodies) + 1
        applied = fed_status(self.node("europe"))["applied"]
        pub = RawNats(port)
        for n in range(5):
            bd = pb.body()
            bd.CopyFrom(genuine)
            bd.lane_seq = next_seq + n
            bd.created_at_ms = int(time.time() * 1000)
            pub.pub("petchat.v1.fed.europe.america", envelope(pb, "america", bd, sign=sign,
                                                               lane_epoch=bundle.lane_epoch,
                                                               lane_base=bundle.lane_base))
        pub.close()
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while fed_status(self.node("europe"))["applied"] < applied + 5:
            self.assertLess(time.monotonic(), deadline, "europe never applied the five copies")
            time.sleep(0.1)
        # A note to herself, after them in her mailbox: every receipt they added came before.
        fence = a.send_message(alice, "fence")
        a.wait_event(ev_message(fence["message_id"]), DELIVERY_TIMEOUT_S)
        told = [e for e in a.events() if receipt_status("UNDELIVERABLE")(e)]
        self.assertEqual(len(told), 1, told)


class HostileAssetRequests(FederationCase):
    """europe's real key asks america for pieces of an asset. america answers only to the
    asker's own inboxes (`_INBOX.europe.`…) and only a fresh request: a reply subject that
    names another region's stream or inbox (america would publish signed pieces of up to
    256 KiB there for a request of a few hundred bytes) and a request replayed ten minutes
    later are refused and get nothing."""

    def test_answers_go_to_inboxes_and_only_for_fresh_requests(self):
        pb = fed_pb2()
        port = self.servers[0].port
        sign = region_signer(self.node("europe"))
        asked = os.urandom(32)

        def request(age_s=0):
            bd = pb.body()
            bd.origin, bd.destination = "europe", "america"
            bd.created_at_ms = int((time.time() - age_s) * 1000)
            bd.asset_request.hash = asked
            bd.asset_request.length = 1024
            return envelope(pb, "europe", bd, sign=sign)

        def answer(data):
            bundle = pb.bundle.FromString(pb.envelope.FromString(data).body)
            return pb.body.FromString(bundle.bodies[0]).asset_piece

        spy = RawNats(port)
        self.addCleanup(spy.close)
        # Only the inboxes the test names (the nodes' own inbox traffic must not come in between).
        for sid, inbox in enumerate(("_INBOX.europe.hostile.>", "_INBOX.asia.x.>", "_INBOX.europeans.x.>"), 1):
            spy.sub(inbox, sid)
        spy.sub("petchat.v1.fed.asia.america", 9)
        pub = RawNats(port)
        self.addCleanup(pub.close)
        asset_subject = "petchat.v1.asset.america.europe"
        pub.pub(asset_subject, request(), reply="_INBOX.europe.hostile.1")
        subject, data = spy.next_msg()
        self.assertEqual(subject, "_INBOX.europe.hostile.1")
        piece = answer(data)
        self.assertEqual((piece.hash, piece.found), (asked, False), "an asset america has not: found false")

        before = fed_status(self.node("america"))["rejects"]
        pub.pub(asset_subject, request(), reply="petchat.v1.fed.asia.america")
        pub.pub(asset_subject, request(), reply="_INBOX.asia.x.1")  # another region's inbox
        pub.pub(asset_subject, request(), reply="_INBOX.europeans.x.1")  # not europe's either
        pub.pub(asset_subject, request(age_s=600), reply="_INBOX.europe.hostile.2")
        pub.pub(asset_subject, request(), reply="_INBOX.europe.hostile.3")  # a fence: answered
        subject, _ = spy.next_msg()
        self.assertEqual(subject, "_INBOX.europe.hostile.3", "the first answer after the fence's request is the fence's")
        st = wait_status(self.node("america"),
                         lambda st: st["rejects"].get("stale", 0) > before.get("stale", 0) and
                         st["rejects"].get("malformed", 0) >= before.get("malformed", 0) + 3)
        self.assertEqual(st["rejects"].get("malformed", 0), before.get("malformed", 0) + 3, st["rejects"])
        self.assertEqual(st["rejects"].get("stale", 0), before.get("stale", 0) + 1, st["rejects"])


class Partitions(FederationCase):
    """Cut regions apart and crash nodes while users keep sending; nothing is lost,
    duplicated or reordered. Each test brings the topology back up."""

    def test_nats_down_for_a_while(self):
        alice, bob, carol = self.user("europe", "alice"), self.user("america", "bob"), self.user("europe", "carol")
        a, b, c = self.connect(alice), self.connect(bob), self.connect(carol)
        expected = self.send_many(a, bob, "before", 3)
        self.assert_exactly(b, expected)
        self.servers[0].kill9()
        # Local work never waits on federation: sending, local chat, login.
        t0 = time.monotonic()
        expected += self.send_many(a, bob, "during", 40)
        local = a.send_message(carol, "local while cut off")
        c.wait_event(ev_message(local["message_id"]), 5)
        self.session(alice, "login during outage")
        self.assertLess(time.monotonic() - t0, 15)
        st = wait_status(self.node("europe"), lambda st: not st["connected"], poll=0.1)
        self.assertFalse(st["connected"])
        self.assertGreaterEqual(st["regions"][0]["outbox"], 1)
        # The status says what is wrong at once, and blames NATS, not a region.
        self.assertRegex(st["last_error"], r"^NATS unreachable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", st)
        time.sleep(1.0)
        st = fed_status(self.node("europe"))
        self.assertTrue(st["last_error"].startswith("NATS unreachable since"), st)
        self.servers[0].start()
        expected += self.send_many(a, bob, "after", 3)
        self.assert_exactly(b, expected, timeout=30)
        # Entries leave europe's outbox once america confirms it applied them.
        self.assert_outbox_drains("europe")

    def test_recipient_node_down(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        bob_session = self.session(bob)
        america = self.node("america")
        america.stop()
        expected = self.send_many(a, bob, "while america is down", 30)
        america.start()
        b = self.connect(bob, bob_session)
        self.assert_exactly(b, expected, timeout=30)
        # What america applied leaves its stream: nothing waits to be applied any more.
        # (Bundles carry several envelopes: 30 messages take fewer stream positions.)
        st = wait_status(america, lambda st: st["regions"][0]["inbound"] == 0 and st["inbound_backlog"] == 0
                         and st["applied_position"] == st["stream_last_seq"])
        self.assertEqual((st["regions"][0]["region"], st["regions"][0]["inbound"], st["inbound_backlog"]),
                         ("europe", 0, 0), st)
        self.assertEqual(st["applied_position"], st["stream_last_seq"], st)
        self.assertGreaterEqual(st["applied_position"], 1, st)

    def test_sender_killed_right_after_accepted(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        b = self.connect(bob)
        # Cut NATS so that the accepted messages sit only in europe's outbox, then kill -9.
        self.servers[0].kill9()
        time.sleep(0.3)
        expected = self.send_many(a, bob, "in the outbox", 20)
        europe = self.node("europe")
        europe.kill9()
        self.servers[0].start()
        europe.start()
        self.assert_exactly(b, expected, timeout=30)
        # And kill -9 with NATS up, right after an accepted.
        a2 = self.connect(alice)
        more = self.send_many(a2, bob, "just accepted", 5)
        europe.kill9()
        europe.start()
        self.assert_exactly(b, expected + more, timeout=30)

    def test_recipient_killed_while_applying(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        bob_session = self.session(bob)
        america = self.node("america")
        before = fed_status(america)["applied_position"]
        expected, refs = [], []
        for i in range(300):
            refs.append(a.send_async(bob, "burst %d" % i))
            expected.append("burst %d" % i)
        # kill -9 america once it has applied part of the burst, not before and not after
        pos = wait_status(america, lambda st: st["applied_position"] > before, 20, poll=0.005)["applied_position"]
        america.kill9()
        self.assertGreater(pos, before, "america applied nothing before the kill")
        for ref in refs:
            self.assertIn("accepted", a.wait_ref(ref))
        america.start()
        b = self.connect(bob, bob_session)
        self.assert_exactly(b, expected, timeout=40)

    def test_region_that_did_not_list_the_sender_yet_gets_everything_once_it_does(self):
        # The join done in the wrong order: america does not know europe yet, so it refuses
        # europe's envelopes; once it lists europe, europe sends them again.
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        bob_session = self.session(bob)
        america = self.node("america")
        with open(america.config_path) as f:
            full = f.read()
        america.stop()
        with open(america.config_path, "w") as f:
            f.write(full[:full.index("[[federation.regions]]")])
        america.start()
        try:
            expected = ["before america knew europe %d" % i for i in range(5)]
            for t in expected:
                a.send_message(bob, t)
            st = wait_status(america, lambda st: st["rejects"].get("unknown_region", 0) >= 1, 15)
            self.assertGreaterEqual(st["rejects"].get("unknown_region", 0), 1)
        finally:
            america.stop()
            with open(america.config_path, "w") as f:
                f.write(full)
        america.start()
        b = self.connect(bob, bob_session)
        self.assert_exactly(b, expected, timeout=40)

    def test_presence_of_a_vanished_region_runs_out(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.contacts(alice, bob)
        a.wait_for(is_presence(bob, "ONLINE"), DELIVERY_TIMEOUT_S)
        t0 = time.monotonic()
        self.node("america").kill9()  # no OFFLINE report will ever come from america
        # presence_interval_s = 1 in these tests: offline within 3 intervals (+ the sweep)
        a.wait_for(is_presence(bob, "OFFLINE"), 10)
        self.assertLess(time.monotonic() - t0, 6)


class UnappliableEnvelope(FederationCase):

    def test_an_envelope_that_cannot_be_applied_does_not_stop_the_ones_behind_it(self):
        """bob's account record at europe cannot be read (disk damage): a message to him from
        america fails to apply, and before every envelope of every region waited behind it
        for ever. Now it is refused alone and the lane goes on."""
        import test_hardening_live  # noqa: E402 (its corrupt_account, with python3-lmdb)

        alice, bob = self.user("europe", "alice"), self.user("europe", "bob")
        carol = self.user("america", "carol")
        a, c = self.connect(alice), self.connect(carol)
        test_hardening_live.CorruptUserRecordTest.corrupt_account(self, self.node("europe"), bob.split("@")[0])
        c.send_message(bob, "to a record that cannot be read")
        after = c.send_message(alice, "behind it")
        a.wait_event(ev_message(after["message_id"]), 60)  # after ten seconds of tries alone
        self.assertTrue(any("could not be applied here" in line for line in self.node("europe").stderr_lines +
                            self.node("europe").stdout_lines))


class PresenceIntervals(FederationCase):
    """Regions that refresh presence at different intervals: europe every 4 s, america every 1 s."""
    federation = staticmethod(lambda name: {"presence_interval_s": 4} if name == "europe" else {})

    def test_a_region_that_refreshes_slower_is_not_shown_offline_between_its_refreshes(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.contacts(alice, bob)
        b.wait_for(is_presence(alice, "ONLINE"), DELIVERY_TIMEOUT_S)
        # america believed a report for 3 of its own intervals (3 s) while europe sends one every
        # 4 s: alice went OFFLINE and ONLINE again every refresh. Now for 3 of europe's (12 s).
        with self.assertRaises(wsclient.WSTimeout):
            b.wait_for(is_presence(alice, "OFFLINE"), 10)
        sb = self.session(bob, "rest")
        seen = self.node("america").request("GET", "/v1/presence/" + alice, token=sb["access_token"])
        self.assertEqual((seen.status, seen.json["state"]), (200, "ONLINE"), seen.describe())
        self.node("europe").kill9()  # no OFFLINE report will come: the report runs out
        t0 = time.monotonic()
        b.wait_for(is_presence(alice, "OFFLINE"), 25)
        self.assertLess(time.monotonic() - t0, 20)


class LeafTopology(FederationCase):
    """One nats-server per region (own JetStream domain), leaf nodes of a hub."""
    topology = staticmethod(fedharness.leaf_topology)

    def test_chat_and_receipts(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.connect(alice), self.connect(bob)
        acc = a.send_message(bob, "via leaf nodes")
        ev = b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
        b.ack(ev["seq"])
        a.wait_event(receipt_status("DELIVERED"), DELIVERY_TIMEOUT_S)

    def test_hub_down_cuts_the_regions_apart_and_nothing_is_lost(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.connect(alice), self.connect(bob)
        hub = self.servers[0]
        expected = ["first"]
        a.send_message(bob, "first")
        self.assert_exactly(b, expected)
        hub.kill9()
        time.sleep(0.5)
        expected += self.send_many(a, bob, "cut", 30)
        # both regions still work alone
        local = self.user("america", "dave")
        d = self.connect(local)
        d.send_message(bob, "local in america")
        time.sleep(1.0)
        self.assertEqual(fed_status(self.node("europe"))["regions"][0]["outbox"] > 0, True)
        hub.start()
        a.send_message(bob, "healed")
        expected.append("healed")
        b.wait_until(lambda: len(messages_of(b)) >= len(expected) + 1, 40, what="all messages after healing")
        time.sleep(0.5)
        from_alice = [m["body"]["text"] for m in messages_of(b) if m["from"] == alice]
        self.assertEqual(from_alice, expected)


    def test_recipient_region_server_down(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.connect(alice), self.connect(bob)
        america_nats = self.regions["america"].nats
        expected = ["hello"]
        a.send_message(bob, "hello")
        self.assert_exactly(b, expected)
        america_nats.kill9()  # america's own JetStream (its inbound stream) is gone for now
        expected += self.send_many(a, bob, "stored at europe", 25)
        # The oldest undelivered envelope's age is reported in whole seconds.
        deadline = time.monotonic() + 15
        while True:
            st = fed_status(self.node("europe"))
            if st["regions"][0]["oldest_undelivered_s"] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # At least the 25 sent meanwhile (more if confirmations of the earlier tests' envelopes
        # had not come back when america's server went).
        self.assertGreaterEqual(st["regions"][0]["outbox"], 25, st)
        self.assertIsInstance(st["regions"][0]["oldest_undelivered_s"], int, st)
        self.assertGreaterEqual(st["regions"][0]["oldest_undelivered_s"], 1, st)
        america_nats.start()
        self.assert_exactly(b, expected, timeout=40)
        self.assert_outbox_drains("europe")

    def test_stream_lost_with_envelopes_in_it_they_are_sent_again(self):
        # Envelopes JetStream acknowledged are lost with america's NATS store: europe keeps
        # them until america confirms, and sends them again.
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a = self.connect(alice)
        bob_session = self.session(bob)
        america, america_nats = self.node("america"), self.regions["america"].nats
        america.stop()
        expected = ["lost with the stream %d" % i for i in range(15)]
        for t in expected:
            a.send_message(bob, t)
        st = wait_status(self.node("europe"), lambda st: st["published"] >= 15, poll=0.1)
        self.assertGreaterEqual(st["published"], 15)
        america_nats.kill9()
        america_nats.wipe_store()
        america_nats.start()
        america.start()
        b = self.connect(bob, bob_session)
        self.assert_exactly(b, expected, timeout=40)
        log = "\n".join(self.node("europe").stderr_lines)
        self.assertIn("has not confirmed lane entries", log, "recovered without resending?")


class ThreeRegions(FederationCase):
    names = ("europe", "america", "asia")

    def test_everyone_talks_to_everyone(self):
        users = {r: self.user(r, "u") for r in self.names}
        conns = {r: self.connect(u) for r, u in users.items()}
        for n in range(3):
            for src in self.names:
                for dst in self.names:
                    if src != dst:
                        conns[src].send_message(users[dst], "%d from %s to %s" % (n, src, dst))
        for dst in self.names:
            conns[dst].wait_until(lambda: len(messages_of(conns[dst])) >= 6, DELIVERY_TIMEOUT_S)
            time.sleep(0.3)
            got = [m for m in messages_of(conns[dst]) if m["to"] == users[dst]]
            self.assertEqual(len(got), 6, got)
            for src in self.names:
                if src != dst:  # each sender's messages arrive once, in their order
                    self.assertEqual([m["body"]["text"] for m in got if m["from"] == users[src]],
                                     ["%d from %s to %s" % (n, src, dst) for n in range(3)])


class RestoredRegion(FederationCase):
    """A region restored from a backup (docs/OPERATIONS.md, "Restoring a federated region")."""

    def assert_from(self, client, sender, texts, timeout=DELIVERY_TIMEOUT_S):
        """`client` has exactly these messages from `sender`, in this order, once each."""
        def got():
            return [m["body"]["text"] for m in messages_of(client) if m["from"] == sender]
        client.wait_until(lambda: len(got()) >= len(texts), timeout, what="%d messages" % len(texts))
        time.sleep(0.5)
        self.assertEqual(got(), list(texts))

    def assert_restored_seqs(self, seqs):
        """Gapless up to what the backup held; from the restore on, 1,048,576 further on and
        64 more for each millisecond since the backup (the devices may have seen seqs past
        the backup: none is handed out again), gapless."""
        old = [s for s in seqs if s < 1 << 20]
        new = [s for s in seqs if s >= 1 << 20]
        self.assertEqual(old, list(range(1, len(old) + 1)))
        if new:
            jump = new[0] - (len(old) + 1 + (1 << 20))
            self.assertTrue(0 <= jump <= 64 * 600 * 1000, "a jump of %d for a backup made minutes before" % jump)
            self.assertEqual(new, list(range(new[0], new[0] + len(new))))

    def test_restored_region_catches_up_and_is_heard_again(self):
        self.restore_and_check(held=True)

    def restore_and_check(self, held):
        """Europe is backed up, traffic goes both ways, europe's disk is lost and its backup
        restored. With `held`, america still holds what it had confirmed to europe
        (federation.keep_confirmed_s) and sends it again; without, europe skips it."""
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        europe, america = self.node("europe"), self.node("america")
        a, b = self.connect(alice), self.connect(bob)
        early_ab = self.send_many(a, bob, "before the backup, to bob", 3)
        early_ba = self.send_many(b, alice, "before the backup, to alice", 3)
        self.assert_from(b, alice, early_ab)
        self.assert_from(a, bob, early_ba)
        dest = os.path.join(europe.workdir, "backup-%s" % uname("b"))
        rc, out, err = europe.ctl("backup", dest, timeout=120)
        self.assertEqual(rc, 0, out + err)
        # After the backup: what alice sends is lost with europe's disk (america has it);
        # what bob sends europe applies and confirms.
        lost = self.send_many(a, bob, "after the backup, to bob", 2)
        late_ba = self.send_many(b, alice, "after the backup, to alice", 3)
        self.assert_from(b, alice, early_ab + lost)
        self.assert_from(a, bob, early_ba + late_ba)
        if not held:
            # europe's confirmations have reached america, which (keeping none) has let go of
            # what it sent: on a busy machine they may come after alice saw the messages.
            self.assert_outbox_drains("america")
        # europe has purged what it applied from its inbound stream (it does every 2 s once it
        # applied something): the restored europe would else read it from there again
        # (rightly: nothing is lost then), and neither case here would be the one tested:
        # america sending it again (held), or nobody having it any more (not held).
        st = wait_status(europe, lambda st: all(r["inbound"] == 0 for r in st["regions"]), 30)
        self.assertEqual([r["inbound"] for r in st["regions"]], [0], st)
        a.close()
        # europe's machine is lost; its backup is restored on a new one (same config).
        europe.kill9()
        shutil.move(europe.data_dir, europe.data_dir + ".lost-" + uname("l"))
        rc, out, err = run_ctl("restore", dest, europe.data_dir)
        self.assertEqual(rc, 0, out + err)
        europe.start()
        # The restored europe confirms only what the backup had. Held: america sends it the
        # rest again, and alice gets what bob sent after the backup, in order, once. Not
        # held: europe skips to what america still holds, and says so.
        a2 = self.connect(alice, after_seq=0)
        restored_ba = early_ba + late_ba if held else early_ba
        self.assert_from(a2, bob, restored_ba, timeout=60 if held else DELIVERY_TIMEOUT_S)
        self.assert_restored_seqs(a2.seqs())
        # europe is heard again: a new message from alice reaches bob, once, after the
        # ones america already had; and one from bob reaches alice.
        a2.send_message(bob, "after the restore, to bob")
        self.assert_from(b, alice, early_ab + lost + ["after the restore, to bob"], timeout=60)
        b.send_message(alice, "after the restore, to alice")
        self.assert_from(a2, bob, restored_ba + ["after the restore, to alice"], timeout=60)
        self.assert_restored_seqs(a2.seqs())
        logs = america.stderr_lines + america.stdout_lines + europe.stderr_lines + europe.stdout_lines
        if held:
            self.assertTrue(any("went back from lane seq" in line for line in logs))
        else:
            self.assertTrue(any("the lane from america skips seqs" in line for line in logs))


class RestoredRegionNothingHeld(RestoredRegion):
    """The same with federation.keep_confirmed_s = 0: what europe had confirmed after the
    backup is gone from america, so the restored europe skips it (the behaviour before
    confirmed entries were held)."""

    federation = {"keep_confirmed_s": 0}

    def test_restored_region_catches_up_and_is_heard_again(self):
        self.restore_and_check(held=False)


class DirectoryReload(FederationCase):
    """The region directory changed without a restart (SIGHUP, petchatctl reload)."""

    def test_regions_follow_the_config_on_reload(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        europe = self.node("europe")
        with open(europe.config_path) as f:
            full = f.read()
        start = full.index("[[federation.regions]]")
        without = full[:start]  # america is europe's only other region
        a, b = self.connect(alice), self.connect(bob)
        first = a.send_message(bob, "before the reloads")
        b.wait_event(ev_message(first["message_id"]), DELIVERY_TIMEOUT_S)
        conversation = first["conversation_id"]
        a.typing(bob, True)
        b.wait_for(is_typing(alice), DELIVERY_TIMEOUT_S)
        # A file caught emptied (an editor saving in place) drops no region of the running
        # link: the directory comes only from a file that federates through the same NATS.
        with open(europe.config_path, "w") as f:
            f.write("")
        rc, out, err = europe.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("federation.regions", out)
        self.assertIn("[federation]", out)  # named as waiting for a restart
        names = [r["name"] for r in europe.request("GET", "/v1/regions").json["regions"]]
        self.assertEqual(names, ["europe", "america"])
        with open(europe.config_path, "w") as f:
            f.write(without)
        rc, out, err = europe.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.assertIn("federation.regions (region/keys): america/1 -> none", out)
        names = [r["name"] for r in europe.request("GET", "/v1/regions").json["regions"]]
        self.assertEqual(names, ["europe"])
        # america's users are no longer recipients for europe: a send by `to` and one into
        # their existing conversation are both refused, not accepted and left unsent.
        for send in ({"to": bob}, {"conversation_id": conversation}):
            ref = a.next_ref()
            a.send_frame({"ref": ref, "send": dict(send, client_id=uuid.uuid4().hex, body={"text": "unsendable"})})
            answer = a.wait_ref(ref, DELIVERY_TIMEOUT_S)
            self.assertEqual(answer.get("error", {}).get("code"), "user_not_found", (send, answer))
            self.assertIn("not federated", answer["error"]["message"])
        # Nor is america told alice is typing (presence and typing go to listed regions only).
        a.typing(bob, False)
        a.typing(bob, True)
        time.sleep(2)
        self.assertEqual([f for f in b.pending() if is_typing(alice)(f)], [], "typing to an unlisted region")
        # europe no longer takes america's envelopes: bob's message waits in america.
        b.send_message(alice, "while europe does not list america")
        time.sleep(2)
        self.assertEqual([m for m in messages_of(a) if m["from"] == bob], [])
        self.assertEqual(europe.ctl("--json", "federation", "status")[0], 0)
        # Listed again, it arrives (at america's next resend), once.
        with open(europe.config_path, "w") as f:
            f.write(full)
        europe.proc.send_signal(signal.SIGHUP)
        a.wait_until(lambda: any(m["from"] == bob for m in messages_of(a)), 60, what="bob's message")
        time.sleep(0.5)
        self.assertEqual([m["body"]["text"] for m in messages_of(a) if m["from"] == bob],
                         ["while europe does not list america"])
        names = [r["name"] for r in europe.request("GET", "/v1/regions").json["regions"]]
        self.assertEqual(names, ["europe", "america"])
        self.assertTrue(any("reload: applied federation.regions" in line for line in europe.stderr_lines + europe.stdout_lines))
        a.send_message(bob, "and back")
        b.wait_until(lambda: any(m["body"]["text"] == "and back" for m in messages_of(b)), DELIVERY_TIMEOUT_S)

    def test_a_decommissioned_regions_outbox_is_dropped(self):
        """A region taken out of the directory keeps what was queued for it (its group's
        messages); status shows it as not listed; drop-outbox gives it up (refused for a
        listed region); listed again, the lane starts over and new messages arrive, the
        dropped ones never."""
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        europe = self.node("europe")
        token = self.session(alice)["access_token"]
        a, b = self.connect(alice), self.connect(bob)
        r = europe.request("POST", "/v1/conversations", {"title": "club", "members": [bob]}, token=token)
        self.assertEqual(r.status, 201, r.describe())
        group = r.json["conversation"]["id"]

        def say(text):
            ref = a.next_ref()
            a.send_frame({"ref": ref, "send": {"client_id": uuid.uuid4().hex, "conversation_id": group,
                                               "body": {"text": text}}})
            self.assertIn("accepted", a.wait_ref(ref, DELIVERY_TIMEOUT_S))

        say("while listed")
        b.wait_until(lambda: any(m["body"].get("text") == "while listed" for m in messages_of(b)), DELIVERY_TIMEOUT_S)
        rc, out, err = europe.ctl("federation", "drop-outbox", "america")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("region_listed", out + err)
        with open(europe.config_path) as f:
            full = f.read()
        with open(europe.config_path, "w") as f:
            f.write(full[:full.index("[[federation.regions]]")])
        self.assertEqual(europe.ctl("reload")[0], 0)
        for i in range(3):
            say("unlisted %d" % i)  # the group's messages still queue for america
        rc, out, err = europe.ctl("--json", "federation", "status")
        self.assertEqual(rc, 0, err)
        held = [r for r in json.loads(out)["regions"] if r["region"] == "america"]
        self.assertEqual(len(held), 1, out)
        self.assertIs(held[0]["listed"], False)
        self.assertGreaterEqual(held[0]["outbox"], 3)
        self.assertEqual(europe.ctl("federation", "status")[0], 0)
        rc, out, err = europe.ctl("--json", "federation", "drop-outbox", "america")
        self.assertEqual(rc, 0, err)
        self.assertGreaterEqual(json.loads(out)["dropped"], 3)
        rc, out, err = europe.ctl("--json", "federation", "status")
        self.assertEqual([r for r in json.loads(out)["regions"] if r["region"] == "america"], [], out)
        rc, out, err = europe.ctl("federation", "drop-outbox", "america")  # nothing held any more
        self.assertNotEqual(rc, 0)
        self.assertIn("not_found", out + err)
        rc, out, err = europe.ctl("federation", "drop-outbox", "../america")
        self.assertNotEqual(rc, 0)
        self.assertIn("invalid_field", out + err)
        say("after the drop")  # nothing queues for an unlisted region with no lane
        # Listed again: the lane starts over under a new epoch; america takes what is new.
        with open(europe.config_path, "w") as f:
            f.write(full)
        self.assertEqual(europe.ctl("reload")[0], 0)
        say("listed again")
        b.wait_until(lambda: any(m["body"].get("text") == "listed again" for m in messages_of(b)), 60,
                     what="the message after the region was listed again")
        time.sleep(1)
        texts = [m["body"].get("text") for m in messages_of(b) if m.get("conversation_id") == group]
        self.assertEqual(texts, ["while listed", "listed again"])


def alice_and_bob(regions):
    """alice@europe and bob@america, each with a connected client: (europe's node, america's
    node, alice's client, bob's client)."""
    eu, us = regions["europe"].node, regions["america"].node
    eu.new_user("alice")
    us.new_user("bob")
    return eu, us, wsclient.connect(eu, eu.new_session("alice")), wsclient.connect(us, us.new_session("bob"))


@contextlib.contextmanager
def europe_and_america(name, users=False, config=None):
    """europe and america on one nats-server of their own (each its own NATS user, with
    nats_permissions, if `users`); yields (server, regions) and closes them all after."""
    extra = "authorization { users: [%s, %s] }" % (nats_permissions("europe"), nats_permissions("america"))
    server = fedharness.NatsServer(name, extra_conf=extra if users else "")
    federation = (lambda region: {"user": region, "password": "pw-" + region}) if users else None
    regions = fedharness.make_regions(["europe", "america"], {"europe": server, "america": server}, config=config,
                                      federation=federation)
    regions.pop("_keys")
    try:
        yield server, regions
    finally:
        for r in regions.values():
            r.node.close()
        server.close()


def nats_permissions(region):
    """A region's NATS permissions as docs/FEDERATION.md gives them: its own subjects, and the
    JetStream API of its own stream only."""
    r = region
    return ('{user: "%s", password: "pw-%s", permissions: {'
            'publish: ["petchat.v1.fed.*.%s", "petchat.v1.live.*.%s", "petchat.v1.asset.*.%s", "$JS.API.INFO", '
            '"$JS.API.STREAM.*.petchat-in-%s", "$JS.API.CONSUMER.*.petchat-in-%s", '
            '"$JS.API.CONSUMER.*.petchat-in-%s.>", "$JS.FC.>", "_INBOX.>"], '
            'subscribe: ["petchat.v1.fed.%s.*", "petchat.v1.live.%s.*", "petchat.v1.asset.%s.*", "_INBOX.%s.>"]}}'
            % ((r,) * 12))


class NatsPermissions(unittest.TestCase):
    """Each region its own NATS user, allowed the JetStream API of its own stream only: the
    regions federate, and one cannot read, purge or delete another's inbound stream (where
    every region's envelopes to it wait, signed but not encrypted)."""

    def test_regions_federate_with_their_own_streams_api_only_and_cannot_touch_anothers(self):
        with europe_and_america("permissions", users=True) as (server, regions):
            eu, us, a, b = alice_and_bob(regions)
            acc = a.send_message("bob@america", "with narrow permissions")
            ev = b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
            b.ack(ev["seq"])
            a.wait_event(ev_receipt(acc["message_id"], "DELIVERED"), DELIVERY_TIMEOUT_S)
            back = b.send_message("alice@europe", "and back")
            a.wait_event(ev_message(back["message_id"]), DELIVERY_TIMEOUT_S)
            self.assertTrue(fed_status(eu)["connected"])
            a.close()
            b.close()
            # europe's credentials against america's stream, over NATS's text protocol.
            for subject in ("$JS.API.CONSUMER.CREATE.petchat-in-america", "$JS.API.STREAM.PURGE.petchat-in-america",
                            "$JS.API.STREAM.DELETE.petchat-in-america"):
                with self.subTest(subject=subject):
                    self.assertIn(b"Permissions Violation", nats_publish(server, "europe", "pw-europe", subject))
            self.assertNotIn(b"Permissions Violation",
                             nats_publish(server, "europe", "pw-europe", "$JS.API.STREAM.INFO.petchat-in-europe"))


class NatsGivesUp(unittest.TestCase):
    """NATS.c closes a connection for good after the same authorization error twice (a
    password changed on the server, an expired credential): the node opens a new one once
    it can, without a restart, and what was queued meanwhile arrives."""

    def test_a_connection_nats_closed_for_good_is_opened_again(self):
        with europe_and_america("gives-up", users=True) as (server, regions):
            eu, us, a, b = alice_and_bob(regions)
            first = a.send_message("bob@america", "before")
            b.wait_event(ev_message(first["message_id"]), DELIVERY_TIMEOUT_S)
            with open(server.conf) as f:
                conf = f.read()

            def set_conf(text):
                with open(server.conf, "w") as f:
                    f.write(text)
                server.proc.send_signal(signal.SIGHUP)  # nats-server reads its config again

            def logged(what):
                return any(what in line for line in eu.stderr_lines + eu.stdout_lines)

            def refusals():
                with open(server.log_path, errors="replace") as f:
                    return sum("authentication error" in line or "Authorization Violation" in line for line in f)

            before = refusals()
            set_conf(conf.replace('password: "pw-europe"', 'password: "changed"'))
            # NATS.c gives up after the server refused the same credentials twice in a row.
            deadline = time.monotonic() + 60
            while refusals() < before + 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            self.assertGreaterEqual(refusals(), before + 2, "the server never refused europe twice")
            time.sleep(1)
            meanwhile = a.send_message("bob@america", "while europe's password was wrong")
            set_conf(conf)
            # The new connection is tried at growing intervals (1, 2, 4... s, at most 60).
            b.wait_event(ev_message(meanwhile["message_id"]), 90)
            back = b.send_message("alice@europe", "and back")
            a.wait_event(ev_message(back["message_id"]), DELIVERY_TIMEOUT_S)
            self.assertTrue(fed_status(eu)["connected"])
            self.assertTrue(logged("NATS closed the connection"), "NATS.c never gave the connection up")
            a.close()
            b.close()


class NatsStalls(unittest.TestCase):
    """A nats-server that stops reading (hung; here SIGSTOP) while the node has megabytes to
    publish: local chat goes on. Typing and presence were published from the I/O threads,
    behind the link's blocked write, until TCP gave up (many minutes), and every stream on
    that thread waited with them; now the link's own live thread publishes them."""

    def test_local_chat_goes_on_while_nats_stops_reading(self):
        config = {"node": {"threads": 1},  # every stream on the one thread that would block
                  "messages": {"max_per_second": 100000, "max_text_bytes": 60000}}
        with europe_and_america("stalls", config=config) as (server, regions):
            stopped = False
            try:
                eu, us, a, b = alice_and_bob(regions)
                eu.new_user("carol")
                eu.new_user("dave")
                c = wsclient.connect(eu, eu.new_session("carol"))
                d = wsclient.connect(eu, eu.new_session("dave"))
                first = a.send_message("bob@america", "before")
                b.wait_event(ev_message(first["message_id"]), DELIVERY_TIMEOUT_S)
                server.proc.send_signal(signal.SIGSTOP)
                stopped = True
                # ~18 MB for america: more than the sockets between the node and the server hold.
                refs = [a.send_async("bob@america", "%04d " % i + "x" * 59000) for i in range(300)]
                last = None
                for r in refs:
                    f = a.wait_ref(r, timeout=60)
                    self.assertIn("accepted", f, f)
                    last = f["accepted"]
                # A publish round that times out waits resend_after_s (3 s here); the next one
                # takes all of them at once, and its write stops when the sockets are full.
                time.sleep(8)
                for _ in range(20):
                    a.typing("bob@america")
                    time.sleep(0.05)
                local = c.try_send("dave@europe", "local while NATS is stuck", timeout=60)
                self.assertIn("accepted", local, local)
                d.wait_event(ev_message(local["accepted"]["message_id"]), 30)
                server.proc.send_signal(signal.SIGCONT)
                stopped = False
                b.wait_event(ev_message(last["message_id"]), 120)
                for client in (a, b, c, d):
                    client.close()
            finally:
                if stopped:
                    server.proc.send_signal(signal.SIGCONT)


def nats_publish(server, user, password, subject):
    """Publishes an empty message as `user` (NATS's client protocol by hand) and returns what
    the server said within a second: a -ERR names a permissions violation."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        got = sock.recv(4096)  # INFO
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"user":"%s","pass":"%s"}\r\n'
                     % (user.encode(), password.encode()))
        sock.sendall(b"PUB %s _INBOX.%s.probe 0\r\n\r\nPING\r\n" % (subject.encode(), user.encode()))
        deadline = time.monotonic() + 5
        while b"PONG" not in got and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        return got


class SecuredNats(unittest.TestCase):
    """NATS with TLS and a user/password, configured as docs/FEDERATION.md says."""

    @classmethod
    def make_cert(cls, name, subject_alt_name):
        cert, key = os.path.join(cls.certs, name + ".pem"), os.path.join(cls.certs, name + ".key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=" + name,
                        "-addext", "subjectAltName=" + subject_alt_name], check=True, capture_output=True, timeout=30)
        return cert, key

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.certs = tempfile.mkdtemp(prefix="petchat-tls-")
        cls.cert, key = cls.make_cert("127.0.0.1", "IP:127.0.0.1")
        cls.server = fedharness.NatsServer("secured", extra_conf=(
            'tls { cert_file: "%s", key_file: "%s" }\n'
            'authorization { user: "petchat", password: "s3cret-for-tests" }' % (cls.cert, key)))
        # A server whose certificate, from a CA the nodes trust, names another host.
        cls.other_cert, other_key = cls.make_cert("nats.other.example", "DNS:nats.other.example")
        cls.other = fedharness.NatsServer("misnamed", extra_conf=(
            'tls { cert_file: "%s", key_file: "%s" }' % (cls.other_cert, other_key)))

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.other.close()
        import shutil
        shutil.rmtree(cls.certs, ignore_errors=True)

    def test_regions_federate_over_tls_with_credentials(self):
        fed = {"tls_ca_file": self.cert, "user": "petchat", "password": "s3cret-for-tests"}
        regions = fedharness.make_regions(["europe", "america"], {"europe": self.server, "america": self.server},
                                          federation=fed)
        regions.pop("_keys")
        try:
            eu, us, a, b = alice_and_bob(regions)
            acc = a.send_message("bob@america", "over TLS")
            b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
            st = fed_status(eu)
            self.assertTrue(st["connected"], st)
            self.assertTrue(st["server"].startswith("nats://127.0.0.1:"), st)
            a.close()
            b.close()
        finally:
            for r in regions.values():
                r.node.close()

    def test_a_certificate_for_another_host_is_refused_unless_that_name_is_configured(self):
        # The URL names 127.0.0.1; the server's certificate, from a trusted CA, names
        # nats.other.example: refused, unless federation.tls_server_name names it.
        for fed, connects in (({"tls_ca_file": self.other_cert}, False),
                              ({"tls_ca_file": self.other_cert, "tls_server_name": "nats.other.example"}, True)):
            regions = fedharness.make_regions(["europe", "america"], {"europe": self.other, "america": self.other},
                                              federation=fed)
            regions.pop("_keys")
            try:
                eu = regions["europe"].node
                if connects:
                    eu, us, a, b = alice_and_bob(regions)
                    acc = a.send_message("bob@america", "to the name the certificate carries")
                    b.wait_event(ev_message(acc["message_id"]), DELIVERY_TIMEOUT_S)
                    self.assertTrue(fed_status(eu)["connected"])
                    a.close()
                    b.close()
                else:
                    deadline = time.monotonic() + 15
                    st = fed_status(eu)
                    while not st.get("last_error") and time.monotonic() < deadline:
                        time.sleep(0.2)
                        st = fed_status(eu)
                    self.assertFalse(st["connected"], st)
                    self.assertRegex(st["last_error"], "(?i)ssl|tls|certificate|handshake", st)
                    ready = eu.request("GET", "/readyz")
                    self.assertEqual((ready.status, ready.json["federation"]), (200, "disconnected"))
            finally:
                for r in regions.values():
                    r.node.close()

    def test_wrong_password_keeps_the_region_standalone_and_says_why(self):
        fed = {"tls_ca_file": self.cert, "user": "petchat", "password": "wrong"}
        regions = fedharness.make_regions(["europe", "america"], {"europe": self.server, "america": self.server},
                                          federation=fed)
        regions.pop("_keys")
        try:
            eu = regions["europe"].node
            eu.new_user("alice")
            a = wsclient.connect(eu, eu.new_session("alice"))
            a.send_message("alice", "local chat still works")
            a.close()
            time.sleep(1.5)  # a few reconnection attempts
            st = fed_status(eu)
            self.assertFalse(st["connected"], st)
            ready = eu.request("GET", "/readyz")
            self.assertEqual((ready.status, ready.json["federation"]), (200, "disconnected"))
            self.assertRegex(st["last_error"], "(?i)authori[sz]ation", st)
            log = "\n".join(eu.stderr_lines)
            self.assertRegex(log, "(?i)authori[sz]ation", log[-2000:])
        finally:
            for r in regions.values():
                r.node.close()


class Configuration(unittest.TestCase):
    def test_example_nats_configs_are_valid(self):
        conf_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "config", "nats")
        confs = sorted(f for f in os.listdir(conf_dir) if f.endswith(".conf"))
        self.assertEqual(confs, ["hub.conf", "leaf-region.conf", "shared.conf"])
        for f in confs:
            out = subprocess.run([fedharness.NATS_BIN, "-c", os.path.join(conf_dir, f), "-t"],
                                 capture_output=True, text=True, timeout=15)
            self.assertEqual(out.returncode, 0, "%s: %s%s" % (f, out.stdout, out.stderr))

    def test_broken_federation_config_is_refused_with_the_key_named(self):
        from harness import Node
        node = Node(name="broken", start=False, extra_config=(
            '[federation]\nnats_urls = ["nats://127.0.0.1:1"]\n\n'
            '[[federation.regions]]\nname = "america"\npublic_keys = ["not hex"]\n'))
        try:
            out = subprocess.run(node.command(), capture_output=True, text=True, timeout=15)
            self.assertEqual(out.returncode, 2, out.stderr)
            self.assertIn("federation.regions[0].public_keys", out.stderr)
        finally:
            node.close()

    def test_nats_unreachable_at_start_is_not_fatal(self):
        # A region starts and serves its users even when its NATS server is not there yet.
        from harness import Node
        port = fedharness.free_port()
        node = Node(name="lonely", extra_config='[federation]\nnats_urls = ["nats://127.0.0.1:%d"]\n' % port)
        try:
            node.new_user("solo")
            s = node.new_session("solo")
            c = wsclient.connect(node, s)
            c.send_message("solo", "note to self")
            c.close()
            ready = node.request("GET", "/readyz")
            self.assertEqual((ready.status, ready.json["federation"]), (200, "disconnected"))
            node.stop()
        finally:
            node.close()


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        fedharness.close_all_servers()
