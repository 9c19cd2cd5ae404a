#!/usr/bin/env python3
"""Metrics as an operator's Prometheus sees them: a real Prometheus server (Debian's
`prometheus`) scrapes a node's metrics listener while messages are sent, and the figures
are read back through Prometheus's HTTP API. `promtool check metrics` lints the
exposition.

The operator's monitoring files (deploy/: alert rules, their unit tests, an example
Prometheus config, Grafana dashboards; docs/OPERATIONS.md, "Monitoring") are checked by
promtool, and every query in them is run by a real Prometheus against two real federated
regions: each metric they name must be exported, each dashboard query must find series."""
import glob
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import wsclient  # noqa: E402
import yaml  # noqa: E402
from harness import NodeTestCase, free_port  # noqa: E402
from pushrecv import PushReceiver, Reply  # noqa: E402
from test_federation import RawNats  # noqa: E402
from test_push import push_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
WAIT_S = 60
MESSAGES = 40


class Prometheus:
    """A Prometheus server on loopback scraping its targets every second as job "petchat",
    and evaluating `rule_files` every second. A target is "host:port", or ("host:port",
    {label: value}) for one with target labels."""

    def __init__(self, *targets, rule_files=()):
        self.dir = tempfile.mkdtemp(prefix="petchat-prometheus-")
        config = os.path.join(self.dir, "prometheus.yml")
        groups = [{"targets": [t]} if isinstance(t, str) else {"targets": [t[0]], "labels": t[1]} for t in targets]
        with open(config, "w") as f:
            # JSON is YAML.
            json.dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                       "rule_files": list(rule_files),
                       "scrape_configs": [{"job_name": "petchat", "static_configs": groups}]}, f)
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

    def api(self, path, params=None):
        """GET /api/v1/<path>: its `data`; fails unless Prometheus answers success."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/api/v1/" + path + ("?" + urllib.parse.urlencode(params) if params else ""))
            body = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        if body.get("status") != "success":
            raise AssertionError("%s %r failed: %r" % (path, params, body))
        return body["data"]

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = "%.3f" % at
        return self.api("query", params)["result"]

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

    def test_made_up_paths_make_no_new_series(self):
        # Every request is counted by route, method and status: an anonymous client naming
        # made-up paths built of the API's own words must not add a series per path.
        node = self.start_node()
        words = ["admin", "me", "push", "users", "targets", "messages", "members", "settings", "status", "x1"]
        conn = node.connection()
        for i in range(300):
            path = "/v1/" + "/".join(words[(i >> (2 * k)) % len(words)] for k in range(1 + i % 5))
            conn.request("GET", path)
            conn.getresponse().read()
        text = node.scrape().raw.decode()
        routes = set(re.findall(r'petchat_http_request_duration_seconds_count\{[^}]*route="([^"]*)"', text))
        self.assertLessEqual(len(routes), 30, sorted(routes))
        self.assertIn("/v1/{other}", routes)

    def test_the_metrics_listeners_refusals_are_counted(self):
        node = self.start_node()
        conn = http.client.HTTPConnection("127.0.0.1", node.metrics_port, timeout=15)
        for method, path in (("GET", "/not-metrics"), ("POST", "/metrics")):
            conn.request(method, path)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 404 if path != "/metrics" else 405)
            self.assertEqual(r.getheader("Cache-Control"), "no-store", "an error answer is never cached")
        text = node.scrape().raw.decode()
        m = re.search(r'petchat_http_requests_total\{api="metrics",status="4xx"\} (\d+)', text)
        self.assertTrue(m, "no 4xx series for the metrics listener")
        self.assertEqual(int(m.group(1)), 2)


DEPLOY = os.path.join(REPO, "deploy")
RULES = os.path.join(DEPLOY, "prometheus", "petchat-alerts.yml")
RULE_TESTS = os.path.join(DEPLOY, "prometheus", "petchat-alerts.test.yml")
PROMETHEUS_CONFIG = os.path.join(DEPLOY, "prometheus", "prometheus.yml")
DASHBOARDS = os.path.join(DEPLOY, "grafana", "dashboards")
PROVISIONING = os.path.join(DEPLOY, "grafana", "provisioning")

# Words of PromQL that look like metric names.
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                   "offset", "inf", "nan"}
# Grafana's own variables, as a 1-second scrape interval makes them.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue  # 1e3, 5m
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def grafana_variables(expr):
    return {a or b for a, b in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", expr)}


def substitute(expr, values):
    """A Grafana query with its variables replaced, as Grafana sends it to Prometheus."""
    values = dict(values, **GRAFANA_BUILTINS)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


def load_dashboards():
    paths = sorted(glob.glob(os.path.join(DASHBOARDS, "*.json")))
    out = {}
    for path in paths:
        with open(path) as f:
            out[os.path.basename(path)] = json.load(f)
    return out


def dashboard_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", ())  # a collapsed row's


def dashboard_queries(dash):
    """(where, expr, kind) of every query: kind "panel", "annotation" or "variable"
    (label_values(selector, label): the selector)."""
    for p in dashboard_panels(dash):
        for t in p.get("targets", ()):
            yield "panel %r %s" % (p["title"], t["refId"]), t["expr"], "panel"
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            yield "annotation %r" % a["name"], a["expr"], "annotation"
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            assert m, "variable %s: not label_values(selector, label): %r" % (v["name"], q)
            yield "variable %s (label %s)" % (v["name"], m.group(2)), m.group(1), "variable"


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def alert_rules():
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args, cwd=None):
    out = subprocess.run([PROMTOOL] + list(args), capture_output=True, timeout=120, cwd=cwd)
    return out.returncode, (out.stdout + out.stderr).decode()


class MonitoringFilesTest(NodeTestCase):
    """deploy/: what docs/OPERATIONS.md ("Monitoring") tells an operator to load."""

    def test_promtool_finds_the_alert_rules_valid(self):
        rc, out = promtool("check", "rules", RULES)
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS: %d rules found" % len(alert_rules()), out)
        for rule in alert_rules():
            with self.subTest(alert=rule["alert"]):
                self.assertIn("for", rule)
                self.assertIn(rule["labels"].get("severity"), ("warning", "critical"))
                self.assertEqual(set(rule["annotations"]), {"summary", "description", "runbook_url"})
                self.assertEqual(rule["annotations"]["runbook_url"], "docs/OPERATIONS.md#" + rule["alert"].lower())
                self.assertIn('job="petchat"', rule["expr"])

    def test_every_alert_has_a_runbook_in_the_operations_guide(self):
        with open(os.path.join(REPO, "docs", "OPERATIONS.md")) as f:
            headings = re.findall(r"^#{2,4} (\S+)\s*$", f.read(), re.M)
        for rule in alert_rules():
            with self.subTest(alert=rule["alert"]):
                self.assertIn(rule["alert"], headings)

    def test_promtool_unit_tests_of_every_alert_pass(self):
        rc, out = promtool("test", "rules", RULE_TESTS, cwd=os.path.dirname(RULE_TESTS))
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out)
        fires, quiet = set(), set()
        for test in load_yaml(RULE_TESTS)["tests"]:
            for t in test.get("alert_rule_test", ()):
                (fires if t.get("exp_alerts") else quiet).add(t["alertname"])
        names = {r["alert"] for r in alert_rules()}
        self.assertEqual(fires, names, "an input that fires each alert")
        self.assertEqual(quiet, names, "and one that must not")

    def test_promtool_finds_the_example_config_valid(self):
        # From another directory: the rule file is found next to the config.
        rc, out = promtool("check", "config", PROMETHEUS_CONFIG, cwd=tempfile.gettempdir())
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS: 1 rule files found", out)
        config = load_yaml(PROMETHEUS_CONFIG)
        [job] = [j for j in config["scrape_configs"] if j["job_name"] == "petchat"]
        regions = [g["labels"]["node_region"] for g in job["static_configs"]]
        self.assertEqual(regions, ["europe", "america"])

    def test_dashboards_import_anywhere(self):
        dashboards = load_dashboards()
        self.assertEqual(sorted(d["uid"] for d in dashboards.values()), ["petchat-federation", "petchat-region"])
        for name, dash in dashboards.items():
            with self.subTest(dashboard=name):
                self.assertGreaterEqual(dash["schemaVersion"], 36, "Grafana 9 or later")
                self.assertNotIn("__inputs", dash)
                variables = {v["name"]: v for v in dash["templating"]["list"]}
                self.assertEqual(variables["datasource"]["type"], "datasource")
                self.assertEqual(variables["datasource"]["query"], "prometheus")
                for v in ("job", "region", "instance"):
                    self.assertIn(v, variables)
                # Every query names the data source through the variable: no uid of one Grafana.
                text = json.dumps(dash)
                for uid in re.findall(r'"uid": "([^"]*)"', text):
                    self.assertIn(uid, (dash["uid"], "${datasource}", "-- Grafana --"))
                ids = [p["id"] for p in dashboard_panels(dash)]
                self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
                for p in dashboard_panels(dash):
                    g = p["gridPos"]
                    self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
                    if p["type"] != "row":
                        self.assertTrue(p.get("targets"), p["title"])
                        self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})
                for where, expr, _ in dashboard_queries(dash):
                    for var in grafana_variables(expr):
                        self.assertTrue(var in variables or var in GRAFANA_BUILTINS,
                                        "%s uses $%s, which the dashboard does not define" % (where, var))
        providers = load_yaml(os.path.join(PROVISIONING, "dashboards", "petchat.yml"))["providers"]
        self.assertEqual([p["type"] for p in providers], ["file"])
        sources = load_yaml(os.path.join(PROVISIONING, "datasources", "prometheus.yml"))["datasources"]
        self.assertEqual([s["type"] for s in sources], ["prometheus"])

    def test_dashboards_and_alerts_read_what_two_real_regions_export(self):
        europe, america = self.start_regions()
        self.make_traffic(europe, america)
        exported = set()
        for node in (europe, america):
            r = node.scrape()
            self.assertStatus(r, 200)
            exported |= {line.split("{")[0].split(" ")[0] for line in r.raw.decode().splitlines()
                         if line and not line.startswith("#")}

        # Every metric a dashboard or an alert reads is one the nodes export.
        used = {}
        for name, dash in load_dashboards().items():
            for where, expr, _ in dashboard_queries(dash):
                for metric in metric_names(expr):
                    used.setdefault(metric, "%s %s" % (name, where))
        for rule in alert_rules():
            for metric in metric_names(rule["expr"]):
                used.setdefault(metric, "alert " + rule["alert"])
        used.pop("up")  # Prometheus's own, for each target
        # Only nodes with their own TLS export it (these two speak plain HTTP): test_tls.py.
        used.pop("petchat_tls_certificate_expiry_timestamp_seconds")
        self.assertGreater(len(used), 30)
        for metric, where in sorted(used.items()):
            with self.subTest(metric=metric):
                self.assertTrue(metric in exported, "%s reads %s, which no node exports" % (where, metric))

        prom = Prometheus(("127.0.0.1:%d" % europe.metrics_port, {"node_region": "europe"}),
                          ("127.0.0.1:%d" % america.metrics_port, {"node_region": "america"}),
                          rule_files=[RULES])
        self.addCleanup(prom.close)
        prom.wait_value('count(up{job="petchat"} == 1)', lambda v: v == 2, "both nodes are scraped")

        # Every dashboard query, with its variables set as Grafana would for europe, is one
        # Prometheus takes and finds series for (once two scrapes make rates).
        values = {"job": "petchat", "region": "europe", "instance": "127.0.0.1:%d" % europe.metrics_port,
                  "peer": "america", "datasource": "prometheus"}
        for name, dash in load_dashboards().items():
            for where, expr, kind in dashboard_queries(dash):
                promql = substitute(expr, values)
                with self.subTest(dashboard=name, query=where):
                    if kind == "annotation":
                        prom.query(promql)  # valid; nothing restarted, so empty
                        continue
                    deadline = time.monotonic() + WAIT_S
                    while not prom.query(promql) and time.monotonic() < deadline:
                        time.sleep(0.5)
                    result = prom.query(promql)
                    self.assertTrue(result, "%s: no series for %s" % (where, promql))
                    if kind == "variable":
                        label = re.search(r"\(label (\w+)\)", where).group(1)
                        self.assertTrue(all(label in r["metric"] for r in result), (where, result))

        # Prometheus evaluates every rule without an error...
        names = {r["alert"] for r in alert_rules()}
        deadline = time.monotonic() + WAIT_S
        while True:
            rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
            if all(r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown" for r in rules):
                break
            self.assertLess(time.monotonic(), deadline, "rules not evaluated: %r" % rules)
            time.sleep(0.5)
        self.assertEqual({r["name"] for r in rules}, names)
        for r in rules:
            with self.subTest(alert=r["name"]):
                self.assertEqual((r["health"], r.get("lastError", "")), ("ok", ""), r["query"])
        # ...and the refused envelope (make_traffic) is what the alert for it sees, with the
        # labels the runbook speaks of.
        alert = prom.wait_value('ALERTS{alertname="PetchatFederationEnvelopesRejected", job="petchat", '
                                'node_region="europe", reason="malformed", severity="warning"}',
                                lambda v: v == 1, "the alert is pending")
        self.assertEqual(alert, 1)
        self.assertIsNone(prom.value('ALERTS{alertname="PetchatNodeDown"}'))

    def start_regions(self):
        push = push_config()
        servers, regions = fedharness.shared_topology(["europe", "america"], config={"push": push})
        for s in servers:
            self.addCleanup(s.close)
        nodes = (regions["europe"].node, regions["america"].node)
        for n in nodes:
            self._nodes.append(n)  # stopped (exit 0 asserted) at tearDown, output shown on failure
            self.addCleanup(n.close)
        self.nats_port = servers[0].port
        return nodes

    def make_traffic(self, europe, america):
        """Enough that every labelled series the dashboards read exists on europe."""
        for name in ("alice", "carol"):
            europe.new_user(name)
        america.new_user("bob")
        self.assertStatus(europe.login("alice", "not alice's password"), 401)

        # carol's phone: a Matrix push target whose pushkey the gateway rejects (gone).
        recv = PushReceiver()
        self.addCleanup(recv.close)
        path = "/gw/monitoring/_matrix/push/v1/notify"
        recv.script(path, then=Reply(200, json={"rejected": ["pk-carol"]}))
        carol = europe.new_session("carol")["access_token"]
        r = europe.request("POST", "/v1/push/targets", {"kind": "matrix", "gateway_url": recv.url(path),
                                                         "app_id": "org.example.app", "pushkey": "pk-carol"},
                           token=carol)
        self.assertStatus(r, 201)

        alice = wsclient.connect(europe, europe.new_session("alice")["access_token"])
        self.addCleanup(alice.close)
        alice.send_message("carol@europe", "pushed")
        alice.send_message("bob@america", "across")
        self.assertIn("error", alice.try_send("nobody@europe", "refused"))
        alice.close()  # a disconnect, by reason
        # From america to europe: an envelope europe applies (the delivery latency panel).
        bob = wsclient.connect(america, america.new_session("bob")["access_token"])
        self.addCleanup(bob.close)
        bob.send_message("alice@europe", "back across")
        bob.close()

        # Something on NATS that is not an envelope, on europe's inbound subject: refused.
        nats = RawNats(self.nats_port)
        nats.pub("petchat.v1.fed.europe.america", b"\x00not an envelope")
        nats.close()

        deadline = time.monotonic() + WAIT_S
        want = ('petchat_push_sent_total{kind="matrix",result="gone"}', 'petchat_push_targets_removed_total{',
                'petchat_federation_envelopes_rejected_total{reason="malformed"}', 'petchat_ws_disconnects_total{',
                'petchat_messages_rejected_total{', 'petchat_federation_applied_seconds_bucket{region="america"')
        while True:
            text = europe.scrape().raw.decode()
            missing = [w for w in want if w not in text]
            if not missing:
                return
            self.assertLess(time.monotonic(), deadline, "europe does not export %s" % missing)
            time.sleep(0.3)


if __name__ == "__main__":
    unittest.main()
