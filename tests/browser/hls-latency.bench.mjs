// HLS glass-to-glass latency: from the publisher's frame to the player's frame, both in
// headless Chromium on this machine (one clock). A measurement, not a test: run it with
// `scripts/bench.sh hls-latency` (docs/performance.md records the figures).
//
// The publisher (official SDK, the demo page) turns its camera off and publishes a canvas
// instead: black, with a white flash every PERIOD ms, on the left half for even flashes and the
// right half for odd ones, the time each flash was drawn recorded in the page. A live stream of
// the room starts over REST (the default ladder), and a viewer page (the demo in viewer mode,
// hls.js) reports when each flash is shown: `requestVideoFrameCallback` gives the frame's
// expected display time, and the frame is sampled on a small canvas. Each shown flash is
// matched to the drawn flash of its side just before it (two sides: unambiguous up to
// 2 × PERIOD of latency). Prints each latency and their median, 90th percentile, min and max.
//
// Env: BENCH_SECONDS (60), BENCH_PERIOD_MS (3000).
import { Call, launchBrowser, sleep, startPlatform, stopPlatform, waitFor } from './harness.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS || 60);
const PERIOD = Number(process.env.BENCH_PERIOD_MS || 3000);

/** Runs in the publisher's page: the flashing canvas, published as a second video track. */
async function publishFlashes(period) {
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 360;
  const g = canvas.getContext('2d');
  window.__flashes = [];
  let next = Date.now() + 2000;
  let litUntil = 0;
  let n = 0;
  let side = 0;
  setInterval(() => {
    const now = Date.now();
    if (now >= next) {
      side = n % 2;
      window.__flashes.push({ n, side, at: now });
      litUntil = now + 150;
      next += period;
      n += 1;
    }
    g.fillStyle = '#000';
    g.fillRect(0, 0, 640, 360);
    if (now < litUntil) {
      g.fillStyle = '#fff';
      g.fillRect(side * 320, 0, 320, 360);
    }
  }, 1000 / 60);
  const track = canvas.captureStream(30).getVideoTracks()[0];
  await window.__hms.actions.addTrack(track, 'regular');
}

/** Runs in the viewer's page: every flash the HLS player shows, with its display time. */
function watchFlashes() {
  const video = document.getElementById('hls-player');
  const canvas = document.createElement('canvas');
  canvas.width = 32;
  canvas.height = 18;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  window.__shown = [];
  let lit = false;
  const onFrame = (_, meta) => {
    g.drawImage(video, 0, 0, 32, 18);
    const d = g.getImageData(0, 0, 32, 18).data;
    const half = [0, 0];
    for (let i = 0; i < d.length; i += 4) half[(i / 4) % 32 < 16 ? 0 : 1] += d[i + 1];
    const [left, right] = half.map((h) => h / (16 * 18));
    const now = Math.max(left, right) > 128;
    if (now && !lit) window.__shown.push({ side: left > right ? 0 : 1, at: performance.timeOrigin + meta.expectedDisplayTime });
    lit = now;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

const platform = await startPlatform();
const browser = await launchBrowser();
try {
  const call = new Call(platform, browser, `room-latency-${process.pid}`);
  const alice = await call.join({ name: 'alice', role: 'host' });
  await alice.stopLocal('video');
  await alice.page.evaluate(publishFlashes, PERIOD);
  const room = await platform.api('POST', '/v2/rooms', { name: call.room });
  const ls = await platform.api('POST', `/v2/live-streams/room/${room.id}/start`, {});
  await waitFor('the live stream to run', async () => (await platform.api('GET', `/v2/live-streams/${ls.id}`)).status === 'running', { timeout: 30_000 });
  const viewer = await call.join({ name: 'viewer', role: 'host', mode: 'viewer' });
  await viewer.page.waitForFunction(() => document.getElementById('hls-player')?.readyState >= 2, null, { timeout: 30_000 });
  await viewer.page.evaluate(watchFlashes);
  await sleep(SECONDS * 1000);
  const drawn = await alice.page.evaluate(() => window.__flashes);
  const shown = await viewer.page.evaluate(() => window.__shown);
  await platform.api('POST', `/v2/live-streams/${ls.id}/stop`, {});

  const latencies = [];
  for (const s of shown) {
    const source = drawn.filter((d) => d.side === s.side && d.at < s.at).at(-1);
    if (source) latencies.push((s.at - source.at) / 1000);
  }
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  console.log(`flashes drawn ${drawn.length}, shown ${shown.length}`);
  console.log(`latencies (s): ${latencies.map((l) => l.toFixed(2)).join(' ')}`);
  if (latencies.length) {
    console.log(`HLS glass-to-glass: p50 ${q(0.5).toFixed(2)} s, p90 ${q(0.9).toFixed(2)} s, min ${latencies[0].toFixed(2)} s, max ${latencies.at(-1).toFixed(2)} s (target p50 ≤ 4 s: ${(q(0.5) / 4).toFixed(2)} of it)`);
  } else {
    console.log('no flash was shown: see the viewer page');
    process.exitCode = 1;
  }
} finally {
  await browser.close().catch(() => {});
  await stopPlatform(platform);
}
