"""Federation: one region's backlog does not hold up another's (docs/FEDERATION.md,
"Choices, and why": "Origins take turns", "Each origin has its share of the stream"). A
region's inbound stream keeps each origin's envelopes to a share of its own, so a region
back from a long partition, or a hostile one that floods with its genuine key, cannot fill
it against the others; and the region reads each origin's envelopes with a consumer of its
own and applies them with the origins taking turns, so such a backlog delays the others'
envelopes by about one store write. Nothing the stream took is lost."""
import base64
import json
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_federation  # noqa: E402  (FederationCase: regions, users, streams)
from test_federation import RawNats, envelope, fed_pb2, fed_status, region_signer  # noqa: E402
from wsclient import ev_message  # noqa: E402

BUNDLES = 200  # of 256 messages each: 51,200 messages from asia, about 80 MB: more than america's stream holds
BODIES = 256
PADDING = "x" * 1200


def applied_from(node):
    """Bodies applied per origin since the node started (its applied-latency histogram)."""
    raw = node.scrape().raw.decode()
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r'(?m)^petchat_federation_applied_seconds_count\{region="([a-z]+)"\} (\d+)', raw)}


class OneRegionsBacklog(test_federation.FederationCase):
    names = ("europe", "america", "asia")
    # europe must not send its message again while america starts: a copy is refused as
    # replayed, and a write with a refusal is left out of the histogram this test reads.
    federation = {"resend_after_s": 600}

    def test_a_flood_from_one_region_does_not_hold_up_another(self):
        pb = fed_pb2()
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        carol, mallory = self.user("america", "carol"), self.user("asia", "mallory")
        america, asia = self.node("america"), self.node("asia")
        port = self.servers[0].port
        subject = "petchat.v1.fed.america.asia"

        # A genuine message from asia, to copy: its lane position, epoch and ids.
        spy = RawNats(port)
        spy.sub(subject)
        c = self.connect(carol)
        acc = self.connect(mallory).send_message(carol, "genuine")
        genuine = None
        while genuine is None:
            bundle = pb.bundle.FromString(pb.envelope.FromString(spy.next_msg()[1]).body)
            bodies = [pb.body.FromString(raw) for raw in bundle.bodies]
            genuine = next((bd for bd in bodies if bd.HasField("message") and bd.message.id == acc["message_id"]),
                           None)
        spy.close()
        c.wait_event(ev_message(acc["message_id"]), test_federation.DELIVERY_TIMEOUT_S)
        c.close()  # the flood's 51,200 events need no reader
        # From here on, asia is whoever holds its key.
        os.kill(asia.proc.pid, signal.SIGSTOP)
        self.addCleanup(lambda: asia.proc.poll() is None and os.kill(asia.proc.pid, signal.SIGCONT))
        america.stop()

        # While america is down: asia's flood, then europe's one message, in its stream.
        sign = region_signer(asia)
        raw_id = base64.urlsafe_b64decode(genuine.message.id + "=" * (-len(genuine.message.id) % 4))
        next_seq = max(bd.lane_seq for bd in bodies) + 1
        pub = RawNats(port)
        pub.sub("_INBOX.flood", sid=7)
        for n in range(BUNDLES):
            flood = pb.bundle()
            for i in range(BODIES):
                k = n * BODIES + i
                bd = pb.body()
                bd.CopyFrom(genuine)
                bd.lane_seq = next_seq + k
                bd.created_at_ms = int(time.time() * 1000)
                # Another id of asia's making: its time and region bytes, then a counter.
                bd.message.id = base64.urlsafe_b64encode(raw_id[:8] + (k + 1).to_bytes(8, "big")).decode().rstrip("=")
                bd.message.client_id = "flood-%d" % k
                bd.message.body.text = "flood %d %s" % (k, PADDING)
                flood.bodies.append(bd.SerializeToString())
            flood.lane_epoch, flood.lane_base = bundle.lane_epoch, bundle.lane_base
            env = pb.envelope()
            env.origin, env.body = "asia", flood.SerializeToString()
            env.signature = sign(env.body)
            payload = env.SerializeToString()
            # (Not RawNats.pub: its PING after each would read past the answers.)
            pub.sock.sendall(b"PUB %s _INBOX.flood %d\r\n" % (subject.encode(), len(payload)) + payload + b"\r\n")
        # What america's stream said to each bundle: stored, or refused (asia's share full).
        taken = 0
        for _ in range(BUNDLES):
            answer = json.loads(pub.next_msg()[1])
            if "error" not in answer:
                taken += 1
            else:
                self.assertIn("maximum messages per subject exceeded", answer["error"].get("description", ""), answer)
        pub.close()
        self.assertGreater(taken, 0)
        self.assertLess(taken, BUNDLES, "asia's share of america's stream is less than its whole flood")
        published = fed_status(self.node("europe"))["published"]
        honest = self.connect(alice).send_message(bob, "honest")
        # The stream still takes europe's message: asia's flood is held to its share, not
        # to the whole stream (it would have filled it, and europe's would wait for america).
        test_federation.wait_status(self.node("europe"), lambda st: st["published"] > published)

        america.start()
        deadline = time.monotonic() + 60
        while True:
            applied = applied_from(america)
            if applied.get("europe", 0) >= 1:
                break
            self.assertLess(time.monotonic(), deadline, "europe's message was not applied: %s" % applied)
            time.sleep(0.01)
        # Read in stream order, europe's message would have waited for all of asia's.
        flood_total = taken * BODIES
        self.assertLess(applied.get("asia", 0), flood_total / 2, applied)

        b = self.connect(bob)
        b.wait_event(ev_message(honest["message_id"]), test_federation.DELIVERY_TIMEOUT_S)
        # And nothing the stream took of asia's is lost: every such message is applied, once.
        st = test_federation.wait_status(america, lambda st: st["applied"] >= flood_total + 1, 120, poll=0.5)
        self.assertEqual(st["applied"], flood_total + 1, st)
        self.assertEqual(applied_from(america), {"asia": flood_total, "europe": 1})


class BacklogPastItsShare(test_federation.FederationCase):
    """A real region's backlog larger than its share of the destination's stream: what the
    stream refuses stays in the outbox and goes when there is room, a bundle at a time from
    where it stopped; everything arrives, once, in order."""
    names = ("europe", "america")
    # The smallest share (16 messages of the stream's): the backlog below is many times it.
    federation = {"max_stream_bytes": 1 << 20}

    def test_everything_arrives(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        america = self.node("america")
        a = self.connect(alice)
        a.send_message(bob, "before")
        america.stop()
        # About 3.6 MB in 1,200 messages: with america away, europe's share of its stream
        # fills, and the rest waits in europe's outbox.
        texts = ["before"] + ["backlog %d %s" % (i, "y" * 3000) for i in range(1200)]
        for text in texts[1:]:
            a.send_message(bob, text)
        st = test_federation.wait_status(self.node("europe"), lambda st: "did not take" in (st.get("last_error") or ""))
        self.assertIn("did not take", st.get("last_error") or "", st)
        america.start()
        b = self.connect(bob)
        self.assert_exactly(b, texts, timeout=180)


if __name__ == "__main__":
    unittest.main()
