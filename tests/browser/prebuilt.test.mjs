// 100ms Prebuilt (@100mslive/roomkit-react, unchanged, docs/prebuilt.md) in headless Chromium
// against the real platform: peers open /meeting/<room code>, go through the preview, join,
// and use the controls a host and a guest see. Every check is on the other browser: what the
// host does shows at the guest, and the reverse.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, RECORD_PCS, collectInbound, launchBrowser, startPlatform, waitFor } from './harness.mjs';

const T = { timeout: 240_000 };

/** One browser tab on Prebuilt. */
class Meeting {
  constructor(name, context, page) {
    Object.assign(this, { name, context, page, console: [] });
    page.on('console', (m) => {
      this.console.push(`${m.type()}: ${m.text().slice(0, 300)}`);
      if (this.console.length > 30) this.console.shift();
    });
    page.on('pageerror', (e) => this.console.push(`pageerror: ${String(e?.message).slice(0, 300)}`));
  }

  /** Opens /meeting/<code> as `name`, passes the preview, and waits for the call screen. */
  static async open(platform, browser, code, name) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    await context.addInitScript(RECORD_PCS);
    const page = await context.newPage();
    const m = new Meeting(name, context, page);
    const url = new URL(`/meeting/${code}`, platform.demoUrl);
    url.search = new URLSearchParams({ name }).toString();
    await page.goto(url.href);
    const field = page.getByPlaceholder('Enter name');
    await field.waitFor({ timeout: 30_000 });
    if (!(await field.inputValue())) await field.fill(name);
    await page.getByRole('button', { name: 'Join Now' }).click();
    await page.getByTestId('footer').waitFor({ timeout: 30_000 });
    return m;
  }

  testId(id) {
    return this.page.getByTestId(id);
  }

  /** Inbound media totals: video frames decoded and audio bytes received, over all tracks. */
  async inbound() {
    const reports = await this.page.evaluate(collectInbound);
    const sum = (kind, key) => reports.filter((r) => r.kind === kind).reduce((a, r) => a + (r[key] || 0), 0);
    return { frames: sum('video', 'framesDecoded'), audio: sum('audio', 'bytesReceived') };
  }

  /** Waits until video frames are decoded and audio arrives, both still growing. */
  async expectMedia(what) {
    const first = await waitFor(`${what}: media at ${this.name}`, async () => {
      const n = await this.inbound();
      return n.frames > 0 && n.audio > 0 ? n : null;
    }, { timeout: 20_000 });
    await waitFor(`${what}: media still flowing at ${this.name}`, async () => {
      const n = await this.inbound();
      return n.frames > first.frames + 10 && n.audio > first.audio;
    }, { timeout: 10_000 });
  }

  /** The tile of peer `name` (hovered, so its menu button shows). */
  async tile(name) {
    const tile = this.page.getByTestId(`participant_tile_${name}`).first();
    await tile.hover();
    return tile;
  }

  /**
   * Opens the menu of peer `name`'s tile. By keyboard: the local tile's inset may lie over the
   * menu button, and a Radix menu opens on Enter as on a click.
   */
  async openTileMenu(name) {
    // Off the tile first: the button shows on a fresh hover, not after a menu closed.
    await this.page.mouse.move(1, 1);
    const button = (await this.tile(name)).getByTestId('participant_menu_btn');
    await button.focus();
    await this.page.keyboard.press('Enter');
  }
}

async function artifacts(t, platform, meetings) {
  const dir = join(ARTIFACTS, t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'control.log'), platform.logText());
  for (const m of meetings) {
    await m.page.screenshot({ path: join(dir, `${m.name}.png`) }).catch(() => {});
    writeFileSync(join(dir, `${m.name}.console.txt`), m.console.join('\n'));
  }
}

/**
 * Runs `body({platform, browser, room, open})` with a fresh platform, a browser and a room of
 * the default template; `open(role, name)` joins it through Prebuilt with that role's code.
 * A failure leaves screenshots, consoles and the control log; everything is torn down.
 */
async function withMeetingRoom(t, name, body) {
  const platform = await startPlatform();
  const browser = await launchBrowser();
  const meetings = [];
  try {
    const room = await platform.api('POST', '/v2/rooms', { name: `${name}-${process.pid}` });
    const codes = await platform.api('POST', `/v2/room-codes/room/${room.id}`, {});
    const open = async (role, peerName) => {
      const m = await Meeting.open(platform, browser, codes.data.find((c) => c.role === role).code, peerName);
      meetings.push(m);
      return m;
    };
    await body({ platform, browser, room, open });
  } catch (e) {
    await artifacts(t, platform, meetings).catch(() => {});
    throw e;
  } finally {
    await browser.close().catch(() => {});
    await platform.stop();
  }
}

test('Prebuilt: join by room code, see and hear, chat and pin, raise a hand, mute, remove, end the session', T, (t) =>
  withMeetingRoom(t, 'prebuilt', async ({ platform, browser, room, open }) => {

    // The meeting page is served for a code; a path without one explains itself.
    const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
    await page.goto(new URL('/meeting/', platform.demoUrl).href);
    await page.getByText('This meeting link has no room code').waitFor({ timeout: 15_000 });

    const host = await open('host', 'Hanna');
    const guest = await open('guest', 'Gus');

    // See and hear each other: the other's video decoded, its audio received.
    await host.expectMedia("Gus's camera and microphone");
    await guest.expectMedia("Hanna's camera and microphone");
    await host.tile('Gus');
    await guest.tile('Hanna');
    // Each tile shows its peer's connection quality, which the server scores from the router's
    // view of that peer's downlink.
    await host.page.getByTestId('participant_tile_Gus').getByTestId('tile_network').waitFor({ timeout: 15_000 });
    await guest.page.getByTestId('participant_tile_Hanna').getByTestId('tile_network').waitFor({ timeout: 15_000 });

    // Chat, and a pin the other side sees (Prebuilt keeps pins in the session store).
    const text = `hello from Gus ${process.pid}`;
    await guest.testId('chat_btn').click();
    await guest.page.getByPlaceholder('Send a message...').fill(text);
    await guest.testId('send_msg_btn').click();
    await host.testId('chat_btn').click();
    const message = host.testId('chat_msg').filter({ hasText: text });
    await message.waitFor({ timeout: 15_000 });
    await message.hover();
    await host.testId('pin_message_btn').first().click();
    await guest.page.getByText(`Gus: ${text}`).first().waitFor({ timeout: 15_000 });
    await host.testId('chat_btn').click();
    await guest.testId('chat_btn').click();

    // A raised hand shows on the guest's tile at the host.
    await guest.testId('hand_raise_btn').click();
    await waitFor('the host to see the raised hand', async () =>
      (await host.page.getByTestId('participant_tile_Gus').getByTestId('raiseHand_icon_onTile').count()) > 0,
    { timeout: 15_000 });

    // The host mutes the guest's microphone: the guest's audio stops reaching the host.
    await host.openTileMenu('Gus');
    await host.testId('mute_audio_participant_btn').click();
    await waitFor("the guest's microphone to be muted", async () => {
      const a = await host.inbound();
      await new Promise((r) => setTimeout(r, 1500));
      const b = await host.inbound();
      return b.audio - a.audio < 2_000; // Opus DTX/comfort noise at most, no speech frames
    }, { timeout: 20_000 });

    // The host removes the guest, whose page leaves the call.
    await host.openTileMenu('Gus');
    await host.testId('remove_participant_btn').click();
    await guest.page.getByText('You left the room').waitFor({ timeout: 15_000 });
    await waitFor('the host to see the guest gone', async () =>
      (await host.page.getByTestId('participant_tile_Gus').count()) === 0,
    { timeout: 15_000 });

    // A second guest, then the host ends the session for everyone.
    const second = await open('guest', 'Greta');
    await second.expectMedia("Hanna's camera and microphone");
    await host.testId('leave_end_dropdown_trigger').click();
    await host.testId('end_room_btn').click();
    await host.page.getByRole('button', { name: /End Session/ }).last().click();
    await second.page.getByText('You left the room').waitFor({ timeout: 15_000 });
    const live = await waitFor('the session to close', async () => {
      const s = await platform.api('GET', `/v2/sessions?room_id=${room.id}&active=false`);
      return s.data.length ? s.data[0] : null;
    }, { timeout: 15_000 });
    assert.equal(live.active, false);
  }));

test('Prebuilt: a poll and a quiz, made by the host, answered by the guest, with results on both sides', T, (t) =>
  withMeetingRoom(t, 'prebuilt-polls', async ({ open }) => {
    const host = await open('host', 'Hanna');
    const guest = await open('guest', 'Gus');

    for (const kind of ['Poll', 'Quiz']) {
      const title = `${kind} ${process.pid}`;
      // The host makes it: a name, one single-choice question with two options, launched.
      await host.testId('polls_btn').click();
      if (kind === 'Quiz') await host.page.getByText('Quiz', { exact: true }).first().click();
      await host.page.getByPlaceholder('Enter a name to continue').fill(title);
      await host.page.getByRole('button', { name: `Create ${kind}` }).click();
      await host.page.getByPlaceholder('Ask a question').fill('Lunch or dinner?');
      await host.page.getByPlaceholder('Option 1').fill('Lunch');
      await host.page.getByPlaceholder('Option 2').fill('Dinner');
      if (kind === 'Quiz') await host.page.getByRole('radio').nth(1).click();
      await host.page.getByRole('button', { name: 'Save' }).click();
      await host.page.getByRole('button', { name: `Launch ${kind.toLowerCase()}` }).click();

      // The guest is told, opens it and answers "Dinner".
      const answer = kind === 'Quiz' ? 'Answer' : 'Vote';
      await guest.page.getByText(`started a ${kind.toLowerCase()}: ${title}`).first().waitFor({ timeout: 15_000 });
      await guest.testId('polls_btn').click();
      await guest.page.getByRole('button', { name: 'View' }).first().click();
      await guest.page.getByText('Lunch or dinner?').waitFor({ timeout: 10_000 });
      await guest.page.getByRole('radio').nth(1).click();
      await guest.page.getByRole('button', { name: answer }).last().click();
      await guest.page.getByText(kind === 'Quiz' ? 'Answered' : 'Voted').first().waitFor({ timeout: 15_000 });
      if (kind === 'Poll') await guest.page.getByText('1 vote').first().waitFor({ timeout: 10_000 });

      // The host ends it; both see it ended, with its result.
      await host.page.getByRole('button', { name: `End ${kind.toLowerCase()}` }).click();
      for (const m of [host, guest]) await m.page.getByText('ENDED').first().waitFor({ timeout: 15_000 });
      if (kind === 'Poll') {
        await host.page.getByText('1 vote').first().waitFor({ timeout: 10_000 });
      } else {
        // The quiz's summary: the one voter answered right, and ranks first.
        await host.page.getByText('100% (1/1)').first().waitFor({ timeout: 10_000 });
        await guest.page.getByText('YOUR RANK', { exact: false }).first().waitFor({ timeout: 10_000 });
        await guest.page.getByText('1/1').first().waitFor({ timeout: 10_000 });
        await host.page.getByRole('button', { name: 'View Leaderboard' }).click();
        await host.page.getByText('Leaderboard', { exact: true }).waitFor({ timeout: 10_000 });
        await host.page.getByText('10 / 10 points').waitFor({ timeout: 10_000 });
      }
      // Back to the list for the next one.
      await host.testId('polls_btn').click();
      await guest.testId('polls_btn').click();
    }
  }));

test('Prebuilt: the host shares its screen, which the guest sees, and moves the guest to another role', T, (t) =>
  withMeetingRoom(t, 'prebuilt-share', async ({ platform, room, open }) => {
    const host = await open('host', 'Hanna');
    const guest = await open('guest', 'Gus');
    await guest.expectMedia("Hanna's camera and microphone");

    // The screenshare button sits just before its options menu in the footer.
    await host.testId('sharing_btn').locator('xpath=preceding-sibling::*[1]').click();
    await guest.testId('screenshare_tile').first().waitFor({ timeout: 20_000 });
    const before = await guest.inbound();
    await waitFor('the screenshare to be decoded at the guest', async () => (await guest.inbound()).frames > before.frames + 30, { timeout: 15_000 });

    // Switch Role, from the guest's tile: the server moves the guest to audio-only.
    await host.openTileMenu('Gus');
    await host.testId('change_role_btn').click();
    await host.testId('open_role_selection_dropdown').click();
    await host.testId('audio-only').click();
    await host.testId('change_button').click();
    await waitFor('the guest to be audio-only', async () => {
      const peers = await platform.api('GET', `/v2/active-rooms/${room.id}/peers`);
      return Object.values(peers.peers).some((p) => p.name === 'Gus' && p.role === 'audio-only');
    }, { timeout: 15_000 });
  }));
