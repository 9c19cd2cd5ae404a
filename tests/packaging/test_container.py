#!/usr/bin/python3
"""The container image and the two-region compose file, built and run with podman.

    tests/packaging/test_container.py                build the image, then test it (about
                                                     15 minutes on 2 cores, most of it the
                                                     image's release build)
    tests/packaging/test_container.py --no-build     test the image already built

Runs as root (podman's default storage and CNI networks). What it does:

1. The base image. packaging/docker/Dockerfile starts FROM debian:12-slim, which lives in
   Docker Hub; no registry but Debian's and npm's is reachable here, so the same
   distribution is made with `debootstrap --variant=minbase bookworm` from Debian's mirror
   and imported as localhost/debian:12-slim, which podman resolves the short name to.
2. The image: `podman build --format docker` (OCI images have no HEALTHCHECK) of the
   Dockerfile as it is (--network host for apt and npm
   in the build stage, the host's CA bundle mounted for npm: host_ca_mounts), tagged
   petchat-node:0.1.0 as compose.yaml names it.
3. One container, as docs/OPERATIONS.md ("Containers") runs it: /readyz 200 through the
   published port; the node is PID 1 as uid 10001; the log is ECS JSON; the image's health
   check passes; petchatctl works through `podman exec`; SIGHUP reloads; `podman stop`
   is a clean stop (exit 0); started again on its volume it keeps its region key; without
   PETCHAT_REGION it exits 2 and says why.
4. compose.yaml with podman-compose, following the documented first run (keys made with
   --init, put in europe.toml and america.toml, `up -d`). The nats and prometheus images it
   names come from Docker Hub too: stand-ins are built from Debian's nats-server and
   prometheus packages (tests/packaging/containers/), and a copy of the compose file
   names them and publishes free ports. Checked: both regions ready, the link connected,
   a message from alice@europe reaches bob@america, and Prometheus scrapes both nodes.

Everything it makes (containers, volumes, networks, the stand-in images) is removed at the
end; the images petchat-node:0.1.0 and localhost/debian:12-slim are kept for the next run.

podman runs with a config of this test's (CONTAINERS_CONF): runc instead of crun (crun
refuses cgroups v1/v2 hybrid hosts such as these machines) and open-files and process
limits that fit under this machine's hard limits (podman's defaults exceed them).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "process"))
import wsclient  # noqa: E402

IMAGE = "localhost/petchat-node:0.1.0"
BASE = "localhost/debian:12-slim"
RUN_ID = "pt%d" % os.getpid()
NATS_IMAGE = "localhost/petchat-test-nats:" + RUN_ID
PROM_IMAGE = "localhost/petchat-test-prometheus:" + RUN_ID
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]
[engine]
runtime = "runc"
"""

made_containers, made_volumes, made_images = [], [], []
failures = []


def say(what):
    print("== " + what, flush=True)


def check(ok, what):
    if ok:
        print("   ok   " + what, flush=True)
    else:
        print("   FAIL " + what, flush=True)
        failures.append(what)
    return ok


def run(*args, check_rc=True, timeout=600, input=None, quiet=False):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check_rc and p.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s\n%s" % (" ".join(args), p.returncode, p.stdout[-4000:], p.stderr[-4000:]))
    return p


def podman(*args, **kw):
    return run("podman", *args, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, port, path, body=None, token=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw)
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(port, container, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if http("GET", port, "/readyz")[0] == 200:
                return True
        except OSError:
            pass
        state = podman("inspect", "--format", "{{.State.Running}}", container, check_rc=False).stdout.strip()
        if state == "false":
            break
        time.sleep(0.5)
    print(podman("logs", container, check_rc=False).stderr[-3000:])
    return False


def base_image(work):
    if podman("image", "exists", BASE, check_rc=False).returncode == 0:
        return
    say("base image %s: debootstrap --variant=minbase bookworm (Docker Hub is not reachable)" % BASE)
    root = os.path.join(work, "rootfs")
    run("debootstrap", "--variant=minbase", "bookworm", root, "http://deb.debian.org/debian", timeout=1800)
    shutil.rmtree(os.path.join(root, "var/cache/apt/archives"), ignore_errors=True)
    os.makedirs(os.path.join(root, "var/cache/apt/archives/partial"), exist_ok=True)
    tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE], stdin=tar.stdout, check=True,
                   capture_output=True)
    tar.wait()
    shutil.rmtree(root, ignore_errors=True)


def host_ca_mounts(work):
    """Bind mounts that give npm in the build stage this machine's CA bundle. Where the
    npm registry is reached through a TLS-inspecting proxy (as on these machines), its CA
    is in the host's bundle but not in the image; the mounts exist only during RUN steps
    and leave nothing in the image."""
    bundle = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    d = os.path.join(work, "build-ca")
    os.makedirs(d)
    shutil.copy(bundle, os.path.join(d, "ca.crt"))
    with open(os.path.join(d, "npmrc"), "w") as f:
        f.write("cafile=/run/petchat-build/ca.crt\n")
    return ["-v", "%s:/run/petchat-build:ro" % d, "-v", "%s:/root/.npmrc:ro" % os.path.join(d, "npmrc")]


def build_images(build, work):
    if build:
        say("podman build -f packaging/docker/Dockerfile -t %s (the release build: several minutes)" % IMAGE)
        started = time.time()
        run("podman", "build", "--format", "docker", "--pull=never", "--network", "host", *host_ca_mounts(work), "-f",
            "packaging/docker/Dockerfile", "-t", IMAGE, REPO, timeout=3600)
        print("   built in %d s" % (time.time() - started))
    for name, image in (("nats", NATS_IMAGE), ("prometheus", PROM_IMAGE)):
        say("stand-in image %s (Debian's %s package)" % (image, name))
        run("podman", "build", "--pull=never", "--network", "host", "-f",
            os.path.join(HERE, "containers", name + ".Containerfile"), "-t", image, os.path.join(HERE, "containers"),
            timeout=1800)
        made_images.append(image)


def image_config():
    say("the image's configuration")
    info = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    cfg = info["Config"]
    check(cfg.get("User") == "petchat", "runs as user petchat (USER %r)" % cfg.get("User"))
    check("/var/lib/petchat" in (cfg.get("Volumes") or {}), "/var/lib/petchat is a volume")
    check({"8080/tcp", "9464/tcp"} <= set(cfg.get("ExposedPorts") or {}), "exposes 8080 and 9464")
    check(cfg.get("Entrypoint") == ["/usr/bin/petchat-node"], "the entrypoint is the node itself")
    check("--require-region" in (cfg.get("Cmd") or []), "the command requires a region")
    check(cfg.get("StopSignal") in ("SIGTERM", "15", None), "stops with SIGTERM")
    print("   image size: %.1f MiB" % (info["Size"] / 1048576))


def one_container():
    name, volume, port = "petchat-test-one-" + RUN_ID, "petchat-test-one-" + RUN_ID, free_port()
    say("one container: podman run -d -e PETCHAT_REGION=europe -p 127.0.0.1:%d:8080 -v %s:/var/lib/petchat" % (port, volume))
    made_containers.append(name)
    made_volumes.append(volume)
    podman("run", "-d", "--name", name, "-e", "PETCHAT_REGION=europe", "-p", "127.0.0.1:%d:8080" % port,
           "-v", "%s:/var/lib/petchat" % volume, IMAGE)
    if not check(wait_ready(port, name), "GET /readyz answers 200 through the published port"):
        return
    status1 = podman("exec", name, "cat", "/proc/1/status").stdout
    uid_line = [l for l in status1.splitlines() if l.startswith("Uid:")][0]
    check(uid_line.split()[1:] == ["10001"] * 4, "PID 1 runs as uid 10001 (%s)" % uid_line.strip())
    cmdline = podman("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
    check(cmdline[0] == "/usr/bin/petchat-node", "PID 1 is petchat-node (%s)" % cmdline[0])
    logs = podman("logs", name)
    lines = [l for l in logs.stderr.splitlines() if l.strip()]
    parsed = []
    for l in lines:
        try:
            parsed.append(json.loads(l))
        except ValueError:
            pass
    check(lines and len(parsed) == len(lines) and all("@timestamp" in p and "log.level" in p for p in parsed),
          "every log line is ECS JSON (%d lines)" % len(lines))
    check("petchat-node ready" in logs.stdout, "the ready line on standard output")
    check(podman("healthcheck", "run", name, check_rc=False).returncode == 0, "podman healthcheck run: healthy")
    st = json.loads(podman("exec", name, "petchatctl", "--json", "status").stdout)
    check(st.get("region") == "europe", "petchatctl status in the container: region europe")
    code, user = http("POST", port, "/v1/users", {"name": "carol", "password": "password123"})
    check(code == 201, "a user registers (%s)" % code)
    pub1 = podman("exec", name, "cat", "/var/lib/petchat/region.pub").stdout
    podman("kill", "-s", "HUP", name)
    deadline = time.time() + 15
    while time.time() < deadline and "reload" not in podman("logs", name).stderr:
        time.sleep(0.2)
    check("reload" in podman("logs", name).stderr, "SIGHUP (podman kill -s HUP): the config reloaded")
    check(http("GET", port, "/readyz")[0] == 200, "still serving after the reload")
    podman("stop", "-t", "15", name)
    code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    check(code == "0", "podman stop: exit status %s" % code)
    logs = podman("logs", name)
    check("stopped cleanly" in logs.stderr + logs.stdout, "stopped cleanly")
    podman("start", name)
    if check(wait_ready(port, name), "started again on its volume"):
        check(podman("exec", name, "cat", "/var/lib/petchat/region.pub").stdout == pub1, "the same region key")
        code, _ = http("POST", port, "/v1/sessions", {"name": "carol", "password": "password123", "device_name": "t"})
        check(code == 201, "carol, registered before the restart, logs in (%s)" % code)
    podman("stop", "-t", "15", name)

    say("no region: the container refuses")
    volume2 = volume + "-noregion"
    made_volumes.append(volume2)
    p = podman("run", "--rm", "-v", "%s:/var/lib/petchat" % volume2, IMAGE, check_rc=False)
    check(p.returncode == 2, "exit status 2 without PETCHAT_REGION (%d)" % p.returncode)
    check("PETCHAT_REGION" in p.stdout + p.stderr, "the message names PETCHAT_REGION")


def compose(work):
    import yaml
    say("compose.yaml with podman-compose: two regions, nats, prometheus")
    project = "petchat-test-" + RUN_ID
    d = os.path.join(work, "compose")
    shutil.copytree(os.path.join(REPO, "packaging", "docker"), d)
    with open(os.path.join(d, "compose.yaml")) as f:
        spec = yaml.safe_load(f)
    ports = {"europe": free_port(), "america": free_port(), "prometheus": free_port()}
    spec["services"]["nats"]["image"] = NATS_IMAGE
    spec["services"]["prometheus"]["image"] = PROM_IMAGE
    spec["services"]["prometheus"]["volumes"] = [
        v.replace("../../deploy", os.path.join(REPO, "deploy")) for v in spec["services"]["prometheus"]["volumes"]]
    spec["services"]["prometheus"]["ports"] = ["127.0.0.1:%d:9090" % ports["prometheus"]]
    for region in ("europe", "america"):
        svc = spec["services"][region]
        svc.pop("build", None)  # built above, as `docker compose build` would
        svc["ports"] = ["127.0.0.1:%d:8080" % ports[region]]
    spec.pop("x-petchat-node", None)
    with open(os.path.join(d, "compose.yaml"), "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    pc = ["podman-compose", "-p", project, "-f", os.path.join(d, "compose.yaml")]
    for v in ("nats-data", "europe-data", "america-data", "prometheus-data"):
        made_volumes.append("%s_%s" % (project, v))
    try:
        keys = {}
        for region in ("europe", "america"):
            p = run(*pc, "run", "--rm", "--no-deps", "-T", region, "--init", "--config", "/dev/null", "--data-dir",
                    "/var/lib/petchat", timeout=120)
            found = [l.strip() for l in p.stdout.splitlines() if re.fullmatch(r"[0-9a-f]{64}", l.strip())]
            keys[region] = found[0] if found else None
            if not found:
                print(p.stdout[-2000:], p.stderr[-2000:])
        if not check(all(keys.values()), "--init printed each region's public key"):
            return
        for region, other in (("europe", "america"), ("america", "europe")):
            path = os.path.join(d, region + ".toml")
            with open(path) as f:
                text = f.read()
            text = text.replace("%s_PUBLIC_KEY" % other.upper(), keys[other])
            text = text.replace("127.0.0.1:8081", "127.0.0.1:%d" % ports["europe"])
            text = text.replace("127.0.0.1:8082", "127.0.0.1:%d" % ports["america"])
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
        run(*pc, "up", "-d", timeout=300)
        for region in ("europe", "america"):
            check(wait_ready(ports[region], "%s_%s_1" % (project, region)), "%s: /readyz 200" % region)
        deadline, fed = time.time() + 60, {}
        while time.time() < deadline:
            p = run(*pc, "exec", "-T", "europe", "petchatctl", "--json", "federation", "status", check_rc=False)
            try:  # podman-compose prints the podman command line and the exit code around it
                fed = json.loads(p.stdout[p.stdout.index("{"):p.stdout.rindex("}") + 1])
            except ValueError:
                fed = {}
            if fed.get("connected"):
                break
            time.sleep(1)
        check(fed.get("connected") is True, "europe's link to nats is connected")
        for region, name in (("europe", "alice"), ("america", "bob")):
            code, _ = http("POST", ports[region], "/v1/users", {"name": name, "password": "password123"})
            check(code == 201, "%s registers in %s" % (name, region))
        tokens = {}
        for region, name in (("europe", "alice"), ("america", "bob")):
            code, s = http("POST", ports[region], "/v1/sessions",
                           {"name": name, "password": "password123", "device_name": "test"})
            tokens[name] = s["access_token"] if code == 201 else None

        class At:
            def __init__(self, port):
                self.port = port

        bob = wsclient.connect(At(ports["america"]), tokens["bob"])
        alice = wsclient.connect(At(ports["europe"]), tokens["alice"])
        try:
            alice.send_message("bob@america", "hello from a container in europe")
            got = bob.wait_event(lambda e: "message" in e and e["message"]["body"].get("text") ==
                                 "hello from a container in europe", timeout=60, what="alice's message")
            check(got["message"]["from"] == "alice@europe", "bob@america gets alice@europe's message across regions")
        except Exception as e:  # noqa: BLE001: reported as a failure with its reason
            check(False, "alice's message reaches bob across regions (%s)" % e)
        finally:
            alice.close()
            bob.close()
        deadline, health = time.time() + 90, []
        while time.time() < deadline:
            code, t = http("GET", ports["prometheus"], "/api/v1/targets")
            health = sorted((a["labels"].get("node_region"), a["health"]) for a in
                            (t.get("data", {}).get("activeTargets", []) if code == 200 else []))
            if health == [("america", "up"), ("europe", "up")]:
                break
            time.sleep(2)
        check(health == [("america", "up"), ("europe", "up")], "prometheus scrapes both regions: %s" % health)
        code, rules = http("GET", ports["prometheus"], "/api/v1/rules")
        groups = rules.get("data", {}).get("groups", []) if code == 200 else []
        check(sum(len(g["rules"]) for g in groups) > 0, "prometheus loaded the alert rules")
    finally:
        run(*pc, "down", "-v", check_rc=False, timeout=300)
        podman("network", "rm", "-f", project + "_default", check_rc=False)  # podman-compose 1.0.3 leaves it


def main():
    if os.geteuid() != 0:
        sys.exit("run as root")
    build = "--no-build" not in sys.argv[1:]
    started = time.time()
    work = tempfile.mkdtemp(prefix="petchat-container-")
    conf = os.path.join(work, "containers.conf")
    with open(conf, "w") as f:
        f.write(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = conf
    try:
        base_image(work)
        build_images(build, work)
        image_config()
        one_container()
        compose(work)
    except Exception as e:  # noqa: BLE001: any error is the test's failure, after cleaning up
        failures.append("error: %s" % e)
        print("ERROR %s" % e, flush=True)
    finally:
        for c in made_containers:
            podman("rm", "-f", c, check_rc=False)
        for v in made_volumes:
            podman("volume", "rm", "-f", v, check_rc=False)
        for i in made_images:
            podman("rmi", "-f", i, check_rc=False)
        shutil.rmtree(work, ignore_errors=True)
    took = int(time.time() - started)
    if failures:
        print("0 passed, 1 failed (test_container, %d s): %s" % (took, "; ".join(failures)))
        sys.exit(1)
    print("1 passed, 0 failed (test_container, %d s)" % took)


if __name__ == "__main__":
    main()
