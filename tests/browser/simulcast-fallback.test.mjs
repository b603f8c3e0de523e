// Simulcast when the publisher sends fewer layers than its subscribers want, end to
// end: the demo (official 100ms SDK) in headless Chromium against the real platform. It proves
// that
//   - a subscriber that prefers `high` keeps decoding when the publisher stops its `h` and `f`
//     encodings (RTCRtpSender.setParameters with active false; Chromium then sends nothing at
//     all on them, not even padding): it gets `q` (320 wide) with no stall over 1 s, its store
//     shows layer "low" and not degraded (the shortfall is the publisher's), and once `h` and `f`
//     come back it is back on the best layer the publisher encodes within 15 s;
//   - four SDK pages in one room, each publishing camera and microphone with simulcast and
//     watching the other three in 640x360 tiles (so the SDK asks for medium), all decode all
//     three remote videos: each within 15 s of the later of the two joins, and all of them
//     still growing 28 s into the call, however few layers Chromium manages to encode for four
//     publishers on two cores (early in a call it often encodes only q for seconds).
// Run it alone or with the other browser tests:
//
//   scripts/browser-test.sh --test-name-pattern='fallback'
//
// What the server must provide (besides what simulcast.test.mjs needs: the "simulcast" flag,
// the 1280x720 host publishParams with q/h/f layers, prefer-video-track-state,
// on-track-layer-update): a layer is given to a subscriber only while it carries media frames
// (padding alone does not count; Chromium pads the encodings it has stopped encoding), the
// subscriber gets the best live layer at or below the one it wants, and on-track-layer-update
// says which (`current_layer` = the layer forwarded, `subscriber_degraded` false when the
// publisher is the one short).
//
// CPU. The first test keeps the machine's work to one publisher's three layers and one decoded
// stream, as simulcast.test.mjs does (one Chromium, one context per page, the subscriber's
// camera and microphone off, the publisher's degradationPreference "maintain-resolution").
// The second test is the loaded case on purpose: four publishers' encoders on two cores, and the
// start of a call while Chromium's bandwidth estimate climbs, are what make Chromium encode only
// `q` for a while (qualityLimitationReason "cpu" or "bandwidth"; the test prints when each
// publisher first encoded each layer). It still uses one Chromium,
// and the test page pins the grid to four 640x360 tiles in the 1280x800 viewport, so every
// remote tile is in view (the SDK unsubscribes a tile that is not) and none is bigger than
// needed. On failure both tests print what each side saw: decoded sizes and counts, the SDK
// store's layer/preferredLayer/degraded, and the publishers' outbound-rtp per rid; the second
// also, for a remote video a page does not decode, its <video>, its m-line and the layer
// traffic (prefer-video-track-state sent, on-track-layer-update received, data channel open).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { collectInbound, collectOutbound, describeEncodings, longestStall, maxGap, publisherEncodings, silentSubscriber, sleep, waitFor, withCall } from './harness.mjs';

const CAPTURE = { width: 1280, height: 720 };
/** The layers lowest first: the rid Chromium sends and the name the SDK and the router use. */
const LAYERS = [
  { rid: 'q', layer: 'low', width: 320 },
  { rid: 'h', layer: 'medium', width: 640 },
  { rid: 'f', layer: 'high', width: 1280 },
];
const layerOfRid = (rid) => LAYERS.find((l) => l.rid === rid)?.layer;
/** framesDecoded may stand still at most this long, across the whole change. */
const MAX_STALL_MS = 1_000;
const SAMPLE_EVERY_MS = 150;
/** Sampling before the publisher stops its layers, to see frames flowing already. */
const LEAD_IN_MS = 1_500;
/** After h and f stop: the subscriber must decode q within this (the stall check is the strict one). */
const DOWN_WITHIN_MS = 5_000;
/** How long the subscriber is watched on q (frame size and store steady). */
const HOLD_MS = 3_000;
/** After h and f are active again: Chromium re-adds them as its estimate allows, then the switch. */
const BACK_WITHIN_MS = 15_000;

/**
 * The publisher's encodings that encode now: two outbound-rtp readings `ms` apart, and the rids
 * whose framesEncoded grew between them (lowest first), with `top` the highest of them.
 */
async function encoding(peer, ms = 700) {
  const a = await publisherEncodings(peer);
  await sleep(ms);
  const b = await publisherEncodings(peer);
  const live = LAYERS.filter((l) => (b.byRid[l.rid]?.framesEncoded ?? 0) > (a.byRid[l.rid]?.framesEncoded ?? 0))
    .map((l) => ({ ...l, frameWidth: b.byRid[l.rid].frameWidth, frameHeight: b.byRid[l.rid].frameHeight }));
  // Encodings that send packets but no frames: padding (bandwidth probing) or retransmissions.
  const framesless = LAYERS.filter((l) => !live.some((x) => x.rid === l.rid) && (b.byRid[l.rid]?.packetsSent ?? 0) > (a.byRid[l.rid]?.packetsSent ?? 0))
    .map((l) => `${l.rid} (${b.byRid[l.rid].packetsSent - a.byRid[l.rid].packetsSent} packets in ${ms} ms)`);
  return { ...b, live, top: live.at(-1) ?? null, framesless };
}

const liveRids = (e) => e.live.map((l) => `${l.rid} ${l.frameWidth}x${l.frameHeight}`).join(', ') || 'none';
const limitedBy = (e) => Object.entries(e.byRid).map(([rid, o]) => `${rid}: ${o.qualityLimitationReason ?? '?'}`).join(', ');

/** The inbound-rtp report of `trackId` that received a packet last (a new SSRC replaces the old). */
async function decoding(peer, trackId) {
  const all = (await peer.inbound()).filter((r) => r.trackId === trackId || r.trackIdentifier === trackId);
  return all.sort((a, b) => b.lastPacketReceivedTimestamp - a.lastPacketReceivedTimestamp)[0] ?? null;
}

/**
 * Records, in the page, every change of the store's layer/preferredLayer/degraded of `trackId`
 * (from the SDK's on-track-layer-update and its own requests), with Date.now() times.
 */
async function recordTrackState(peer, trackId) {
  await peer.page.evaluate(`(() => {
    const id = ${JSON.stringify(trackId)};
    const log = (window.__trackStates ||= {})[id] = [];
    const { store, selectors } = window.__hms;
    const push = (t) => {
      const e = { layer: t?.layer, preferredLayer: t?.preferredLayer, degraded: t?.degraded };
      const last = log.at(-1);
      if (!last || last.layer !== e.layer || last.preferredLayer !== e.preferredLayer || last.degraded !== e.degraded) log.push({ at: Date.now(), ...e });
    };
    push(selectors.selectTracksMap(store.getState())[id]);
    store.subscribe(push, (s) => selectors.selectTracksMap(s)[id]);
  })()`);
  return () => peer.page.evaluate((id) => window.__trackStates[id].slice(), trackId);
}

/** Starts `peer`'s camera publishing and keeps its resolution under CPU load (simulcast.test.mjs). */
async function publishAtFullSize(t, peer) {
  await waitFor(`${peer.name} to send video`, async () => (await peer.outbound()).some((o) => o.kind === 'video' && o.framesEncoded > 0), { timeout: 20_000 });
  await sleep(500);
  let pref = [];
  for (let i = 0; i < 3 && !pref.some((p) => p.degradationPreference === 'maintain-resolution'); i++) {
    if (i) await sleep(500);
    pref = await peer.preferResolution();
  }
  t.diagnostic(`${peer.name}'s video senders: ${JSON.stringify(pref)}`);
  const capture = await peer.localCaptureSettings();
  assert.ok(
    capture?.width === CAPTURE.width && capture?.height === CAPTURE.height,
    `${peer.name} captures ${capture?.width}x${capture?.height}, not ${CAPTURE.width}x${CAPTURE.height} (the host role's publishParams.video)`,
  );
}

test('simulcast fallback: a subscriber that wants high keeps decoding when the publisher stops h and f (q, store "low", not degraded), and gets the top layer back when they resume', { timeout: 180_000 }, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    await publishAtFullSize(t, alice);

    const { sub: bob, trackId, choice } = await silentSubscriber(call, alice);
    await bob.page.selectOption(choice, 'high', { timeout: 5_000 });
    const trackStates = await recordTrackState(bob, trackId);

    // Bob decodes the best alice encodes (f, 1280 wide, unless this machine cannot hold it):
    // something above q must be flowing for its stop to mean anything.
    let start = null;
    let enc;
    try {
      start = await waitFor('bob to decode alice\'s top encoding, above q', async () => {
        enc = await encoding(alice);
        const d = await decoding(bob, trackId);
        return enc.top && enc.top.rid !== 'q' && d?.frameWidth === enc.top.frameWidth ? { top: enc.top, d } : null;
      }, { timeout: 25_000, interval: 300 });
    } catch {
      enc ??= await encoding(alice);
      const d = await decoding(bob, trackId);
      if (!enc.top || enc.top.rid === 'q') {
        assert.fail(`alice encodes only ${liveRids(enc)} at the start (limited by ${limitedBy(enc)}): this machine gives the ` +
          `test no layer above q to stop, so it measures nothing. ${describeEncodings(enc)}`);
      }
      assert.fail(`bob decodes alice at ${d?.frameWidth}x${d?.frameHeight}, not at her top encoding (${enc.top.rid}, ` +
        `${enc.top.frameWidth} wide) 25 s after asking for high; store ${JSON.stringify(await bob.videoTrackState(trackId))}. ${describeEncodings(enc)}`);
    }
    t.diagnostic(`start: alice encodes ${liveRids(enc)}; bob decodes ${start.d.frameWidth}x${start.d.frameHeight}; ` +
      `store ${JSON.stringify(await bob.videoTrackState(trackId))}`);
    const q = enc.byRid.q;
    assert.ok(q?.frameWidth > 0, `alice sends no q encoding: ${describeEncodings(enc)}`);
    if (q.frameWidth !== LAYERS[0].width) t.diagnostic(`note: alice's q encodes ${q.frameWidth} wide, not ${LAYERS[0].width}`);

    const problems = [];
    const sampler = await bob.sampleInbound(trackId, { interval: SAMPLE_EVERY_MS });
    let samples;
    let offAt;
    let onAt;
    let downAfter = null;
    let backAfter = null;
    let backTo = null;
    let afterOff;
    let onQ;
    try {
      await sleep(LEAD_IN_MS);

      // --- alice stops h and f.
      offAt = Date.now();
      const off = await alice.setEncodingsActive({ h: false, f: false });
      assert.ok(
        off.length === 1 && !off[0].error && off[0].encodings.every((e) => (e.rid === 'q') === (e.active !== false)),
        `alice's setParameters did not leave only q active: ${JSON.stringify(off)}`,
      );
      try {
        const d = await waitFor(`bob to decode alice at q's ${q.frameWidth} wide`, async () => {
          const s = await decoding(bob, trackId);
          return s?.frameWidth === q.frameWidth ? s : null;
        }, { timeout: DOWN_WITHIN_MS, interval: 100 });
        downAfter = Date.now() - offAt;
        t.diagnostic(`bob decodes ${d.frameWidth}x${d.frameHeight} ${downAfter} ms after alice stopped h and f`);
      } catch {
        const s = await decoding(bob, trackId);
        problems.push(`bob does not decode alice at q's ${q.frameWidth} wide ${DOWN_WITHIN_MS} ms after she stopped h and f: ` +
          `he decodes ${s ? `${s.frameWidth}x${s.frameHeight}, ${s.framesDecoded} frames` : 'nothing'}`);
      }
      afterOff = await encoding(alice, 1_000);
      t.diagnostic(`after the stop alice encodes ${liveRids(afterOff)}; packets without frames: ${afterOff.framesless.join(', ') || 'none'}`);
      if (afterOff.live.some((l) => l.rid !== 'q')) {
        assert.fail(`alice still encodes ${liveRids(afterOff)} after setParameters turned h and f off; the test measures nothing. ${describeEncodings(afterOff)}`);
      }
      // The store follows the router's on-track-layer-update: "low", and not degraded.
      try {
        onQ = await waitFor('bob\'s store to show alice\'s track on layer "low", not degraded', async () => {
          const st = await bob.videoTrackState(trackId);
          return st?.layer === 'low' && st.degraded === false ? st : null;
        }, { timeout: 3_000, interval: 100 });
      } catch {
        onQ = await bob.videoTrackState(trackId);
        problems.push(`bob's store shows alice's track as ${JSON.stringify(onQ)} after she stopped h and f, not layer "low" and ` +
          'degraded false (the SDK sets them from on-track-layer-update current_layer and subscriber_degraded)');
      }
      const holdFrom = Date.now();
      await sleep(HOLD_MS);
      const held = (await sampler.peek()).filter((s) => s.at >= holdFrom && !s.missing);
      const sizes = [...new Set(held.map((s) => s.frameWidth))];
      if (downAfter !== null && (sizes.length !== 1 || sizes[0] !== q.frameWidth)) {
        problems.push(`while alice sent only q, bob decoded widths ${sizes.join(', ')} (expected ${q.frameWidth} only)`);
      }
      const stillQ = await bob.videoTrackState(trackId);
      if (onQ?.layer === 'low' && (stillQ?.layer !== 'low' || stillQ.degraded !== false)) {
        problems.push(`bob's store went from layer "low" to ${JSON.stringify(stillQ)} while alice still sent only q`);
      }

      // --- alice resumes h and f.
      onAt = Date.now();
      const on = await alice.setEncodingsActive({ h: true, f: true });
      assert.ok(!on[0]?.error && on[0]?.encodings.every((e) => e.active !== false), `alice's setParameters did not re-activate h and f: ${JSON.stringify(on)}`);
      let last;
      try {
        backTo = await waitFor('bob to decode alice\'s top layer again, with the store showing it', async () => {
          const e = await encoding(alice, 500);
          const d = await decoding(bob, trackId);
          const st = await bob.videoTrackState(trackId);
          last = { e, d, st };
          return e.top?.rid === 'f' && d?.frameWidth === e.top.frameWidth && st?.layer === 'high' && st.degraded === false ? last : null;
        }, { timeout: BACK_WITHIN_MS, interval: 150 });
        backAfter = Date.now() - onAt;
      } catch {
        const { e, d, st } = last;
        if (e.top?.rid === 'h' && !e.live.some((l) => l.rid === 'f') && d?.frameWidth === e.top.frameWidth && st?.layer === 'medium' && st.degraded === false) {
          // This machine re-added h but not f: medium is the best there is.
          backTo = last;
          backAfter = Date.now() - onAt;
          t.diagnostic(`alice re-added h but not f within ${BACK_WITHIN_MS} ms (f limited by ${e.byRid.f?.qualityLimitationReason ?? '?'}); ` +
            'bob is on medium, the best she sends');
        } else if (!e.top || e.top.rid === 'q') {
          problems.push(`alice encodes only ${liveRids(e)} ${BACK_WITHIN_MS} ms after re-activating h and f (limited by ${limitedBy(e)}): ` +
            `this machine did not bring the layers back, so the way back up is not tested. ${describeEncodings(e)}`);
        } else {
          problems.push(`${BACK_WITHIN_MS} ms after alice re-activated h and f she encodes ${liveRids(e)} (limited by ${limitedBy(e)}), ` +
            `but bob decodes ${d ? `${d.frameWidth}x${d.frameHeight}` : 'nothing'} and his store shows ${JSON.stringify(st)} ` +
            `(expected ${e.top.frameWidth} wide and layer "${layerOfRid(e.top.rid)}", not degraded). ${describeEncodings(e)}`);
        }
      }
      await sleep(1_000);
    } finally {
      samples = await sampler.stop();
    }

    const span = samples.filter((s) => s.at >= offAt - LEAD_IN_MS);
    const stall = longestStall(span);
    // The times from the in-page samples (finer than the waits above).
    const firstAt = (from, width) => span.find((s) => s.at >= from && !s.missing && s.frameWidth === width)?.at ?? null;
    const downAt = downAfter !== null ? firstAt(offAt, q.frameWidth) : null;
    if (downAt) downAfter = downAt - offAt;
    const backAt = backTo ? firstAt(onAt, backTo.d.frameWidth) : null;
    if (backAt) backAfter = backAt - onAt;
    const history = await trackStates();
    const rel = (at) => (at === null ? '?' : `${at - offAt} ms`);
    const storeBack = backTo && history.find((h) => h.at >= onAt && h.layer === backTo.st.layer);
    const story = history.filter((h) => h.at >= offAt - LEAD_IN_MS).map((h) => `${rel(h.at)}: ${h.layer}${h.degraded ? ' degraded' : ''} (preferred ${h.preferredLayer})`).join('; ');
    const widths = [];
    for (const s of span) if (!s.missing && widths.at(-1)?.w !== s.frameWidth) widths.push({ w: s.frameWidth, at: s.at });
    const summary =
      `longest framesDecoded stall ${stall.ms} ms${stall.ms ? ` (ending ${rel(stall.to)} after h and f stopped)` : ''}; ` +
      `q decoded ${downAfter ?? 'never'} ms after the stop; back on ${backTo ? `${backTo.d.frameWidth} wide, "${backTo.st.layer}"` : 'nothing better'} ` +
      `${backAfter ?? '-'} ms after h and f resumed (at ${rel(onAt)}; store on it after ${storeBack ? `${storeBack.at - onAt} ms` : '-'}); decoded widths ${widths.map((w) => `${w.w}@${rel(w.at)}`).join(' → ')}; ` +
      `store ${story || 'unchanged'}; ${span.length} samples, longest gap ${maxGap(span)} ms`;
    t.diagnostic(summary);
    if (stall.ms > MAX_STALL_MS) {
      problems.unshift(`bob's framesDecoded for alice stood still for ${stall.ms} ms (at most ${MAX_STALL_MS}), from ${rel(stall.from)} to ` +
        `${rel(stall.to)} after alice stopped h and f (re-activated at ${rel(onAt)}; sampled every ${SAMPLE_EVERY_MS} ms)`);
    }
    if (problems.length) {
      assert.fail(`${problems.join('\n')}\n${summary}\nalice after the stop: ${describeEncodings(afterOff)}\nalice now: ${describeEncodings(await encoding(alice))}`);
    }
  }));

/**
 * Pins the demo's grid to 640x360 tiles, two by two from the top left of the 1280x800 viewport,
 * so every <video> is 640x360 and in view (the SDK unsubscribes a tile out of view, and asks
 * for the layer that fits the element: medium for 640 wide). Injected before the demo's scripts
 * run, so the SDK measures the tiles at that size from their first attach.
 */
const TILE_CSS = `
  #grid { position: fixed !important; left: 0 !important; top: 0 !important; z-index: 10;
          display: grid !important; grid-template-columns: repeat(2, 640px) !important; gap: 0 !important; }
  #grid .tile { width: 640px !important; height: 360px !important; aspect-ratio: auto !important; border-radius: 0 !important; }
`;
const PIN_TILES = `document.addEventListener('DOMContentLoaded', () => {
  const style = document.createElement('style');
  style.textContent = ${JSON.stringify(TILE_CSS)};
  document.head.append(style);
});`;

/**
 * Runs in the page before the demo: logs the layer traffic between the SDK and the server in
 * window.__wire ({at, dir, via, method | id, ...}): prefer-video-track-state requests on the
 * subscribe connection's data channel and their replies, and on-track-layer-update pushes on the
 * WebSocket. On a failure this tells an SDK that never asked from a server that never answered.
 */
const WIRE_LOG = `(() => {
  const log = (window.__wire = []);
  const asked = new Set();
  const keep = (dir, via, data) => {
    if (typeof data !== 'string' || log.length > 5000) return;
    let m;
    try { m = JSON.parse(data); } catch { return; }
    if (m.method === 'prefer-video-track-state') {
      asked.add(m.id);
      log.push({ at: Date.now(), dir, via, id: m.id, method: m.method, track: m.params?.track_id, layer: m.params?.max_spatial_layer });
    } else if (m.method === 'on-track-layer-update') {
      for (const u of Object.values(m.params?.tracks || {})) log.push({ at: Date.now(), dir, via, method: m.method, track: u.track_id,
        current: u.current_layer, expected: u.expected_layer, subscriber_degraded: u.subscriber_degraded });
    } else if (m.id !== undefined && asked.has(m.id)) {
      log.push({ at: Date.now(), dir, via, id: m.id, result: m.result, error: m.error });
    }
  };
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) { keep('out', 'dc', data); return send.call(this, data); };
  const watch = (ch) => {
    ch.addEventListener('message', (e) => keep('in', 'dc', e.data));
    ch.addEventListener('open', () => log.push({ at: Date.now(), dir: 'event', via: 'dc', event: \`\${ch.label} open\` }));
  };
  const PC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends PC {
    constructor(...a) {
      super(...a);
      this.addEventListener('datachannel', (e) => watch(e.channel));
    }
    createDataChannel(...a) {
      const ch = super.createDataChannel(...a);
      watch(ch);
      return ch;
    }
  };
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...a) {
      super(...a);
      this.addEventListener('message', (e) => keep('in', 'ws', e.data));
    }
  };
})();`;

/**
 * Runs in the page from its join on: every 250 ms, for each inbound video track (by the store's
 * track id), when it first decoded a frame and the longest time its framesDecoded stood still
 * since (window.__decodeLog); and when each of its own simulcast encodings first encoded a
 * frame (window.__encodeLog, by rid).
 */
const DECODE_LOG = `(() => {
  const collect = ${collectInbound.toString()};
  const collectOut = ${collectOutbound.toString()};
  const log = (window.__decodeLog = {});
  const enc = (window.__encodeLog = {});
  (async () => {
    for (;;) {
      const now = Date.now();
      try {
        for (const o of await collectOut()) {
          if (o.kind !== 'video' || !o.rid) continue;
          const e = (enc[o.rid] ||= { packets: null, frames: null });
          if (e.packets === null && o.packetsSent > 0) e.packets = now;
          if (e.frames === null && o.framesEncoded > 0) e.frames = now;
        }
        for (const r of await collect()) {
          if (r.kind !== 'video' || !r.trackId) continue;
          const e = (log[r.trackId] ||= { first: null, count: 0, since: now, longestStall: 0, stallEndedAt: null });
          if (r.framesDecoded > e.count || (r.framesDecoded > 0 && r.framesDecoded < e.count)) {
            if (e.first === null) e.first = now;
            else if (now - e.since > e.longestStall) { e.longestStall = now - e.since; e.stallEndedAt = now; }
            e.since = now;
          }
          e.count = r.framesDecoded;
        }
      } catch {}
      await new Promise((res) => setTimeout(res, 250));
    }
  })();
})()`;

/**
 * Runs in the page: what the page has of one remote video track, to tell a track the SDK never
 * attached or asked for from one the server never sent: the tile's <video> (stream, size), the
 * subscribe connections' SDP (whether an m-line carries the track's msid, its direction) and the
 * receiver's track state.
 */
function remoteVideoDebug(trackId) {
  const v = document.querySelector(`.tile[data-track-id="${trackId}"] video`);
  const st = v?.srcObject?.getVideoTracks?.()[0];
  const out = {
    element: v ? { srcObject: !!v.srcObject, track: st ? { readyState: st.readyState, muted: st.muted, id: st.id } : null,
      videoWidth: v.videoWidth, readyState: v.readyState, paused: v.paused } : null,
    tileLayer: v?.closest('.tile')?.dataset.layer ?? null,
    sdp: [],
  };
  for (const pc of window.__pcs || []) {
    let mid = null;
    let dir = null;
    for (const line of (pc.remoteDescription?.sdp || '').split(/\r?\n/)) {
      if (line.startsWith('m=')) {
        mid = null;
        dir = null;
      } else if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
      else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) dir = line.slice(2);
      else if (line.startsWith('a=msid:') && line.includes(trackId)) {
        const tr = pc.getTransceivers().find((x) => x.mid === mid);
        out.sdp.push({ mid, dir, receiver: tr?.receiver?.track ? { readyState: tr.receiver.track.readyState, muted: tr.receiver.track.muted } : null,
          currentDirection: tr?.currentDirection ?? null, connectionState: pc.connectionState });
      }
    }
  }
  return out;
}

const CALL_MS = 28_000;
/** The final check: framesDecoded of every remote video must grow over this. */
const GROW_MS = 3_000;
/** A remote video's first decoded frame must come within this of the later of the two joins. */
const FIRST_FRAME_WITHIN_MS = 15_000;

test('simulcast fallback: four SDK pages in one room, each with 640x360 tiles, all decode all three remote videos after 28 s', { timeout: 300_000 }, (t) =>
  withCall(t, async (call) => {
    const names = ['ann', 'ben', 'cat', 'dan'];
    const peers = [];
    const joinedAt = {};
    for (const name of names) {
      const p = await call.join({ name, role: 'host', timeout: 60_000, initScript: `${PIN_TILES}\n${WIRE_LOG}` });
      joinedAt[name] = Date.now();
      await p.page.evaluate(DECODE_LOG);
      peers.push(p);
    }
    const lastJoin = joinedAt[names.at(-1)];

    // Each page: the three others' video tracks, attached to 640x360 tiles in view.
    const remotes = new Map(); // page name → [{ name, peerId, trackId }]
    for (const p of peers) {
      const list = [];
      for (const other of names.filter((n) => n !== p.name)) {
        const seen = await p.waitForPeer(other, (x) => x.video?.id && x.video.enabled, { timeout: 30_000 });
        list.push({ name: other, peerId: seen.id, trackId: seen.video.id });
      }
      remotes.set(p.name, list);
    }
    for (const p of peers) {
      const boxes = await p.page.evaluate((ids) => ids.map((id) => {
        const v = document.querySelector(`.tile[data-kind="camera"][data-track-id="${id}"] video`);
        const r = v?.getBoundingClientRect();
        return r ? { w: r.width, h: r.height, inView: r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight } : null;
      }), remotes.get(p.name).map((r) => r.trackId));
      assert.ok(
        boxes.every((b) => b && b.w === 640 && b.h === 360 && b.inView),
        `${p.name}'s remote video elements are not all 640x360 and in view: ${JSON.stringify(boxes)}`,
      );
    }

    await sleep(Math.max(0, lastJoin + CALL_MS - Date.now()));
    const snapshot = () => Promise.all(peers.map(async (p) => Promise.all(remotes.get(p.name).map(async (r) => ({
      ...r,
      inbound: await decoding(p, r.trackId),
      store: await p.videoTrackState(r.trackId),
    })))));
    const [before, sentBefore] = await Promise.all([snapshot(), Promise.all(peers.map((p) => publisherEncodings(p)))]);
    await sleep(GROW_MS);
    const [after, sent] = await Promise.all([snapshot(), Promise.all(peers.map((p) => publisherEncodings(p)))]);
    const logs = await Promise.all(peers.map((p) => p.page.evaluate(() => window.__decodeLog)));
    const encodeLogs = await Promise.all(peers.map((p) => p.page.evaluate(() => window.__encodeLog)));

    const lines = [];
    const bad = [];
    peers.forEach((p, i) => {
      after[i].forEach((r, j) => {
        const a = before[i][j].inbound;
        const b = r.inbound;
        const log = logs[i][r.trackId];
        const from = Math.max(joinedAt[p.name], joinedAt[r.name]);
        const first = log?.first ? log.first - from : null;
        const why = [];
        if (!(a?.framesDecoded > 0 && b?.framesDecoded > a.framesDecoded)) why.push(`framesDecoded not > 0 and growing over ${GROW_MS} ms`);
        if (first === null || first > FIRST_FRAME_WITHIN_MS) why.push(`no frame within ${FIRST_FRAME_WITHIN_MS} ms of the later join`);
        const line = `${p.name} ← ${r.name}: framesDecoded ${a?.framesDecoded ?? '-'} → ${b?.framesDecoded ?? '-'} over ${GROW_MS} ms, ` +
          `${b ? `${b.frameWidth}x${b.frameHeight}` : 'no inbound-rtp'}, first frame ${first ?? 'never'} ms after the later join, ` +
          `longest stall since ${log?.longestStall ?? '-'} ms (sampled every 250 ms), ` +
          `store layer ${r.store?.layer} preferredLayer ${r.store?.preferredLayer} degraded ${r.store?.degraded}`;
        lines.push(`${why.length ? '✗' : ' '} ${line}${why.length ? ` — ${why.join('; ')}` : ''}`);
        if (why.length) bad.push(line);
      });
    });
    // How long each publisher sent only q (Chromium adds layers as its estimate and CPU allow),
    // and whether a layer sent packets (padding) before its first frame.
    const started = (i, rid) => {
      const e = encodeLogs[i][rid];
      const rel = (at) => (at ? `${at - joinedAt[peers[i].name]} ms` : 'never');
      return `${rid} packets ${rel(e?.packets)}, frames ${rel(e?.frames)}`;
    };
    const pubLines = peers.map((p, i) => `${p.name} first sent (after its join) ${LAYERS.map(({ rid }) => started(i, rid)).join('; ')}. Now: ` + LAYERS.map(({ rid }) => {
      const o = sent[i].byRid[rid];
      const was = sentBefore[i].byRid[rid];
      return o ? `${rid} ${o.frameWidth}x${o.frameHeight} ${o.framesEncoded} frames (+${o.framesEncoded - (was?.framesEncoded ?? 0)}, ` +
        `+${o.packetsSent - (was?.packetsSent ?? 0)} packets in ${GROW_MS} ms) @${Math.round(o.framesPerSecond)} fps, limited by ${o.qualityLimitationReason}` : `${rid} -`;
    }).join(', '));
    const asked = await Promise.all(peers.map((p) => p.page.evaluate(() => window.__wire.filter((w) => w.dir === 'out').length).catch(() => '?')));
    lines.push(`prefer-video-track-state requests sent: ${peers.map((p, i) => `${p.name} ${asked[i]}`).join(', ')}`);
    for (const l of [...lines, ...pubLines]) t.diagnostic(l);
    const details = [];
    for (const [i, p] of peers.entries()) {
      for (const r of after[i]) {
        if (!bad.some((l) => l.startsWith(`${p.name} ← ${r.name}:`))) continue;
        const dbg = await p.page.evaluate(remoteVideoDebug, r.trackId).catch((e) => String(e));
        const wire = await p.page.evaluate((id) => {
          const ids = new Set(window.__wire.filter((w) => w.track === id).map((w) => w.id));
          return window.__wire.filter((w) => w.track === id || w.event || (w.track === undefined && ids.has(w.id)));
        }, r.trackId).catch(() => null);
        const sentAll = await p.page.evaluate(() => window.__wire.filter((w) => w.dir === 'out').length).catch(() => null);
        const t0 = joinedAt[p.name];
        const wireText = (wire || []).map(({ at, track, ...w }) => `${at - t0}ms ${JSON.stringify(w)}`).join(', ');
        // The SDK parks a layer request until the subscribe connection's data channel opens, and
        // drops it when an on-track-layer-update for that track arrives meanwhile
        // (HMSSubscribeConnection.cancelPendingRequest): then it never asks again.
        const push = wire?.find((w) => w.method === 'on-track-layer-update');
        const opened = Math.max(...(wire || []).filter((w) => w.event).map((w) => w.at));
        const asked = wire?.some((w) => w.dir === 'out');
        const hint = push && !asked && push.at < opened
          ? ' — the server\'s first on-track-layer-update (current_layer none) came before the data channel opened, and the SDK dropped its parked request'
          : '';
        details.push(`${p.name} ← ${r.name} (track ${r.trackId}): ${JSON.stringify(dbg)}; layer traffic (ms after ${p.name}'s join): ${wireText || 'none'}; ` +
          `${sentAll} prefer-video-track-state requests sent by this page in all${hint}`);
      }
    }
    assert.ok(
      bad.length === 0,
      `${bad.length} of ${peers.length * (peers.length - 1)} remote videos are not decoding as they should ${Math.round((Date.now() - lastJoin) / 1000)} s into the call:\n` +
      `${lines.join('\n')}\n${details.join('\n')}\n${pubLines.join('\n')}\n${peers.map((p, i) => `${p.name}: ${describeEncodings(sent[i])}`).join('\n')}`,
    );
  }));
