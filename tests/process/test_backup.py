"""Backups of a running node (petchatctl backup, verify, restore; docs/OPERATIONS.md,
"Backup and restore"): taken while messages are being sent, checked, restored into a new
data dir, and served by a node started on it."""

import datetime
import json
import os
import re
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wsclient  # noqa: E402
from harness import CTL_BIN, NODE_BIN, REGION, NodeTestCase, run_ctl, run_node_cli  # noqa: E402
from test_ctl import FakeAdmin, http_answer  # noqa: E402

SENDERS = 4


def run_ctl_on_terminal(*args, timeout=60):
    """Runs petchatctl with its stderr on a terminal (a pty), as an operator does, so that it
    draws its progress bar; returns (rc, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([CTL_BIN] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    screen = []

    def drain():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            screen.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = p.communicate(timeout=timeout)
    reader.join(5)
    os.close(master)
    return p.returncode, out.decode("utf-8", "replace"), b"".join(screen).decode("utf-8", "replace")


class BackupTest(NodeTestCase):

    def backup_dir(self):
        d = tempfile.mkdtemp(prefix="petchat-backup-")
        self.addCleanup(shutil.rmtree, d, True)
        return os.path.join(d, "backup")

    def test_backup_under_load_restores_everything_accepted_before_it(self):
        node = self.start_node(config={"messages": {"max_per_second": 100000}})
        node.new_user("rita")
        names = ["sender%d" % i for i in range(SENDERS)]
        sessions = {}
        for n in names:
            node.new_user(n)
            sessions[n] = node.new_session(n)
        lock = threading.Lock()
        accepted = []  # (time the answer arrived, message id, sender, index)
        stop = threading.Event()
        failures = []

        def send(name):
            try:
                c = wsclient.connect(node, sessions[name])
                try:
                    i = 0
                    while not stop.is_set():
                        acc = c.send_message("rita@" + REGION, "%s %d" % (name, i), client_id="%s-%d" % (name, i))
                        with lock:
                            accepted.append((time.monotonic(), acc["message_id"], name, i))
                        i += 1
                finally:
                    c.close()
            except Exception as e:  # reported by the test, not lost in a thread
                failures.append("%s: %r" % (name, e))

        def wait_for(count):
            deadline = time.monotonic() + 60
            while len(accepted) < count and not failures:
                self.assertLess(time.monotonic(), deadline, "senders stalled at %d" % len(accepted))
                time.sleep(0.02)

        threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in names]
        for t in threads:
            t.start()
        try:
            wait_for(300)
            began = time.monotonic()
            dest = self.backup_dir()
            rc, out, err = node.ctl("backup", dest, timeout=300)
            took = time.monotonic() - began
            self.assertEqual(rc, 0, "petchatctl backup: %s %s" % (out, err))
            at_backup_end = len(accepted)
            wait_for(at_backup_end + 200)  # the node kept taking messages during and after it
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(failures, [])
        node.new_user("latecomer")  # after the backup: not in it
        before = {mid for t, mid, _, _ in accepted if t < began}
        everything = {mid for _, mid, _, _ in accepted}
        self.assertIn("of region %s" % REGION, out)

        with open(os.path.join(dest, "manifest.json")) as f:
            manifest = json.load(f)
        size = sum(f["size"] for f in manifest["files"])
        sys.stderr.write("\nbackup of %d accepted messages (%d before it began): %.2f s, %d bytes, %d files\n"
                         % (len(everything), len(before), took, size, len(manifest["files"])))
        self.assertEqual(os.stat(os.path.join(dest, "region.key")).st_mode & 0o777, 0o600)
        rc, out, err = run_ctl("verify", dest)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("match the manifest", out)

        # Restored into a new data dir, a node serves it.
        restored = self.start_node(start=False, name="restored")
        rc, out, err = run_ctl("restore", dest, restored.data_dir)
        self.assertEqual(rc, 0, out + err)
        self.assertTrue(os.path.exists(os.path.join(restored.data_dir, "RESTORED-MAILBOXES")))
        started_ms = time.time() * 1000
        restored.start()
        ready_ms = time.time() * 1000
        self.assertFalse(os.path.exists(os.path.join(restored.data_dir, "RESTORED-MAILBOXES")), "used up")
        rita = wsclient.connect(restored, restored.new_session("rita"), after_seq=0)
        self.addCleanup(rita.close)
        # The restored mailbox continues 1,048,576 seqs further on, and 64 more for each
        # millisecond since the backup was made: rita's devices may have seen seqs past the
        # backup, and none is handed out again for another event.
        head = int(rita.welcome["mailbox_seq"])
        s = wsclient.connect(restored, restored.new_session(names[0]))
        self.addCleanup(s.close)
        fence = s.send_message("rita@" + REGION, "after the restore")
        ev = rita.wait_event(wsclient.ev_message(fence["message_id"]), timeout=60)
        self.assertEqual(int(ev["seq"]), head + 1)
        events = [e for e in rita.events() if int(e["seq"]) <= head]
        restored_count = len(events)
        made_ms = datetime.datetime.fromisoformat(manifest["made_at"].replace("Z", "+00:00")).timestamp() * 1000
        jump = head - restored_count - (1 << 20)
        self.assertTrue(64 * (started_ms - made_ms - 1000) <= jump <= 64 * (ready_ms - made_ms + 1000),
                        "the head jumped by %d for a backup made %.0f ms before" % (jump, started_ms - made_ms))
        self.assertEqual([int(e["seq"]) for e in events], list(range(1, restored_count + 1)), "gapless mailbox")
        got = [e["message"]["id"] for e in events if "message" in e]
        self.assertEqual(len(got), len(set(got)))
        self.assertLessEqual(before, set(got), "every message accepted before the backup began is restored")
        self.assertLessEqual(set(got), everything, "nothing that was never accepted")
        # Each sender's messages in the backup are a prefix of what it sent: one
        # consistent moment, no holes.
        index = {mid: (name, i) for _, mid, name, i in accepted}
        for name in names:
            mine = sorted(i for n, i in (index[m] for m in got) if n == name)
            self.assertEqual(mine, list(range(len(mine))), name)
        # Accounts log in; the one made after the backup is not there.
        for name in names:
            self.assertStatus(restored.login(name, "password123"), 201)
        self.assertStatus(restored.login("latecomer", "password123"), 401)
        # The jump happens once: after a restart the mailbox goes on from where it was.
        restored.stop()
        restored.start()
        s2 = wsclient.connect(restored, restored.new_session(names[0]))
        self.addCleanup(s2.close)
        rita2 = wsclient.connect(restored, restored.new_session("rita"))
        self.addCleanup(rita2.close)
        self.assertEqual(int(rita2.welcome["mailbox_seq"]), head + 1)
        # The same backup restored again (the first copy failed, say) jumps past every seq
        # the first copy handed out.
        again = self.start_node(start=False, name="again")
        rc, out, err = run_ctl("restore", dest, again.data_dir)
        self.assertEqual(rc, 0, out + err)
        again.start()
        rita3 = wsclient.connect(again, again.new_session("rita"))
        self.addCleanup(rita3.close)
        self.assertGreater(int(rita3.welcome["mailbox_seq"]), head + 1)

    def test_refusals(self):
        node = self.start_node()
        dest = self.backup_dir()
        os.makedirs(dest)
        with open(os.path.join(dest, "something"), "w") as f:
            f.write("x")
        rc, out, err = node.ctl("backup", dest)
        self.assertEqual(rc, 2, err)
        self.assertIn("is not an empty directory", err)
        # Under a directory others may change (writable by all, no sticky bit): one could
        # swap the new directory for a link while petchatctl writes there; so could the
        # target of a restore. Both are refused before anything is done.
        shared = os.path.join(os.path.dirname(self.backup_dir()), "shared")
        os.makedirs(shared)
        os.chmod(shared, 0o777)
        rc, out, err = node.ctl("backup", os.path.join(shared, "backup"))
        self.assertEqual(rc, 2, out + err)
        self.assertIn(shared + " belongs to another user, or others may write to it", err)
        self.assertEqual(os.listdir(shared), [])
        # One backup at a time: an open snapshot (an interrupted backup) refuses the next
        # until --abort releases it.
        r = node.admin("POST", "/v1/admin/backup")
        self.assertStatus(r, 200)
        self.assertTrue(os.path.isdir(r.json["dir"]))
        # A snapshot id that does not decode names none (it once read as no id: the open
        # snapshot was let go).
        self.assertError(node.admin("DELETE", "/v1/admin/backup/%zz"), 400, "invalid_field")
        self.assertTrue(os.path.isdir(r.json["dir"]))
        rc, out, err = node.ctl("backup", self.backup_dir())
        self.assertEqual(rc, 1)
        self.assertIn("backup_in_progress", err)
        # A backup that gave up waiting lets go by its own token: never of another's.
        self.assertError(node.admin("DELETE", "/v1/admin/backup/by-requester/0123abcd"), 404, "not_found")
        self.assertTrue(os.path.isdir(r.json["dir"]))
        self.assertError(node.admin("DELETE", "/v1/admin/backup/by-requester/x!y"), 400, "invalid_field")
        # An empty token names no requester: before, it let go of whatever snapshot was open.
        self.assertError(node.admin("DELETE", "/v1/admin/backup/by-requester/"), 400, "invalid_field")
        self.assertError(node.admin("DELETE", "/v1/admin/backup/"), 400, "invalid_field")  # nor an empty id
        self.assertTrue(os.path.isdir(r.json["dir"]))
        rc, out, err = node.ctl("backup", "--abort")
        self.assertEqual(rc, 0, err)
        self.assertFalse(os.path.exists(r.json["dir"]))
        mine = node.admin("POST", "/v1/admin/backup?requester=mine")
        self.assertStatus(mine, 200)
        self.assertStatus(node.admin("DELETE", "/v1/admin/backup/by-requester/mine"), 200)
        self.assertFalse(os.path.exists(mine.json["dir"]))
        # Let go of before its request was taken (it came late): nothing is made for it.
        self.assertError(node.admin("DELETE", "/v1/admin/backup/by-requester/late"), 404, "not_found")
        self.assertError(node.admin("POST", "/v1/admin/backup?requester=late"), 500, "internal")
        # Once: the same token later asks anew.
        again = node.admin("POST", "/v1/admin/backup?requester=late")
        self.assertStatus(again, 200)
        self.assertStatus(node.admin("DELETE", "/v1/admin/backup/" + again.json["id"]), 200)
        good = self.backup_dir()
        rc, out, err = node.ctl("backup", good)
        self.assertEqual(rc, 0, err)
        rc, out, err = run_ctl("restore", good, os.path.join(shared, "data"))
        self.assertEqual(rc, 1, out + err)
        self.assertIn(shared + " belongs to another user, or others may write to it", err)
        self.assertEqual(os.listdir(shared), [])
        os.chmod(shared, 0o1777)  # with the sticky bit (as /tmp): others cannot move what is not theirs
        rc, out, err = run_ctl("restore", good, os.path.join(shared, "data"))
        self.assertEqual(rc, 0, out + err)
        # A damaged file, a missing one, an extra one: verify says which; restore refuses
        # and leaves nothing behind.
        with open(os.path.join(good, "region.pub"), "a") as f:
            f.write("tampered\n")
        os.remove(os.path.join(good, "users", "data.mdb"))
        with open(os.path.join(good, "stray"), "w") as f:
            f.write("?")
        rc, out, err = run_ctl("verify", good)
        self.assertEqual(rc, 1)
        self.assertIn("damaged: region.pub", out)
        self.assertIn("damaged: users/data.mdb", out)
        self.assertIn("unexpected: stray", out)
        target = os.path.join(os.path.dirname(good), "data")
        rc, out, err = run_ctl("restore", good, target)
        self.assertEqual(rc, 1)
        self.assertEqual(os.listdir(target), [])
        # A manifest naming a path outside the backup is refused before anything is read.
        with open(os.path.join(good, "manifest.json")) as f:
            manifest = json.load(f)
        manifest["files"].append({"path": "../escape", "size": 1, "blake2b": "00"})
        with open(os.path.join(good, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        rc, out, err = run_ctl("verify", good)
        self.assertEqual(rc, 1)
        self.assertIn("manifest.json is damaged", err)
        # Not a backup at all.
        rc, out, err = run_ctl("verify", os.path.dirname(good))
        self.assertEqual(rc, 1)
        self.assertIn("manifest.json is missing", err)
        # A data dir is never overwritten.
        rc, out, err = run_ctl("restore", self.backup_dir(), node.data_dir)
        self.assertEqual(rc, 1)

    def test_hostile_backups_and_interrupted_restores(self):
        node = self.start_node(start=False)
        # A relative data dir (the default ./data) is backed up all the same.
        node.command = lambda: [NODE_BIN, "--config", node.config_path, "--data-dir", "data",
                                "--listen", "127.0.0.1:0"]
        node.start()
        node.admin_socket = os.path.join(node.workdir, node.admin_socket)  # printed relative, as given
        node.new_user("alice")
        dest = self.backup_dir()
        rc, out, err = node.ctl("backup", dest)
        self.assertEqual(rc, 0, out + err)
        # A file of the backup replaced by a link to one with the same bytes is refused:
        # restore and verify read only regular files, never through links.
        pub = os.path.join(dest, "region.pub")
        copy = os.path.join(os.path.dirname(dest), "elsewhere")
        shutil.copy(pub, copy)
        os.remove(pub)
        os.symlink(copy, pub)
        rc, out, err = run_ctl("verify", dest)
        self.assertEqual(rc, 1)
        self.assertIn("damaged: region.pub", out)
        self.assertIn("not a regular file", out)
        os.remove(pub)
        shutil.copy(copy, pub)
        # A FIFO in the manifest's place does not hang verify (or a root restore).
        manifest = os.path.join(dest, "manifest.json")
        kept = os.path.join(os.path.dirname(dest), "manifest.kept")
        os.rename(manifest, kept)
        os.mkfifo(manifest)
        rc, out, err = run_ctl("verify", dest, timeout=20)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("manifest.json is not a regular file", err)
        os.remove(manifest)
        os.rename(kept, manifest)
        # Nor through a directory on the way that is a link (to one with the same files).
        moved = os.path.join(os.path.dirname(dest), "messages-elsewhere")
        shutil.move(os.path.join(dest, "messages"), moved)
        os.symlink(moved, os.path.join(dest, "messages"))
        rc, out, err = run_ctl("verify", dest)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("damaged: messages/", out)
        self.assertIn("a symbolic link (or one on its way)", out)
        linked = self.start_node(start=False, name="linked")
        rc, out, err = run_ctl("restore", dest, linked.data_dir)
        self.assertNotEqual(rc, 0, out + err)
        os.remove(os.path.join(dest, "messages"))
        shutil.move(moved, os.path.join(dest, "messages"))
        # A manifest with a negative size is damaged, not a crash.
        with open(os.path.join(dest, "manifest.json")) as f:
            manifest = json.load(f)
        good = json.dumps(manifest)
        manifest["files"][0]["size"] = -1
        with open(os.path.join(dest, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        rc, out, err = run_ctl("verify", dest)
        self.assertEqual(rc, 1)
        self.assertIn("manifest.json is damaged", err)
        # A manifest that leaves out the accounts (and their file, with it) lists a backup
        # that would restore into a node with no accounts: damaged, not restored.
        manifest = json.loads(good)
        manifest["files"] = [f for f in manifest["files"] if f["path"] != "users/data.mdb"]
        with open(os.path.join(dest, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        accounts = os.path.join(dest, "users", "data.mdb")
        aside = dest + ".accounts"  # outside the backup: no file there the manifest does not list
        shutil.move(accounts, aside)
        rc, out, err = run_ctl("verify", dest)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("it lists no users/data.mdb", err)
        partial = self.start_node(start=False, name="partial")
        rc, out, err = run_ctl("restore", dest, partial.data_dir)
        self.assertNotEqual(rc, 0, out + err)
        shutil.move(aside, accounts)
        with open(os.path.join(dest, "manifest.json"), "w") as f:
            f.write(good)
        rc, out, err = run_ctl("verify", dest)
        self.assertEqual(rc, 0, out + err)
        # A file far larger than the manifest says (a sparse one costs nothing to make),
        # verified on a terminal, where the progress bar is drawn: damaged, said at once,
        # not read to its end, and not a crash (the bar was drawn past 100%, past its buffer).
        with open(pub, "rb") as f:
            pub_bytes = f.read()
        os.truncate(pub, 4 << 30)
        rc, out, err = run_ctl_on_terminal("verify", dest)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("damaged: region.pub", out)
        self.assertIn("larger than the %d bytes listed for it" % len(pub_bytes), out)
        with open(pub, "wb") as f:
            f.write(pub_bytes)
        # A file name that would talk to the terminal (set its title) is printed escaped.
        hostile = os.path.join(dest, "title\x1b]0;owned\x07")
        with open(hostile, "w") as f:
            f.write("x")
        rc, out, err = run_ctl("verify", dest)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("unexpected: title", out)
        self.assertNotIn("\x1b", out)
        os.remove(hostile)
        # A restore that did not finish leaves its marker, and a node refuses the data dir.
        restored = self.start_node(start=False, name="restored")
        rc, out, err = run_ctl("restore", dest, restored.data_dir)
        self.assertEqual(rc, 0, out + err)
        self.assertFalse(os.path.exists(os.path.join(restored.data_dir, "RESTORE-INCOMPLETE")))
        # What tells a federated node that its lanes must start a new epoch (standalone, it stays).
        self.assertTrue(os.path.exists(os.path.join(restored.data_dir, "RESTORED-FROM-BACKUP")))
        open(os.path.join(restored.data_dir, "RESTORE-INCOMPLETE"), "w").close()
        rc, out, err = run_node_cli(*restored.command()[1:], cwd=restored.workdir)
        self.assertNotEqual(rc, 0)
        self.assertIn("holds a restore that did not finish", err)
        os.remove(os.path.join(restored.data_dir, "RESTORE-INCOMPLETE"))
        restored.start()
        self.assertStatus(restored.login("alice", "password123"), 201)
        # Root restoring into a directory prepared for the node's user writes as that user:
        # every file is theirs (here nobody's), though the backup's files are root's 0600.
        if os.geteuid() == 0:
            parent = tempfile.mkdtemp(prefix="petchat-prepared-")
            self.addCleanup(shutil.rmtree, parent, True)
            os.chmod(parent, 0o755)
            prepared = os.path.join(parent, "data")
            os.mkdir(prepared, 0o700)
            os.chown(prepared, 65534, 65534)
            # Having changed its effective user, the process is not dumpable (as the kernel
            # protects it), and LeakSanitizer, which reads it like a debugger, cannot run.
            env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
            rc, out, err = run_ctl("restore", dest, prepared, env=env)
            self.assertEqual(rc, 0, out + err)
            for root, dirs, files in os.walk(prepared):
                for name in dirs + files:
                    st = os.lstat(os.path.join(root, name))
                    self.assertEqual((st.st_uid, st.st_gid), (65534, 65534), name)


def by_token(requests):
    """The requests with a backup's requester token shown as R, once every request that
    names one names the same."""
    tokens = set(re.findall(r"requester[=/]([0-9a-f]{32})", " ".join(requests)))
    assert len(tokens) <= 1, requests
    return [re.sub(r"requester([=/])[0-9a-f]{32}", r"requester\1R", r) for r in requests]


class BackupReleaseTest(unittest.TestCase):
    """Whenever petchatctl backup fails or is interrupted after it asked for a snapshot, it
    releases what the node may hold (docs/OPERATIONS.md, "Backup and restore") and exits
    with the failure's code; a refusal (another backup's snapshot is open) releases
    nothing. Against something in the node's place on the socket, which answers the
    snapshot request badly or never and records the requests."""

    def backup_dir(self):
        d = tempfile.mkdtemp(prefix="petchat-backup-")
        self.addCleanup(shutil.rmtree, d, True)
        return os.path.join(d, "backup")

    def fake(self, snapshot_answer):
        def answer(method, target):
            if method == "POST":
                return snapshot_answer
            return http_answer(200, '{"released": true}')
        f = FakeAdmin(answer)
        self.addCleanup(f.close)
        return f

    def test_an_unusable_snapshot_answer_is_released(self):
        not_a_snapshot = json.dumps({"id": "b1", "dir": 7, "files": []})
        cases = [
            # (the answer to POST /v1/admin/backup, exit code, on stderr, the release asked for)
            (b"garbage\r\n\r\n", 1, "not HTTP", "DELETE /v1/admin/backup/by-requester/R"),
            (b"", 1, "closed the connection without an answer", "DELETE /v1/admin/backup/by-requester/R"),
            (http_answer(200, "not json"), 1, "not JSON", "DELETE /v1/admin/backup/by-requester/R"),
            (http_answer(200, "[]"), 1, "not a snapshot as expected", "DELETE /v1/admin/backup/by-requester/R"),
            (http_answer(200, not_a_snapshot), 1, "not a snapshot as expected", "DELETE /v1/admin/backup/b1"),
            # Refused: another backup's snapshot is open (not this one's to release), or none was made.
            (http_answer(409, '{"error": {"code": "backup_in_progress", "message": "backup x is open"}}'), 1,
             "error: backup_in_progress", None),
            (http_answer(500, '{"error": {"code": "internal", "message": "no snapshot"}}'), 1, "error: internal",
             None),
        ]
        for snapshot_answer, want_rc, said, release in cases:
            with self.subTest(answer=snapshot_answer[:60]):
                fake = self.fake(snapshot_answer)
                rc, out, err = run_ctl("--socket", fake.path, "backup", self.backup_dir())
                self.assertEqual(rc, want_rc, "rc %d\nstdout: %s\nstderr: %s" % (rc, out, err))
                self.assertIn(said, err)
                self.assertEqual(by_token(fake.requests), ["POST /v1/admin/backup?requester=R"] + ([release] if release else []),
                                 err)
                if release:
                    self.assertIn("the node's snapshot is released", err)
                self.assertEqual(out, "")

    def test_an_interrupted_wait_for_the_snapshot_releases_it(self):
        """Ctrl-C or SIGTERM while the node makes the snapshot ends the wait at once (not
        after 600 s), and the release asked for then (by the backup's own token, having no
        id) has the node drop the snapshot as soon as it is made."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(signal=sig):
                fake = self.fake(None)  # never answers the snapshot request
                p = subprocess.Popen([CTL_BIN, "--socket", fake.path, "backup", self.backup_dir()],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    self.assertTrue(fake.wait_for_requests(1), "petchatctl asked for no snapshot")
                    time.sleep(0.3)  # waiting for the answer by now
                    sent = time.monotonic()
                    p.send_signal(sig)
                    out, err = p.communicate(timeout=20)
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.communicate()
                err = err.decode("utf-8", "replace")
                self.assertLess(time.monotonic() - sent, 10, "the signal did not end the wait: " + err)
                self.assertEqual(p.returncode, 1, err)
                self.assertIn("interrupted while waiting for the node at " + fake.path, err)
                self.assertIn("the node's snapshot is released", err)
                # Released by the token it asked with: never another backup's snapshot.
                self.assertEqual(by_token(fake.requests),
                                 ["POST /v1/admin/backup?requester=R", "DELETE /v1/admin/backup/by-requester/R"])


if __name__ == "__main__":
    unittest.main()
