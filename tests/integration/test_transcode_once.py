"""castbus-transcode-worker --once against sources with variety, checked with ffprobe.

Sources are made with ffmpeg per test session: B-frames, odd sizes, 10-bit,
interlaced, VFR, no audio, audio only, a start time of 25 hours, a real
clip for bitrates, and broken files. Every rendition must decode without
an error, have the size the ladder promises, start with a keyframe at the
source's own time, and keep the source's timeline.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT

WORKER = BIN / "castbus-transcode-worker"
BBB = ROOT / "tests" / "data" / "media" / "bbb_800x640_30fps_4s.mp4"


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


def probe(path, *entries, stream="v:0"):
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
                        ",".join(entries), "-of", "json", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def once(src, out, *args):
    r = subprocess.run([str(WORKER), "--once", "--input", str(src), "--out", str(out), *args],
                       capture_output=True, text=True, timeout=300)
    summary = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    return r.returncode, summary, r.stderr


def decodes_clean(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                        "stream=codec_type,nb_read_frames", "-of", "json", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stderr.strip(), f"{path}: {r.stderr}"
    return {s["codec_type"]: int(s["nb_read_frames"]) for s in json.loads(r.stdout)["streams"]}


def first_video_packet(path):
    pk = probe(path, "packet=pts_time,flags", stream="v:0")["packets"]
    return float(pk[0]["pts_time"]), pk[0]["flags"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    tone = ["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=44100"]
    s = {}
    s["bframes"] = d / "bframes.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", *tone, "-t", "4",
           "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "30", "-c:a", "aac",
           str(s["bframes"]))
    s["odd"] = d / "odd.mkv"  # odd sizes need a codec that allows them
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=641x361:rate=25", "-t", "3", "-c:v", "ffv1",
           str(s["odd"]))
    s["10bit"] = d / "10bit.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=480x270:rate=30", "-t", "3", "-c:v", "libx264",
           "-pix_fmt", "yuv420p10le", "-preset", "veryfast", str(s["10bit"]))
    s["interlaced"] = d / "interlaced.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25", *tone, "-t", "3",
           "-c:v", "libx264", "-flags", "+ilme+ildct", "-x264opts", "tff=1", "-c:a", "aac",
           str(s["interlaced"]))
    s["vfr"] = d / "vfr.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "4",
           "-vf", r"select='not(between(n\,20\,40))+not(mod(n\,2))'", "-vsync", "vfr",
           "-c:v", "libx264", "-preset", "veryfast", str(s["vfr"]))
    s["late"] = d / "late.ts"  # starts 25 hours in, 33-bit MPEG-TS clock nearly wrapping
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", *tone, "-t", "3",
           "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-output_ts_offset", "90000",
           str(s["late"]))
    s["audio_only"] = d / "audio_only.m4a"
    ffmpeg(*tone, "-t", "3", "-c:a", "aac", str(s["audio_only"]))
    s["corrupt"] = d / "corrupt.mp4"
    data = bytearray(s["bframes"].read_bytes())
    for i in range(len(data) // 3, len(data), 97):
        data[i] ^= 0x5A
    s["corrupt"].write_bytes(bytes(data))
    s["truncated"] = d / "truncated.ts"
    s["truncated"].write_bytes(s["interlaced"].read_bytes()[:1880])
    return s


@pytest.mark.parametrize("name, ladder, sizes", [
    ("bframes", "640x360@600k,320x180@200k", [(640, 360), (320, 180)]),
    ("odd", "640x360@600k,320x180@200k", [(640, 360), (320, 180)]),  # 641x361 rounds to even
    ("10bit", "480x270@500k,320x180@200k", [(480, 270), (320, 180)]),
    ("interlaced", "720x576@1500k,480x384@600k", [(720, 576), (480, 384)]),
    ("vfr", "320x240@300k", [(320, 240)]),
    ("late", "320x240@300k,160x120@100k", [(320, 240), (160, 120)]),
])
def test_renditions_decode_with_the_promised_sizes_and_times(sources, tmp_path, name, ladder,
                                                             sizes):
    src = sources[name]
    rc, summary, err = once(src, tmp_path, "--ladder", ladder, "--preset", "ultrafast")
    assert rc == 0, (summary, err)
    video = [r for r in summary["renditions"] if r["codecs"].startswith("avc1.")]
    src_info = probe(src, "stream=width,height,sample_aspect_ratio,start_time")["streams"][0]
    expect = []
    for w, h in sizes:
        # the display aspect ratio is kept: width follows from the height
        sar = src_info.get("sample_aspect_ratio", "1:1")
        n, dn = (int(x) for x in sar.split(":")) if sar not in ("0:1", "N/A") else (1, 1)
        dar = src_info["width"] * n / (src_info["height"] * dn)
        expect.append((int(h * dar / 2 + 0.5) * 2, h))
    assert [(r["width"], r["height"]) for r in video] == expect
    src_frames = decodes_clean(src).get("video")
    src_start, _ = first_video_packet(src)
    for r in video:
        f = Path(r["file"])
        frames = decodes_clean(f)["video"]
        info = probe(f, "stream=width,height")["streams"][0]
        assert (info["width"], info["height"]) == (r["width"], r["height"])
        assert frames == src_frames, (r, frames, src_frames)
        start, flags = first_video_packet(f)
        assert flags.startswith("K"), (r, flags)
        assert abs(start - src_start) < 0.05, (r, start, src_start)  # the source's own times
        assert r["segments"] >= 1
    audio = [r for r in summary["renditions"] if r["name"] == "audio"]
    has_audio = bool(probe(src, "stream=codec_type", stream="a")["streams"])
    assert bool(audio) == has_audio
    for r in audio:
        assert r["codecs"] == "mp4a.40.2"
        assert decodes_clean(r["file"])["audio"] > 0


def test_segments_start_with_idr_at_the_same_times_in_every_rung(sources, tmp_path):
    rc, summary, err = once(sources["bframes"], tmp_path, "--ladder", "640x360@600k,320x180@200k",
                            "--preset", "ultrafast", "--gop-s", "1")
    assert rc == 0, err
    keys = []
    for r in summary["renditions"][:2]:
        pk = probe(r["file"], "packet=pts_time,flags")["packets"]
        keys.append([round(float(p["pts_time"]), 3) for p in pk if p["flags"].startswith("K")])
        assert r["segments"] == 4
    assert keys[0] == keys[1]
    assert len(keys[0]) == 4 and keys[0][1] - keys[0][0] == pytest.approx(1.0, abs=0.04)


@pytest.mark.parametrize("profile, codec, tag, prefix", [
    ("hevc", "hevc", "hvc1", "hvc1.1.6.L"),
    ("av1", "av1", "av01", "av01.0."),
])
def test_hevc_and_av1_profiles(sources, tmp_path, profile, codec, tag, prefix):
    """libx265 and libaom rungs: their own sample entries with the codec
    string from the encoder's headers, keyframe cuts at the same times in
    every rung, a clean decode, and the AAC rendition beside them."""
    rc, summary, err = once(sources["bframes"], tmp_path, "--profile", profile, "--preset",
                            "ultrafast")
    assert rc == 0, err
    by = {r["name"]: r for r in summary["renditions"]}
    assert list(by) == ["360p", "240p", "audio"], list(by)
    keys = []
    for name, size in [("360p", (640, 360)), ("240p", (426, 240))]:
        r = by[name]
        assert r["codecs"].startswith(prefix), r["codecs"]
        assert (r["width"], r["height"]) == size
        info = probe(r["file"], "stream=codec_name,codec_tag_string,width,height")["streams"][0]
        assert (info["codec_name"], info["codec_tag_string"]) == (codec, tag), info
        assert (info["width"], info["height"]) == size
        assert decodes_clean(r["file"])["video"] == 120
        pk = probe(r["file"], "packet=pts_time,flags")["packets"]
        keys.append([round(float(p["pts_time"]), 3) for p in pk if p["flags"].startswith("K")])
    assert keys[0] == keys[1] and len(keys[0]) == 2, keys
    assert by["audio"]["codecs"] == "mp4a.40.2"


@pytest.mark.parametrize("hw, name", [("nvenc", "h264_nvenc"), ("vaapi", "h264_vaapi")])
def test_a_missing_hardware_encoder_falls_back_to_software(sources, tmp_path, hw, name):
    """No GPU on the test machines: the hardware encoder fails to open, the
    rungs are encoded by libx264, the run succeeds and says so once."""
    env = dict(os.environ, CASTBUS_HW_ENCODER=hw, CASTBUS_HW_DEVICE="/dev/dri/renderD128")
    r = subprocess.run([str(WORKER), "--once", "--input", str(sources["bframes"]), "--out",
                        str(tmp_path), "--ladder", "640x360@600k,320x180@200k", "--preset",
                        "ultrafast"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    video = [x for x in summary["renditions"] if x["name"] != "audio"]
    assert [x["encoder"] for x in video] == ["libx264", "libx264"]
    warnings = [ln for ln in r.stderr.splitlines() if f"{name} cannot be used" in ln]
    assert len(warnings) == 1, r.stderr  # the second rung does not try again
    for x in video:
        assert decodes_clean(x["file"])["video"] == 120


def test_bitrates_and_codecs_of_a_real_clip(tmp_path):
    # 12 s of a real clip: rate control needs more than a few seconds to settle
    src = tmp_path / "bbb12.mp4"
    ffmpeg("-stream_loop", "2", "-i", str(BBB), "-c", "copy", str(src))
    rc, summary, err = once(src, tmp_path / "out", "--ladder", "640x512@400k,320x256@150k")
    assert rc == 0, err
    by = {r["name"]: r for r in summary["renditions"]}
    # H.264 main below 720p (high from 720p up), levels as the encoder chose them
    assert by["512p"]["codecs"].startswith("avc1.4d")
    assert by["256p"]["codecs"].startswith("avc1.4d")
    for name, target in [("512p", 400_000), ("256p", 150_000)]:
        measured = by[name]["bandwidth_bps"]
        assert 0.8 * target <= measured <= 1.2 * target, (name, measured)
        real = int(probe(by[name]["file"], "format=bit_rate", stream="v:0")["format"]["bit_rate"])
        assert 0.7 * target <= real <= 1.3 * target, (name, real)


def test_audio_only_source(sources, tmp_path):
    rc, summary, err = once(sources["audio_only"], tmp_path, "--profile", "preview")
    assert rc == 0, err
    assert [r["name"] for r in summary["renditions"]] == ["audio"]
    assert decodes_clean(summary["renditions"][0]["file"])["audio"] > 100


@pytest.mark.parametrize("name", ["corrupt", "truncated"])
def test_broken_input_is_a_clear_error_not_a_crash(sources, tmp_path, name):
    rc, summary, err = once(sources[name], tmp_path, "--profile", "preview")
    if rc == 0:
        # damage a decoder can skip over is survivable: what came out must decode
        for r in summary["renditions"]:
            decodes_clean(r["file"])
        return
    assert rc == 2, (rc, err)
    assert summary["ok"] is False and summary["error"]
    assert '"level":"error"' in err
    assert not list(tmp_path.glob("*.mp4"))  # nothing half-written left behind


def test_bad_usage_names_the_option(tmp_path):
    for args, words in [(["--ladder", "1280x@3k"], "rung 1"),
                        (["--profile", "nope"], "--profile"),
                        (["--gop-s", "0"], "--gop-s")]:
        r = subprocess.run([str(WORKER), "--once", "--input", str(BBB), "--out", str(tmp_path),
                            *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert words in r.stderr, (args, r.stderr)
    r = subprocess.run([str(WORKER), "--help"], capture_output=True, text=True, timeout=30)
    assert "--once" in r.stdout and "--ladder" in r.stdout
