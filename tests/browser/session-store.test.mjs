// The session store with the official SDK: a host pins a message (`sessionStore.set`), a guest
// that observes the key sees it and each change, a late observer gets the current value at
// once, an oversized value is refused without changing anything, and the store is empty in the
// room's next session. Needs `npm ci` and the built binaries (scripts/browser-test.sh).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor, withCall } from './harness.mjs';

const T = { timeout: 150_000 };

/** `key`'s value in the participant's SDK store. */
const valueAt = (p, key) => p.state((s, sel, k) => sel.selectSessionStore(k)(s) ?? null, key);

/** Runs an SDK session-store action in the page; resolves to `ok` or the error's message. */
const storeAction = (p, action, ...args) =>
  p.page.evaluate(
    `window.__hms.actions.sessionStore.${action}(...${JSON.stringify(args)}).then(() => 'ok', (e) => String(e?.message || e))`,
  );

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
