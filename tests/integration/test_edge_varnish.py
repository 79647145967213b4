"""The CDN edge config castbus ships (deploy/edge/varnish/castbus.vcl) on real
Varnish (Debian's varnishd with varnish-modules' xkey) in front of the real
packager origin: what the edges cache, and that each kind of purge
purge-fanout sends (URL, surrogate key, URL regex ban, everything; soft or
hard) takes effect, proven with the edge's own response headers (X-Cache,
Age). A soft-purged object is still served when the origin is down; a
hard-purged one is not.

Each edge gets its own site.vcl (backend = the packager's origin port,
`acl purgers`) beside a byte-for-byte copy of castbus.vcl.
"""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from conftest import ROOT, free_port, unique, wait_until
from test_packager import SEG, START, Results, start_packager

EDGE = ROOT / "deploy" / "edge" / "varnish"
VARNISHD = shutil.which("varnishd") or "/usr/sbin/varnishd"


class EdgeCache:
    """A cache in front of the origin, run in a session of its own: the
    subclass starts self.proc (logging to self.log) in self.dir, listening on
    self.port."""

    what = "the cache"

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path):
        return requests.get(self.url(path), timeout=10)

    def request(self, method, path="/", **headers):
        return requests.request(method, self.url(path), headers=headers, timeout=10)

    def failure_log(self):
        """What to show when the process exits early."""
        return ""

    def wait_ready(self, timeout=60):
        def up():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.what} exited ({self.proc.returncode}):\n{self.failure_log()}")
            try:
                return self.get("/time").status_code == 200
            except requests.RequestException:
                return False
        wait_until(up, timeout, what=f"{self.what} on {self.port}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:  # children the leader left behind (varnishd's cache, traffic_server)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def started_edges(cls, exe):
    """The body of an edge fixture: start(name, origin_port, **kw) gives a
    ready cls; all are stopped after the test."""
    if not os.access(exe, os.X_OK):
        pytest.skip(f"{exe} is not installed (tools/bootstrap installs it)")
    started = []

    def start(name, origin_port, **kw):
        e = cls(name, origin_port, **kw)
        started.append(e)
        e.wait_ready()
        return e

    yield start
    for e in started:
        e.stop()


class Varnish(EdgeCache):
    """One varnishd in the foreground, its own work dir and site.vcl."""

    what = "varnishd"

    def __init__(self, name, origin_port, purgers=("127.0.0.1", "::1"), port=None):
        # varnishd reads and compiles the VCL as its own user: a directory it
        # can reach (pytest's are private to root)
        self.dir = Path(tempfile.mkdtemp(prefix=f"castbus-varnish-{name}-"))
        os.chmod(self.dir, 0o755)
        acl = "".join(f'    "{a}";\n' for a in purgers)
        (self.dir / "site.vcl").write_text(
            f'backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}\n'
            f"acl purgers {{\n{acl}}}\n")
        shutil.copyfile(EDGE / "castbus.vcl", self.dir / "castbus.vcl")
        for f in ("site.vcl", "castbus.vcl"):
            os.chmod(self.dir / f, 0o644)
        self.port = port or free_port()
        self.log = open(self.dir / "varnishd.log", "w")
        self.proc = subprocess.Popen(
            [VARNISHD, "-F", "-n", str(self.dir / "n"), "-a", f"127.0.0.1:{self.port}",
             "-T", "127.0.0.1:0", "-f", str(self.dir / "castbus.vcl"),
             "-p", f"vcl_path={self.dir}", "-s", "malloc,32m"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def purge(self, path="/", method="PURGE", **headers):
        return self.request(method, path, **headers)

    def failure_log(self):
        return (self.dir / "varnishd.log").read_text()[-3000:]


@pytest.fixture
def edges():
    yield from started_edges(Varnish, VARNISHD)


@pytest.fixture
def storage(tmp_path):
    return tmp_path / "media"


def live_stream(start_daemon, stack, storage, jobs=1):
    """A packager origin with one stream's first jobs published: (packager, stream)."""
    results = Results(stack, storage)
    p = start_packager(start_daemon, storage)
    s = unique("pk")
    for seq in range(jobs):
        results.done(s, seq)
    wait_until(lambda: p.get(f"/live/{s}/720p.m3u8").text.count("#EXTINF") == 2 * jobs, 60,
               what="the stream's playlists")
    return p, s


# what a ban regex sees before the path: scheme://host
ANY_HOST = r"^[a-z]+://[^/]+"


def segment_paths(s):
    """Stream s's first two 720p segments and its first audio segment."""
    return (f"/live/{s}/720p/{START}.m4s", f"/live/{s}/720p/{START + SEG}.m4s",
            f"/live/{s}/audio/{START}.m4s")


def warm(edge, path):
    """Fetched through the edge until it is a hit; the hit returned."""
    first = edge.get(path)
    assert first.status_code == 200, (path, first.status_code)
    hit = edge.get(path)
    assert hit.headers["X-Cache"] == "HIT", (path, dict(hit.headers))
    return hit


def check_compressed_manifests(edge, p, s):
    """Manifests leave the edge gzipped for clients that take it, the same
    text once inflated; plain for the others; segments as they are."""
    import gzip
    for path in (f"/live/{s}/manifest.mpd", f"/live/{s}/720p.m3u8?_HLS_msn=0"):
        want = p.get(path).content
        assert len(want) >= 1024, (path, len(want))  # worth compressing
        for _ in range(2):  # a miss, then a hit
            r = requests.get(edge.url(path), headers={"Accept-Encoding": "gzip"}, timeout=10,
                             stream=True)
            raw = r.raw.read()
            assert r.status_code == 200 and r.headers.get("Content-Encoding") == "gzip", \
                (path, dict(r.headers))
            assert gzip.decompress(raw) == want and len(raw) < len(want), path
        r = requests.get(edge.url(path), headers={"Accept-Encoding": "identity"}, timeout=10)
        assert r.status_code == 200 and "Content-Encoding" not in r.headers and \
            r.content == want, (path, dict(r.headers))
    video = segment_paths(s)[0]
    r = requests.get(edge.url(video), headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 200 and "Content-Encoding" not in r.headers, dict(r.headers)


def test_varnish_edge_compresses_manifests(start_daemon, stack, storage, edges):
    p, s = live_stream(start_daemon, stack, storage, jobs=6)
    check_compressed_manifests(edges("a", p.origin_port), p, s)


def test_varnish_edges_purge_by_url_key_and_ban(start_daemon, stack, storage, edges):
    p, s = live_stream(start_daemon, stack, storage)
    a = edges("a", p.origin_port)
    b = edges("b", p.origin_port)
    video, video2, audio = segment_paths(s)

    # by URL: that object on that edge only
    for edge in (a, b):
        warm(edge, video)
    r = a.purge(video)
    assert r.status_code == 200 and int(r.headers["X-Purged"]) == 1, r.text
    assert a.get(video).headers["X-Cache"] == "MISS"
    assert b.get(video).headers["X-Cache"] == "HIT"

    # by surrogate key (the origin's xkey header): the 720p rendition, not the audio
    for path in (video, video2, audio):
        warm(a, path)
    r = a.purge(**{"xkey-purge": f"live/{s}/720p"})
    assert r.status_code == 200 and int(r.headers["X-Purged"]) == 2, r.text
    assert a.get(video).headers["X-Cache"] == "MISS"
    assert a.get(video2).headers["X-Cache"] == "MISS"
    assert a.get(audio).headers["X-Cache"] == "HIT"

    # by URL regex (a prefix): every object of the stream
    for path in (video, audio):
        warm(b, path)
    r = b.purge(method="BAN", **{"X-Ban-Url": f"^/live/{s}/"})
    assert r.status_code == 200, r.text
    assert b.get(video).headers["X-Cache"] == "MISS"
    assert b.get(audio).headers["X-Cache"] == "MISS"

    # everything
    warm(b, video)
    assert b.purge(method="BAN", **{"X-Ban-All": "1"}).status_code == 200
    assert b.get(video).headers["X-Cache"] == "MISS"

    # a ban needs to say what; purges come only from the purgers acl
    assert b.purge(method="BAN").status_code == 400
    c = edges("c", p.origin_port, purgers=("10.9.9.9",))
    warm(c, video)
    assert c.purge(video).status_code == 403
    assert c.get(video).headers["X-Cache"] == "HIT"


def test_soft_purge_serves_stale_while_the_origin_is_down(start_daemon, stack, storage,
                                                          edges):
    p, s = live_stream(start_daemon, stack, storage)
    edge = edges("soft", p.origin_port)
    soft = f"/live/{s}/720p/{START}.m4s"
    hard = f"/live/{s}/360p/{START}.m4s"
    body = warm(edge, soft).content
    warm(edge, hard)

    r = edge.purge(soft, **{"X-Purge-Soft": "1"})
    assert r.status_code == 200 and int(r.headers["X-Purged"]) == 1, r.text
    assert edge.purge(hard).status_code == 200
    p.stop()

    stale = edge.get(soft)
    assert stale.status_code == 200 and stale.content == body
    assert stale.headers["X-Cache"] == "HIT" and int(stale.headers["Age"]) >= 0
    assert edge.get(hard).status_code == 503  # gone, and the origin is down
