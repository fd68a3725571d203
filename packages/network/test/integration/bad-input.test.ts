import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { NetworkManager, type NetworkManagerOptions } from '../../src/index.js';
import { Sandbox, sh } from './helpers.js';

const sandbox = new Sandbox();
afterEach(() => sandbox.cleanup());

/** Everything a failed attach could have changed: links, addresses, routes, rules, forwarding, leases. */
async function hostState(namespace: string, stateDir: string): Promise<string> {
  const leases = await readdir(join(stateDir, 'leases'), { recursive: true }).catch(() => []);
  return [
    await sh('ip', ['-n', namespace, '-j', 'addr', 'show']),
    await sh('ip', ['-n', namespace, '-j', 'route', 'show']),
    await sh('ip', ['netns', 'exec', namespace, 'nft', 'list', 'ruleset']),
    await sh('ip', ['netns', 'exec', namespace, 'sysctl', '-n', 'net.ipv4.ip_forward']),
    // Only namespaces this manager could have made (`mvn…`): other tests on the host add and remove their own.
    (await sh('ip', ['netns', 'list']))
      .split('\n')
      .filter((line) => /^mvn[0-9a-z]{7}\b/.test(line))
      .join('\n'),
    JSON.stringify(leases.sort()),
  ].join('\n');
}

// value → code (and the field or reason) → the host is as it was.
const cases: [string, Partial<NetworkManagerOptions>, string, { field?: string; reason?: string }][] = [
  ['malformed pool', { pool: '10.205.0/24' }, 'ERR_MICROVM_INVALID_INPUT', { field: 'pool' }],
  ['pool with host bits', { pool: '10.205.0.1/24' }, 'ERR_MICROVM_INVALID_INPUT', { field: 'pool' }],
  ['pool prefix too long', { pool: '10.205.0.0/31' }, 'ERR_MICROVM_INVALID_INPUT', { field: 'pool' }],
  [
    'pool overlapping the uplink',
    { pool: '198.51.100.0/25' },
    'ERR_MICROVM_INVALID_INPUT',
    { field: 'pool' },
  ],
  [
    'guest subnet overlapping the pool',
    { mode: 'namespaced', pool: '192.168.0.0/16' },
    'ERR_MICROVM_INVALID_INPUT',
    { field: 'guestSubnet' },
  ],
  [
    'bridge name too long',
    { mode: 'bridge', bridgeName: 'a-very-long-bridge' },
    'ERR_MICROVM_INVALID_INPUT',
    { field: 'bridgeName' },
  ],
  ['name prefix too long', { namePrefix: 'microvm' }, 'ERR_MICROVM_INVALID_INPUT', { field: 'namePrefix' }],
  [
    'uplink name too long',
    { uplink: 'uplink-interface-0' },
    'ERR_MICROVM_INVALID_INPUT',
    { field: 'uplink' },
  ],
  ['missing uplink', { uplink: 'nosuch0' }, 'ERR_MICROVM_INVALID_INPUT', { field: 'uplink' }],
  ['bad DNS server', { dnsServers: ['1.1.1'] }, 'ERR_MICROVM_INVALID_INPUT', { field: 'dnsServers[0]' }],
  [
    'missing namespace',
    { namespace: 'no-such-namespace' },
    'ERR_MICROVM_INVALID_INPUT',
    { field: 'namespace' },
  ],
];

describe('bad input', () => {
  it.each(cases)('%s → %s, host unchanged', async (_name, overrides, code, detail) => {
    const { host } = await sandbox.hostWithInternet();
    const stateDir = await sandbox.stateDir();
    const before = await hostState(host, stateDir);
    const error = await (async () =>
      new NetworkManager({ namespace: host, stateDir, pool: '10.205.0.0/24', ...overrides }))()
      .then((network) => network.attach('vm-bad'))
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    expect(error).toMatchObject({ code, ...detail });
    expect(await hostState(host, stateDir)).toBe(before);
  });

  it('should refuse a namespace without a default route when no uplink is given, host unchanged', async () => {
    const host = await sandbox.namespace('h');
    const stateDir = await sandbox.stateDir();
    const before = await hostState(host, stateDir);
    const network = new NetworkManager({ namespace: host, stateDir, pool: '10.205.0.0/24' });
    await expect(network.attach('vm-bad')).rejects.toMatchObject({
      code: 'ERR_MICROVM_INVALID_INPUT',
      field: 'uplink',
    });
    expect(await hostState(host, stateDir)).toBe(before);
  });

  it('should say when the pool is exhausted, and keep the VMs that fit', async () => {
    const { host } = await sandbox.hostWithInternet();
    const stateDir = await sandbox.stateDir();
    const network = new NetworkManager({
      namespace: host,
      stateDir,
      pool: '10.205.0.0/29',
      namePrefix: 'ex',
    });
    sandbox.onCleanup(() => Promise.all(['one', 'two'].map((id) => network.detach(id))));
    await network.attach('one');
    await network.attach('two');
    const before = await hostState(host, stateDir);
    await expect(network.attach('three')).rejects.toMatchObject({
      code: 'ERR_MICROVM_INVALID_STATE',
      reason: 'pool-exhausted',
    });
    expect(await hostState(host, stateDir)).toBe(before);
  });

  it('should refuse to run without CAP_NET_ADMIN, host unchanged', async () => {
    const { host } = await sandbox.hostWithInternet();
    const stateDir = await sandbox.stateDir();
    await sh('chmod', ['755', stateDir]);
    const before = await hostState(host, stateDir);
    // The built package, run as `nobody` (uid 65534) in a child process.
    const entry = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
    const script = `
      const { NetworkManager } = await import(${JSON.stringify(entry)});
      const network = new NetworkManager({ namespace: ${JSON.stringify(host)}, stateDir: ${JSON.stringify(stateDir)} });
      try { await network.attach('vm-unprivileged'); console.log('attached'); }
      catch (error) { console.log(JSON.stringify({ code: error.code, reason: error.reason })); }
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      uid: 65534,
      gid: 65534,
    });
    expect(JSON.parse(stdout)).toEqual({ code: 'ERR_MICROVM_INVALID_STATE', reason: 'not-permitted' });
    expect(await hostState(host, stateDir)).toBe(before);
  });
});
