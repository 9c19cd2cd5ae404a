#!/usr/bin/env python3
"""Metrics as an operator's Prometheus sees them: a real Prometheus server (Debian's
`prometheus`) scrapes a node's metrics listener while messages are sent, and the figures
are read back through Prometheus's HTTP API. `promtool check metrics` lints the
exposition, and `promtool test rules` runs the alert rules' unit tests (deploy/prometheus)."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wsclient  # noqa: E402
from harness import NodeTestCase  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
WAIT_S = 60
MESSAGES = 40


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A Prometheus server on loopback scraping one target every second."""

    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix="petchat-prometheus-")
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: petchat\n    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w+")
        for _ in range(5):  # the port may be taken between choosing and binding it
            self.port = free_port()
            self.proc = subprocess.Popen(
                [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
            if self.wait_ready():
                return
            self.proc.kill()
            self.proc.wait()
        raise AssertionError("prometheus did not start:\n" + self.output())

    def wait_ready(self):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/-/ready")
                if conn.getresponse().status == 200:
                    return True
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        return False

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = "%.3f" % at
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/api/v1/query?" + urllib.parse.urlencode(params))
            body = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        if body.get("status") != "success":
            raise AssertionError("query %r failed: %r" % (expr, body))
        return body["data"]["result"]

    def value(self, expr, at=None):
        """The single sample `expr` gives, or None."""
        result = self.query(expr, at)
        if len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def wait_value(self, expr, pred, what):
        deadline = time.monotonic() + WAIT_S
        while True:
            v = self.value(expr)
            if v is not None and pred(v):
                return v
            if time.monotonic() > deadline:
                raise AssertionError("%s: %s is %r after %d s\n%s" % (what, expr, v, WAIT_S, self.output()))
            time.sleep(0.3)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrometheusTest(NodeTestCase):
    def test_a_real_prometheus_scrapes_what_happens(self):
        node = self.start_node()
        prom = Prometheus("127.0.0.1:%d" % node.metrics_port)
        self.addCleanup(prom.close)
        prom.wait_value('up{job="petchat"}', lambda v: v == 1, "the node is scraped")
        # A sample from before the load: the window of the rate below starts at it.
        prom.wait_value("petchat_messages_accepted_total", lambda v: v == 0, "nothing accepted yet")
        first = prom.value("timestamp(petchat_messages_accepted_total)")

        node.new_user("alice")
        node.new_user("bob")
        alice = wsclient.connect(node, node.new_session("alice")["access_token"])
        bob = wsclient.connect(node, node.new_session("bob")["access_token"])
        self.addCleanup(alice.close)
        self.addCleanup(bob.close)
        for i in range(MESSAGES):
            alice.send_message("bob@%s" % node.config["node"]["region"], "scraped %d" % i)
        accepted = prom.wait_value("petchat_messages_accepted_total", lambda v: v == MESSAGES, "all counted")
        self.assertEqual(accepted, MESSAGES)
        last = prom.value("timestamp(petchat_messages_accepted_total)")
        self.assertEqual(prom.value("petchat_messages_accepted_total", at=last), MESSAGES)

        # rate() over a window from a sample before the load to the first one after it, times
        # the window, is what was sent: at the window's end there is a sample (nothing to
        # extrapolate), and before its first sample the counter was 0 (Prometheus does not
        # extrapolate below zero).
        window_ms = int((last - first) * 1000) + 500
        rate = prom.value("rate(petchat_messages_accepted_total[%dms])" % window_ms, at=last)
        self.assertIsNotNone(rate)
        self.assertAlmostEqual(rate * window_ms / 1000, MESSAGES, delta=0.01,
                               msg="rate %r over %d ms" % (rate, window_ms))
        window = int(time.time() - first) + 2

        # The series an operator's dashboard and alerts read are there.
        for expr in ['petchat_send_accepted_seconds_count', 'petchat_store_commit_seconds_count{store="messages"}',
                     'petchat_store_commit_seconds_count{store="users"}',
                     'petchat_store_commit_batch_size_count{store="messages"}',
                     'petchat_http_request_duration_seconds_count{route="/v1/users",method="POST",status="201"}',
                     'petchat_http_request_duration_seconds_count{route="/v1/sessions",method="POST",status="201"}',
                     'petchat_ws_streams', 'petchat_http_connections{listener="gateway"}',
                     'process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds',
                     'petchat_store_lmdb_used_bytes', 'petchat_store_rocksdb_bytes{kind="wal"}',
                     'petchat_data_dir_available_bytes']:
            with self.subTest(series=expr):
                self.assertIsNotNone(prom.wait_value(expr, lambda v: v >= 0, "series present"), expr)
        self.assertEqual(prom.value('petchat_send_accepted_seconds_count'), MESSAGES)
        self.assertEqual(prom.value('petchat_ws_streams'), 2)
        # Two users registered, two logins: at least that many durable account writes.
        self.assertGreaterEqual(prom.value('petchat_store_commit_batch_size_sum{store="users"}'), 4)
        # The latency histogram gives a median: positive and under the histogram's top.
        p50 = prom.value("histogram_quantile(0.5, sum by (le) (rate(petchat_send_accepted_seconds_bucket[%ds])))"
                         % window)
        self.assertIsNotNone(p50)
        self.assertGreater(p50, 0)
        self.assertLess(p50, 10)

    def test_promtool_finds_nothing_to_fix_in_the_exposition(self):
        node = self.start_node()
        node.new_user("carol")  # labelled series (routes, stores) as well as the bare ones
        node.new_session("carol")
        r = node.scrape()
        self.assertStatus(r, 200)
        out = subprocess.run([PROMTOOL, "check", "metrics"], input=r.raw, capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, (out.stdout + out.stderr).decode())
        self.assertEqual((out.stdout + out.stderr).decode().strip(), "")


if __name__ == "__main__":
    unittest.main()
