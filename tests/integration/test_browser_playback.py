"""Real browsers play what the packager serves: headless Chromium with
hls.js, dash.js and Shaka Player (tests/e2e/play.mjs), live and as VOD.

The pipeline is the real one, as in test_packager's
test_publish_to_playback_through_the_origin: an ffmpeg RTMP publisher ->
ingest -> transcode-worker ("preview" profile) -> packager -> its origin. The
source is 640x360 (made here with lavfi like h264_aac_6s.flv: no clip in
tests/data/media is that large with audio, and the shared 1080p one has 8 s
GOPs), so both rungs of the profile (360p, 240p) exist and every player is
made to switch rendition while live. The live players run one after the
other, so that each latency is that of one viewer's player, not of three
browsers sharing the transcoder's two cores. The publisher runs until the
live checks are done (bounded), then ends the stream; the VOD asset the
packager announces must then play to its end.

The players and playwright-core come from tests/e2e/node_modules (installed
here with `npm ci --prefix tests/e2e` when absent); the browser is the
system's Chromium (/usr/bin/chromium, or $CHROMIUM). Startup times and live
latencies are printed and kept in <tmp>/browser_playback.jsonl; nothing here
asserts how long anything took.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import Producer

from conftest import ROOT, TopicReader, commit_group_to_end, unique, wait_until
from test_ingest import create_stream, finish, publish, stop
from test_packager import DONE, playlist, segments, start_pipeline

E2E = ROOT / "tests" / "e2e"
PLAY = E2E / "play.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MODULES = ("playwright-core", "hls.js", "dashjs", "shaka-player")
SOURCE_S = 6    # the generated source clip
MAX_LOOPS = 29  # the publisher stops by itself after 180 s at the latest
# live, each player alone: past a switch and loop points, then the latency
LIVE_PLAY_S = 12
GAP_PLAY_S = 20  # the three at once across the failed segment's gap
GAP_JOBS = (14, 18)  # jobs of the stream replayed with a failed one: at least, at most
# the one that fails: several segments after the players start, even on a
# starved host. (A dash.js 5.2 player whose start position, the live edge
# minus the presentation delay, falls in the hole never starts: it looks for
# a segment containing that time and waits for one. docs/packager.md.)
GAP_FAILED = 9
# VOD plays fast to keep the test short, but at 2x, a speed viewers use: at 4x
# dash.js in Chromium stopped 0.5 s before the end in a few runs (all data
# buffered, endOfStream called), never at the same files played again
VOD_RATE = "2"
END_STALL_S = 1.0  # see played_to_the_end()


def _modules_present():
    return all((E2E / "node_modules" / m / "package.json").exists() for m in MODULES)


@pytest.fixture(scope="session")
def e2e_modules():
    """tests/e2e/node_modules, installed from the lock file when absent."""
    node = shutil.which("node")
    if not _modules_present():
        npm = shutil.which("npm")
        if not npm or not node:
            pytest.skip("tests/e2e/node_modules is missing and node/npm are not installed "
                        "to run `npm ci --prefix tests/e2e`")
        try:
            r = subprocess.run([npm, "ci", "--prefix", str(E2E), "--no-audit", "--no-fund"],
                               capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            pytest.skip("tests/e2e/node_modules is missing and `npm ci --prefix tests/e2e` "
                        "did not finish in 15 minutes")
        if r.returncode != 0 or not _modules_present():
            errors = [ln for ln in r.stderr.splitlines() if "ERR" in ln or "error" in ln.lower()]
            pytest.skip("tests/e2e/node_modules is missing and `npm ci --prefix tests/e2e` "
                        f"failed ({r.returncode}): " + "\n".join(errors[:8] or [r.stderr[:800]]))
    if not node:
        pytest.skip("node is not installed: tests/e2e/play.mjs cannot run")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (set CHROMIUM to a Chromium binary)")
    return node


@pytest.fixture(scope="session")
def source_360p(tmp_path_factory):
    """6 s of 640x360 H.264 High (B-frames, a keyframe every 2 s) and AAC in
    FLV: h264_aac_6s.flv's recipe at a size that keeps both preview rungs."""
    out = tmp_path_factory.mktemp("media") / "h264_aac_640x360_6s.flv"
    r = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(SOURCE_S),
         "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-g", "60",
         "-keyint_min", "60", "-sc_threshold", "0", "-bf", "2", "-b:v", "800k",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-f", "flv", str(out)],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


class Players:
    """play.mjs runs, each in its own process group (Chromium and all), its
    stderr (the page's console and requests) kept in a log file."""

    def __init__(self, node, tmp_path):
        self.node = node
        self.dir = tmp_path
        self.results = tmp_path / "browser_playback.jsonl"  # one JSON object per run
        self.n = 0
        self.procs = []

    def start(self, player, url, *args, timeout=90):
        self.n += 1
        log = self.dir / f"play-{self.n}-{player}.log"
        cmd = [self.node, str(PLAY), "--player", player, "--url", url, "--timeout", str(timeout),
               "--verbose", *args]
        f = open(log, "w")
        proc = subprocess.Popen(cmd, cwd=E2E, stdout=subprocess.PIPE, stderr=f, text=True,
                                start_new_session=True)
        f.close()
        self.procs.append(proc)
        return {"proc": proc, "log": log, "player": player, "args": args,
                "timeout": timeout}

    def result(self, run, mode):
        proc = run["proc"]
        try:
            out, _ = proc.communicate(timeout=run["timeout"] + 90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        tail = run["log"].read_text(errors="replace")[-3000:]
        assert lines, f"{run['player']}: no result (exit {proc.returncode}); log:\n{tail}"
        res = json.loads(lines[-1])
        res["exit_code"] = proc.returncode
        res["log_tail"] = tail
        keep = {k: res.get(k) for k in ("player", "ok", "startup_ms", "latency_s",
                                        "player_latency_s", "played_s",
                                        "switched", "seek_ok", "ended", "levels", "errors",
                                        "warnings", "why", "stalled_at", "exit_code",
                                        "end_of_stream", "source_buffers", "waiting_at",
                                        "duration_s", "video", "media_source")}
        keep["mode"] = mode
        print(f"\n[browser] {mode} {res.get('player')}: ok={res.get('ok')} "
              f"startup_ms={res.get('startup_ms')} latency_s={res.get('latency_s')} "
              f"(player's own {res.get('player_latency_s')}) "
              f"played_s={res.get('played_s')} waiting={len(res.get('waiting_at') or [])} "
              f"switched={res.get('switched')} "
              f"seek_ok={res.get('seek_ok')} ended={res.get('ended')} "
              f"levels={res.get('levels')} why={res.get('why')}", flush=True)
        with open(self.results, "a") as f:
            f.write(json.dumps(keep) + "\n")
        return res


    def stop_all(self):
        """Kill what is still running (a check that failed before reading
        every result), Chromium included: each run is its own process group."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()


def explain(res):
    """The result on one line (CI shows only part of the output: the tracks'
    buffered ranges first), then the end of play.mjs's log."""
    first = ("why", "video", "source_buffers", "end_of_stream", "duration_s")
    brief = {k: res.get(k) for k in first}
    brief.update({k: v for k, v in res.items() if k not in first and k != "log_tail"})
    tail = "\n".join(res["log_tail"].splitlines()[-15:])
    return json.dumps(brief) + "\n--- play.mjs log tail ---\n" + tail


def played_to_the_end(res, label):
    """The VOD ended; or playback stopped within END_STALL_S of the end with
    the whole presentation delivered: every track buffered to its end and the
    MediaSource ended by the player. dash.js in Chromium stopped so, 0.5 s
    before the end, in a few CI runs on a busy host, and never when the same
    files were played again (about 50 runs, three players at once or one, with and without
    CPU hogs). A presentation longer than its media still fails: its buffers
    end short of the duration."""
    if res["ended"]:
        return True
    dur, at = res.get("duration_s"), res.get("stalled_at")
    bufs = [b["buffered"] for b in res.get("source_buffers") or []]
    held = (dur is not None and at is not None and res.get("end_of_stream") is True
            and at >= dur - END_STALL_S and bufs
            and all(b and b[-1][1] >= dur - 0.1 for b in bufs))
    if held:
        print(f"[browser] {label} {res['player']}: stopped {dur - at:.3f}s before the end with "
              f"everything buffered and the stream ended (tolerated); "
              f"media source {res.get('media_source')}, video {res.get('video')}", flush=True)
    return held


class GapReplay(threading.Thread):
    """The worker's real results for a played stream, sent again at the pace
    of a live stream as another stream (its files copied), but for one job
    that failed: the packager lists a gap there (EXT-X-GAP, a new DASH
    Period) that live players must play across. The last job ends the
    stream, so the VOD asset has the gap too."""

    def __init__(self, stack, storage, source, jobs):
        super().__init__(daemon=True)
        self.stream = unique("gap")
        self.producer = Producer({"bootstrap.servers": stack.brokers, "acks": "all"})
        self.records = []
        for seq in range(jobs):
            text = (storage / f"live/{source}/done/{seq:08d}.json").read_text()
            self.records.append(json.loads(text.replace(f"live/{source}/",
                                                        f"live/{self.stream}/")))
        for d in (storage / "live" / source).iterdir():
            if d.is_dir() and d.name not in ("done", "packager", "src"):
                shutil.copytree(d, storage / "live" / self.stream / d.name)
        self.sent = 0
        self.error = None

    def run(self):
        try:
            for i, rec in enumerate(self.records):
                dur_ms = rec["duration_90k"] // 90
                now = int(time.time() * 1000)
                rec.update(stream_id=self.stream, job_id=f"{self.stream}:{rec['seq']}",
                           finished_at_ms=now, ingest_wallclock_ms=now - dur_ms - 300,
                           end_of_stream=i == len(self.records) - 1)
                if i == GAP_FAILED:
                    rec.update(status="failed", error="corrupt source segment", renditions=[])
                self.producer.produce(DONE, key=self.stream.encode(),
                                      value=json.dumps(rec).encode())
                assert self.producer.flush(30) == 0
                self.sent += 1
                time.sleep(dur_ms / 1000)
        except Exception as e:  # reported by the test
            self.error = e


def test_live_and_vod_play_in_hls_js_dash_js_and_shaka(start_daemon, stack, tmp_path,
                                                        e2e_modules, source_360p):
    commit_group_to_end(stack, "packager", [DONE])
    ingest, _, p = start_pipeline(start_daemon, tmp_path / "media")
    players = Players(e2e_modules, tmp_path)
    events = TopicReader(stack, "media.package.events")
    pub = None
    try:
        s = create_stream(ingest)
        sid = s["id"]
        pub = publish(s["publish"]["rtmp"], loops=MAX_LOOPS, media=source_360p)

        # live: both rungs in the master, and a few segments of each
        master = wait_until(lambda: (lambda m: m if m.count("#EXT-X-STREAM-INF:") >= 2 else None)(
            playlist(p, f"/live/{sid}/master.m3u8")), 120, what="a live master with two rungs")
        for rung in ("360p", "240p"):
            assert f"{rung}.m3u8" in master, master
            wait_until(lambda: len(segments(playlist(p, f"/live/{sid}/{rung}.m3u8"))) >= 3, 120,
                       what=f"3 live segments of {rung}")

        # one player after the other, each alone with the pipeline as it is on a
        # viewer's device (three browsers at once on this host's two cores add
        # their startups and the transcoder's slowdown to every latency): startup,
        # a rendition switch, LIVE_PLAY_S played, the live latency, then a seek
        # back into the DVR window
        live = [players.result(players.start(player, p.url(f"/live/{sid}/{manifest}"),
                                             "--seconds", str(LIVE_PLAY_S), "--seek-dvr"),
                               "live")
                for player, manifest in (("hls.js", "master.m3u8"), ("dash.js", "manifest.mpd"),
                                         ("shaka", "manifest.mpd"))]
        still_live = pub.poll() is None
        # what the players were given, kept for diagnosis
        for name in ("master.m3u8", "360p.m3u8", "audio.m3u8", "manifest.mpd"):
            (tmp_path / f"live-{name}").write_text(playlist(p, f"/live/{sid}/{name}"))

        # end the publish the way OBS does (ffmpeg unpublishes on SIGINT)
        pub.send_signal(signal.SIGINT)
        finish(pub)
        vod = events.wait(sid, lambda m: any(e["type"] == "vod_ready" for e in m), 240,
                          "vod_ready")[-1]
        # the asset from its start to its end, fast
        vods = [players.start(player, p.url(vod[path]), "--vod", "--rate", VOD_RATE, timeout=120)
                for player, path in (("hls.js", "hls_path"), ("dash.js", "dash_path"),
                                     ("shaka", "dash_path"))]
        vods = [players.result(run, "vod") for run in vods]

        # a failed segment: live players play across its gap, and so does the VOD
        done = sorted((tmp_path / "media" / "live" / sid / "done").glob("*.json"))
        assert len(done) >= GAP_JOBS[0], f"only {len(done)} jobs were transcoded"
        gap = GapReplay(stack, tmp_path / "media", sid, min(len(done), GAP_JOBS[1]))
        gap.start()
        gid = gap.stream
        wait_until(lambda: len(segments(playlist(p, f"/live/{gid}/360p.m3u8"))) >= 3, 60,
                   what="3 segments of the replayed stream")
        gap_live = [players.start(player, p.url(f"/live/{gid}/{manifest}"), "--seconds",
                                  str(GAP_PLAY_S), "--no-switch")
                    for player, manifest in (("hls.js", "master.m3u8"),
                                             ("dash.js", "manifest.mpd"),
                                             ("shaka", "manifest.mpd"))]
        gap_live = [players.result(run, "live with a gap") for run in gap_live]
        gap.join(GAP_JOBS[1] * 3 + 30)
        assert gap.error is None and gap.sent == len(gap.records), (gap.error, gap.sent)
        for name in ("360p.m3u8", "manifest.mpd"):
            (tmp_path / f"gap-{name}").write_text(playlist(p, f"/live/{gid}/{name}"))
        gap_media = playlist(p, f"/live/{gid}/360p.m3u8")
        assert sum(1 for _, _, g in segments(gap_media) if g) >= 1, gap_media
        gap_vod = events.wait(gid, lambda m: any(e["type"] == "vod_ready" for e in m), 120,
                              "vod_ready of the replayed stream")[-1]
        gap_vods = [players.start(player, p.url(gap_vod[path]), "--vod", "--rate", VOD_RATE,
                                  timeout=120)
                    for player, path in (("hls.js", "hls_path"), ("dash.js", "dash_path"),
                                         ("shaka", "dash_path"))]
        gap_vods = [players.result(run, "vod with a gap") for run in gap_vods]
    finally:
        players.stop_all()
        events.close()
        if pub is not None:
            stop(pub)

    assert still_live, "the publisher ended before the live checks were done"
    failures = []
    for res in live:
        checks = {"ok": res["ok"], "no fatal errors": not res["errors"],
                  f"played >= {LIVE_PLAY_S}s": (res["played_s"] or 0) >= LIVE_PLAY_S,
                  "two renditions": len(res["levels"] or []) >= 2,
                  "switched": res["switched"] is True,
                  "latency": res["latency_s"] is not None,
                  "DVR seek": res["seek_ok"] is True}
        bad = [k for k, v in checks.items() if not v]
        if bad:
            failures.append(f"live {res['player']}: {bad}\n{explain(res)}")
    for res in vods:
        ended = played_to_the_end(res, "vod")
        checks = {"ok": res["ok"] or ended, "no fatal errors": not res["errors"], "ended": ended,
                  "played the whole asset": (res["played_s"] or 0) >= vod["duration_ms"] / 1000 - 3}
        bad = [k for k, v in checks.items() if not v]
        if bad:
            failures.append(f"vod {res['player']}: {bad}\n{explain(res)}")
    for res in gap_live:
        checks = {"ok": res["ok"], "no fatal errors": not res["errors"],
                  f"played >= {GAP_PLAY_S}s across the gap":
                      (res["played_s"] or 0) >= GAP_PLAY_S}
        bad = [k for k, v in checks.items() if not v]
        if bad:
            failures.append(f"live with a gap {res['player']}: {bad}\n{explain(res)}")
    for res in gap_vods:
        ended = played_to_the_end(res, "vod with a gap")
        checks = {"ok": res["ok"] or ended, "no fatal errors": not res["errors"], "ended": ended,
                  "played across the gap to the end":
                      (res["played_s"] or 0) >= gap_vod["duration_ms"] / 1000 - 5}
        bad = [k for k, v in checks.items() if not v]
        if bad:
            failures.append(f"vod with a gap {res['player']}: {bad}\n{explain(res)}")
    print(f"[browser] results in {players.results}", flush=True)
    assert not failures, "\n\n".join(failures)
