// WHIP and WHEP: a publisher and a player that are not the 100ms SDK, only a Chromium page with
// `fetch` and `RTCPeerConnection`, against signaling's /whip and /whep. The SDK subscriber
// sees and hears the WHIP publisher as an ordinary peer; the WHEP page plays an SDK peer's
// camera in a <video>; bad requests get their statuses.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { CONTROL_BIN, waitFor, withCall } from './harness.mjs';

const T = { timeout: 150_000 };

/** An auth token for `room` (a room name) as `role`. */
function authToken(platform, room, role, user) {
  return execFileSync(CONTROL_BIN, ['token', '--data-dir', platform.dataDir, '--room', room, '--role', role, '--user', user], { encoding: 'utf8' }).trim();
}

/** A bare page on the platform's origin (a secure context for getUserMedia), in its own context. */
async function barePage(call) {
  const context = await call.browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(new URL('/api/config', call.platform.demoUrl).href);
  const { initEndpoint } = JSON.parse(await page.evaluate(() => document.body.innerText));
  return { context, page, base: initEndpoint.replace(/\/$/, '') };
}

/** One HTTP request from the page: its status and body. */
function request(page, url, { method = 'POST', token, type = 'application/sdp', body } = {}) {
  return page.evaluate(async ({ url, method, token, type, body }) => {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (type) headers['content-type'] = type;
    const r = await fetch(url, { method, headers, body });
    return { status: r.status, body: await r.text(), location: r.headers.get('location') };
  }, { url, method, token, type, body });
}

/** Publishes the page's fake camera and microphone over WHIP; resolves to the resource URL. */
function whipPublish(page, url, token) {
  return page.evaluate(async ({ url, token }) => {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
    const pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    await pc.setLocalDescription(await pc.createOffer());
    // No wait for candidates: the router is ICE-lite and learns the page's address from its checks.
    const r = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/sdp' }, body: pc.localDescription.sdp });
    const text = await r.text();
    if (r.status !== 201) throw new Error(`WHIP POST answered ${r.status}: ${text}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: text });
    window.__whip = pc;
    return new URL(r.headers.get('location'), url).href;
  }, { url, token });
}

/** Plays a room over WHEP in a <video>; resolves to the resource URL. */
function whepPlay(page, url, token) {
  return page.evaluate(async ({ url, token }) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    const stream = new MediaStream();
    pc.ontrack = (e) => {
      stream.addTrack(e.track);
      video.srcObject = stream;
    };
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/sdp' }, body: pc.localDescription.sdp });
    const text = await r.text();
    if (r.status !== 201) throw new Error(`WHEP POST answered ${r.status}: ${text}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: text });
    window.__whep = { pc, video };
    return new URL(r.headers.get('location'), url).href;
  }, { url, token });
}

test('a WHIP publisher that is a plain page is seen and heard by an SDK subscriber, and leaves on DELETE', T, (t) =>
  withCall(t, async (call) => {
    const bob = await call.join({ name: 'bob' });
    const { page, base } = await barePage(call);
    const token = authToken(call.platform, call.room, 'host', 'whip-page');
    const resource = await whipPublish(page, `${base}/whip?name=${encodeURIComponent('WHIP page')}`, token);
    t.diagnostic(`resource: ${resource}`);
    assert.match(resource, /\/whip\/[0-9a-f]+\/[0-9a-f]+$/);

    const p = await bob.waitForPeer('WHIP page', (p) => p.video?.id && p.audio?.id, { timeout: 20_000 });
    assert.equal(p.role, 'host', 'the WHIP peer has its token\'s role');
    await bob.expectFlowing(p.video.id, 'framesDecoded', { what: 'the WHIP page\'s video at bob' });
    await bob.expectFlowing(p.audio.id, 'packetsReceived', { what: 'the WHIP page\'s audio at bob' });

    // PATCH (trickle) is accepted; DELETE ends it, once.
    assert.equal((await request(page, resource, { method: 'PATCH', token, type: 'application/trickle-ice-sdpfrag', body: 'a=end-of-candidates\r\n' })).status, 204);
    const restart = 'a=ice-ufrag:R3st\r\na=ice-pwd:restartrestartrestart12\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n';
    assert.equal((await request(page, resource, { method: 'PATCH', token, type: 'application/trickle-ice-sdpfrag', body: restart })).status, 422, 'an ICE restart is refused as RFC 9725 says');
    assert.equal((await request(page, resource, { method: 'DELETE', token, type: null })).status, 200);
    await waitFor('the WHIP peer to leave bob\'s room', async () => !(await bob.peers()).some((x) => x.name === 'WHIP page'));
    assert.equal((await request(page, resource, { method: 'DELETE', token, type: null })).status, 404, 'a resource is deleted once');
  }));

test('a WHEP page plays an SDK peer\'s camera, and bad requests get their statuses', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice' });
    const { page, base } = await barePage(call);
    const guest = authToken(call.platform, call.room, 'guest', 'whep-page');
    const resource = await whepPlay(page, `${base}/whep`, guest);
    const played = await waitFor('the WHEP page to play video frames', () => page.evaluate(() => {
      const { video } = window.__whep;
      const frames = video.getVideoPlaybackQuality().totalVideoFrames;
      return video.videoWidth > 0 && frames > 30 ? { width: video.videoWidth, height: video.videoHeight, frames } : null;
    }), { timeout: 20_000 });
    const audio = await page.evaluate(async () => {
      let packets = 0;
      (await window.__whep.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') packets = r.packetsReceived;
      });
      return packets;
    });
    t.diagnostic(`WHEP played ${JSON.stringify(played)}, ${audio} audio packets`);
    assert.ok(audio > 0, 'the WHEP page receives alice\'s audio');
    assert.equal((await request(page, resource, { method: 'DELETE', token: guest, type: null })).status, 200);

    // Refusals, each with its status.
    const host = authToken(call.platform, call.room, 'host', 'someone');
    const audioOnly = authToken(call.platform, call.room, 'audio-only', 'someone-else');
    const offer = await page.evaluate(async () => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('audio', { direction: 'sendonly' });
      pc.addTransceiver('video', { direction: 'sendonly' });
      const o = await pc.createOffer();
      pc.close();
      return o.sdp;
    });
    const status = async (what, url, options) => {
      const r = await request(page, url, options);
      t.diagnostic(`${what}: ${r.status} ${r.body.trim()}`);
      return r.status;
    };
    assert.equal(await status('no bearer', `${base}/whip`, { body: offer }), 401);
    assert.equal(await status('a forged token', `${base}/whip`, { token: `${host.slice(0, -4)}AAAA`, body: offer }), 401);
    assert.equal(await status('not a token', `${base}/whep`, { token: 'nonsense', body: offer }), 401);
    assert.equal(await status('video for an audio-only role', `${base}/whip`, { token: audioOnly, body: offer }), 403);
    assert.equal(await status('malformed SDP', `${base}/whip`, { token: host, body: 'v=0\r\nthis is not SDP\r\n' }), 400);
    assert.equal(await status('not application/sdp', `${base}/whip`, { token: host, type: 'application/json', body: '{}' }), 415);
    assert.equal(await status('an unknown resource', resource.replace(/[0-9a-f]+$/, '000000000000000000000000'), { method: 'DELETE', token: host, type: null }), 404);
    assert.equal(await status('a resource of another room', resource.replace(/\/whep\/[0-9a-f]+\//, '/whep/000000000000000000000000/'), { method: 'DELETE', token: guest, type: null }), 404);
    assert.equal(await status('another user\'s resource', resource.replace('/whep/', '/whip/'), { method: 'DELETE', token: host, type: null }), 404);
    const empty = authToken(call.platform, `${call.room}-empty`, 'guest', 'early');
    assert.equal(await status('nothing to watch yet', `${base}/whep`, { token: empty, body: offer.replaceAll('a=sendonly', 'a=recvonly') }), 409);
  }));
