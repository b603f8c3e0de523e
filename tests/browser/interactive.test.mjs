// The interactive features with the official SDK (issue 20's server side, one at a time):
// - the session store: a host pins a message (`sessionStore.set`), a guest that observes the
//   key sees it and each change, a late observer gets the current value at once, an oversized
//   value is refused without changing anything, and the store is empty in the room's next
//   session;
// - hand raise: a guest raises its hand, the host sees it, the host lowers it, the guest sees
//   its own hand down.
// Needs `npm ci` and the built binaries (scripts/browser-test.sh).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor, withCall } from './harness.mjs';

const T = { timeout: 150_000 };

/** `key`'s value in the participant's SDK store. */
const valueAt = (p, key) => p.state((s, sel, k) => sel.selectSessionStore(k)(s) ?? null, key);

/** Runs an SDK action (`path` under `window.__hms.actions`) in the page; resolves to `ok` or
 * the error's message. */
const action = (p, path, ...args) =>
  p.page.evaluate(
    `window.__hms.actions.${path}(...${JSON.stringify(args)}).then(() => 'ok', (e) => String(e?.message || e))`,
  );
const storeAction = (p, name, ...args) => action(p, `sessionStore.${name}`, ...args);

/** Whether the participant's store shows the peer named `name` with a raised hand. */
const handRaised = (p, name) =>
  p.state((s, sel, n) => sel.selectPeers(s).find((x) => x.name === n)?.isHandRaised ?? null, name);

test('a pinned message reaches the peers that observe it, and leaves with the session', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    await bob.waitForPeer('alice');

    assert.equal(await storeAction(bob, 'observe', ['pinned']), 'ok');
    assert.equal(await storeAction(alice, 'set', 'pinned', { text: 'agenda', by: 'alice' }), 'ok');
    const seen = await waitFor('bob to see the pinned message', async () => valueAt(bob, 'pinned'), { timeout: 10_000 });
    assert.deepEqual(seen, { text: 'agenda', by: 'alice' });
    assert.deepEqual(await valueAt(alice, 'pinned'), { text: 'agenda', by: 'alice' }, 'the setter has its own value');

    // A change reaches the observer; bob's own write reaches alice once she observes.
    assert.equal(await storeAction(alice, 'set', 'pinned', { text: 'changed', by: 'alice' }), 'ok');
    await waitFor('bob to see the change', async () => (await valueAt(bob, 'pinned'))?.text === 'changed', { timeout: 10_000 });
    assert.equal(await storeAction(bob, 'set', 'spotlight', 'peer-42'), 'ok');
    assert.equal(await storeAction(alice, 'observe', ['pinned', 'spotlight']), 'ok');
    await waitFor('alice to get the value already set when she starts observing', async () => (await valueAt(alice, 'spotlight')) === 'peer-42', { timeout: 10_000 });

    // Over 1 KB: refused, and nothing changed on either side.
    const refused = await storeAction(alice, 'set', 'pinned', 'x'.repeat(2000));
    assert.notEqual(refused, 'ok', 'an oversized value is refused');
    assert.match(refused, /1024|at most/, refused);
    assert.equal((await valueAt(bob, 'pinned'))?.text, 'changed');

    // The session ends with its last peer; the next one starts empty.
    for (const p of [bob, alice]) {
      await p.click('#leave');
      await waitFor(`${p.name} to leave`, async () => !(await p.state((st, sel) => sel.selectIsConnectedToRoom(st))), { timeout: 10_000 });
    }
    const carol = await call.join({ name: 'carol', role: 'host' });
    assert.equal(await storeAction(carol, 'observe', ['pinned']), 'ok');
    // Give a stale value time to arrive, then check there is none.
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(await valueAt(carol, 'pinned'), null, 'the new session has an empty store');
  }));

test('a raised hand is seen by the host, who lowers it', T, (t) =>
  withCall(t, async (call) => {
    const alice = await call.join({ name: 'alice', role: 'host' });
    const bob = await call.join({ name: 'bob', role: 'guest' });
    await alice.waitForPeer('bob');
    await bob.waitForPeer('alice');
    assert.equal(await handRaised(alice, 'bob'), false);

    assert.equal(await action(bob, 'raiseLocalPeerHand'), 'ok');
    await waitFor('alice to see bob\'s hand', async () => (await handRaised(alice, 'bob')) === true, { timeout: 10_000 });
    await waitFor('bob to see his own hand up', async () => (await handRaised(bob, 'bob')) === true, { timeout: 10_000 });
    const bobId = await bob.localPeerId();
    // A guest cannot lower the host's hand (nor anyone's); the host lowers bob's.
    const aliceId = await alice.localPeerId();
    assert.notEqual(await action(bob, 'lowerRemotePeerHand', aliceId), 'ok', 'a guest may not change another peer\'s groups');
    assert.equal(await action(alice, 'lowerRemotePeerHand', bobId), 'ok');
    await waitFor('bob to see his hand lowered', async () => (await handRaised(bob, 'bob')) === false, { timeout: 10_000 });
    await waitFor('alice to see it lowered', async () => (await handRaised(alice, 'bob')) === false, { timeout: 10_000 });
  }));
