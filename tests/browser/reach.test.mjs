// Reaching clients on other networks: the official SDK in a Chromium whose network drops every
// UDP datagram (a network namespace with an nftables rule) joins a call with a peer on UDP, and
// each sees and hears the other. The selected ICE candidate pair in getStats says which path
// carried the media. Needs root for the namespaces.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchBrowser, within, withCall } from './harness.mjs';
import { blockTcpPorts, clientNetns, droppedUdp, natServerNetns, netnsAvailable } from './netns.mjs';

const T = { timeout: 150_000 };

/** The selected candidate pair of each live peer connection of `peer`'s page. */
export function selectedPairs(peer) {
  return peer.page.evaluate(async () => {
    const out = [];
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState !== 'connected') continue;
      const stats = await pc.getStats();
      let pair;
      stats.forEach((r) => {
        if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
      });
      if (!pair) continue;
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      out.push({
        local: { protocol: local?.protocol, type: local?.candidateType, relayProtocol: local?.relayProtocol ?? null },
        remote: { protocol: remote?.protocol, type: remote?.candidateType, address: remote?.address, port: remote?.port },
      });
    }
    return out;
  });
}

/** A room with codes for its roles (the SDK exchanges a code for a token, as 100ms's apps do). */
async function roomCodes(platform, name) {
  const room = await platform.api('POST', '/v2/rooms', { name });
  const codes = await platform.api('POST', `/v2/room-codes/room/${room.id}`, {});
  return Object.fromEntries(codes.data.map((c) => [c.role, c.code]));
}

/** Asserts `viewer` decodes `name`'s camera and receives its audio. */
async function expectMediaFrom(viewer, name) {
  const p = await viewer.waitForPeer(name, (p) => p.video?.id && p.audio?.id);
  await viewer.expectFlowing(p.video.id, 'framesDecoded', { what: `${name}'s video at ${viewer.name}` });
  await viewer.expectFlowing(p.audio.id, 'packetsReceived', { what: `${name}'s audio at ${viewer.name}` });
}

test('a browser whose network blocks UDP joins over ICE-TCP and sees and hears a peer on UDP', T, async (t) => {
  if (!netnsAvailable()) {
    t.skip('needs root, ip and nft for a network namespace');
    return;
  }
  const ns = clientNetns({ blockUdp: true });
  let nsBrowser;
  try {
    await withCall(t, async (call) => {
      nsBrowser = await launchBrowser([], ns.chromium);
      const codes = await roomCodes(call.platform, call.room);
      const alice = await call.join({ name: 'alice', code: codes.host });
      const bob = await call.join({ name: 'bob', code: codes.host, browser: nsBrowser });
      await expectMediaFrom(bob, 'alice');
      await expectMediaFrom(alice, 'bob');

      const bobPairs = await selectedPairs(bob);
      t.diagnostic(`bob's selected pairs: ${JSON.stringify(bobPairs)}`);
      assert.ok(bobPairs.length >= 1, 'bob has a connected peer connection');
      for (const p of bobPairs) {
        assert.equal(p.remote.protocol, 'tcp', `bob's media goes over ICE-TCP: ${JSON.stringify(p)}`);
        assert.equal(p.remote.address, ns.hostIp, `to the router's announced address: ${JSON.stringify(p)}`);
      }
      const alicePairs = await selectedPairs(alice);
      assert.ok(alicePairs.length >= 1 && alicePairs.every((p) => p.remote.protocol === 'udp'), `alice stays on UDP: ${JSON.stringify(alicePairs)}`);
      // The firewall did its part: bob's browser tried UDP and lost it.
      assert.ok(droppedUdp(ns) > 0, 'the namespace dropped none of bob\'s UDP: the test would not show anything');
      // ICE-TCP alone: no TURN to fall back on (the next test has TURN alone).
    }, { host: ns.hostIp, publicHost: ns.hostIp, platformArgs: ['--no-turn'] });
  } finally {
    if (nsBrowser) await within(15_000, 'closing Chromium', nsBrowser.close()).catch(() => {});
    ns.remove();
  }
});

test('a browser whose network allows only TLS relays over TURN/TLS and sees and hears a peer on UDP', T, async (t) => {
  if (!netnsAvailable()) {
    t.skip('needs root, ip and nft for a network namespace');
    return;
  }
  const ns = clientNetns({ blockUdp: true });
  let nsBrowser;
  try {
    await withCall(t, async (call) => {
      const { platform } = call;
      // No UDP, no ICE-TCP (off), no plain TURN over TCP: only TURN's TLS port and HTTPS.
      blockTcpPorts(ns, [platform.turnPort, platform.routerPort]);
      nsBrowser = await launchBrowser([], ns.chromium);
      const codes = await roomCodes(platform, call.room);
      const alice = await call.join({ name: 'alice', code: codes.host });
      const bob = await call.join({ name: 'bob', code: codes.host, browser: nsBrowser });
      await expectMediaFrom(bob, 'alice');
      await expectMediaFrom(alice, 'bob');

      const bobPairs = await selectedPairs(bob);
      t.diagnostic(`bob's selected pairs: ${JSON.stringify(bobPairs)}`);
      assert.ok(bobPairs.length >= 1, 'bob has a connected peer connection');
      for (const p of bobPairs) {
        assert.equal(p.local.type, 'relay', `bob's media is relayed: ${JSON.stringify(p)}`);
        assert.equal(p.local.relayProtocol, 'tls', `through TURN over TLS: ${JSON.stringify(p)}`);
        assert.equal(p.remote.protocol, 'udp', `relayed to the router's UDP candidate: ${JSON.stringify(p)}`);
      }
      assert.ok(droppedUdp(ns) > 0, 'the namespace dropped none of bob\'s UDP: the test would not show anything');
    }, { host: ns.hostIp, publicHost: ns.hostIp, platformArgs: ['--no-ice-tcp'] });
  } finally {
    if (nsBrowser) await within(15_000, 'closing Chromium', nsBrowser.close()).catch(() => {});
    ns.remove();
  }
});

test('a server behind 1:1 NAT announced with --announce-ip is reached by clients on another network', T, async (t) => {
  if (!netnsAvailable()) {
    t.skip('needs root, ip and nft for network namespaces');
    return;
  }
  const clients = clientNetns();
  const server = natServerNetns(clients);
  let browser;
  try {
    await withCall(t, async (call) => {
      browser = await launchBrowser([], clients.chromium);
      const codes = await roomCodes(call.platform, call.room);
      const alice = await call.join({ name: 'alice', code: codes.host, browser });
      const bob = await call.join({ name: 'bob', code: codes.host, browser });
      await expectMediaFrom(bob, 'alice');
      await expectMediaFrom(alice, 'bob');
      for (const peer of [alice, bob]) {
        const pairs = await selectedPairs(peer);
        t.diagnostic(`${peer.name}'s selected pairs: ${JSON.stringify(pairs)}`);
        assert.ok(pairs.length >= 1, `${peer.name} has a connected peer connection`);
        for (const p of pairs) {
          assert.equal(p.remote.address, server.publicIp, `${peer.name} reaches the router at its public address: ${JSON.stringify(p)}`);
        }
      }
    }, {
      netns: server.name,
      host: server.privateIp,
      publicHost: server.publicIp,
      platformArgs: ['--announce-ip', server.publicIp, '--no-turn'],
    });
  } finally {
    if (browser) await within(15_000, 'closing Chromium', browser.close()).catch(() => {});
    server.remove();
    clients.remove();
  }
});
