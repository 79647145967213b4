"""castbus-transcode-worker as a member of the transcode-worker group.

Jobs are TranscodeJob messages produced to the real Kafka, their source
segments real MPEG-TS files in the worker's storage (cut by ffmpeg, or by
castbus-ingest from an RTMP publish); results are read back from
media.transcode.done and media.transcode.jobs.dlq and the renditions are
checked with ffprobe. Nothing here waits a fixed time or asserts one.
"""

import json
import signal
import subprocess
import time

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from conftest import commit_group_to_end, ROOT, TopicReader, unique, wait_until

PROFILE = "preview"  # 360p and 240p (ultrafast) and AAC: cheap on a shared machine
SEG_S = 4            # source segments are 4 s: two 2 s output segments each
JOBS = "media.transcode.jobs"
HIGH = "media.transcode.jobs.high"
MEDIA = ROOT / "tests" / "data" / "media" / "h264_aac_6s.flv"


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=180)


def ffprobe_json(path, *args):
    r = subprocess.run(["ffprobe", "-v", "error", *args, "-of", "json", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def video_start_90k(path):
    info, _ = ffprobe_json(path, "-select_streams", "v:0", "-show_entries",
                           "stream=start_time,duration")
    s = info["streams"][0]
    return round(float(s["start_time"]) * 90000), round(float(s["duration"]) * 90000)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Three 4 s segments of one continuous 640x360 H.264 + AAC stream (4 s
    GOPs, so each must become two 2 s output segments; B-frames), cut on
    keyframes with the timestamps kept, plus a longer 1280x720 one that
    takes a while to transcode."""
    d = tmp_path_factory.mktemp("tw-sources")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(3 * SEG_S),
           "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "120",
           "-keyint_min", "120", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "96k",
           "-output_ts_offset", "30", "-f", "segment", "-segment_time", str(SEG_S),
           "-segment_format", "mpegts", str(d / "seg%d.ts"))
    segs = []
    for i in range(3):
        p = d / f"seg{i}.ts"
        start, _ = video_start_90k(p)
        segs.append({"file": p, "start": start})
    for i, s in enumerate(segs):
        s["duration"] = (segs[i + 1]["start"] - s["start"] if i + 1 < len(segs)
                         else video_start_90k(s["file"])[1])
    slow = d / "slow.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "8",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-c:a", "aac",
           "-f", "mpegts", str(slow))
    start, dur = video_start_90k(slow)
    return {"segments": segs, "slow": {"file": slow, "start": start, "duration": dur}}


@pytest.fixture(autouse=True)
def no_backlog(stack):
    """Move the transcode-worker group to the end of both job topics before a
    test starts its workers. Other tests (ingest's) leave jobs there whose
    sources live in their own storage: a worker here would fail each one as
    missing, correctly but slowly, before reaching this test's jobs. The
    commit is accepted once the group has no members, so a worker killed by
    the previous test is waited out (its session expires)."""
    commit_group_to_end(stack, "transcode-worker", (JOBS, HIGH))


class Bus:
    """Produces jobs; reads what the workers answer."""

    def __init__(self, stack):
        self.producer = Producer({"bootstrap.servers": stack.brokers, "acks": "all"})
        self.done = TopicReader(stack, "media.transcode.done")
        self.dlq = TopicReader(stack, "media.transcode.jobs.dlq")

    def job(self, storage, stream, seq, src, *, profile=PROFILE, priority="normal",
            topic=JOBS, path=None, eos=False):
        key = path or f"live/{stream}/src/{seq:08d}.ts"
        if src is not None:
            dest = storage / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src["file"].read_bytes() if "file" in src else src["bytes"])
        msg = {
            "v": 1, "job_id": f"{stream}:{seq}", "kind": "live", "stream_id": stream, "seq": seq,
            "source": {"path": key, "container": "mpegts",
                       "start_pts_90k": (src or {}).get("start", 0),
                       "duration_90k": (src or {}).get("duration", 4 * 90000),
                       "video_codec": "h264", "audio_codec": "aac"},
            "profile": profile, "priority": priority, "end_of_stream": eos,
            "packaging": {"dvr_window_s": 600}, "created_at_ms": int(time.time() * 1000),
        }
        self.send(topic, stream, json.dumps(msg).encode())
        return msg

    def send(self, topic, key, value):
        self.producer.produce(topic, key=key.encode(), value=value)
        assert self.producer.flush(30) == 0

    def dones(self, stream, n, timeout=180):
        return self.done.wait(stream, lambda m: len(m) >= n, timeout, f"{n} done results")

    def close(self):
        self.done.close()
        self.dlq.close()


@pytest.fixture
def bus(stack):
    b = Bus(stack)
    yield b
    b.close()


def worker_env(storage, **extra):
    env = {"CASTBUS_STORAGE_URL": f"file://{storage}", "CASTBUS_STORAGE_FSYNC": "false"}
    env.update({k.upper(): v for k, v in extra.items()})
    return env


def start_worker(start_daemon, storage, **extra):
    w = start_daemon("transcode-worker", worker_env(storage, **extra))
    w.wait_ready()
    # both lanes have their partitions before a test counts on them
    wait_until(lambda: sum("assigned" in ln.get("msg", "") for ln in w.log_lines()) >= 2, 60,
               what="both lanes assigned")
    return w


def metric(d, name, **labels):
    """The sum of the samples called name whose labels include labels."""
    return sum(s.value for f in text_string_to_metric_families(d.get("/metrics").text)
               for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def started_jobs(w):
    return [ln["msg"] for ln in w.log_lines() if " started (lane" in ln.get("msg", "")]


def rendition_file(storage, tmp_path, rend, segments, name):
    """init + the given media segments, as one fragmented MP4."""
    out = tmp_path / name
    with open(out, "wb") as f:
        f.write((storage / rend["init_path"]).read_bytes())
        for s in segments:
            f.write((storage / s["path"]).read_bytes())
    return out


def check_renditions(storage, tmp_path, dones):
    """Every rendition of every done: sizes, keyframe starts at the promised
    times, segments that join across jobs, and a clean decode of the whole."""
    dones = sorted(dones, key=lambda m: m["seq"])
    names = [r["name"] for r in dones[0]["renditions"]]
    assert names == ["360p", "240p", "audio"], names
    for name in names:
        rends = [next(r for r in m["renditions"] if r["name"] == name) for m in dones]
        assert len({r["init_path"] for r in rends}) == 1, "one init segment per rendition"
        segs = [s for r in rends for s in r["segments"]]
        for a, b in zip(segs, segs[1:]):
            assert abs(a["start_pts_90k"] + a["duration_90k"] - b["start_pts_90k"]) <= 3000, \
                f"{name}: {a} does not join {b}"
        r0 = rends[0]
        if r0["kind"] == "video":
            assert r0["codecs"].startswith("avc1."), r0
            for s in segs:
                assert abs(s["duration_90k"] - 2 * 90000) <= 3000, s  # the 2 s target
                one = rendition_file(storage, tmp_path, r0, [s], f"{name}-one.mp4")
                pk, _ = ffprobe_json(one, "-select_streams", "v:0", "-show_entries",
                                     "packet=pts_time,flags", "-read_intervals", "%+#1")
                first = pk["packets"][0]
                assert "K" in first["flags"], f"{s['path']} does not start with a keyframe"
                assert abs(float(first["pts_time"]) * 90000 - s["start_pts_90k"]) <= 1, s
        else:
            assert r0["codecs"] == "mp4a.40.2", r0
        whole = rendition_file(storage, tmp_path, r0, segs, f"{name}-all.mp4")
        info, err = ffprobe_json(whole, "-count_frames", "-show_entries",
                                 "stream=codec_type,width,height,nb_read_frames")
        assert not err.strip(), f"{name}: {err}"
        st = info["streams"][0]
        if r0["kind"] == "video":
            assert (st["width"], st["height"]) == (r0["width"], r0["height"]), (st, r0)
            assert abs(int(st["nb_read_frames"]) - 30 * SEG_S * len(dones)) <= 2, st
            assert r0["bandwidth_bps"] > 0


def test_jobs_become_renditions_and_one_done_each(start_daemon, bus, sources, tmp_path):
    storage = tmp_path / "media"
    w = start_worker(start_daemon, storage)
    stream = unique("tw")
    for seq, src in enumerate(sources["segments"]):
        bus.job(storage, stream, seq, src, eos=seq == 2)
    dones = bus.dones(stream, 3)
    assert sorted(m["seq"] for m in dones) == [0, 1, 2]
    assert all(m["status"] == "ok" for m in dones), dones
    by_seq = {m["seq"]: m for m in dones}
    assert by_seq[2].get("end_of_stream") and not by_seq[0].get("end_of_stream")
    assert by_seq[0]["packaging"]["dvr_window_s"] == 600
    for m in dones:
        src = sources["segments"][m["seq"]]
        assert m["start_pts_90k"] == src["start"] and m["worker"]
        first = m["renditions"][0]["segments"][0]
        assert first["start_pts_90k"] == src["start"], "the source's timeline is kept"
        assert first["path"] == f"live/{stream}/360p/{src['start']:013d}.m4s"
        assert (storage / f"live/{stream}/done/{m['seq']:08d}.json").exists()
    check_renditions(storage, tmp_path, dones)
    assert metric(w, "castbus_transcode_jobs_total", lane="normal", result="ok") == 3
    assert metric(w, "castbus_transcode_frames_encoded_total", rendition="360p") >= 3 * 30 * SEG_S
    assert metric(w, "castbus_transcode_encode_fps", rendition="240p") > 0

    # the same job again (a redelivery): the same result, announced once
    before = {p: p.stat().st_mtime_ns for p in (storage / "live" / stream).rglob("*.m4s")}
    bus.job(storage, stream, 1, sources["segments"][1])
    wait_until(lambda: metric(w, "castbus_transcode_jobs_total", result="duplicate") == 1, 60,
               what="the repeated job recognised")
    assert len(bus.done.messages(stream)) == 3
    assert {p: p.stat().st_mtime_ns for p in (storage / "live" / stream).rglob("*.m4s")} == before


def test_bad_input_goes_to_the_dead_letter_topic_and_the_worker_keeps_serving(
        start_daemon, bus, sources, tmp_path):
    storage = tmp_path / "media"
    w = start_worker(start_daemon, storage)
    stream = unique("tw-bad")
    good = sources["segments"][0]
    corrupt = {"bytes": bytes(range(256)) * 400, "start": 0, "duration": 4 * 90000}
    truncated = {"bytes": good["file"].read_bytes()[:3000], "start": good["start"],
                 "duration": good["duration"]}
    bus.job(storage, stream, 0, corrupt)
    bus.job(storage, stream, 1, truncated)
    bus.job(storage, stream, 2, None, path=f"live/{stream}/src/gone.ts")
    bus.job(storage, stream, 3, good, profile="no-such-profile")
    bus.send(JOBS, stream, b'{"v":1,"job_id":"x","kind":"live"}')
    bus.job(storage, stream, 5, good)

    dones = {m["seq"]: m for m in bus.dones(stream, 5)}
    assert dones[5]["status"] == "ok", "the worker keeps serving after bad input"
    for seq in (0, 1, 2, 3):
        assert dones[seq]["status"] == "failed" and not dones[seq].get("renditions"), dones[seq]
        assert dones[seq]["start_pts_90k"] == (good["start"] if seq in (1, 3) else 0)
    assert "missing" in dones[2]["error"]
    assert "no-such-profile" in dones[3]["error"]

    def dead():
        bus.dlq.poll()
        recs = [r for r in bus.dlq.records if r["key"] == stream]
        return recs if len(recs) >= 5 else None
    recs = wait_until(dead, 60, what="5 dead letters")
    reasons = {r["headers"]["castbus-dlq-reason"] for r in recs}
    for seq in (0, 1, 2, 3):
        assert dones[seq]["error"] in reasons, (dones[seq]["error"], reasons)
    assert any(r.startswith("not a TranscodeJob") for r in reasons), reasons
    assert all(r["headers"]["castbus-dlq-topic"] == JOBS for r in recs)
    assert metric(w, "castbus_transcode_failures_total", reason="invalid_input") == 2
    assert w.proc.poll() is None


def test_a_job_over_its_budget_is_given_back_then_fails(start_daemon, bus, sources, tmp_path):
    storage = tmp_path / "media"
    w = start_worker(start_daemon, storage, castbus_job_timeout="1s", castbus_job_attempts="2")
    stream = unique("tw-budget")
    bus.job(storage, stream, 0, sources["slow"], profile="default")
    dones = bus.dones(stream, 1, 120)
    assert dones[0]["status"] == "failed" and "time budget" in dones[0]["error"], dones[0]
    assert len(started_jobs(w)) == 2 and "attempt 2" in started_jobs(w)[1]

    def dead():
        bus.dlq.poll()
        return [r for r in bus.dlq.records if r["key"] == stream]
    rec = wait_until(dead, 60, what="the dead letter")[0]
    assert "time budget" in rec["headers"]["castbus-dlq-reason"]
    assert rec["headers"]["castbus-attempt"] == "2"
    assert metric(w, "castbus_transcode_jobs_total", result="requeued") == 1
    assert metric(w, "castbus_transcode_failures_total", reason="timeout") == 2


def test_the_priority_lane_is_drained_first(start_daemon, bus, sources, tmp_path):
    storage = tmp_path / "media"
    w = start_worker(start_daemon, storage, castbus_jobs="1")
    normal, premium = unique("tw-normal"), unique("tw-premium")
    slow = dict(sources["slow"])
    bus.job(storage, normal, 0, slow, profile="live")
    wait_until(lambda: started_jobs(w), 60, what="the first job started")
    for seq in (1, 2, 3):
        bus.job(storage, normal, seq, sources["segments"][seq - 1])
    bus.job(storage, premium, 0, sources["segments"][0], priority="high", topic=HIGH)
    bus.dones(normal, 4, 300)
    bus.dones(premium, 1, 60)
    order = [(ln["msg"].split()[1]) for ln in w.log_lines()
             if ln.get("msg", "").startswith("job ") and " done in " in ln["msg"]]
    assert order[0] == f"{normal}:0", order
    later = order.index(f"{premium}:0")
    # produced after three normal jobs, done before (at least) two of them
    assert later <= 2, order
    assert metric(w, "castbus_transcode_jobs_total", lane="high", result="ok") == 1


def test_kill9_mid_job_another_worker_finishes_it_once(start_daemon, bus, sources, tmp_path):
    storage = tmp_path / "media"
    a = start_worker(start_daemon, storage)
    b = start_worker(start_daemon, storage)
    stream = unique("tw-kill")
    n = 6
    for seq in range(n):
        bus.job(storage, stream, seq, sources["segments"][seq % 3] | {"start": seq * 4 * 90000})
    busy = wait_until(lambda: next((d for d in (a, b) if started_jobs(d)), None), 120,
                      what="a worker on the stream's partition")
    busy.proc.send_signal(signal.SIGKILL)
    busy.proc.wait(30)
    other = b if busy is a else a
    dones = bus.dones(stream, n, 240)
    seqs = sorted(m["seq"] for m in dones)
    assert seqs == list(range(n)), f"exactly one done per segment, got {seqs}"
    assert all(m["status"] == "ok" for m in dones)
    assert started_jobs(other), "the other worker took over"
    for m in dones:
        for r in m["renditions"]:
            for s in r["segments"]:
                assert (storage / s["path"]).stat().st_size == s["bytes"]


def test_sigterm_finishes_the_job_in_hand_and_commits(start_daemon, bus, sources, tmp_path):
    storage = tmp_path / "media"
    w = start_worker(start_daemon, storage, castbus_shutdown_grace="60s")
    stream = unique("tw-term")
    bus.job(storage, stream, 0, sources["slow"], profile="live")
    wait_until(lambda: started_jobs(w), 60, what="the job started")
    assert w.stop(signal.SIGTERM, timeout=90) == 0
    assert "done in" in "".join(ln.get("msg", "") for ln in w.log_lines()), \
        "finished before exiting"
    assert [m["seq"] for m in bus.dones(stream, 1, 30)] == [0]
    # committed: a new member of the group finds nothing to redo
    w2 = start_worker(start_daemon, storage)
    bus.job(storage, stream, 1, sources["segments"][0])
    bus.dones(stream, 2)
    assert metric(w2, "castbus_transcode_jobs_total", result="duplicate") == 0
    assert not [ln for ln in started_jobs(w2) if f"{stream}:0 " in ln]


def test_sigterm_past_the_deadline_leaves_the_job_to_another_worker(
        start_daemon, bus, sources, tmp_path):
    storage = tmp_path / "media"
    w = start_worker(start_daemon, storage, castbus_shutdown_grace="2s",
                     castbus_shutdown_delay="0s")
    stream = unique("tw-late")
    bus.job(storage, stream, 0, sources["slow"], profile="default")
    wait_until(lambda: started_jobs(w), 60, what="the job started")
    assert w.stop(signal.SIGTERM, timeout=60) == 0
    if bus.done.messages(stream):
        pytest.skip("the job finished inside the 2 s grace on this machine")
    w2 = start_worker(start_daemon, storage)
    dones = bus.dones(stream, 1, 300)
    assert [m["seq"] for m in dones] == [0] and dones[0]["status"] == "ok"
    assert started_jobs(w2), "redone by the next member"


def test_ingest_publish_to_renditions(start_daemon, bus, stack, tmp_path):
    """RTMP publish -> ingest segments -> jobs (priority lane for a premium
    stream) -> worker -> done, with one storage between them."""
    from test_ingest import INGEST_ENV, create_stream, finish, publish

    storage = tmp_path / "media"
    ingest = start_daemon("ingest", dict(INGEST_ENV, CASTBUS_STORAGE_URL=f"file://{storage}",
                                         CASTBUS_DEFAULT_PROFILE=PROFILE))
    ingest.wait_ready()
    w = start_worker(start_daemon, storage)
    high = TopicReader(stack, HIGH)
    try:
        s = create_stream(ingest, priority="high")
        finish(publish(s["publish"]["rtmp"]))
        jobs = high.wait(s["id"], lambda m: any(j.get("end_of_stream") for j in m), 120,
                         "the last job")
        n = max(j["seq"] for j in jobs) + 1
        dones = bus.dones(s["id"], n, 240)
        assert sorted(m["seq"] for m in dones) == list(range(n))
        assert all(m["status"] == "ok" for m in dones), dones
        assert any(m.get("end_of_stream") for m in dones)
        starts = {j["seq"]: j["source"]["start_pts_90k"] for j in jobs}
        for m in dones:
            video = [r for r in m["renditions"] if r["kind"] == "video"]
            assert video and all(r["segments"][0]["start_pts_90k"] == starts[m["seq"]]
                                 for r in video), "the source's timeline is kept"
        assert metric(w, "castbus_transcode_jobs_total", lane="high", result="ok") == n
    finally:
        high.close()
