// Recording and streaming started from the official SDK (the demo's `hmsActions`), and the
// states its selectors show: a host's startRTMPOrRecording({record: true}) makes a composite
// job that selectRecordingState().browser.running shows on every page, a peer joining later
// included (its peer-list carries the room's live jobs); stopRTMPAndRecording() ends it and
// the job completes with a room-composite asset. startHLSStreaming() makes a live stream whose
// playback URL selectHLSState() shows; a guest (no hlsStreaming) is refused; a viewer page
// plays the stream with 100ms's HLS player and shows the timed metadata it fires, sent over REST
// and through the SDK.
// A role like 100ms's hls-viewer (nothing to publish or subscribe to) gets the viewer page by
// itself, and a stream that started before it joined plays at once (its peer-list says so).
// RTMP is started and stopped with the demo's own URL field and button, and selectRTMPState
// follows on every page.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor, withCall } from './harness.mjs';

const T = { timeout: 240_000 };

/** Runs an SDK action in the page: `'ok'`, or the error's code and message. */
function act(peer, body) {
  return peer.page.evaluate(`(async () => {
    const actions = window.__hms.actions;
    try { await (${body})(actions); return 'ok'; }
    catch (e) { return { code: e.code, message: e.message, description: e.description }; }
  })()`);
}

const browserRecording = (peer) => peer.state((s, sel) => sel.selectRecordingState(s).browser);
const hlsState = (peer) => peer.state((s, sel) => {
  const h = sel.selectHLSState(s);
  return { running: h.running, variants: (h.variants || []).map((v) => ({ url: v.url, state: v.state })) };
});

function waitRecording(peer, running, timeout = 20_000) {
  return waitFor(`${peer.name} to see browser recording running=${running}`, async () => {
    const r = await browserRecording(peer);
    return r.running === running ? r : null;
  }, { timeout });
}

/** The room's only job of a REST family (`recordings`, `live-streams`), once there is one. */
async function onlyJob(api, family, roomId) {
  return waitFor(`a ${family} job in the room`, async () => {
    const page = await api('GET', `/v2/${family}?room_id=${roomId}`);
    const jobs = page.data || [];
    assert.ok(jobs.length <= 1, JSON.stringify(jobs));
    return jobs[0];
  });
}

async function waitStatus(api, family, id, status, timeout = 30_000) {
  return waitFor(`${family} ${id} to be ${status}`, async () => {
    const r = await api('GET', `/v2/${family}/${id}`);
    if (r.status === 'failed' && status !== 'failed') throw Object.assign(new Error(`job failed: ${JSON.stringify(r.error)}`), { fatal: true });
    return r.status === status ? r : null;
  }, { timeout });
}

test('composite recording from the SDK: every page, a late joiner too, sees it; the stop completes the job', T, (t) =>
  withCall(t, async (call) => {
    const api = call.platform.api;
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    await alice.waitForPeer('bob');
    const room = await api('POST', '/v2/rooms', { name: call.room });
    assert.equal((await browserRecording(alice)).running, false);

    // A guest may not record.
    const refused = await act(bob, (a) => a.startRTMPOrRecording({ record: true }));
    assert.equal(refused.code, 403, JSON.stringify(refused));
    assert.match(`${refused.message} ${refused.description}`, /browserRecording/);

    assert.equal(await act(alice, (a) => a.startRTMPOrRecording({ record: true })), 'ok');
    await waitRecording(alice, true);
    await waitRecording(bob, true);
    const job = await onlyJob(api, 'recordings', room.id);
    assert.deepEqual(job.asset_types, ['room-composite']);
    assert.equal(job.started_by, await alice.localPeerId());
    await waitStatus(api, 'recordings', job.id, 'running');
    // The SDK shows `started` once the compositor runs the job.
    await waitFor('alice to see the recording started', async () => (await browserRecording(alice)).state === 'started');
    assert.equal(await alice.page.textContent('#recording-state'), 'on');

    const carol = await call.join({ name: 'carol', role: 'guest' });
    const late = await waitRecording(carol, true, 5_000);
    assert.equal(late.state, 'started', JSON.stringify(late));
    assert.equal(await act(alice, (a) => a.startRTMPOrRecording({ record: true })).then((r) => r.code), 409);

    await new Promise((r) => setTimeout(r, 5_000));
    assert.equal(await act(alice, (a) => a.stopRTMPAndRecording()), 'ok');
    await waitRecording(alice, false);
    await waitRecording(bob, false);
    await waitRecording(carol, false);
    const done = await waitStatus(api, 'recordings', job.id, 'completed');
    assert.equal(done.stopped_by, await alice.localPeerId());
    assert.ok(done.recording_assets.some((a) => a.type === 'room-composite' && a.size > 0), JSON.stringify(done.recording_assets));
  }));

test('HLS from the SDK: the playback URL in selectHLSState, a viewer plays it and gets timed metadata', T, (t) =>
  withCall(t, async (call) => {
    const api = call.platform.api;
    const alice = await call.join({ name: 'alice', role: 'host' });
    const room = await api('POST', '/v2/rooms', { name: call.room });
    const viewer = await call.join({ name: 'vic', role: 'guest', mode: 'viewer' });

    const refused = await act(viewer, (a) => a.startHLSStreaming());
    assert.equal(refused.code, 403, JSON.stringify(refused));
    assert.match(`${refused.message} ${refused.description}`, /hlsStreaming/);

    assert.equal(await act(alice, (a) => a.startHLSStreaming()), 'ok');
    const stream = await onlyJob(api, 'live-streams', room.id);
    const running = await waitStatus(api, 'live-streams', stream.id, 'running', 45_000);
    assert.equal(running.started_by, await alice.localPeerId());
    for (const peer of [alice, viewer]) {
      const seen = await waitFor(`${peer.name} to see HLS started`, async () => {
        const h = await hlsState(peer);
        return h.running && h.variants[0]?.state === 'started' ? h : null;
      });
      assert.equal(seen.variants[0].url, running.playback.url);
    }

    // The viewer page plays the stream: time goes on and frames are decoded.
    assert.equal(await viewer.page.isVisible('#hls-player'), true);
    const playback = () => viewer.page.evaluate(() => {
      const v = document.getElementById('hls-player');
      return { time: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames, src: v.currentSrc };
    });
    const first = await waitFor('the viewer to decode frames', async () => {
      const p = await playback();
      return p.frames > 0 && p.time > 0 ? p : null;
    }, { timeout: 45_000 });
    const later = await waitFor('the viewer\'s playback to advance', async () => {
      const p = await playback();
      return p.time > first.time + 2 && p.frames > first.frames ? p : null;
    }, { timeout: 20_000 });
    t.diagnostic(`viewer: ${JSON.stringify(first)} → ${JSON.stringify(later)}`);

    // Timed metadata over REST, and from the host's SDK: both become cues on the viewer's page.
    await api('POST', `/v2/live-streams/${stream.id}/timed-metadata`, { payload: 'from-rest', duration: 30 });
    assert.equal(await act(alice, (a) => a.sendHLSTimedMetadata([{ payload: 'from-sdk', duration: 30 }])), 'ok');
    for (const payload of ['from-rest', 'from-sdk']) {
      await waitFor(`the viewer to show the cue ${payload}`, () => viewer.page.evaluate(
        (p) => window.__cues.some((c) => c.payload === p) && [...document.querySelectorAll('#cues li')].some((li) => li.textContent.includes(p)),
        payload,
      ), { timeout: 45_000 });
    }
    const refusedCue = await act(viewer, (a) => a.sendHLSTimedMetadata([{ payload: 'x', duration: 5 }]));
    assert.equal(refusedCue.code, 403, JSON.stringify(refusedCue));

    assert.equal(await act(alice, (a) => a.stopHLSStreaming()), 'ok');
    for (const peer of [alice, viewer]) {
      await waitFor(`${peer.name} to see HLS stopped`, async () => !(await hlsState(peer)).running);
    }
    await waitStatus(api, 'live-streams', stream.id, 'completed');
  }));

test('a role that neither publishes nor subscribes gets the HLS viewer, and a stream started before it joined', T, (t) =>
  withCall(t, async (call) => {
    const api = call.platform.api;
    // 100ms's hls-viewer: nothing to publish, nobody to subscribe to, no permissions.
    const templates = await api('GET', '/v2/templates');
    const template = (templates.data || templates)[0];
    await api('POST', `/v2/templates/${template.id}/roles/viewer`, {
      publishParams: { allowed: [] },
      subscribeParams: { subscribeToRoles: [] },
      permissions: Object.fromEntries(['endRoom', 'removeOthers', 'mute', 'unmute', 'changeRole', 'hlsStreaming',
        'rtmpStreaming', 'browserRecording', 'pollWrite'].map((p) => [p, false])),
    });
    const alice = await call.join({ name: 'alice', role: 'host' });
    const room = await api('POST', '/v2/rooms', { name: call.room });
    assert.equal(await act(alice, (a) => a.startHLSStreaming()), 'ok');
    const stream = await onlyJob(api, 'live-streams', room.id);
    const running = await waitStatus(api, 'live-streams', stream.id, 'running', 45_000);

    const viewer = await call.join({ name: 'vic', role: 'viewer' });
    // Its peer-list already says the stream runs, with its URL.
    const seen = await hlsState(viewer);
    assert.equal(seen.running, true, JSON.stringify(seen));
    assert.equal(seen.variants[0]?.url, running.playback.url);
    assert.equal(await viewer.page.isVisible('#viewer'), true);
    assert.equal(await viewer.page.isVisible('#grid'), false);
    const frames = await waitFor('the viewer to decode frames', () => viewer.page.evaluate(() => {
      const v = document.getElementById('hls-player');
      const n = v.getVideoPlaybackQuality().totalVideoFrames;
      return n > 10 && v.currentTime > 0 ? n : 0;
    }), { timeout: 45_000 });
    t.diagnostic(`viewer decoded ${frames} frames`);
    const refused = await act(viewer, (a) => a.startRTMPOrRecording({ rtmpURLs: ['rtmp://127.0.0.1/live/x'], record: false }));
    assert.equal(refused.code, 403, JSON.stringify(refused));
    assert.match(`${refused.message} ${refused.description}`, /rtmpStreaming/);
    assert.equal(await act(alice, (a) => a.stopHLSStreaming()), 'ok');
    await waitFor('the viewer to see HLS stopped', async () => !(await hlsState(viewer)).running);
  }));

test('RTMP from the demo\'s controls: selectRTMPState on every page, a bad URL refused, the stop completes it', T, (t) =>
  withCall(t, async (call) => {
    const api = call.platform.api;
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    await alice.waitForPeer('bob');
    const room = await api('POST', '/v2/rooms', { name: call.room });
    const rtmp = (peer) => peer.state((s, sel) => {
      const r = sel.selectRTMPState(s);
      return { running: r.running, state: r.state };
    });

    const bad = await act(alice, (a) => a.startRTMPOrRecording({ rtmpURLs: ['http://127.0.0.1/live'], record: false }));
    assert.equal(bad.code, 400, JSON.stringify(bad));
    assert.equal(await bob.page.isVisible('#rtmp-controls'), false, 'a guest has no RTMP controls');

    // Nothing listens there: the compositor streams on, retrying the destination, as it would
    // for a server that is down; the job and its state do not depend on it.
    const url = 'rtmp://127.0.0.1:9/live/sdk-test';
    await alice.page.fill('#rtmp-url', url);
    await alice.click('#toggle-rtmp');
    const job = await onlyJob(api, 'external-streams', room.id);
    assert.deepEqual(job.rtmp_urls, [url]);
    await waitStatus(api, 'external-streams', job.id, 'running');
    for (const peer of [alice, bob]) {
      await waitFor(`${peer.name} to see RTMP started`, async () => {
        const r = await rtmp(peer);
        return r.running && r.state === 'started';
      });
    }
    await waitFor('the demo to show RTMP on', async () => (await bob.page.textContent('#rtmp-state')) === 'on');
    assert.equal((await browserRecording(bob)).running, false, 'an RTMP stream that does not record is no recording');

    await alice.click('#toggle-rtmp');
    for (const peer of [alice, bob]) {
      await waitFor(`${peer.name} to see RTMP stopped`, async () => !(await rtmp(peer)).running);
    }
    const done = await waitStatus(api, 'external-streams', job.id, 'completed');
    assert.equal(done.stopped_by, await alice.localPeerId());
  }));
