// End-to-end through the REST API (docs/rest-api.md) with the official 100ms SDK in headless
// Chromium: a template and room made over REST, joins with a REST-minted token and with a room
// code, active-room calls the clients see, and the webhooks of the session arriving signed.
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { waitFor, withCall } from './harness.mjs';

const T = { timeout: 180_000 };

/** A template where presenters publish and attendees only watch presenters. */
async function webinar(platform) {
  const template = await platform.api('POST', '/v2/templates', {
    name: `webinar-${process.pid}`,
    roles: {
      presenter: {
        publishParams: { allowed: ['audio', 'video'] },
        subscribeParams: { subscribeToRoles: ['presenter', 'attendee'] },
        permissions: { endRoom: true, removeOthers: true, mute: true, changeRole: true },
      },
      attendee: { subscribeParams: { subscribeToRoles: ['presenter'] }, priority: 2 },
    },
  });
  const room = await platform.api('POST', '/v2/rooms', { name: `webinar-room-${process.pid}`, template_id: template.id });
  return { template, room };
}

/** The role names and the local peer's role in a participant's SDK store. */
function rolesSeenBy(peer) {
  return peer.state((s, sel) => ({ roles: Object.keys(sel.selectRolesMap(s)).sort(), local: sel.selectLocalPeerRoleName(s) }));
}

test('the SDK joins with a REST-minted token and with a room code, and sees the template\'s roles', T, (t) =>
  withCall(t, async (call) => {
    const { room } = await webinar(call.platform);
    const minted = await call.platform.api('POST', '/v2/auth-tokens', { room_id: room.id, role: 'presenter', user_id: 'pres-1' });
    const alice = await call.join({ name: 'alice', token: minted.token });
    const codes = await call.platform.api('POST', `/v2/room-codes/room/${room.id}`, {});
    const code = codes.data.find((c) => c.role === 'attendee').code;
    const bob = await call.join({ name: 'bob', code });

    assert.deepEqual(await rolesSeenBy(alice), { roles: ['attendee', 'presenter'], local: 'presenter' });
    assert.deepEqual(await rolesSeenBy(bob), { roles: ['attendee', 'presenter'], local: 'attendee' });
    // The attendee watches the presenter; it publishes nothing itself.
    const a = await bob.waitForPeer('alice', (p) => p.video?.id && p.audio?.id);
    await bob.expectFlowing(a.video.id, 'framesDecoded', { what: "alice's video at bob" });
    const b = await alice.waitForPeer('bob');
    assert.equal(b.video, null, 'an attendee publishes no camera');
    assert.equal(b.role, 'attendee');

    // The REST view of the live room matches.
    const peers = await call.platform.api('GET', `/v2/active-rooms/${room.id}/peers`);
    const byName = Object.fromEntries(Object.values(peers.peers).map((p) => [p.name, p]));
    assert.deepEqual([byName.alice?.role, byName.bob?.role], ['presenter', 'attendee']);
    assert.equal(byName.alice.user_id, 'pres-1');
    const one = await call.platform.api('GET', `/v2/active-rooms/${room.id}/peers/${byName.alice.id}`);
    assert.deepEqual(Object.values(one.tracks).map((tr) => tr.type).sort(), ['audio', 'video']);
    const live = await call.platform.api('GET', `/v2/active-rooms/${room.id}`);
    assert.equal(live.session.peers.length, 2);
    const session = await call.platform.api('GET', `/v2/sessions/${live.session.id}`);
    assert.equal(Object.keys(session.peers).length, 2, 'the REST session is the one the SDK is in');
  }));

test('active-room calls reach the clients: message, role change, removal, end with lock', T, (t) =>
  withCall(t, async (call) => {
    const { room } = await webinar(call.platform);
    const token = async (role, user) =>
      (await call.platform.api('POST', '/v2/auth-tokens', { room_id: room.id, role, user_id: user })).token;
    const alice = await call.join({ name: 'alice', token: await token('presenter', 'a') });
    const bob = await call.join({ name: 'bob', token: await token('attendee', 'b') });
    const carol = await call.join({ name: 'carol', token: await token('attendee', 'c') });
    const ids = Object.fromEntries(
      Object.values((await call.platform.api('GET', `/v2/active-rooms/${room.id}/peers`)).peers).map((p) => [p.name, p.id]),
    );

    // A server message to everyone.
    await call.platform.api('POST', `/v2/active-rooms/${room.id}/send-message`, { message: 'welcome all', type: 'chat' });
    for (const p of [alice, bob, carol]) {
      await waitFor(`${p.name} to get the server message`, () =>
        p.state((s, sel) => sel.selectHMSMessages(s).some((m) => m.message === 'welcome all')),
      );
    }

    // Promote bob: his SDK takes the new role, publishes, and carol starts receiving him.
    const updated = await call.platform.api('POST', `/v2/active-rooms/${room.id}/peers/${ids.bob}`, { role: 'presenter', metadata: '{"promoted":true}' });
    assert.equal(updated.role, 'presenter');
    await waitFor('bob to be a presenter in his own store', async () => (await rolesSeenBy(bob)).local === 'presenter');
    await waitFor('carol to see bob as a presenter', async () => (await carol.peerNamed('bob'))?.role === 'presenter');
    await waitFor('bob to publish once promoted (unmuted or muted, the track exists)', async () => {
      const ids = await bob.state((s, sel) => sel.selectLocalPeer(s)?.audioTrack ?? null);
      return ids !== null;
    });

    // Remove carol with a reason: her SDK is told, and she disappears for the others. (With no
    // requesting peer, the SDK names its notification ROOM_ENDED, with roomEnded false.)
    await call.platform.api('POST', `/v2/active-rooms/${room.id}/remove-peers`, { peer_id: ids.carol, reason: 'off topic' });
    await waitFor('carol to be told she was removed', () =>
      carol.page.evaluate(() => window.__notifications.some((n) => n.reason === 'off topic' && n.roomEnded === false)),
    );
    await waitFor('alice to see carol gone', async () => !(await alice.peerNamed('carol')));

    // End the room with a lock: everyone is told, and the room is disabled.
    await call.platform.api('POST', `/v2/active-rooms/${room.id}/end-room`, { reason: 'the end', lock: true });
    for (const p of [alice, bob]) {
      await waitFor(`${p.name} to be told the room ended`, () =>
        p.page.evaluate(() => window.__notifications.some((n) => n.type === 'ROOM_ENDED' && n.roomEnded === true && n.reason === 'the end')),
      );
    }
    const after = await call.platform.api('GET', `/v2/rooms/${room.id}`);
    assert.equal(after.enabled, false, 'end-room with lock disables the room');
    await assert.rejects(
      call.platform.api('GET', `/v2/active-rooms/${room.id}`),
      /HTTP 404/,
      'nobody is left in the room',
    );
  }));

/** A local webhook receiver: records each request, answers 500 to the first `failFirst`. */
function receiver({ failFirst = 0 } = {}) {
  const got = [];
  let seen = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen += 1;
      if (seen <= failFirst) {
        res.writeHead(500).end('try again');
        return;
      }
      got.push({ headers: req.headers, body });
      res.writeHead(200).end('ok');
    });
  });
  return new Promise((res) => server.listen(0, '127.0.0.1', () => res({ server, got, url: `http://127.0.0.1:${server.address().port}/hooks` })));
}

/** Checks `X-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. */
function signed(secret, { headers, body }) {
  const want = createHmac('sha256', secret).update(`${headers['x-webhook-timestamp']}.${body}`).digest('hex');
  const got = (headers['x-webhook-signature'] || '').replace(/^v1=/, '');
  return got.length === want.length && timingSafeEqual(Buffer.from(got), Buffer.from(want));
}

test('the webhooks of a two-peer session arrive once each, in order, signed, despite a failing receiver', T, (t) =>
  withCall(t, async (call) => {
    const hook = await receiver({ failFirst: 3 });
    try {
      const endpoint = await call.platform.api('POST', '/v2/webhooks', { url: hook.url, headers: { 'x-app-key': 'k1' } });
      const alice = await call.join({ name: 'alice', role: 'host' });
      const bob = await call.join({ name: 'bob', role: 'guest' });
      // Both have published (four tracks) before anyone leaves.
      await bob.waitForPeer('alice', (p) => p.video?.id && p.audio?.id);
      await alice.waitForPeer('bob', (p) => p.video?.id && p.audio?.id);
      await bob.page.evaluate(() => window.__hms.actions.leave());
      await alice.page.evaluate(() => window.__hms.actions.leave());

      const expected = ['session.open.success', 'peer.join.success', 'peer.leave.success', 'session.close.success'];
      const events = await waitFor('the session to be delivered', () => {
        const evs = hook.got.map((r) => JSON.parse(r.body));
        return evs.some((e) => e.type === 'session.close.success') ? evs : null;
      }, { timeout: 60_000 });
      for (const r of hook.got) {
        assert.ok(signed(endpoint.secret, r), `valid signature on ${r.body.slice(0, 80)}`);
        assert.equal(r.headers['x-app-key'], 'k1');
        assert.equal(r.headers['x-webhook-id'], JSON.parse(r.body).id);
      }
      const unique = new Map(events.map((e) => [e.id, e]));
      const types = [...unique.values()].map((e) => e.type);
      for (const type of expected) assert.ok(types.includes(type), `${type} delivered: ${types.join(', ')}`);
      assert.equal(types.filter((x) => x === 'peer.join.success').length, 2);
      assert.equal(types.filter((x) => x === 'peer.leave.success').length, 2);
      assert.ok(types.filter((x) => x === 'track.add.success').length >= 4, `tracks added: ${types.join(', ')}`);
      assert.equal(types[0], 'session.open.success', 'the first event arrives first, after three 500s');
      assert.equal(types.at(-1), 'session.close.success');
      // Arrival order is the order the events were written (the log lists them by write order).
      const written = (await call.platform.api('GET', '/v2/webhooks/events?limit=100')).data.map((e) => e.id);
      assert.deepEqual([...unique.keys()], written, 'delivered in the order they were written');
      for (const e of unique.values()) {
        assert.equal(e.version, '2.0');
        assert.ok(e.data.room_id && e.data.session_id && e.data.room_name, `room fields in ${e.type}`);
      }
      const leaves = [...unique.values()].filter((e) => e.type === 'peer.leave.success');
      assert.ok(leaves.every((e) => typeof e.data.reason === 'string' && e.data.reason.length > 0), 'leaves say why');
      const log = await call.platform.api('GET', '/v2/webhooks/events?status=undelivered&limit=100');
      assert.equal(log.data.length, 0, 'nothing left undelivered');
      const first = (await call.platform.api('GET', '/v2/webhooks/events?limit=10')).data[0];
      assert.equal(first.attempts, 4, 'the first event took three failures and one success');
    } finally {
      hook.server.close();
    }
  }));
