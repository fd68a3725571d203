import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LeaseStore } from './lease-store.js';

let stateDir: string;

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'microvm-leases-'));
});

afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

function candidates(count: number): string[] {
  return Array.from({ length: count }, (_, index) => String(index + 3));
}

describe('LeaseStore', () => {
  it('should give a value to one owner only', async () => {
    const leases = new LeaseStore(stateDir);
    expect(await leases.claim('cid', '3', 'vm-a')).toBe(true);
    expect(await leases.claim('cid', '3', 'vm-b')).toBe(false);
    expect(await leases.claim('cid', '3', 'vm-a')).toBe(true);
    expect(await leases.ownerOf('cid', '3')).toBe('vm-a');
    expect(await leases.ownerOf('cid', '4')).toBeUndefined();
  });

  it('should hand out distinct values to concurrent claimers and none twice', async () => {
    const leases = new LeaseStore(stateDir);
    const owners = Array.from({ length: 50 }, (_, index) => `vm-${index}`);
    const values = await Promise.all(
      owners.map((owner) => leases.claimFirstFree('cid', owner, candidates(60))),
    );
    expect(new Set(values).size).toBe(50);
    expect(values.every((value) => value !== undefined)).toBe(true);
    expect((await leases.list('cid')).length).toBe(50);
  });

  it('should keep values apart between stores that share only the directory', async () => {
    // Two stores share nothing but the file system, as two processes would: link(2) alone arbitrates.
    const [first, second] = await Promise.all(
      ['a', 'b'].map((prefix) => {
        const leases = new LeaseStore(stateDir);
        return Promise.all(
          Array.from({ length: 20 }, (_, index) =>
            leases.claimFirstFree('pool', `${prefix}-${index}`, candidates(100)),
          ),
        );
      }),
    );
    expect(new Set([...first!, ...second!]).size).toBe(40);
  });

  it('should return the value an owner already holds instead of a second one', async () => {
    const leases = new LeaseStore(stateDir);
    const first = await leases.claimFirstFree('subnet', 'vm-a', ['10.0.0.0', '10.0.0.4']);
    const again = await leases.claimFirstFree('subnet', 'vm-a', ['10.0.0.0', '10.0.0.4']);
    expect(again).toBe(first);
    expect(await leases.list('subnet')).toHaveLength(1);
  });

  it('should say undefined when the pool is exhausted', async () => {
    const leases = new LeaseStore(stateDir);
    await leases.claimFirstFree('cid', 'vm-a', ['3']);
    expect(await leases.claimFirstFree('cid', 'vm-b', ['3'])).toBeUndefined();
  });

  it('should free only what the owner holds', async () => {
    const leases = new LeaseStore(stateDir);
    await leases.claim('cid', '3', 'vm-a');
    await leases.claim('cid', '4', 'vm-a');
    await leases.claim('cid', '5', 'vm-b');
    expect(await leases.release('cid', '5', 'vm-a')).toBe(false);
    expect((await leases.releaseOwner('cid', 'vm-a')).sort()).toEqual(['3', '4']);
    expect((await leases.list('cid')).map((lease) => lease.value)).toEqual(['5']);
    expect(await readdir(join(stateDir, 'leases', 'cid'))).toEqual(['5']);
  });

  it('should free leases of owners that are gone', async () => {
    const leases = new LeaseStore(stateDir);
    await leases.claim('cid', '3', 'vm-live');
    await leases.claim('cid', '4', 'vm-dead');
    const freed = await leases.releaseUnknownOwners('cid', new Set(['vm-live']));
    expect(freed).toEqual([{ pool: 'cid', value: '4', owner: 'vm-dead' }]);
    expect(await leases.ownerOf('cid', '3')).toBe('vm-live');
  });

  it.each([
    ['pool', '../escape', '3'],
    ['pool', 'Upper', '3'],
    ['pool', '', '3'],
    ['value', 'cid', '../3'],
    ['value', 'cid', 'a/b'],
    ['value', 'cid', '..'],
    ['value', 'cid', ''],
  ])('should reject a bad %s (%s, %s) without touching the disk', async (field, pool, value) => {
    const leases = new LeaseStore(stateDir);
    await expect(leases.claim(pool, value, 'vm-a')).rejects.toMatchObject({
      code: 'ERR_MICROVM_INVALID_INPUT',
      field,
    });
    expect(await readdir(stateDir)).toEqual([]);
  });
});
