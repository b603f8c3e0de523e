// Test harness: the real platform (`control`) plus headless Chromium running the demo app.
//
// One platform and one browser per test: `withCall(t, async (call) => { ... })` starts
// `target/debug/control` on free ports with a fresh data dir, launches Chromium, and tears both
// down afterwards even on failure (the control process group is killed). Each peer is a separate
// browser context (its own fake camera/microphone) on the demo page with `autojoin=1`.
//
// Nothing is built here: `cargo build` and `npm run build` in client/ come first
// (scripts/browser-test.sh does both). Every wait is bounded.
//
//   test('x', { timeout: 120_000 }, (t) => withCall(t, async (call) => {
//     const a = await call.join({ name: 'alice', role: 'host' });
//     const b = await call.join({ name: 'bob', role: 'guest' });
//     await b.waitForPeer('alice');
//   }));
import { execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../..');

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CONTROL_BIN =
  process.env.CONTROL_BIN ||
  join(process.env.CARGO_TARGET_DIR ? resolve(repoRoot, process.env.CARGO_TARGET_DIR) : join(repoRoot, 'target'), 'debug', 'control');
export const DEMO_DIR = join(repoRoot, 'client', 'dist');
/** Failed tests leave screenshots and the control log here. */
export const ARTIFACTS = join(here, 'artifacts');

// BROWSER-TESTING.md's flags; Playwright adds --headless and its own --user-data-dir.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  // Also answers getDisplayMedia with a fake "screen" in headless mode (checked on
  // Debian's Chromium 156), so screenshare needs no desktop-capture flag.
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--ignore-certificate-errors',
  '--autoplay-policy=no-user-gesture-required',
];

/** Records every RTCPeerConnection in window.__pcs so tests can call getStats(). */
export const RECORD_PCS = `(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || Native.__recorded) return;
  window.__pcs = [];
  class Recorded extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  }
  Recorded.__recorded = true;
  window.RTCPeerConnection = Recorded;
  window.webkitRTCPeerConnection = Recorded;
})();`;

// ------------------------------------------------------------------ small utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; throws with `what` and the last value after `timeout`. */
export async function waitFor(what, fn, { timeout = 15_000, interval = 250 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      if (e.fatal) throw e;
      lastErr = e;
    }
    if (Date.now() > deadline) {
      const detail = lastErr ? `; last error: ${lastErr.message}` : `; last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`);
    }
    await sleep(interval);
  }
}

/** Bounds a promise in time. */
export function within(ms, what, promise) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The longest time framesDecoded stood still in `samples` (Peer.sampleInbound's), and where it
 * ended. A new SSRC (a new inbound-rtp report, counting from 0) with frames decoded counts as
 * progress; a missing report does not.
 */
export function longestStall(samples) {
  let worst = { ms: 0, from: null, to: null };
  let since = null;
  let last = null;
  for (const s of samples) {
    const moved = !s.missing && (last === null || s.ssrc !== last.ssrc ? s.framesDecoded > 0 : s.framesDecoded > last.framesDecoded);
    if (moved) {
      last = s;
      since = s.at;
      continue;
    }
    if (since === null) since = s.at;
    if (s.at - since > worst.ms) worst = { ms: s.at - since, from: since, to: s.at };
  }
  return worst;
}

/** The longest time between two samples (how finely a stall could be seen). */
export function maxGap(samples) {
  let gap = 0;
  for (let i = 1; i < samples.length; i++) gap = Math.max(gap, samples[i].at - samples[i - 1].at);
  return gap;
}

const kbps = (bps) => (bps ? `${Math.round(bps / 1000)} kbps` : '?');

/** A publisher's video encodings by rid, and its video senders (for checks and messages). */
export async function publisherEncodings(peer) {
  const [out, senders] = await Promise.all([peer.outbound(), peer.videoSenders()]);
  const video = out.filter((o) => o.kind === 'video');
  const byRid = Object.fromEntries(video.filter((o) => o.rid).map((o) => [o.rid, o]));
  return { video, byRid, senders };
}

/** publisherEncodings() in words: each encoding's size, rate and limitation, each sender's settings. */
export function describeEncodings({ video, senders }) {
  const enc = video
    .map((o) => `${o.rid ?? '(no rid)'}: ${o.frameWidth}x${o.frameHeight} @${Math.round(o.framesPerSecond)} fps, ${o.framesEncoded} frames, ` +
      `target ${kbps(o.targetBitrate)}, limited by ${o.qualityLimitationReason ?? '?'} ${JSON.stringify(o.qualityLimitationDurations ?? {})}`)
    .join('; ');
  const snd = senders
    .map((s) => `capture ${s.settings?.width}x${s.settings?.height}, degradationPreference ${s.degradationPreference}, contentHint "${s.contentHint}", ` +
      `encodings [${s.encodings.map((e) => `${e.rid ?? '-'}${e.active === false ? ' (inactive)' : ''}`).join(',')}], send-side estimate ${kbps(s.availableOutgoingBitrate)}`)
    .join('; ');
  return `outbound video: ${enc || 'none'}. Senders: ${snd || 'none'}`;
}

function udpPortFree(port) {
  return new Promise((res) => {
    const s = createSocket('udp4');
    s.once('error', () => res(false));
    s.bind(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

function tcpPortFree(port) {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/**
 * A base port with `count` ports free from it for UDP and TCP (the router binds base + shard
 * index for both, TCP for ICE-TCP). Below the kernel's ephemeral range, where outgoing
 * connections take their ports.
 */
/** One port free for TCP and UDP, below the ephemeral range (see `freeUdpRange`). */
export function freePort() {
  return freeUdpRange(1);
}

async function freeUdpRange(count) {
  for (let i = 0; i < 50; i++) {
    const base = 20_000 + Math.floor(Math.random() * 12_000);
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = (await udpPortFree(p)) && (await tcpPortFree(p));
    if (ok) return base;
  }
  throw new Error('no free UDP port range found');
}

/** GET/POST JSON over HTTPS, accepting the platform's self-signed certificate. */
/** The body of an https GET as text (self-signed certificate accepted); HTTP errors throw. */
export function httpsText(url, { timeout = 5_000 } = {}) {
  return new Promise((res, rej) => {
    const req = httpsRequest(url, { rejectUnauthorized: false, timeout }, (r) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (c) => (text += c));
      r.on('end', () => (r.statusCode === 200 ? res(text) : rej(new Error(`GET ${url}: HTTP ${r.statusCode} ${text.slice(0, 200)}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out after ${timeout} ms`)));
    req.on('error', rej);
    req.end();
  });
}

export function httpsJson(url, { method = 'GET', body, timeout = 5_000, headers = {} } = {}) {
  return new Promise((res, rej) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = httpsRequest(
      url,
      {
        method,
        rejectUnauthorized: false,
        timeout,
        headers: { ...headers, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) },
      },
      (r) => {
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (c) => (text += c));
        r.on('end', () => {
          if (r.statusCode < 200 || r.statusCode > 299) return rej(new Error(`${method} ${url}: HTTP ${r.statusCode} ${text}`));
          try {
            res(JSON.parse(text));
          } catch (e) {
            rej(new Error(`${method} ${url}: not JSON: ${text.slice(0, 200)}`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out after ${timeout} ms`)));
    req.on('error', rej);
    if (data) req.write(data);
    req.end();
  });
}

// ------------------------------------------------------------------ router control socket

/** The schema version the router speaks, read from the schema crate's source. */
function schemaVersion() {
  try {
    const src = readFileSync(join(repoRoot, 'common/schema/src/lib.rs'), 'utf8');
    const m = src.match(/pub const SCHEMA_VERSION:\s*\w+\s*=\s*(\d+)/);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
const SCHEMA_V = schemaVersion();

/** One request on the router's control socket (JSON lines; docs/router.md). */
export function routerCall(socketPath, method, params = {}, { timeout = 5_000 } = {}) {
  return new Promise((res, rej) => {
    const id = Math.floor(Math.random() * 1e9);
    const msg = { id, method, params };
    if (SCHEMA_V !== undefined) msg.v = SCHEMA_V;
    const sock = createConnection(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      rej(new Error(`router ${method}: no reply within ${timeout} ms`));
    }, timeout);
    const done = (fn, v) => {
      clearTimeout(timer);
      sock.destroy();
      fn(v);
    };
    sock.on('connect', () => sock.write(JSON.stringify(msg) + '\n'));
    sock.on('error', (e) => done(rej, new Error(`router socket ${socketPath}: ${e.message}`)));
    sock.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let reply;
        try {
          reply = JSON.parse(line);
        } catch {
          continue;
        }
        if (reply.id !== id) continue;
        if (reply.error) {
          const e = new Error(`router ${method}: ${reply.error.code}: ${reply.error.message}`);
          e.code = reply.error.code;
          return done(rej, e);
        }
        return done(res, reply.result);
      }
    });
  });
}

/**
 * Open transports summed over all shards: `counters` per shard until the router says there is
 * no such shard. Needs a `transports` field in the counters reply.
 */
export async function transportCount(socketPath) {
  let total = 0;
  for (let shard = 0; shard < 256; shard++) {
    let c;
    try {
      c = await routerCall(socketPath, 'counters', { shard });
    } catch (e) {
      if (shard > 0 && (e.code === 'invalid_params' || e.code === 'bad_request')) break;
      throw e;
    }
    if (typeof c?.transports !== 'number') {
      throw new Error(`router counters (shard ${shard}) carry no transport count (no numeric "transports" field): ${JSON.stringify(c)}`);
    }
    total += c.transports;
  }
  return total;
}

// ------------------------------------------------------------------ the platform process

export function checkPrerequisites() {
  const missing = [];
  if (!existsSync(CONTROL_BIN)) missing.push(`${CONTROL_BIN} (run \`cargo build\` at the repository root, or set CONTROL_BIN)`);
  if (!existsSync(join(DEMO_DIR, 'index.html'))) missing.push(`${join(DEMO_DIR, 'index.html')} (run \`npm ci && npm run build\` in client/)`);
  if (!existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM)`);
  if (missing.length) throw new Error(`browser tests cannot start; missing:\n  ${missing.join('\n  ')}`);
}

/** Starts `control` and resolves once it printed `demo: https://...`. */
export async function startPlatform({ timeout = 30_000, args: extraArgs = [], host = '127.0.0.1', publicHost = 'localhost', netns } = {}) {
  checkPrerequisites();
  const dataDir = mkdtempSync(join(tmpdir(), 'browser-test-'));
  // Every port below the kernel's ephemeral range (32768 and up): a port picked by binding 0
  // is an ephemeral one, which an outgoing connection (the test's own HTTPS calls, Chromium's)
  // may take as its source port before control binds it.
  const routerPort = await freeUdpRange(8);
  const picked = new Set([...Array(8).keys()].map((i) => routerPort + i));
  const port = async () => {
    for (;;) {
      const p = await freePort();
      if (!picked.has(p)) return picked.add(p), p;
    }
  };
  const [httpPort, sigPort, turnPort, turnTlsPort] = [await port(), await port(), await port(), await port()];
  const args = [
    '--data-dir', dataDir,
    '--listen', `${host}:${httpPort}`,
    '--signaling-listen', `${host}:${sigPort}`,
    '--public-host', publicHost,
    '--router-ip', host,
    '--router-port', String(routerPort),
    '--turn-port', String(turnPort),
    '--turn-tls-port', String(turnTlsPort),
    '--demo-dir', DEMO_DIR,
    '--prebuilt-dir', join(repoRoot, 'prebuilt', 'dist'),
    ...extraArgs,
  ];
  // Its own process group, so teardown reaches the router and signaling children too. In a
  // network namespace, `ip netns exec` becomes control (it execs), in the same group.
  const [program, argv] = netns ? ['ip', ['netns', 'exec', netns, CONTROL_BIN, ...args]] : [CONTROL_BIN, args];
  const child = spawn(program, argv, {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { RUST_LOG: 'info', ...process.env },
  });
  const log = [];
  const platform = {
    child,
    dataDir,
    routerPort,
    turnPort,
    turnTlsPort,
    routerSocket: join(dataDir, 'router.sock'),
    demoUrl: null,
    log,
    exited: null,
    logText: () => log.join(''),
    status: () => httpsJson(new URL('/api/status', platform.demoUrl).href),
    config: () => httpsJson(new URL('/api/config', platform.demoUrl).href),
    /** A REST call with a management token of the default workspace (HTTP errors throw). */
    api: (method, path, body) => {
      platform.mgmtToken ??= execFileSync(CONTROL_BIN, ['management-token', '--data-dir', dataDir], { encoding: 'utf8' }).trim();
      return httpsJson(new URL(path, platform.demoUrl).href, { method, body, headers: { authorization: `Bearer ${platform.mgmtToken}` } });
    },
    stop: () => stopPlatform(platform),
  };
  livePlatforms.add(platform);
  const exited = new Promise((res) => child.on('exit', (code, signal) => res((platform.exited = { code, signal }))));
  const ready = new Promise((res) => {
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c) => {
      log.push(c);
      pending += c;
      const m = pending.match(/demo: (https:\/\/\S+)/);
      if (m && !platform.demoUrl) {
        platform.demoUrl = m[1].endsWith('/') ? m[1] : `${m[1]}/`;
        res();
      }
    });
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c) => log.push(c));
  try {
    await within(timeout, 'control to print "demo: https://..."', Promise.race([
      ready,
      exited.then((e) => {
        throw new Error(`control exited before it was ready (${JSON.stringify(e)})`);
      }),
    ]));
  } catch (e) {
    await stopPlatform(platform);
    throw new Error(`${e.message}\n--- control output ---\n${platform.logText().slice(-4000)}`);
  }
  return platform;
}

const livePlatforms = new Set();

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

export async function stopPlatform(platform) {
  if (!livePlatforms.delete(platform)) return;
  const { child } = platform;
  if (!platform.exited) {
    killGroup(child.pid, 'SIGTERM');
    const gone = await Promise.race([
      new Promise((r) => child.once('exit', () => r(true))),
      sleep(5_000).then(() => false),
    ]);
    if (!gone) killGroup(child.pid, 'SIGKILL');
  }
  // Children that outlived control (or a restarted one) share its group.
  killGroup(child.pid, 'SIGKILL');
  if (!process.env.KEEP_DATA) rmSync(platform.dataDir, { recursive: true, force: true });
}

// Last resort if the runner dies mid-test: no platform outlives it.
process.on('exit', () => {
  for (const p of livePlatforms) killGroup(p.child.pid, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const p of livePlatforms) killGroup(p.child.pid, 'SIGKILL');
    process.exit(130);
  });
}

// ------------------------------------------------------------------ the browser

/** Chromium with CHROMIUM_ARGS and `extraArgs` (e.g. a file as the fake camera). */
export function launchBrowser(extraArgs = [], executablePath = CHROMIUM) {
  return within(30_000, 'Chromium to start', chromium.launch({
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: 30_000,
  }));
}

/** Runs in the page: every inbound-rtp report, tagged with the track ids it belongs to. */
export function collectInbound() {
  return Promise.all(
    (window.__pcs || []).map(async (pc) => {
      // A closed connection (replaced after a reconnect) would report stale, frozen counters.
      if (pc.connectionState === 'closed' || pc.signalingState === 'closed') return [];
      // mid → the sender's track id from the offer's "a=msid:<stream> <track>" (the id the
      // server announces to the SDK, so the one in the store).
      const msidByMid = {};
      const sdp = pc.remoteDescription?.sdp || '';
      let mid = null;
      for (const line of sdp.split(/\r?\n/)) {
        if (line.startsWith('m=')) mid = null;
        else if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
        else if (line.startsWith('a=msid:') && mid !== null) msidByMid[mid] = line.slice(7).trim().split(/\s+/)[1];
      }
      const midByReceiverTrack = {};
      for (const tr of pc.getTransceivers()) if (tr.receiver?.track && tr.mid != null) midByReceiverTrack[tr.receiver.track.id] = tr.mid;
      const out = [];
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const m = s.mid ?? midByReceiverTrack[s.trackIdentifier];
        out.push({
          kind: s.kind,
          mid: m,
          trackIdentifier: s.trackIdentifier,
          trackId: m != null ? msidByMid[m] : undefined,
          ssrc: s.ssrc,
          packetsReceived: s.packetsReceived || 0,
          bytesReceived: s.bytesReceived || 0,
          framesDecoded: s.framesDecoded || 0,
          frameWidth: s.frameWidth || 0,
          frameHeight: s.frameHeight || 0,
          lastPacketReceivedTimestamp: s.lastPacketReceivedTimestamp || 0,
        });
      });
      return out;
    }),
  ).then((lists) => lists.flat());
}

/**
 * Runs in the page: outbound-rtp reports (what this peer publishes). A simulcast encoding has
 * its `rid`; `qualityLimitationReason` says why Chromium sends less than asked (cpu, bandwidth).
 */
export function collectOutbound() {
  return Promise.all(
    (window.__pcs || []).map(async (pc) => {
      if (pc.connectionState === 'closed' || pc.signalingState === 'closed') return [];
      const out = [];
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type !== 'outbound-rtp') return;
        out.push({
          kind: s.kind,
          codec: report.get(s.codecId)?.mimeType,
          encoderImplementation: s.encoderImplementation,
          packetsSent: s.packetsSent || 0,
          frameWidth: s.frameWidth || 0,
          frameHeight: s.frameHeight || 0,
          rid: s.rid,
          mid: s.mid,
          ssrc: s.ssrc,
          framesEncoded: s.framesEncoded || 0,
          framesPerSecond: s.framesPerSecond || 0,
          targetBitrate: s.targetBitrate || 0,
          active: s.active,
          qualityLimitationReason: s.qualityLimitationReason,
          qualityLimitationDurations: s.qualityLimitationDurations,
        });
      });
      return out;
    }),
  ).then((lists) => lists.flat());
}

/**
 * Runs in the page: each live video sender's parameters (encodings, degradationPreference), its
 * track's settings and content hint, and the connection's send-side bandwidth estimate.
 */
async function collectVideoSenders() {
  const out = [];
  for (const pc of window.__pcs || []) {
    if (pc.connectionState === 'closed' || pc.signalingState === 'closed') continue;
    let availableOutgoingBitrate;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') availableOutgoingBitrate = s.availableOutgoingBitrate;
    });
    for (const sender of pc.getSenders()) {
      if (sender.track?.kind !== 'video') continue;
      const p = sender.getParameters();
      out.push({
        trackId: sender.track.id,
        contentHint: sender.track.contentHint,
        settings: sender.track.getSettings(),
        degradationPreference: p.degradationPreference ?? null,
        encodings: (p.encodings || []).map((e) => ({ rid: e.rid, active: e.active, scaleResolutionDownBy: e.scaleResolutionDownBy, maxBitrate: e.maxBitrate })),
        availableOutgoingBitrate,
      });
    }
  }
  return out;
}

/**
 * Runs in the page: asks Chromium to keep the resolution of every video it sends and to lower
 * the frame rate instead when the CPU is short (degradationPreference "maintain-resolution", and
 * content hint "detail", which means the same where the preference is not set). Without it, CPU
 * overuse adaptation on a loaded 2-core machine scales the whole simulcast input down, and below
 * 1280x720 Chromium also drops the top layer. Returns each sender's preference afterwards.
 */
async function preferResolution() {
  const out = [];
  for (const pc of window.__pcs || []) {
    if (pc.connectionState === 'closed' || pc.signalingState === 'closed') continue;
    for (const sender of pc.getSenders()) {
      if (sender.track?.kind !== 'video') continue;
      sender.track.contentHint = 'detail';
      let error = null;
      try {
        const p = sender.getParameters();
        p.degradationPreference = 'maintain-resolution';
        await sender.setParameters(p);
      } catch (e) {
        error = String(e?.message || e);
      }
      out.push({ trackId: sender.track.id, degradationPreference: sender.getParameters().degradationPreference ?? null, contentHint: sender.track.contentHint, error });
    }
  }
  return out;
}

/**
 * Runs in the page: sets `active` of the video senders' simulcast encodings named in
 * `byRid` ({h: false, f: false}) with RTCRtpSender.getParameters()/setParameters(), as an app or
 * Chromium's own adaptation could. Returns each sender's encodings afterwards.
 */
async function setEncodingsActive(byRid) {
  const out = [];
  for (const pc of window.__pcs || []) {
    if (pc.connectionState === 'closed' || pc.signalingState === 'closed') continue;
    for (const sender of pc.getSenders()) {
      if (sender.track?.kind !== 'video') continue;
      const p = sender.getParameters();
      if (!(p.encodings || []).some((e) => e.rid in byRid)) continue;
      for (const e of p.encodings) if (e.rid in byRid) e.active = !!byRid[e.rid];
      let error = null;
      try {
        await sender.setParameters(p);
      } catch (e) {
        error = String(e?.message || e);
      }
      out.push({ trackId: sender.track.id, error, encodings: sender.getParameters().encodings.map((e) => ({ rid: e.rid, active: e.active })) });
    }
  }
  return out;
}

/** One participant: a browser context on the demo page. */
export class Peer {
  constructor(call, name, context, page) {
    this.call = call;
    this.name = name;
    this.context = context;
    this.page = page;
    this.pageErrors = [];
    page.on('pageerror', (e) => this.pageErrors.push(String(e?.stack || e)));
    // The page's last console lines, for a failure's message (the SDK logs its join steps).
    this.consoleTail = [];
    page.on('console', (m) => {
      this.consoleTail.push(`${m.type()}: ${m.text().slice(0, 300)}`);
      if (this.consoleTail.length > 12) this.consoleTail.shift();
    });
  }

  /** Evaluates a function of the SDK store's state: `fn(state, selectors, arg)`. */
  state(fn, arg) {
    // A string expression: Playwright evaluates it over the DevTools protocol (no eval in the
    // page's own scripts, so no CSP question).
    return this.page.evaluate(
      `(${fn.toString()})(window.__hms.store.getState(), window.__hms.selectors, ${JSON.stringify(arg ?? null)})`,
    );
  }

  roomState() {
    return this.state((s, sel) => sel.selectRoomState(s));
  }

  localPeerId() {
    return this.state((s, sel) => sel.selectLocalPeerID(s));
  }

  /** The peers this participant's store lists, with their tracks resolved. */
  peers() {
    return this.state((s, sel) => {
      const tracks = sel.selectTracksMap(s);
      return sel.selectPeers(s).map((p) => ({
        id: p.id,
        name: p.name,
        role: p.roleName,
        isLocal: p.isLocal,
        audio: p.audioTrack ? { ...tracks[p.audioTrack], id: p.audioTrack } : null,
        video: p.videoTrack ? { ...tracks[p.videoTrack], id: p.videoTrack } : null,
        aux: (p.auxiliaryTracks || []).map((id) => ({ ...tracks[id], id })),
      }));
    });
  }

  async peerNamed(name) {
    return (await this.peers()).find((p) => p.name === name);
  }

  /** Waits until this participant's store lists a peer `name` (with `pred` true of it). */
  waitForPeer(name, pred = () => true, { timeout = 15_000 } = {}) {
    return waitFor(`${this.name} to see peer ${name}`, async () => {
      const p = await this.peerNamed(name);
      return p && pred(p) ? p : null;
    }, { timeout });
  }

  waitForRoomState(state, { timeout = 20_000 } = {}) {
    return waitFor(`${this.name}'s room state ${state}`, async () => (await this.roomState()) === state, { timeout });
  }

  inbound() {
    return this.page.evaluate(collectInbound);
  }

  outbound() {
    return this.page.evaluate(collectOutbound);
  }

  /** The inbound-rtp report of one store track id (undefined if none yet). */
  async inboundFor(trackId) {
    return (await this.inbound()).find((s) => s.trackId === trackId || s.trackIdentifier === trackId);
  }

  /**
   * Waits until `trackId` has media at all, then checks it keeps flowing: `field`
   * (framesDecoded or packetsReceived) grows over `window` ms. Returns the second sample.
   */
  async expectFlowing(trackId, field, { window = 2_000, timeout = 20_000, what = trackId } = {}) {
    const first = await waitFor(`${this.name}: ${field} > 0 on ${what}`, async () => {
      const s = await this.inboundFor(trackId);
      return s && s[field] > 0 ? s : null;
    }, { timeout });
    await sleep(window);
    const second = await this.inboundFor(trackId);
    if (!second || !(second[field] > first[field])) {
      throw new Error(`${this.name}: ${field} on ${what} did not grow over ${window} ms (${first[field]} → ${second?.[field]})`);
    }
    return second;
  }

  /** Video senders: encodings, degradationPreference, track settings, bandwidth estimate. */
  videoSenders() {
    return this.page.evaluate(collectVideoSenders);
  }

  /** See preferResolution() above: keep the sent resolution under CPU load. */
  preferResolution() {
    return this.page.evaluate(preferResolution);
  }

  /** See setEncodingsActive() above: `{h: false, f: false}` turns those simulcast encodings off. */
  setEncodingsActive(byRid) {
    return this.page.evaluate(setEncodingsActive, byRid);
  }

  /** The store's view of a remote video track: layer, preferredLayer, degraded, enabled. */
  videoTrackState(trackId) {
    return this.state((s, sel, id) => {
      const tr = sel.selectTracksMap(s)[id];
      return tr ? { layer: tr.layer, preferredLayer: tr.preferredLayer, degraded: tr.degraded, enabled: tr.enabled } : null;
    }, trackId);
  }

  /** Mutes the microphone (`audio`) or stops the camera (`video`) with the demo's button, once it is on. */
  async stopLocal(kind) {
    const on = (k) => this.state((s, sel, kk) => (kk === 'audio' ? sel.selectIsLocalAudioEnabled(s) : sel.selectIsLocalVideoEnabled(s)), k);
    await waitFor(`${this.name}'s local ${kind} to be on`, () => on(kind), { timeout: 15_000 });
    await this.click(kind === 'audio' ? '#toggle-audio' : '#toggle-video');
    await waitFor(`${this.name}'s local ${kind} to be off`, async () => !(await on(kind)), { timeout: 10_000 });
  }

  /**
   * Samples `trackId`'s inbound-rtp report every `interval` ms in the page (so the timing does not
   * depend on the test's round trips), until `stop()`, which returns
   * `[{at: Date.now(), framesDecoded, frameWidth, frameHeight, ssrc, reports}]` (a sample without
   * the report has `missing: true`). Should the track have more than one report (an SSRC change),
   * the one that received a packet last counts; `reports` says how many there were.
   */
  async sampleInbound(trackId, { interval = 150 } = {}) {
    const key = `s${Math.floor(Math.random() * 1e9)}`;
    await this.page.evaluate(
      `(() => {
        window.__collectInbound = ${collectInbound.toString()};
        const key = ${JSON.stringify(key)}, trackId = ${JSON.stringify(trackId)}, interval = ${Number(interval)};
        const sampler = { samples: [], stopped: false };
        (window.__samplers ||= {})[key] = sampler;
        (async () => {
          while (!sampler.stopped) {
            const started = Date.now();
            try {
              const all = (await window.__collectInbound()).filter((r) => r.trackId === trackId || r.trackIdentifier === trackId);
              const s = all.sort((a, b) => b.lastPacketReceivedTimestamp - a.lastPacketReceivedTimestamp)[0];
              sampler.samples.push(s
                ? { at: Date.now(), framesDecoded: s.framesDecoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight, ssrc: s.ssrc, reports: all.length }
                : { at: Date.now(), missing: true });
            } catch (e) {
              sampler.samples.push({ at: Date.now(), missing: true, error: String(e) });
            }
            await new Promise((r) => setTimeout(r, Math.max(0, interval - (Date.now() - started))));
          }
        })();
      })()`,
    );
    return {
      /** The samples so far, sampling going on. */
      peek: () => this.page.evaluate((k) => window.__samplers[k].samples.slice(), key),
      stop: () => this.page.evaluate((k) => {
        const s = window.__samplers[k];
        s.stopped = true;
        delete window.__samplers[k];
        return s.samples;
      }, key),
    };
  }

  /** The dominant speaker in this participant's store (selectDominantSpeaker), or null. */
  dominantSpeaker() {
    return this.state((s, sel) => {
      const p = sel.selectDominantSpeaker(s);
      return p ? { id: p.id, name: p.name } : null;
    });
  }

  /** The local camera's capture settings (width, height) as the page sees them. */
  localCaptureSettings() {
    return this.page.evaluate(() => {
      const v = document.querySelector('.tile.local[data-kind="camera"] video');
      const t = v?.srcObject?.getVideoTracks?.()[0];
      return t ? t.getSettings() : null;
    });
  }

  click(selector) {
    return this.page.click(selector, { timeout: 10_000 });
  }

  async close() {
    await within(10_000, `closing ${this.name}`, this.context.close()).catch(() => {});
  }
}

/** A running platform plus a browser; `join` adds participants. */
export class Call {
  constructor(platform, browser, room) {
    this.platform = platform;
    this.browser = browser;
    this.room = room;
    this.peers = [];
  }

  url({ name, role, room = this.room, autojoin = true, token, code, mode }) {
    const u = new URL(this.platform.demoUrl);
    const extra = { ...(autojoin ? { autojoin: '1' } : {}), ...(token ? { token } : {}), ...(code ? { code } : {}), ...(mode ? { mode } : {}) };
    u.search = new URLSearchParams({ room, name, role, ...extra }).toString();
    return u.href;
  }

  /**
   * Opens the demo with autojoin and waits until the SDK says Connected. The demo mints the
   * token from `room` and `role`, unless `token` (an auth token) or `code` (a room code the SDK
   * exchanges) is given. `initScript` (a string) runs in the page before the demo's own scripts.
   * `mode: 'viewer'` opens the demo's HLS viewer instead of the call grid. `browser` is another
   * Chromium than the call's (one started in a network namespace, say).
   */
  async join({ name, role = '', room = this.room, token, code, mode, timeout = 30_000, initScript, browser = this.browser }) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    await context.addInitScript(RECORD_PCS);
    if (initScript) await context.addInitScript(initScript);
    const page = await context.newPage();
    const peer = new Peer(this, name, context, page);
    this.peers.push(peer);
    // A network namespace made for the test may still be settling: Chromium aborts a page
    // load when the host's interfaces change (ERR_NETWORK_CHANGED); load it again then.
    for (let attempt = 1; ; attempt++) {
      try {
        await page.goto(this.url({ name, role, room, token, code, mode }), { timeout: 15_000 });
        break;
      } catch (e) {
        if (attempt >= 3 || !String(e?.message).includes('ERR_NETWORK_CHANGED')) throw e;
        await sleep(500);
      }
    }
    const joinDeadline = Date.now() + timeout;
    await waitFor(`${name} to connect`, async () => {
      if (Date.now() > joinDeadline - 300) {
        // The last look: say what the page said, so a failed join on CI explains itself.
        throw new Error(`room state ${await page.evaluate(() => window.__hms?.store.getState(window.__hms.selectors.selectRoomState)).catch(() => '?')}; console: ${peer.consoleTail.join(' || ')}`);
      }
      const [state, errors] = await page.evaluate(() => [
        window.__hms?.store.getState(window.__hms.selectors.selectRoomState),
        [...document.querySelectorAll('#errors li')].map((li) => li.textContent),
      ]);
      // A terminal join error passes through Failed to Disconnected, so either with an error
      // shown means the join is over.
      if (state === 'Failed' || (state === 'Disconnected' && errors.length)) {
        throw Object.assign(new Error(`${name} did not join (room state ${state}); errors shown: ${errors.join(' | ')}`), { fatal: true });
      }
      return state === 'Connected';
    }, { timeout });
    return peer;
  }

  /** Saves a screenshot of each page and the control log under artifacts/<test>/. */
  async saveArtifacts(testName) {
    const dir = join(ARTIFACTS, testName.replace(/[^a-z0-9]+/gi, '-').slice(0, 60));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'control.log'), this.platform.logText());
    for (const p of this.peers) {
      await within(5_000, 'screenshot', p.page.screenshot({ path: join(dir, `${p.name}.png`) })).catch(() => {});
      const errors = await p.page.evaluate(() => [...document.querySelectorAll('#errors li')].map((li) => li.textContent)).catch(() => []);
      writeFileSync(join(dir, `${p.name}.errors.txt`), [...errors, ...p.pageErrors].join('\n'));
    }
    return dir;
  }
}

let roomCounter = 0;

/** Runs `body(call)` with a fresh platform and browser; always tears both down. */
/**
 * A subscriber that joins without camera or microphone (so the machine encodes only the
 * publisher's layers) and decodes the publisher's camera. Returns the peer, the publisher's
 * camera track id, and the selector of the demo's per-tile layer choice for it (which calls
 * hmsActions.setPreferredLayer).
 */
export async function silentSubscriber(call, publisher, name = 'bob') {
  const sub = await call.join({ name, role: 'guest' });
  await sub.stopLocal('video');
  await sub.stopLocal('audio');
  const seen = await sub.waitForPeer(publisher.name, (p) => p.video?.id && p.video.enabled);
  const trackId = seen.video.id;
  await sub.expectFlowing(trackId, 'framesDecoded', { what: `${publisher.name}'s video` });
  const choice = `.tile[data-kind="camera"][data-peer-id="${seen.id}"] .layer-choice`;
  await sub.page.waitForSelector(choice, { state: 'visible', timeout: 5_000 });
  return { sub, trackId, choice };
}

export async function withCall(t, body, { platformArgs = [], host, publicHost, netns } = {}) {
  const platform = await startPlatform({ args: platformArgs, host, publicHost, netns });
  let browser;
  let call;
  try {
    browser = await launchBrowser();
    call = new Call(platform, browser, `room-${process.pid}-${++roomCounter}`);
    await body(call);
  } catch (e) {
    if (call) {
      const dir = await call.saveArtifacts(t.name).catch(() => null);
      if (dir) t.diagnostic(`artifacts: ${dir}`);
    }
    t.diagnostic('control output (tail):');
    for (const line of platform.logText().split('\n').slice(-25)) if (line) t.diagnostic(`  ${line}`);
    throw e;
  } finally {
    if (browser) await within(15_000, 'closing Chromium', browser.close()).catch(() => {});
    await stopPlatform(platform);
  }
}
