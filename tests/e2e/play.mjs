#!/usr/bin/env node
// Plays one HLS or DASH URL in headless Chromium with a real web player and
// prints ONE JSON line describing what happened:
//
//   node play.mjs --player hls.js|dash.js|shaka --url <manifest url>
//                 [--seconds 10] [--seek-dvr] [--vod] [--rate 1]
//                 [--no-switch] [--timeout 120] [--stall 20] [--chromium /usr/bin/chromium]
//                 [--local-clock] [--verbose]
//
// --local-clock: dash.js takes the browser's clock as the server's instead of
// synchronising with the MPD's UTCTiming (or, without one, a public time
// server): for servers on this machine whose MPD has no UTCTiming.
//
// {player, ok, why:[reasons ok is false], startup_ms, played_s, errors:[fatal],
//  warnings:[non-fatal], levels:[renditions], switched, switch:{from,to,loaded,rendered},
//  latency_s, player_latency_s, seek_ok, seek:{range,from,to,landed,...}, ended, duration_s, live,
//  waiting_at:[playhead at each 'waiting'], stalled_at, segments:{rendition: requests},
//  video:{width,height,current_time,buffered,ready_state,seeking,paused,playback_rate,
//         frames_decoded,frames_dropped}, source_buffers:[{type,buffered}],
//  end_of_stream, media_source:{ready_state,events}, user_agent, wall_s}
//
// startup_ms: from the player's load call to the video element's first
// 'playing'. played_s: how far currentTime advanced while playing (seek jumps
// not counted). switched: the player was told to play another video rendition
// from its next segment on (as its ABR does: no buffer flush, so no stall that
// would add to the latency measured) and a segment of it was both loaded and
// rendered (player event, or the decoded picture size became the new rendition's). latency_s (live only):
// wall clock minus the wall-clock time of the frame at the playhead, median of
// samples: HLS, hls.js playingDate (EXT-X-PROGRAM-DATE-TIME); DASH, the MPD's
// availabilityStartTime plus the playhead's presentation time (what both DASH
// players' timelines are relative to), the same for any server.
// player_latency_s: the player's own figure (hls.js playingDate, dash.js
// getCurrentLiveLatency(), Shaka getPlayheadTimeAsDate(), which is relative to
// Shaka's drift-corrected start time), median of samples.
// stalled_at: where the playhead stood when it stopped moving for --stall
// seconds (the run gives up then instead of waiting for --timeout).
// source_buffers and end_of_stream (whether the player called
// MediaSource.endOfStream) say which track ran out when playback stalls.
// Exit code 0 only when ok.
//
// The players come from node_modules (npm ci in this directory); the browser
// is the system Chromium driven by playwright-core (no browser download).
// Everything is bounded by --timeout; nothing here asserts a duration.

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);

const PLAYERS = {
  'hls.js': 'hls.js/dist/hls.js',
  'dash.js': 'dashjs/dist/modern/umd/dash.all.min.js',
  shaka: 'shaka-player/dist/shaka-player.compiled.js',
};

const { values: opt } = parseArgs({
  options: {
    player: { type: 'string' },
    url: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    'seek-dvr': { type: 'boolean', default: false },
    vod: { type: 'boolean', default: false },
    rate: { type: 'string', default: '1' },
    'no-switch': { type: 'boolean', default: false },
    'local-clock': { type: 'boolean', default: false },
    timeout: { type: 'string', default: '120' },
    stall: { type: 'string', default: '20' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    verbose: { type: 'boolean', default: false },
  },
});

let printed = false;
function out(result, code) {
  if (printed) return;  // ONE line, whatever happens
  printed = true;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = code;
}

function log(...a) {
  if (opt.verbose) process.stderr.write(`[play ${new Date().toISOString()}] ${a.join(' ')}\n`);
}

if (!PLAYERS[opt.player] || !opt.url) {
  process.stderr.write('usage: node play.mjs --player hls.js|dash.js|shaka --url <manifest url> ' +
                       '[--seconds 10] [--seek-dvr] [--vod] [--rate 1] [--no-switch] [--timeout 120] ' +
                       '[--stall 20] [--chromium PATH] [--local-clock] [--verbose]\n');
  out({ player: opt.player ?? null, ok: false, why: ['bad arguments'] }, 2);
  process.exit();
}

const params = {
  player: opt.player,
  url: opt.url,
  seconds: Number(opt.seconds),
  seekDvr: opt['seek-dvr'],
  vod: opt.vod,
  rate: Number(opt.rate),
  forceSwitch: !opt['no-switch'],
  localClock: opt['local-clock'],
  timeoutMs: Number(opt.timeout) * 1000,
  stallMs: Number(opt.stall) * 1000,
};

// ---------------------------------------------------------------------------
// Runs inside the page. Returns the result object (without user_agent/segments).
async function drive(p) {
  const video = document.getElementById('v');
  const t0 = performance.now();
  const deadline = t0 + p.timeoutMs - 5000;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const r = {
    player: p.player, ok: false, why: [], startup_ms: null, played_s: 0, errors: [],
    warnings: [], levels: [], switched: false, switch: null, latency_s: null,
    player_latency_s: null, seek_ok: null,
    seek: null, ended: false, duration_s: null, video: null, live: !p.vod, waiting_at: [],
    stalled_at: null,
  };
  const say = (...a) => console.log('[drive]', ...a);
  const fatal = (e) => { r.errors.push(String(e).slice(0, 500)); say('FATAL', e); };
  const warn = (e) => {
    say('warning', e);
    if (r.warnings.length < 30) r.warnings.push(String(e).slice(0, 300));
  };

  // ---- playback bookkeeping shared by all players
  let loadAt = null;
  let playingAt = null;
  let seeking = false;
  let lastT = null;
  let progressAt = null;  // when currentTime last moved forward (or a seek began)
  video.addEventListener('playing', () => {
    if (playingAt === null && loadAt !== null) {
      playingAt = performance.now();
      progressAt = playingAt;
      r.startup_ms = Math.round(playingAt - loadAt);
      say('playing after', r.startup_ms, 'ms at', video.currentTime);
    }
  });
  video.addEventListener('ended', () => { r.ended = true; say('ended at', video.currentTime); });
  video.addEventListener('seeking', () => { seeking = true; progressAt = performance.now(); });
  video.addEventListener('seeked', () => { seeking = false; lastT = video.currentTime; });
  video.addEventListener('error', () => {
    const e = video.error;
    fatal(`video element error ${e && e.code}: ${e && e.message}`);
  });
  const waits = [];
  video.addEventListener('waiting', () => {
    say('waiting at', video.currentTime);
    if (playingAt !== null && waits.length < 20) waits.push(Math.round(video.currentTime * 1000) / 1000);
  });
  const tick = setInterval(() => {
    const t = video.currentTime;
    if (seeking || video.seeking) { lastT = null; return; }
    if (lastT !== null && t > lastT && t - lastT < 2.5 * p.rate + 1) r.played_s += t - lastT;
    if (lastT !== null && t > lastT) progressAt = performance.now();
    lastT = t;
  }, 100);

  // ---- the player adapters: load(), levels(), current(), force(other), playhead date,
  //      seek range, seek(t)
  let A;
  const sw = { from: null, to: null, target: null, loaded: false, rendered: false, height: null };

  if (p.player === 'hls.js') {
    const Hls = window.Hls;
    if (!Hls.isSupported()) throw new Error('hls.js: MSE not supported');
    const hls = new Hls({ debug: false, enableWorker: true });
    window.__player = hls;
    const name = (l) => (l.url && l.url[0] ? String(l.url[0]).split('/').pop().replace(/\.m3u8.*$/, '')
      : `${l.height}p`);
    hls.on(Hls.Events.ERROR, (_, d) => {
      const s = `${d.type}/${d.details}${d.response ? ' http ' + d.response.code : ''}` +
        `${d.frag ? ' frag ' + d.frag.url : ''}${d.reason ? ' ' + d.reason : ''}` +
        `${d.error ? ' ' + d.error.message : ''}`;
      if (d.fatal) fatal('hls.js ' + s); else warn('hls.js ' + s);
    });
    hls.on(Hls.Events.FRAG_LOADED, (_, d) => {
      if (sw.target !== null && d.frag.type === 'main' && d.frag.level === sw.target) sw.loaded = true;
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
      say('LEVEL_SWITCHED', d.level);
      if (sw.target !== null && d.level === sw.target && sw.loaded) sw.rendered = true;
    });
    hls.on(Hls.Events.FRAG_CHANGED, (_, d) => {
      if (sw.target !== null && d.frag.level === sw.target) sw.rendered = true;
    });
    const parsed = new Promise((res) => hls.once(Hls.Events.MANIFEST_PARSED, res));
    A = {
      async load() {
        hls.attachMedia(video);
        loadAt = performance.now();
        hls.loadSource(p.url);
        await parsed;
        video.play().catch((e) => warn('play(): ' + e));
      },
      levels: () => hls.levels.map((l) => ({ name: name(l), height: l.height, bitrate: l.bitrate })),
      current: () => (hls.currentLevel >= 0 ? hls.currentLevel : hls.loadLevel),
      force(i) { hls.nextLevel = i; },
      date: () => hls.playingDate,
      range() {
        const s = video.seekable;
        return s.length ? { start: s.start(0), end: s.end(s.length - 1) } : null;
      },
      seek(t) { video.currentTime = t; },
    };
  } else if (p.player === 'dash.js') {
    const dashjs = window.dashjs;
    const player = dashjs.MediaPlayer().create();
    window.__player = player;
    const E = dashjs.MediaPlayer.events;
    player.updateSettings({
      debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
      streaming: {
        abr: { autoSwitchBitrate: { video: !p.forceSwitch, audio: true } },
        ...(p.localClock ? { utcSynchronization: { enabled: false } } : {}),
      },
    });
    player.on(E.ERROR, (e) => {
      const err = e.error || {};
      fatal(`dash.js error ${err.code ?? ''} ${err.message ?? JSON.stringify(e).slice(0, 300)}`);
    });
    player.on(E.PLAYBACK_ERROR, (e) => fatal('dash.js playback error ' + (e.error && e.error.message)));
    player.on(E.FRAGMENT_LOADING_COMPLETED, (e) => {
      const rq = e.request || {};
      if (sw.target !== null && rq.mediaType === 'video' && rq.type === 'MediaSegment' &&
          rq.representation && rq.representation.id === sw.target) sw.loaded = true;
    });
    player.on(E.QUALITY_CHANGE_RENDERED, (e) => {
      say('QUALITY_CHANGE_RENDERED', e.mediaType, e.newRepresentation && e.newRepresentation.id);
      if (sw.target !== null && e.mediaType === 'video' && e.newRepresentation &&
          e.newRepresentation.id === sw.target) sw.rendered = true;
    });
    const reps = () => player.getRepresentationsByType('video') || [];
    const initialized = new Promise((res) => player.on(E.STREAM_INITIALIZED, res));
    A = {
      async load() {
        loadAt = performance.now();
        player.initialize(video, p.url, true);
        await initialized;
        video.play().catch((e) => warn('play(): ' + e));
      },
      levels: () => reps().map((x) => ({ name: x.id, height: x.height, bitrate: x.bandwidth })),
      current() {
        const c = player.getCurrentRepresentationForType('video');
        return c ? reps().findIndex((x) => x.id === c.id) : -1;
      },
      force(i) {
        if (player.setRepresentationForTypeByIndex) player.setRepresentationForTypeByIndex('video', i, false);
        else player.setQualityFor('video', i, false);  // dash.js 4
      },
      id: (i) => reps()[i].id,
      latency: () => player.getCurrentLiveLatency(),
      range() {
        const w = player.getDvrWindow();
        return w && Number.isFinite(w.start) ? { start: w.start, end: w.end } : null;
      },
      seek(t) { player.seekToPresentationTime(t); },
    };
  } else {
    const shaka = window.shaka;
    shaka.polyfill.installAll();
    if (!shaka.Player.isBrowserSupported()) throw new Error('shaka: browser not supported');
    const player = new shaka.Player();
    window.__player = player;
    player.configure({ abr: { enabled: !p.forceSwitch } });
    player.addEventListener('error', (ev) => {
      const e = ev.detail || {};
      const s = `shaka error ${e.code} category ${e.category} data ${JSON.stringify(e.data || []).slice(0, 300)}`;
      if (e.severity === shaka.util.Error.Severity.CRITICAL) fatal(s); else warn(s);
    });
    player.addEventListener('variantchanged', () => say('variantchanged'));
    const tracks = () => player.getVariantTracks().filter((t) => t.videoId !== null)
      .sort((a, b) => (a.height - b.height) || (a.bandwidth - b.bandwidth));
    // one entry per video rendition (variants multiply with audio)
    const videos = () => {
      const seen = new Map();
      for (const t of tracks()) if (!seen.has(t.videoId)) seen.set(t.videoId, t);
      return [...seen.values()];
    };
    player.getNetworkingEngine().registerResponseFilter((type, resp) => {
      if (sw.target === null || type !== shaka.net.NetworkingEngine.RequestType.SEGMENT) return;
      if (resp.uri.includes(`/${sw.target}/`) && !/init/.test(resp.uri)) sw.loaded = true;
    });
    A = {
      async load() {
        await player.attach(video);
        loadAt = performance.now();
        await player.load(p.url);
        video.play().catch((e) => warn('play(): ' + e));
      },
      levels: () => videos().map((t) => ({ name: t.originalVideoId || `${t.height}p`, height: t.height,
                                           bitrate: t.videoBandwidth || t.bandwidth })),
      current() {
        const a = player.getVariantTracks().find((t) => t.active);
        return a ? videos().findIndex((t) => t.videoId === a.videoId) : -1;
      },
      force(i) { player.selectVariantTrack(videos()[i], false); },
      id: (i) => videos()[i].originalVideoId || `${videos()[i].height}p`,
      date: () => player.getPlayheadTimeAsDate(),
      range() { const s = player.seekRange(); return { start: s.start, end: s.end }; },
      seek(t) { video.currentTime = t; },
    };
  }

  const waitFor = async (pred, ms, what) => {
    const until = Math.min(deadline, performance.now() + ms);
    while (performance.now() < until) {
      if (r.errors.length || r.stalled_at !== null) return false;
      try { if (pred()) return true; } catch (e) { /* not ready yet */ }
      if (progressAt !== null && !r.ended && performance.now() - progressAt > p.stallMs) {
        r.stalled_at = Math.round(video.currentTime * 1000) / 1000;
        say('stalled at', video.currentTime, 'while waiting for', what);
        return false;
      }
      await sleep(100);
    }
    say('gave up waiting for', what);
    return false;
  };

  try {
    // a player whose manifest fails never resolves its load step: stop at the error
    await Promise.race([A.load(), (async () => {
      while (!r.errors.length && performance.now() < deadline) await sleep(100);
    })()]);
  } catch (e) {
    fatal(`${p.player} load: ${e && (e.message || e.code || JSON.stringify(e))}`);
  }
  if (!await waitFor(() => playingAt !== null, deadline - performance.now(), 'first playing')) {
    r.why.push('never played');
  }
  if (p.vod && p.rate !== 1) video.playbackRate = p.rate;

  const levels = () => { try { return A.levels(); } catch (e) { return []; } };
  // a live MPD's availabilityStartTime: presentation time 0 on the wall clock
  let astS = null;
  if (!p.vod && p.player !== 'hls.js') {
    try {
      const m = /availabilityStartTime="([^"]+)"/.exec(await (await fetch(p.url)).text());
      const t = m ? Date.parse(m[1]) : NaN;
      if (Number.isFinite(t)) astS = t / 1000;
    } catch (e) { warn('MPD for availabilityStartTime: ' + e); }
  }
  const LATENCY_SAMPLES = 25;  // the median is of the last this many samples (one per 100 ms or 200 ms)
  const samples = { wall: [], player: [] };
  const playerLatency = () => {
    if (A.latency) { const v = A.latency(); return Number.isFinite(v) && v !== 0 ? v : null; }
    const d = A.date();
    return d && Number.isFinite(d.getTime()) ? (Date.now() - d.getTime()) / 1000 : null;
  };
  const sampleLatency = () => {
    if (p.vod) return;
    const own = playerLatency();
    if (own !== null) samples.player.push(own);
    const wall = p.player === 'hls.js' ? own
      : astS !== null ? Date.now() / 1000 - (astS + video.currentTime) : null;
    if (wall !== null) samples.wall.push(wall);
    for (const k of ['wall', 'player']) if (samples[k].length > LATENCY_SAMPLES) samples[k].shift();
  };
  const median = (a) => {
    if (!a.length) return null;
    const s = [...a].sort((x, y) => x - y);
    return Math.round(s[Math.floor(s.length / 2)] * 1000) / 1000;
  };

  if (playingAt !== null && !r.errors.length) {
    r.levels = levels();
    // forced rendition switch, once a few seconds have played
    const wantSwitch = p.forceSwitch && !p.vod && r.levels.length > 1;
    if (wantSwitch) {
      await waitFor(() => r.played_s >= Math.min(3, p.seconds / 3), 30000, 'played before switch');
      const cur = A.current();
      const to = cur === 0 ? 1 : 0;  // another rendition (lowest, or the next one up)
      const lv = levels();
      sw.from = lv[cur] ? lv[cur].name : cur;
      sw.to = lv[to].name;
      sw.height = lv[to].height;
      sw.target = p.player === 'hls.js' ? to : A.id(to);
      say('forcing', sw.from, '->', sw.to);
      A.force(to);
      await waitFor(() => sw.loaded && (sw.rendered || video.videoHeight === sw.height), 45000,
                    'switched rendition loaded and rendered');
      if (!sw.rendered && sw.loaded && video.videoHeight === sw.height) sw.rendered = true;
      r.switched = sw.loaded && sw.rendered;
      r.switch = { from: sw.from, to: sw.to, loaded: sw.loaded, rendered: sw.rendered,
                   video_height: video.videoHeight };
    }
    // play on until enough played (VOD: to the end)
    if (p.vod) {
      await waitFor(() => r.ended, deadline - performance.now(), 'the end');
    } else {
      await waitFor(() => {
        sampleLatency();
        return r.played_s >= p.seconds;
      }, deadline - performance.now(), `${p.seconds}s played`);
      for (let i = 0; i < 5; i++) {
        sampleLatency();
        await sleep(200);
      }
      r.latency_s = median(samples.wall);
      r.player_latency_s = median(samples.player);
    }
    if (p.seekDvr && !p.vod && !r.errors.length) {
      const range = A.range();
      const from = video.currentTime;
      const seek = { range, from };
      r.seek = seek;
      r.seek_ok = false;
      if (r.stalled_at !== null) {
        seek.error = 'not tried: playback had stalled';
      } else if (!range) {
        seek.error = 'no seekable range';
      } else {
        const target = Math.max(range.start + 1.5, from - 12);
        seek.to = target;
        if (target > from - 4) {
          seek.error = 'DVR window too small to seek back';
        } else {
          const before = r.played_s;
          A.seek(target);
          const ok = await waitFor(() => !video.seeking && video.currentTime < from - 2 &&
                                   r.played_s - before >= 2, 30000, 'playback after the DVR seek');
          seek.landed = video.currentTime;
          seek.played_after_s = r.played_s - before;
          r.seek_ok = ok && !video.paused;
        }
      }
    }
    r.levels = levels();
  }
  clearInterval(tick);
  r.played_s = Math.round(r.played_s * 1000) / 1000;
  r.duration_s = Number.isFinite(video.duration) ? video.duration : null;
  r.waiting_at = waits;
  const buffered = [];
  for (let i = 0; i < video.buffered.length; i++) {
    buffered.push([Math.round(video.buffered.start(i) * 1000) / 1000, Math.round(video.buffered.end(i) * 1000) / 1000]);
  }
  const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
  r.video = {
    width: video.videoWidth, height: video.videoHeight, current_time: video.currentTime, buffered,
    // what the element itself says when it stopped: waiting for data (readyState
    // below 3), stuck seeking, paused, or a playback rate of 0 (a player's stall)
    ready_state: video.readyState, seeking: video.seeking, paused: video.paused,
    playback_rate: video.playbackRate, frames_decoded: quality.totalVideoFrames ?? null,
    frames_dropped: quality.droppedVideoFrames ?? null,
  };
  r.source_buffers = (window.__castbusSourceBuffers || []).map(({ type, sb }) => {
    const ranges = [];
    try {
      for (let i = 0; i < sb.buffered.length; i++) {
        ranges.push([Math.round(sb.buffered.start(i) * 1000) / 1000, Math.round(sb.buffered.end(i) * 1000) / 1000]);
      }
    } catch (e) { /* removed from its MediaSource */ }
    return { type, buffered: ranges };
  });
  r.end_of_stream = window.__castbusEndOfStream === true;
  const mse = window.__castbusMse;
  r.media_source = mse ? { ready_state: mse.sources.map((m) => m.readyState), events: mse.events } : null;
  r.levels = r.levels.map((l) => l.name);

  if (!r.errors.length && playingAt === null && !r.why.length) r.why.push('never played');
  if (r.errors.length) r.why.push('fatal errors');
  if (r.stalled_at !== null) r.why.push(`stalled at ${r.stalled_at}s for ${p.stallMs / 1000}s`);
  if (p.vod) {
    if (!r.ended) r.why.push('did not play to the end');
  } else if (r.played_s < p.seconds) {
    r.why.push(`played ${r.played_s}s < ${p.seconds}s`);
  }
  if (!p.vod && p.forceSwitch && r.levels.length > 1 && !r.switched) r.why.push('rendition switch not seen');
  if (p.seekDvr && !p.vod && !r.seek_ok) r.why.push('DVR seek failed');
  r.ok = r.why.length === 0;
  return r;
}

// ---------------------------------------------------------------------------
async function main() {
  const started = Date.now();
  const { chromium } = require('playwright-core');
  // The page comes from a server of its own on the loopback interface: a
  // page the browser sees as public would be refused loopback fetches
  // (Local Network Access); its origin still differs from the origin's (the
  // port), so the manifests and segments are cross-origin (CORS), as on a site.
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end('<!doctype html><html><head><meta charset="utf-8"><title>castbus e2e</title></head>' +
            '<body><video id="v" muted playsinline autoplay style="width:640px"></video></body></html>');
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  server.unref();
  const home = `http://127.0.0.1:${server.address().port}/castbus-e2e/`;
  if (!existsSync(opt.chromium)) throw new Error(`no Chromium at ${opt.chromium}`);
  const browser = await chromium.launch({
    executablePath: opt.chromium,
    headless: true,
    args: ['--no-sandbox', '--headless=new', '--autoplay-policy=no-user-gesture-required',
           '--disable-gpu', '--disable-dev-shm-usage', '--mute-audio',
           '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
           '--disable-backgrounding-occluded-windows'],
    timeout: 60000,
  });
  const watchdog = setTimeout(() => {
    out({ player: params.player, ok: false, why: ['timeout'], errors: ['play.mjs watchdog'] }, 1);
    browser.close().finally(() => process.exit(1));
  }, params.timeoutMs + 30000);
  try {
    const page = await browser.newPage();
    // what each track buffered, and whether the player ended the stream
    await page.addInitScript(() => {
      window.__castbusSourceBuffers = [];
      window.__castbusEndOfStream = false;
      const add = MediaSource.prototype.addSourceBuffer;
      MediaSource.prototype.addSourceBuffer = function (type) {
        const sb = add.call(this, type);
        window.__castbusSourceBuffers.push({ type, sb });
        return sb;
      };
      const eos = MediaSource.prototype.endOfStream;
      MediaSource.prototype.endOfStream = function (...a) {
        window.__castbusEndOfStream = true;
        return eos.apply(this, a);
      };
      // the MediaSource's state changes, and what re-opened an ended one (an
      // append or remove after endOfStream: the browser then waits for more data)
      window.__castbusMse = { sources: [], events: [] };
      const note = (what) => {
        const v = document.querySelector('video');
        window.__castbusMse.events.push(`${what}@${v ? v.currentTime.toFixed(3) : '?'}`);
        if (window.__castbusMse.events.length > 40) window.__castbusMse.events.splice(1, 1);
      };
      const watch = (ms) => {
        if (window.__castbusMse.sources.includes(ms)) return;
        window.__castbusMse.sources.push(ms);
        for (const e of ['sourceopen', 'sourceended', 'sourceclose']) ms.addEventListener(e, () => note(e));
      };
      const addSb = MediaSource.prototype.addSourceBuffer;
      MediaSource.prototype.addSourceBuffer = function (type) {
        watch(this);
        return addSb.call(this, type);
      };
      for (const m of ['appendBuffer', 'remove']) {
        const orig = SourceBuffer.prototype[m];
        SourceBuffer.prototype[m] = function (...a) {
          const ms = window.__castbusMse.sources.find((x) => Array.from(x.sourceBuffers).includes(this));
          if (ms && ms.readyState === 'ended') note(`${m} after endOfStream`);
          return orig.apply(this, a);
        };
      }
    });
    const segs = {};
    page.on('console', (m) => log(`console.${m.type()}:`, m.text()));
    page.on('pageerror', (e) => log('pageerror:', e.message));
    page.on('requestfinished', (rq) => {
      const u = new URL(rq.url());
      log('GET', u.pathname);
      const m = u.pathname.match(/\/([^/]+)\/[^/]+\.(m4s|mp4|ts|aac)$/);
      if (m) segs[m[1]] = (segs[m[1]] || 0) + 1;
    });
    page.on('requestfailed', (rq) => log('FAILED', rq.url(), rq.failure() && rq.failure().errorText));
    await page.goto(home);
    // the player's browser bundle, from this directory's node_modules (not every
    // package exports its dist files to require.resolve)
    const lib = fileURLToPath(new URL(`node_modules/${PLAYERS[params.player]}`, import.meta.url));
    if (!existsSync(lib)) throw new Error(`${lib} missing: run npm ci in ${path.dirname(fileURLToPath(import.meta.url))}`);
    await page.addScriptTag({ path: lib });
    const result = await page.evaluate(drive, params);
    result.segments = segs;
    result.user_agent = await page.evaluate(() => navigator.userAgent);
    result.wall_s = Math.round((Date.now() - started) / 100) / 10;
    out(result, result.ok ? 0 : 1);
  } finally {
    clearTimeout(watchdog);
    await browser.close();
    server.close();
  }
}

main().catch((e) => {
  out({ player: params.player, ok: false, why: ['play.mjs crashed'], errors: [String(e && e.stack || e)] }, 1);
});
