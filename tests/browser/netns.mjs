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
    hostIf,
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
    // IPv4 only, on both ends: an IPv6 link-local address finishing duplicate detection a
    // second after the link is up makes Chromium abort the page it is loading
    // (ERR_NETWORK_CHANGED), in the namespace and, for this end, in the calling one.
    sh('sysctl', ['-q', '-w', `net.ipv6.conf.${hostIf}.disable_ipv6=1`]);
    sh('ip', ['addr', 'add', `${hostIp}/24`, 'dev', hostIf]);
    sh('ip', ['link', 'set', hostIf, 'up']);
    const inNs = (...args) => sh('ip', ['netns', 'exec', name, ...args]);
    inNs('sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1');
    inNs('sysctl', '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1');
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

/**
 * A server's namespace behind 1:1 NAT, as a cloud VM: it has only `privateIp`, and our
 * namespace (the "internet") maps `publicIp` to it both ways with nftables (DNAT in, SNAT out),
 * and drops anything from `clients` (a namespace from clientNetns) that reaches the private
 * address without going through the public one. Run the platform in it with
 * `startPlatform({ netns: server.name, host: server.privateIp, publicHost: server.publicIp })`.
 */
export function natServerNetns(clients) {
  const ns = clientNetns();
  const n = Number(ns.hostIp.split('.')[2]);
  const publicIp = `203.0.113.${(n % 250) + 1}`;
  const table = `nat_${ns.name.replace(/-/g, '_')}`;
  const rules = [
    `table ip ${table} {`,
    `  chain pre { type nat hook prerouting priority dstnat; ip daddr ${publicIp} dnat to ${ns.nsIp}; }`,
    `  chain out { type nat hook output priority -100; ip daddr ${publicIp} dnat to ${ns.nsIp}; }`,
    `  chain post { type nat hook postrouting priority srcnat; ip saddr ${ns.nsIp} snat to ${publicIp}; }`,
    `  chain direct { type filter hook forward priority 0; policy accept; ip saddr ${clients.nsIp} ct original ip daddr ${ns.nsIp} counter drop; }`,
    '}',
  ].join('\n');
  try {
    sh('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    sh('nft', ['-f', '-'], rules);
    // Our own connections to the public address (the tests' REST calls) need a route to it
    // before the output hook rewrites it to the private one.
    sh('ip', ['route', 'add', `${publicIp}/32`, 'dev', ns.hostIf]);
  } catch (e) {
    ns.remove();
    throw new Error(`cannot set up the NAT for ${ns.name}: ${e.stderr || e.message}`);
  }
  const remove = ns.remove;
  return Object.assign(ns, {
    privateIp: ns.nsIp,
    publicIp,
    remove() {
      try {
        sh('nft', ['delete', 'table', 'ip', table]);
      } catch {
        // already gone
      }
      remove();
    },
  });
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
