import { describe, expect, it } from 'vitest';
import { compareHostStates, type HostState } from './host-state.js';

function state(overrides: Partial<HostState> = {}): HostState {
  return {
    namespaces: [],
    hostLinks: ['lo', 'up0'],
    hostNftTables: [],
    rootLinks: [],
    jails: [],
    vmFolders: [],
    snapshots: [],
    leases: [],
    processes: [],
    ...overrides,
  };
}

describe('compareHostStates', () => {
  it('should find nothing when the host is as it was', () => {
    expect(compareHostStates(state(), state())).toEqual([]);
  });

  it('should name everything added or removed, by kind', () => {
    const after = state({
      namespaces: ['v1abcn0a2b3c4d'],
      hostLinks: ['lo'],
      jails: ['firecracker/e2e-1-boot'],
      leases: ['vsock-cid/3'],
      processes: ['4242: firecracker --id e2e-1-boot'],
    });
    expect(compareHostStates(state(), after)).toEqual([
      'namespaces: + v1abcn0a2b3c4d',
      'hostLinks: - up0',
      'jails: + firecracker/e2e-1-boot',
      'leases: + vsock-cid/3',
      'processes: + 4242: firecracker --id e2e-1-boot',
    ]);
  });

  it('should allow only what it is told to ignore', () => {
    const after = state({ hostNftTables: ['table ip microvm-nat', 'table inet microvm'] });
    expect(compareHostStates(state(), after, { hostNftTables: ['table ip microvm-nat'] })).toEqual([
      'hostNftTables: + table inet microvm',
    ]);
  });
});
