"""Smoke run of every petchat-bench workload: seconds, tiny sizes.

Asserts the tool works end to end against a real node and reports sane values (counts,
ordered percentiles, positive CPU and memory figures). Never asserts speed: figures are
for docs/BENCHMARKS.md, measured on purpose, not in tests.
"""

import json
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BENCH = os.environ.get("PETCHAT_BENCH") or os.path.join(REPO, "build", "bench", "petchat-bench")
NODE = os.environ.get("PETCHAT_NODE") or os.path.join(REPO, "build", "node", "app", "petchat-node")
ECHO = os.environ.get("PETCHAT_ECHO") or os.path.join(REPO, "build", "bench", "petchat-echo")


def bench(*args, timeout=120):
    cmd = [BENCH, "--json", "--node", NODE, "--echo", ECHO] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s" % (cmd, p.returncode, p.stdout, p.stderr[-3000:]))
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if len(lines) != 1:
        raise AssertionError("expected one JSON object from %s, got: %r" % (cmd, p.stdout))
    return json.loads(lines[0])


class BenchSmokeTest(unittest.TestCase):
    def assertOrderedLatency(self, s, count_at_least):
        self.assertGreaterEqual(s["count"], count_at_least, s)
        self.assertGreater(s["p50_ms"], 0, s)
        self.assertLessEqual(s["p50_ms"], s["p99_ms"], s)
        self.assertLessEqual(s["p99_ms"], s["p999_ms"], s)
        self.assertLessEqual(s["p999_ms"], s["max_ms"], s)
        self.assertLess(s["max_ms"], 60000, s)

    def test_throughput(self):
        r = bench("throughput", "--pairs", "2", "--window", "4", "--duration", "1")
        self.assertEqual(r["workload"], "throughput")
        self.assertGreater(r["completed"], 10, r)
        self.assertGreater(r["messages_per_s"], 0, r)
        self.assertGreater(r["server_cpu_us_per_message"], 0, r)
        self.assertGreater(r["tool_cpu_us_per_message"], 0, r)
        self.assertEqual(r["encoding"], "proto")
        for key in ("send_to_accepted", "send_to_recipient", "send_to_receipt"):
            self.assertOrderedLatency(r[key], r["completed"])
        # A delivered receipt comes after the message reached the recipient.
        self.assertGreaterEqual(r["send_to_receipt"]["p50_ms"], r["send_to_recipient"]["p50_ms"] * 0.5, r)
        self.assertGreater(r["echo_round_trips_per_s"], 0, r)
        self.assertGreater(r["ratio_to_echo"], 0, r)
        # The transport's own CPU per round trip: measured, and below petchat's per message
        # (a full sequence is six frames and two commits; an echo round trip two frames).
        self.assertGreater(r["echo_server_cpu_us_per_round_trip"], 0, r)
        self.assertLess(r["echo_server_cpu_us_per_round_trip"], r["server_cpu_us_per_message"], r)
        self.assertTrue(r["durable"])
        # Recipients ack once per read that brought events: at least one ack, and no more
        # than the messages they read (the completed ones and at most a window per pair more).
        acks = round(r["acks_per_message"] * r["completed"])
        self.assertGreater(acks, 0, r)
        self.assertLessEqual(acks, r["completed"] + 2 * 4, r)

    def test_throughput_json(self):
        # The same full sequence over the JSON subprotocol (the tool speaks it as a browser
        # would), with the tool's own CPU reported next to the node's.
        r = bench("--encoding", "json", "throughput", "--pairs", "2", "--window", "4", "--duration", "1")
        self.assertEqual(r["encoding"], "json")
        self.assertGreater(r["completed"], 10, r)
        self.assertGreater(r["server_cpu_us_per_message"], 0, r)
        self.assertGreater(r["tool_cpu_us_per_message"], 0, r)
        for key in ("send_to_accepted", "send_to_recipient", "send_to_receipt"):
            self.assertOrderedLatency(r[key], r["completed"])

    def test_pairs_range(self):
        # A list of pair counts runs the workload once per value, each on a fresh node.
        cmd = [BENCH, "--json", "--node", NODE, "--echo", ECHO, "throughput", "--pairs", "1,3", "--window", "2",
               "--duration", "0.5"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        runs = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        self.assertEqual([r["pairs"] for r in runs], [1, 3], p.stdout)
        for r in runs:
            self.assertGreater(r["completed"], 0, r)

    def test_throughput_without_durability(self):
        r = bench("--no-durability", "throughput", "--pairs", "2", "--window", "4", "--duration", "1")
        self.assertFalse(r["durable"])
        self.assertGreater(r["completed"], 10, r)

    def test_latency_open_loop(self):
        r = bench("latency", "--pairs", "2", "--rate", "200", "--duration", "1.5")
        self.assertEqual(r["workload"], "latency")
        # An open loop sends on schedule: about rate x duration, whatever the node does.
        self.assertGreater(r["completed"], 150, r)
        self.assertLess(r["completed"], 400, r)
        self.assertOrderedLatency(r["send_to_recipient"], 150)

    def test_connections(self):
        r = bench("connections", "--connections", "200", "--duration", "0.5")
        self.assertEqual(r["connections"], 200)
        self.assertGreater(r["connect_all_s"], 0, r)
        self.assertGreater(r["node_rss_before_bytes"], 0, r)
        self.assertGreater(r["node_rss_after_bytes"], 0, r)

    def test_startup(self):
        r = bench("startup", "--messages", "500")
        self.assertEqual(r["stored_messages"], 500)
        for key in ("ready_after_clean_stop_s", "ready_after_kill9_s"):
            self.assertGreater(r[key], 0, r)
            self.assertLess(r[key], 30, r)

    def test_federation_two_regions(self):
        r = bench("federation", "--pairs", "2", "--window", "4", "--duration", "1.5")
        self.assertEqual(r["workload"], "federation")
        self.assertGreater(r["completed"], 10, r)
        self.assertGreater(r["server_cpu_us_per_message"], 0, r)
        for key in ("send_to_accepted", "send_to_recipient", "send_to_receipt"):
            self.assertOrderedLatency(r[key], r["completed"])
        # Across regions the message is accepted at home before it reaches the other region.
        self.assertLessEqual(r["send_to_accepted"]["p50_ms"], r["send_to_recipient"]["p50_ms"], r)

    def test_federation_open_loop(self):
        r = bench("federation", "--pairs", "2", "--rate", "200", "--duration", "1.5")
        self.assertEqual(r["workload"], "federation-latency")
        self.assertEqual(r["rate"], 200)
        self.assertGreater(r["completed"], 100, r)
        self.assertOrderedLatency(r["send_to_recipient"], 100)

    def test_groups(self):
        # One sender and 4 other members: each accepted message is read by the 4, counted
        # where they read it, and by the end every member has every message.
        r = bench("groups", "--members", "5", "--duration", "1")
        self.assertEqual(r["workload"], "groups")
        self.assertEqual(r["members"], 5)
        self.assertEqual(r["encoding"], "proto")
        self.assertGreater(r["messages"], 10, r)
        self.assertGreater(r["messages_per_s"], 0, r)
        # Over the measured second: 4 deliveries per message, give or take a window's worth of
        # messages (8) accepted and not yet read at either end of it, whatever the rate.
        self.assertLessEqual(abs(r["deliveries"] - 4 * r["messages"]), 4 * 2 * r["window"], r)
        # At the end, exactly: every member read every message once.
        self.assertTrue(r["caught_up"], r)
        self.assertEqual(r["members_behind"], 0, r)
        self.assertEqual(r["messages_missing"], 0, r)
        self.assertEqual(r["streams_dropped"], 0, r)
        self.assertEqual(r["sends_unanswered"], 0, r)
        self.assertGreaterEqual(r["messages_total"], r["messages"], r)
        self.assertEqual(r["deliveries_total"], 4 * r["messages_total"], r)
        self.assertGreater(r["server_cpu_us_per_delivery"], 0, r)
        self.assertLess(r["server_cpu_us_per_delivery"], r["server_cpu_us_per_message"], r)
        self.assertGreater(r["tool_cpu_us_per_delivery"], 0, r)
        # A member acknowledges once per read that brought new events: at least one ack,
        # and at most one per delivery (plus one per member for events read just before).
        acks = r["acks_per_delivery"] * r["deliveries"]
        self.assertGreater(acks, 0, r)
        self.assertLessEqual(round(acks), r["deliveries"] + 4, r)

    def test_assets(self):
        r = bench("assets", "--size-mib", "4", "--concurrent", "20", "--images", "1")
        self.assertEqual(r["workload"], "assets")
        self.assertEqual(r["size_bytes"], 4 << 20)
        for key in ("disk_write_mib_s", "disk_read_mib_s", "loopback_mib_s", "upload_mib_s", "download_mib_s"):
            self.assertGreater(r[key], 0, (key, r))
        self.assertEqual(r["concurrent_ok"], 20, r)
        self.assertGreater(r["concurrent_peak_rss_bytes"], 0, r)
        self.assertGreater(r["thumbnail_cpu_ms_median"], 0, r)

    def test_groups_sizes_json(self):
        # A list of group sizes runs once per size, each on a fresh node; over the JSON
        # subprotocol the group's sends, reads and receipts go through the tool's JSON
        # frames. With --read the members mark what they get as read: a read the node
        # refused would end the member's stream.
        cmd = [BENCH, "--json", "--node", NODE, "--echo", ECHO, "--encoding", "json", "groups", "--members", "2,3",
               "--window", "2", "--duration", "0.5", "--read"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        runs = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        self.assertEqual([r["members"] for r in runs], [2, 3], p.stdout)
        for r in runs:
            self.assertEqual(r["encoding"], "json")
            self.assertGreater(r["messages"], 0, r)
            self.assertTrue(r["caught_up"], r)
            self.assertEqual(r["deliveries_total"], (r["members"] - 1) * r["messages_total"], r)
            self.assertEqual(r["streams_dropped"], 0, r)
            self.assertGreater(r["reads_per_delivery"], 0, r)
            self.assertLessEqual(r["reads_per_delivery"], 1, r)

    def test_group_of_the_default_maximum_size(self):
        # 1,000 members, the node's default messages.max_group_members: every message
        # reaches the 999 others, every member catches up.
        r = bench("groups", "--members", "1000", "--duration", "0.5")
        self.assertEqual(r["members"], 1000)
        self.assertGreater(r["messages_total"], 0, r)
        self.assertTrue(r["caught_up"], r)
        self.assertEqual((r["members_behind"], r["messages_missing"], r["streams_dropped"], r["sends_unanswered"]),
                         (0, 0, 0, 0), r)
        self.assertEqual(r["deliveries_total"], 999 * r["messages_total"], r)

    def test_groups_size_limit(self):
        # Above the node's default messages.max_group_members the tool refuses at once.
        p = subprocess.run([BENCH, "--node", NODE, "groups", "--members", "1001"], capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(p.returncode, 0)

    def test_echo(self):
        r = bench("echo", "--pairs", "2", "--window", "4", "--duration", "1")
        self.assertGreater(r["completed"], 100, r)


if __name__ == "__main__":
    unittest.main()
