"""Federation over NATS servers whose max_payload is below the link's own bundle size
(512 KiB): large messages sent while the bus was down go out, once it is back, in bundles
the servers take. The link once filled a bundle up to 512 KiB plus one more body; a
server refused it every time, and every envelope after it to that region waited for ever."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import test_federation  # noqa: E402  (FederationCase: regions, users, streams)

MAX_PAYLOAD = 256 * 1024


def small_payload_topology(names, **kw):
    server = fedharness.NatsServer("shared", extra_conf="max_payload: %d" % MAX_PAYLOAD)
    return [server], fedharness.make_regions(names, {n: server for n in names}, **kw)


class SmallMaxPayload(test_federation.FederationCase):
    topology = staticmethod(small_payload_topology)
    node_config = {"messages": {"max_per_second": 5000, "max_text_bytes": 65536}}

    def test_large_messages_sent_while_the_bus_was_down_all_arrive(self):
        alice, bob = self.user("europe", "alice"), self.user("america", "bob")
        a, b = self.connect(alice), self.connect(bob)
        self.assert_exactly(b, self.send_many(a, bob, "small", 1))
        self.servers[0].kill9()
        # Twelve texts of 60 KiB wait in europe's outbox: 720 KiB, one round's worth.
        texts = ["%02d " % i + "x" * (60 * 1024) for i in range(12)]
        for t in texts:
            a.send_message(bob, t)
        self.servers[0].start()
        b.wait_until(lambda: len(test_federation.messages_of(b)) >= 13, 60, what="the 12 large messages")
        got = [m["body"]["text"] for m in test_federation.messages_of(b)][1:]
        self.assertEqual([t[:2] for t in got], ["%02d" % i for i in range(12)])
        self.assertEqual(got, texts)
        self.assert_outbox_drains("europe")


if __name__ == "__main__":
    unittest.main()
