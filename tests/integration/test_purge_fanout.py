"""purge-fanout end to end: the purge API, cdn.purges, the consumer group,
and real Varnish edges (deploy/edge/varnish/castbus.vcl) in front of the
real packager origin. Each purge is proven with the edges' own response
headers (X-Cache) or, for a soft purge, by being served with the origin
stopped.

Every test keeps its edges in a group of its own: the inventory lives in the
suite's one Redis.
"""

import asyncio
import json
import signal
import socket
import subprocess
import time

import nats
import pytest
import requests

from conftest import (ADMIN_KEY, EDITOR_KEY, VIEWER_KEY, TopicReader, busctl, free_port,
                      unique, wait_until)
from test_edge_nginx import nginxes  # noqa: F401 (fixture)
from test_edge_trafficserver import trafficservers  # noqa: F401 (fixture)
from test_edge_varnish import (edges, live_stream, segment_paths, storage,  # noqa: F401 (fixtures)
                               warm)
from test_packager import SEG, START

FAST = {
    "CASTBUS_EDGE_TIMEOUT": "1s",
    "CASTBUS_EDGE_RETRIES": "2",
    "CASTBUS_EDGE_BACKOFF": "50ms",
}


def start_fanout(start_daemon, **env):
    e = dict(FAST)
    e.update({k.upper(): str(v) for k, v in env.items()})
    pf = start_daemon("purge-fanout", e)
    pf.wait_ready()
    return pf


def add_edge(pf, group, name, port, kind="varnish"):
    r = pf.request("POST", "/v1/edges", ADMIN_KEY, json={
        "name": name, "url": f"http://127.0.0.1:{port}", "kind": kind, "group": group})
    assert r.status_code in (200, 201), r.text
    return r.json()


def purge(pf, key=EDITOR_KEY, **body):
    r = pf.request("POST", "/v1/purges", key, json=body)
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/v1/purges/{r.json()['id']}"
    return r.json()


def wait_job(pf, job_id, timeout=60):
    def finished():
        r = pf.get(f"/v1/purges/{job_id}", VIEWER_KEY)
        assert r.status_code == 200, r.text
        return r.json() if r.json()["status"] != "pending" else None
    return wait_until(finished, timeout, what=f"purge job {job_id}")


def by_edge(job):
    return {r["edge"]: r for r in job["results"]}


def test_purges_reach_every_varnish_by_url_prefix_tag_and_all(start_daemon, stack, storage,
                                                              edges):
    p, s = live_stream(start_daemon, stack, storage)
    group = unique("g")
    vs = [edges(n, p.origin_port) for n in ("a", "b", "c")]
    pf = start_fanout(start_daemon)
    for i, v in enumerate(vs):
        add_edge(pf, group, f"{group}-{i}", v.port)
    video, video2, audio = segment_paths(s)

    # by URL, hard: the object is gone from every edge
    for v in vs:
        warm(v, video)
        warm(v, audio)
    accepted = purge(pf, urls=[video], soft=False, group=group, reason="itest")
    assert accepted["status"] == "pending" and accepted["edges"] == 3
    job = wait_job(pf, accepted["id"])
    assert job["status"] == "done", job
    assert job["edges"] == 3 and job["edges_ok"] == 3
    assert job["urls"] == [video] and job["soft"] is False and job["reason"] == "itest"
    assert job["requested_by"].startswith("api:editor:")
    assert job["finished_at_ms"] >= job["started_at_ms"] >= job["requested_at_ms"]
    for r in job["results"]:
        assert r["ok"] and r["http_status"] == 200 and r["attempts"] == 1, r
        assert r["latency_ms"] >= 0
    for v in vs:
        assert v.get(video).headers["X-Cache"] == "MISS"
        assert v.get(audio).headers["X-Cache"] == "HIT"

    # an absolute URL purges the path (the edges cache by path)
    for v in vs:
        warm(v, video)
    job = wait_job(pf, purge(pf, urls=[f"https://cdn.example.test{video}"], soft=False,
                             group=group)["id"])
    assert job["status"] == "done", job
    assert all(v.get(video).headers["X-Cache"] == "MISS" for v in vs)

    # by prefix (a ban): the 720p rendition, not the audio
    for v in vs:
        for path in (video, video2, audio):
            warm(v, path)
    job = wait_job(pf, purge(pf, prefixes=[f"/live/{s}/720p/"], group=group)["id"])
    assert job["status"] == "done", job
    for v in vs:
        assert v.get(video).headers["X-Cache"] == "MISS"
        assert v.get(video2).headers["X-Cache"] == "MISS"
        assert v.get(audio).headers["X-Cache"] == "HIT"

    # by tag (the origin's xkey), hard
    for v in vs:
        for path in (video, audio):
            warm(v, path)
    job = wait_job(pf, purge(pf, tags=[f"live/{s}/audio"], soft=False, group=group)["id"])
    assert job["status"] == "done", job
    for v in vs:
        assert v.get(audio).headers["X-Cache"] == "MISS"
        assert v.get(video).headers["X-Cache"] == "HIT"

    # everything: admin only
    r = pf.request("POST", "/v1/purges", EDITOR_KEY, json={"all": True, "group": group})
    assert r.status_code == 403 and r.json()["error"]["field"] == "all", r.text
    for v in vs:
        warm(v, video)
    job = wait_job(pf, purge(pf, ADMIN_KEY, all=True, group=group)["id"])
    assert job["status"] == "done", job
    assert all(v.get(video).headers["X-Cache"] == "MISS" for v in vs)

    # soft (the default) by tag: marked stale, and still served with the origin down
    bodies = {}
    for v in vs:
        bodies[v.port] = warm(v, video2).content
    job = wait_job(pf, purge(pf, tags=[f"live/{s}/720p"], group=group)["id"])
    assert job["status"] == "done" and job["soft"] is True, job
    p.stop()
    for v in vs:
        stale = v.get(video2)
        assert stale.status_code == 200 and stale.content == bodies[v.port]
    m = pf.get("/metrics").text
    assert 'castbus_purge_jobs_total{status="done"}' in m
    assert "castbus_purge_propagation_seconds_count" in m


def test_one_group_of_every_edge_kind(start_daemon, stack, storage, edges, trafficservers,
                                      nginxes):
    """Each edge purged in its own dialect. On Traffic Server a soft purge
    is a revalidation (X-Cache: STALE), on nginx a refetch that falls back
    to the old copy while the origin is down; a hard one is a refetch (MISS)
    everywhere."""
    p, s = live_stream(start_daemon, stack, storage)
    group = unique("g")
    v = edges("v", p.origin_port)
    ats = trafficservers("t", p.origin_port)
    ng = nginxes("n", p.origin_port)
    every = (v, ats, ng)
    pf = start_fanout(start_daemon)
    add_edge(pf, group, f"{group}-v", v.port)
    add_edge(pf, group, f"{group}-t", ats.port, kind="trafficserver")
    add_edge(pf, group, f"{group}-n", ng.port, kind="nginx")
    video, video2, audio = segment_paths(s)
    low = f"/live/{s}/360p/{START}.m4s"
    control = f"/live/{s}/audio/{START + SEG}.m4s"  # no purge below names it but `all`

    def done(**body):
        job = wait_job(pf, purge(pf, group=group, **body)["id"])
        assert job["status"] == "done" and job["edges_ok"] == 3, job
        assert all(r["http_status"] == 200 and r["attempts"] == 1 for r in job["results"]), job
        return job

    # by URL, hard: PURGE everywhere
    for e in every:
        for path in (video, control):
            warm(e, path)
    done(urls=[video], soft=False)
    for e in every:
        assert e.get(video).headers["X-Cache"] == "MISS"
        assert e.get(control).headers["X-Cache"] == "HIT"
    # a URL an edge does not hold: nginx and Traffic Server answer 404, done all the same
    job = wait_job(pf, purge(pf, group=group, urls=[f"/live/{s}/none.m4s"], soft=False)["id"])
    assert job["status"] == "done" and job["edges_ok"] == 3, job

    # by URL, soft: revalidated on ATS, refetched on nginx
    warm(ats, audio)
    warm(ng, audio)
    done(urls=[f"https://cdn.example.test{audio}"])
    assert ats.get(audio).headers["X-Cache"] == "STALE"
    assert ng.get(audio).headers["X-Cache"] == "MISS"
    for e in (ats, ng):
        assert e.get(control).headers["X-Cache"] == "HIT"

    # by prefix, hard
    for e in every:
        warm(e, low)
    done(prefixes=[f"/live/{s}/360p/"], soft=False)
    for e in every:
        assert e.get(low).headers["X-Cache"] == "MISS"
        assert e.get(control).headers["X-Cache"] == "HIT"

    # everything, hard
    done(key=ADMIN_KEY, all=True, soft=False)
    for e in every:
        assert e.get(control).headers["X-Cache"] == "MISS"

    # by tag, soft: the surrogate key names the rendition's path; stale copies
    # are served with the origin down. (A rule also covers what is cached in
    # its own second on ATS: wait for the hit.)
    bodies = {}
    for e in every:
        e.get(video2)
        hit = wait_until(lambda: (lambda r: r if r.headers["X-Cache"] == "HIT" else None)(
            e.get(video2)), 10, 0.1, "video2 cached again")
        bodies[e.port] = hit.content
    done(tags=[f"live/{s}/720p"])
    p.stop()
    for e in every:
        stale = e.get(video2)
        assert stale.status_code == 200 and stale.content == bodies[e.port], e.port
    assert ats.get(video2).headers["X-Cache"] == "STALE"
    assert ng.get(video2).headers["X-Cache"] == "STALE"
    assert pf.get(f"/v1/edges/{group}-t", VIEWER_KEY).json()["kind"] == "trafficserver"
    assert pf.get(f"/v1/edges/{group}-n", VIEWER_KEY).json()["kind"] == "nginx"


def test_the_purge_api_checks_what_it_is_given(start_daemon, stack):
    pf = start_fanout(start_daemon, castbus_rate_limit=5)
    group = unique("g")

    def post(body, key=EDITOR_KEY):
        return pf.request("POST", "/v1/purges", key, json=body)

    def field_of(r, status=400):
        assert r.status_code == status, r.text
        return r.json()["error"]["field"]

    assert field_of(post({})) == "urls"
    assert field_of(post({"urls": []})) == "urls"
    assert field_of(post({"all": False})) == "urls"
    assert field_of(post({"urls": ["/a"], "tags": ["t"]})) == "tags"
    assert field_of(post({"urls": ["/ok", "not a url"]})) == "urls[1]"
    assert field_of(post({"urls": ["ftp://h/x"]})) == "urls[0]"
    assert field_of(post({"prefixes": ["/a\nb"]})) == "prefixes[0]"
    assert field_of(post({"tags": ["a,b"]})) == "tags[0]"
    assert field_of(post({"urls": [f"/{i}" for i in range(257)]})) == "urls"
    assert field_of(post({"urls": ["/a"], "soft": "yes"})) == "soft"
    assert field_of(post({"urls": ["/a"], "group": "no spaces"})) == "group"
    assert field_of(post({"urls": ["/a"], "idempotency_key": "a b"})) == "idempotency_key"
    assert post({"urls": ["/a"]}, VIEWER_KEY).status_code == 403
    assert post({"urls": ["/a"]}, None).status_code == 401
    r = pf.request("POST", "/v1/purges", EDITOR_KEY, data="{", headers={
        "Content-Type": "application/json"})
    assert r.status_code == 400

    # a group without edges: done at once, with nothing to do
    job = wait_job(pf, purge(pf, urls=[f"/{u}" for u in range(256)], group=group)["id"])
    assert job["status"] == "done" and job["edges"] == 0 and job["results"] == []

    # the same idempotency key is the same job
    key = unique("idem")
    first = purge(pf, urls=["/x"], group=group, idempotency_key=key)
    again = purge(pf, urls=["/x"], group=group, idempotency_key=key)
    assert again["id"] == first["id"] and again["replayed"] is True
    assert first["replayed"] is False

    # a key whose job never got a record (its submitter died between the two)
    # is the same pending job while that submission may be under way, and is
    # taken over by a new job once it is older than that
    def redis(*args):
        out = subprocess.run(["redis-cli", "-u", stack.env["CASTBUS_REDIS_URL"], *args],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
    def purge_lost(**body):  # this test's API key is held to 5 purges a second
        r = pf.request("POST", "/v1/purges", EDITOR_KEY, json=body)
        while r.status_code == 429:
            time.sleep(float(r.headers["Retry-After"]))
            r = pf.request("POST", "/v1/purges", EDITOR_KEY, json=body)
        assert r.status_code == 202, r.text
        return r.json()
    lost = unique("lost")
    purge_lost(urls=["/x"], group=group, idempotency_key=lost)
    idem = redis("--scan", "--pattern", f"castbus:purge:idem:*:{lost}")
    assert idem, "the idempotency key is not in Redis"
    redis("SET", idem, "p-abandoned", "PX", str(168 * 3600 * 1000 - 1000))  # claimed 1 s ago
    fresh = purge_lost(urls=["/x"], group=group, idempotency_key=lost)
    assert fresh["id"] == "p-abandoned" and fresh["replayed"] is True
    assert fresh["status"] == "pending"
    redis("PEXPIRE", idem, str(168 * 3600 * 1000 - 60000))  # claimed a minute ago
    taken = purge_lost(urls=["/x"], group=group, idempotency_key=lost)
    assert taken["id"] != "p-abandoned" and taken["replayed"] is False
    assert wait_job(pf, taken["id"])["status"] == "done"
    assert purge_lost(urls=["/x"], group=group, idempotency_key=lost)["id"] == taken["id"]

    # status and lists
    assert pf.get("/v1/purges/nope", VIEWER_KEY).status_code == 404
    wait_job(pf, first["id"])
    listed = pf.get("/v1/purges?status=done&limit=5", VIEWER_KEY).json()["purges"]
    assert first["id"] in [j["id"] for j in listed]
    assert all(j["status"] == "done" and "results" not in j for j in listed)
    assert field_of(pf.get("/v1/purges?status=odd", VIEWER_KEY)) == "status"
    assert field_of(pf.get("/v1/purges?limit=0", VIEWER_KEY)) == "limit"

    # the edge inventory's input
    def post_edge(body, key=ADMIN_KEY):
        return pf.request("POST", "/v1/edges", key, json=body)
    assert field_of(post_edge({"name": "e1", "url": "tcp://h:1"})) == "url"
    assert field_of(post_edge({"name": "e1", "url": "http://h:1/path"})) == "url"
    assert field_of(post_edge({"name": "e1", "url": "http://h:1", "kind": "squid"})) == "kind"
    assert field_of(post_edge({"url": "http://h:1"})) == "name"
    assert post_edge({"name": "e1", "url": "http://h:1"}, EDITOR_KEY).status_code == 403
    assert pf.request("DELETE", "/v1/edges/nope", ADMIN_KEY).status_code == 404
    assert pf.get("/v1/edges/nope", VIEWER_KEY).status_code == 404

    # a request the consumer can never do goes to the dead-letter topic, with why
    dlq = TopicReader(stack, "cdn.purges.dlq")
    bad = unique("bad")
    out = busctl(stack, "produce", "--topic", "cdn.purges", "--key", bad, stdin=json.dumps({
        "v": 1, "id": bad, "urls": ["/a"], "tags": ["b"], "requested_at_ms": 1}))
    assert out.returncode == 0, out.stderr

    def dead():
        dlq.poll()
        return next((r for r in dlq.records if r["key"] == bad), None)
    reason = wait_until(dead, 60, what="the dead letter")["headers"]["castbus-dlq-reason"]
    assert "'tags'" in reason, reason
    dlq.close()

    # the rate limit per API key, with Retry-After: 5 a second, so 20 in a row
    # see a 429 unless they take four seconds (wait for a fresh second first)
    time.sleep(1 - time.time() % 1 + 0.05)
    codes = [post({"urls": ["/r"], "group": group}) for _ in range(20)]
    assert [c.status_code for c in codes].count(429) >= 1, [c.status_code for c in codes]
    limited = next(c for c in codes if c.status_code == 429)
    assert limited.headers["Retry-After"] == "1"
    assert post({"urls": ["/r"], "group": group}, ADMIN_KEY).status_code == 202  # another key


def test_an_edge_down_makes_the_job_partial_and_is_reported(start_daemon, stack, storage,
                                                            edges):
    p, s = live_stream(start_daemon, stack, storage)
    group = unique("g")
    up = edges("up", p.origin_port)
    pf = start_fanout(start_daemon)
    add_edge(pf, group, f"{group}-up", up.port)
    add_edge(pf, group, f"{group}-down", free_port())  # nothing listens there
    video = f"/live/{s}/720p/{START}.m4s"
    warm(up, video)

    job = wait_job(pf, purge(pf, urls=[video], soft=False, group=group)["id"])
    assert job["status"] == "partial", job
    res = by_edge(job)
    assert res[f"{group}-up"]["ok"] is True
    down = res[f"{group}-down"]
    assert down["ok"] is False and down["attempts"] == 3 and down["http_status"] == 0
    assert "PURGE" in down["error"], down
    assert up.get(video).headers["X-Cache"] == "MISS"

    edge = pf.get(f"/v1/edges/{group}-down", VIEWER_KEY).json()
    assert edge["healthy"] is False and edge["health"]["consecutive_failures"] == 1
    assert "failed" in edge["unhealthy_reason"]
    assert pf.get(f"/v1/edges/{group}-up", VIEWER_KEY).json()["healthy"] is True
    listed = pf.get("/v1/purges?status=partial", VIEWER_KEY).json()["purges"]
    assert job["id"] in [j["id"] for j in listed]
    m = pf.get("/metrics").text
    assert f'castbus_purge_edge_failures_total{{edge="{group}-down"}} 1' in m
    assert 'castbus_purge_jobs_total{status="partial"} 1' in m

    # taken out of the inventory, the group is whole again
    assert pf.request("DELETE", f"/v1/edges/{group}-down", ADMIN_KEY).status_code == 204
    job = wait_job(pf, purge(pf, urls=[video], group=group)["id"])
    assert job["status"] == "done" and job["edges"] == 1, job


def heartbeat(stack, **msg):
    async def go():
        nc = await nats.connect(stack.env["CASTBUS_NATS_URL"])
        try:
            r = await nc.request("cdn.edges.heartbeat", json.dumps({"v": 1, **msg}).encode(),
                                 timeout=5)
            return json.loads(r.data)
        finally:
            await nc.close()
    return asyncio.run(go())


def test_edges_register_and_heartbeat_over_nats(start_daemon, stack, storage, edges):
    p, s = live_stream(start_daemon, stack, storage)
    group = unique("g")
    v = edges("nats", p.origin_port)
    pf = start_fanout(start_daemon)
    name = f"{group}-pod-0"

    ack = heartbeat(stack, name=name, url=f"http://127.0.0.1:{v.port}", kind="varnish",
                    group=group, ttl_ms=1500)
    assert ack["ok"] is True and ack["edges"] >= 1, ack
    edge = pf.get(f"/v1/edges/{name}", VIEWER_KEY).json()
    assert edge["source"] == "nats" and edge["group"] == group and edge["healthy"] is True

    video = f"/live/{s}/720p/{START}.m4s"
    warm(v, video)
    job = wait_job(pf, purge(pf, urls=[video], soft=False, group=group)["id"])
    assert job["status"] == "done" and job["edges"] == 1, job
    assert v.get(video).headers["X-Cache"] == "MISS"

    # silent past its ttl: reported, still purged
    wait_until(lambda: pf.get(f"/v1/edges/{name}", VIEWER_KEY).json()["healthy"] is False, 30,
               what="the silent edge reported unhealthy")
    assert "no heartbeat" in pf.get(f"/v1/edges/{name}", VIEWER_KEY).json()["unhealthy_reason"]
    heartbeat(stack, name=name, url=f"http://127.0.0.1:{v.port}", group=group, ttl_ms=1500)
    assert pf.get(f"/v1/edges/{name}", VIEWER_KEY).json()["healthy"] is True

    # a bad heartbeat is refused, naming the field
    bad = heartbeat(stack, name=name, url="gopher://x", group=group)
    assert bad["error"]["code"] == "invalid_request" and bad["error"]["field"] == "url", bad
    bad = heartbeat(stack, url="http://x:1")
    assert bad["error"]["field"] == "name", bad

    # scale-down: gone at once
    assert heartbeat(stack, name=name, url=f"http://127.0.0.1:{v.port}", leaving=True)["ok"]
    assert pf.get(f"/v1/edges/{name}", VIEWER_KEY).status_code == 404


def test_a_purge_cut_by_kill9_completes_after_the_restart(start_daemon, stack, storage,
                                                          edges):
    p, s = live_stream(start_daemon, stack, storage)
    group = unique("g")
    a = edges("a", p.origin_port)
    # b's port first answers nothing: connections are taken and left hanging
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    b_port = hang.getsockname()[1]
    slow = {"castbus_edge_timeout": "2s", "castbus_edge_retries": "10",
            "castbus_edge_backoff": "200ms"}
    pf = start_fanout(start_daemon, **slow)
    add_edge(pf, group, f"{group}-a", a.port)
    add_edge(pf, group, f"{group}-b", b_port)
    video = f"/live/{s}/720p/{START}.m4s"
    warm(a, video)

    job_id = purge(pf, urls=[video], soft=False, group=group)["id"]
    wait_until(lambda: "castbus_purge_jobs_running 1" in pf.get("/metrics").text, 30,
               what="the job in flight")
    pf.proc.send_signal(signal.SIGKILL)
    pf.proc.wait()
    hang.close()
    b = edges("b", p.origin_port, port=b_port)  # the edge is back

    pf = start_fanout(start_daemon, **slow)
    job = wait_job(pf, job_id, timeout=90)
    assert job["status"] == "done", job
    assert set(by_edge(job)) == {f"{group}-a", f"{group}-b"}
    assert a.get(video).headers["X-Cache"] == "MISS"
    assert b.get(video).status_code == 200
