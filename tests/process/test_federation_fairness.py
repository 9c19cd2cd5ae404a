"""Federation: one region's backlog does not hold up another's (docs/FEDERATION.md,
"Choices, and why": "Origins take turns"). A region reads each origin's envelopes with a consumer of its own
and applies them with the origins taking turns, so a region back from a long partition,
or a hostile one that floods with its genuine key, delays the others' envelopes by about
one store write, not by its whole backlog. Nothing of either is lost."""
import base64
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

BUNDLES = 200  # of 256 messages each: 51,200 messages from asia
BODIES = 256


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
                bd.message.body.text = "flood %d" % k
                flood.bodies.append(bd.SerializeToString())
            flood.lane_epoch, flood.lane_base = bundle.lane_epoch, bundle.lane_base
            env = pb.envelope()
            env.origin, env.body = "asia", flood.SerializeToString()
            env.signature = sign(env.body)
            pub.pub(subject, env.SerializeToString())
        pub.flush()
        pub.close()
        published = fed_status(self.node("europe"))["published"]
        honest = self.connect(alice).send_message(bob, "honest")
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
        flood_total = BUNDLES * BODIES
        self.assertLess(applied.get("asia", 0), flood_total / 2, applied)

        b = self.connect(bob)
        b.wait_event(ev_message(honest["message_id"]), test_federation.DELIVERY_TIMEOUT_S)
        # And nothing of asia's is lost: every message of the flood is applied, once.
        st = test_federation.wait_status(america, lambda st: st["applied"] >= flood_total + 1, 120, poll=0.5)
        self.assertEqual(st["applied"], flood_total + 1, st)
        self.assertEqual(applied_from(america), {"asia": flood_total, "europe": 1})


if __name__ == "__main__":
    unittest.main()
