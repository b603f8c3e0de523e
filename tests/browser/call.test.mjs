// End-to-end: the demo app (official 100ms SDK) in headless Chromium against the real platform.
// One scenario per test, each on its own platform and browser (harness.mjs). Media is proven
// with getStats() on the recorded peer connections: video frames decoded, audio packets received.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sleep, transportCount, waitFor, withCall } from './harness.mjs';

const T = { timeout: 150_000 };

/** Asserts `viewer` decodes `name`'s camera and receives its audio; returns the video stats. */
async function expectMediaFrom(viewer, name) {
  const p = await viewer.waitForPeer(name, (p) => p.video?.id && p.audio?.id);
  const video = await viewer.expectFlowing(p.video.id, 'framesDecoded', { what: `${name}'s video` });
  await viewer.expectFlowing(p.audio.id, 'packetsReceived', { what: `${name}'s audio` });
  return video;
}

/** The received frame size matches what the publisher captures (same aspect, no larger). */
async function expectFrameSizeFrom(viewer, publisher, stats) {
  const capture = await publisher.localCaptureSettings();
  assert.ok(capture?.width && capture?.height, `${publisher.name} has a local camera track with a size`);
  assert.ok(stats.frameWidth > 0 && stats.frameHeight > 0, `${viewer.name} reports a frame size for ${publisher.name}`);
  const got = stats.frameWidth / stats.frameHeight;
  const want = capture.width / capture.height;
  assert.ok(
    Math.abs(got - want) < 0.02 && stats.frameWidth <= capture.width,
    `${viewer.name} decodes ${stats.frameWidth}x${stats.frameHeight} from ${publisher.name}, which captures ${capture.width}x${capture.height}`,
  );
}

test('two peers each decode the other\'s video and receive its audio', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });

    const bobSeesAlice = await expectMediaFrom(bob, 'alice');
    const aliceSeesBob = await expectMediaFrom(alice, 'bob');
    await expectFrameSizeFrom(bob, alice, bobSeesAlice);
    await expectFrameSizeFrom(alice, bob, aliceSeesBob);
    t.diagnostic(`bob decodes alice at ${bobSeesAlice.frameWidth}x${bobSeesAlice.frameHeight}; alice decodes bob at ${aliceSeesBob.frameWidth}x${aliceSeesBob.frameHeight}`);
  }));

test('a peer joining later receives both existing peers\' tracks', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    await expectMediaFrom(bob, 'alice');
    await expectMediaFrom(alice, 'bob');

    const carol = await call.join({ name: 'carol', role: 'guest' });
    await expectMediaFrom(carol, 'alice');
    await expectMediaFrom(carol, 'bob');
    // And the existing peers get the newcomer.
    await expectMediaFrom(alice, 'carol');
    await expectMediaFrom(bob, 'carol');
  }));

test('muting the microphone shows as a disabled audio track at the other peer', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    const before = await bob.waitForPeer('alice', (p) => p.audio?.id);
    assert.equal(before.audio.enabled, true, 'alice\'s audio starts enabled at bob');

    await alice.click('#toggle-audio');
    await bob.waitForPeer('alice', (p) => p.audio?.enabled === false, { timeout: 10_000 });
    // The demo shows it too.
    await waitFor('bob\'s tile for alice to show "mic off"', () =>
      bob.page.evaluate((id) => {
        const badge = document.querySelector(`.tile[data-kind="camera"][data-peer-id="${id}"] .mic-off`);
        return badge && !badge.hidden;
      }, before.id), { timeout: 5_000 });

    await alice.click('#toggle-audio');
    await bob.waitForPeer('alice', (p) => p.audio?.enabled === true, { timeout: 10_000 });
  }));

test('a host\'s screenshare reaches the other peer as an extra video track', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    await expectMediaFrom(bob, 'alice');

    await alice.click('#toggle-screen');
    await waitFor('alice\'s store to say she is sharing', () => alice.state((s, sel) => sel.selectIsLocalScreenShared(s)), { timeout: 15_000 });

    const seen = await bob.waitForPeer('alice', (p) => p.aux.some((a) => a.type === 'video' && a.source === 'screen'), { timeout: 15_000 });
    const screen = seen.aux.find((a) => a.type === 'video' && a.source === 'screen');
    assert.notEqual(screen.id, seen.video.id, 'the screen is a track of its own, besides the camera');
    await waitFor('bob\'s screen tile for alice', () =>
      bob.page.evaluate((id) => !!document.querySelector(`.tile[data-kind="screen"][data-track-id="${id}"]`), screen.id), { timeout: 5_000 });
    await bob.expectFlowing(screen.id, 'framesDecoded', { what: 'alice\'s screen' });
    // The camera keeps going alongside it.
    await bob.expectFlowing(seen.video.id, 'framesDecoded', { what: 'alice\'s camera' });

    await alice.click('#toggle-screen');
    await bob.waitForPeer('alice', (p) => !p.aux.some((a) => a.source === 'screen'), { timeout: 15_000 });
  }));

test('a peer that leaves disappears from the others and its transports close', T, (t) =>
  withCall(t, async (call) => {
    const sock = call.platform.routerSocket;
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    await expectMediaFrom(bob, 'alice');
    await expectMediaFrom(alice, 'bob');
    const twoPeers = await transportCount(sock);
    assert.ok(twoPeers > 0, `the router has transports for two peers (${twoPeers})`);

    const carol = await call.join({ name: 'carol', role: 'guest' });
    await expectMediaFrom(alice, 'carol');
    await expectMediaFrom(carol, 'alice');
    const threePeers = await waitFor('carol\'s transports in the router', async () => {
      const n = await transportCount(sock);
      return n > twoPeers ? n : null;
    }, { timeout: 10_000 });

    await carol.click('#leave');
    await carol.waitForRoomState('Disconnected', { timeout: 10_000 });
    for (const other of [alice, bob]) {
      await waitFor(`${other.name} to drop carol from the peer list`, async () => !(await other.peerNamed('carol')), { timeout: 10_000 });
    }
    await waitFor(`the router's transport count back to ${twoPeers} (from ${threePeers})`, async () => (await transportCount(sock)) === twoPeers, { timeout: 15_000 });
    // The two who stayed still hear and see each other.
    await expectMediaFrom(alice, 'bob');
  }));

test('a chat message reaches the other peer once, and is not duplicated at the sender', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    await bob.waitForPeer('alice');
    await alice.waitForPeer('bob');

    const text = `hello from alice ${Date.now()}`;
    await alice.page.fill('#chat-input', text);
    await alice.click('#chat-send');

    const messagesWith = (peer) =>
      peer.state((s, sel, want) => sel.selectHMSMessages(s).filter((m) => m.message === want).map((m) => ({ id: m.id, senderName: m.senderName })), text);
    const atBob = await waitFor('bob to receive the message', async () => {
      const ms = await messagesWith(bob);
      return ms.length ? ms : null;
    }, { timeout: 10_000 });
    assert.equal(atBob[0].senderName, 'alice');
    await waitFor('the message in bob\'s chat panel', () =>
      bob.page.evaluate((want) => [...document.querySelectorAll('#messages li .text')].some((el) => el.textContent === want), text), { timeout: 5_000 });

    // Give an echo time to arrive, then count.
    await sleep(1_500);
    assert.equal((await messagesWith(alice)).length, 1, 'alice has her message exactly once');
    assert.equal((await messagesWith(bob)).length, 1, 'bob has the message exactly once');
  }));

test('an audio-only peer publishes audio and no video', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const dave = await call.join({ name: 'dave', role: 'audio-only' });

    const seen = await alice.waitForPeer('dave', (p) => p.audio?.id);
    await alice.expectFlowing(seen.audio.id, 'packetsReceived', { what: 'dave\'s audio' });
    // dave hears and sees alice.
    await expectMediaFrom(dave, 'alice');

    // Give a stray video track time to show up, then check there is none.
    await sleep(2_000);
    const again = await alice.peerNamed('dave');
    assert.equal(again.video, null, 'dave has no camera track at alice');
    assert.deepEqual(again.aux.filter((a) => a.type === 'video'), [], 'dave has no other video track at alice');
    const daveLocal = await dave.state((s, sel) => ({ video: sel.selectLocalVideoTrackID(s) ?? null, role: sel.selectLocalPeerRoleName(s) }));
    assert.equal(daveLocal.role, 'audio-only');
    assert.equal(daveLocal.video, null, 'dave\'s own store has no local video track');
    const out = await dave.outbound();
    assert.ok(out.some((s) => s.kind === 'audio' && s.packetsSent > 0), 'dave sends audio');
    assert.ok(!out.some((s) => s.kind === 'video' && s.packetsSent > 0), `dave sends no video: ${JSON.stringify(out)}`);
  }));

test('media keeps flowing while signaling is killed, and the SDK reconnects', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    const aliceAtBob = await bob.waitForPeer('alice', (p) => p.video?.id);
    const bobAtAlice = await alice.waitForPeer('bob', (p) => p.video?.id);
    await bob.expectFlowing(aliceAtBob.video.id, 'framesDecoded');
    await alice.expectFlowing(bobAtAlice.video.id, 'framesDecoded');

    const before = (await call.platform.status()).processes.signaling;
    assert.ok(before?.pid > 0, `/api/status names the signaling pid: ${JSON.stringify(before)}`);
    const decoded = async () => [
      (await bob.inboundFor(aliceAtBob.video.id))?.framesDecoded ?? 0,
      (await alice.inboundFor(bobAtAlice.video.id))?.framesDecoded ?? 0,
    ];
    const start = await decoded();
    process.kill(before.pid, 'SIGKILL');
    t.diagnostic(`killed signaling pid ${before.pid}`);

    // During the outage (before signaling is back and the SDK has recovered): frames keep coming.
    const states = new Set();
    let last = start;
    for (let i = 0; i < 4; i++) {
      await sleep(750);
      states.add(await alice.roomState());
      states.add(await bob.roomState());
      const now = await decoded();
      assert.ok(now[0] > last[0], `bob keeps decoding alice during the outage (${last[0]} → ${now[0]})`);
      assert.ok(now[1] > last[1], `alice keeps decoding bob during the outage (${last[1]} → ${now[1]})`);
      last = now;
    }
    t.diagnostic(`room states seen during the outage: ${[...states].join(', ')}`);

    const after = await waitFor('signaling to be restarted with a new pid', async () => {
      const s = (await call.platform.status()).processes.signaling;
      return s?.pid > 0 && s.pid !== before.pid ? s : null;
    }, { timeout: 20_000 });
    assert.ok(after.restarts >= (before.restarts ?? 0) + 1, `restart counted: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);

    // The SDK notices (socket closed or 12 s without a pong) and reconnects within its 60 s budget.
    await alice.waitForRoomState('Connected', { timeout: 60_000 });
    await bob.waitForRoomState('Connected', { timeout: 60_000 });
    // Stable, not a flicker through Connected on the way to Failed.
    await sleep(3_000);
    assert.equal(await alice.roomState(), 'Connected');
    assert.equal(await bob.roomState(), 'Connected');
    await alice.waitForPeer('bob', undefined, { timeout: 10_000 });
    await bob.waitForPeer('alice', undefined, { timeout: 10_000 });
    // And media still flows after the reconnection.
    const bobNow = await bob.waitForPeer('alice', (p) => p.video?.id);
    const aliceNow = await alice.waitForPeer('bob', (p) => p.video?.id);
    await bob.expectFlowing(bobNow.video.id, 'framesDecoded', { what: 'alice\'s video after reconnect' });
    await alice.expectFlowing(aliceNow.video.id, 'framesDecoded', { what: 'bob\'s video after reconnect' });
  }));
