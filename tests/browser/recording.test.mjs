// Track recording through the REST API, checked with a real decoder: two Chromium peers send
// audio and video, the recording is started and stopped over /v2/recordings, and Debian's
// ffprobe/ffmpeg decode every recorded file (duration and frame count compared with what was
// recorded and what the browser encoded). The same with a role that publishes H.264 (MP4
// files). Then: the recorder killed mid-recording, and a recordings directory that cannot be
// written.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { test } from 'node:test';
import { sleep, waitFor, withCall } from './harness.mjs';

const T = { timeout: 240_000 };

/** ffprobe's duration and decoded frame count; `ffmpeg -f null` must decode with no message. */
function decode(path) {
  const err = execFileSync('ffmpeg', ['-v', 'error', '-i', path, '-f', 'null', '-'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(err, '', `ffmpeg decodes ${path} without a message`);
  const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-show_entries',
    'format=duration:stream=nb_read_frames,width,height,codec_name', '-of', 'json', path], { encoding: 'utf8' }));
  return {
    duration: Number(probe.format.duration),
    frames: Number(probe.streams[0].nb_read_frames),
    width: probe.streams[0].width,
    codec: probe.streams[0].codec_name,
  };
}

/** The raw bytes of an https GET (self-signed certificate accepted). */
function download(url) {
  return new Promise((resolve, reject) => {
    request(url, { rejectUnauthorized: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject).end();
  });
}

/** framesEncoded per encoding of a peer's camera, keyed by width (the layer the recorder takes is the widest). */
async function encodedByWidth(peer) {
  const out = {};
  for (const s of await peer.outbound()) if (s.kind === 'video' && s.frameWidth) out[s.frameWidth] = s.framesEncoded;
  return out;
}

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

async function waitStatus(platform, id, status, timeout = 20_000) {
  return waitFor(`recording ${id} to be ${status}`, async () => {
    const r = await platform.api('GET', `/v2/recordings/${id}`);
    if (r.status === 'failed' && status !== 'failed') throw Object.assign(new Error(`recording failed: ${JSON.stringify(r.error)}`), { fatal: true });
    return r.status === status ? r : null;
  }, { timeout });
}

/**
 * Records a started call for `seconds` over REST and checks every file: it decodes, with the
 * recorded duration, and each video file has `codec` and the frame count the browser encoded.
 * Returns the completed job's assets.
 */
async function recordAndCheck(t, call, { alice, bob, room }, { seconds, codec }) {
  const before = { alice: await encodedByWidth(alice), bob: await encodedByWidth(bob) };
  const started = Date.now();
  const job = await call.platform.api('POST', `/v2/recordings/room/${room.id}/start`, { kind: 'track' });
  assert.equal(job.status, 'starting');
  await waitStatus(call.platform, job.id, 'running');
  await sleep(seconds * 1000);
  // The stop returns once the router stopped copying: frames encoded from before the start to
  // after the stop enclose what the files can hold.
  const stopped = await call.platform.api('POST', `/v2/recordings/${job.id}/stop`, {});
  const recorded = (Date.now() - started) / 1000;
  const after = { alice: await encodedByWidth(alice), bob: await encodedByWidth(bob) };
  assert.equal(stopped.status, 'stopping');
  const done = await waitStatus(call.platform, job.id, 'completed');
  const assets = done.recording_assets;
  assert.equal(assets.length, 4, `two tracks per peer: ${JSON.stringify(assets.map((a) => a.path))}`);

  const list = await call.platform.api('GET', `/v2/recording-assets?room_id=${room.id}`);
  assert.equal(list.data.length, 4);
  const peers = new Set(assets.map((a) => a.metadata.peer_id));
  assert.equal(peers.size, 2, 'both peers recorded');
  for (const a of assets) {
    assert.equal(a.type, 'track');
    assert.ok(a.metadata.track_id && a.metadata.stream_id, 'metadata names the track and stream');
    const path = join(call.platform.dataDir, 'recordings', a.path);
    const got = decode(path);
    t.diagnostic(`${a.path}: ${got.codec} ${got.duration.toFixed(2)} s, ${got.frames} frames, asset says ${a.duration} s`);
    assert.ok(Math.abs(got.duration - recorded) / recorded < 0.05, `${a.path}: ${got.duration} s recorded vs ${recorded} s`);
    if (a.metadata.track_type === 'video') {
      assert.equal(got.codec, codec);
      const who = (await alice.localPeerId()) === a.metadata.peer_id ? 'alice' : 'bob';
      const sent = (after[who][got.width] ?? 0) - (before[who][got.width] ?? 0);
      t.diagnostic(`${who} encoded ${sent} frames at width ${got.width} while recording`);
      assert.ok(sent > 0, `${who} sent frames at ${got.width}`);
      assert.ok(Math.abs(got.frames - sent) / sent < 0.05, `${a.path}: ${got.frames} frames decoded, ${who} encoded ${sent}`);
    } else {
      assert.equal(got.codec, 'opus');
    }
  }
  return assets;
}

test('a 20 s call recorded over REST: every file decodes, with the recorded duration and the sent frame count', T, (t) =>
  withCall(t, async (call) => {
    const started = await startedCall(call);
    const assets = await recordAndCheck(t, call, started, { seconds: 20, codec: 'vp8' });
    // Download over HTTP with the presigned URL; a tampered signature is refused.
    const signed = await call.platform.api('GET', `/v2/recording-assets/${assets[0].id}/presigned-url?presign_duration=60`);
    const file = await download(signed.url);
    assert.equal(file.status, 200);
    assert.deepEqual(file.body, readFileSync(join(call.platform.dataDir, 'recordings', assets[0].path)));
    // The first hex digit changed (to another one: a signature may start with 0 already).
    const bad = await download(signed.url.replace(/signature=(.)/, (_, c) => `signature=${c === '0' ? '1' : '0'}`));
    assert.equal(bad.status, 403);
  }));

test('a role that publishes H.264: Chromium sends it, the recorder writes fragmented MP4 that decodes', T, (t) =>
  withCall(t, async (call) => {
    const templates = await call.platform.api('GET', '/v2/templates');
    const template = (templates.data || templates).find((x) => x.name === 'default') || (templates.data || templates)[0];
    const role = await call.platform.api('GET', `/v2/templates/${template.id}/roles/host`);
    role.publishParams.video.codec = 'h264';
    await call.platform.api('POST', `/v2/templates/${template.id}/roles/host`, role);
    const started = await startedCall(call);
    const sending = (await started.alice.outbound()).filter((s) => s.kind === 'video' && s.framesEncoded > 0);
    t.diagnostic(`alice sends ${JSON.stringify(sending.map((s) => [s.codec, s.encoderImplementation, s.frameWidth]))}`);
    assert.ok(sending.length && sending.every((s) => s.codec === 'video/H264'), 'the publish answer chose H.264');
    const assets = await recordAndCheck(t, call, started, { seconds: 12, codec: 'h264' });
    const video = assets.filter((a) => a.metadata.track_type === 'video');
    assert.ok(video.every((a) => a.path.endsWith('.mp4')), JSON.stringify(video.map((a) => a.path)));
    const signed = await call.platform.api('GET', `/v2/recording-assets/${video[0].id}/presigned-url?presign_duration=60`);
    const file = await download(signed.url);
    assert.equal(file.status, 200);
    assert.equal(file.headers['content-type'], 'video/mp4');
  }));

test('the recorder killed 10 s in: the call goes on, the first part decodes, a second part follows', T, (t) =>
  withCall(t, async (call) => {
    const { bob, room, aliceVideo } = await startedCall(call);
    const job = await call.platform.api('POST', `/v2/recordings/room/${room.id}/start`, { kind: 'track' });
    await waitStatus(call.platform, job.id, 'running');
    await sleep(10_000);
    const pid = (await call.platform.status()).processes.recorder.pid;
    assert.ok(pid > 0, 'the recorder runs');
    process.kill(pid, 'SIGKILL');
    // The router never waits for the recorder: bob keeps decoding alice.
    await bob.expectFlowing(aliceVideo, 'framesDecoded', { window: 3_000, what: 'alice\'s video after the kill' });
    await waitFor('the recorder to be restarted', async () => {
      const p = (await call.platform.status()).processes.recorder;
      return p.pid && p.pid !== pid ? p : null;
    }, { timeout: 15_000 });
    await sleep(6_000);
    await call.platform.api('POST', `/v2/recordings/room/${room.id}/stop`, {});
    const done = await waitStatus(call.platform, job.id, 'completed');
    const video = done.recording_assets.filter((a) => a.metadata.track_type === 'video' && a.metadata.peer_id === done.recording_assets.find((x) => x.metadata.track_type === 'video').metadata.peer_id);
    const parts = video.map((a) => a.metadata.part).sort();
    t.diagnostic(`video parts of one peer: ${JSON.stringify(video.map((a) => [a.metadata.part, a.duration, a.path]))}`);
    assert.deepEqual(parts, [1, 2], 'the part before the kill and the part after are both listed');
    for (const a of done.recording_assets) {
      const got = decode(join(call.platform.dataDir, 'recordings', a.path));
      assert.ok(got.duration > 2, `${a.path} holds ${got.duration} s`);
    }
  }));

test('an unwritable recordings directory fails the recording with a reason; the call is unaffected', T, (t) => {
  // A regular file where the directory should be: no directory can be made under it (even as root).
  const blocker = join(process.env.TMPDIR || '/tmp', `not-a-dir-${process.pid}`);
  writeFileSync(blocker, 'x');
  return withCall(t, async (call) => {
    const { bob, room, aliceVideo } = await startedCall(call);
    const job = await call.platform.api('POST', `/v2/recordings/room/${room.id}/start`, { kind: 'track' });
    const failed = await waitStatus(call.platform, job.id, 'failed');
    t.diagnostic(`reason: ${failed.error.message}`);
    assert.match(failed.error.message, /cannot create .*not-a-dir.*Not a directory/i);
    await bob.expectFlowing(aliceVideo, 'framesDecoded', { what: 'alice\'s video after the failure' });
    const events = await call.platform.api('GET', '/v2/webhooks/events?limit=100');
    const types = (events.data || events.events || []).map((e) => e.type);
    assert.ok(types.includes('recording.failed'), `a recording.failed webhook event: ${JSON.stringify(types)}`);
  }, { platformArgs: ['--recordings-dir', join(blocker, 'recordings')] });
});

test('a template with trackRecording enabled records each session by itself, until the session ends', T, (t) =>
  withCall(t, async (call) => {
    const templates = await call.platform.api('GET', '/v2/templates');
    const template = (templates.data || templates).find((x) => x.name === 'default') || (templates.data || templates)[0];
    await call.platform.api('POST', `/v2/templates/${template.id}/recordings`, [{ name: 'tracks', trackRecording: { enabled: true } }]);
    await call.join({ name: 'alice', role: 'host' });
    const room = await call.platform.api('POST', '/v2/rooms', { name: call.room });
    const job = await waitFor('a job started with the session', async () => {
      const list = await call.platform.api('GET', `/v2/recordings?room_id=${room.id}`);
      return list.data.find((j) => j.status === 'running') || null;
    }, { timeout: 20_000 });
    assert.equal(job.started_by, '', 'started by the server, not a peer');
    await sleep(4_000);
    await call.platform.api('POST', `/v2/active-rooms/${room.id}/end-room`, { reason: 'done' });
    const done = await waitStatus(call.platform, job.id, 'completed');
    t.diagnostic(`assets: ${JSON.stringify(done.recording_assets.map((a) => [a.metadata.track_type, a.duration]))}`);
    assert.ok(done.recording_assets.length >= 2, 'audio and video of the one peer');
    for (const a of done.recording_assets) decode(join(call.platform.dataDir, 'recordings', a.path));
  }));
