"""A node's life as an operator and systemd see it: the data dir's record (region, format,
age) and what a start does with it; --require-region and PETCHAT_REGION (the packaged
unit); systemd's notify protocol (ready, reloading, stopping, watchdog), spoken to over a
real notify socket as systemd would."""

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import READY_PREFIX, NodeTestCase, run_node_cli  # noqa: E402


def read_record(node):
    with open(os.path.join(node.data_dir, "datadir.json")) as f:
        return json.load(f)


def write_record(node, text):
    with open(os.path.join(node.data_dir, "datadir.json"), "w") as f:
        f.write(text)


class DataDirRecordTest(NodeTestCase):

    def test_first_start_records_region_format_and_age(self):
        before = time.time()
        node = self.start_node(config={"node": {"region": "eu-west"}})
        rec = read_record(node)
        self.assertEqual(rec["region"], "eu-west")
        self.assertEqual(rec["format"], 8)
        made = time.mktime(time.strptime(rec["created_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        self.assertLess(abs(made - before), 120, rec)
        self.assertEqual(os.stat(os.path.join(node.data_dir, "datadir.json")).st_mode & 0o777, 0o600)
        # The admin API and petchatctl say it.
        r = node.admin("GET", "/v1/admin/status")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data_format"], 8)
        self.assertEqual(r.json["data_created_at"], rec["created_at"])
        rc, out, err = node.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertIn("(format 8, made %s)" % rec["created_at"], out)
        # A restart keeps the record as it was.
        node.restart()
        self.assertEqual(read_record(node), rec)

    def test_formats_1_and_2_are_upgraded_in_place(self):
        # Formats 2 to 8 changed how group messages, changes, asset references and push
        # targets are stored; a format 1 to 7 data dir's stores are read as they are (the
        # indexes of formats 5 to 8 written at the first start), and the record says 8
        # from then on (so that an older build refuses it), keeping its age and saying what
        # it was.
        for old in (1, 2, 3, 4, 5, 6, 7):
            with self.subTest(format=old):
                node = self.start_node()
                node.new_user("alice")
                node.stop()
                rec = read_record(node)
                rec["format"] = old
                write_record(node, json.dumps(rec))
                node.start()
                now = read_record(node)
                self.assertEqual((now["format"], now["upgraded_from"], now["created_at"]), (8, old, rec["created_at"]),
                                 now)
                self.assertTrue(any("upgraded from format %d to 8" % old in line
                                    for line in node.stderr_lines + node.stdout_lines))
                self.assertStatus(node.login("alice", "password123"), 201)

    def test_newer_format_is_refused_and_left_alone(self):
        node = self.start_node()
        node.new_user("alice")
        node.stop()
        rec = read_record(node)
        rec["format"] = 9
        newer = json.dumps(rec)
        write_record(node, newer)
        rc, out, err = run_node_cli(*node.command()[1:], cwd=node.workdir)
        self.assertEqual(rc, 2, err)
        self.assertIn("has store format 9, newer than this petchat-node understands (format 8)", err)
        self.assertNotIn(READY_PREFIX, out)
        with open(os.path.join(node.data_dir, "datadir.json")) as f:
            self.assertEqual(f.read(), newer, "a refused start must not rewrite the record")

    def test_damaged_record_is_refused(self):
        node = self.start_node()
        node.stop()
        for text, why in [("{not json", "not a JSON object"), ('{"region": "test", "created_at": "x"}', "no format"),
                          ('{"format": 1, "created_at": "2026-01-01T00:00:00Z"}', "no region")]:
            write_record(node, text)
            rc, out, err = run_node_cli(*node.command()[1:], cwd=node.workdir)
            self.assertEqual(rc, 2, text + ": an operator must act (systemd does not restart exit 2)")
            self.assertIn("datadir.json is damaged (" + why, err)
            self.assertNotIn(READY_PREFIX, out)


class RequireRegionTest(NodeTestCase):

    def test_no_region_refused_until_one_is_configured(self):
        node = self.start_node(config={"node": {"region": None}}, extra_args=["--require-region"], start=False)
        env = {k: v for k, v in os.environ.items() if k != "PETCHAT_REGION"}
        rc, out, err = run_node_cli(*node.command()[1:], cwd=node.workdir, env=env)
        self.assertEqual(rc, 2, err)
        self.assertIn("no region is configured", err)
        self.assertIn("dpkg-reconfigure petchat-node", err)
        self.assertNotIn(READY_PREFIX, out)
        self.assertFalse(os.path.exists(os.path.join(node.data_dir, "datadir.json")), "nothing bound to 'local'")
        # A bad name in the environment is named as such.
        rc, out, err = run_node_cli(*node.command()[1:], cwd=node.workdir, env=dict(env, PETCHAT_REGION="Bad Name"))
        self.assertEqual(rc, 2, err)
        self.assertIn("PETCHAT_REGION: region name must be", err)
        # PETCHAT_REGION (what debconf's answer becomes) is a configured region.
        node.env = dict(env, PETCHAT_REGION="europe")
        node.start()
        self.assertEqual(node.new_user("alice")["id"], "alice@europe")
        self.assertEqual(read_record(node)["region"], "europe")

    def test_flag_over_environment_over_file(self):
        env = dict(os.environ, PETCHAT_REGION="europe")
        node = self.start_node(config={"node": {"region": "filed"}}, start=False)
        node.env = env
        node.start()
        self.assertEqual(node.new_user("alice")["id"], "alice@europe")
        node.stop()
        other = self.start_node(config={"node": {"region": "filed"}}, extra_args=["--region", "asia"], start=False)
        other.env = env
        other.start()
        self.assertEqual(other.new_user("bob")["id"], "bob@asia")


class NotifyTest(NodeTestCase):
    """systemd's notify protocol: datagrams of NAME=value lines on $NOTIFY_SOCKET."""

    def notify_socket(self):
        d = tempfile.mkdtemp(prefix="petchat-notify-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        self.addCleanup(s.close)
        return s, path

    def next_message(self, s, want, timeout=15):
        """The next datagram holding the line `want`, as a dict; skips others (returned too)."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("no %s from the node within %s s; got %r" % (want, timeout, skipped))
            s.settimeout(left)
            try:
                data = s.recv(4096).decode()
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            if want in data.split("\n"):
                return fields, skipped
            skipped.append(data)

    def test_ready_watchdog_reload_and_stop(self):
        s, path = self.notify_socket()
        node = self.start_node(start=False)
        node.env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
        node.env.pop("WATCHDOG_PID", None)
        node.start()
        ready, _ = self.next_message(s, "READY=1")
        self.assertIn("serving region test, chat on 127.0.0.1:%d" % node.port, ready.get("STATUS", ""))
        # WatchdogSec=0.4 s: pinged at about half of it, again and again.
        for _ in range(3):
            self.next_message(s, "WATCHDOG=1", timeout=10)
        # SIGHUP: reloading, then ready again.
        node.proc.send_signal(signal.SIGHUP)
        reloading, _ = self.next_message(s, "RELOADING=1")
        self.assertIn("reading the configuration again", reloading.get("STATUS", ""))
        self.next_message(s, "READY=1")
        self.assertTrue(node.running())
        node.stop()
        stopping, _ = self.next_message(s, "STOPPING=1")
        self.assertIn("stopping", stopping.get("STATUS", ""))

    def test_no_watchdog_pings_unless_asked(self):
        s, path = self.notify_socket()
        node = self.start_node(start=False)
        node.env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        node.env["NOTIFY_SOCKET"] = path
        node.start()
        self.next_message(s, "READY=1")
        node.stop()
        _, before_stop = self.next_message(s, "STOPPING=1")
        self.assertFalse([m for m in before_stop if "WATCHDOG=1" in m], before_stop)


if __name__ == "__main__":
    unittest.main()
