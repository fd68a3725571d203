import { randomBytes } from 'node:crypto';
import { link, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MicrovmError, ValidationError } from '../errors/index.js';

/** One value of a pool held by one owner (a VM id). */
export interface Lease {
  pool: string;
  value: string;
  owner: string;
}

const POOL_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** File names must not contain `/`; `:` (IPv6) and `.` are kept readable, anything else is escaped. */
const VALUE_PATTERN = /^[A-Za-z0-9._:-]{1,200}$/;

function storeError(message: string, cause: unknown): MicrovmError {
  return new MicrovmError({ code: 'ERR_MICROVM_STATE_STORE', message, cause });
}

function checkPool(pool: string): void {
  if (!POOL_PATTERN.test(pool)) {
    throw new ValidationError({
      field: 'pool',
      rule: 'must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit',
      value: pool,
    });
  }
}

function checkValue(value: string): void {
  if (!VALUE_PATTERN.test(value) || value === '.' || value === '..') {
    throw new ValidationError({
      field: 'value',
      rule: 'must be 1-200 characters of letters, digits, ".", "_", ":" or "-"',
      value,
    });
  }
}

/**
 * Values handed out from named pools (IP subnets, vsock CIDs, ports), persisted in the state directory as
 * `leases/<pool>/<value>` files holding the owner's id.
 *
 * A claim is a `link(2)` of a fully written temp file onto the value's name: atomic and exclusive across
 * processes sharing the directory, and a reader never sees a lease without its owner. So two hosts programs
 * (or a program and its restarted self) never hand out the same value, and a crash leaves every claim
 * visible to `reconcile()`.
 */
export class LeaseStore {
  readonly leasesDir: string;
  readonly #claimQueues = new Map<string, Promise<void>>();

  constructor(stateDir: string) {
    this.leasesDir = join(stateDir, 'leases');
  }

  #poolDir(pool: string): string {
    checkPool(pool);
    return join(this.leasesDir, pool);
  }

  /** Claims `value` for `owner`. True when it is now held by `owner` (also when it already was). */
  async claim(pool: string, value: string, owner: string): Promise<boolean> {
    checkValue(value);
    const poolDir = this.#poolDir(pool);
    const target = join(poolDir, value);
    const temporary = join(poolDir, `.${value}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await mkdir(poolDir, { recursive: true, mode: 0o700 });
      await writeFile(temporary, owner, { mode: 0o600 });
      await link(temporary, target);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST')
        return (await this.ownerOf(pool, value)) === owner;
      throw storeError(`Could not claim ${value} in lease pool '${pool}'`, error);
    } finally {
      await rm(temporary, { force: true });
    }
  }

  /**
   * Claims the first free value of `candidates` for `owner`, or returns the value `owner` already holds in
   * this pool (so a retried prepare gets the same value). Undefined when every candidate is taken.
   */
  async claimFirstFree(
    pool: string,
    owner: string,
    candidates: Iterable<string>,
  ): Promise<string | undefined> {
    // Claims on one pool from this process take turns: each then lists what the previous one took and claims
    // at the first try, instead of 100 concurrent callers racing through the same taken values. Other processes
    // are still kept apart by link(2).
    const previous = this.#claimQueues.get(pool) ?? Promise.resolve();
    const claimed = previous.then(() => this.#claimFirstFreeNow(pool, owner, candidates));
    const settled = claimed.then(
      () => undefined,
      () => undefined,
    );
    this.#claimQueues.set(pool, settled);
    void settled.then(() => {
      if (this.#claimQueues.get(pool) === settled) this.#claimQueues.delete(pool);
    });
    return claimed;
  }

  async #claimFirstFreeNow(
    pool: string,
    owner: string,
    candidates: Iterable<string>,
  ): Promise<string | undefined> {
    const held = await this.list(pool);
    const mine = held.find((lease) => lease.owner === owner);
    if (mine) return mine.value;
    const taken = new Set(held.map((lease) => lease.value));
    for (const value of candidates) {
      if (taken.has(value)) continue;
      // Another process may have claimed it since the listing: then try the next one.
      if (await this.claim(pool, value, owner)) return value;
    }
    return undefined;
  }

  /** The owner of `value`, or undefined when it is free. */
  async ownerOf(pool: string, value: string): Promise<string | undefined> {
    checkValue(value);
    try {
      return await readFile(join(this.#poolDir(pool), value), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw storeError(`Could not read lease ${value} of pool '${pool}'`, error);
    }
  }

  /** Every lease of the pool. */
  async list(pool: string): Promise<Lease[]> {
    const poolDir = this.#poolDir(pool);
    let names: string[];
    try {
      names = await readdir(poolDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw storeError(`Could not list lease pool '${pool}'`, error);
    }
    const values = names.filter((value) => !value.startsWith('.'));
    const owners = await Promise.all(values.map((value) => this.ownerOf(pool, value)));
    return values.flatMap((value, index) => {
      const owner = owners[index];
      return owner === undefined ? [] : [{ pool, value, owner }];
    });
  }

  /** Frees `value` if `owner` holds it. True when something was freed. */
  async release(pool: string, value: string, owner: string): Promise<boolean> {
    if ((await this.ownerOf(pool, value)) !== owner) return false;
    await rm(join(this.#poolDir(pool), value), { force: true });
    return true;
  }

  /** Frees everything `owner` holds in the pool; returns the freed values. */
  async releaseOwner(pool: string, owner: string): Promise<string[]> {
    const freed: string[] = [];
    for (const lease of await this.list(pool)) {
      if (lease.owner === owner && (await this.release(pool, lease.value, owner))) freed.push(lease.value);
    }
    return freed;
  }

  /** Frees every lease whose owner is not in `keep` (for `reconcile`); returns what was freed. */
  async releaseUnknownOwners(pool: string, keep: ReadonlySet<string>): Promise<Lease[]> {
    const freed: Lease[] = [];
    for (const lease of await this.list(pool)) {
      if (!keep.has(lease.owner) && (await this.release(pool, lease.value, lease.owner))) freed.push(lease);
    }
    return freed;
  }
}
