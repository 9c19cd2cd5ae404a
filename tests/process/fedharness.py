"""Federation test harness: real `nats-server` processes (JetStream on) and real
`petchat-node` regions federated through them.

Topologies:
  shared_topology(names)  one nats-server for every region
  leaf_topology(names)    a hub nats-server, and per region a nats-server with its own
                          JetStream domain joined to the hub as a leaf node

Each region's node is created with `petchat-node --init` first, so every region's public
key is known before the configs (with the region directory) are written.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import Node, free_port  # noqa: F401 (tests use fedharness.free_port)

NATS_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"  # Debian: /usr/sbin

_SERVERS = []
_SERVERS_LOCK = threading.Lock()


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class NatsServer:
    """One nats-server with JetStream, on loopback ports chosen here. Keeps its store and
    ports across stop()/start(), so a restart is the same server coming back."""

    def __init__(self, name, domain=None, leaf_listen=False, leaf_remote=None, extra_conf=""):
        if not os.access(NATS_BIN, os.X_OK):
            raise RuntimeError("nats-server not found (scripts/setup-deps installs it)")
        self.name = name
        self.workdir = tempfile.mkdtemp(prefix="petchat-nats-")
        self.port = free_port()
        self.leaf_port = free_port() if leaf_listen else None
        self.proc = None
        self.log_path = os.path.join(self.workdir, "nats.log")
        lines = [
            'server_name: "%s"' % name,
            "listen: 127.0.0.1:%d" % self.port,
            "jetstream {",
            '  store_dir: "%s"' % os.path.join(self.workdir, "js"),
            "  max_memory_store: 64MB",
            "  max_file_store: 1GB",
        ]
        if domain:
            lines.append('  domain: "%s"' % domain)
        lines.append("}")
        if leaf_listen:
            lines += ["leafnodes {", "  listen: 127.0.0.1:%d" % self.leaf_port, "}"]
        if leaf_remote:
            lines += ["leafnodes {", "  reconnect: 1", "  remotes: [ { url: \"nats-leaf://127.0.0.1:%d\" } ]" % leaf_remote,
                      "}"]
        if extra_conf:
            lines.append(extra_conf)
        self.conf = os.path.join(self.workdir, "nats.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        with _SERVERS_LOCK:
            _SERVERS.append(self)
        self.start()

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([NATS_BIN, "-c", self.conf], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        if not wait_port(self.port):
            raise RuntimeError("nats-server %s did not listen on %d\n%s" % (self.name, self.port, self.log_tail()))
        if self.leaf_port and not wait_port(self.leaf_port):
            raise RuntimeError("nats-server %s did not listen for leaf nodes" % self.name)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    def wipe_store(self):
        """Loses the server's JetStream store (must be stopped): streams come back empty."""
        shutil.rmtree(os.path.join(self.workdir, "js"), ignore_errors=True)

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def close(self):
        try:
            self.stop(signal.SIGKILL)
        except Exception:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)
        with _SERVERS_LOCK:
            if self in _SERVERS:
                _SERVERS.remove(self)


def close_all_servers():
    with _SERVERS_LOCK:
        servers = list(_SERVERS)
    for s in servers:
        s.close()


def _toml_str(v):
    import json
    return json.dumps(v)


class Region:
    """A region: its name, its node and the nats-server it talks to."""

    def __init__(self, name, nats, node):
        self.name = name
        self.nats = nats
        self.node = node


def make_regions(names, servers, config=None, federation=None):
    """Creates one node per region name, federated through servers[name] (a NatsServer),
    with every other region in its directory. Returns {name: Region}, all nodes started.
    `federation`: [federation] settings for every region, or a function of the region's name."""
    nodes = {}
    keys = {}
    for name in names:
        node_section = dict({"threads": 2}, **(config or {}).get("node", {}), region=name)
        node = Node(config=dict(config or {}, node=node_section), name=name, start=False)
        out = subprocess.run([node.command()[0], "--config", node.config_path, "--data-dir", node.data_dir, "--init"],
                             capture_output=True, text=True, timeout=15)
        if out.returncode != 0:
            raise RuntimeError("petchat-node --init failed: %s" % out.stderr)
        keys[name] = out.stdout.strip()
        nodes[name] = node
    regions = {}
    for name in names:
        node = nodes[name]
        fed = {"nats_urls": [servers[name].url], "reconnect_wait_ms": 200, "publish_timeout_ms": 2000,
               "presence_interval_s": 1, "resend_after_s": 3, "max_stream_bytes": 64 << 20, "public_url": "http://%s.example.test" % name}
        fed.update(federation(name) if callable(federation) else (federation or {}))  # per region, or for all
        if getattr(servers[name], "domain", None):
            fed.setdefault("jetstream_domain", servers[name].domain)
        lines = ["[federation]"]
        for k, v in fed.items():
            if isinstance(v, list):
                lines.append("%s = [%s]" % (k, ", ".join(_toml_str(x) for x in v)))
            elif isinstance(v, bool):
                lines.append("%s = %s" % (k, "true" if v else "false"))
            elif isinstance(v, int):
                lines.append("%s = %d" % (k, v))
            else:
                lines.append("%s = %s" % (k, _toml_str(v)))
        for other in names:
            if other == name:
                continue
            lines += ["", "[[federation.regions]]", "name = %s" % _toml_str(other),
                      "public_keys = [%s]" % _toml_str(keys[other]),
                      "url = %s" % _toml_str("http://%s.example.test" % other)]
        with open(node.config_path, "a") as f:
            f.write("\n" + "\n".join(lines) + "\n")
        regions[name] = Region(name, servers[name], node)
    for r in regions.values():
        r.node.start()
    regions["_keys"] = keys
    return regions


def shared_topology(names, **kw):
    server = NatsServer("shared")
    regions = make_regions(names, {n: server for n in names}, **kw)
    return [server], regions


def leaf_topology(names, **kw):
    hub = NatsServer("hub", leaf_listen=True)
    servers = {}
    for n in names:
        s = NatsServer("leaf-" + n, domain=n, leaf_remote=hub.leaf_port)
        s.domain = n
        servers[n] = s
    regions = make_regions(names, servers, **kw)
    return [hub] + list(servers.values()), regions
