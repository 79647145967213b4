"""`make run`'s script, tools/run, as a user at a terminal meets it: it brings
the suite up, prints where everything is, and Ctrl-C stops it cleanly."""

import os
import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import requests

from conftest import DAEMONS, ROOT, free_port, free_udp_port, wait_until


def test_run_starts_everything_and_ctrl_c_stops_it(stack, tmp_path):
    env = stack.devstack_env()
    env.update(stack.env)
    env.pop("CASTBUS_API_KEYS", None)  # let tools/run generate the admin key
    env["CASTBUS_BUILD"] = str(os.environ.get("CASTBUS_BUILD", "build"))
    ports = {}
    for name in DAEMONS:
        ports[name] = free_port()
        env[f"CASTBUS_{name.upper().replace('-', '_')}_HTTP_PORT"] = str(ports[name])
    env["CASTBUS_RTMP_PORT"] = str(free_port())
    env["CASTBUS_SRT_PORT"] = str(free_udp_port())
    env["CASTBUS_RTMPS_PORT"] = "0"
    env["CASTBUS_ORIGIN_PORT"] = str(free_port())
    edge_port = free_port()
    env["CASTBUS_RUN_EDGE_PORT"] = str(edge_port)
    out_path = tmp_path / "run.out"
    out = open(out_path, "w")
    # a terminal puts the job in its own process group and Ctrl-C signals that
    # group. SIGINT as a terminal has it: when pytest itself was started in the
    # background by a non-interactive shell it inherited SIGINT ignored, and a
    # shell cannot trap a signal ignored on entry (a local CI run failed so).
    proc = subprocess.Popen([str(ROOT / "tools" / "run")], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def text():
        return out_path.read_text()

    try:
        wait_until(lambda: "Press Ctrl-C" in text() or proc.poll() is not None, 180,
                   what="tools/run to report the suite up")
        assert proc.poll() is None, text()
        banner = text()
        assert "dev stack already running" in banner
        key = re.search(r"Admin key:\s+(\S+)", banner).group(1)
        for name, port in ports.items():
            assert f"http://127.0.0.1:{port}/readyz" in banner
            assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
            info = requests.get(f"http://127.0.0.1:{port}/v1/info", timeout=5,
                                headers={"Authorization": f"Bearer {key}"})
            assert info.json()["daemon"] == name
        # the printed publish command works: segments of the demo stream appear
        rtmp = re.search(r"RTMP URL:\s+(rtmp://\S+)", banner).group(1)
        assert rtmp.startswith(f"rtmp://127.0.0.1:{env['CASTBUS_RTMP_PORT']}/live/")
        segments = re.search(r"Segments:\s+(\S+)", banner).group(1)
        pub = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
                              "-i", str(ROOT / "tests/data/media/h264_aac_6s.flv"), "-c", "copy",
                              "-f", "flv", rtmp], capture_output=True, text=True, timeout=120)
        assert pub.returncode == 0, pub.stderr
        wait_until(lambda: len(list(Path(segments).glob("*.ts"))) >= 3, 60, what="segments")
        # and the printed playback URLs play: the whole pipeline ran
        hls = re.search(r"Playback:\s+HLS\s+(\S+)", banner).group(1)
        dash = re.search(r"^\s+DASH\s+(\S+)", banner, re.M).group(1)
        assert hls.startswith(f"http://127.0.0.1:{env['CASTBUS_ORIGIN_PORT']}/live/")
        wait_until(lambda: requests.get(hls, timeout=5).status_code == 200, 180,
                   what="the demo stream's HLS playlist")
        assert "#EXT-X-STREAM-INF:" in requests.get(hls, timeout=5).text
        wait_until(lambda: requests.get(dash, timeout=5).status_code == 200, 60,
                   what="the demo stream's DASH manifest")
        # the CDN edge in front of the origin, registered with purge-fanout:
        # the printed purge reaches it
        edge = f"http://127.0.0.1:{edge_port}"
        assert f'CDN edge:     {edge} (nginx, edge "make-run-edge"' in banner, banner
        through = requests.get(edge + urlparse(hls).path, timeout=5)
        assert through.status_code == 200 and through.headers["X-Cache"], through.headers
        auth = {"Authorization": f"Bearer {key}"}
        pf = f"http://127.0.0.1:{ports['purge-fanout']}"
        registered = requests.get(f"{pf}/v1/edges/make-run-edge", headers=auth, timeout=5).json()
        assert registered["kind"] == "nginx", registered
        # (the shared test stack's inventory holds other tests' edges: this group only)
        job = requests.post(f"{pf}/v1/purges", headers=auth, timeout=10,
                            json={"prefixes": ["/live/"], "group": registered["group"]}).json()
        assert job["edges"] == 1, job
        done = wait_until(lambda: (lambda j: j if j["status"] != "pending" else None)(
            requests.get(f"{pf}/v1/purges/{job['id']}", headers=auth, timeout=5).json()), 30,
            what="the purge job")
        assert done["status"] == "done", done
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, text()
    finally:
        if proc.poll() is None:
            # as Ctrl-C: tools/run stops what it started (the daemons and the
            # edge are in sessions of their own, out of reach of a killpg)
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.close()
    final = text()
    assert "run: stopped" in final
    assert "left up" in final  # it did not start the stack, so it does not stop it
    for port in ports.values():
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert False, f"a daemon still answers on port {port}"
        except requests.ConnectionError:
            pass
    try:
        requests.get(f"http://127.0.0.1:{edge_port}/time", timeout=2)
        assert False, "the CDN edge still answers"
    except requests.ConnectionError:
        pass
    logs = {p.stem: p.read_text() for p in (stack.dir / "run" / "logs").glob("*.log")}
    assert set(logs) == set(DAEMONS) | {"edge-nginx"}
    del logs["edge-nginx"]
    for name, log in logs.items():
        assert "drained in" in log, f"{name} did not drain:\n{log[-2000:]}"
        assert "second signal" not in log
    assert stack.run("status").returncode == 0
