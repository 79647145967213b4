"""Shared fixtures for the integration tests.

The tests start the real servers (Kafka, NATS, PostgreSQL, Redis) with
tools/devstack, in a temporary directory and on free ports, so they never
touch a developer's `make run` stack; and they start the real daemons and
tools built by `make` (CASTBUS_BUILD points at the build directory).

Waiting is always bounded polling for a state (wait_until); no test asserts
how long something took.

External-stack mode (CASTBUS_ITEST_EXTERNAL_STACK=1; deploy/compose/run-integration
uses it): the servers are someone else's, e.g. the compose file's containers.
The suite does not run tools/devstack; it takes CASTBUS_KAFKA_BROKERS,
CASTBUS_NATS_URL, CASTBUS_PG_DSN and CASTBUS_REDIS_URL from the environment, and
stops/starts a server (stack.down("kafka"), stack.up("kafka")) by running the
command in CASTBUS_ITEST_SERVICE_CTL with `stop <service>` / `start <service>`
appended (for compose: `docker-compose -f deploy/compose/docker-compose.yml`),
then waits until the server answers again. The daemons under test are still the
binaries in CASTBUS_BUILD, started, signalled and killed by the tests. A test
that drives tools/devstack itself (tools/run) is skipped in this mode.
"""

import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CASTBUS_BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
BIN = BUILD / "bin"
HELPERS = BUILD / "tests" / "helpers"
DEVSTACK = ROOT / "tools" / "devstack"
EXTERNAL_STACK = os.environ.get("CASTBUS_ITEST_EXTERNAL_STACK") == "1"

ADMIN_KEY = "itest-admin-key"
EDITOR_KEY = "itest-editor-key"
VIEWER_KEY = "itest-viewer-key"
API_KEYS = f"admin:{ADMIN_KEY},editor:{EDITOR_KEY},viewer:{VIEWER_KEY}"

# daemon -> the dependencies its readiness checks report
DAEMONS = {
    "ingest": {"kafka", "postgres", "storage"},
    "transcode-worker": {"kafka", "kafka-consumer", "storage"},
    "packager": {"kafka", "kafka-consumer", "storage"},
    "purge-fanout": {"kafka", "kafka-consumer", "nats", "redis"},
    "drm-license": {"nats", "postgres"},
    "entitlement": {"nats", "postgres", "redis"},
    "analytics-sink": {"kafka", "postgres"},
    "sfu": {"nats", "redis"},
}


def _ephemeral_range():
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


# Ports handed to the servers and daemons of this session come from below the
# kernel's ephemeral range: a port from bind(0) lies inside it, where every
# outgoing connection of the daemons (to Kafka, PostgreSQL, NATS...) also
# takes its local port, so it could be taken again before the daemon listens.
_EPHEMERAL_LO = _ephemeral_range()[0]
_PORT_RANGE = (20000, min(32000, _EPHEMERAL_LO - 1))
_handed_out = set()
_ports = random.Random()


def _free(kind):
    lo, hi = _PORT_RANGE
    for _ in range(500 if hi > lo else 0):
        port = _ports.randint(lo, hi)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, kind) as s:  # no room below the range: the old way
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port():
    return _free(socket.SOCK_STREAM)


def free_udp_port():
    return _free(socket.SOCK_DGRAM)


def wait_until(predicate, timeout=60.0, interval=0.2, what="condition"):
    """Poll predicate() until it returns a truthy value; fail after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (requests.RequestException, OSError, ValueError) as e:
            last = e
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


class Stack:
    """A devstack of our own: its directory, ports and CASTBUS_* settings."""

    def __init__(self, directory):
        self.dir = directory
        self.ports = {
            "CASTBUS_DEVSTACK_KAFKA_PORT": free_port(),
            "CASTBUS_DEVSTACK_KAFKA_CONTROLLER_PORT": free_port(),
            "CASTBUS_DEVSTACK_NATS_PORT": free_port(),
            "CASTBUS_DEVSTACK_NATS_MONITOR_PORT": free_port(),
            "CASTBUS_DEVSTACK_PG_PORT": free_port(),
            "CASTBUS_DEVSTACK_REDIS_PORT": free_port(),
        }
        self.env = {}

    def devstack_env(self):
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.ports.items()})
        env["CASTBUS_DEVSTACK_DIR"] = str(self.dir)
        env["CASTBUS_BUSCTL"] = str(BIN / "castbus-busctl")
        return env

    def run(self, *args, timeout=240):
        return subprocess.run([str(DEVSTACK), *args], env=self.devstack_env(), text=True,
                              capture_output=True, timeout=timeout)

    def up(self, *services):
        r = self.run("up", *services)
        if r.returncode != 0:
            pytest.fail(f"devstack up {' '.join(services)} failed:\n{r.stdout}\n{r.stderr}")

    def down(self, *services):
        r = self.run("down", *services)
        if r.returncode != 0:
            pytest.fail(f"devstack down {' '.join(services)} failed:\n{r.stdout}\n{r.stderr}")

    def load_env(self):
        r = self.run("env")
        assert r.returncode == 0, r.stderr
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                self.env[k] = v.strip("'\"")
        for k in ("CASTBUS_KAFKA_BROKERS", "CASTBUS_NATS_URL", "CASTBUS_PG_DSN",
                  "CASTBUS_REDIS_URL"):
            assert k in self.env, f"devstack env does not print {k}"

    @property
    def brokers(self):
        return self.env["CASTBUS_KAFKA_BROKERS"]


class ExternalStack:
    """Servers run by someone else (CASTBUS_ITEST_EXTERNAL_STACK=1): their addresses
    come from the environment and CASTBUS_ITEST_SERVICE_CTL stops and starts them."""

    SERVICES = ("kafka", "nats", "postgres", "redis")
    ENV_KEYS = ("CASTBUS_KAFKA_BROKERS", "CASTBUS_NATS_URL", "CASTBUS_PG_DSN", "CASTBUS_REDIS_URL")

    def __init__(self):
        missing = [k for k in self.ENV_KEYS if not os.environ.get(k)]
        if missing:
            pytest.fail("CASTBUS_ITEST_EXTERNAL_STACK=1 needs " + ", ".join(missing))
        self.env = {k: os.environ[k] for k in self.ENV_KEYS}
        self.ctl = shlex.split(os.environ.get("CASTBUS_ITEST_SERVICE_CTL", ""))
        self.dir = None

    @property
    def brokers(self):
        return self.env["CASTBUS_KAFKA_BROKERS"]

    # tools/devstack is not ours to drive here: a test that needs it is skipped
    def devstack_env(self):
        pytest.skip("drives tools/devstack itself; not with CASTBUS_ITEST_EXTERNAL_STACK=1")

    def run(self, *args, **kw):
        self.devstack_env()

    def _ctl(self, verb, services):
        if not self.ctl:
            pytest.fail(f"{verb} {' '.join(services)}: CASTBUS_ITEST_SERVICE_CTL is not set")
        for svc in services:
            r = subprocess.run([*self.ctl, verb, svc], text=True, capture_output=True, timeout=240)
            if r.returncode != 0:
                pytest.fail(f"{' '.join(self.ctl)} {verb} {svc} failed ({r.returncode}):\n"
                            f"{r.stdout}\n{r.stderr}")

    def up(self, *services):
        services = services or self.SERVICES
        self._ctl("start", services)
        self.wait_answering(*services)

    def down(self, *services):
        services = services or self.SERVICES
        self._ctl("stop", services)
        for svc in services:
            wait_until(lambda svc=svc: not self.reachable(svc), 60, 0.5, f"{svc} to stop answering")

    def wait_answering(self, *services, timeout=180):
        for svc in services or self.SERVICES:
            wait_until(lambda svc=svc: self.answers(svc), timeout, 0.5, f"{svc} to answer")

    def addresses(self, svc):
        """(host, port) pairs the service is reached at, from its CASTBUS_* setting."""
        if svc == "kafka":
            out = []
            for b in self.brokers.split(","):
                host, _, port = b.strip().rpartition(":")
                out.append((host.strip("[]") or "127.0.0.1", int(port)))
            return out
        if svc == "postgres":
            dsn = self.env["CASTBUS_PG_DSN"]
            if "://" in dsn:
                u = urlsplit(dsn)
                return [(u.hostname or "127.0.0.1", u.port or 5432)]
            kv = dict(w.split("=", 1) for w in shlex.split(dsn) if "=" in w)
            return [(kv.get("host", "127.0.0.1"), int(kv.get("port", 5432)))]
        u = urlsplit(self.env["CASTBUS_NATS_URL"].split(",")[0] if svc == "nats"
                     else self.env["CASTBUS_REDIS_URL"])
        return [(u.hostname or "127.0.0.1", u.port or (4222 if svc == "nats" else 6379))]

    def reachable(self, svc):
        for host, port in self.addresses(svc):
            try:
                socket.create_connection((host, port), timeout=2).close()
                return True
            except OSError:
                pass
        return False

    def answers(self, svc):
        """The service does its job: the same bar as tools/devstack's readiness."""
        try:
            return self._answers(svc)
        except subprocess.TimeoutExpired:
            return False

    def _answers(self, svc):
        if svc == "kafka":
            r = busctl(self, "topics", "ensure", "--timeout", "10s")
            return r.returncode == 0
        if svc == "postgres":
            r = subprocess.run(["psql", self.env["CASTBUS_PG_DSN"], "-Atc", "SELECT 1"],
                               capture_output=True, text=True, timeout=30,
                               env=dict(os.environ, PGCONNECT_TIMEOUT="3"))
            return r.returncode == 0 and r.stdout.strip() == "1"
        (host, port), = self.addresses(svc)
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.settimeout(3)
            if svc == "nats":
                return sock.recv(4096).startswith(b"INFO ")
            u = urlsplit(self.env["CASTBUS_REDIS_URL"])
            if u.password:
                sock.sendall(resp_command("AUTH", unquote(u.password)))
                if not sock.recv(4096).startswith(b"+OK"):
                    return False
            sock.sendall(resp_command("PING"))
            return sock.recv(4096).startswith(b"+PONG")


def resp_command(*words):
    out = f"*{len(words)}\r\n"
    for w in words:
        out += f"${len(w.encode())}\r\n{w}\r\n"
    return out.encode()


@pytest.fixture(scope="session")
def stack():
    for b in [BIN / "castbus-busctl", HELPERS / "bus_probe"] + [BIN / f"castbus-{d}" for d in DAEMONS]:
        if not b.exists():
            pytest.fail(f"{b} is missing: run `make all helpers` first")
    if EXTERNAL_STACK:
        s = ExternalStack()
        s.wait_answering()
        yield s
        return
    directory = Path(tempfile.mkdtemp(prefix="castbus-itest-"))
    os.chmod(directory, 0o755)  # the postgres user must reach its data dir
    s = Stack(directory)
    try:
        s.up()
        s.load_env()
        yield s
    finally:
        s.run("down", timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


class Daemon:
    """One running castbus daemon with its own port, storage and log file."""

    def __init__(self, name, stack, tmpdir, extra_env=None):
        self.name = name
        self.port = free_port()
        self.storage = tmpdir / f"{name}-storage"
        self.log_path = tmpdir / f"{name}.log"
        n = 1
        while self.log_path.exists():  # a restarted daemon keeps the first one's log
            n += 1
            self.log_path = tmpdir / f"{name}-{n}.log"
        env = dict(os.environ)
        env.update(stack.env)
        env.update({
            "CASTBUS_HTTP_HOST": "127.0.0.1",
            "CASTBUS_HTTP_PORT": str(self.port),
            "CASTBUS_API_KEYS": API_KEYS,
            "CASTBUS_STORAGE_URL": f"file://{self.storage}",
            "CASTBUS_HEALTH_INTERVAL": "250ms",
            "CASTBUS_SHUTDOWN_GRACE": "10s",
        })
        if name == "ingest":
            # the publish listeners, on free ports (RTMPS only when a test gives a certificate)
            env.update({
                "CASTBUS_LISTEN_HOST": "127.0.0.1",
                "CASTBUS_RTMP_PORT": str(free_port()),
                "CASTBUS_RTMPS_PORT": "0",
                "CASTBUS_SRT_PORT": str(free_udp_port()),
                "CASTBUS_WORK_DIR": str(tmpdir / "ingest-work"),
                "CASTBUS_STORAGE_FSYNC": "false",
            })
        self.origin_port = None
        if name == "packager":
            # the origin has its own port; url() sends /live, /vod and /time there
            self.origin_port = free_port()
            env["CASTBUS_ORIGIN_HOST"] = "127.0.0.1"
            env["CASTBUS_ORIGIN_PORT"] = str(self.origin_port)
        env.update(extra_env or {})
        self.env = env
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(BIN / f"castbus-{name}")], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def url(self, path):
        origin = self.origin_port and path.startswith(("/live/", "/vod/", "/time"))
        return f"http://127.0.0.1:{self.origin_port if origin else self.port}{path}"

    def get(self, path, key=None, **kw):
        return self.request("GET", path, key, **kw)

    def request(self, method, path, key=None, headers=None, **kw):
        headers = dict(headers or {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        kw.setdefault("timeout", 5)
        return requests.request(method, self.url(path), headers=headers, **kw)

    def wait_healthy(self):
        def healthy():
            if self.proc.poll() is not None:
                pytest.fail(f"castbus-{self.name} exited with {self.proc.returncode}:\n"
                            f"{self.log_text()}")
            return self.get("/healthz").status_code == 200
        wait_until(healthy, 30, what=f"castbus-{self.name} /healthz")

    def wait_ready(self, timeout=90):
        wait_until(lambda: self.get("/readyz").status_code == 200, timeout,
                   what=f"castbus-{self.name} /readyz")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"castbus-{self.name} did not stop within {timeout}s")
        self.log.close()
        return self.proc.returncode

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def stop_clean(self):
        """Stop with SIGTERM unless it is gone already; fail on a bad exit or a
        sanitizer report in its log (a crash at exit counts)."""
        if self.proc.poll() is None:
            rc = self.stop()
            if rc != 0:
                pytest.fail(f"castbus-{self.name} exited with {rc} after SIGTERM:\n"
                            f"{self.log_text()[-4000:]}")
        reports = [ln for ln in self.log_text().splitlines()
                   if any(m in ln for m in self.SANITIZER_MARKS)]
        if reports:
            pytest.fail(f"castbus-{self.name}: sanitizer reports in {self.log_path}:\n" +
                        "\n".join(reports[:10]))

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def log_lines(self):
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line, "not_json": True})
        return out


def stop_all_clean(daemons):
    """stop_clean() every daemon, then report every failure at once."""
    errors = []
    for d in daemons:
        try:
            d.stop_clean()
        except pytest.fail.Exception as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors))


@pytest.fixture
def start_daemon(stack, tmp_path):
    started = []

    def start(name, extra_env=None):
        d = Daemon(name, stack, tmp_path, extra_env)
        started.append(d)
        d.wait_healthy()
        return d

    yield start
    stop_all_clean(started)


class Probe:
    """bus_probe running in the background, its JSON events read line by line."""

    def __init__(self, stack, *args, env=None):
        e = dict(os.environ)
        e.update(stack.env)
        e.update(env or {})
        self.proc = subprocess.Popen([str(HELPERS / "bus_probe"), *args], env=e,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events = []
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._buf = ""

    def poll_events(self):
        try:
            chunk = self.proc.stdout.read()
        except (BlockingIOError, TypeError):
            chunk = None
        if chunk:
            self._buf += chunk
            *lines, self._buf = self._buf.split("\n")
            for line in lines:
                if line.strip():
                    self.events.append(json.loads(line))
        return self.events

    def wait_event(self, predicate, timeout=60, what="probe event"):
        def found():
            for ev in self.poll_events():
                if predicate(ev):
                    return ev
            if self.proc.poll() is not None:
                self.poll_events()
                for ev in self.events:
                    if predicate(ev):
                        return ev
                pytest.fail(f"bus_probe exited ({self.proc.returncode}) before {what}:\n"
                            f"{self.proc.stderr.read()}")
            return None
        return wait_until(found, timeout, 0.05, what)

    def wait_exit(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("bus_probe did not exit")
        self.poll_events()
        return rc

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit()

    def stderr_text(self):
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


@pytest.fixture
def probes(stack):
    running = []

    def start(*args, env=None):
        p = Probe(stack, *args, env=env)
        running.append(p)
        return p

    yield start
    for p in running:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def commit_group_to_end(stack, group, topics, timeout=60):
    """Commit `group` to the end of every partition of `topics`, so a daemon
    of that group started next skips what earlier tests left there. Waits
    out fresh topics without leaders yet, and a group that still has a
    member (a daemon killed by the previous test, until its session ends)."""
    c = Consumer({"bootstrap.servers": stack.brokers, "group.id": group,
                  "enable.auto.commit": False})
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                md = c.list_topics(timeout=30)
                ends = [TopicPartition(t, p, c.get_watermark_offsets(TopicPartition(t, p),
                                                                     timeout=30)[1])
                        for t in topics for p in md.topics[t].partitions]
                c.commit(offsets=ends, asynchronous=False)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


class TopicReader:
    """Every message of a topic from the start, kept by key (stream id): the
    JSON bodies in by_key, and every record (key, value, headers) in records."""

    def __init__(self, stack, topic):
        self.topic = topic
        self.consumer = Consumer({
            "bootstrap.servers": stack.brokers, "group.id": unique("itest-reader"),
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
        })
        # every partition assigned by hand, not subscribed: no group to join or
        # leave, so close() never runs a rebalance callback (librdkafka can hang
        # forever in rd_kafka_assign() from the callback during close: a CI run
        # did, in this fixture's teardown). The stack made the topics.
        parts = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        assert parts, f"topic {topic} has no partitions"
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.by_key = {}
        self.records = []

    def poll(self):
        while True:
            m = self.consumer.poll(0.2)
            if m is None:
                return
            if m.error():
                continue
            key = (m.key() or b"").decode()
            self.records.append({"key": key, "value": m.value(),
                                 "headers": {k: (v or b"").decode(errors="replace")
                                             for k, v in (m.headers() or [])}})
            try:
                self.by_key.setdefault(key, []).append(json.loads(m.value()))
            except ValueError:
                pass

    def messages(self, key):
        self.poll()
        return list(self.by_key.get(key, []))

    def wait(self, key, predicate, timeout=90, what="message"):
        def found():
            msgs = self.messages(key)
            return msgs if predicate(msgs) else None
        return wait_until(found, timeout, 0.1, f"{what} on {self.topic} for {key}")

    def close(self):
        self.consumer.close()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def busctl(stack, *args, stdin=None, env=None):
    e = dict(os.environ)
    e.update(stack.env)
    e.update(env or {})
    return subprocess.run([str(BIN / "castbus-busctl"), *args], input=stdin, env=e, text=True,
                          capture_output=True, timeout=60)
