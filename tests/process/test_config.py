"""Configuration: --check-config, error reporting, command-line overrides, --version."""

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import READY_PREFIX, NodeTestCase, run_node_cli, toml_text  # noqa: E402

FULL_VALID = """\
# every documented key, with a valid value
[node]
region = "eu-west"
data_dir = "./somewhere"
threads = 2

[gateway]
listen = "127.0.0.1:8080"
max_header_bytes = 8192
max_body_bytes = 65536
request_timeout_ms = 10000
idle_timeout_ms = 60000
max_connections = 10000
max_connections_per_address = 256
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
cors_origins = ["https://chat.example.org"]

[metrics]
listen = "127.0.0.1:9464"
on_gateway = false

[admin]
socket = ""

[users]
registration = "open"
registration_token = ""
access_token_ttl_s = 900
refresh_token_ttl_s = 2592000
password_min_length = 8
password_hash_ops = 2
password_hash_memory_kib = 65536
login_free_attempts = 5
login_backoff_initial_ms = 1000
login_backoff_max_ms = 900000

[store]
lmdb_initial_map_mib = 64

[log]
format = "human"
level = "info"
"""


class CheckConfigTest(NodeTestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="petchat-config-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, text, name="c.toml"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, text):
        return run_node_cli("--check-config", self.write(text), cwd=self.tmp)

    def assertInvalid(self, text, key, line=None):
        rc, out, err = self.check(text)
        self.assertNotEqual(rc, 0, "accepted an invalid config (key %s)\nstderr: %s" % (key, err))
        self.assertIn(key, err, "stderr does not name the key %r: %r" % (key, err))
        if line is not None:
            self.assertRegex(err, r"\bline\s+%d\b" % line, "stderr does not give line %d: %r" % (line, err))
        return err

    def test_valid_full(self):
        rc, out, err = self.check(FULL_VALID)
        self.assertEqual(rc, 0, "stderr: %s" % err)
        # Checking must not start anything or create the data dir.
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "somewhere")))

    def test_valid_minimal(self):
        for text in ["", "# nothing\n", '[node]\nregion = "eu-west"\n',
                     '[users]\nregistration = "closed"\n',
                     '[log]\nformat = "json"\nlevel = "debug"\n',
                     '[gateway]\nlisten = "127.0.0.1:0"\n']:
            with self.subTest(text=text):
                rc, out, err = self.check(text)
                self.assertEqual(rc, 0, "stderr: %s" % err)

    def test_unknown_key(self):
        text = '[node]\nregion = "eu-west"\nbogus_key = 1\n'
        self.assertInvalid(text, "bogus_key", line=3)
        text = '[users]\nregistration = "open"\n\n\npassword_max_len = 9\n'
        self.assertInvalid(text, "password_max_len", line=5)

    def test_unknown_section(self):
        self.assertInvalid('[nodes]\nregion = "x"\n', "nodes")

    def test_wrong_type(self):
        self.assertInvalid('[node]\nthreads = "x"\n', "threads", line=2)
        self.assertInvalid('[node]\nregion = 5\n', "region", line=2)
        self.assertInvalid('[gateway]\n\nmax_body_bytes = "big"\n', "max_body_bytes", line=3)
        self.assertInvalid('[users]\nregistration = true\n', "registration", line=2)
        self.assertInvalid('[users]\naccess_token_ttl_s = 1.5\n', "access_token_ttl_s", line=2)
        self.assertInvalid('node = 5\n', "node")

    def test_out_of_range(self):
        self.assertInvalid('[gateway]\nlisten = "127.0.0.1:70000"\n', "listen", line=2)
        self.assertInvalid('[gateway]\nlisten = "no port here"\n', "listen", line=2)
        self.assertInvalid('[users]\nregistration = "maybe"\n', "registration", line=2)
        self.assertInvalid('[node]\nthreads = -1\n', "threads", line=2)
        self.assertInvalid('[log]\nformat = "xml"\n', "format", line=2)
        # Region names follow the name rules.
        self.assertInvalid('[node]\nregion = "EU-West"\n', "region", line=2)
        self.assertInvalid('[node]\nregion = "eu"\n', "region", line=2)
        for bad in ('"ns.example.com"', '"192.0.2.1:0"', '"192.0.2.1:99999"', '"[2001:db8::1"', '"2001:db8::1:53x"',
                    '"192.0.2.1/24"', '""', '5'):
            with self.subTest(nameserver=bad):
                self.assertInvalid('[push]\n\nnameservers = [%s]\n' % bad, "nameservers", line=3)
        rc, _, err = self.check('[push]\nnameservers = ["192.0.2.53", "192.0.2.53:5353", "2001:db8::53", '
                                '"[2001:db8::53]", "[2001:db8::53]:53"]\n')
        self.assertEqual(rc, 0, "stderr: %s" % err)

    def test_trusted_proxies(self):
        for bad in ('"10.0.0.0/33"', '"proxy.example"', '""', '"10.0.0.1:80"', '5', '"0.0.0.0/0"', '"::/0"',
                    '"128.0.0.0/1"', '"::/8"', '"::ffff:0:0/96"', '"::ffff:10.0.0.0/100"'):
            with self.subTest(trusted_proxy=bad):
                self.assertInvalid('[gateway]\n\ntrusted_proxies = [%s]\n' % bad, "trusted_proxies", line=3)
        rc, _, err = self.check('[gateway]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1"]\n')
        self.assertEqual(rc, 0, "stderr: %s" % err)

    def test_cors_origins(self):
        for bad in ('"https://chat.example.org/"', '"https://chat.example.org/app"', '"ftp://x"', '"https://"',
                    '"chat.example.org"', '5'):
            with self.subTest(origin=bad):
                self.assertInvalid('[gateway]\n\ncors_origins = [%s]\n' % bad, "cors_origins", line=3)
        rc, _, err = self.check('[gateway]\ncors_origins = ["https://chat.example.org", "http://[::1]:5173", "*"]\n')
        self.assertEqual(rc, 0, "stderr: %s" % err)

    def test_nats_tls_server_name(self):
        rc, _, err = self.check('[federation]\nnats_urls = ["tls://10.0.0.1:4222", "tls://10.0.0.2:4222"]\n'
                                'tls_server_name = "nats.example.org"\n')
        self.assertEqual(rc, 0, err)
        rc, out, err = self.check('[federation]\nnats_urls = ["nats://10.0.0.1:4222"]\ntls_server_name = "nats.example.org"\n')
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("TLS to NATS is off", err)
        for bad in ('""', '"two words"', '"nats.example.org/x"', '5'):
            with self.subTest(name=bad):
                self.assertInvalid('[federation]\nnats_urls = ["tls://n.example.org"]\n\ntls_server_name = %s\n' % bad,
                                   "tls_server_name", line=4)

    def test_federation_turned_off_and_nats_credentials(self):
        # An empty list of servers is federation off, as none at all.
        rc, _, err = self.check('[federation]\nnats_urls = []\n')
        self.assertEqual(rc, 0, err)
        self.assertInvalid('[federation]\nnats_urls = []\n[[federation.regions]]\nname = "asia"\n'
                           'public_keys = ["%s"]\n' % ("ab" * 32), "federation.regions")
        # A password without its user (or the reverse) would be dropped unsaid.
        for text in ('password = "secret"\n', 'user = "petchat"\n'):
            with self.subTest(text=text):
                self.assertInvalid('[federation]\nnats_urls = ["nats://127.0.0.1:4222"]\n' + text, "federation.user")
        rc, _, err = self.check('[federation]\nnats_urls = ["nats://127.0.0.1:4222"]\nuser = "u"\npassword = "p"\n')
        self.assertEqual(rc, 0, err)
        # One kind of authentication at most: the connection would otherwise try them all.
        self.assertInvalid('[federation]\nnats_urls = ["nats://127.0.0.1:4222"]\nuser = "u"\npassword = "p"\n'
                           'credentials_file = "/etc/hostname"\n', "at most one kind")

    def test_what_would_stop_the_node_at_start(self):
        # Syntax alone does not say these; --check-config does, naming key and value.
        for text, key in (('[gateway]\nlisten = "no-such-host.invalid:8080"\n', "gateway.listen"),
                          ('[metrics]\nlisten = "no-such-host.invalid:9464"\n', "metrics.listen"),
                          ('[push]\nca_file = "/nonexistent/ca.pem"\n', "push.ca_file"),
                          ('[web]\nroot = "/nonexistent/web"\n', "web.root"),
                          ('[federation]\nnats_urls = ["nats://127.0.0.1:4222"]\ntls_ca_file = "/nonexistent/ca.pem"\n',
                           "federation.tls_ca_file"),
                          ('[federation]\nnats_urls = ["nats://127.0.0.1:4222"]\ncredentials_file = "/nonexistent/x.creds"\n',
                           "federation.credentials_file")):
            with self.subTest(key=key):
                rc, out, err = self.check(text)
                self.assertNotEqual(rc, 0, out + err)
                self.assertIn(key, err)
                self.assertNotIn("/usr/include", err)
        rc, out, err = self.check('[gateway]\nlisten = "localhost:0"\n[metrics]\nlisten = "localhost:0"\n')
        self.assertEqual(rc, 0, err)

    def test_all_errors_reported(self):
        err = self.assertInvalid('[node]\nthreads = "x"\n[users]\nregistration = "maybe"\n', "threads")
        self.assertIn("registration", err, "only the first error was reported: %r" % err)

    def test_unparsable(self):
        for text in ['[node\nregion = "x"\n', '[node]\nregion = \n', '[node]\nregion = "unterminated\n',
                     '[node]\nregion = "a"\nregion = "b"\n']:
            with self.subTest(text=text):
                rc, out, err = self.check(text)
                self.assertNotEqual(rc, 0, "accepted unparsable TOML")
                self.assertTrue(err.strip(), "no message on stderr")
                self.assertRegex(err, r"\bline\s+\d+", "no line number: %r" % err)

    def test_missing_file(self):
        path = os.path.join(self.tmp, "does-not-exist.toml")
        rc, out, err = run_node_cli("--check-config", path, cwd=self.tmp)
        self.assertNotEqual(rc, 0)
        self.assertIn("does-not-exist.toml", err)

    def test_node_refuses_broken_config(self):
        path = self.write('[node]\nregion = "eu-west"\n[users]\nregistration = "maybe"\n')
        data_dir = os.path.join(self.tmp, "data")
        rc, out, err = run_node_cli("--config", path, "--data-dir", data_dir, "--listen", "127.0.0.1:0",
                                    cwd=self.tmp, timeout=15)
        self.assertNotEqual(rc, 0)
        self.assertIn("registration", err)
        self.assertRegex(err, r"\bline\s+4\b")
        self.assertNotIn(READY_PREFIX, out)

    def test_bad_command_line_values(self):
        path = self.write("")
        data_dir = os.path.join(self.tmp, "data")
        for args, key in [(["--listen", "127.0.0.1:99999"], "listen"), (["--region", "Bad Region"], "region"),
                          (["--threads=-1"], "threads"), (["--log-format", "xml"], "format")]:
            with self.subTest(args=args):
                rc, out, err = run_node_cli("--config", path, "--data-dir", data_dir, *args, cwd=self.tmp)
                self.assertNotEqual(rc, 0)
                self.assertIn(key, err)
                self.assertNotIn(READY_PREFIX, out)

    def test_a_dotted_region_from_the_command_line_or_environment_cannot_federate(self):
        # The file's own, checked alone (--check-config), and with an override replacing it.
        dotted = self.write('[node]\nregion = "eu.west"\n[federation]\nnats_urls = ["nats://127.0.0.1:4222"]\n',
                            name="dotted.toml")
        self.assertIn("node.region: a federated region's name", self.assertInvalid(open(dotted).read(), "node.region"))
        init = ("--config", dotted, "--data-dir", os.path.join(self.tmp, "d2"), "--init")
        rc, out, err = run_node_cli(*init, cwd=self.tmp)
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("node.region: a federated region's name", err)
        rc, out, err = run_node_cli(*init, "--region", "eu-west", cwd=self.tmp)
        self.assertEqual(rc, 0, "the file's region is replaced: %s" % (out + err))
        path = self.write('[federation]\nnats_urls = ["nats://127.0.0.1:4222"]\n')
        data_dir = os.path.join(self.tmp, "data")
        env = dict(os.environ, PETCHAT_REGION="eu.west")
        for args, extra, named in ((["--region", "eu.west"], None, "--region"), ([], env, "PETCHAT_REGION")):
            with self.subTest(named=named):
                rc, out, err = run_node_cli("--config", path, "--data-dir", data_dir, *args, cwd=self.tmp, env=extra)
                self.assertNotEqual(rc, 0, out + err)
                self.assertIn(named + ": a federated region's name", err)
                self.assertNotIn(READY_PREFIX, out)

    def test_version(self):
        rc, out, err = run_node_cli("--version")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\d+\.\d+\.\d+")


class OverrideTest(NodeTestCase):

    def test_command_line_overrides_file(self):
        node = self.start_node(config={"node": {"region": "from-file"}}, extra_args=["--region", "from-flag"])
        r = node.request("GET", "/readyz")
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("region"), "from-flag")
        u = node.new_user("alice")
        self.assertEqual(u["id"], "alice@from-flag")

    def test_sighup_keeps_the_node_running(self):
        node = self.start_node()
        node.new_user("alice")
        node.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any("SIGHUP" in line for line in node.stderr_lines + node.stdout_lines):
            self.assertLess(time.monotonic(), deadline, "no word of the SIGHUP in the log")
            time.sleep(0.05)
        self.assertTrue(node.running())
        r = node.login("alice", "password123")  # still serving
        self.assertStatus(r, 201)
        node.stop()  # SIGTERM still stops it cleanly

    def start_signalled_while_starting(self, signo):
        """Starts a node and sends it `signo` at its first log line (it has read its config
        and opens its stores now); returns the node once its ready line came."""
        node = self.start_node(config={"log": {"level": "info"}}, start=False)
        sent = []

        def signal_while_starting():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not sent:
                if node.proc is not None and any("[node] region" in line for line in node.stderr_lines):
                    node.proc.send_signal(signo)
                    sent.append(True)
                time.sleep(0.001)

        watcher = threading.Thread(target=signal_while_starting, daemon=True)
        watcher.start()
        node.start()  # ready, not killed
        watcher.join()
        self.assertEqual(len(sent), 1, "the node's first log line never came")
        return node

    def test_sighup_while_the_node_starts_is_read_once_it_serves(self):
        """logrotate's postrotate (or an operator's `kill -HUP`) may reach a node that is still
        opening its stores. The signal's default action once killed it there."""
        node = self.start_signalled_while_starting(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any("SIGHUP: reading the configuration again" in line for line in node.stderr_lines):
            self.assertLess(time.monotonic(), deadline, "the SIGHUP that came while starting was never acted on")
            time.sleep(0.05)
        self.assertTrue(node.running())
        self.assertEqual(node.new_user("alice")["id"], "alice@test")
        node.stop()

    def test_sigterm_while_the_node_starts_stops_it_cleanly_once_it_serves(self):
        """`docker stop` or `systemctl stop` may come while the node opens its stores; the
        default action killed it half-way (and a node that is PID 1 never got the signal)."""
        node = self.start_signalled_while_starting(signal.SIGTERM)  # comes up, then stops as asked
        rc = node.proc.wait(30)
        self.assertEqual(rc, 0, "\n".join(node.stderr_lines[-20:]))
        self.assertTrue(any("stopped cleanly" in line for line in node.stderr_lines + node.stdout_lines))

    def test_sighup_and_reload_read_the_config_again(self):
        node = self.start_node(config={"log": {"level": "info"}})
        node.new_user("bert")

        def rewrite(**sections):
            config = dict(node.config)
            config.update(sections)
            with open(node.config_path, "w") as f:
                f.write(toml_text(config))

        def wait_log(text):
            deadline = time.monotonic() + 15
            while not any(text in line for line in node.stderr_lines):
                self.assertLess(time.monotonic(), deadline, "no %r in the log" % text)
                time.sleep(0.05)

        users = dict(node.config["users"], password_min_length=12)
        rewrite(log={"level": "debug"}, users=users)
        node.proc.send_signal(signal.SIGHUP)
        wait_log("reload: applied log.level: info -> debug")
        wait_log("reload: [users] changed in")
        self.assertTrue(node.running())
        self.assertEqual(json.loads(node.ctl("--json", "log-level")[1])["level"], "debug")
        # petchatctl reload does the same and says it.
        rewrite(log={"level": "warn"}, users=users)
        rc, out, err = node.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.assertIn("applied: log.level: debug -> warn", out)
        self.assertIn("takes effect after a restart: [users]", out)
        # A file that no longer loads changes nothing, and says why.
        with open(node.config_path, "w") as f:
            f.write('[log]\nlevel = "loud"\n')
        rc, out, err = node.ctl("reload")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("config_invalid", err)
        self.assertIn("level", err)
        self.assertEqual(json.loads(node.ctl("--json", "log-level")[1])["level"], "warn")
        self.assertStatus(node.login("bert", "password123"), 201)  # still serving
        node.stop()

    def test_init_leaves_the_region_to_the_first_start(self):
        # `--init` makes the key (README's federation example runs it with no region);
        # the first real start binds the data dir to its region.
        node = self.start_node(config={"node": {"region": "us-east"}}, start=False)
        rc, out, err = run_node_cli("--init", "--data-dir", node.data_dir, cwd=node.workdir)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out.strip(), r"^[0-9a-f]{64}$")
        node.start()
        self.assertEqual(node.new_user("alice")["id"], "alice@us-east")

    def test_data_dir_too_long_for_the_admin_socket_is_refused_before_anything_is_made(self):
        node = self.start_node(start=False)
        deep = os.path.join(node.workdir, "d" * 60, "e" * 60)
        rc, out, err = run_node_cli("--data-dir", deep, "--listen", "127.0.0.1:0", "--region", "local",
                                    cwd=node.workdir, timeout=15)
        self.assertEqual(rc, 2, err)
        self.assertIn("set admin.socket to a shorter path", err)
        self.assertFalse(os.path.exists(deep), "the data dir was made before the refusal")

    def test_data_dir_keeps_its_region(self):
        # Started once as eu-west, a data dir is eu-west's: a start under another name
        # (here a forgotten --region, so the file's "local") is refused and says what to
        # do, instead of turning alice@eu-west into alice@local.
        node = self.start_node(config={"node": {"region": "eu-west"}})
        node.new_user("alice")
        node.stop()
        rc, out, err = run_node_cli("--data-dir", node.data_dir, "--listen", "127.0.0.1:0", "--region", "local",
                                    cwd=node.workdir, timeout=15)
        self.assertEqual(rc, 2, "refused until an operator acts: exit 2, which systemd does not restart\n" + err)
        self.assertIn("holds the data of region 'eu-west', not 'local'", err)
        self.assertIn("--region eu-west", err)
        self.assertNotIn(READY_PREFIX, out)
        # Under its own name it starts, and alice is who she was.
        node.start()
        r = node.admin("GET", "/v1/admin/users")
        self.assertStatus(r, 200)
        self.assertEqual([u["id"] for u in r.json["users"]], ["alice@eu-west"])

    def test_region_from_file(self):
        node = self.start_node(config={"node": {"region": "eu-west"}})
        u = node.new_user("alice")
        self.assertEqual(u["id"], "alice@eu-west")
        self.assertEqual(u["region"], "eu-west")

    def test_admin_socket_setting(self):
        sock_dir = tempfile.mkdtemp(prefix="petchat-sock-")
        self.addCleanup(shutil.rmtree, sock_dir, True)
        sock = os.path.join(sock_dir, "ctl.sock")
        node = self.start_node(extra_config='[admin]\nsocket = "%s"\n' % sock)
        self.assertEqual(os.path.realpath(node.admin_socket), os.path.realpath(sock))
        r = node.admin("GET", "/v1/admin/status")
        self.assertStatus(r, 200)
        node.stop()
        # A directory other users may write to (as /tmp is, sticky or not) is refused: one
        # of them could put a socket of their own there first.
        for mode in (0o777, 0o1777, 0o770):
            os.chmod(sock_dir, mode)
            rc, out, err = run_node_cli("--config", node.config_path, "--data-dir", node.data_dir,
                                        "--listen", "127.0.0.1:0", timeout=15)
            self.assertEqual(rc, 2, "mode %o: %s" % (mode, err))  # an operator must act: not restarted
            self.assertIn("may be written by other users", err, "mode %o" % mode)
        os.chmod(sock_dir, 0o700)

    def test_json_logs(self):
        node = self.start_node(extra_args=["--log-format", "json"])
        node.new_user("logged")
        node.stop()
        lines = [l for l in node.stderr_lines if l.strip() and not l.startswith("=== start")]
        self.assertTrue(lines, "no log lines at all")
        for l in lines:
            try:
                obj = json.loads(l)
            except ValueError:
                self.fail("log line is not JSON: %r" % l)
            self.assertIsInstance(obj, dict, l)


if __name__ == "__main__":
    unittest.main()
