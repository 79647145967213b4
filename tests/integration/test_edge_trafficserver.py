"""The Traffic Server edge config (deploy/edge/trafficserver/) in front of the
real packager origin: ATS 9 from Debian, its own PURGE for hard URL purges,
and castbus_edge.lua turning BAN into regex_revalidate rules (soft: STALE,
the next request revalidates; hard: MISS). Proven with the X-Cache header
the script sets from ATS's own cache lookup status.

Each instance runs under traffic_manager (the BAN path reloads the plugin
with traffic_ctl) in a sandbox of its own: a runroot with the shipped files,
paths and origin filled in.
"""

import http.client
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from test_edge_varnish import (ANY_HOST, EdgeCache, check_compressed_manifests,  # noqa: F401
                               live_stream, segment_paths, started_edges, storage, warm)
from test_packager import START

EDGE = ROOT / "deploy" / "edge" / "trafficserver"
TRAFFIC_MANAGER = shutil.which("traffic_manager") or "/usr/bin/traffic_manager"
# config files ATS reads that castbus leaves empty
EMPTY = ("hosting.config", "volume.config", "parent.config", "sni.yaml", "socks.config",
         "splitdns.config", "ssl_multicert.config", "strategies.yaml", "cache.config",
         "castbus_revalidate.config")


class TrafficServer(EdgeCache):
    """traffic_manager (and its traffic_server) in a runroot of its own."""

    what = "traffic_server"

    def __init__(self, name, origin_port, port=None):
        self.dir = Path(tempfile.mkdtemp(prefix=f"castbus-ats-{name}-"))
        os.chmod(self.dir, 0o755)
        etc = self.dir / "etc"
        for d in ("etc", "var", "run", "log", "cache"):
            (self.dir / d).mkdir()
        for f in EDGE.iterdir():
            text = f.read_text()
            text = text.replace("/etc/trafficserver", str(etc))
            text = text.replace("/var/lib/trafficserver", str(self.dir / "var"))
            text = text.replace("http://castbus-packager:8080/", f"http://127.0.0.1:{origin_port}/")
            (etc / f.name).write_text(text)
        (etc / "storage.config").write_text(f"{self.dir / 'cache'} 64M\n")
        for f in EMPTY:
            (etc / f).write_text("")
        shutil.copytree("/etc/trafficserver/body_factory", etc / "body_factory")
        layout = {"prefix": "/usr", "exec_prefix": "/usr", "bindir": "/usr/bin",
                  "sbindir": "/usr/sbin", "includedir": "/usr/include",
                  "libdir": "/usr/lib/trafficserver",
                  "libexecdir": "/usr/lib/trafficserver/modules", "sysconfdir": etc,
                  "datadir": self.dir / "cache", "localstatedir": self.dir / "var",
                  "runtimedir": self.dir / "run", "logdir": self.dir / "log",
                  "cachedir": self.dir / "cache"}
        (self.dir / "runroot.yaml").write_text("".join(f"{k}: {v}\n" for k, v in layout.items()))
        shutil.chown(self.dir, "trafficserver", "trafficserver")
        for p in self.dir.rglob("*"):
            shutil.chown(p, "trafficserver", "trafficserver")
        self.port = port or free_port()
        self.log = open(self.dir / "manager.out", "w")
        env = dict(os.environ, TS_RUNROOT=str(self.dir / "runroot.yaml"),
                   PROXY_CONFIG_HTTP_SERVER_PORTS=str(self.port))
        self.proc = subprocess.Popen([TRAFFIC_MANAGER], env=env, cwd=self.dir, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def failure_log(self):
        p = self.dir / "log" / "diags.log"
        return p.read_text()[-3000:] if p.exists() else ""

    def wait_ready(self):
        super().wait_ready(timeout=90)


@pytest.fixture
def trafficservers():
    yield from started_edges(TrafficServer, TRAFFIC_MANAGER)


def test_trafficserver_edge_compresses_manifests(start_daemon, stack, storage, trafficservers):
    p, s = live_stream(start_daemon, stack, storage, jobs=6)
    check_compressed_manifests(trafficservers("a", p.origin_port), p, s)


def test_trafficserver_edge_purges_and_bans(start_daemon, stack, storage, trafficservers):
    p, s = live_stream(start_daemon, stack, storage)
    ats = trafficservers("a", p.origin_port)
    video, video2, audio = segment_paths(s)

    # the origin's headers pass through; the edge adds Age and X-Cache
    hit = warm(ats, video)
    assert int(hit.headers["Age"]) >= 0 and hit.headers["Surrogate-Key"]

    # PURGE (ATS's own): that object only
    warm(ats, audio)
    r = ats.request("PURGE", video)
    assert r.status_code == 200, r.text
    assert ats.get(video).headers["X-Cache"] == "MISS"
    assert ats.get(audio).headers["X-Cache"] == "HIT"

    # a soft ban: what matches is revalidated on its next request, the rest is a hit
    for path in (video, video2, audio):
        warm(ats, path)
    r = ats.request("BAN", **{"X-Ban-Regex": f"{ANY_HOST}/live/{s}/720p/", "X-Ban-Type": "STALE"})
    assert r.status_code == 200 and "STALE" in r.text, r.text
    assert ats.get(video).headers["X-Cache"] == "STALE"
    assert ats.get(audio).headers["X-Cache"] == "HIT"

    # a hard ban: refetched
    warm(ats, audio)
    r = ats.request("BAN", **{"X-Ban-Regex": f"{ANY_HOST}/live/{s}/audio/", "X-Ban-Type": "MISS"})
    assert r.status_code == 200, r.text
    assert ats.get(audio).headers["X-Cache"] == "MISS"

    # what purge-fanout must not retry
    assert ats.request("BAN").status_code == 400
    assert ats.request("BAN", **{"X-Ban-Regex": "a b"}).status_code == 400
    assert ats.request("BAN", **{"X-Ban-Regex": "^x", "X-Ban-Type": "SOFT"}).status_code == 400

    # only purge-fanout's addresses may purge (ip_allow.yaml): 127.0.0.2 is not one
    for method, headers in (("PURGE", {}), ("BAN", {"X-Ban-Regex": "^x"})):
        c = http.client.HTTPConnection("127.0.0.1", ats.port, timeout=10,
                                       source_address=("127.0.0.2", 0))
        c.request(method, audio, headers=headers)
        assert c.getresponse().status == 403, method
        c.close()
    c = http.client.HTTPConnection("127.0.0.1", ats.port, timeout=10,
                                   source_address=("127.0.0.2", 0))
    c.request("GET", audio)
    assert c.getresponse().status == 200
    c.close()

    # soft: with the origin gone the stale copy is still served (an object no
    # rule above matched: a rule also covers what was cached in its own second)
    low = f"/live/{s}/360p/{START}.m4s"
    body = warm(ats, low).content
    r = ats.request("BAN", **{"X-Ban-Regex": f"{ANY_HOST}/live/{s}/", "X-Ban-Type": "STALE"})
    assert r.status_code == 200, r.text
    p.stop()
    stale = ats.get(low)
    assert stale.status_code == 200 and stale.content == body
    assert stale.headers["X-Cache"] == "STALE"
