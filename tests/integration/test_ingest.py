"""castbus-ingest black-box: the streams API, and real ffmpeg publishers over
RTMP, RTMPS and SRT, against real Kafka and PostgreSQL.

Each test starts its own ingest (own ports, storage and rate limiter) and
creates its own streams, so tests never see each other's segments or jobs;
the jobs topic is shared, so readers filter by stream id (the message key).
"""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import (ADMIN_KEY, BIN, EDITOR_KEY, HELPERS, ROOT, VIEWER_KEY, TopicReader, free_port,
                      unique, wait_until)

MEDIA = ROOT / "tests" / "data" / "media" / "h264_aac_6s.flv"
MEDIA_S = 6.0  # its duration: 180 video frames at 30 fps, B-frames, 2 s GOPs, AAC
SEGMENT_S = 2.0

INGEST_ENV = {
    "CASTBUS_SEGMENT_DURATION": "2s",
    "CASTBUS_STATS_INTERVAL": "1s",
    "CASTBUS_BACKUP_SWITCH": "1s",
    "CASTBUS_HANDSHAKE_TIMEOUT": "2s",
}


# ---- helpers ----

@pytest.fixture
def jobs_topic(stack):
    r = TopicReader(stack, "media.transcode.jobs")
    yield r
    r.close()


@pytest.fixture
def events_topic(stack):
    r = TopicReader(stack, "analytics.events")
    yield r
    r.close()


@pytest.fixture
def ingest(start_daemon):
    d = start_daemon("ingest", INGEST_ENV)
    d.wait_ready()
    return d


def create_stream(ingest, **body):
    body.setdefault("name", unique("stream"))
    r = ingest.request("POST", "/v1/streams", EDITOR_KEY, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def publish(url, *, loops=0, fmt="flv", media=MEDIA, out_args=()):
    """A real-time ffmpeg publisher (what OBS does, at the same pace)."""
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re"]
    if loops:
        args += ["-stream_loop", str(loops)]
    args += ["-i", str(media), "-c", "copy", *out_args, "-f", fmt, url]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120):
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the publisher did not finish")
    return proc.returncode, err


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    proc.communicate()


def unique_jobs(jobs):
    """At-least-once: the same seq may come twice, always with the same content."""
    seen = {}
    for j in jobs:
        prev = seen.setdefault(j["seq"], j)
        assert prev["source"] == j["source"], f"seq {j['seq']} announced with different content"
    return [seen[s] for s in sorted(seen)]


def check_timeline(storage, jobs, first_seq=0):
    """Seqs contiguous, each segment on storage starting with a keyframe and
    decoding, each starting where the previous one ended. Returns seconds covered."""
    jobs = unique_jobs(jobs)
    assert [j["seq"] for j in jobs] == list(range(first_seq, first_seq + len(jobs)))
    for a, b in zip(jobs, jobs[1:]):
        assert b["source"]["start_pts_90k"] == \
            a["source"]["start_pts_90k"] + a["source"]["duration_90k"], (a, b)
    for j in jobs:
        src = j["source"]
        path = storage / src["path"]
        assert path.is_file(), f"{src['path']} announced but not in storage"
        assert j["job_id"] == f"{j['stream_id']}:{j['seq']}"
        if src.get("video_codec"):
            first = subprocess.run(
                ["ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#1",
                 "-show_entries", "packet=flags", "-of", "csv=p=0", str(path)],
                capture_output=True, text=True, timeout=30)
            assert first.stdout.strip().startswith("K"), f"{src['path']} does not start with a keyframe"
        # every frame decodes, and there are as many video frames as the duration holds
        # (within 3: a looped file's audio tail leaves a short gap in its video)
        dec = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                              "stream=codec_type,nb_read_frames", "-of", "json", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert dec.returncode == 0 and not dec.stderr.strip(), f"{src['path']}: {dec.stderr}"
        frames = {st["codec_type"]: int(st["nb_read_frames"])
                  for st in json.loads(dec.stdout)["streams"]}
        if src.get("video_codec") and src.get("fps"):
            expect = src["duration_90k"] / 90000.0 * src["fps"]
            if j.get("end_of_stream"):  # the last one also holds the audio's tail
                assert 0 < frames["video"] <= expect + 3.01, (src, frames)
            else:
                assert abs(frames["video"] - expect) <= 3.01, (src, frames)
    return sum(j["source"]["duration_90k"] for j in jobs) / 90000.0


def status(ingest, stream_id):
    r = ingest.get(f"/v1/streams/{stream_id}", VIEWER_KEY)
    assert r.status_code == 200, r.text
    return r.json()


# ---- the streams API ----

def test_streams_api(ingest):
    s = create_stream(ingest, name="launch event", profile="default", dvr_window_s=7200,
                      record=True)
    assert s["status"] == "idle" and s["dvr_window_s"] == 7200 and s["record"] is True
    # absent and 0 differ: an hour by default, 0 is the live edge only
    assert create_stream(ingest)["dvr_window_s"] == 3600
    assert create_stream(ingest, dvr_window_s=0)["dvr_window_s"] == 0
    key = s["stream_key"]
    assert key.startswith(s["id"] + ".")
    assert s["publish"]["rtmp"].endswith(f"/live/{key}")
    assert s["publish"]["srt"].endswith(f"?streamid=publish:live/{key}")
    assert "rtmps" not in s["publish"]  # no certificate configured
    assert s["playback"]["hls"].endswith(f"/live/{s['id']}/master.m3u8")
    assert s["playback"]["dash"].endswith(f"/live/{s['id']}/manifest.mpd")

    got = status(ingest, s["id"])
    assert got["name"] == "launch event" and got["status"] == "idle"
    assert "stream_key" not in got  # shown once
    listed = ingest.get("/v1/streams", VIEWER_KEY).json()["streams"]
    assert s["id"] in [x["id"] for x in listed]
    idle = ingest.get("/v1/streams?status=idle", VIEWER_KEY).json()["streams"]
    assert s["id"] in [x["id"] for x in idle]

    # bad requests name the field
    for body, field in [({}, "name"), ({"name": ""}, "name"), ({"name": 5}, "name"),
                        ({"name": "x", "dvr_window_s": "long"}, "dvr_window_s"),
                        ({"name": "x", "dvr_window_s": 99999}, "dvr_window_s"),
                        ({"name": "x", "record": "yes"}, "record"),
                        ({"name": "x", "profile": "../etc"}, "profile"),
                        ({"name": "x", "priority": "urgent"}, "priority")]:
        r = ingest.request("POST", "/v1/streams", EDITOR_KEY, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["field"] == field, (body, r.text)
    r = ingest.get("/v1/streams?status=dead", VIEWER_KEY)
    assert r.status_code == 400 and r.json()["error"]["field"] == "status"
    r = ingest.get("/v1/streams?limit=0", VIEWER_KEY)
    assert r.status_code == 400 and r.json()["error"]["field"] == "limit"

    # roles: viewers read, editors change
    assert ingest.request("POST", "/v1/streams", VIEWER_KEY, json={"name": "x"}).status_code == 403
    assert ingest.get("/v1/streams").status_code == 401

    # unknown ids
    for method, path in [("GET", "/v1/streams/nosuchstream"),
                         ("DELETE", "/v1/streams/nosuchstream"),
                         ("POST", "/v1/streams/nosuchstream/kick"),
                         ("POST", "/v1/streams/nosuchstream/rotate-key")]:
        assert ingest.request(method, path, ADMIN_KEY).status_code == 404, path

    r = ingest.request("POST", f"/v1/streams/{s['id']}/kick", EDITOR_KEY)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_live"

    r = ingest.request("POST", f"/v1/streams/{s['id']}/rotate-key", EDITOR_KEY)
    assert r.status_code == 200
    assert r.json()["stream_key"] != key and r.json()["publish"]["rtmp"].endswith(r.json()["stream_key"])

    assert ingest.request("DELETE", f"/v1/streams/{s['id']}", EDITOR_KEY).status_code == 204
    assert ingest.get(f"/v1/streams/{s['id']}", VIEWER_KEY).status_code == 404


# ---- RTMP publish, end to end ----

def test_rtmp_publish_segments_jobs_stats_and_recording(ingest, stack, jobs_topic, events_topic):
    s = create_stream(ingest, record=True, dvr_window_s=600)
    sid = s["id"]
    pkg = TopicReader(stack, "media.package.events")
    try:
        pub = publish(s["publish"]["rtmp"], loops=1)  # 12 s
        live = wait_until(lambda: (st := status(ingest, sid))["status"] == "live" and
                          st.get("live", {}).get("fps", 0) > 0 and st, 60, 0.2, "live status")
        info = live["live"]
        assert info["codecs"] == {"video": "h264", "audio": "aac"}
        assert info["resolution"] == "320x180"
        assert 25 <= info["fps"] <= 35
        assert info["active_role"] == "primary"
        assert info["primary"]["address"].startswith("127.0.0.1:")
        assert info["backup"] is None
        live_list = ingest.get("/v1/streams?status=live", VIEWER_KEY).json()["streams"]
        assert sid in [x["id"] for x in live_list]

        # a second publisher on a live stream is refused; the first goes on
        second = publish(s["publish"]["rtmp"])
        rc, err = finish(second, 60)
        assert rc != 0
        assert pub.poll() is None

        rc, err = finish(pub)
        assert rc == 0, err

        jobs = jobs_topic.wait(sid, lambda js: any(j.get("end_of_stream") for j in js),
                               what="the end-of-stream job")
        covered = check_timeline(ingest.storage, jobs)
        assert abs(covered - 2 * MEDIA_S) < 0.25, covered
        jobs = unique_jobs(jobs)
        assert [bool(j.get("end_of_stream")) for j in jobs] == [False] * (len(jobs) - 1) + [True]
        for j in jobs:
            assert j["kind"] == "live" and j["stream_id"] == sid and j["profile"] == "default"
            assert j["packaging"]["dvr_window_s"] == 600
            assert j["source"]["container"] == "mpegts"
            assert (j["source"]["width"], j["source"]["height"]) == (320, 180)
            assert j["source"]["video_codec"] == "h264" and j["source"]["audio_codec"] == "aac"
            assert not j.get("discontinuity")
        for j in jobs[:-1]:  # cut at the first keyframe at or after 2 s (2 s GOPs here)
            assert SEGMENT_S * 90000 <= j["source"]["duration_90k"] < (SEGMENT_S + 1) * 90000

        wait_until(lambda: status(ingest, sid)["status"] == "idle", 30, 0.2, "idle again")

        # statistics and publish events on analytics.events
        evs = events_topic.wait(sid, lambda es: any(e["type"] == "publish_stop" for e in es),
                                what="publish_stop")
        types = [e["type"] for e in evs]
        assert types[0] == "publish_start" and types[-1] == "publish_stop"
        stats = [e["data"] for e in evs if e["type"] == "ingest_stats"]
        assert stats, types
        assert any(x["bitrate_bps"] > 0 and x["fps"] > 0 for x in stats)
        assert any(abs(x["keyframe_interval_s"] - 2.0) < 0.05 for x in stats)
        assert all("dropped_frames" in x for x in stats)

        # the recording of the whole session
        rec = pkg.wait(sid, lambda es: any(e.get("type") == "recording_ready" for e in es),
                       what="recording_ready")
        rec = [e for e in rec if e.get("type") == "recording_ready"][0]
        path = ingest.storage / rec["recording_path"]
        assert abs(rec["duration_ms"] - 2000 * MEDIA_S) < 300, rec
        assert path.is_file()
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                                "-of", "csv=p=0", str(path)], capture_output=True, text=True)
        assert abs(float(probe.stdout) - 2 * MEDIA_S) < 0.3, probe.stdout
        dec = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                             capture_output=True, text=True, timeout=60)
        assert dec.returncode == 0 and not dec.stderr.strip(), dec.stderr

        metrics = ingest.get("/metrics").text
        assert "castbus_ingest_segments_total" in metrics
        assert 'castbus_ingest_recordings_total{result="stored"} 1' in metrics
    finally:
        pkg.close()


def test_audio_only_and_video_only(ingest, jobs_topic):
    a = create_stream(ingest)
    v = create_stream(ingest)
    pa = publish(a["publish"]["rtmp"], out_args=["-vn"])
    pv = publish(v["publish"]["rtmp"], out_args=["-an"])
    assert finish(pa)[0] == 0 and finish(pv)[0] == 0
    ja = jobs_topic.wait(a["id"], lambda js: any(j.get("end_of_stream") for j in js))
    jv = jobs_topic.wait(v["id"], lambda js: any(j.get("end_of_stream") for j in js))
    assert abs(check_timeline(ingest.storage, ja) - MEDIA_S) < 0.25
    assert abs(check_timeline(ingest.storage, jv) - MEDIA_S) < 0.25
    assert all(j["source"].get("audio_codec") == "aac" and not j["source"].get("video_codec")
               for j in ja)
    assert all(j["source"].get("video_codec") == "h264" and not j["source"].get("audio_codec")
               for j in jv)


# ---- RTMPS and SRT ----

@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_rtmps_publish(start_daemon, tls_cert, jobs_topic):
    cert, key = tls_cert
    d = start_daemon("ingest", dict(INGEST_ENV, CASTBUS_RTMPS_PORT=str(free_port()),
                                    CASTBUS_TLS_CERT=str(cert), CASTBUS_TLS_KEY=str(key)))
    d.wait_ready()
    s = create_stream(d)
    assert s["publish"]["rtmps"].startswith(f"rtmps://127.0.0.1:{d.env['CASTBUS_RTMPS_PORT']}/")
    rc, err = finish(publish(s["publish"]["rtmps"]))
    assert rc == 0, err
    jobs = jobs_topic.wait(s["id"], lambda js: any(j.get("end_of_stream") for j in js))
    assert abs(check_timeline(d.storage, jobs) - MEDIA_S) < 0.25
    # plain RTMP spoken to the TLS port is a bad byte stream: that connection closes, no more
    bad = publish(s["publish"]["rtmps"].replace("rtmps://", "rtmp://"))
    assert finish(bad, 60)[0] != 0
    assert d.get("/healthz").status_code == 200


def test_srt_publish_and_wrong_key(ingest, jobs_topic):
    s = create_stream(ingest)
    url = s["publish"]["srt"]
    rc, err = finish(publish(url, fmt="mpegts"))
    assert rc == 0, err
    jobs = jobs_topic.wait(s["id"], lambda js: any(j.get("end_of_stream") for j in js))
    assert abs(check_timeline(ingest.storage, jobs) - MEDIA_S) < 0.25
    assert jobs[0]["source"]["video_codec"] == "h264"

    wrong = url.replace(s["stream_key"], s["id"] + "." + "x" * 32)
    rc, err = finish(publish(wrong, fmt="mpegts"), 60)
    assert rc != 0  # the handshake is rejected
    assert "publish refused: wrong stream key" in ingest.log_text()


def test_srt_passphrase(start_daemon, jobs_topic):
    d = start_daemon("ingest", dict(INGEST_ENV, CASTBUS_SRT_PASSPHRASE="correct-horse-battery"))
    d.wait_ready()
    s = create_stream(d)
    url = s["publish"]["srt"]
    rc, _ = finish(publish(url + "&passphrase=wrong-passphrase", fmt="mpegts"), 60)
    assert rc != 0
    rc, err = finish(publish(url + "&passphrase=correct-horse-battery", fmt="mpegts"))
    assert rc == 0, err
    jobs = jobs_topic.wait(s["id"], lambda js: any(j.get("end_of_stream") for j in js))
    assert abs(check_timeline(d.storage, jobs) - MEDIA_S) < 0.25



def srt_connect(d, stream, passphrase, count):
    """count SRT handshakes (no media) by tests/integration/helpers/srt_connect."""
    streamid = f"publish:live/{stream['stream_key']}"
    r = subprocess.run([str(HELPERS / "srt_connect"), "127.0.0.1", d.env["CASTBUS_SRT_PORT"],
                        streamid, passphrase, str(count)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_srt_failed_handshakes_do_not_use_up_the_listener(start_daemon):
    # a wrong passphrase fails after the key check: 100 of them, more than the
    # listener's 64 pending handshakes, must not lock out the right publisher
    d = start_daemon("ingest", dict(INGEST_ENV, CASTBUS_SRT_PASSPHRASE="correct-horse-battery",
                                    CASTBUS_HANDSHAKE_TIMEOUT="1s"))
    d.wait_ready()
    s = create_stream(d)
    got = srt_connect(d, s, "wrong-passphrase-1", 100)
    assert got["connected"] == 0 and got["rejected"] == 100, got
    wait_until(lambda: srt_connect(d, s, "correct-horse-battery", 1)["connected"] == 1, 30, 0.5,
               "an SRT handshake with the right passphrase")


# ---- keys, limits and hostile clients ----

def test_wrong_keys_are_refused_and_rate_limited(start_daemon):
    d = start_daemon("ingest", dict(INGEST_ENV, CASTBUS_AUTH_FAILURES_MAX="3",
                                    CASTBUS_AUTH_FAILURE_WINDOW="1m"))
    d.wait_ready()
    a = create_stream(d)
    b = create_stream(d)
    port = d.env["CASTBUS_RTMP_PORT"]
    # a's secret with b's id: a key is valid only for its own stream
    crossed = b["id"] + "." + a["stream_key"].split(".", 1)[1]
    for key in [crossed, "garbage", a["id"] + ".short"]:
        rc, err = finish(publish(f"rtmp://127.0.0.1:{port}/live/{key}"), 60)
        assert rc != 0, key
    assert "NetStream.Publish.BadName" in d.log_text()
    # the address is now refused for a while, even with a right key
    rc, _ = finish(publish(a["publish"]["rtmp"]), 60)
    assert rc != 0
    assert "too many wrong stream keys from 127.0.0.1" in d.log_text()
    assert "castbus_ingest_rate_limited_total" in d.get("/metrics").text
    assert status(d, a["id"])["status"] == "idle"


def rtmp_handshake(sock):
    sock.sendall(b"\x03" + bytes(1536))
    got = b""
    while len(got) < 1 + 1536 * 2:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        got += chunk
    sock.sendall(got[1 + 1536:1 + 1536 * 2])  # C2 = S1


def closed_by_peer(sock, timeout=30):
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_hostile_clients_only_lose_their_own_connection(ingest, jobs_topic):
    port = int(ingest.env["CASTBUS_RTMP_PORT"])
    s = create_stream(ingest)
    pub = publish(s["publish"]["rtmp"], loops=1)
    try:
        wait_until(lambda: status(ingest, s["id"])["status"] == "live", 60, 0.2, "live")
        # a bad version byte
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"\x09" + os.urandom(1536))
            assert closed_by_peer(c)
        # silence after connecting: the handshake timeout (2 s here) closes it
        with socket.create_connection(("127.0.0.1", port)) as c:
            assert closed_by_peer(c)
        # random chunk bytes after a good handshake
        with socket.create_connection(("127.0.0.1", port)) as c:
            rtmp_handshake(c)
            c.sendall(os.urandom(64 * 1024))
            assert closed_by_peer(c)
        # a message header announcing 1 GiB (over max_message_size)
        with socket.create_connection(("127.0.0.1", port)) as c:
            rtmp_handshake(c)
            c.sendall(bytes([0x03, 0, 0, 0, 0x3f, 0xff, 0xff, 0x14, 0, 0, 0, 0]) + bytes(128))
            assert closed_by_peer(c)
        assert pub.poll() is None, "the honest publisher was hurt"
        rc, err = finish(pub)
        assert rc == 0, err
    finally:
        stop(pub)
    jobs = jobs_topic.wait(s["id"], lambda js: any(j.get("end_of_stream") for j in js))
    assert abs(check_timeline(ingest.storage, jobs) - 2 * MEDIA_S) < 0.25
    assert ingest.get("/healthz").status_code == 200


# ---- primary and backup ----

def test_backup_takes_over_and_primary_returns(ingest, jobs_topic):
    s = create_stream(ingest)
    sid = s["id"]
    primary = publish(s["publish"]["rtmp"], loops=3)  # 24 s
    backup = None
    try:
        wait_until(lambda: status(ingest, sid)["status"] == "live", 60, 0.2, "live")
        backup = publish(s["publish"]["rtmp"] + "?role=backup", loops=3)
        wait_until(lambda: (status(ingest, sid).get("live") or {}).get("backup"), 30, 0.2,
                   "the backup attached")
        jobs_topic.wait(sid, lambda js: len(js) >= 2, what="two segments")
        # the primary stalls: the backup takes over at its next keyframe
        primary.send_signal(signal.SIGSTOP)
        wait_until(lambda: status(ingest, sid)["live"]["active_role"] == "backup", 30, 0.2,
                   "backup active")
        jobs_topic.wait(sid, lambda js: sum(1 for j in js if j.get("discontinuity")) >= 1,
                        what="a discontinuity at the switch")
        # and hands back when the primary comes back
        primary.send_signal(signal.SIGCONT)
        wait_until(lambda: status(ingest, sid)["live"]["active_role"] == "primary", 30, 0.2,
                   "primary active again")
        live = status(ingest, sid)["live"]
        assert live["switches"] >= 2
        jobs = jobs_topic.wait(sid, lambda js: sum(1 for j in js if j.get("discontinuity")) >= 2,
                               what="a discontinuity at the return")
        ingest.request("POST", f"/v1/streams/{sid}/kick", EDITOR_KEY)
        jobs = jobs_topic.wait(sid, lambda js: any(j.get("end_of_stream") for j in js))
        check_timeline(ingest.storage, jobs)  # continuous across both switches
        assert 'castbus_ingest_source_switches_total' in ingest.get("/metrics").text
    finally:
        stop(primary)
        if backup:
            stop(backup)


# ---- kick, restarts, Kafka outages ----

def test_kick_ends_the_publish(ingest, jobs_topic):
    s = create_stream(ingest)
    pub = publish(s["publish"]["rtmp"], loops=5)
    try:
        jobs_topic.wait(s["id"], lambda js: len(js) >= 1, what="a first segment")
        r = ingest.request("POST", f"/v1/streams/{s['id']}/kick", EDITOR_KEY)
        assert r.status_code == 202 and r.json()["kicked"] == "here"
        rc, _ = finish(pub, 60)
        assert rc != 0  # the encoder sees its connection end
    finally:
        stop(pub)
    jobs = jobs_topic.wait(s["id"], lambda js: any(j.get("end_of_stream") for j in js))
    check_timeline(ingest.storage, jobs)
    wait_until(lambda: status(ingest, s["id"])["status"] == "idle", 30, 0.2, "idle")


def test_kill9_during_publish_loses_nothing_and_seq_continues(start_daemon, jobs_topic):
    env = dict(INGEST_ENV)
    first = start_daemon("ingest", env)
    first.wait_ready()
    # the restarted ingest listens where the encoder reconnects
    env.update({k: first.env[k] for k in ("CASTBUS_RTMP_PORT", "CASTBUS_SRT_PORT")})
    s = create_stream(first)
    sid = s["id"]
    pub = publish(s["publish"]["rtmp"], loops=5)
    try:
        before = jobs_topic.wait(sid, lambda js: len(js) >= 3, what="three segments")
        first.proc.kill()
        first.proc.wait()
        rc, _ = finish(pub, 60)
        assert rc != 0
    finally:
        stop(pub)
    announced = {j["seq"] for j in before}

    second = start_daemon("ingest", env)
    second.wait_ready()
    assert second.storage == first.storage
    rc, err = finish(publish(s["publish"]["rtmp"]))  # the encoder reconnects
    assert rc == 0, err
    jobs = jobs_topic.wait(sid, lambda js: any(j.get("end_of_stream") for j in js))
    jobs_u = unique_jobs(jobs)
    seqs = [j["seq"] for j in jobs_u]
    assert seqs == list(range(len(seqs))), seqs
    assert announced <= set(seqs)
    for j in jobs_u:
        assert (second.storage / j["source"]["path"]).is_file()
    # the reconnect continues the timeline and is marked
    after = [j for j in jobs_u if j["seq"] > max(announced)]
    assert after and any(j.get("discontinuity") for j in after)
    check_timeline(second.storage, jobs)


def test_kafka_down_during_publish_queues_then_announces(ingest, stack, jobs_topic):
    s = create_stream(ingest)
    sid = s["id"]
    pub = publish(s["publish"]["rtmp"], loops=3)  # 24 s
    try:
        jobs_topic.wait(sid, lambda js: len(js) >= 2, what="two segments")
        stack.down("kafka")
        try:
            # the outage (10 s): segments keep being cut, written and held for announcing
            wait_until(lambda: status(ingest, sid)["live"]["pending_segments"] >= 2, 30, 0.2,
                       "segments waiting for Kafka")
            time.sleep(6)
            assert pub.poll() is None, "the publisher was dropped during the outage"
        finally:
            stack.up("kafka")
        rc, err = finish(pub)
        assert rc == 0, err
    finally:
        stop(pub)
    jobs = jobs_topic.wait(sid, lambda js: any(j.get("end_of_stream") for j in js), timeout=180)
    assert abs(check_timeline(ingest.storage, jobs) - 4 * MEDIA_S) < 0.25
    # nothing went to the dead-letter topic or was dropped
    metrics = ingest.get("/metrics").text
    assert "castbus_ingest_pending_segments 0" in metrics


# ---- timestamps: 32-bit wrap, jumps and resets (tools/rtmp-loadgen as the encoder) ----

def loadgen(urls, *args, duration=12):
    """Start tools/rtmp-loadgen; finish_loadgen() waits for its summary."""
    cmd = [str(BIN / "rtmp-loadgen"), "--file", str(MEDIA), "--duration", str(duration),
           "--report", "60"]
    for u in urls:
        cmd += ["--url", u]
    return subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish_loadgen(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    assert lines, err
    return proc.returncode, json.loads(lines[-1])


def test_timestamps_wrap_jump_and_reset(ingest, jobs_topic):
    wrap, jump, reset = create_stream(ingest), create_stream(ingest), create_stream(ingest)
    procs = [
        # RTMP's 32-bit millisecond clock wraps 5 s into this publish
        loadgen([wrap["publish"]["rtmp"]], "--start-ts", str(2**32 - 5000)),
        # a jump one minute forward after 5 s, and a reset 5 s back (an encoder restart)
        loadgen([jump["publish"]["rtmp"]], "--jump-after", "5", "--jump-ms", "60000"),
        loadgen([reset["publish"]["rtmp"]], "--jump-after", "5", "--jump-ms", "-5000"),
    ]
    results = [finish_loadgen(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0], results
    for s, discontinuities, (_, summary) in zip([wrap, jump, reset], [0, 1, 1], results):
        jobs = unique_jobs(jobs_topic.wait(s["id"], lambda js: any(j.get("end_of_stream")
                                                                   for j in js)))
        covered = check_timeline(ingest.storage, jobs)  # contiguous: no gap, no spin
        # the timeline holds what was sent, whatever the clock did; how much was sent
        # depends on how fast this machine connected, so it comes from the encoder
        sent = summary["media_s_max"]
        assert sent > 6, summary  # past the jump
        assert abs(covered - sent) < 0.5, (s["id"], covered, summary)
        assert sum(1 for j in jobs if j.get("discontinuity")) == discontinuities, jobs
    assert "timestamps jumped" in ingest.log_text()


def test_a_torn_cursor_is_rebuilt_from_the_sidecars(ingest, jobs_topic):
    s = create_stream(ingest)
    assert finish(publish(s["publish"]["rtmp"]))[0] == 0
    first = unique_jobs(jobs_topic.wait(s["id"], lambda js: any(j.get("end_of_stream")
                                                                for j in js)))
    # the cursor is rewritten in place: a machine crash could leave half of it
    cursor = ingest.storage / "live" / s["id"] / "src" / "cursor.json"

    def settled():  # the writer's last word on it: every job acknowledged
        try:
            return json.loads(cursor.read_text())["announced"] == first[-1]["seq"]
        except (OSError, ValueError, KeyError):
            return False
    wait_until(settled, 60, 0.2, "the final cursor")
    cursor.write_text(cursor.read_text()[:17])
    assert finish(publish(s["publish"]["rtmp"]))[0] == 0
    jobs = jobs_topic.wait(s["id"], lambda js: sum(1 for j in js if j.get("end_of_stream")) >= 2)
    jobs = unique_jobs(jobs)
    assert [j["seq"] for j in jobs] == list(range(len(jobs)))  # no seq used twice
    second = jobs[len(first)]
    last = first[-1]["source"]
    assert second["source"]["start_pts_90k"] == last["start_pts_90k"] + last["duration_90k"]
    assert second.get("discontinuity")
    assert "cursor of stream" in ingest.log_text()
