"""The nginx edge config (deploy/edge/nginx/) in front of the real packager
origin: nginx 1.22 from Debian with its Lua module. castbus_edge.lua turns
BAN into a new cache key for what matches (hard: the next request is a miss;
soft: the old copy is still served while the origin is down), and PURGE into
deleting the URL's cache files. Proven with X-Cache, nginx's own
$upstream_cache_status.
"""

import http.client
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, free_port, wait_until
from test_edge_varnish import (ANY_HOST, EdgeCache, check_compressed_manifests,  # noqa: F401
                               live_stream, segment_paths, started_edges, storage, warm)
from test_packager import SEG, START

EDGE_NGINX = str(ROOT / "tools" / "edge-nginx")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LUA = "/usr/lib/nginx/modules/ngx_http_lua_module.so"


class Nginx(EdgeCache):
    """The shipped config run by tools/edge-nginx, in a directory of its own."""

    what = "nginx"

    def __init__(self, name, origin_port, port=None):
        self.dir = Path(tempfile.mkdtemp(prefix=f"castbus-nginx-{name}-"))
        self.port = port or free_port()
        self.origin = f"127.0.0.1:{origin_port}"
        self.log = open(self.dir / "nginx.out", "w")
        self.start()

    def start(self):
        self.proc = subprocess.Popen([EDGE_NGINX, str(self.dir), str(self.port), self.origin],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def failure_log(self):
        out = (self.dir / "nginx.out").read_text()
        p = self.dir / "log" / "castbus-edge.error.log"
        return out + (p.read_text()[-3000:] if p.exists() else "")

    def reload(self):
        """SIGHUP: new workers, the shared dict (and so the bans) kept."""
        os.kill(self.proc.pid, signal.SIGHUP)

    def restart(self, origin_up=True):
        """A graceful stop (SIGQUIT) and a new nginx: the cache on disk stays,
        the shared dict is gone. With the origin down, any answer is ready."""
        os.kill(self.proc.pid, signal.SIGQUIT)
        self.proc.wait(20)
        self.start()
        if origin_up:
            self.wait_ready()
        else:
            wait_until(lambda: self.get("/time").status_code == 502, 60, what=f"nginx on {self.port}")


@pytest.fixture
def nginxes():
    if not os.path.exists(LUA):
        pytest.skip(f"{LUA} is not installed (tools/bootstrap installs it)")
    yield from started_edges(Nginx, NGINX)


def test_nginx_edge_compresses_manifests(start_daemon, stack, storage, nginxes):
    p, s = live_stream(start_daemon, stack, storage, jobs=6)
    check_compressed_manifests(nginxes("a", p.origin_port), p, s)


def test_nginx_edge_purges_and_bans(start_daemon, stack, storage, nginxes):
    p, s = live_stream(start_daemon, stack, storage)
    ng = nginxes("a", p.origin_port)
    video, video2, audio = segment_paths(s)

    # the origin's headers pass through; the edge adds X-Cache
    hit = warm(ng, video)
    assert hit.headers["Surrogate-Key"]

    # PURGE: that object only; a URL not cached is a 404 (purge-fanout: done)
    warm(ng, audio)
    r = ng.request("PURGE", video)
    assert r.status_code == 200, r.text
    assert ng.get(video).headers["X-Cache"] == "MISS"
    assert ng.get(audio).headers["X-Cache"] == "HIT"
    assert ng.request("PURGE", "/live/never/cached.m4s").status_code == 404

    # a hard ban: what matches is refetched, the rest is a hit
    for path in (video, video2, audio):
        warm(ng, path)
    r = ng.request("BAN", **{"X-Ban-Regex": f"{ANY_HOST}/live/{s}/720p/", "X-Ban-Type": "MISS"})
    assert r.status_code == 200 and "MISS" in r.text, r.text
    assert ng.get(video).headers["X-Cache"] == "MISS"
    assert ng.get(video).headers["X-Cache"] == "HIT"
    assert ng.get(audio).headers["X-Cache"] == "HIT"

    # what purge-fanout must not retry
    assert ng.request("BAN").status_code == 400
    assert ng.request("BAN", **{"X-Ban-Regex": "a b"}).status_code == 400
    assert ng.request("BAN", **{"X-Ban-Regex": "^x", "X-Ban-Type": "SOFT"}).status_code == 400
    assert ng.request("BAN", **{"X-Ban-Regex": "^(x"}).status_code == 400

    # only purge-fanout's addresses may purge: 127.0.0.2 is not one
    for method, headers in (("PURGE", {}), ("BAN", {"X-Ban-Regex": "^x"})):
        c = http.client.HTTPConnection("127.0.0.1", ng.port, timeout=10,
                                       source_address=("127.0.0.2", 0))
        c.request(method, audio, headers=headers)
        assert c.getresponse().status == 403, method
        c.close()

    # bans survive a reload (new workers, same dict) ...
    ng.reload()
    r = ng.request("BAN", **{"X-Ban-Regex": f"{ANY_HOST}/live/{s}/audio/", "X-Ban-Type": "MISS"})
    assert r.status_code == 200, r.text
    assert ng.get(audio).headers["X-Cache"] == "MISS"
    assert ng.get(audio).headers["X-Cache"] == "HIT"
    rules = (ng.dir / "var" / "bans").read_text().splitlines()
    assert rules[0] == f"next {rules[-1].split()[0]}", rules
    assert [ln.split()[2:] for ln in rules[1:]] == [["MISS", f"{ANY_HOST}/live/{s}/720p/"],
                                                    ["MISS", f"{ANY_HOST}/live/{s}/audio/"]]
    # ... and a restart (the rules file): video2's copy from before the ban,
    # still on disk, is not served
    ng.restart()
    assert ng.get(video2).headers["X-Cache"] == "MISS"
    assert ng.get(video).headers["X-Cache"] == "HIT"

    # soft: refetched while the origin is up; the copy from before the ban is
    # served while it is down, unless a PURGE of that URL deleted it
    low = f"/live/{s}/360p/{START}.m4s"
    low2 = f"/live/{s}/360p/{START + SEG}.m4s"
    body = warm(ng, low).content
    warm(ng, low2)
    r = ng.request("BAN", **{"X-Ban-Regex": f"{ANY_HOST}/live/{s}/360p/", "X-Ban-Type": "STALE"})
    assert r.status_code == 200, r.text
    assert ng.request("PURGE", low2).status_code == 200  # the copy from before the ban
    p.stop()
    stale = ng.get(low)
    assert stale.status_code == 200 and stale.content == body
    assert stale.headers["X-Cache"] == "STALE"
    assert ng.get(low2).status_code == 502
    # what was fetched after a hard ban is served as usual
    assert ng.get(video).headers["X-Cache"] == "HIT"

    # rule ids are never given out twice, even once every rule has expired:
    # files cached under an expired rule's key stay on disk a while
    bans = ng.dir / "var" / "bans"
    lines = bans.read_text().splitlines()
    last = int(lines[0].split()[1])
    bans.write_text("".join(f"{ln.split()[0]} 1 {' '.join(ln.split()[2:])}\n" if i else ln + "\n"
                            for i, ln in enumerate(lines)))  # all expired
    ng.restart(origin_up=False)
    r = ng.request("BAN", **{"X-Ban-Regex": "^http://nowhere/", "X-Ban-Type": "MISS"})
    assert r.status_code == 200 and f"as rule {last + 1}" in r.text, r.text
    assert bans.read_text().splitlines() == [f"next {last + 1}",
                                             f"{last + 1} {bans.read_text().split()[3]} MISS "
                                             "^http://nowhere/"]
