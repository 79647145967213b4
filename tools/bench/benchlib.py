"""What the benchmarks in tools/bench share: paths, logging, ports, waiting,
and a dev stack of their own (tools/devstack on free ports)."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CASTBUS_BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
BIN = BUILD / "bin"


def log(msg):
    print(f"bench: {msg}", flush=True)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise SystemExit(f"bench: timed out waiting for {what}")


class Devstack:
    """tools/devstack in a directory of the benchmark's, on free ports."""

    def __init__(self, work):
        self.dir = work / "devstack"
        self.env = dict(os.environ)
        self.env.update({
            "CASTBUS_DEVSTACK_DIR": str(self.dir),
            "CASTBUS_BUSCTL": str(BIN / "castbus-busctl"),
            "CASTBUS_DEVSTACK_KAFKA_PORT": str(free_port()),
            "CASTBUS_DEVSTACK_KAFKA_CONTROLLER_PORT": str(free_port()),
            "CASTBUS_DEVSTACK_NATS_PORT": str(free_port()),
            "CASTBUS_DEVSTACK_NATS_MONITOR_PORT": str(free_port()),
            "CASTBUS_DEVSTACK_PG_PORT": str(free_port()),
            "CASTBUS_DEVSTACK_REDIS_PORT": str(free_port()),
        })

    def run(self, *args):
        return subprocess.run([str(ROOT / "tools" / "devstack"), *args], env=self.env,
                              capture_output=True, text=True, timeout=300)

    def up(self, *servers):
        """Start the servers; returns the CASTBUS_* environment that reaches them."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        r = self.run("up", *servers)
        if r.returncode != 0:
            raise SystemExit(f"bench: devstack up failed:\n{r.stdout}\n{r.stderr}")
        out = {}
        for line in self.run("env").stdout.splitlines():
            if line.startswith("export "):
                k, _, v = line[7:].partition("=")
                out[k] = v.strip("'\"")
        return out

    def down(self):
        self.run("down")


NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


def start_nginx(d, conf_text, port, what):
    """nginx on the configuration `conf_text` (prefix `d`), in the foreground
    ("daemon off"); returns once `port` accepts connections."""
    conf = d / "nginx.conf"
    conf.write_text(conf_text)
    log_file = open(d / "stdout.log", "w")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(d)], stdout=log_file,
                            stderr=subprocess.STDOUT)
    log_file.close()

    def listening():
        if proc.poll() is not None:
            raise SystemExit(f"bench: nginx exited; see {d}/logs/error.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(listening, 30, what)
    return proc


def stop(proc, sig, timeout):
    """Signal `proc` and wait for it; killed when it is not gone in `timeout` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
