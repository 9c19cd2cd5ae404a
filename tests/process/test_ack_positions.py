"""Each device's acknowledged position (docs/PROTOCOL.md, "Resuming"): a connection
without `after_seq` resumes after what that device acknowledged, exactly, whichever of the
user's devices acknowledged last and in whatever order, and after a `kill -9` of the node
right after the acknowledgements were answered.

Written from the protocol document only.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_messaging import MessagingCase  # noqa: E402
from wsclient import num  # noqa: E402


class AckPositionsTest(MessagingCase):
    NODE_CONFIG = None

    def test_each_device_resumes_after_its_own_acknowledgement(self):
        self.node = self.start_node()
        alice, bob = self.person("alice"), self.person("bob")
        A = self.ws(alice.login("alice phone"))
        for i in range(8):
            A.send_message(bob.id, "m%d" % i)
        devices = {name: bob.login("bob " + name) for name in ("phone", "laptop", "tablet")}

        def ack_from(name, seq):
            S = self.ws(devices[name], after_seq=0)
            S.wait_seq(8)
            self.assertEqual(num(S.ack(seq, wait=True)["acked"], "seq"), max(seq, want[name]))
            S.close()

        def resume_points():
            points = {}
            for name, session in devices.items():
                S = self.ws(session)
                points[name] = num(S.welcome, "resume_after")
                S.close()
            return points

        want = {name: 0 for name in devices}
        self.assertEqual(resume_points(), want, "no device acknowledged yet")
        # The devices take turns; the phone's lower acknowledgement later changes nothing.
        for name, seq in (("phone", 3), ("laptop", 6), ("phone", 5), ("tablet", 2), ("phone", 4), ("laptop", 7)):
            ack_from(name, seq)
            want[name] = max(seq, want[name])
            self.assertEqual(resume_points(), want, "after %s acknowledged %d" % (name, seq))

        self.node.kill9()  # right after the answers
        self.node.start()
        self.assertEqual(resume_points(), want, "after kill -9")
        # And the one that acknowledged last before the crash goes on from there.
        ack_from("laptop", 8)
        ack_from("tablet", 3)
        want.update(laptop=8, tablet=3)
        self.assertEqual(resume_points(), want)


if __name__ == "__main__":
    unittest.main()
