// Self-check of the client side alone, without the platform: serves client/dist over HTTPS
// (a throw-away self-signed certificate) with a stub /api/config, launches Chromium with the
// harness's flags, and checks that the demo loads with no JS error, fills the role select,
// exposes window.__hms, records peer connections, and shows a failed join visibly.
// NOT a test of the server (the stub answers /init with 403 on purpose); `npm run selfcheck`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { DEMO_DIR, RECORD_PCS, launchBrowser, waitFor } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'selfcheck-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
  '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });

const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64').replace(/=+$/, '');
let base;
const server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
  const url = new URL(req.url, base);
  const json = (code, body) => {
    res.writeHead(code, { 'content-type': 'application/json', 'access-control-allow-origin': '*', 'access-control-allow-headers': 'Authorization' });
    res.end(JSON.stringify(body));
  };
  if (url.pathname === '/api/config') return json(200, { initEndpoint: base, roles: ['host', 'guest', 'audio-only'], templateId: 'x' });
  if (url.pathname === '/api/room-codes') return json(200, { room_id: 'r1', codes: { host: 'aaa-bbbb-ccc', guest: 'ddd-eeee-fff' } });
  if (url.pathname === '/v2/token') {
    if (req.method === 'OPTIONS') return json(200, {});
    const token = `${b64({ alg: 'none' })}.${b64({ room_id: 'r1', user_id: 'u1', role: 'guest' })}.sig`;
    return json(200, { token });
  }
  if (url.pathname === '/init') return req.method === 'OPTIONS' ? json(200, {}) : json(403, { code: 403, message: 'no init in the self-check' });
  const file = normalize(join(DEMO_DIR, url.pathname === '/' ? 'index.html' : url.pathname));
  if (!file.startsWith(DEMO_DIR)) return json(403, {});
  try {
    const body = readFileSync(file);
    res.writeHead(200, { 'content-type': types[extname(file)] || 'application/octet-stream' });
    res.end(body);
  } catch {
    json(404, {});
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
base = `https://localhost:${server.address().port}`;

const browser = await launchBrowser();
let failed = false;
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addInitScript(RECORD_PCS);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  if (process.env.VERBOSE) page.on('console', (m) => console.log('console:', m.type(), m.text().slice(0, 300)));
  await page.goto(`${base}/?room=demo&name=selfcheck&role=guest`, { timeout: 15_000 });
  await waitFor('role select filled from /api/config', () =>
    page.evaluate(() => document.querySelectorAll('#role option').length === 3));
  const info = await page.evaluate(() => ({
    hms: Object.keys(window.__hms || {}),
    selectors: Object.keys(window.__hms?.selectors || {}).length,
    state: window.__hms.store.getState(window.__hms.selectors.selectRoomState),
    role: document.getElementById('role').value,
    name: document.getElementById('name').value,
    pcs: (new RTCPeerConnection(), window.__pcs.length),
  }));
  console.log('page:', JSON.stringify(info));
  assert.deepEqual(info.hms.slice(0, 3), ['store', 'actions', 'selectors']);
  assert.ok(info.selectors > 50, 'selectors exposed');
  assert.equal(info.state, 'Disconnected');
  assert.equal(info.role, 'guest');
  assert.equal(info.name, 'selfcheck');
  assert.equal(info.pcs, 1, 'RTCPeerConnection instances are recorded');
  await page.screenshot({ path: join(dir, 'form.png') });

  // A join against the stub's /init (403) must fail visibly, not silently.
  await page.click('#join');
  const errors = await waitFor('a visible join error', async () => {
    const e = await page.evaluate(() => [...document.querySelectorAll('#errors li')].map((li) => li.textContent));
    return e.length ? e : null;
  }, { timeout: 20_000 });
  console.log('errors shown:', JSON.stringify(errors));
  await page.screenshot({ path: join(dir, 'error.png') });
  assert.deepEqual(pageErrors, [], 'no uncaught JS errors');
  console.log(`selfcheck ok (screenshots in ${dir})`);
} catch (e) {
  failed = true;
  console.error('selfcheck FAILED:', e);
} finally {
  await browser.close();
  server.close();
  if (!process.env.KEEP_DATA && !failed) rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
