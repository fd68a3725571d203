import { describe, expect, it } from 'vitest';
import { FirecrackerComposer } from './composer.js';
import { DEFAULT_BOOT_ARGS, toVmSpec } from './spec.js';
import { PRIMITIVE_NAMES } from './types.js';

const stateDir = '/tmp/microvm-composer-unit-never-created';

describe('FirecrackerComposer', () => {
  it('should enable nothing when bare and everything with all(), in prepare order', () => {
    expect(FirecrackerComposer.bare().enabled).toEqual([]);
    expect(FirecrackerComposer.all().enabled).toEqual([...PRIMITIVE_NAMES]);
  });

  it('should be immutable: with() and without() return new composers', () => {
    const bare = FirecrackerComposer.bare();
    const withVsock = bare.with('vsock', {});
    expect(bare.enabled).toEqual([]);
    expect(withVsock.enabled).toEqual(['vsock']);
    expect(withVsock.with('network', {}).without('vsock').enabled).toEqual(['network']);
  });

  it('should configure primitives from their environment variables', () => {
    const composer = FirecrackerComposer.fromEnv({
      MICROVM_COMPOSE_JAILER: '0',
      MICROVM_COMPOSE_NETWORK: 'off',
      MICROVM_SHUTDOWN_CTRL_ALT_DEL_GRACE_MS: '1234',
    });
    expect(composer.enabled).toEqual(['firewall', 'vsock', 'console', 'shutdown']);
    expect(composer.options.shutdown).toEqual({ ctrlAltDelGraceMs: 1234 });
  });

  it('should wire the primitives into the provider in prepare order', () => {
    const microvms = FirecrackerComposer.all({ jailer: { chrootBaseDir: '/srv/jailer' } }).provider({
      stateDir,
    });
    expect(microvms.enabled).toEqual([...PRIMITIVE_NAMES]);
  });

  it('should refuse the firewall with bridge networking before any VM exists', () => {
    const composer = FirecrackerComposer.bare().with('network', { mode: 'bridge' }).with('firewall', {});
    expect(() => composer.provider({ stateDir })).toThrow(
      expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT', field: 'network.mode' }),
    );
  });

  it('should reject bad primitive options when the provider is built', () => {
    const composer = FirecrackerComposer.bare().with('network', { namePrefix: 'Has Spaces' });
    expect(() => composer.provider({ stateDir })).toThrow(
      expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT' }),
    );
  });

  it('should refuse an egress policy when the firewall is off, rather than leave the VM unconfined', async () => {
    const microvms = FirecrackerComposer.bare().provider({ stateDir });
    await expect(
      microvms.create('vm-1', { kernel: '/k', rootfs: '/r', egress: 'deny-all' }),
    ).rejects.toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT', field: 'egress' });
  });
});

describe('toVmSpec', () => {
  it('should build a spec from the short form with the default command line', () => {
    expect(toVmSpec({ kernel: '/k', rootfs: '/r', bootArgs: 'quiet', drives: [{ path: '/d' }] })).toEqual({
      bootSource: { kernelImagePath: '/k', bootArgs: `${DEFAULT_BOOT_ARGS} quiet` },
      machine: { vcpuCount: 1, memSizeMib: 256 },
      drives: [
        { driveId: 'rootfs', pathOnHost: '/r', isRootDevice: true, isReadOnly: false },
        { driveId: 'data1', pathOnHost: '/d', isRootDevice: false, isReadOnly: true },
      ],
    });
  });

  it('should name the missing field', () => {
    expect(() => toVmSpec({ kernel: '/k' } as never)).toThrow(expect.objectContaining({ field: 'rootfs' }));
  });
});
