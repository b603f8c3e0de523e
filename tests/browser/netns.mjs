// Network namespaces for tests that need a client on another network than the server: one
// whose UDP is blocked by a firewall, one behind NAT. Needs root (`ip`, `nft`); every namespace
// is deleted at teardown, and at exit if the runner dies.
//
//   const ns = clientNetns({ blockUdp: true });   // ns.hostIp (our side), ns.nsIp (its side)
//   const browser = await launchBrowser([], ns.chromium);   // Chromium inside it
//   ...
//   ns.remove();
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM } from './harness.mjs';

const live = new Set();
let counter = 0;

function sh(cmd, args, input) {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
}

/** Whether this process may make namespaces (root with `ip` and `nft`). */
export function netnsAvailable() {
  if (process.getuid?.() !== 0) return false;
  try {
    sh('ip', ['-V']);
    sh('nft', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/**
 * A namespace joined to ours by a veth pair on its own /24: `hostIp` on our side, `nsIp` on its
 * side (its default route). With `blockUdp`, every UDP datagram it sends is dropped (nftables,
 * in its output hook), as an office firewall that allows only TCP would. `chromium` is an
 * executable that runs Chromium inside it (Playwright's pipe to Chromium passes through).
 */
export function clientNetns({ blockUdp = false } = {}) {
  const n = (process.pid % 200) * 4 + (counter++ % 4);
  const name = `tns-${process.pid}-${counter}`;
  const subnet = `10.${200 + Math.floor(n / 250)}.${n % 250}`;
  const hostIp = `${subnet}.1`;
  const nsIp = `${subnet}.2`;
  const [hostIf, nsIf] = [`vh${process.pid % 100000}x${counter}`, `vn${process.pid % 100000}x${counter}`];
  const dir = mkdtempSync(join(tmpdir(), 'netns-'));
  const ns = {
    name,
    hostIp,
    nsIp,
    chromium: join(dir, 'chromium'),
    remove() {
      if (!live.delete(ns)) return;
      try {
        sh('ip', ['netns', 'del', name]);
      } catch {
        // already gone
      }
      try {
        sh('ip', ['link', 'del', hostIf]);
      } catch {
        // went with the namespace
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(ns);
  try {
    sh('ip', ['netns', 'add', name]);
    sh('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name]);
    sh('ip', ['addr', 'add', `${hostIp}/24`, 'dev', hostIf]);
    sh('ip', ['link', 'set', hostIf, 'up']);
    const inNs = (...args) => sh('ip', ['netns', 'exec', name, ...args]);
    inNs('ip', 'link', 'set', 'lo', 'up');
    inNs('ip', 'addr', 'add', `${nsIp}/24`, 'dev', nsIf);
    inNs('ip', 'link', 'set', nsIf, 'up');
    inNs('ip', 'route', 'add', 'default', 'via', hostIp);
    if (blockUdp) {
      const rules = [
        'table inet block_udp {',
        '  chain out { type filter hook output priority 0; policy accept; meta l4proto udp counter drop; }',
        '}',
      ].join('\n');
      sh('ip', ['netns', 'exec', name, 'nft', '-f', '-'], rules);
    }
    writeFileSync(ns.chromium, `#!/bin/sh\nexec ip netns exec ${name} ${CHROMIUM} "$@"\n`);
    chmodSync(ns.chromium, 0o755);
  } catch (e) {
    ns.remove();
    throw new Error(`cannot set up network namespace ${name}: ${e.stderr || e.message}`);
  }
  return ns;
}

/** Also drops the namespace's TCP connections to `ports` (e.g. all of TURN but its TLS port). */
export function blockTcpPorts(ns, ports) {
  const rules = [
    'table inet block_tcp {',
    `  chain out { type filter hook output priority 0; policy accept; tcp dport { ${ports.join(', ')} } counter drop; }`,
    '}',
  ].join('\n');
  sh('ip', ['netns', 'exec', ns.name, 'nft', '-f', '-'], rules);
}

/** UDP datagrams the namespace's firewall dropped (its `counter`). */
export function droppedUdp(ns) {
  const out = sh('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'table', 'inet', 'block_udp']);
  const m = out.match(/counter packets (\d+)/);
  return m ? Number(m[1]) : 0;
}

process.on('exit', () => {
  for (const ns of live) ns.remove();
});
