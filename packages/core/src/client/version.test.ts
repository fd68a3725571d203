import { describe, expect, it } from 'vitest';
import { UnsupportedByVersionError } from './client-errors.js';
import { endpointNamed, findEndpoint } from './endpoints.js';
import { assertSupported, isAtLeast, parseFirecrackerVersion, versionRequirements } from './version.js';

describe('parseFirecrackerVersion', () => {
  it.each([
    ['1.16.1', [1, 16, 1]],
    ['v1.4.1', [1, 4, 1]],
    ['1.17.0-dev', [1, 17, 0]],
    [' 1.10.12\n', [1, 10, 12]],
  ])('should read %j', (text, [major, minor, patch]) => {
    expect(parseFirecrackerVersion(text)).toMatchObject({ major, minor, patch });
  });

  it.each(['', '1.16', 'banana', 'x1.2.3'])('should refuse %j', (text) => {
    expect(parseFirecrackerVersion(text)).toBeUndefined();
  });
});

describe('isAtLeast', () => {
  it.each([
    ['1.16.1', '1.16.0', true],
    ['1.16.0', '1.16.0', true],
    ['1.15.9', '1.16.0', false],
    ['1.9.0', '1.12.0', false],
    ['2.0.0', '1.16.0', true],
    ['1.17.0-dev', '1.16.0', true],
  ])('should say %s >= %s is %s', (running, required, expected) => {
    expect(isAtLeast(parseFirecrackerVersion(running)!, required)).toBe(expected);
  });
});

describe('versionRequirements', () => {
  it('should list the endpoint and only the gated fields the body contains', () => {
    const requirements = versionRequirements(endpointNamed('loadSnapshot'), {
      snapshot_path: '/s',
      mem_backend: { backend_type: 'File', backend_path: '/m' },
      clock_realtime: true,
      vsock_override: undefined,
    });

    expect(requirements).toEqual([
      { feature: 'field "mem_backend" of PUT /snapshot/load', requiredVersion: '1.1.0' },
      { feature: 'field "clock_realtime" of PUT /snapshot/load', requiredVersion: '1.16.0' },
    ]);
  });

  it('should refuse a gated field only when the running version is older', () => {
    const requirements = versionRequirements(endpointNamed('putSerial'), {
      rate_limiter: { size: 1, refill_time: 1 },
    });

    expect(() => assertSupported(requirements, parseFirecrackerVersion('1.14.0')!)).toThrow(
      UnsupportedByVersionError,
    );
    expect(() => assertSupported(requirements, parseFirecrackerVersion('1.16.0')!)).not.toThrow();
  });
});

describe('findEndpoint', () => {
  it.each([
    ['PUT', '/drives/rootfs', 'putDrive'],
    ['DELETE', '/network-interfaces/eth0', 'deleteNetworkInterface'],
    ['GET', '/', 'describeInstance'],
    ['PATCH', '/balloon/hinting/stop', 'stopBalloonHinting'],
    ['GET', '/mmds?x=1', 'getMmds'],
  ])('should map %s %s to %s', (method, path, name) => {
    expect(findEndpoint(method, path)?.clientMethod).toBe(name);
  });

  it.each([
    ['GET', '/drives/'],
    ['POST', '/actions'],
    ['GET', '/drives/a/b'],
  ])('should find nothing for %s %s', (method, path) => {
    expect(findEndpoint(method, path)).toBeUndefined();
  });
});
