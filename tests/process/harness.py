"""Process-level test harness for petchat.

Starts real `petchat-node` processes on a free port with a temporary data directory,
talks to them over HTTP (user gateway, TCP) and over the admin Unix socket, and runs
`petchatctl`. Standard library only.

Binaries: $PETCHAT_NODE and $PETCHATCTL, falling back to the build directory
<repo>/build/node/app/petchat-node and <repo>/build/node/ctl/petchatctl.
"""

import atexit
import fcntl
import http.client
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_BIN = os.environ.get("PETCHAT_NODE") or os.path.join(REPO_ROOT, "build", "node", "app", "petchat-node")
CTL_BIN = os.environ.get("PETCHATCTL") or os.path.join(REPO_ROOT, "build", "node", "ctl", "petchatctl")

READY_PREFIX = "petchat-node ready:"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 15.0

REGION = "test"

# Ports a test must choose before the process that listens on them starts (a nats-server,
# Prometheus), and keep across that process's restarts. Process tests run side by side
# (tests/meson.build), so such a port is taken from below the kernel's ephemeral range, which
# nothing binding port 0 or connecting out is ever given, and reserved for this test process
# by a lock on a file named after it: another test process passes over a port while this one
# lives, and the lock goes with the process however it ends.
_PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "petchat-test-ports-%d" % os.getuid())
_reserved_ports = []  # (port, open lock file): held until this process exits


def _port_range():
    """Ports below the kernel's ephemeral range (and above what other tools take), leaving
    32001-32700 to the browser tests (web/e2e/harness.mjs)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    top = min(low, 32768) - 1
    if top < 32000:
        raise RuntimeError("the kernel's ephemeral ports start at %d: the process tests need 20000-32000 outside them "
                           "(sysctl net.ipv4.ip_local_port_range)" % low)
    return 20000, 32000


def _lock_dir():
    os.makedirs(_PORT_LOCK_DIR, mode=0o700, exist_ok=True)
    st = os.lstat(_PORT_LOCK_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RuntimeError("%s is not a directory of this user's alone" % _PORT_LOCK_DIR)
    return _PORT_LOCK_DIR


def free_port():
    """A loopback TCP port no other test process will choose while this one runs, free now."""
    lock_dir, span = _lock_dir(), _port_range()
    for _ in range(1000):
        port = random.randint(*span)
        if any(p == port for p, _ in _reserved_ports):
            continue
        fd = os.open(os.path.join(lock_dir, str(port)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))
        except OSError:  # something outside the tests has it
            os.close(fd)
            continue
        _reserved_ports.append((port, fd))
        return port
    raise RuntimeError("no free loopback port in %d-%d" % span)


# RFC 3339, UTC, millisecond precision: "2026-11-30T06:30:00.123Z".
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# Fast argon2id parameters so that tests do not spend their time hashing.
BASE_CONFIG = {
    "node": {"region": REGION, "threads": 2},
    # Every test registers from 127.0.0.1: the per-address registration limit is tested
    # on its own (test_hardening_accounts.py).
    "users": {"password_hash_ops": 1, "password_hash_memory_kib": 8192, "max_registrations_per_address": 1000000,
              # tests log many users in at once from one address (the defaults: test_hardening_accounts.py)
              "login_checks_per_address": 100000, "login_checks_per_minute_per_address": 0},
    # Nodes run side by side: each scrape listener on a port of its own.
    "metrics": {"listen": "127.0.0.1:0"},
}

_ALL_NODES = []
_ALL_NODES_LOCK = threading.Lock()


def _kill_all_nodes():
    with _ALL_NODES_LOCK:
        nodes = list(_ALL_NODES)
    for n in nodes:
        try:
            n.close()
        except Exception:
            pass


atexit.register(_kill_all_nodes)


def _on_sigterm(signum, frame):
    # meson test kills us with SIGTERM on timeout: never leave nodes behind.
    _kill_all_nodes()
    os._exit(128 + signum)


if threading.current_thread() is threading.main_thread():
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        pass


def _check_binary(path, what):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(
            "%s binary not found or not executable: %s (set $%s or build first)"
            % (what, path, "PETCHAT_NODE" if what == "petchat-node" else "PETCHATCTL"))


# ---------------------------------------------------------------------------------------
# TOML writing


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[%s]" % ", ".join(_toml_value(x) for x in v)
    raise TypeError("unsupported TOML value %r" % (v,))


def merge_config(base, overrides):
    """Deep-merges {section: {key: value}}; a value of None removes the key."""
    out = {s: dict(kv) for s, kv in base.items()}
    for section, kv in (overrides or {}).items():
        sec = out.setdefault(section, {})
        for k, v in kv.items():
            if v is None:
                sec.pop(k, None)
            else:
                sec[k] = v
    return out


def toml_text(config):
    lines = []
    for section, kv in config.items():
        if not kv:
            continue
        lines.append("[%s]" % section)
        for k, v in kv.items():
            lines.append("%s = %s" % (k, _toml_value(v)))
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# HTTP


class Response(tuple):
    """(status, headers, json_or_None); also .raw (bytes) for diagnostics."""

    def __new__(cls, status, headers, body, raw):
        r = tuple.__new__(cls, (status, headers, body))
        r.raw = raw
        return r

    @property
    def status(self):
        return self[0]

    @property
    def headers(self):
        return self[1]

    @property
    def json(self):
        return self[2]

    def describe(self):
        raw = self.raw
        if len(raw) > 600:
            raw = raw[:600] + b"..."
        return "HTTP %s %r" % (self[0], raw)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=HTTP_TIMEOUT_S):
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._unix_path)
        except Exception:
            s.close()
            raise
        self.sock = s


def _do_request(conn, method, path, body=None, token=None, headers=None, raw_body=None):
    hdrs = {}
    data = None
    if raw_body is not None:
        data = raw_body if isinstance(raw_body, bytes) else raw_body.encode()
        hdrs["Content-Type"] = "application/json"
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token is not None:
        hdrs["Authorization"] = "Bearer " + token
    if headers:
        hdrs.update(headers)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        return Response(resp.status, resp.headers, parsed, raw)
    finally:
        conn.close()


def parse_http_response(data):
    """Parses one raw HTTP/1.1 response: (status, headers dict lower-cased, body bytes)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise AssertionError("not an HTTP response: %r" % data[:200])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), headers, body


def read_to_end(sock, timeout):
    """Everything a raw socket receives until the peer closes it (raises socket.timeout if
    it does not within `timeout` of the last bytes)."""
    sock.settimeout(timeout)
    got = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return got
        got += chunk


def read_http_response(sock, timeout):
    """Reads one response from a raw socket. Returns bytes (b'' if the peer closed first).
    Raises socket.timeout if nothing complete arrived in time."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        if b"\r\n\r\n" in buf:
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            m = re.search(r"(?im)^content-length:\s*(\d+)\s*$", head)
            need = len(head) + 4 + (int(m.group(1)) if m else 0)
            if m and len(buf) >= need:
                return buf[:need]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no complete response within %.1f s (got %r)" % (timeout, buf[:200]))
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk


# ---------------------------------------------------------------------------------------
# Node


class NodeStartError(AssertionError):
    pass


class Node:
    """One petchat-node process.

    config: {section: {key: value}} merged over BASE_CONFIG (None removes a key).
    extra_config: raw TOML text appended to the generated file (use for whole sections
        not otherwise present; do not repeat a section that the merged config has).
    extra_args: command-line arguments appended after the harness's own.
    """

    def __init__(self, config=None, extra_config="", extra_args=(), name="node", start=True,
                 base_config=BASE_CONFIG):
        _check_binary(NODE_BIN, "petchat-node")
        self.name = name
        self.workdir = tempfile.mkdtemp(prefix="petchat-test-")
        self.data_dir = os.path.join(self.workdir, "data")
        self.config = merge_config(base_config, config)
        self.config.setdefault("node", {})["data_dir"] = self.data_dir
        self.config_path = os.path.join(self.workdir, "petchat.toml")
        with open(self.config_path, "w") as f:
            f.write(toml_text(self.config))
            if extra_config:
                f.write("\n" + extra_config + "\n")
        self.extra_args = list(extra_args)
        self.env = None  # the environment of the node's process (None: this one's)
        self.scheme = "http"  # "https" when the ready line says the gateway speaks TLS
        self.ca_file = None  # the CA that clients verify a TLS gateway's certificate against
        self.proc = None
        self.port = None
        self.metrics_port = None
        self.admin_socket = None
        self.ready_line = None
        self.stdout_lines = []
        self.stderr_lines = []
        self._readers = []
        self._out_q = None
        self.starts = 0
        with _ALL_NODES_LOCK:
            _ALL_NODES.append(self)
        if start:
            self.start()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def command(self):
        return [NODE_BIN, "--config", self.config_path, "--data-dir", self.data_dir,
                "--listen", "127.0.0.1:0"] + self.extra_args

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _reader(self, stream, sink, q):
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                sink.append(line)
                if q is not None:
                    q.put(line)
        except Exception:
            pass
        finally:
            if q is not None:
                q.put(None)
            try:
                stream.close()
            except Exception:
                pass

    def start(self):
        if self.running():
            raise RuntimeError("node already running")
        self.starts += 1
        self.stdout_lines.append("=== start #%d: %s" % (self.starts, " ".join(self.command())))
        self.stderr_lines.append("=== start #%d" % self.starts)
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=self.workdir, env=self.env)
        self._out_q = queue.Queue()
        self._readers = [
            threading.Thread(target=self._reader, args=(self.proc.stdout, self.stdout_lines, self._out_q),
                             daemon=True),
            threading.Thread(target=self._reader, args=(self.proc.stderr, self.stderr_lines, None), daemon=True),
        ]
        for t in self._readers:
            t.start()
        self.port = None
        self.admin_socket = None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._force_kill()
                raise NodeStartError("petchat-node printed no '%s' line within %.0f s\n%s"
                                     % (READY_PREFIX, READY_TIMEOUT_S, self.diagnostics()))
            try:
                line = self._out_q.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the process is exiting
                try:
                    rc = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._force_kill()
                    rc = "?"
                self._join_readers()
                raise NodeStartError("petchat-node closed stdout before becoming ready (exit code %s)\n%s"
                                     % (rc, self.diagnostics()))
            if line.startswith("{"):  # log.format = "json": the ready line is an ECS document
                try:
                    line = json.loads(line).get("message", "")
                except ValueError:
                    pass
            if line.startswith(READY_PREFIX):
                self.ready_line = line
                m = re.search(r"chat on (https?)://127\.0\.0\.1:(\d+)", line)
                s = re.search(r"admin on unix:(\S+)", line)
                if not m or not s:
                    self._force_kill()
                    raise NodeStartError("cannot parse the ready line: %r" % line)
                self.scheme, self.port = m.group(1), int(m.group(2))
                self.admin_socket = s.group(1).rstrip(",;)")
                mp = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
                self.metrics_port = int(mp.group(1)) if mp else None
                return self

    def _join_readers(self, timeout=5.0):
        for t in self._readers:
            t.join(timeout)

    def _force_kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._join_readers()

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM; asserts exit code 0 within `timeout` seconds. Returns the time taken."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None and self.proc.returncode != 0 and self.proc.returncode != -signal.SIGKILL:
                raise AssertionError("petchat-node had already exited with code %s\n%s"
                                     % (self.proc.returncode, self.diagnostics()))
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._force_kill()
            raise AssertionError("petchat-node did not exit within %.1f s of SIGTERM\n%s"
                                 % (timeout, self.diagnostics()))
        elapsed = time.monotonic() - t0
        self._join_readers()
        if rc != 0:
            raise AssertionError("petchat-node exited with code %s after SIGTERM (want 0)\n%s"
                                 % (rc, self.diagnostics()))
        return elapsed

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._join_readers()

    def restart(self):
        """Clean stop (if running) and start again on the same data dir and config."""
        if self.running():
            self.stop()
        else:
            self._join_readers()
        return self.start()

    def close(self, remove=True):
        """Never raises: kills the process if still running and removes the work dir."""
        try:
            self._force_kill()
        except Exception:
            pass
        if remove and self.workdir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)
        with _ALL_NODES_LOCK:
            if self in _ALL_NODES:
                _ALL_NODES.remove(self)

    def diagnostics(self, tail=80):
        out = ["--- %s (%s) stdout (last %d lines) ---" % (self.name, self.workdir, tail)]
        out += self.stdout_lines[-tail:]
        out.append("--- %s stderr (last %d lines) ---" % (self.name, tail))
        out += self.stderr_lines[-tail:]
        return "\n".join(out)

    # -- HTTP ------------------------------------------------------------------------------

    def connection(self, timeout=HTTP_TIMEOUT_S):
        if self.scheme == "https":
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls_context())
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def tls_context(self):
        """A client context that verifies the gateway's certificate against ca_file."""
        return ssl.create_default_context(cafile=self.ca_file)

    def request(self, method, path, body=None, token=None, headers=None, raw_body=None, timeout=HTTP_TIMEOUT_S):
        return _do_request(self.connection(timeout), method, path, body, token, headers, raw_body)

    def scrape(self, timeout=HTTP_TIMEOUT_S):
        """GET /metrics on the node's metrics listener (metrics.listen)."""
        if self.metrics_port is None:
            raise AssertionError("this node has no metrics listener")
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=timeout)
        return _do_request(conn, "GET", "/metrics")

    def admin(self, method, path, body=None, raw_body=None, timeout=HTTP_TIMEOUT_S):
        return _do_request(UnixHTTPConnection(self.admin_socket, timeout), method, path, body, None, None, raw_body)

    def raw_socket(self, timeout=HTTP_TIMEOUT_S):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s

    # -- helpers ---------------------------------------------------------------------------

    def register(self, name, password, **extra):
        body = {"name": name, "password": password}
        body.update(extra)
        return self.request("POST", "/v1/users", body)

    def login(self, name, password, device="test device"):
        return self.request("POST", "/v1/sessions", {"name": name, "password": password, "device_name": device})

    def refresh(self, refresh_token):
        return self.request("POST", "/v1/sessions/refresh", {"refresh_token": refresh_token})

    def new_user(self, name, password="password123", **extra):
        r = self.register(name, password, **extra)
        if r.status != 201 or not isinstance(r.json, dict):
            raise AssertionError("registering %r: want 201, got %s" % (name, r.describe()))
        return r.json

    def new_session(self, name, password="password123", device="test device"):
        r = self.login(name, password, device)
        if r.status != 201 or not isinstance(r.json, dict):
            raise AssertionError("logging in %r: want 201, got %s" % (name, r.describe()))
        return r.json

    def ctl(self, *args, input=None, timeout=15):
        return run_ctl("--socket", self.admin_socket, *args, input=input, timeout=timeout)


def run_ctl(*args, input=None, timeout=15, cwd=None, env=None):
    """Runs petchatctl; returns (rc, stdout, stderr) as text."""
    _check_binary(CTL_BIN, "petchatctl")
    p = subprocess.run([CTL_BIN] + list(args),
                       input=input.encode() if isinstance(input, str) else input,
                       stdin=subprocess.DEVNULL if input is None else None,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, cwd=cwd, env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def run_node_cli(*args, timeout=15, cwd=None, env=None):
    """Runs petchat-node with the given arguments to completion (for --check-config,
    --version, failing starts); returns (rc, stdout, stderr)."""
    _check_binary(NODE_BIN, "petchat-node")
    p = subprocess.Popen([NODE_BIN] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=cwd, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("petchat-node %s did not exit within %s s\nstdout: %s\nstderr: %s"
                             % (" ".join(args), timeout, out.decode(errors="replace"),
                                err.decode(errors="replace")))
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# TestCase base


class NodeTestCase(unittest.TestCase):
    """Tracks nodes started by tests (and by setUpClass) and cleans them up. A test-level
    node still running at tearDown is stopped with SIGTERM and must exit 0. On failure the
    tail of every node's output is printed to stderr."""

    _class_nodes = ()

    @classmethod
    def start_class_node(cls, **kw):
        if not cls.__dict__.get("_class_nodes"):
            cls._class_nodes = []
        kw.setdefault("name", cls.__name__)
        node = Node(**kw)
        cls._class_nodes.append(node)
        cls.addClassCleanup(node.close)
        return node

    @classmethod
    def tearDownClass(cls):
        nodes = list(cls.__dict__.get("_class_nodes") or ())
        try:
            for n in nodes:
                if n.running():
                    n.stop()
        finally:
            for n in nodes:
                n.close()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self._nodes = []

    def start_node(self, **kw):
        kw.setdefault("name", self.id().rsplit(".", 1)[-1])
        node = Node(**kw)
        self._nodes.append(node)
        self.addCleanup(node.close)
        return node

    def _failed(self):
        # unittest (3.11) reports a failure to the result as soon as the test method ends,
        # before tearDown; outcome.success is reset while tearDown runs, so ask the result.
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is None:
            return True  # unknown: better too much output than none
        for test, _ in list(getattr(result, "failures", [])) + list(getattr(result, "errors", [])):
            if test is self or getattr(test, "test_case", None) is self:  # subTest failures too
                return True
        return False

    def tearDown(self):
        try:
            if self._failed():
                for n in list(self._nodes) + list(type(self).__dict__.get("_class_nodes") or ()):
                    sys.stderr.write("\n" + n.diagnostics() + "\n")
            for n in self._nodes:
                if n.running():
                    n.stop()
        finally:
            super().tearDown()

    # -- assertions ------------------------------------------------------------------------

    def assertStatus(self, resp, status, msg=None):
        if resp.status != status:
            self.fail("want HTTP %s, got %s%s" % (status, resp.describe(), (": " + msg) if msg else ""))

    def assertError(self, resp, status, code, field=None, msg=None):
        """Asserts the exact status and error code, the documented error shape and, if
        given, error.field."""
        where = (" (%s)" % msg) if msg else ""
        self.assertEqual(resp.status, status,
                         "want HTTP %s %s, got %s%s" % (status, code, resp.describe(), where))
        body = resp.json
        self.assertIsInstance(body, dict, "error body is not a JSON object: %s%s" % (resp.describe(), where))
        self.assertIsInstance(body.get("error"), dict, "no error object: %s%s" % (resp.describe(), where))
        err = body["error"]
        self.assertEqual(err.get("code"), code, "wrong error code: %s%s" % (resp.describe(), where))
        self.assertIsInstance(err.get("message"), str, "error.message missing: %s%s" % (resp.describe(), where))
        self.assertTrue(err["message"], "error.message empty: %s%s" % (resp.describe(), where))
        ctype = resp.headers.get("Content-Type", "") if resp.headers is not None else ""
        self.assertTrue(ctype.startswith("application/json"),
                        "error Content-Type is %r, want application/json%s" % (ctype, where))
        if field is not None:
            self.assertEqual(err.get("field"), field, "wrong error.field: %s%s" % (resp.describe(), where))
        return err

    def assertTimestamp(self, value, what="timestamp"):
        self.assertIsInstance(value, str, "%s is not a string: %r" % (what, value))
        self.assertRegex(value, TIMESTAMP_RE, "%s is not RFC 3339 UTC with milliseconds" % what)
