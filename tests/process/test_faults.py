"""Faults an operator meets: a damaged write-ahead log, a full disk, a damaged LMDB file,
and the costs a hostile or unlucky client can impose (a long mailbox acknowledged by new
devices, storage under retention). Real petchat-node processes, spoken to as clients and
admins do."""

import glob
import json
import os
import re
import shutil
import subprocess
import time
import unittest

import wsclient
from harness import NodeStartError, NodeTestCase

PW = "password123"


def metric(node, name):
    r = node.scrape()
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.eE+-]+)$" % re.escape(name), r.raw.decode(), re.M)
    if not m:
        raise AssertionError("no metric %s in /metrics" % name)
    return float(m.group(1))


def wait_log(node, text, timeout=10):
    """Waits until a line of the node's log holds `text`; that line."""
    deadline = time.monotonic() + timeout
    while True:
        for line in list(node.stderr_lines):
            if text in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError("no log line with %r\n%s" % (text, node.diagnostics()))
        time.sleep(0.1)


def admin_status(node):
    r = node.admin("GET", "/v1/admin/status")
    if r.status != 200:
        raise AssertionError("admin status: %s" % r.describe())
    return r.json


class Pair:
    """alice and bob, each with a session, on one node."""

    def __init__(self, case, node, a="alice", b="bob"):
        node.new_user(a)
        node.new_user(b)
        self.a_id, self.b_id = "%s@test" % a, "%s@test" % b
        self.a, self.b = node.new_session(a), node.new_session(b)


def send_many(client, to, n, prefix="m", window=64):
    """Sends n messages pipelined (window at a time); returns the accepted answers in order."""
    out = []
    while len(out) < n:
        refs = [client.send_async(to, "%s %d" % (prefix, len(out) + i)) for i in range(min(window, n - len(out)))]
        for r in refs:
            f = client.wait_ref(r, timeout=30)
            if "accepted" not in f:
                raise AssertionError("send answered %s" % json.dumps(f))
            out.append(f["accepted"])
    return out


class DamagedWriteAheadLogTest(NodeTestCase):
    """A byte flipped in the middle of the message store's WAL: the node refuses to start
    rather than replaying up to the damage (which lost acknowledged messages and handed
    their seqs out again); --salvage-messages starts it with seqs that jump ahead."""

    def test_refuses_then_salvage_never_reuses_a_seq(self):
        node = self.start_node(config={"messages": {"max_per_second": 100000}})
        p = Pair(self, node)
        node.new_user("carol")  # an account with no mailbox entry at all (all lost, say)
        carol = node.new_session("carol")
        a = wsclient.connect(node, p.a)
        try:
            send_many(a, p.b_id, 300)
        finally:
            a.close()
        node.kill9()
        logs = sorted(glob.glob(os.path.join(node.data_dir, "messages", "*.log")), key=os.path.getsize)
        self.assertTrue(logs, "no write-ahead log in %s" % os.listdir(os.path.join(node.data_dir, "messages")))
        wal = logs[-1]
        size = os.path.getsize(wal)
        self.assertGreater(size, 30000, "the WAL holds the 300 messages")
        with open(wal, "r+b") as f:
            f.seek(size // 3)
            b = f.read(1)
            f.seek(size // 3)
            f.write(bytes([b[0] ^ 0x5A]))

        with self.assertRaises(NodeStartError) as refused:
            node.start()
        text = str(refused.exception)
        self.assertRegex(text, "(?i)damaged", text)
        self.assertIn("--salvage-messages", text)

        node.extra_args = ["--salvage-messages"]
        node.start()
        st = admin_status(node)
        self.assertIsNotNone(st["messages"]["salvaged_at"], st)
        rc, out, err = node.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertIn("salvaged", out, out)
        bob = wsclient.connect(node, p.b, after_seq=0)
        a = wsclient.connect(node, p.a)
        try:
            head = int(bob.welcome["mailbox_seq"])
            self.assertGreater(head, 300, "bob's mailbox continues beyond every seq handed out before")
            acc = a.send_message(p.b_id, "after the salvage")
            ev = bob.wait_event(wsclient.ev_message(acc["message_id"]))
            self.assertGreater(int(ev["seq"]), 300)
            # Every account's mailbox jumped, not only those the store still had.
            c = wsclient.connect(node, carol, after_seq=0)
            try:
                self.assertGreater(int(c.welcome["mailbox_seq"]), 1000000, "carol's mailbox jumped too")
            finally:
                c.close()
        finally:
            a.close()
            bob.close()
        # The store went back in time as a restored one does: its first federated start
        # moves its lanes to a new epoch.
        marker = os.path.join(node.data_dir, "RESTORED-FROM-BACKUP")
        self.assertTrue(os.path.exists(marker))

        # The flag left in place (a unit file, say) salvages nothing more: no second jump of
        # the mailboxes, no new epoch, and the log says to remove it.
        os.remove(marker)
        node.stop()
        node.start()
        bob = wsclient.connect(node, p.b, after_seq=0)
        try:
            self.assertEqual(int(bob.welcome["mailbox_seq"]), int(ev["seq"]), "bob's mailbox did not jump again")
        finally:
            bob.close()
        self.assertFalse(os.path.exists(marker), "a store that was not damaged went back in time")
        self.assertTrue(any("nothing was salvaged; remove the flag" in line for line in node.stderr_lines))


def fill(path):
    """Appends zeros to `path` until its file system is full to the last byte."""
    with open(path, "ab", buffering=0) as f:
        for size in (1 << 20, 4096):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


class SmallDiskCase(NodeTestCase):
    """Tests that put a store on a small file system of their own (the tests run as root,
    like CI; a failure to mount is a broken setup, not a reason to skip)."""

    def setUp(self):
        super().setUp()
        self.mounts = []

    def tearDown(self):
        super().tearDown()
        for m in self.mounts:
            subprocess.run(["umount", "-l", m], check=False)

    def mount_tmpfs(self, path, size):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path], check=True)
        self.mounts.append(path)


class DiskFullTest(SmallDiskCase):
    """ENOSPC: sends are refused with store_unavailable, the node stays up, and it takes
    writes again by itself once space is freed; nothing accepted before is lost."""

    def test_full_disk_refuses_then_recovers(self):
        node = self.start_node(config={"messages": {"max_per_second": 100000}}, start=False)
        os.makedirs(node.data_dir)
        self.mount_tmpfs(node.data_dir, "160m")  # a small file system of the test's own for the data dir
        node.start()
        p = Pair(self, node)
        a = wsclient.connect(node, p.a)
        try:
            before = send_many(a, p.b_id, 50, prefix="before")
            ballast = os.path.join(node.data_dir, "ballast")
            fill(ballast)
            # RocksDB preallocates its write-ahead log (about 18 MB here), so the first
            # refusal comes once that space or the memtable (16 MB) is used up.
            refused, sent = None, 0
            while refused is None and sent < 12000:
                refs = [a.send_async(p.b_id, "%05d " % (sent + i) + "x" * 4000) for i in range(32)]
                for r in refs:
                    f = a.wait_ref(r, timeout=30)
                    if "error" in f and refused is None:
                        refused = f
                sent += len(refs)
            self.assertIsNotNone(refused, "%d sends of 4 KB were accepted on a full disk" % sent)
            self.assertEqual(refused["error"]["code"], "store_unavailable", refused)
            # The client is told no more: RocksDB's own words name the write-ahead log under
            # the data dir. They are for the node's log and admin status.
            self.assertNotIn(node.workdir, refused["error"]["message"], refused)
            self.assertNotIn("IO error", refused["error"]["message"], refused)
            wait_log(node, "writes are failing")
            self.assertEqual(node.request("GET", "/healthz").status, 200)
            ready = node.request("GET", "/readyz")  # alive, not ready: nothing can be sent
            self.assertEqual((ready.status, ready.json["status"], ready.json["stores"]["messages"]),
                             (503, "store_failing", "failing"), ready.describe())
            self.assertTrue(node.running())
            # A retry of a send accepted before the disk filled gets that acceptance: the
            # message is stored, and a client told otherwise sends it again as a new one.
            again = a.try_send(p.b_id, "before 0", client_id=before[0]["client_id"], timeout=30)
            self.assertIn("accepted", again, again)
            self.assertEqual((again["accepted"]["message_id"], again["accepted"].get("duplicate")),
                             (before[0]["message_id"], True), again)
            st = admin_status(node)
            self.assertEqual(st["messages"]["writes"], "failing", st)
            self.assertTrue(st["messages"]["write_error"], st)  # the reason, RocksDB's words
            self.assertEqual(metric(node, 'petchat_store_writes_failing{store="messages"}'), 1.0)
            # The accounts store (LMDB) says the same once it needs a page it cannot have:
            # not `internal`, which tells a client nothing it can act on.
            # RocksDB removes the files its failed writes began, also while this fills the
            # disk: filled again until a registration finds no page left.
            full = None
            for round_ in range(5):
                fill(ballast)
                for i in range(400):
                    r = node.register("full%d_%03d" % (round_, i), "password123", display_name="x" * 60)
                    if r.status != 201:
                        full = r
                        break
                if full is not None:
                    break
            self.assertIsNotNone(full, "2,000 accounts were stored on a disk filled five times")
            err = self.assertError(full, 503, "store_unavailable")
            self.assertTrue(full.headers.get("Retry-After"), full.describe())
            self.assertEqual(err["message"], refused["error"]["message"], "one message for either store")

            os.unlink(ballast)
            # Ready again by itself, with nothing sent to it (a node told not ready gets no
            # traffic to find out with).
            deadline = time.monotonic() + 30
            while node.request("GET", "/readyz").status != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            self.assertEqual(node.request("GET", "/readyz").status, 200, "not ready 30 s after space was freed")
            deadline = time.monotonic() + 30
            while True:
                f = a.try_send(p.b_id, "space again", timeout=30)
                if "accepted" in f or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            self.assertIn("accepted", f, "sends still refused 30 s after space was freed: %s" % f)
            self.assertEqual(admin_status(node)["messages"]["writes"], "ok")
            self.assertStatus(node.register("roomy", "password123"), 201)
        finally:
            a.close()
        # Everything accepted before the disk filled is still there.
        b = wsclient.connect(node, p.b, after_seq=0)
        try:
            for acc in before:
                b.wait_event(wsclient.ev_message(acc["message_id"]))
        finally:
            b.close()
        self.assertTrue(node.running())


class AccountStoreFullTest(SmallDiskCase):
    """The account store (LMDB) alone on a full file system, the message store fine: /readyz
    answers 503 store_failing with "users": "failing", admin status, the metric and the log
    say why, a client's store_unavailable does not, and the node is ready again by itself
    once there is room (nothing written to it meanwhile)."""

    def test_full_account_store_is_not_ready_and_says_so(self):
        node = self.start_node()
        p = Pair(self, node)
        node.stop()
        # <data_dir>/users on a small file system of its own (as DiskFullTest: the test runs
        # as root, like CI), the store's files copied onto it.
        users = os.path.join(node.data_dir, "users")
        saved = os.path.join(node.workdir, "users-before")
        shutil.copytree(users, saved)
        self.mount_tmpfs(users, "8m")
        for name in os.listdir(saved):
            shutil.copy2(os.path.join(saved, name), users)
        node.start()
        self.assertEqual(node.request("GET", "/readyz").status, 200)

        ballast = os.path.join(users, "ballast")
        fill(ballast)
        refused = None
        for i in range(2000):
            r = node.register("full%04d" % i, PW, display_name="x" * 60)
            if r.status != 201:
                refused = r
                break
        self.assertIsNotNone(refused, "2,000 accounts were stored on a full file system")
        err = self.assertError(refused, 503, "store_unavailable")
        self.assertTrue(refused.headers.get("Retry-After"), refused.describe())
        # Why is for admin status and the log: ENOSPC, or EIO when LMDB's write of a run of
        # pages got only part of the way (it reports a short write so).
        st = admin_status(node)
        self.assertEqual(st["users"]["writes"], "failing", st)
        why = st["users"]["write_error"]
        self.assertIn(why, ("No space left on device", "Input/output error"), st)
        self.assertEqual((st["messages"]["writes"], st["messages"]["write_error"]), ("ok", None), st)
        wait_log(node, "the account store refuses writes: " + why)
        # The client is told neither that nor where the node keeps its files.
        for detail in (why, node.workdir, "mdb"):
            self.assertNotIn(detail, err["message"], refused.describe())

        # Alive, not ready: nobody can register, log in or refresh a session.
        self.assertEqual(node.request("GET", "/healthz").status, 200)
        ready = node.request("GET", "/readyz")
        self.assertEqual(ready.status, 503, ready.describe())
        self.assertEqual(ready.json, {"status": "store_failing", "region": node.config["node"]["region"],
                                      "stores": {"users": "failing", "messages": "open"},
                                      "federation": "standalone"}, ready.describe())
        self.assertEqual(metric(node, 'petchat_store_writes_failing{store="users"}'), 1.0)
        self.assertEqual(metric(node, 'petchat_store_writes_failing{store="messages"}'), 0.0)
        # The message store still takes writes.
        a = wsclient.connect(node, p.a)
        try:
            a.send_message(p.b_id, "the message store is fine")
        finally:
            a.close()
        self.assertEqual(node.request("GET", "/readyz").status, 503, "still not ready while the disk is full")

        os.unlink(ballast)
        # Ready again by itself, with nothing written to it (a node told not ready gets no
        # traffic to find out with).
        deadline = time.monotonic() + 30
        while node.request("GET", "/readyz").status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = node.request("GET", "/readyz")
        self.assertEqual((ready.status, ready.json["stores"]), (200, {"users": "open", "messages": "open"}),
                         "not ready 30 s after space was freed: %s" % ready.describe())
        st = admin_status(node)
        self.assertEqual((st["users"]["writes"], st["users"]["write_error"]), ("ok", None), st)
        self.assertEqual(metric(node, 'petchat_store_writes_failing{store="users"}'), 0.0)
        wait_log(node, "the account store takes writes again")
        self.assertStatus(node.register("roomy", PW), 201)
        node.new_session("roomy")


class AckWalkTest(NodeTestCase):
    """A new device acknowledging a long mailbox costs nothing: receipts are made from a
    per-user mark, so many logins acking the newest event walk the mailbox once in all
    (before, every new device walked it from seq 1 on the commit thread)."""

    def test_new_devices_acking_a_long_mailbox_walk_it_once(self):
        node = self.start_node(config={"messages": {"max_per_second": 100000}})
        p = Pair(self, node)
        node.new_user("carol")  # an account with no mailbox entry at all (all lost, say)
        carol = node.new_session("carol")
        a = wsclient.connect(node, p.a)
        try:
            sent = send_many(a, p.b_id, 2000, window=128)
        finally:
            a.close()
        head = None
        for i in range(15):
            s = node.new_session("bob", device="device %d" % i)
            b = wsclient.connect(node, s, after_seq=1999 if i == 0 else None)
            try:
                head = int(b.welcome["mailbox_seq"])
                b.ack(head)
                b.sync()
            finally:
                b.close()
        self.assertEqual(head, 2000)
        # Every message was delivered once (its sender sees it), ...
        r = node.request("GET", "/v1/messages?peer=%s&limit=200" % p.b_id, token=p.a["access_token"])
        self.assertEqual(r.status, 200, r.describe())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = node.request("GET", "/v1/messages?peer=%s&limit=200" % p.b_id, token=p.a["access_token"])
            if all(m["delivered_at_ms"] != "0" for m in r.json["messages"]):
                break
            time.sleep(0.2)
        self.assertTrue(all(m["delivered_at_ms"] != "0" for m in r.json["messages"]), r.describe())
        # ... and the 15 acknowledgements walked the 2000 events once, not 15 times.
        walked = metric(node, "petchat_ack_walked_events_total")
        self.assertLessEqual(walked, 2000, walked)
        self.assertEqual(len(sent), 2000)


class RetentionSteadyStateTest(NodeTestCase):
    """Under a retention period nothing is kept for ever: messages, their history and
    mailbox entries, receipts and idempotency records all go, so the store levels off."""

    def entries_once_swept(self, node, timeout=30):
        """The store's live entries per kind once the sweep and a compaction leave none, or
        as they stand after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(1.0)
            rc, out, err = node.ctl("--json", "messages", "compact")
            self.assertEqual(rc, 0, err)
            entries = admin_status(node)["messages"]["stored_entries"]
            if all(v == 0 for v in entries.values()) or time.monotonic() > deadline:
                return entries

    def test_everything_expires(self):
        node = self.start_node(config={"messages": {"retention_s": 2, "expiry_sweep_interval_ms": 100,
                                                    "max_per_second": 100000}})
        p = Pair(self, node)
        a, b = wsclient.connect(node, p.a), wsclient.connect(node, p.b)
        try:
            for round_ in range(2):
                sent = send_many(a, p.b_id, 100, prefix="round %d" % round_)
                last = b.wait_event(wsclient.ev_message(sent[-1]["message_id"]))
                b.ack(last["seq"])
                b.read(sent[-1]["conversation_id"], sent[-1]["message_id"])
                a.wait_event(wsclient.ev_receipt(sent[-1]["message_id"], "READ"))
        finally:
            a.close()
            b.close()
        entries = self.entries_once_swept(node)
        self.assertEqual(entries, {"mailbox": 0, "messages": 0, "history": 0, "idempotency": 0, "receipts": 0,
                                   "expiry": 0}, "entries left after every message expired")

    def test_everything_of_groups_expires(self):
        """Group messages (their fan-out, per-member receipts and counts), the receipt
        events about them and the groups' change events all go under a retention period."""
        node = self.start_node(config={"messages": {"retention_s": 2, "expiry_sweep_interval_ms": 100,
                                                    "max_per_second": 100000,
                                                    "group_receipt_events_max_members": 2}})
        names = ["owner", "mem1", "mem2", "mem3"]
        for n in names:
            node.new_user(n)
        sessions = {n: node.new_session(n) for n in names}
        streams = {n: wsclient.connect(node, sessions[n]) for n in names}
        try:
            for members in (names[1:2], names[1:]):  # per-member receipts, then count receipts
                r = node.request("POST", "/v1/conversations", body={"title": "brief", "members": members},
                                 token=sessions["owner"]["access_token"])
                self.assertEqual(r.status, 201, r.describe())
                gid = r.json["conversation"]["id"]
                # Sent without waiting in between, so that several share a commit and each
                # member's events of them one mailbox entry (a run), which goes too.
                refs = []
                for i in range(20):
                    ref = streams["owner"].next_ref()
                    streams["owner"].send_frame({"ref": ref, "send": {"client_id": "g%s-%d" % (gid, i),
                                                                       "conversation_id": gid,
                                                                       "body": {"text": "group %d" % i}}})
                    refs.append(ref)
                for ref in refs:
                    last = streams["owner"].wait_ref(ref)["accepted"]["message_id"]
                for n in members:
                    ev = streams[n].wait_event(wsclient.ev_message(last))
                    streams[n].ack(ev["seq"])
                    streams[n].read(gid, last)
                    streams[n].wait_event(wsclient.ev_read_mark(last))
                streams["owner"].wait_event(wsclient.ev_receipt(last, "READ"))
        finally:
            for s in streams.values():
                s.close()
        entries = self.entries_once_swept(node)
        self.assertEqual(entries, {"mailbox": 0, "messages": 0, "history": 0, "idempotency": 0, "receipts": 0,
                                   "expiry": 0}, "entries left after every group message expired")

    def test_seqs_are_not_reused_once_a_mailbox_is_empty(self):
        """A mailbox's head is not written with each event: it is its last entry's seq, and
        its floor once the sweep has emptied it. Restarted (the writer forgets what it
        remembered), the node still continues after the last seq ever handed out."""
        node = self.start_node(config={"messages": {"expiry_sweep_interval_ms": 100}})
        p = Pair(self, node)
        a = wsclient.connect(node, p.a)
        try:
            sent = [a.send_message(p.b_id, "brief %d" % i, ttl_s=1) for i in range(3)]
            a.wait_seq(3)
        finally:
            a.close()
        deadline = time.monotonic() + 30
        while admin_status(node)["messages"]["stored_entries"]["mailbox"] != 0:
            self.assertLess(time.monotonic(), deadline, "the expired messages' mailbox entries stayed")
            time.sleep(0.3)
            rc, out, err = node.ctl("--json", "messages", "compact")
            self.assertEqual(rc, 0, err)
        node.restart()
        b = wsclient.connect(node, node.new_session("bob", device="bob laptop"), after_seq=0)
        a = wsclient.connect(node, node.new_session("alice", device="alice laptop"))
        try:
            self.assertEqual(int(b.welcome["mailbox_seq"]), 3, b.welcome)
            acc = a.send_message(p.b_id, "after the sweep")
            self.assertNotIn(acc["message_id"], [s["message_id"] for s in sent])
            self.assertEqual(int(b.wait_event(wsclient.ev_message(acc["message_id"]))["seq"]), 4)
            self.assertEqual(int(a.wait_event(wsclient.ev_message(acc["message_id"]))["seq"]), 4)
        finally:
            a.close()
            b.close()


class DamagedUserStoreTest(NodeTestCase):
    """LMDB has no checksums: a truncated data file kills the process with SIGBUS on the
    next read of a lost page. The operator is told what that means and what to do."""

    def test_truncated_lmdb_file_is_explained(self):
        node = self.start_node()
        for i in range(300):
            node.new_user("user%03d" % i, display_name="x" * 60)
        node.stop()
        data = os.path.join(node.data_dir, "users", "data.mdb")
        with open(data, "r+b") as f:
            f.truncate(4 * 4096)  # the two meta pages and little else
        try:
            node.start()
            for i in range(300):
                node.login("user%03d" % i, PW)
                if not node.running():
                    break
        except Exception:
            pass
        deadline = time.monotonic() + 10
        while node.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(node.running(), "the node kept running on a truncated LMDB file")
        text = "\n".join(node.stderr_lines)
        self.assertIn("SIGBUS", text, node.diagnostics())
        self.assertIn("restore", text)


if __name__ == "__main__":
    unittest.main()
