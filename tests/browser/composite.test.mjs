// Composite recording through the REST API, checked with a real decoder: two Chromium peers
// send audio and video, `/v2/recordings/room/{id}/start` starts a composite job (the
// compositor process, no browser), and Debian's ffprobe/ffmpeg read the MP4: H.264 at the
// asked size with AAC audio, the recorded duration and frame rate, and both peers' tiles on a
// decoded picture. The `beam.*` webhooks are in the events. Then: a camera turned off leaves
// the layout (signaling re-sends the track's metadata to the compositor), the compositor killed
// mid-job (the call goes on, a second part follows, both decode), and bad starts refused;
// a template's auto-start, `maxDuration` and `autoStopTimeout`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, sleep, waitFor, withCall } from './harness.mjs';

const T = { timeout: 240_000 };

/** ffprobe's view of an MP4: duration, and per stream codec, size and decoded frame count. */
function probe(path) {
  const err = execFileSync('ffmpeg', ['-v', 'error', '-i', path, '-f', 'null', '-'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(err, '', `ffmpeg decodes ${path} without a message`);
  const p = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-show_entries',
    'format=duration:stream=codec_type,codec_name,width,height,nb_read_frames', '-of', 'json', path], { encoding: 'utf8' }));
  const video = p.streams.find((s) => s.codec_type === 'video');
  const audio = p.streams.find((s) => s.codec_type === 'audio');
  return { duration: Number(p.format.duration), video, audio };
}

/** The picture at `at` seconds scaled to 64×36, as `[r, g, b]` per pixel by row; the picture
 * and the file are also kept in the test's artifacts. */
function thumbnail(path, at, name) {
  const dir = join(ARTIFACTS, name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60));
  mkdirSync(dir, { recursive: true });
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-ss', String(at), '-i', path, '-frames:v', '1', join(dir, `composite-${at}.png`)]);
  copyFileSync(path, join(dir, 'composite.mp4'));
  const raw = execFileSync('ffmpeg', ['-v', 'error', '-ss', String(at), '-i', path, '-frames:v', '1',
    '-vf', 'scale=64:36', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 20 });
  assert.equal(raw.length, 64 * 36 * 3, 'one 64×36 RGB picture');
  return Array.from({ length: 36 }, (_, y) => Array.from({ length: 64 }, (_, x) => {
    const i = (y * 64 + x) * 3;
    return [raw[i], raw[i + 1], raw[i + 2]];
  }));
}

/** Brightness: the largest of R, G and B. */
const bright = ([r, g, b]) => Math.max(r, g, b);

const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

/** Mean brightness of each quarter-width column band of the picture at `at` seconds. */
function columnBrightness(path, at, name) {
  const rows = thumbnail(path, at, name);
  return [0, 1, 2, 3].map((band) => mean(rows.flatMap((row) => row.slice(band * 16, band * 16 + 16).map(bright))));
}

/** Mean colour `[r, g, b]` of the middle of each half of the picture at `at` seconds: the
 * two tiles of a two-tile grid. */
function tileColours(path, at, name) {
  const rows = thumbnail(path, at, name).slice(12, 24);
  return [4, 36].map((x) => {
    const pixels = rows.flatMap((row) => row.slice(x, x + 24));
    return [0, 1, 2].map((c) => mean(pixels.map((p) => p[c])));
  });
}

const isGreen = ([r, g, b]) => g > r + 20 && g > b + 20;
const isGrey = ([r, g, b]) => Math.abs(r - g) < 12 && Math.abs(r - b) < 12 && r > 25 && r < 90;

async function startedCall(call) {
  const alice = await call.join({ name: 'alice', role: 'host' });
  const bob = await call.join({ name: 'bob', role: 'host' });
  const a = await bob.waitForPeer('alice', (p) => p.video?.id && p.audio?.id);
  await bob.expectFlowing(a.video.id, 'framesDecoded', { what: 'alice\'s video' });
  const b = await alice.waitForPeer('bob', (p) => p.video?.id && p.audio?.id);
  await alice.expectFlowing(b.video.id, 'framesDecoded', { what: 'bob\'s video' });
  const room = await call.platform.api('POST', '/v2/rooms', { name: call.room });
  return { alice, bob, room, aliceVideo: a.video.id };
}

async function waitStatus(platform, id, status, timeout = 30_000) {
  return waitFor(`job ${id} to be ${status}`, async () => {
    const r = await platform.api('GET', `/v2/recordings/${id}`);
    if (r.status === 'failed' && status !== 'failed') throw Object.assign(new Error(`job failed: ${JSON.stringify(r.error)}`), { fatal: true });
    return r.status === status ? r : null;
  }, { timeout });
}

test('a composite recording of a two-peer call: one MP4 with both tiles, H.264 + AAC, beam webhooks', T, (t) =>
  withCall(t, async (call) => {
    const { room } = await startedCall(call);
    const api = call.platform.api;
    const t0 = Date.now();
    const job = await api('POST', `/v2/recordings/room/${room.id}/start`, { meeting_url: 'https://example.test/meet', resolution: { width: 1280, height: 720 } });
    assert.equal(job.status, 'starting');
    assert.deepEqual(job.asset_types, ['room-composite']);
    assert.equal(job.meeting_url, 'https://example.test/meet');
    await waitStatus(call.platform, job.id, 'running');
    t.diagnostic(`running ${Date.now() - t0} ms after the start`);
    // A second composite in the same room is refused; bad bodies name their field.
    await assert.rejects(api('POST', `/v2/recordings/room/${room.id}/start`, {}), /HTTP 409 .*already running/);
    await assert.rejects(api('POST', `/v2/recordings/room/${room.id}/start`, { resolution: { width: 1281, height: 720 } }), /HTTP 400 .*resolution/);
    await sleep(5_000);
    // Four seconds paused: left out of the file.
    const paused = await api('POST', `/v2/recordings/room/${room.id}/pause`, {});
    assert.equal(paused.paused, true);
    await assert.rejects(api('POST', `/v2/recordings/room/${room.id}/pause`, {}), /HTTP 400 .*paused already/);
    await sleep(4_000);
    assert.equal((await api('POST', `/v2/recordings/room/${room.id}/resume`, {})).paused, false);
    await sleep(5_000);
    const stopped = await api('POST', `/v2/recordings/${job.id}/stop`, {});
    const recorded = (Date.now() - t0) / 1000 - 4;
    assert.equal(stopped.status, 'stopping');
    const done = await waitStatus(call.platform, job.id, 'completed');
    assert.equal(done.recording_assets.length, 1, JSON.stringify(done.recording_assets));
    const asset = done.recording_assets[0];
    assert.equal(asset.type, 'room-composite');
    assert.deepEqual(asset.metadata.resolution, { width: 1280, height: 720 });
    const path = join(call.platform.dataDir, 'recordings', asset.path);
    const got = probe(path);
    t.diagnostic(`${asset.path}: ${JSON.stringify(got)}; asset says ${asset.duration} s, ${asset.size} bytes; ${recorded.toFixed(1)} s between start and stop, less the 4 s paused`);
    assert.equal(got.video.codec_name, 'h264');
    assert.equal(got.video.width, 1280);
    assert.equal(got.video.height, 720);
    assert.equal(got.audio?.codec_name, 'aac', 'the mixed audio is in the file');
    assert.ok(got.duration > recorded - 3 && got.duration < recorded + 1, `${got.duration} s in the file for ${recorded} s between start and stop`);
    assert.ok(Math.abs(asset.duration - got.duration) < 1, `the asset's duration ${asset.duration} s is the file's ${got.duration} s`);
    const fps = Number(got.video.nb_read_frames) / got.duration;
    assert.ok(fps > 27 && fps < 31, `${fps.toFixed(1)} frames a second`);
    // Two cameras side by side: the left and right halves both hold a picture; Chromium's fake
    // camera is far from black.
    // Chromium's fake camera is green (G about 75 after encoding), the background black: each
    // tile fills half the height of its half of the picture.
    const bands = columnBrightness(path, Math.max(1, got.duration - 3), t.name);
    t.diagnostic(`mean brightness of the four column bands: ${bands.map((b) => b.toFixed(0)).join(', ')}`);
    assert.ok(bands.every((b) => b > 20), `both tiles visible: ${bands}`);
    const events = await api('GET', '/v2/webhooks/events?limit=100');
    const types = (events.data || events.events || []).map((e) => e.type);
    for (const ty of ['beam.started.success', 'beam.recording.success', 'beam.stopped.success']) {
      assert.ok(types.includes(ty), `a ${ty} webhook event: ${JSON.stringify(types)}`);
    }
    await assert.rejects(api('POST', '/v2/recordings/000000000000000000000000/stop', {}), /HTTP 404/);
  }));

test('a muted camera gives way to its peer\'s name on grey in the composite', T, (t) =>
  withCall(t, async (call) => {
    const { alice, room } = await startedCall(call);
    const api = call.platform.api;
    const job = await api('POST', `/v2/recordings/room/${room.id}/start`, { layout: 'grid' });
    assert.equal(job.layout, 'grid');
    await assert.rejects(api('POST', `/v2/recordings/room/${room.id}/start`, { layout: 'mosaic' }), /HTTP 400 .*layout/);
    await waitStatus(call.platform, job.id, 'running');
    const t0 = Date.now();
    await sleep(6_000);
    await alice.stopLocal('video');
    const mutedAt = (Date.now() - t0) / 1000;
    await sleep(6_000);
    await api('POST', `/v2/recordings/${job.id}/stop`, {});
    const done = await waitStatus(call.platform, job.id, 'completed');
    const path = join(call.platform.dataDir, 'recordings', done.recording_assets[0].path);
    const got = probe(path);
    // Chromium's fake camera is green: two green tiles, then one green (bob's) and one grey
    // (alice's name on it), each where it was.
    // Before: late enough for both cameras' first keyframes, before the camera went off.
    const before = tileColours(path, Math.max(3, mutedAt - 1.5), t.name);
    const after = tileColours(path, Math.min(got.duration - 1, mutedAt + 4), t.name);
    const show = (tiles) => tiles.map((c) => c.map((v) => v.toFixed(0)).join('/')).join(' and ');
    t.diagnostic(`tiles (rgb): ${show(before)} with both cameras, ${show(after)} after alice's went off at ${mutedAt.toFixed(1)} s`);
    assert.ok(before.every(isGreen), `two cameras at first: ${show(before)}`);
    assert.ok(after.filter(isGreen).length === 1 && after.filter(isGrey).length === 1, `a camera and a grey tile then: ${show(after)}`);
  }));

test('the compositor killed mid-job: the call goes on, a second part follows, both decode', T, (t) =>
  withCall(t, async (call) => {
    const { bob, room, aliceVideo } = await startedCall(call);
    const api = call.platform.api;
    const job = await api('POST', `/v2/recordings/room/${room.id}/start`, {});
    await waitStatus(call.platform, job.id, 'running');
    await sleep(8_000);
    const pid = (await call.platform.status()).processes.compositor.pid;
    assert.ok(pid > 0, 'the compositor runs');
    process.kill(pid, 'SIGKILL');
    await bob.expectFlowing(aliceVideo, 'framesDecoded', { window: 3_000, what: 'alice\'s video after the kill' });
    await waitFor('the compositor to be restarted', async () => {
      const p = (await call.platform.status()).processes.compositor;
      return p.pid && p.pid !== pid ? p : null;
    }, { timeout: 15_000 });
    await sleep(8_000);
    await api('POST', `/v2/recordings/${job.id}/stop`, {});
    const done = await waitStatus(call.platform, job.id, 'completed');
    const paths = done.recording_assets.map((a) => a.path).sort();
    t.diagnostic(`assets: ${JSON.stringify(done.recording_assets.map((a) => [a.path, a.duration, a.size]))}`);
    assert.deepEqual(paths, [`${job.id}/composite.1.mp4`, `${job.id}/composite.2.mp4`], 'the part the killed process left is an asset too');
    for (const a of done.recording_assets) {
      // The killed process's part plays up to its last whole fragment.
      const got = probe(join(call.platform.dataDir, 'recordings', a.path));
      t.diagnostic(`${a.path}: ${got.duration} s in the file, ${a.duration} s in the asset`);
      assert.ok(got.duration > 4, `${a.path} holds ${got.duration} s`);
      assert.ok(Math.abs(a.duration - got.duration) < 2.5, `${a.path}: the asset's duration ${a.duration} s is about the file's`);
    }
  }));

test('a template that auto-starts a composite with each session and bounds it: started alone, stopped at maxDuration', T, (t) =>
  withCall(t, async (call) => {
    const api = call.platform.api;
    const templates = await api('GET', '/v2/templates');
    const template = (templates.data || templates).find((x) => x.name === 'default') || (templates.data || templates)[0];
    await api('POST', `/v2/templates/${template.id}/recordings`, [{ name: 'beam', maxDuration: 8, compositeRecording: { browserComposite: { autoStart: true, width: 640, height: 360 } } }]);
    await call.join({ name: 'alice', role: 'host' });
    const room = await api('POST', '/v2/rooms', { name: call.room });
    const job = await waitFor('a composite started with the session', async () => {
      const list = await api('GET', `/v2/recordings?room_id=${room.id}`);
      return list.data.find((j) => j.status === 'running') || null;
    }, { timeout: 20_000 });
    assert.deepEqual(job.asset_types, ['room-composite']);
    assert.deepEqual(job.resolution, { width: 640, height: 360 });
    const done = await waitStatus(call.platform, job.id, 'completed', 40_000);
    const ran = (Date.parse(done.stopped_at) - Date.parse(done.started_at)) / 1000;
    t.diagnostic(`ran ${ran} s; assets ${JSON.stringify(done.recording_assets.map((a) => [a.path, a.duration]))}`);
    assert.ok(ran >= 8 && ran < 12, `stopped ${ran} s after it started`);
    const got = probe(join(call.platform.dataDir, 'recordings', done.recording_assets[0].path));
    assert.deepEqual([got.video.width, got.video.height], [640, 360]);
    const events = await api('GET', '/v2/webhooks/events?limit=100');
    const stopped = (events.data || events.events || []).find((e) => e.type === 'beam.stopped.success');
    assert.equal(stopped?.event?.data?.reason, 'max duration reached', JSON.stringify(stopped));
  }));

test('a composite with autoStopTimeout outlives the room\'s last peer: a peer back in time is recorded, and it stops that long after the room empties', T, (t) =>
  withCall(t, async (call) => {
    const api = call.platform.api;
    const templates = await api('GET', '/v2/templates');
    const template = (templates.data || templates).find((x) => x.name === 'default') || (templates.data || templates)[0];
    await api('POST', `/v2/templates/${template.id}/recordings`, [{ name: 'beam', compositeRecording: { browserComposite: { autoStart: true, autoStopTimeout: 6, width: 640, height: 360 } } }]);
    const alice = await call.join({ name: 'alice', role: 'host' });
    const room = await api('POST', '/v2/rooms', { name: call.room });
    const job = await waitFor('a composite started with the session', async () => {
      const list = await api('GET', `/v2/recordings?room_id=${room.id}`);
      return list.data.find((j) => j.status === 'running') || null;
    }, { timeout: 20_000 });
    await alice.page.evaluate(() => window.__hms.actions.leave());
    await sleep(3_000);
    assert.equal((await api('GET', `/v2/recordings/${job.id}`)).status, 'running', 'recording on, 3 s into its 6 s wait');
    const bob = await call.join({ name: 'bob', role: 'host' });
    await sleep(5_000);
    const list = await api('GET', `/v2/recordings?room_id=${room.id}`);
    assert.deepEqual(list.data.map((j) => [j.id, j.status]), [[job.id, 'running']], 'the same job, past the first wait, and no second one');
    await bob.page.evaluate(() => window.__hms.actions.leave());
    const bobLeft = Date.now();
    const done = await waitStatus(call.platform, job.id, 'completed', 30_000);
    const after = (Date.parse(done.stopped_at) - bobLeft) / 1000;
    const ran = (Date.parse(done.stopped_at) - Date.parse(done.started_at)) / 1000;
    t.diagnostic(`stopped ${after} s after the last peer left; ran ${ran} s; assets ${JSON.stringify(done.recording_assets.map((a) => [a.path, a.duration]))}`);
    assert.ok(after >= 5 && after < 10, `stopped ${after} s after the room emptied`);
    assert.equal(done.recording_assets.length, 1, 'one part: the job ran through the empty room');
    const got = probe(join(call.platform.dataDir, 'recordings', done.recording_assets[0].path));
    assert.ok(got.duration > ran - 3, `the MP4 lasts ${got.duration} s of the job's ${ran} s`);
    const sessions = await api('GET', `/v2/sessions?room_id=${room.id}&active=false`);
    assert.deepEqual(sessions.data.map((s) => Object.values(s.peers).map((p) => p.name).sort()), [['alice', 'bob']], `one session, both peers in it: ${JSON.stringify(sessions)}`);
  }));
