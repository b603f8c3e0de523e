// HLS and RTMP out through the REST API, checked with real players and servers: two Chromium
// peers (official SDK) in a call, `/v2/live-streams` makes an HLS stream that ffmpeg plays
// from its playback URL over HTTPS (both renditions, timed metadata in the playlists, a VOD
// asset at the end with a paused stretch left out), and `/v2/external-streams` streams to a real RTMP server (ffmpeg
// listening) while a second, dead URL is retried without disturbing it.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort, httpsText, sleep, waitFor, withCall } from './harness.mjs';

const T = { timeout: 240_000 };

/** ffprobe's streams of a file or URL (self-signed HTTPS accepted: ffmpeg does not verify by default). */
function streamsOf(input, extra = []) {
  const p = JSON.parse(execFileSync('ffprobe', ['-v', 'error', ...extra, '-show_entries',
    'format=duration:stream=codec_type,codec_name,width,height', '-of', 'json', input], { encoding: 'utf8', timeout: 30_000 }));
  return { duration: Number(p.format?.duration), video: p.streams.find((s) => s.codec_type === 'video'), audio: p.streams.find((s) => s.codec_type === 'audio') };
}

async function startedCall(call) {
  await call.join({ name: 'alice', role: 'host' });
  const bob = await call.join({ name: 'bob', role: 'host' });
  const a = await bob.waitForPeer('alice', (p) => p.video?.id && p.audio?.id);
  await bob.expectFlowing(a.video.id, 'framesDecoded', { what: 'alice\'s video' });
  const room = await call.platform.api('POST', '/v2/rooms', { name: call.room });
  return { bob, room, aliceVideo: a.video.id };
}

async function waitStatus(platform, path, status, timeout = 30_000) {
  return waitFor(`${path} to be ${status}`, async () => {
    const r = await platform.api('GET', path);
    if (r.status === 'failed' && status !== 'failed') throw Object.assign(new Error(`failed: ${JSON.stringify(r.error)}`), { fatal: true });
    return r.status === status ? r : null;
  }, { timeout });
}

test('a live stream of a call: HLS that ffmpeg plays from its playback URL, timed metadata, a VOD asset', T, (t) =>
  withCall(t, async (call) => {
    const { room } = await startedCall(call);
    const api = call.platform.api;
    const t0 = Date.now();
    const ls = await api('POST', `/v2/live-streams/room/${room.id}/start`, { meeting_url: 'https://example.test/watch', recording: { hls_vod: true } });
    assert.equal(ls.status, 'starting');
    assert.match(ls.playback.url, /^https:\/\/.*\/hls\/[0-9a-f]{24}\/master\.m3u8$/);
    assert.deepEqual(ls.layers.map((l) => [l.width, l.height]), [[1280, 720], [640, 360]], 'the default ladder');
    const running = await waitStatus(call.platform, `/v2/live-streams/${ls.id}`, 'running');
    const startMs = Date.now() - t0;
    t.diagnostic(`REST start → first playable segment: ${startMs} ms`);
    assert.ok(startMs < 10_000, `playable ${startMs} ms after the start`);
    await assert.rejects(api('POST', `/v2/live-streams/room/${room.id}/start`, {}), /HTTP 409/);

    const master = await httpsText(running.playback.url);
    assert.match(master, /#EXT-X-STREAM-INF:.*RESOLUTION=1280x720/);
    assert.match(master, /#EXT-X-STREAM-INF:.*RESOLUTION=640x360/);
    // A player: ffmpeg reads the top rendition through the master playlist over HTTPS.
    await sleep(4_000);
    const top = streamsOf(running.playback.url, ['-rw_timeout', '10000000']);
    t.diagnostic(`through the playback URL: ${JSON.stringify(top)}`);
    assert.equal(top.video.codec_name, 'h264');
    assert.equal(top.audio?.codec_name, 'aac');
    const low = streamsOf(running.playback.url.replace('master.m3u8', '1/index.m3u8'));
    assert.deepEqual([low.video.width, low.video.height], [640, 360]);
    const segment = (await httpsText(running.playback.url.replace('master.m3u8', '0/index.m3u8'))).split('\n').find((l) => l.endsWith('.ts'));
    const decoded = execFileSync('ffmpeg', ['-v', 'error', '-i', running.playback.url.replace('master.m3u8', `0/${segment}`), '-f', 'null', '-'], { encoding: 'utf8' });
    assert.equal(decoded, '', 'a segment decodes without a message');
    // Nothing outside the job's playlists and segments (`..` percent-encoded: a URL parser would resolve it away).
    await assert.rejects(httpsText(running.playback.url.replace('master.m3u8', '0/..%2F..%2F..%2Fplatform.db')), /HTTP 404/);
    await assert.rejects(httpsText(running.playback.url.replace('master.m3u8', '0/.hlssink2.m3u8')), /HTTP 404/);

    // Timed metadata: a DATERANGE in every rendition's playlist.
    await api('POST', `/v2/live-streams/${ls.id}/timed-metadata`, { payload: 'poll:1', duration: 10 });
    await assert.rejects(api('POST', `/v2/live-streams/${ls.id}/timed-metadata`, { payload: 'x'.repeat(101) }), /HTTP 400 .*payload/);
    // As 100ms's HLS player reads it: base64 JSON {payload, start_date, end_date}.
    const cueOf = (list) => {
      const m = /#EXT-X-DATERANGE:.*START-DATE="([^"]+)".*X-100MSLIVE-PAYLOAD="([^"]+)"/.exec(list);
      return m && { start: m[1], ...JSON.parse(Buffer.from(m[2], 'base64').toString('utf8')) };
    };
    const cues = await waitFor('the cue in both playlists', async () => {
      const lists = await Promise.all(['0', '1'].map((i) => httpsText(running.playback.url.replace('master.m3u8', `${i}/index.m3u8`))));
      const found = lists.map(cueOf);
      return found.every((c) => c?.payload === 'poll:1') ? found : null;
    }, { timeout: 5_000 });
    assert.equal(cues[0].start_date, cues[0].start);
    assert.equal(Date.parse(cues[0].end_date) - Date.parse(cues[0].start_date), 10_000);

    // Four seconds of the VOD recording paused (viewers go on watching): left out of the VOD.
    await sleep(2_000);
    const paused = await api('POST', `/v2/live-streams/${ls.id}/pause-recording`, {});
    assert.equal(paused.paused, true);
    await assert.rejects(api('POST', `/v2/live-streams/${ls.id}/pause-recording`, {}), /HTTP 400 .*paused already/);
    await assert.rejects(api('POST', '/v2/live-streams/000000000000000000000000/pause-recording', {}), /HTTP 404/);
    await sleep(4_000);
    assert.equal((await api('POST', `/v2/live-streams/${ls.id}/resume-recording`, {})).paused, false);
    await sleep(4_000);
    const stopped = await api('POST', `/v2/live-streams/${ls.id}/stop`, {});
    const streamed = (Date.now() - t0) / 1000 - 4;
    assert.equal(stopped.status, 'stopping');
    const done = await waitStatus(call.platform, `/v2/live-streams/${ls.id}`, 'completed');
    const vod = done.recording_assets.find((a) => a.type === 'room-vod');
    assert.ok(vod, `a room-vod asset: ${JSON.stringify(done.recording_assets)}`);
    const played = streamsOf(join(call.platform.dataDir, 'recordings', vod.path));
    t.diagnostic(`VOD: ${JSON.stringify(played)}; ${streamed.toFixed(1)} s between start and stop less the 4 s paused; asset ${JSON.stringify(vod)}`);
    assert.ok(played.duration > streamed - 6 && played.duration < streamed + 2, `the VOD holds ${played.duration} s`);
    assert.ok(Math.abs(vod.duration - played.duration) < 1.5, `the asset's duration ${vod.duration} s is the VOD's ${played.duration} s`);
    const vodMedia = readFileSync(join(call.platform.dataDir, 'recordings', vod.path.replace('vod.m3u8', '0/vod.m3u8')), 'utf8');
    assert.equal(vodMedia.split('#EXT-X-DISCONTINUITY').length - 1, 1, `one discontinuity, at the resume: ${vodMedia}`);
    const events = await api('GET', '/v2/webhooks/events?limit=100');
    const types = (events.data || events.events || []).map((e) => e.type);
    for (const ty of ['hls.started.success', 'hls.recording.success', 'hls.stopped.success']) {
      assert.ok(types.includes(ty), `a ${ty} webhook event: ${JSON.stringify(types)}`);
    }
  }));

test('an external stream reaches a real RTMP server while a dead URL is retried, and records an MP4', T, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rtmp-test-'));
  const [live, dead] = [await freePort(), await freePort()];
  const flv = join(dir, 'received.flv');
  // A real RTMP server: ffmpeg listening, copying what it receives into a file.
  const server = spawn('ffmpeg', ['-v', 'error', '-listen', '1', '-i', `rtmp://127.0.0.1:${live}/live/key`, '-c', 'copy', '-f', 'flv', flv], { stdio: ['ignore', 'ignore', 'pipe'] });
  let serverErr = '';
  server.stderr.on('data', (c) => (serverErr += c));
  try {
    await withCall(t, async (call) => {
      const { bob, room, aliceVideo } = await startedCall(call);
      const api = call.platform.api;
      await assert.rejects(api('POST', `/v2/external-streams/room/${room.id}/start`, { rtmp_urls: ['http://x/y'] }), /HTTP 400 .*rtmp_urls/);
      await assert.rejects(api('POST', `/v2/external-streams/room/${room.id}/start`, {}), /HTTP 400 .*rtmp_urls/);
      const urls = [`rtmp://127.0.0.1:${dead}/live/nobody`, `rtmp://127.0.0.1:${live}/live/key`];
      const es = await api('POST', `/v2/external-streams/room/${room.id}/start`, { rtmp_urls: urls, recording: true });
      assert.deepEqual(es.rtmp_urls, urls);
      await waitStatus(call.platform, `/v2/external-streams/${es.id}`, 'running');
      await waitFor('the RTMP server to receive', async () => (existsSync(flv) && execFileSync('stat', ['-c', '%s', flv], { encoding: 'utf8' }) > 50_000) || null, { timeout: 20_000 });
      await sleep(8_000);
      await bob.expectFlowing(aliceVideo, 'framesDecoded', { what: 'alice\'s video while streaming' });
      await api('POST', `/v2/external-streams/${es.id}/stop`, {});
      const done = await waitStatus(call.platform, `/v2/external-streams/${es.id}`, 'completed');
      assert.equal(done.recording_assets.length, 1, JSON.stringify(done.recording_assets));
      assert.equal(done.recording_assets[0].type, 'room-composite');
      assert.ok(/RTMP destination failed; retrying/.test(call.platform.logText()), 'the dead URL is reported in the log');
    });
    await waitFor('the RTMP server to end', async () => (server.exitCode !== null) || null, { timeout: 15_000 }).catch(() => server.kill('SIGINT'));
    await sleep(500);
    const got = streamsOf(flv);
    t.diagnostic(`received over RTMP: ${JSON.stringify(got)}; server said: ${serverErr.slice(0, 300)}`);
    assert.equal(got.video.codec_name, 'h264');
    assert.equal(got.audio?.codec_name, 'aac');
    assert.ok(got.duration > 6, `${got.duration} s received`);
  } finally {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
