import { describe, expect, it } from 'vitest';
import { KeyedLock } from './keyed-lock.js';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

describe('KeyedLock', () => {
  it('should run operations on one key one after another, in order', async () => {
    const lock = new KeyedLock();
    const order: string[] = [];
    const gate = deferred();
    const first = lock.run('vm', async () => {
      order.push('first:start');
      await gate.promise;
      order.push('first:end');
    });
    const second = lock.run('vm', async () => {
      order.push('second');
    });
    await Promise.resolve();
    expect(order).toEqual(['first:start']);
    gate.resolve();
    await Promise.all([first, second]);
    expect(order).toEqual(['first:start', 'first:end', 'second']);
  });

  it('should never make different keys wait on each other', async () => {
    const lock = new KeyedLock();
    const gate = deferred();
    const blocked = lock.run('a', () => gate.promise);
    await expect(lock.run('b', async () => 'done')).resolves.toBe('done');
    gate.resolve();
    await blocked;
  });

  it('should release the key when an operation throws', async () => {
    const lock = new KeyedLock();
    await expect(lock.run('vm', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(lock.run('vm', async () => 42)).resolves.toBe(42);
  });
});
