"""Push latency at a steady rate: from `accepted` (the sender's answer) to the push
arriving at an HTTPS receiver (docs/BENCHMARKS.md, "Push notifications"). Not part of the
test suite: run it by hand, e.g.

    PETCHAT_NODE=build-release/node/app/petchat-node \\
        /usr/bin/python3 tests/process/bench_push_latency.py --rate 20 --seconds 30

One sender sends to `recipients` users in turn, each with one offline device holding a Web
Push target on a local receiver (the test CA of pushrecv.py), at `rate` messages a second.
Recipients are enough that none gets a second message within the coalescing window, so
every message makes one push. Prints the median, p90, p99 and max of the latency and how
many pushes came.
"""

import argparse
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_push import PushCase  # noqa: E402

ARGS = None


class Latency(PushCase):

    def test_latency(self):
        rate, seconds = ARGS.rate, ARGS.seconds
        coalesce_s = 1.0
        recipients = max(ARGS.recipients, int(rate * coalesce_s * 2) + 1)
        self.start(push={"coalesce_ms": int(coalesce_s * 1000), "live_delay_ms": 2000},
                   messages={"max_per_second": 100000})
        recv = self.receiver()
        alice = self.person("alice")
        people = []
        for i in range(recipients):
            p = self.person("rcpt")
            s = p.login("phone")
            _, _, path = self.webpush(s, recv)
            people.append((p, path))
        a = self.ws(alice.login())
        sent = {}  # path -> [accepted times]
        lock = threading.Lock()
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            due = start + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            p, path = people[i % recipients]
            a.send_message(p.id, "m%d" % i)
            t = time.monotonic()
            with lock:
                sent.setdefault(path, []).append(t)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and recv.count() < n:
            time.sleep(0.2)
        lat = []
        for path, times in sent.items():
            reqs = recv.requests(path)
            for t_acc, req in zip(times, reqs):
                lat.append((req.t - t_acc) * 1000)
        lat.sort()

        def pct(q):
            return lat[min(len(lat) - 1, int(q * len(lat)))]

        print("\npush latency, accepted -> receiver: %d messages at %.0f/s to %d recipients, %d pushes arrived"
              % (n, rate, recipients, recv.count()))
        if lat:
            print("p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms" % (pct(0.5), pct(0.9), pct(0.99), lat[-1]))
        self.assertEqual(recv.count(), n, "every message pushed once")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--recipients", type=int, default=50)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)
