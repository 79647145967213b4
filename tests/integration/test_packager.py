"""castbus-packager: the packager group on media.transcode.done, the
manifests it keeps in storage, and the origin that serves them.

Most tests produce TranscodeDone results themselves (what workers would
announce), with small stand-in files where the worker would have put its
segments, so every timeline case (out of order, missing, failed, trimmed,
ended, restarted) is exact; the last one runs the real pipeline, RTMP
publish to ingest to transcode-worker to packager, and plays the result
with ffmpeg through the origin. Nothing here waits a fixed time.
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest
import requests
from confluent_kafka import Producer

from conftest import (ADMIN_KEY, BIN, EDITOR_KEY, VIEWER_KEY, TopicReader, commit_group_to_end,
                      unique, wait_until)

DONE = "media.transcode.done"
SEG = 2 * 90000  # 2 s output segments
JOB = 2 * SEG    # 4 s source segments: two output segments per job
RENDITIONS = [("720p", "video", "avc1.64001f", 1280, 720, 3_000_000),
              ("360p", "video", "avc1.4d401e", 640, 360, 800_000),
              ("audio", "audio", "mp4a.40.2", 0, 0, 128_000)]
START = 10 * 90000


@pytest.fixture(autouse=True)
def no_backlog(stack):
    """The packager group starts at the end of media.transcode.done: results
    other tests left there belong to other storages."""
    commit_group_to_end(stack, "packager", [DONE])


class Results:
    """Writes what a worker would (segments, init segments, done records)
    and produces its TranscodeDone."""

    def __init__(self, stack, storage, window=600, record=False):
        self.producer = Producer({"bootstrap.servers": stack.brokers, "acks": "all"})
        self.storage = storage
        self.window = window
        self.record = record

    def done(self, stream, seq, *, status="ok", eos=False, disc=False, start=None, send=True,
             record=True):
        start = START + seq * JOB if start is None else start
        msg = {"v": 1, "job_id": f"{stream}:{seq}", "kind": "live", "stream_id": stream,
               "seq": seq, "status": status, "start_pts_90k": start, "duration_90k": JOB,
               "discontinuity": disc, "end_of_stream": eos,
               "packaging": {"dvr_window_s": self.window, "record": self.record},
               "renditions": [], "worker": "test", "finished_at_ms": int(time.time() * 1000),
               "ingest_wallclock_ms": 1_790_000_000_000 + start // 90}
        if status == "failed":
            msg["error"] = "corrupt source"
        else:
            for name, kind, codecs, w, h, bps in RENDITIONS:
                init = f"live/{stream}/{name}/init-00000000000000aa.mp4"
                self.write(init, b"init " + name.encode())
                segs = []
                for k in range(2):
                    t = start + k * SEG
                    path = f"live/{stream}/{name}/{t:013d}.m4s"
                    body = f"{name} segment {t} ".encode() * 64
                    self.write(path, body)
                    segs.append({"path": path, "start_pts_90k": t, "duration_90k": SEG,
                                 "bytes": len(body)})
                r = {"name": name, "kind": kind, "codecs": codecs, "bandwidth_bps": bps,
                     "target_bitrate_bps": bps, "init_path": init, "segments": segs}
                if kind == "video":
                    r.update(width=w, height=h, fps=30)
                else:
                    r.update(sample_rate=48000, channels=2)
                msg["renditions"].append(r)
        body = json.dumps(msg).encode()
        if status == "ok" and record:
            self.write(f"live/{stream}/done/{seq:08d}.json", body)
        if send:
            self.send(stream, body)
        return msg

    def write(self, key, data):
        p = self.storage / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def send(self, stream, body):
        self.producer.produce(DONE, key=stream.encode(), value=body)
        assert self.producer.flush(30) == 0


def start_packager(start_daemon, storage, **extra):
    env = {"CASTBUS_STORAGE_URL": f"file://{storage}", "CASTBUS_STORAGE_FSYNC": "false",
           "CASTBUS_GAP_WAIT": "1s", "CASTBUS_DELETE_GRACE": "1s"}
    env.update({k.upper(): v for k, v in extra.items()})
    p = start_daemon("packager", env)
    p.wait_ready()
    wait_until(lambda: any("assigned" in ln.get("msg", "") for ln in p.log_lines()), 60,
               what="the packager's partitions")
    return p


def start_pipeline(start_daemon, storage, part_target=None):
    """ingest (the preview profile), a transcode-worker and a packager on one
    storage, all ready; returns them. part_target: ingest's (low latency),
    None for its default."""
    from test_ingest import INGEST_ENV

    env = {"CASTBUS_STORAGE_URL": f"file://{storage}", "CASTBUS_STORAGE_FSYNC": "false"}
    ingest_env = dict(INGEST_ENV, CASTBUS_DEFAULT_PROFILE="preview", **env)
    if part_target is not None:
        ingest_env["CASTBUS_PART_TARGET"] = part_target
    ingest = start_daemon("ingest", ingest_env)
    worker = start_daemon("transcode-worker", env)
    p = start_packager(start_daemon, storage)
    ingest.wait_ready()
    worker.wait_ready()
    return ingest, worker, p


def playlist(p, path):
    r = p.get(path)
    return r.text if r.status_code == 200 else ""


def segments(text):
    """(uri, duration, gap) of each segment of a media playlist."""
    out, dur, gap = [], None, False
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line == "#EXT-X-GAP":
            gap = True
        elif line and not line.startswith("#"):
            out.append((line, dur, gap))
            gap = False
    return out


def tag(text, name):
    m = re.search(rf"^#{name}:(.*)$", text, re.M)
    return m.group(1) if m else None


def wait_segments(p, path, n, what=None):
    return wait_until(lambda: (lambda t: t if len(segments(t)) >= n else None)(playlist(p, path)),
                      60, 0.1, what or f"{n} segments in {path}")


@pytest.fixture
def storage(tmp_path):
    return tmp_path / "media"


@pytest.fixture
def results(stack, storage):
    return Results(stack, storage)


def test_results_become_hls_and_dash_in_order(start_daemon, results, storage):
    p = start_packager(start_daemon, storage)
    s = unique("pk")
    for seq in (0, 1):
        results.done(s, seq)
    media = wait_segments(p, f"/live/{s}/720p.m3u8", 4)
    assert tag(media, "EXT-X-MEDIA-SEQUENCE") == "0"
    assert tag(media, "EXT-X-TARGETDURATION") == "2"
    assert '#EXT-X-MAP:URI="720p/init-00000000000000aa.mp4"' in media
    assert media.count("#EXT-X-PROGRAM-DATE-TIME:") == 4
    assert "#EXT-X-ENDLIST" not in media
    assert [u for u, _, _ in segments(media)] == [
        f"720p/{START + k * SEG}.m4s" for k in range(4)]

    # out of order: 3 waits for 2, then both go in
    results.done(s, 3)
    wait_until(lambda: p.get(f"/v1/streams/{s}/packaging", key=ADMIN_KEY).json()["waiting"] == 1,
               30, what="result 3 held")
    assert len(segments(playlist(p, f"/live/{s}/720p.m3u8"))) == 4
    results.done(s, 2)
    media = wait_segments(p, f"/live/{s}/720p.m3u8", 8)
    assert [u for u, _, _ in segments(media)][4:] == [
        f"720p/{START + k * SEG}.m4s" for k in range(4, 8)]
    assert not any(g for _, _, g in segments(media))

    master = playlist(p, f"/live/{s}/master.m3u8")
    inf = [ln for ln in master.splitlines() if ln.startswith("#EXT-X-STREAM-INF:")]
    assert len(inf) == 2
    assert 'RESOLUTION=1280x720' in inf[0] and 'CODECS="avc1.64001f,mp4a.40.2"' in inf[0]
    assert "AVERAGE-BANDWIDTH=" in inf[0] and "FRAME-RATE=30" in inf[0]
    assert 'AUDIO="audio"' in inf[0]
    assert re.search(r'#EXT-X-MEDIA:TYPE=AUDIO.*URI="audio.m3u8"', master)

    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}

    def mpd_with(n):
        # each manifest is its own file: the MPD may lag the playlist by a moment
        # count per set: a sum over all of them reaches n too early
        m = ET.fromstring(p.get(f"/live/{s}/manifest.mpd").content)
        tls = m.findall("d:Period/d:AdaptationSet/d:SegmentTemplate/d:SegmentTimeline", ns)
        counts = [sum(1 + int(x.get("r", "0")) for x in tl.findall("d:S", ns)) for tl in tls]
        return m if counts and min(counts) >= n else None
    mpd = wait_until(lambda: mpd_with(8), 30, what="the MPD with 8 segments")
    assert mpd.get("type") == "dynamic"
    for attr in ("availabilityStartTime", "timeShiftBufferDepth", "minimumUpdatePeriod",
                 "suggestedPresentationDelay"):
        assert mpd.get(attr), attr
    # a delay behind the newest segment (Shaka Player), a target behind the wall clock (dash.js)
    assert mpd.get("suggestedPresentationDelay") == "PT2.500S"  # 1.25 segments
    assert mpd.get("minimumUpdatePeriod") == "PT0.500S"
    sd = mpd.find("d:ServiceDescription", ns)
    assert sd.find("d:Latency", ns).get("target") == "4000"
    assert sd.find("d:PlaybackRate", ns).attrib == {"min": "1", "max": "1"}
    assert mpd.find("d:UTCTiming", ns) is not None
    sets = mpd.findall("d:Period/d:AdaptationSet", ns)
    assert [a.get("contentType") for a in sets] == ["video", "audio"]
    reps = sets[0].findall("d:Representation", ns)
    assert [r.get("id") for r in reps] == ["720p", "360p"]
    # one timeline per set, the rungs' own templates name their init segments
    template = sets[0].find("d:SegmentTemplate", ns)
    assert template.get("media") == "$RepresentationID$/$Time$.m4s"
    assert [r.find("d:SegmentTemplate", ns).get("initialization").split("/")[0]
            for r in reps] == ["720p", "360p"]
    tl = template.find("d:SegmentTimeline", ns)
    ss = tl.findall("d:S", ns)
    assert ss[0].get("t") == str(START) and ss[0].get("d") == str(SEG)
    assert sum(1 + int(x.get("r", "0")) for x in ss) == 8

    info = p.get(f"/v1/streams/{s}/packaging", key=ADMIN_KEY).json()
    assert info["last_seq"] == 3 and info["segments"] == 8 and info["window_s"] == 600
    assert [r["name"] for r in info["renditions"]] == ["720p", "360p", "audio"]
    assert info["last_update_latency_ms"] >= 0
    assert p.get(f"/v1/streams/{s}/packaging").status_code == 401
    assert p.get("/v1/streams/nope/packaging", key=ADMIN_KEY).status_code == 404


def test_missing_and_failed_results_become_gaps(start_daemon, results, storage):
    p = start_packager(start_daemon, storage)
    s = unique("pk")
    results.done(s, 0)
    results.done(s, 1, status="failed")
    results.done(s, 3)  # 2 never comes
    media = wait_segments(p, f"/live/{s}/720p.m3u8", 8, "the gap of the missing result")
    segs = segments(media)
    assert [g for _, _, g in segs] == [False, False, True, True, True, True, False, False], media
    assert all(d == 2.0 for _, d, _ in segs), media
    # the timeline jumps over the gap (the MPD is its own file: it may lag the
    # playlist by a moment)
    wait_until(lambda: f't="{START + 6 * SEG}"' in playlist(p, f"/live/{s}/manifest.mpd"), 30,
               what="the MPD's timeline after the gap")
    # the missing result coming late changes nothing
    results.done(s, 2)
    results.done(s, 4)
    media = wait_segments(p, f"/live/{s}/720p.m3u8", 10)
    assert [g for _, _, g in segments(media)][4:6] == [True, True], media


def test_the_dvr_window_moves_and_old_segments_are_deleted(start_daemon, stack, storage):
    results = Results(stack, storage, window=8)
    p = start_packager(start_daemon, storage)
    s = unique("pk")
    for seq in range(6):
        results.done(s, seq)
    def moved():
        t = playlist(p, f"/live/{s}/720p.m3u8")
        return t if tag(t, "EXT-X-MEDIA-SEQUENCE") == "8" else None
    media = wait_until(moved, 60, what="the window at media sequence 8")
    assert len(segments(media)) == 4  # 8 s of 2 s segments
    first = storage / f"live/{s}/720p/{START:013d}.m4s"
    record = storage / f"live/{s}/done/00000000.json"
    # The segment files go first, then the done record naming them.
    wait_until(lambda: not first.exists() and not record.exists(), 60,
               what="the first segment and its done record deleted after the grace")
    assert (storage / f"live/{s}/720p/{START + 8 * SEG:013d}.m4s").exists()
    mpd = ET.fromstring(p.get(f"/live/{s}/manifest.mpd").content)
    assert mpd.get("timeShiftBufferDepth") == "PT8.000S"


def test_kill9_restart_keeps_sequence_numbers_and_window(start_daemon, stack, storage):
    results = Results(stack, storage, window=12)
    # deletions wait an hour here: the crash cuts them short
    p = start_packager(start_daemon, storage, castbus_delete_grace="1h")
    s = unique("pk")
    for seq in range(5):
        results.done(s, seq)
    results.done(s, 6)  # held: 5 is late
    def at(seq_first, n):
        t = playlist(p, f"/live/{s}/720p.m3u8")
        return t if tag(t, "EXT-X-MEDIA-SEQUENCE") == seq_first and len(segments(t)) == n else None
    before = wait_until(lambda: at("4", 6), 60, what="the window before the crash")
    p.proc.send_signal(signal.SIGKILL)
    p.proc.wait()
    p = start_packager(start_daemon, storage)
    results.done(s, 5)
    results.done(s, 7)
    try:
        after = wait_until(lambda: at("10", 6), 60, what="the window after the restart")
    except BaseException:
        print(playlist(p, f"/live/{s}/720p.m3u8"))
        print(p.log_text()[-5000:])
        raise
    # the entries listed before keep their numbers, and the window is full again
    assert segments(before)[0][0] == f"720p/{START + 4 * SEG}.m4s"
    uris = [u for u, _, _ in segments(after)]
    assert uris == [f"720p/{START + k * SEG}.m4s" for k in range(10, 16)]
    assert any("rebuilt from storage" in ln.get("msg", "") for ln in p.log_lines())
    # what the first run had queued for deletion is found again and deleted
    first = storage / f"live/{s}/720p/{START:013d}.m4s"
    record = storage / f"live/{s}/done/00000000.json"
    wait_until(lambda: not first.exists() and not record.exists(), 60,
               what="the segments and done records left before the window deleted")
    assert (storage / f"live/{s}/720p/{START + 10 * SEG:013d}.m4s").exists()
    assert any("from before the window were left" in ln.get("msg", "") for ln in p.log_lines())


def test_end_of_stream_becomes_a_vod_asset_and_takedown_purges(start_daemon, stack, storage):
    results = Results(stack, storage, window=600)
    events = TopicReader(stack, "media.package.events")
    purges = TopicReader(stack, "cdn.purges")
    try:
        p = start_packager(start_daemon, storage)
        s = unique("pk")
        for seq in range(3):
            results.done(s, seq, eos=seq == 2)
        vod = events.wait(s, lambda m: any(e["type"] == "vod_ready" for e in m), 60,
                          "vod_ready")[-1]
        asset = vod["asset_id"]
        assert asset == f"{s}-0" and vod["duration_ms"] == 12000
        assert vod["hls_path"] == f"/vod/{asset}/master.m3u8"
        live = playlist(p, f"/live/{s}/720p.m3u8")
        assert "#EXT-X-ENDLIST" in live
        assert ET.fromstring(p.get(f"/live/{s}/manifest.mpd").content).get("type") == "static"
        v = p.get(f"/vod/{asset}/720p.m3u8")
        assert v.status_code == 200 and "#EXT-X-PLAYLIST-TYPE:VOD" in v.text
        uri = segments(v.text)[0][0]
        seg = p.get(f"/vod/{asset}/{uri}")
        assert seg.status_code == 200
        rend, name = uri.split("/")
        assert seg.content == (storage / f"live/{s}/{rend}/{int(name[:-4]):013d}.m4s").read_bytes()
        assert f"vod/{asset}" in seg.headers["Surrogate-Key"].split()
        mpd = ET.fromstring(p.get(f"/vod/{asset}/manifest.mpd").content)
        assert mpd.get("type") == "static" and mpd.get("mediaPresentationDuration") == "PT12.000S"
        listed = p.get("/v1/assets", key=ADMIN_KEY).json()["assets"]
        assert any(a["asset_id"] == asset and a["stream_id"] == s for a in listed)

        def purge_with(pred):
            def found():
                purges.poll()
                bodies = [json.loads(r["value"]) for r in purges.records]
                return next((b for b in bodies if pred(b)), None)
            return wait_until(found, 60, what="a purge request")
        published = purge_with(lambda b: f"/vod/{asset}/master.m3u8" in b.get("urls", []))
        assert published["requested_by"] == "packager"

        r = p.request("DELETE", f"/v1/assets/{asset}", key=ADMIN_KEY)
        assert r.status_code == 200 and r.json()["segments_deleted"] == 18
        assert p.get(f"/vod/{asset}/master.m3u8").status_code == 404
        assert p.get(f"/vod/{asset}/{uri}").status_code == 404
        assert p.request("DELETE", f"/v1/assets/{asset}", key=ADMIN_KEY).status_code == 404
        events.wait(s, lambda m: any(e["type"] == "asset_removed" for e in m), 60,
                    "asset_removed")

        purge_with(lambda b: b.get("tags") == [f"vod/{asset}"])
    finally:
        events.close()
        purges.close()


def test_origin_headers_ranges_and_errors(start_daemon, results, storage):
    p = start_packager(start_daemon, storage)
    s = unique("pk")
    results.done(s, 0)
    wait_segments(p, f"/live/{s}/720p.m3u8", 2)

    m = p.get(f"/live/{s}/720p.m3u8")
    assert m.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert m.headers["Cache-Control"] == "public, max-age=1"
    assert m.headers["Access-Control-Allow-Origin"] == "*"
    assert set(m.headers["Surrogate-Key"].split()) == {f"live/{s}", f"live/{s}/manifests"}
    assert p.get(f"/live/{s}/manifest.mpd").headers["Content-Type"] == "application/dash+xml"

    uri = f"/live/{s}/720p/{START:013d}.m4s"
    seg = p.get(uri)
    body = (storage / f"live/{s}/720p/{START:013d}.m4s").read_bytes()
    assert seg.status_code == 200 and seg.content == body
    assert p.get(f"/live/{s}/720p/{START}.m4s").content == body  # the name the manifests use
    head = p.request("HEAD", uri)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(body))
    assert head.content == b""
    head = p.request("HEAD", f"/live/{s}/720p.m3u8")
    assert int(head.headers["Content-Length"]) == len(p.get(f"/live/{s}/720p.m3u8").content)
    assert seg.headers["Content-Type"] == "video/iso.segment"
    assert "immutable" in seg.headers["Cache-Control"]
    assert set(seg.headers["xkey"].split()) == {f"live/{s}", f"live/{s}/720p"}
    assert seg.headers["Accept-Ranges"] == "bytes"
    etag, lm = seg.headers["ETag"], seg.headers["Last-Modified"]
    assert p.get(uri, headers={"If-None-Match": etag}).status_code == 304
    assert p.get(uri, headers={"If-Modified-Since": lm}).status_code == 304
    r = p.get(uri, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == body[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    r = p.get(uri, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == body[-5:]
    r = p.get(uri, headers={"Range": f"bytes={len(body)}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(body)}"
    init = p.get(f"/live/{s}/720p/init-00000000000000aa.mp4")
    assert init.status_code == 200 and init.headers["Content-Type"] == "video/mp4"

    pre = p.request("OPTIONS", uri, headers={"Origin": "https://player.example",
                                             "Access-Control-Request-Headers": "range"})
    assert pre.status_code == 204
    assert "Range" in pre.headers["Access-Control-Allow-Headers"]

    for bad in (f"/live/{s}/done/00000000.json", f"/live/{s}/packager/state.json",
                f"/live/{s}/src/00000000.ts", f"/live/{s}/../x/master.m3u8",
                f"/live/{s}/720p/nothing.m4s", "/live/nope/master.m3u8", f"/live/{s}"):
        assert p.get(bad).status_code == 404, bad
    t = p.get("/time")
    assert t.status_code == 200 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                                 t.text)


def curl(url, *args):
    """curl (built with nghttp2) fetches url: (HTTP version, status, headers, body)."""
    with tempfile.NamedTemporaryFile() as out:
        r = subprocess.run(["curl", "-s", "-k", "-D", "-", "-o", out.name, "--max-time", "30",
                            *args, url], capture_output=True, timeout=60)
        assert r.returncode == 0, (url, args, r.returncode, r.stderr)
        body = out.read()
    # the last header block: an h2c upgrade's 101 comes first
    head = [b for b in r.stdout.split(b"\r\n\r\n") if b.strip()][-1]
    lines = head.decode().split("\r\n")
    version, status = lines[0].split()[:2]
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return version, int(status), headers, body


def check_http2(base, s, body, how="--http2"):
    """HTTP/2 through base (curl's option how: --http2 upgrades a plain
    connection with h2c or uses ALPN, --http2-prior-knowledge starts with the
    preface): a manifest, a segment larger than the stream window (flow
    control), HEAD, 304, a range, a 404."""
    uri = f"{base}/live/{s}/720p/{START:013d}.m4s"
    v, st, h, got = curl(uri, how)
    assert (v, st) == ("HTTP/2", 200) and got == body, (v, st, len(got), len(body))
    assert h["content-length"] == str(len(body)) and "immutable" in h["cache-control"]
    assert "connection" not in h
    v, st, h, got = curl(f"{base}/live/{s}/720p.m3u8", how)
    assert (v, st) == ("HTTP/2", 200) and got.startswith(b"#EXTM3U"), (v, st, got[:100])
    v, st, h, _ = curl(uri, how, "-I")  # (curl writes the headers as the body)
    assert (v, st) == ("HTTP/2", 200) and h["content-length"] == str(len(body))
    v, st, _, got = curl(uri, how, "-H", f"If-None-Match: {h['etag']}")
    assert (v, st, got) == ("HTTP/2", 304, b"")
    v, st, h, got = curl(uri, how, "-r", "100000-100099")
    assert (v, st, got) == ("HTTP/2", 206, body[100000:100100])
    v, st, _, _ = curl(f"{base}/live/{s}/720p/nothing.m4s", how)
    assert (v, st) == ("HTTP/2", 404)


def check_h2load(base, s, protocol):
    """Many streams at once on few connections (h2load: 400 requests, 2
    connections of 10 streams each) over protocol: every one answered, none
    left open."""
    r = subprocess.run(["h2load", "-n", "400", "-c", "2", "-m", "10",
                        f"{base}/live/{s}/720p/{START:013d}.m4s", f"{base}/live/{s}/720p.m3u8"],
                       capture_output=True, text=True, timeout=120)
    assert f"Application protocol: {protocol}" in r.stdout, r.stdout + r.stderr
    assert "400 succeeded, 0 failed" in r.stdout and "400 2xx" in r.stdout, r.stdout


def test_origin_speaks_http2(start_daemon, stack, results, storage, tmp_path):
    s = unique("pk")
    results.done(s, 0)
    # a segment of 300 KB: more than HTTP/2's initial window of 64 KB
    body = os.urandom(300_000)
    (storage / f"live/{s}/720p/{START:013d}.m4s").write_bytes(body)

    # plain: HTTP/1.1, HTTP/2 after an h2c upgrade, or HTTP/2 with prior
    # knowledge (what CDN edges and h2load speak to a plain origin)
    p = start_packager(start_daemon, storage)
    wait_segments(p, f"/live/{s}/720p.m3u8", 2)
    base = f"http://127.0.0.1:{p.origin_port}"
    v, st, _, got = curl(f"{base}/live/{s}/720p/{START:013d}.m4s")
    assert (v, st, got) == ("HTTP/1.1", 200, body)
    check_http2(base, s, body)
    check_http2(base, s, body, "--http2-prior-knowledge")
    check_h2load(base, s, "h2c")
    # a peer with a small window (16 KB here; 64 KB is HTTP/2's default) gets
    # no more than it allows: nghttp2 fails a stream that overruns it
    r = subprocess.run(["h2load", "-n", "20", "-c", "1", "-m", "2", "-w", "14",
                        f"{base}/live/{s}/720p/{START:013d}.m4s"],
                       capture_output=True, text=True, timeout=120)
    assert "20 succeeded, 0 failed" in r.stdout, r.stdout + r.stderr
    # a client that connects and says nothing holds no server thread: others are served
    idle = [socket.create_connection(("127.0.0.1", p.origin_port)) for _ in range(20)]
    v, st, _, got = curl(f"{base}/live/{s}/720p/{START:013d}.m4s", "--http2-prior-knowledge")
    assert (v, st, got) == ("HTTP/2", 200, body)
    for c in idle:
        c.close()
    p.stop()

    # TLS: HTTP/2 by ALPN, and HTTP/1.1 for clients that ask for it
    cert, key = tmp_path / "origin.crt", tmp_path / "origin.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    p = start_packager(start_daemon, storage, castbus_origin_tls_cert=str(cert),
                       castbus_origin_tls_key=str(key))
    base = f"https://127.0.0.1:{p.origin_port}"
    check_http2(base, s, body)
    v, st, _, got = curl(f"{base}/live/{s}/720p/{START:013d}.m4s", "--http1.1")
    assert (v, st, got) == ("HTTP/1.1", 200, body)
    check_h2load(base, s, "h2")
    p.stop()

    # half a TLS configuration is refused at startup, naming the key
    env = dict(os.environ, **stack.env, CASTBUS_STORAGE_URL=f"file://{storage}",
               CASTBUS_PORT="0", CASTBUS_ORIGIN_PORT="0", CASTBUS_ORIGIN_TLS_CERT=str(cert))
    r = subprocess.run([str(BIN / "castbus-packager")], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "origin_tls_key: not set" in r.stdout + r.stderr, r


def test_blocking_playlist_reload(start_daemon, results, storage):
    import concurrent.futures
    p = start_packager(start_daemon, storage)
    s = unique("pk")
    results.done(s, 0)
    results.done(s, 1)
    media = wait_segments(p, f"/live/{s}/720p.m3u8", 4)  # media sequence 0..3
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in media
    url = f"/live/{s}/720p.m3u8?_HLS_msn=4"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = pool.submit(p.get, url, timeout=60)
        wait_until(lambda: re.search(r"^castbus_origin_held_total 1(\.0)?$",
                                     p.get("/metrics").text, re.M), 30,
                   what="the request held at the origin")
        assert not held.done(), "answered before segment 4 was listed"
        results.done(s, 2)
        r = held.result(timeout=60)
    assert r.status_code == 200
    assert f"720p/{START + 4 * SEG}.m4s" in r.text, r.text
    # listed already: at once; the master is never held
    assert p.get(f"/live/{s}/720p.m3u8?_HLS_msn=1").status_code == 200
    assert p.get(f"/live/{s}/master.m3u8?_HLS_msn=99").status_code == 200
    for bad, field in (("_HLS_msn=x", "_HLS_msn"), ("_HLS_msn=-1", "_HLS_msn"),
                       ("_HLS_msn=99", "_HLS_msn"), ("_HLS_msn=6&_HLS_part=x", "_HLS_part")):
        r = p.get(f"/live/{s}/720p.m3u8?{bad}")
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (bad, r.text)
    # never listed: 503 after three target durations
    r = p.get(f"/live/{s}/720p.m3u8?_HLS_msn=6", timeout=60)
    assert r.status_code == 503 and r.json()["error"]["field"] == "_HLS_msn", r.text


def test_playlist_delta_updates(start_daemon, results, storage):
    """?_HLS_skip=YES: the segments further back than CAN-SKIP-UNTIL become
    one EXT-X-SKIP; the rest is the playlist as it is."""
    import concurrent.futures
    p = start_packager(start_daemon, storage)
    s = unique("pk")
    for seq in range(5):
        results.done(s, seq)
    full = wait_segments(p, f"/live/{s}/720p.m3u8", 10)  # 20 s: media sequence 0..9
    assert "CAN-SKIP-UNTIL=12.000" in tag(full, "EXT-X-SERVER-CONTROL"), full
    r = p.get(f"/live/{s}/720p.m3u8?_HLS_skip=YES")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.mpegurl"
    delta = r.text
    # the three that end 18, 16 and 14 s before the end; the fourth ends 12 s before it
    assert tag(delta, "EXT-X-SKIP") == "SKIPPED-SEGMENTS=3", delta
    assert tag(delta, "EXT-X-VERSION") == "9" and tag(delta, "EXT-X-MEDIA-SEQUENCE") == "0"
    assert segments(delta) == segments(full)[3:], delta
    assert delta.split("#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n")[1] == \
        full[full.index("#EXT-X-MAP:"):].split("\n", 1)[0] + "\n" + \
        full[full.index(f"#EXT-X-PROGRAM-DATE-TIME:{tag(delta, 'EXT-X-PROGRAM-DATE-TIME')}"):]
    etag = r.headers["etag"]
    assert etag != p.get(f"/live/{s}/720p.m3u8").headers["etag"]
    assert p.get(f"/live/{s}/720p.m3u8?_HLS_skip=YES",
                 headers={"If-None-Match": etag}).status_code == 304
    assert "#EXT-X-SKIP:" in p.get(f"/live/{s}/720p.m3u8?_HLS_skip=v2").text
    r = p.get(f"/live/{s}/720p.m3u8?_HLS_skip=NO")
    assert r.status_code == 400 and r.json()["error"]["field"] == "_HLS_skip", r.text
    assert re.search(r"^castbus_origin_delta_updates_total 2(\.0)?$", p.get("/metrics").text, re.M)
    # with a blocking reload: the delta update once segment 10 is listed
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(p.get, f"/live/{s}/720p.m3u8?_HLS_msn=10&_HLS_skip=YES", timeout=60)
        results.done(s, 5)
        r = held.result(timeout=60)
    assert r.status_code == 200 and f"720p/{START + 10 * SEG}.m4s" in r.text, r.text
    assert tag(r.text, "EXT-X-SKIP") in ("SKIPPED-SEGMENTS=4", "SKIPPED-SEGMENTS=5"), r.text
    # the stream ended: no delta updates, the whole playlist
    results.done(s, 6, eos=True)
    wait_until(lambda: "#EXT-X-ENDLIST" in playlist(p, f"/live/{s}/720p.m3u8"), 60,
               what="the end of the stream")
    ended = p.get(f"/live/{s}/720p.m3u8?_HLS_skip=YES").text
    assert "#EXT-X-SKIP" not in ended and "CAN-SKIP-UNTIL" not in ended, ended
    assert len(segments(ended)) == 14


def test_manifests_gzipped(start_daemon, results, storage):
    """Manifests of 1 KB or more go gzipped to clients that take it, as a
    representation of their own (ETag, Vary); ranges, small manifests and
    clients that do not take gzip get the bytes as stored."""
    import gzip

    p = start_packager(start_daemon, storage)
    s = unique("pk")
    for seq in range(5):
        results.done(s, seq)
    wait_segments(p, f"/live/{s}/720p.m3u8", 10)

    def raw(path, **headers):
        r = p.get(path, headers=headers, stream=True)
        return r, r.raw.read(decode_content=False)
    for name in ("720p.m3u8", "manifest.mpd"):
        path = f"/live/{s}/{name}"
        plain, body = raw(path, **{"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "Content-Encoding" not in plain.headers, name
        assert len(body) >= 1024, (name, len(body))
        z, zipped = raw(path, **{"Accept-Encoding": "br;q=1.0, gzip;q=0.8"})
        assert z.headers["Content-Encoding"] == "gzip", name
        assert gzip.decompress(zipped) == body and len(zipped) < len(body) / 2, name
        assert z.headers["Vary"].lower() == plain.headers["Vary"].lower() == "accept-encoding"
        assert z.headers["ETag"] == plain.headers["ETag"][:-1] + '-gz"', name
        assert z.headers["Content-Type"] == plain.headers["Content-Type"]
        assert p.get(path, headers={"Accept-Encoding": "gzip",
                                    "If-None-Match": z.headers["ETag"]}).status_code == 304
        # the identity ETag does not match the gzipped representation
        assert p.get(path, headers={"Accept-Encoding": "gzip",
                                    "If-None-Match": plain.headers["ETag"]}).status_code == 200
        no, same = raw(path, **{"Accept-Encoding": "gzip;q=0, deflate"})
        assert "Content-Encoding" not in no.headers and same == body, name
        part, piece = raw(path, **{"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
        assert part.status_code == 206 and piece == body[:100], name
    for name in ("master.m3u8", "720p.m3u8?_HLS_skip=YES"):  # under 1 KB
        small, body = raw(f"/live/{s}/{name}", **{"Accept-Encoding": "gzip"})
        assert len(body) < 1024 and "Content-Encoding" not in small.headers, name
        assert body.startswith(b"#EXTM3U") and small.headers["Vary"] == "accept-encoding"
    # a delta update of a low-latency playlist (parts, rendition reports): over 1 KB
    ll = unique("pk")
    for seq in range(5):
        msg = results.done(ll, seq, send=False)
        msg["packaging"].update(low_latency=True, part_target_ms=1000)
        for r in msg["renditions"]:
            for seg in r["segments"]:
                half = seg["bytes"] // 2
                seg["parts"] = [{"offset": 0, "bytes": half, "duration_90k": SEG // 2,
                                 "independent": True},
                                {"offset": half, "bytes": seg["bytes"] - half,
                                 "duration_90k": SEG - SEG // 2}]
        results.send(ll, json.dumps(msg).encode())
    wait_segments(p, f"/live/{ll}/720p.m3u8", 10)
    path = f"/live/{ll}/720p.m3u8?_HLS_skip=YES"
    plain, body = raw(path, **{"Accept-Encoding": "identity"})
    z, zipped = raw(path, **{"Accept-Encoding": "gzip"})
    assert b"#EXT-X-SKIP:" in body and b"#EXT-X-PART:" in body and len(body) >= 1024, body
    assert z.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == body
    assert z.headers["ETag"] == plain.headers["ETag"][:-1] + '-gz"'
    assert plain.headers["ETag"].endswith('-delta"')
    seg, _ = raw(f"/live/{s}/720p/{START:013d}.m4s", **{"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in seg.headers and "Vary" not in seg.headers
    assert re.search(r"^castbus_origin_gzipped_total [1-9]", p.get("/metrics").text, re.M)


def test_signed_playback_urls(start_daemon, stack, storage):
    import hashlib
    import hmac

    key = "test-signing-key"
    results = Results(stack, storage)
    p = start_packager(start_daemon, storage, castbus_signing_key=key)
    s = unique("pk")
    msg = results.done(s, 0, send=False)
    msg["packaging"]["signed_playback"] = True
    results.send(s, json.dumps(msg).encode())
    wait_until(lambda: p.get(f"/v1/streams/{s}/packaging", key=ADMIN_KEY).json().get("segments"),
               60, what="the signed stream packaged")

    r = p.get(f"/live/{s}/master.m3u8")
    assert r.status_code == 403 and "signed URL" in r.json()["error"]["message"]
    minted = p.request("POST", f"/v1/streams/{s}/playback-token", key=EDITOR_KEY,
                       json={"ttl_s": 600})
    assert minted.status_code == 200, minted.text
    hls = minted.json()["hls"]
    assert p.get(hls).status_code == 200
    # every URL a player derives from it carries the token
    media = p.get(hls.replace("master.m3u8", "720p.m3u8"))
    assert media.status_code == 200
    uri = segments(media.text)[0][0]
    assert p.get(hls.replace("master.m3u8", uri)).status_code == 200
    assert p.get(f"/live/{s}/{uri}").status_code == 403

    token = minted.json()["token"]
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert p.get(f"/live/{s}/{tampered}/master.m3u8").status_code == 403
    assert p.get(f"/live/other/{token}/master.m3u8").status_code in (403, 404)

    def craft(expires, ip):
        sig = hmac.new(key.encode(), f"live/{s}|{expires}|{ip}".encode(), hashlib.sha256)
        return f"~{expires}_{ip}_{sig.hexdigest()}"
    assert p.get(f"/live/{s}/{craft(int(time.time()) - 5, 'any')}/master.m3u8").status_code == 410
    assert p.get(f"/live/{s}/{craft(int(time.time()) + 60, '10.1.2.3')}/master.m3u8"
                 ).status_code == 403
    assert p.get(f"/live/{s}/{craft(int(time.time()) + 60, '127.0.0.1')}/master.m3u8"
                 ).status_code == 200
    bad = p.request("POST", f"/v1/streams/{s}/playback-token", key=EDITOR_KEY,
                    json={"ttl_s": 5})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "ttl_s"
    assert p.request("POST", f"/v1/streams/{s}/playback-token", key=VIEWER_KEY).status_code == 403


def test_bad_results_go_to_the_dead_letter_topic(start_daemon, stack, results, storage):
    dlq = TopicReader(stack, "media.transcode.done.dlq")
    try:
        p = start_packager(start_daemon, storage)
        s = unique("pk")
        results.send(s, b"not json")
        bad = results.done(s, 0, send=False)
        bad["renditions"] = []
        results.send(s, json.dumps(bad).encode())
        recs = wait_until(lambda: (lambda r: r if len(r) >= 2 else None)(
            [x for x in (dlq.poll() or dlq.records) if x["key"] == s]), 60,
            what="two dead letters")
        reasons = [r["headers"].get("castbus-dlq-reason", "") for r in recs]
        assert any("TranscodeDone" in x for x in reasons), reasons
        assert any("renditions" in x for x in reasons), reasons
        results.done(s, 0)
        wait_segments(p, f"/live/{s}/720p.m3u8", 2, "the stream going on after bad input")
    finally:
        dlq.close()


PART_RE = re.compile(r'^#EXT-X-PART:DURATION=([0-9.]+),URI="([^"]+)",BYTERANGE="(\d+)@(\d+)"'
                     r'(,INDEPENDENT=YES)?$', re.M)


def check_low_latency(p, sid, rung, target=1.0):
    """A low-latency live stream (parts of at most target seconds): LL-HLS
    playlists whose parts are the CMAF chunks of the segments, byte ranges
    that cover each file."""
    media = wait_until(lambda: (lambda t: t if len(PART_RE.findall(t)) >= 5 else None)(
        playlist(p, f"/live/{sid}/{rung}.m3u8")), 60, what=f"parts in {rung}.m3u8")
    assert tag(media, "EXT-X-PART-INF") == f"PART-TARGET={target:.3f}", media
    skip = 6 * int(tag(media, "EXT-X-TARGETDURATION"))
    assert tag(media, "EXT-X-SERVER-CONTROL") == \
        f"CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip}.000,PART-HOLD-BACK={2 * target:.3f}", media
    assert "#EXT-X-RENDITION-REPORT:URI=\"audio.m3u8\",LAST-MSN=" in media, media
    by_uri = {}
    for dur, uri, length, offset, indep in PART_RE.findall(media):
        by_uri.setdefault(uri, []).append((float(dur), int(length), int(offset), bool(indep)))
    listed = {u: d for u, d, _ in segments(media)}
    for uri, parts in by_uri.items():
        data = p.get(f"/live/{sid}/{uri}").content
        assert sum(n for _, n, _, _ in parts) == len(data), (uri, parts, len(data))
        assert abs(sum(d for d, _, _, _ in parts) - listed[uri]) < 0.05, (uri, parts, listed[uri])
        assert parts[0][3] and parts[0][2] == 0, (uri, parts)  # a segment starts with its keyframe
        for i, (dur, length, offset, _) in enumerate(parts):
            assert dur <= target and (i == 0 or offset == parts[i - 1][2] + parts[i - 1][1]), parts
            r = p.get(f"/live/{sid}/{uri}", headers={"Range": f"bytes={offset}-{offset + length - 1}"})
            assert r.status_code == 206 and r.content == data[offset:offset + length]
            box = r.content[4:8] if i else r.content[r.content.index(b"moof") - 4:][4:8]
            assert box == b"moof", (uri, i, r.content[:16])
    audio = playlist(p, f"/live/{sid}/audio.m3u8")
    aparts = PART_RE.findall(audio)
    assert aparts and all(x[4] for x in aparts), audio  # every audio chunk is independent
    # a part of the last segment is listed already: answered at once
    last = int(tag(media, "EXT-X-MEDIA-SEQUENCE")) + len(segments(media)) - 1
    r = p.get(f"/live/{sid}/{rung}.m3u8?_HLS_msn={last}&_HLS_part=1")
    assert r.status_code == 200 and "#EXT-X-PART-INF" in r.text


def test_publish_to_playback_through_the_origin(start_daemon, stack, tmp_path):
    """RTMP publish -> ingest -> transcode-worker -> packager -> ffmpeg plays
    the HLS and the DASH through the origin, live and as VOD."""
    from test_ingest import create_stream, finish, publish, stop

    ingest, _, p = start_pipeline(start_daemon, tmp_path / "media")  # low latency by default
    events = TopicReader(stack, "media.package.events")
    pub = None
    try:
        s = create_stream(ingest)
        # live until the checks are done (low-latency parts are for live playlists only)
        pub = publish(s["publish"]["rtmp"], loops=19)
        master = wait_until(lambda: playlist(p, f"/live/{s['id']}/master.m3u8") or None, 120,
                            what="the live master playlist")
        info = p.get(f"/v1/streams/{s['id']}/packaging", key=ADMIN_KEY).json()
        video = [r["name"] for r in info["renditions"] if r["kind"] == "video"]
        # every rung of the profile not above the 320x180 source
        assert video and master.count("#EXT-X-STREAM-INF:") == len(video), (master, info)
        live = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type",
                               "-of", "json", p.url(f"/live/{s['id']}/master.m3u8")],
                              capture_output=True, text=True, timeout=120)
        assert live.returncode == 0, live.stderr
        kinds = sorted({x["codec_type"] for x in json.loads(live.stdout)["streams"]})
        assert kinds == ["audio", "video"]
        check_low_latency(p, s["id"], video[0])
        wait_until(lambda: len(segments(playlist(p, f"/live/{s['id']}/{video[0]}.m3u8"))) >= 3,
                   120, what="3 live segments")
        assert pub.poll() is None, "the publisher ended before the live checks were done"
        pub.send_signal(signal.SIGINT)  # ffmpeg unpublishes, as OBS does
        finish(pub)
        vod = events.wait(s["id"], lambda m: any(e["type"] == "vod_ready" for e in m), 240,
                          "vod_ready")[-1]
        for path in (vod["hls_path"], vod["dash_path"]):
            r = subprocess.run(["ffmpeg", "-v", "error", "-i", p.url(path), "-f", "null", "-"],
                               capture_output=True, text=True, timeout=240)
            assert r.returncode == 0 and not r.stderr.strip(), (path, r.stderr)
        assert vod["duration_ms"] >= 5000
    finally:
        events.close()
        if pub is not None:
            stop(pub)
