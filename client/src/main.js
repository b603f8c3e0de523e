// Demo app for the self-hosted platform, on the official 100ms web SDK (public API only).
//
// Flow: GET /api/config (init endpoint, roles) → join form (or ?room=&name=&role=&autojoin=1)
// → a room code (?code=, or the room's code for the chosen role from POST /api/room-codes, which
// answers only on loopback or with --open-demo-tokens), exchanged by the SDK at POST /v2/token
// (getAuthTokenByRoomCode, 100ms's own flow); or ?token= as given
// → hmsActions.join({ initEndpoint, authToken, ... }). From then on the SDK's
// reactive store is the only state: every view below is a function of it, re-rendered when the
// selected slice changes (peers, tracks, messages, room state).
//
// Remote video is subscribed only while attached to a <video> (the SDK asks the server for a
// layer on attach), so each tile attaches its track when it appears and detaches when it goes.
//
// Simulcast: each remote video tile shows the layer the SDK says it receives (the store
// track's `layer`, set by the server's `on-track-layer-update`, and `degraded`) with the decoded
// size (the <video>'s videoWidth × videoHeight), and a remote camera tile has a quality control:
// high/medium/low call hmsActions.setPreferredLayer; auto leaves the choice to the SDK, which
// picks the smallest layer that fills the tile. The dominant speaker's tile is highlighted.
//
// For tests: window.__hms = { store, actions, selectors, notifications }; tiles carry
// data-peer-id, data-track-id, data-kind ("camera" | "screen"), and for remote video
// data-layer, data-degraded, data-layer-choice; the speaking tile has data-speaking="true".
// window.__layerRequests logs each setPreferredLayer the demo makes, and
// window.__dominantSpeakers each change of dominant speaker (with Date.now() times).
//
// Recording and streaming: a role with browserRecording, hlsStreaming or rtmpStreaming gets
// start/stop buttons (hmsActions.startRTMPOrRecording, startHLSStreaming, ...), and every peer
// sees the states from the selectors (selectRecordingState, selectHLSState, selectRTMPState).
// The #recording-state, #hls-state and #rtmp-state elements carry data-running.
//
// Viewer mode (?mode=viewer, or a role that neither publishes nor subscribes, like 100ms's
// hls-viewer): no grid; the room's HLS stream (selectHLSState().variants[0].url) plays in
// #hls-player with 100ms's own HLS player (@100mslive/hls-player), and its timed metadata is
// listed in #cues as the player fires each cue; window.__cues logs them ({id, payload, at}).
import * as HMS from '@100mslive/hms-video-store';
import { HMSHLSPlayer, HMSHLSPlayerEvents } from '@100mslive/hls-player';

const { HMSReactiveStore, HMSNotificationTypes } = HMS;

const hms = new HMSReactiveStore();
hms.triggerOnSubscribe();
const store = hms.getStore();
const actions = hms.getActions();
const notifications = hms.getNotifications();
const selectors = Object.fromEntries(Object.entries(HMS).filter(([name]) => name.startsWith('select')));
window.__hms = { store, actions, selectors, notifications };
// Every SDK notification's type (and reason, for removals), for tests and the curious.
window.__notifications = [];
notifications.onNotification((n) => {
  window.__notifications.push({ type: n.type, reason: n.data?.reason ?? null, roomEnded: n.data?.roomEnded ?? null });
});
// Every preferred-layer request the demo makes ({trackId, layer, choice, at}), and every change
// of dominant speaker ({peerId, name, at}; peerId null when nobody speaks).
window.__layerRequests = [];
window.__dominantSpeakers = [];

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let config = null;

// ------------------------------------------------------------------ errors and state

function showError(message) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${message}`;
  $('errors').append(li);
  console.error('[demo]', message);
}

notifications.onNotification((n) => {
  const e = n.data;
  showError(`${e?.code ?? ''} ${e?.description || e?.message || n.message}`.trim());
}, HMSNotificationTypes.ERROR);

store.subscribe((state) => {
  const el = $('room-state');
  el.textContent = state;
  el.dataset.state = state;
  const inCall = state !== 'Disconnected' && state !== 'Failed' && state !== 'Preview';
  $('call').hidden = !inCall;
  $('join-form').hidden = inCall;
}, HMS.selectRoomState);

// ------------------------------------------------------------------ join

async function loadConfig() {
  const res = await fetch('/api/config');
  if (!res.ok) throw new Error(`GET /api/config: HTTP ${res.status}`);
  config = await res.json();
  const select = $('role');
  select.replaceChildren(
    ...(config.roles || []).map((r) => {
      const o = document.createElement('option');
      o.value = o.textContent = r;
      return o;
    }),
  );
}

/**
 * The room code to join with: `?code=` as given, else the room's code for `role` from the demo's
 * `POST /api/room-codes` (which creates the room if new).
 */
async function roomCode({ room, role }) {
  if (params.get('code')) return params.get('code');
  const res = await fetch('/api/room-codes', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ room }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.codes) {
    throw new Error(`POST /api/room-codes: HTTP ${res.status} ${body.message || body.error || ''}`.trim());
  }
  if (!body.codes[role]) throw new Error(`the room has no role ${JSON.stringify(role)}; it has ${Object.keys(body.codes).join(', ')}`);
  return body.codes[role];
}

/**
 * The auth token and room code (if any) to join with: `?token=` as given (minted by an app
 * server or `POST /v2/auth-tokens`), or a room code exchanged by the SDK at this platform's
 * `POST /v2/token`.
 */
async function authToken({ name, room, role }) {
  if (params.get('token')) return { token: params.get('token'), code: null };
  const code = await roomCode({ room, role });
  const endpoint = new URL('/v2/token', location.href).href;
  return { token: await actions.getAuthTokenByRoomCode({ roomCode: code, userId: name }, { endpoint }), code };
}

async function join({ name, room, role }) {
  $('join').disabled = true;
  try {
    const { token, code } = await authToken({ name, room, role });
    // The invite joins the same room with the same role, through its code.
    const link = new URL(location.href);
    link.search = new URLSearchParams(code ? { code } : { room, role }).toString();
    $('share-link').textContent = `invite: ${link}`;
    // The SDK can stay in Connecting for good (e.g. it deadlocks on a non-terminal /init
    // error such as a 404); say so rather than spin silently.
    const watchdog = setTimeout(() => {
      if (store.getState(HMS.selectRoomState) === 'Connecting') {
        showError('still connecting after 30 s; the browser console has the SDK\'s log');
      }
    }, 30_000);
    await actions.join({
      userName: name,
      authToken: token,
      initEndpoint: config.initEndpoint,
      // A viewer watches the stream: its camera and microphone stay off.
      settings: { isAudioMuted: params.get('mode') === 'viewer', isVideoMuted: params.get('mode') === 'viewer' },
    }).finally(() => clearTimeout(watchdog));
  } catch (e) {
    showError(`join failed: ${e?.description || e?.message || e}`);
  } finally {
    $('join').disabled = false;
  }
}

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  join({ name: $('name').value.trim(), room: $('room').value.trim(), role: $('role').value });
});

// The same room and role in 100ms Prebuilt (served at /meeting/<room code>, docs/prebuilt.md).
$('open-prebuilt').addEventListener('click', async () => {
  if (!$('join-form').reportValidity()) return;
  try {
    const code = await roomCode({ room: $('room').value.trim(), role: $('role').value });
    const url = new URL(`/meeting/${encodeURIComponent(code)}`, location.href);
    url.search = new URLSearchParams({ name: $('name').value.trim() }).toString();
    location.assign(url.href);
  } catch (e) {
    showError(`cannot open Prebuilt: ${e.message}`);
  }
});

// ------------------------------------------------------------------ controls

async function run(label, fn) {
  try {
    await fn();
  } catch (e) {
    showError(`${label}: ${e?.description || e?.message || e}`);
  }
}

$('toggle-audio').addEventListener('click', () =>
  run('microphone', () => actions.setLocalAudioEnabled(!store.getState(HMS.selectIsLocalAudioEnabled))),
);
$('toggle-video').addEventListener('click', () =>
  run('camera', () => actions.setLocalVideoEnabled(!store.getState(HMS.selectIsLocalVideoEnabled))),
);
$('toggle-screen').addEventListener('click', () =>
  run('screenshare', () => actions.setScreenShareEnabled(!store.getState(HMS.selectIsLocalScreenShared))),
);
$('leave').addEventListener('click', () => run('leave', () => actions.leave()));

function renderControls() {
  const s = store.getState();
  // A viewer watches the stream: it publishes nothing, whatever its role allows.
  const none = { audio: false, video: false, screen: false };
  const allowed = isViewer() ? none : HMS.selectIsAllowedToPublish(s) || none;
  const audioOn = HMS.selectIsLocalAudioEnabled(s);
  const videoOn = HMS.selectIsLocalVideoEnabled(s);
  const sharing = HMS.selectIsLocalScreenShared(s);
  const set = (id, ok, text, pressed) => {
    const b = $(id);
    b.hidden = !ok;
    b.textContent = text;
    b.setAttribute('aria-pressed', String(pressed));
  };
  set('toggle-audio', allowed.audio, audioOn ? 'Mute mic' : 'Unmute mic', !audioOn);
  set('toggle-video', allowed.video, videoOn ? 'Stop camera' : 'Start camera', !videoOn);
  set('toggle-screen', allowed.screen, sharing ? 'Stop sharing' : 'Share screen', sharing);
}

// ------------------------------------------------------------------ recording and streaming

/** `off`, `starting`, `on` or `failed: why`, from a selector's running flag and state. */
function jobText({ running, state, error }) {
  if (error && (state === 'failed' || !running)) return `failed: ${error.description || error.message || ''}`.trim();
  if (running) return state === 'initialised' ? 'starting' : 'on';
  return 'off';
}

function showJob(id, slice) {
  const el = $(id);
  el.textContent = jobText(slice);
  el.dataset.running = String(!!slice.running);
  el.dataset.state = slice.state || 'none';
}

function renderJobs() {
  const s = store.getState();
  const perms = HMS.selectPermissions(s) || {};
  const recording = HMS.selectRecordingState(s).browser;
  const hls = HMS.selectHLSState(s);
  const rtmp = HMS.selectRTMPState(s);
  showJob('recording-state', recording);
  showJob('hls-state', { ...hls, state: hls.variants?.[0]?.state });
  showJob('rtmp-state', rtmp);
  $('jobs').hidden = isViewer();
  $('toggle-recording').hidden = !perms.browserRecording;
  $('toggle-recording').textContent = recording.running ? 'Stop recording' : 'Start recording';
  $('toggle-hls').hidden = !perms.hlsStreaming;
  $('toggle-hls').textContent = hls.running ? 'Stop HLS' : 'Start HLS';
  $('rtmp-controls').hidden = !perms.rtmpStreaming;
  // The SDK has one stop for both: it ends the RTMP stream and the recording.
  $('toggle-rtmp').textContent = rtmp.running ? 'Stop RTMP and recording' : 'Start RTMP';
}

$('toggle-recording').addEventListener('click', () =>
  run('recording', () =>
    HMS.selectRecordingState(store.getState()).browser.running
      ? actions.stopRTMPAndRecording()
      : actions.startRTMPOrRecording({ record: true }),
  ),
);
$('toggle-hls').addEventListener('click', () =>
  run('HLS', () => (HMS.selectHLSState(store.getState()).running ? actions.stopHLSStreaming() : actions.startHLSStreaming())),
);
$('toggle-rtmp').addEventListener('click', () =>
  run('RTMP', () => {
    if (HMS.selectRTMPState(store.getState()).running) return actions.stopRTMPAndRecording();
    const url = $('rtmp-url').value.trim();
    if (!url) throw new Error('enter an rtmp:// URL');
    return actions.startRTMPOrRecording({ rtmpURLs: [url], record: false });
  }),
);

// ------------------------------------------------------------------ HLS viewer

window.__cues = [];
let player = null;
let playingUrl = '';
const shownCues = new Set();

/** Viewer mode: asked for, or a role with nothing to publish and nobody to subscribe to. */
function isViewer() {
  if (params.get('mode') === 'viewer') return true;
  const role = HMS.selectLocalPeerRole(store.getState());
  if (!role) return false;
  return !(role.publishParams?.allowed || []).length && !(role.subscribeParams?.subscribeToRoles || []).length;
}

/** A cue the player fired: listed in #cues and logged in window.__cues. */
function showCue({ id, payload }) {
  if (shownCues.has(id)) return;
  shownCues.add(id);
  window.__cues.push({ id, payload, at: Date.now() });
  const li = document.createElement('li');
  li.dataset.cueId = id;
  li.textContent = `${new Date().toLocaleTimeString()} ${payload}`;
  $('cues').append(li);
}

const video = $('hls-player');

function stopPlayer() {
  player?.reset();
  player = null;
  playingUrl = '';
}

/**
 * Plays `url` with 100ms's own HLS player, which reads the timed metadata the platform puts in
 * the playlists (EXT-X-DATERANGE, X-100MSLIVE-PAYLOAD) and fires each cue as playback reaches
 * it. A stream that just started may not have every playlist yet: a terminal error starts the
 * player again a second later.
 */
function play(url) {
  stopPlayer();
  playingUrl = url;
  $('hls-status').textContent = `playing ${url}`;
  const p = new HMSHLSPlayer(url, video);
  player = p;
  p.on(HMSHLSPlayerEvents.TIMED_METADATA_LOADED, (cue) => showCue(cue));
  p.on(HMSHLSPlayerEvents.AUTOPLAY_BLOCKED, () => {
    video.muted = true;
    p.play();
  });
  p.on(HMSHLSPlayerEvents.ERROR, (e) => {
    console.warn('[demo] HLS player', e?.message || e);
    if (e?.isTerminal && player === p) {
      setTimeout(() => player === p && play(url), 1000);
    }
  });
}

function renderViewer() {
  const viewer = isViewer() && store.getState(HMS.selectIsConnectedToRoom);
  $('viewer').hidden = !viewer;
  $('layout').hidden = viewer;
  const hls = HMS.selectHLSState(store.getState());
  const url = viewer && hls.running ? hls.variants?.[0]?.url || '' : '';
  if (url === playingUrl) return;
  if (!url) {
    stopPlayer();
    $('hls-status').textContent = 'waiting for the live stream…';
    return;
  }
  play(url);
}

// ------------------------------------------------------------------ participant grid

/** key → { el, video, attached: trackId | null } */
const tiles = new Map();

function makeTile(key, kind) {
  const el = document.createElement('div');
  el.className = `tile ${kind}`;
  el.dataset.kind = kind;
  const video = document.createElement('video');
  video.autoplay = true;
  video.muted = true; // audio is played by the SDK's own sink; this element is video only
  video.playsInline = true;
  const label = document.createElement('span');
  label.className = 'label';
  const badges = document.createElement('div');
  badges.className = 'badges';
  badges.innerHTML =
    '<span class="badge mic-off" hidden>mic off</span><span class="badge cam-off" hidden>camera off</span>';
  // Remote video only: the received layer and size, and (camera) the preferred-layer control.
  const quality = document.createElement('div');
  quality.className = 'quality';
  quality.hidden = true;
  quality.innerHTML =
    '<span class="layer" title="simulcast layer received · decoded size"></span>' +
    '<select class="layer-choice" title="preferred layer" aria-label="video quality">' +
    LAYER_CHOICES.map((c) => `<option value="${c}">${c}</option>`).join('') +
    '</select>';
  el.append(video, label, badges, quality);
  $('grid').append(el);
  const tile = { el, video, attached: null, kind, choice: 'auto', remote: false };
  tiles.set(key, tile);
  quality.querySelector('.layer-choice').addEventListener('change', (ev) => chooseLayer(tile, ev.target.value));
  // The decoded size changes with the layer the server forwards, without a store change.
  video.addEventListener('resize', () => renderQuality(tile));
  return tile;
}

// ------------------------------------------------------------------ simulcast layers

const LAYER_CHOICES = ['auto', 'high', 'medium', 'low'];
const LAYER_ORDER = { low: 0, medium: 1, high: 2 };

function trackOf(tile) {
  return tile.attached ? HMS.selectTracksMap(store.getState())[tile.attached] : undefined;
}

/** Asks the SDK for `layer` of the tile's track (it sends prefer-video-track-state). */
function requestLayer(tile, layer) {
  const trackId = tile.attached;
  if (!trackId) return;
  window.__layerRequests.push({ trackId, layer, choice: tile.choice, at: Date.now() });
  run('video quality', () => actions.setPreferredLayer(trackId, layer));
}

/**
 * The layer that fits the tile: the smallest whose resolution covers the <video> in device
 * pixels, or the one below when the tile is less than halfway to the next (the SDK's own rule
 * when it picks a layer from the element's size). `high` without layer definitions.
 */
function fitLayer(tile) {
  const defs = [...(trackOf(tile)?.layerDefinitions || [])].sort((a, b) => LAYER_ORDER[a.layer] - LAYER_ORDER[b.layer]);
  if (!defs.length) return 'high';
  const { clientWidth: w, clientHeight: h } = tile.video;
  const dim = w > h ? 'width' : 'height';
  const px = (dim === 'width' ? w : h) * (window.devicePixelRatio || 1);
  for (let i = 0; i < defs.length; i++) {
    const have = defs[i].resolution[dim];
    const next = defs[i + 1]?.resolution[dim];
    if (px <= have || next === undefined || (px - have) / (next - have) < 0.5) return defs[i].layer;
  }
  return 'high';
}

/** The tile's quality control: a fixed layer, or auto (the layer that fits the tile). */
function chooseLayer(tile, choice) {
  tile.choice = choice;
  requestLayer(tile, choice === 'auto' ? fitLayer(tile) : choice);
}

/**
 * The badge (received layer · decoded size) and the control. The SDK re-picks a layer from the
 * element's size when a tile is resized or scrolled back into view; a fixed choice is asked for
 * again once the store shows another preferred layer.
 */
function renderQuality(tile) {
  const box = tile.el.querySelector('.quality');
  const track = tile.remote ? trackOf(tile) : undefined;
  box.hidden = !track;
  box.querySelector('.layer-choice').hidden = tile.kind !== 'camera';
  if (!track) {
    delete tile.el.dataset.layer;
    delete tile.el.dataset.degraded;
    delete tile.el.dataset.layerChoice;
    return;
  }
  const layer = track.layer && track.layer !== 'none' ? track.layer : '';
  const { videoWidth: w, videoHeight: h } = tile.video;
  const badge = box.querySelector('.layer');
  badge.textContent = [layer, track.degraded ? 'degraded' : '', w && h ? `${w}×${h}` : ''].filter(Boolean).join(' · ') || '…';
  badge.classList.toggle('degraded', !!track.degraded);
  tile.el.dataset.layer = track.layer || '';
  tile.el.dataset.degraded = String(!!track.degraded);
  tile.el.dataset.layerChoice = tile.choice;
  const select = box.querySelector('.layer-choice');
  if (select.value !== tile.choice) select.value = tile.choice;
  if (tile.kind === 'camera' && tile.choice !== 'auto' && track.preferredLayer && track.preferredLayer !== tile.choice) {
    requestLayer(tile, tile.choice);
  }
}

// ------------------------------------------------------------------ dominant speaker

let dominantPeerId = null;

function renderSpeaker() {
  for (const tile of tiles.values()) {
    const speaking = tile.kind === 'camera' && !!dominantPeerId && tile.el.dataset.peerId === dominantPeerId;
    tile.el.classList.toggle('speaking', speaking);
    if (speaking) tile.el.dataset.speaking = 'true';
    else delete tile.el.dataset.speaking;
  }
}

store.subscribe((peer) => {
  const id = peer?.id ?? null;
  if (id === dominantPeerId) return;
  dominantPeerId = id;
  window.__dominantSpeakers.push({ peerId: id, name: peer?.name ?? null, at: Date.now() });
  renderSpeaker();
}, HMS.selectDominantSpeaker);

/** Attaches the wanted track (or none) to the tile's <video>, detaching what it had. */
function syncVideo(tile, trackId) {
  if (tile.attached === trackId) return;
  const old = tile.attached;
  tile.attached = trackId;
  if (old) actions.detachVideo(old, tile.video).catch((e) => console.warn('[demo] detach', e));
  if (trackId) run('attach video', () => actions.attachVideo(trackId, tile.video));
}

function removeTile(key) {
  const tile = tiles.get(key);
  if (!tile) return;
  syncVideo(tile, null);
  tile.el.remove();
  tiles.delete(key);
}

function renderGrid() {
  const s = store.getState();
  // A viewer watches the HLS stream, not the call.
  const peers = isViewer() ? [] : HMS.selectPeers(s);
  const tracks = HMS.selectTracksMap(s);
  const wanted = new Set();
  for (const peer of peers) {
    const video = peer.videoTrack ? tracks[peer.videoTrack] : undefined;
    const audio = peer.audioTrack ? tracks[peer.audioTrack] : undefined;
    const key = `peer:${peer.id}`;
    wanted.add(key);
    const tile = tiles.get(key) || makeTile(key, 'camera');
    tile.el.classList.toggle('local', peer.isLocal);
    tile.el.dataset.peerId = peer.id;
    tile.el.dataset.trackId = video?.id || '';
    tile.el.dataset.audioTrackId = audio?.id || '';
    tile.el.querySelector('.label').textContent = `${peer.name}${peer.isLocal ? ' (you)' : ''} · ${peer.roleName || ''}`;
    tile.el.querySelector('.mic-off').hidden = !!audio?.enabled;
    tile.el.querySelector('.cam-off').hidden = !!video?.enabled;
    syncVideo(tile, video?.enabled ? video.id : null);
    tile.remote = !peer.isLocal;
    renderQuality(tile);

    for (const id of peer.auxiliaryTracks || []) {
      const t = tracks[id];
      if (!t || t.type !== 'video' || t.source !== 'screen') continue;
      const skey = `screen:${t.id}`;
      wanted.add(skey);
      const st = tiles.get(skey) || makeTile(skey, 'screen');
      st.el.dataset.peerId = peer.id;
      st.el.dataset.trackId = t.id;
      st.el.querySelector('.label').textContent = `${peer.name}: screen`;
      syncVideo(st, t.enabled ? t.id : null);
      st.remote = !peer.isLocal;
      renderQuality(st);
    }
  }
  for (const key of [...tiles.keys()]) if (!wanted.has(key)) removeTile(key);
  renderSpeaker();
}

// ------------------------------------------------------------------ chat

$('chat-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('chat-input').value.trim();
  if (!text) return;
  $('chat-input').value = '';
  run('chat', () => actions.sendBroadcastMessage(text));
});

function renderMessages(messages) {
  const list = $('messages');
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.replaceChildren(
    ...messages.map((m) => {
      const li = document.createElement('li');
      li.dataset.messageId = m.id;
      const who = document.createElement('span');
      who.className = 'sender';
      who.textContent = m.senderName || 'system';
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = typeof m.message === 'string' ? m.message : JSON.stringify(m.message);
      li.append(who, text);
      return li;
    }),
  );
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ------------------------------------------------------------------ wiring

// Peers and tracks change together in bursts; render once per burst.
let scheduled = false;
function scheduleRender() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(() => {
    scheduled = false;
    renderGrid();
    renderControls();
    renderJobs();
    renderViewer();
  });
}
store.subscribe(scheduleRender, HMS.selectPeers);
store.subscribe(scheduleRender, HMS.selectTracksMap);
store.subscribe(scheduleRender, HMS.selectLocalPeerRoleName);
store.subscribe(scheduleRender, HMS.selectRecordingState);
store.subscribe(scheduleRender, HMS.selectHLSState);
store.subscribe(scheduleRender, HMS.selectRTMPState);
store.subscribe(scheduleRender, HMS.selectIsConnectedToRoom);
store.subscribe(renderMessages, HMS.selectHMSMessages);

// Leave cleanly when the tab closes, so others see us go at once.
window.addEventListener('beforeunload', () => {
  if (store.getState(HMS.selectIsConnectedToRoom)) actions.leave();
});

async function start() {
  $('name').value = params.get('name') || '';
  $('room').value = params.get('room') || '';
  try {
    await loadConfig();
  } catch (e) {
    showError(`cannot load config: ${e.message}`);
    return;
  }
  if (params.get('role')) $('role').value = params.get('role');
  // A code or token link names the room itself.
  if (params.get('code') || params.get('token')) $('room').required = false;
  if (params.get('autojoin') === '1' && $('name').value && ($('room').value || params.get('code') || params.get('token'))) {
    join({ name: $('name').value, room: $('room').value, role: $('role').value || params.get('role') });
  }
}

start();
