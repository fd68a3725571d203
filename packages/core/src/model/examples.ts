/**
 * Two reference specs: the smallest valid one and one with every field set. Tests (and the client's
 * conformance test against Firecracker's swagger file) use them to produce minimal and maximal bodies.
 * Each call returns a fresh object, so callers may mutate it.
 */
import type { VmSpec } from './vm-spec.js';

/** Only the required fields. */
export function exampleMinimalVmSpec(): VmSpec {
  return {
    bootSource: { kernelImagePath: '/srv/images/vmlinux' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
  };
}

/**
 * Every field of the model set, with values Firecracker v1.16.1's schema accepts. Two things a real
 * Firecracker refuses anyway: it carries both the x86_64 and the aarch64 CPU-config fields (each
 * architecture rejects the other's), and the deprecated static `cpuTemplate` next to a custom `cpuConfig`.
 */
export function exampleMaximalVmSpec(): VmSpec {
  return {
    bootSource: {
      kernelImagePath: '/srv/images/vmlinux',
      bootArgs: 'console=ttyS0 reboot=k panic=1',
      initrdPath: '/srv/images/initrd.img',
    },
    machine: {
      vcpuCount: 2,
      memSizeMib: 1024,
      smt: true,
      trackDirtyPages: true,
      hugePages: '2M',
      cpuTemplate: 'T2',
    },
    cpuConfig: {
      kvmCapabilities: ['121', '!122'],
      cpuidModifiers: [
        {
          leaf: '0x1',
          subleaf: '0x0',
          flags: 0,
          modifiers: [{ register: 'ecx', bitmap: `0b${'x'.repeat(31)}1` }],
        },
      ],
      msrModifiers: [{ addr: '0x10a', bitmap: `0b${'x'.repeat(63)}0` }],
      regModifiers: [{ addr: '0x603000000013c020', bitmap: `0b${'x'.repeat(60)}0001` }],
      vcpuFeatures: [{ index: 0, bitmap: `0b${'x'.repeat(25)}1${'x'.repeat(6)}` }],
    },
    drives: [
      {
        driveId: 'rootfs',
        isRootDevice: true,
        partuuid: '0eaa91a0-01',
        cacheType: 'Writeback',
        pathOnHost: '/srv/images/rootfs.ext4',
        isReadOnly: false,
        ioEngine: 'Async',
        rateLimiter: {
          bandwidth: { size: 104857600, refillTimeMs: 1000, oneTimeBurst: 10485760 },
          ops: { size: 1000, refillTimeMs: 1000, oneTimeBurst: 100 },
        },
      },
      {
        driveId: 'scratch',
        isRootDevice: false,
        cacheType: 'Unsafe',
        socket: '/run/vhost-user/scratch.sock',
      },
    ],
    networkInterfaces: [
      {
        ifaceId: 'eth0',
        hostDevName: 'tap0',
        guestMac: '06:00:AC:10:00:02',
        mtu: 1500,
        rxRateLimiter: { bandwidth: { size: 12500000, refillTimeMs: 100 } },
        txRateLimiter: { ops: { size: 10000, refillTimeMs: 1000, oneTimeBurst: 0 } },
      },
    ],
    vsock: { guestCid: 3, udsPath: '/run/microvm/v.sock' },
    balloon: {
      amountMib: 256,
      deflateOnOom: true,
      statsPollingIntervalS: 5,
      freePageHinting: true,
      freePageReporting: true,
    },
    entropy: { rateLimiter: { bandwidth: { size: 1024, refillTimeMs: 100 } } },
    pmem: [
      {
        id: 'data',
        pathOnHost: '/srv/images/data.img',
        rootDevice: false,
        readOnly: true,
        rateLimiter: { ops: { size: 500, refillTimeMs: 1000 } },
      },
    ],
    mmds: {
      config: {
        networkInterfaces: ['eth0'],
        version: 'V2',
        ipv4Address: '169.254.169.250',
        imdsCompat: true,
      },
      data: {
        latest: { 'meta-data': { 'instance-id': 'sandbox-42', tags: ['a', 'b'], ready: true, cores: 2 } },
      },
    },
    logger: {
      logPath: '/var/log/microvm/firecracker.log',
      level: 'Debug',
      showLevel: true,
      showLogOrigin: true,
      module: 'api_server::request',
    },
    metrics: { metricsPath: '/var/log/microvm/metrics.fifo' },
    serial: {
      serialOutPath: '/var/log/microvm/serial.log',
      rateLimiter: { size: 65536, refillTimeMs: 1000, oneTimeBurst: 1048576 },
    },
    memoryHotplug: { totalSizeMib: 2048, slotSizeMib: 256, blockSizeMib: 4 },
  };
}
