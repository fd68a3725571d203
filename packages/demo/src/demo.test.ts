import { describe, expect, it } from 'vitest';
import { namesForRun } from './demo.js';

describe('namesForRun', () => {
  it('should name everything after the pid, within the limits of interface and VM names', () => {
    const names = namesForRun(4_194_304, true); // the largest pid Linux hands out
    expect(names).toEqual({
      tag: '2hwcg',
      vmId: 'demo-2hwcg',
      host: 'mvd2hwcgh',
      internet: 'mvd2hwcgi',
      guest: 'mvd2hwcgg',
    });
    for (const name of [names.host, names.internet, names.guest!])
      expect(name.length).toBeLessThanOrEqual(15);
    expect(namesForRun(42, false).guest).toBeUndefined();
  });
});
