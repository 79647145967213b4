"""NATS request/reply through libcommon against a real nats-server: a
validating responder, a requester with a timeout, and the difference
between "no answer in time" and "nobody serves this"."""

import asyncio
import json

import nats

from conftest import busctl

CHECK = json.dumps({"v": 1, "content_id": "s1", "content_kind": "live", "user_id": "u1"})


def nats_py_request(url, subject, payload, timeout=5):
    async def go():
        nc = await nats.connect(url)
        try:
            msg = await nc.request(subject, payload.encode(), timeout=timeout)
            return json.loads(msg.data)
        finally:
            await nc.close()
    return asyncio.run(go())


def test_request_reply_and_validation(stack, probes):
    srv = probes("serve", "--subject=entitlement.check")
    srv.wait_event(lambda e: e["event"] == "serving")

    # a plain NATS client gets the responder's answer
    reply = nats_py_request(stack.env["CASTBUS_NATS_URL"], "entitlement.check", CHECK)
    assert reply == {"v": 1, "allowed": True, "reason": "bus_probe"}

    # an invalid request never reaches the handler: the error names the field
    bad = nats_py_request(stack.env["CASTBUS_NATS_URL"], "entitlement.check",
                          json.dumps({"v": 1, "content_kind": "live"}))
    assert bad["error"]["code"] == "invalid_request"
    assert bad["error"]["field"] == "content_id"
    assert "required" in bad["error"]["message"]
    assert len([e for e in srv.poll_events() if e["event"] == "request"]) == 1

    # libcommon's requester (busctl) gets it too
    r = busctl(stack, "request", "--subject=entitlement.check", stdin=CHECK)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["allowed"] is True
    assert srv.stop() == 0


def test_request_timeout(stack, probes):
    slow = probes("serve", "--subject=drm.keys.get", "--delay-ms=3000")
    slow.wait_event(lambda e: e["event"] == "serving")
    r = busctl(stack, "request", "--subject=drm.keys.get", "--timeout=300ms",
               stdin='{"v":1,"content_id":"s1","scheme":"cbcs"}')
    assert r.returncode == 3, r.stderr
    assert "timed out" in r.stderr.lower()
    assert slow.stop() == 0


def test_no_responder(stack):
    # nobody serves drm.keys.get now: the requester is told so instead of waiting
    r = busctl(stack, "request", "--subject=drm.keys.get", "--timeout=5s",
               stdin='{"v":1,"content_id":"s1","scheme":"aes128"}')
    assert r.returncode == 4, r.stderr
    assert "no responder" in r.stderr
