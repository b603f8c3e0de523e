// HLS glass-to-glass latency: from the publisher's frame to the player's frame, both in
// headless Chromium on this machine (one clock). A measurement, not a test: run it with
// `scripts/bench.sh hls-latency` (docs/performance.md records the figures).
//
// The publisher (official SDK, the demo page) has a camera that flashes: Chromium's fake
// camera reads a Y4M file made by ffmpeg, black with a white flash every PERIOD s, on the left
// half and then on the right half (the file loops). Its page shows its own camera and notes
// when each flash is on screen there. A live stream of the room starts over REST (the default
// ladder), and a viewer page (a role like 100ms's hls-viewer, which publishes nothing and so has
// no tile in the composite; the demo plays the stream with 100ms's HLS player) notes when each flash is on
// screen: `requestVideoFrameCallback` gives each frame's expected display time, and the frame
// is sampled on a small canvas. Each shown flash is matched to the publisher's flash of the
// same side just before it (unambiguous up to 2 × PERIOD of latency). Prints each latency and
// their median, 90th percentile, min and max.
//
// Env: BENCH_SECONDS (60), BENCH_PERIOD (3, seconds).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Call, launchBrowser, sleep, startPlatform, stopPlatform, waitFor } from './harness.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS || 60);
const PERIOD = Number(process.env.BENCH_PERIOD || 3);

/** Runs in a page: notes each flash shown by the <video> `id` (a camera of the demo's, or the
 * HLS player), with its display time. */
function watchFlashes(id) {
  const video = document.getElementById(id);
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

/** Runs in the publisher's page: its own camera in a <video id="bench-local">. */
async function showOwnCamera() {
  const video = document.createElement('video');
  video.id = 'bench-local';
  video.muted = true;
  video.autoplay = true;
  document.body.append(video);
  const { store, selectors, actions } = window.__hms;
  await actions.attachVideo(store.getState(selectors.selectLocalVideoTrackID), video);
}

const dir = mkdtempSync(join(tmpdir(), 'hls-latency-'));
const camera = join(dir, 'flashes.y4m');
const flash = (side, frame) => `drawbox=x=${side * 320}:y=0:w=320:h=360:color=white:t=fill:enable='between(n,${frame},${frame + 4})'`;
execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', `color=black:s=640x360:r=30:d=${2 * PERIOD}`,
  '-vf', `${flash(0, 0)},${flash(1, 30 * PERIOD)}`, '-pix_fmt', 'yuv420p', camera]);

const platform = await startPlatform();
// 100ms's hls-viewer: nothing to publish, nobody to subscribe to.
const templates = await platform.api('GET', '/v2/templates');
await platform.api('POST', `/v2/templates/${(templates.data || templates)[0].id}/roles/viewer`, {
  publishParams: { allowed: [] },
  subscribeParams: { subscribeToRoles: [] },
});
const publisherBrowser = await launchBrowser([`--use-file-for-fake-video-capture=${camera}`]);
const viewerBrowser = await launchBrowser();
try {
  const room = `room-latency-${process.pid}`;
  const alice = await new Call(platform, publisherBrowser, room).join({ name: 'alice', role: 'host' });
  await alice.waitForPeer('alice', (p) => p.video?.id);
  await alice.page.evaluate(showOwnCamera);
  await alice.page.waitForFunction(() => document.getElementById('bench-local').readyState >= 2, null, { timeout: 15_000 });
  await alice.page.evaluate(watchFlashes, 'bench-local');
  const { id: roomId } = await platform.api('POST', '/v2/rooms', { name: room });
  const ls = await platform.api('POST', `/v2/live-streams/room/${roomId}/start`, {});
  await waitFor('the live stream to run', async () => (await platform.api('GET', `/v2/live-streams/${ls.id}`)).status === 'running', { timeout: 30_000 });
  const viewer = await new Call(platform, viewerBrowser, room).join({ name: 'viewer', role: 'viewer' });
  await viewer.page.waitForFunction(() => document.getElementById('hls-player')?.readyState >= 2, null, { timeout: 30_000 });
  await viewer.page.evaluate(watchFlashes, 'hls-player');
  await sleep(SECONDS * 1000);
  const drawn = await alice.page.evaluate(() => window.__shown);
  const shown = await viewer.page.evaluate(() => window.__shown);
  await platform.api('POST', `/v2/live-streams/${ls.id}/stop`, {});

  const latencies = [];
  for (const s of shown) {
    const source = drawn.filter((d) => d.side === s.side && d.at < s.at).at(-1);
    if (source) latencies.push((s.at - source.at) / 1000);
  }
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  console.log(`flashes on the publisher's screen ${drawn.length}, on the viewer's ${shown.length}`);
  console.log(`latencies (s): ${latencies.map((l) => l.toFixed(2)).join(' ')}`);
  if (latencies.length) {
    console.log(`HLS glass-to-glass: p50 ${q(0.5).toFixed(2)} s, p90 ${q(0.9).toFixed(2)} s, min ${latencies[0].toFixed(2)} s, max ${latencies.at(-1).toFixed(2)} s (target p50 ≤ 4 s: ${(q(0.5) / 4).toFixed(2)} of it)`);
  } else {
    console.log('no flash reached the viewer');
    process.exitCode = 1;
  }
} finally {
  await publisherBrowser.close().catch(() => {});
  await viewerBrowser.close().catch(() => {});
  await stopPlatform(platform);
  rmSync(dir, { recursive: true, force: true });
}
