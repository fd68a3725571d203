import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ENV_VARIABLES, optionsFromEnv } from './env-options.js';
import { PRIMITIVE_NAMES } from './types.js';

describe('optionsFromEnv', () => {
  it('should leave every option unset when no variable is set, so each primitive keeps its defaults', () => {
    for (const name of PRIMITIVE_NAMES) expect(optionsFromEnv(name, {})).toEqual({});
  });

  it('should read the network variables', () => {
    expect(
      optionsFromEnv('network', {
        MICROVM_NETWORK_MODE: 'namespaced',
        MICROVM_NETWORK_POOL: '10.10.0.0/16',
        MICROVM_NETWORK_NAT: 'no',
        MICROVM_NETWORK_DNS_SERVERS: '1.1.1.1, 9.9.9.9',
        MICROVM_NETWORK_MTU: '1400',
        MICROVM_NETWORK_NAMESPACE: ' ',
      }),
    ).toEqual({
      mode: 'namespaced',
      pool: '10.10.0.0/16',
      nat: false,
      dnsServers: ['1.1.1.1', '9.9.9.9'],
      mtu: 1400,
    });
  });

  it('should build a firewall policy from the preset and the allow list', () => {
    expect(
      optionsFromEnv('firewall', {
        MICROVM_FIREWALL_PRESET: 'internet-only',
        MICROVM_FIREWALL_ALLOW: '10.0.0.0/8,tcp:192.0.2.7:443',
        MICROVM_FIREWALL_DNS: 'false',
      }),
    ).toEqual({
      policy: {
        preset: 'internet-only',
        allow: [{ cidr: '10.0.0.0/8' }, { cidr: '192.0.2.7', protocol: 'tcp', port: 443 }],
        dns: false,
      },
    });
  });

  it('should read the jailer, console, vsock and shutdown variables with their types', () => {
    expect(
      optionsFromEnv('jailer', {
        MICROVM_JAILER_BIN: '/usr/local/bin/jailer',
        MICROVM_JAILER_UID: '1234',
        MICROVM_JAILER_NEW_PID_NS: '1',
        MICROVM_JAILER_CGROUP_VERSION: '2',
      }),
    ).toEqual({ jailerBinary: '/usr/local/bin/jailer', uid: 1234, newPidNamespace: true, cgroupVersion: 2 });
    expect(
      optionsFromEnv('console', { MICROVM_CONSOLE_MAX_LINES: '50', MICROVM_CONSOLE_LOG_FILES: 'on' }),
    ).toEqual({
      logFiles: true,
      console: { maxLines: 50 },
    });
    expect(optionsFromEnv('vsock', { MICROVM_VSOCK_MIN_CID: '100' })).toEqual({ minGuestCid: 100 });
    expect(optionsFromEnv('shutdown', { MICROVM_SHUTDOWN_TERMINATE_GRACE_MS: '250' })).toEqual({
      terminateGraceMs: 250,
    });
  });

  it.each([
    ['network', 'MICROVM_NETWORK_MODE', 'nat'],
    ['network', 'MICROVM_NETWORK_MTU', '1.5k'],
    ['network', 'MICROVM_NETWORK_NAT', 'maybe'],
    ['firewall', 'MICROVM_FIREWALL_ALLOW', 'icmp:10.0.0.1:1'],
    ['firewall', 'MICROVM_FIREWALL_ALLOW', 'tcp:10.0.0.1'],
    ['jailer', 'MICROVM_JAILER_CGROUP_VERSION', '3'],
    ['jailer', 'MICROVM_JAILER_UID', '-1'],
  ] as const)('should reject %s variable %s=%s naming the variable', (name, variable, value) => {
    expect(() => optionsFromEnv(name, { [variable]: value })).toThrow(
      expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT', field: variable }),
    );
  });
});

describe('the README table', () => {
  it('should document every variable the composer reads, and no other', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const documented = new Set([...readme.matchAll(/^\| `(MICROVM_[A-Z_]+)`/gm)].map((match) => match[1]));
    const toggles = PRIMITIVE_NAMES.map((name) => `MICROVM_COMPOSE_${name.toUpperCase()}`);
    expect([...documented].sort()).toEqual(
      [...toggles, ...ENV_VARIABLES.map((variable) => variable.name)].sort(),
    );
  });
});
