"""Kafka through libcommon against a real broker: round trip and commit,
redelivery after kill -9, dead letters, retries, bounded in-flight work, and
the topics proto/ defines."""

import json
import signal

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import busctl, unique, wait_until

PROTO_TOPICS = {
    "media.transcode.jobs": 24, "media.transcode.done": 12, "media.package.events": 6,
    "cdn.purges": 6, "analytics.events": 12,
}


def job(stream, seq):
    return json.dumps({
        "v": 1, "job_id": f"{stream}:{seq}", "kind": "live", "stream_id": stream, "seq": seq,
        "source": {"path": f"live/{stream}/src/{seq:08d}.ts", "container": "mpegts",
                   "start_pts_90k": seq * 180000, "duration_90k": 180000},
        "profile": "default", "packaging": {"dvr_window_s": 3600},
        "created_at_ms": 1795290000000,
    })


@pytest.fixture
def topic(stack):
    """A fresh topic (and its .dlq) per test, so tests never see each other's messages."""
    name = unique("itest")
    admin = AdminClient({"bootstrap.servers": stack.brokers})
    futures = admin.create_topics([NewTopic(name, 3, 1), NewTopic(f"{name}.dlq", 1, 1)])
    for f in futures.values():
        f.result(30)
    return name


def produce(stack, topic, messages, headers=None):
    p = Producer({"bootstrap.servers": stack.brokers})
    for key, value in messages:
        p.produce(topic, value=value, key=key, headers=headers)
    assert p.flush(30) == 0


def committed_total(stack, group, topic, partitions):
    c = Consumer({"bootstrap.servers": stack.brokers, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return sum(tp.offset for tp in tps if tp.offset >= 0)
    finally:
        c.close()


def read_all(stack, topic, count, timeout=60):
    c = Consumer({"bootstrap.servers": stack.brokers, "group.id": unique("reader"),
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    try:
        def enough():
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
            return len(got) >= count
        wait_until(enough, timeout, 0, what=f"{count} messages on {topic}")
    finally:
        c.close()
    return got


def test_proto_topics_exist_with_their_partitions(stack):
    md = AdminClient({"bootstrap.servers": stack.brokers}).list_topics(timeout=30)
    for name, parts in PROTO_TOPICS.items():
        assert name in md.topics, f"devstack did not create {name}"
        assert len(md.topics[name].partitions) == parts
        assert f"{name}.dlq" in md.topics


def test_round_trip_and_commit(stack, topic, probes):
    group = unique("g")
    produce(stack, topic, [(f"s{i}".encode(), job(f"s{i}", i)) for i in range(5)])
    p = probes("consume", f"--topic={topic}", f"--group={group}",
               "--validate-as=media.transcode.jobs", "--max-messages=5")
    assert p.wait_exit() == 0
    handled = [e for e in p.events if e["event"] == "handled"]
    assert len(handled) == 5
    assert len({(e["partition"], e["offset"]) for e in handled}) == 5
    # every offset is committed once handled: a new member of the group gets nothing again
    wait_until(lambda: committed_total(stack, group, topic, 3) == 5, 30,
               what="offsets committed")
    again = probes("consume", f"--topic={topic}", f"--group={group}")
    again.wait_event(lambda e: e["event"] == "started")
    produce(stack, topic, [(b"marker", job("marker", 99))])
    ev = again.wait_event(lambda e: e["event"] == "received")
    assert ev["key"] == "marker", "an already committed message was delivered again"
    assert again.stop() == 0


def test_libcommon_producer_round_trip(stack):
    """busctl produces through libcommon (validated against proto/) to a proto topic."""
    stream = unique("rt")
    r = busctl(stack, "produce", "--topic=media.transcode.jobs", stdin=job(stream, 1))
    assert r.returncode == 0, r.stderr
    # the topic holds other tests' jobs too: find ours by its key
    c = Consumer({"bootstrap.servers": stack.brokers, "group.id": unique("reader"),
                  "auto.offset.reset": "earliest"})
    c.subscribe(["media.transcode.jobs"])
    found = []
    try:
        def ours():
            m = c.poll(0.5)
            if m is not None and not m.error() and m.key() == stream.encode():
                found.append(m)
            return found
        wait_until(ours, 60, 0, what="the produced job")
    finally:
        c.close()
    assert json.loads(found[0].value())["stream_id"] == stream
    # an invalid message is refused before it is sent, naming the field
    bad = busctl(stack, "produce", "--topic=media.transcode.jobs", stdin='{"v":1}')
    assert bad.returncode == 2
    assert "field 'job_id': required" in bad.stderr


def test_kill_9_before_commit_redelivers(stack, topic, probes):
    group = unique("g")
    produce(stack, topic, [(b"k1", job("k1", 1))])
    first = probes("consume", f"--topic={topic}", f"--group={group}", "--hold-ms=120000")
    got = first.wait_event(lambda e: e["event"] == "received", 60, "first delivery")
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    assert not [e for e in first.events if e["event"] == "handled"]
    # the group moves the partition to the next member once the dead one's session ends
    second = probes("consume", f"--topic={topic}", f"--group={group}", "--max-messages=1")
    again = second.wait_event(lambda e: e["event"] == "handled", 90, "redelivery")
    assert (again["partition"], again["offset"]) == (got["partition"], got["offset"])
    assert second.wait_exit() == 0
    wait_until(lambda: committed_total(stack, group, topic, 3) == 1, 30, what="commit")


def test_malformed_messages_go_to_the_dlq_with_the_reason(stack, topic, probes):
    group = unique("g")
    produce(stack, topic, [(b"bad-json", b"this is not json")],
            headers=[("trace", b"t-1")])
    produce(stack, topic, [(b"bad-field", b'{"v":1,"job_id":"x:1","kind":"live"}')])
    produce(stack, topic, [(b"good", job("good", 1))])
    p = probes("consume", f"--topic={topic}", f"--group={group}",
               "--validate-as=media.transcode.jobs", "--max-messages=1")
    p.wait_event(lambda e: e["event"] == "handled")
    dead = {m.key(): m for m in read_all(stack, f"{topic}.dlq", 2)}
    assert set(dead) == {b"bad-json", b"bad-field"}
    # the original bytes, key and headers, plus why
    h = dict(dead[b"bad-json"].headers())
    assert dead[b"bad-json"].value() == b"this is not json"
    assert h["trace"] == b"t-1"
    assert b"invalid JSON" in h["castbus-dlq-reason"]
    assert h["castbus-dlq-topic"] == topic.encode()
    assert h["castbus-dlq-group"] == group.encode()
    assert int(h["castbus-dlq-offset"]) >= 0
    h2 = dict(dead[b"bad-field"].headers())
    assert h2["castbus-dlq-reason"] == b"field 'stream_id': required"
    assert p.wait_exit() == 0
    # dead-lettered messages are done with: all three offsets are committed
    wait_until(lambda: committed_total(stack, group, topic, 3) == 3, 30, what="commit")


def test_retries_then_success(stack, topic, probes):
    produce(stack, topic, [(b"flaky", job("flaky", 1))])
    p = probes("consume", f"--topic={topic}", f"--group={unique('g')}", "--fail-times=2",
               "--max-messages=1", env={"CASTBUS_KAFKA_RETRY_BACKOFF": "20ms"})
    assert p.wait_exit() == 0
    attempts = [e["attempt"] for e in p.events if e["event"] == "received"]
    assert attempts == [1, 2, 3]


def test_retries_exhausted_go_to_the_dlq(stack, topic, probes):
    group = unique("g")
    produce(stack, topic, [(b"doomed", job("doomed", 1))])
    p = probes("consume", f"--topic={topic}", f"--group={group}", "--fail-always",
               env={"CASTBUS_KAFKA_MAX_RETRIES": "2", "CASTBUS_KAFKA_RETRY_BACKOFF": "20ms"})
    (m,) = read_all(stack, f"{topic}.dlq", 1)
    h = dict(m.headers())
    assert h["castbus-dlq-reason"] == (b"retries exhausted after 3 attempts: "
                                       b"failing on purpose (attempt 3)")
    assert h["castbus-dlq-attempts"] == b"3"
    wait_until(lambda: committed_total(stack, group, topic, 3) == 1, 30, what="commit")
    assert p.stop() == 0


def test_in_flight_is_bounded_by_workers(stack, topic, probes):
    produce(stack, topic, [(f"w{i}".encode(), job(f"w{i}", i)) for i in range(6)])
    p = probes("consume", f"--topic={topic}", f"--group={unique('g')}", "--workers=2",
               "--hold-ms=300", "--max-messages=6")
    assert p.wait_exit() == 0
    busy, most = set(), 0
    for e in p.events:
        if e["event"] == "received":
            busy.add((e["partition"], e["offset"]))
        elif e["event"] == "handled":
            busy.discard((e["partition"], e["offset"]))
        most = max(most, len(busy))
    assert most == 2


def test_a_busy_member_resumes_after_a_rebalance(stack, topic, probes):
    """A member whose one job slot is busy pauses its partitions. A
    rebalance that comes meanwhile waits for the running message, then
    hands some partitions back to the member, and librdkafka keeps those
    paused: the member must resume them itself. It once did not, and
    stopped consuming for good."""
    group = unique("g")
    produce(stack, topic, [(b"first", job("first", 1))])
    busy = probes("consume", f"--topic={topic}", f"--group={group}", "--workers=1",
                  "--hold-first-ms=10000")
    busy.wait_event(lambda e: e["event"] == "received", 60, "the first message")
    other = probes("consume", f"--topic={topic}", f"--group={group}", "--workers=1")
    admin = AdminClient({"bootstrap.servers": stack.brokers})

    def both_assigned():
        (d,) = admin.describe_consumer_groups([group]).values()
        members = d.result(30).members
        return len(members) == 2 and all(m.assignment.topic_partitions for m in members)
    wait_until(both_assigned, 90, what="the rebalance that gives the second member partitions")
    p = Producer({"bootstrap.servers": stack.brokers})
    for part in range(3):
        p.produce(topic, value=job(f"after{part}", part), key=f"after{part}".encode(),
                  partition=part)
    assert p.flush(30) == 0

    def handled():
        keys, done = {}, set()
        for pr in (busy, other):
            for e in pr.poll_events():
                if e["event"] == "received":
                    keys[(e["partition"], e["offset"])] = e["key"]
                elif e["event"] == "handled":
                    done.add((e["partition"], e["offset"]))
        return {keys.get(x) for x in done}
    # every message is handled, whichever member has its partition now
    want = {"first", "after0", "after1", "after2"}
    wait_until(lambda: want <= handled(), 90, what="every message handled after the rebalance")
    assert busy.stop() == 0 and other.stop() == 0
    assert busy.stderr_text().count("assigned") >= 2  # its first assignment and the rebalance's
