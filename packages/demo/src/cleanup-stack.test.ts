import { describe, expect, it } from 'vitest';
import { CleanupStack } from './cleanup-stack.js';

describe('CleanupStack', () => {
  it('should remove newest first, go on past a failure, and report it', async () => {
    const stack = new CleanupStack();
    const removed: string[] = [];
    stack.defer('dir', async () => removed.push('dir'));
    stack.defer('namespace', async () => {
      throw new Error('busy');
    });
    stack.defer('vm', async () => removed.push('vm'));
    expect(stack.pending).toEqual(['vm', 'namespace', 'dir']);

    const failures = await stack.run();

    expect(removed).toEqual(['vm', 'dir']);
    expect(failures).toEqual([{ description: 'namespace', error: new Error('busy') }]);
    expect(stack.pending).toEqual([]);
  });

  it('should run each step once however often it is asked', async () => {
    const stack = new CleanupStack();
    let runs = 0;
    stack.defer('once', async () => {
      runs += 1;
    });
    await Promise.all([stack.run(), stack.run(), stack.settled()]);
    expect(runs).toBe(1);
    expect(stack.started).toBe(true);
  });

  it('should remove at once what is registered after the cleanup started', async () => {
    const stack = new CleanupStack();
    await stack.run();
    const removed: string[] = [];
    stack.defer('late', async () => removed.push('late'));
    expect(await stack.settled()).toEqual([]);
    expect(removed).toEqual(['late']);
  });
});
