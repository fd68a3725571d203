import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, type TestContext } from 'vitest';
import {
  bootFiles,
  cleanupSimulators,
  exitWithin,
  type SimulatorHandle,
  startSimulator,
} from './test-helpers.js';
import { jsonMergePatch } from './vmm-state.js';

// The tables run concurrently: each row disposes of its own simulator; the rest clean up after each test.
afterAll(cleanupSimulators);

interface Context {
  dir: string;
  kernel: string;
  rootfs: string;
}

type Step = [method: string, path: string, body?: unknown];

const bootSource = (context: Context): Step => [
  'PUT',
  '/boot-source',
  { kernel_image_path: context.kernel, boot_args: 'console=ttyS0 reboot=k panic=1' },
];
const rootDrive = (context: Context): Step => [
  'PUT',
  '/drives/rootfs',
  { drive_id: 'rootfs', path_on_host: context.rootfs, is_root_device: true, is_read_only: false },
];
const start: Step = ['PUT', '/actions', { action_type: 'InstanceStart' }];
const boot = (context: Context): Step[] => [bootSource(context), rootDrive(context), start];
const pause: Step = ['PATCH', '/vm', { state: 'Paused' }];
const tap = (id: string, name: string, mac?: string): Step => [
  'PUT',
  `/network-interfaces/${id}`,
  { iface_id: id, host_dev_name: name, ...(mac === undefined ? {} : { guest_mac: mac }) },
];
const snapshotLoad = (context: Context): Step => [
  'PUT',
  '/snapshot/load',
  {
    snapshot_path: join(context.dir, 'missing.vmstate'),
    mem_backend: { backend_type: 'File', backend_path: join(context.dir, 'missing.mem') },
  },
];

const NOT_AFTER_BOOT = 'The requested operation is not supported after starting the microVM.';
const NOT_BEFORE_BOOT = 'The requested operation is not supported before starting the microVM.';
const LOAD_NOT_ALLOWED =
  'Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.';

interface Row {
  name: string;
  steps: (context: Context) => Step[];
  status: number;
  fault?: string;
  args?: string[];
  /** Run the steps on a VM that has already booted. */
  afterBoot?: boolean;
  /** Host-side setup before the steps run. */
  prepare?: (context: Context) => void;
}

interface SharedSimulator {
  simulator: SimulatorHandle;
  context: Context;
}

const shared = new Map<string, Promise<SharedSimulator>>();

/**
 * Rows made of one refused request do not change the state they are checked against, so they share one
 * simulator per starting state (fresh or booted) instead of paying for a process each.
 */
function sharedSimulator(kind: 'fresh' | 'booted'): Promise<SharedSimulator> {
  let entry = shared.get(kind);
  if (entry === undefined) {
    entry = (async () => {
      const simulator = await startSimulator();
      const context: Context = { dir: simulator.dir, ...bootFiles(simulator.dir) };
      if (kind === 'booted') {
        for (const [method, path, body] of boot(context)) {
          const reply = await simulator.request(method, path, body);
          if (reply.status >= 300) throw new Error(`boot of the shared simulator failed: ${reply.text}`);
        }
      }
      return { simulator, context };
    })();
    shared.set(kind, entry);
  }
  return entry;
}

/** Every request but the last must succeed; the last is checked against `status` and `fault`. */
async function runRow(row: Row, test: TestContext): Promise<{ status: number; text: string }> {
  let simulator: SimulatorHandle;
  let context: Context;
  const probe = row.steps({ dir: '', kernel: '', rootfs: '' });
  if ((row.afterBoot || (probe.length === 1 && row.status >= 400)) && row.args === undefined) {
    ({ simulator, context } = await sharedSimulator(row.afterBoot ? 'booted' : 'fresh'));
  } else {
    simulator = await startSimulator({ args: row.args });
    test.onTestFinished(() => simulator.dispose());
    context = { dir: simulator.dir, ...bootFiles(simulator.dir) };
    if (row.afterBoot) throw new Error('afterBoot rows run on the shared booted simulator');
  }
  row.prepare?.(context);
  const steps = row.steps(context);
  for (const [index, [method, path, body]] of steps.entries()) {
    const reply = await simulator.request(method, path, body);
    if (index < steps.length - 1) {
      expect(reply.status, `${method} ${path} (setup step ${index}): ${reply.text}`).toBeLessThan(300);
      continue;
    }
    return { status: reply.status, text: reply.text };
  }
  throw new Error('a row needs at least one step');
}

const orderingRows: Row[] = [
  ...(
    [
      ['PUT /boot-source', (c: Context): Step => bootSource(c)],
      ['PUT /machine-config', (): Step => ['PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 128 }]],
      ['PATCH /machine-config', (): Step => ['PATCH', '/machine-config', { vcpu_count: 2 }]],
      ['PUT /logger', (c: Context): Step => ['PUT', '/logger', { log_path: join(c.dir, 'log') }]],
      ['PUT /metrics', (c: Context): Step => ['PUT', '/metrics', { metrics_path: join(c.dir, 'metrics') }]],
      ['PUT /serial', (c: Context): Step => ['PUT', '/serial', { serial_out_path: join(c.dir, 'serial') }]],
      [
        'PUT /vsock',
        (c: Context): Step => ['PUT', '/vsock', { guest_cid: 3, uds_path: join(c.dir, 'v.sock') }],
      ],
      ['PUT /balloon', (): Step => ['PUT', '/balloon', { amount_mib: 1, deflate_on_oom: true }]],
      ['PUT /entropy', (): Step => ['PUT', '/entropy', {}]],
      ['PUT /cpu-config', (): Step => ['PUT', '/cpu-config', {}]],
      ['PUT /hotplug/memory', (): Step => ['PUT', '/hotplug/memory', { total_size_mib: 1024 }]],
      [
        'PUT /mmds/config',
        (): Step => ['PUT', '/mmds/config', { network_interfaces: ['eth0'], version: 'V2' }],
      ],
      ['PUT /snapshot/load', (c: Context): Step => snapshotLoad(c)],
      ['InstanceStart (twice)', (): Step => start],
    ] as const
  ).map(
    ([name, step]): Row => ({
      name: `${name} after boot is refused`,
      afterBoot: true,
      steps: (context) => [step(context)],
      status: 400,
      fault: NOT_AFTER_BOOT,
    }),
  ),
  ...(
    [
      ['PATCH /vm', (): Step => pause],
      [
        'PUT /snapshot/create',
        (c: Context): Step => [
          'PUT',
          '/snapshot/create',
          { snapshot_path: join(c.dir, 's'), mem_file_path: join(c.dir, 'm') },
        ],
      ],
      ['FlushMetrics', (): Step => ['PUT', '/actions', { action_type: 'FlushMetrics' }]],
      ['SendCtrlAltDel', (): Step => ['PUT', '/actions', { action_type: 'SendCtrlAltDel' }]],
      ['PATCH /drives', (): Step => ['PATCH', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: '/x' }]],
      ['PATCH /network-interfaces', (): Step => ['PATCH', '/network-interfaces/eth0', { iface_id: 'eth0' }]],
      ['PATCH /pmem', (): Step => ['PATCH', '/pmem/pm0', { id: 'pm0' }]],
      ['PATCH /balloon', (): Step => ['PATCH', '/balloon', { amount_mib: 1 }]],
      [
        'PATCH /balloon/statistics',
        (): Step => ['PATCH', '/balloon/statistics', { stats_polling_interval_s: 1 }],
      ],
      ['GET /balloon/statistics', (): Step => ['GET', '/balloon/statistics']],
      ['PATCH /balloon/hinting/start', (): Step => ['PATCH', '/balloon/hinting/start']],
      ['GET /balloon/hinting/status', (): Step => ['GET', '/balloon/hinting/status']],
      ['PATCH /balloon/hinting/stop', (): Step => ['PATCH', '/balloon/hinting/stop']],
      ['GET /hotplug/memory', (): Step => ['GET', '/hotplug/memory']],
      ['PATCH /hotplug/memory', (): Step => ['PATCH', '/hotplug/memory', { requested_size_mib: 128 }]],
      ['DELETE /drives', (): Step => ['DELETE', '/drives/rootfs']],
      ['DELETE /network-interfaces', (): Step => ['DELETE', '/network-interfaces/eth0']],
      ['DELETE /pmem', (): Step => ['DELETE', '/pmem/pm0']],
    ] as const
  ).map(
    ([name, step]): Row => ({
      name: `${name} before boot is refused`,
      steps: (context) => [step(context)],
      status: 400,
      fault: NOT_BEFORE_BOOT,
    }),
  ),
  ...(
    [
      ['PUT /boot-source', (c: Context): Step[] => [bootSource(c)]],
      ['PUT /drives', (c: Context): Step[] => [rootDrive(c)]],
      [
        'PUT /machine-config',
        (): Step[] => [['PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 128 }]],
      ],
      ['PATCH /machine-config', (): Step[] => [['PATCH', '/machine-config', { vcpu_count: 1 }]]],
      ['PUT /network-interfaces', (): Step[] => [tap('eth0', 'tap0')]],
      [
        'PUT /vsock',
        (c: Context): Step[] => [['PUT', '/vsock', { guest_cid: 3, uds_path: join(c.dir, 'v.sock') }]],
      ],
      ['PUT /balloon', (): Step[] => [['PUT', '/balloon', { amount_mib: 1, deflate_on_oom: false }]]],
      ['PUT /entropy', (): Step[] => [['PUT', '/entropy', {}]]],
      ['PUT /pmem', (c: Context): Step[] => [['PUT', '/pmem/pm0', { id: 'pm0', path_on_host: c.rootfs }]]],
      ['PUT /hotplug/memory', (): Step[] => [['PUT', '/hotplug/memory', { total_size_mib: 1024 }]]],
      [
        'PUT /mmds/config',
        (): Step[] => [
          tap('eth0', 'tap0'),
          ['PUT', '/mmds/config', { network_interfaces: ['eth0'], version: 'V2' }],
        ],
      ],
    ] as const
  ).map(
    ([name, steps]): Row => ({
      name: `snapshot load after ${name} is refused`,
      steps: (context) => [...steps(context), snapshotLoad(context)],
      status: 400,
      fault: LOAD_NOT_ALLOWED,
    }),
  ),
  {
    name: 'InstanceStart without a boot source is refused',
    steps: (context) => [rootDrive(context), start],
    status: 400,
    fault: 'Start microvm error: Cannot start microvm without kernel configuration.',
  },
  {
    name: 'PUT /metrics is refused the second time',
    steps: (context) => [
      ['PUT', '/metrics', { metrics_path: join(context.dir, 'm1') }],
      ['PUT', '/metrics', { metrics_path: join(context.dir, 'm2') }],
    ],
    status: 400,
    fault: 'Reinitialization of metrics not allowed.',
  },
  {
    name: 'PUT /logger may be repeated before boot',
    steps: (context) => [
      ['PUT', '/logger', { log_path: join(context.dir, 'l1'), level: 'Debug' }],
      ['PUT', '/logger', { log_path: join(context.dir, 'l2'), level: 'warning' }],
    ],
    status: 204,
  },
  {
    name: 'PUT /mmds/config before its network interface is refused',
    steps: () => [['PUT', '/mmds/config', { network_interfaces: ['eth0'], version: 'V2' }]],
    status: 400,
    fault: 'does not correspond to any existing network interface',
  },
  {
    name: 'PUT /mmds/config after its network interface succeeds',
    steps: () => [
      tap('eth0', 'tap0'),
      ['PUT', '/mmds/config', { network_interfaces: ['eth0'], version: 'V2' }],
    ],
    status: 204,
  },
  {
    name: 'PUT /mmds/config with no interfaces is refused',
    steps: () => [['PUT', '/mmds/config', { network_interfaces: [] }]],
    status: 400,
    fault: 'The list of network interface IDs that allow forwarding MMDS requests is empty.',
  },
  {
    name: 'PUT /mmds/config with a non-link-local address is refused',
    steps: () => [
      tap('eth0', 'tap0'),
      ['PUT', '/mmds/config', { network_interfaces: ['eth0'], ipv4_address: '10.0.0.1' }],
    ],
    status: 400,
    fault: 'The MMDS IPv4 address is not link local.',
  },
  {
    name: 'PUT /mmds/config with a malformed address is refused',
    steps: () => [
      tap('eth0', 'tap0'),
      ['PUT', '/mmds/config', { network_interfaces: ['eth0'], ipv4_address: '169.254.1' }],
    ],
    status: 400,
    fault: 'invalid IPv4 address syntax',
  },
  {
    name: 'a balloon larger than the memory is refused',
    steps: () => [['PUT', '/balloon', { amount_mib: 129, deflate_on_oom: true }]],
    status: 400,
    fault: 'Amount of pages requested is too large.',
  },
  {
    name: 'a big balloon is accepted after raising the memory first',
    steps: () => [
      ['PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 512 }],
      ['PUT', '/balloon', { amount_mib: 256, deflate_on_oom: true }],
    ],
    status: 204,
  },
  {
    name: 'lowering the memory below the balloon is refused',
    steps: () => [
      ['PUT', '/balloon', { amount_mib: 100, deflate_on_oom: true }],
      ['PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 64 }],
    ],
    status: 400,
    fault: 'The memory size (MiB) is smaller than the previously set balloon device target size.',
  },
  {
    name: 'GET /balloon without a balloon is refused',
    steps: () => [['GET', '/balloon']],
    status: 400,
    fault: 'No balloon device found.',
  },
  {
    name: 'a snapshot of a running VM is refused',
    steps: (context) => [
      ...boot(context),
      [
        'PUT',
        '/snapshot/create',
        { snapshot_path: join(context.dir, 's'), mem_file_path: join(context.dir, 'm') },
      ],
    ],
    status: 400,
    fault: 'save/restore unavailable while running',
  },
  {
    name: 'a Diff snapshot without dirty page tracking is refused',
    steps: (context) => [
      ...boot(context),
      pause,
      [
        'PUT',
        '/snapshot/create',
        {
          snapshot_type: 'Diff',
          snapshot_path: join(context.dir, 's'),
          mem_file_path: join(context.dir, 'm'),
        },
      ],
    ],
    status: 400,
    fault: 'Diff snapshots are not allowed on uVMs with dirty page tracking disabled.',
  },
  {
    name: 'a Diff snapshot with dirty page tracking succeeds',
    steps: (context) => [
      ['PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 64, track_dirty_pages: true }],
      ...boot(context),
      pause,
      [
        'PUT',
        '/snapshot/create',
        {
          snapshot_type: 'Diff',
          snapshot_path: join(context.dir, 's'),
          mem_file_path: join(context.dir, 'm'),
        },
      ],
    ],
    status: 204,
  },
  {
    name: 'pausing twice is fine',
    steps: (context) => [...boot(context), pause, pause],
    status: 204,
  },
  {
    name: 'resuming a running VM is fine',
    steps: (context) => [...boot(context), ['PATCH', '/vm', { state: 'Resumed' }]],
    status: 204,
  },
  {
    name: 'drive hotplug without --enable-pci is refused',
    steps: (context) => [
      ...boot(context),
      ['PUT', '/drives/data', { drive_id: 'data', path_on_host: context.rootfs, is_root_device: false }],
    ],
    status: 400,
    fault: 'PCI is not enabled',
  },
  {
    name: 'drive unplug without --enable-pci is refused',
    steps: (context) => [...boot(context), ['DELETE', '/drives/rootfs']],
    status: 400,
    fault: 'PCI is not enabled',
  },
  {
    name: 'network hotplug without --enable-pci is refused',
    steps: (context) => [...boot(context), tap('eth1', 'tap1')],
    status: 400,
    fault: 'PCI is not enabled',
  },
  {
    name: 'drive hotplug with --enable-pci succeeds',
    args: ['--enable-pci'],
    steps: (context) => [
      ...boot(context),
      ['PUT', '/drives/data', { drive_id: 'data', path_on_host: context.rootfs, is_root_device: false }],
    ],
    status: 204,
  },
  {
    name: 'unplugging the root drive is refused',
    args: ['--enable-pci'],
    steps: (context) => [...boot(context), ['DELETE', '/drives/rootfs']],
    status: 400,
    fault: 'Cannot unplug root device',
  },
  {
    name: 'unplugging a hotplugged drive succeeds',
    args: ['--enable-pci'],
    steps: (context) => [
      ...boot(context),
      ['PUT', '/drives/data', { drive_id: 'data', path_on_host: context.rootfs, is_root_device: false }],
      ['DELETE', '/drives/data'],
    ],
    status: 204,
  },
  {
    name: 'FlushMetrics after boot succeeds',
    steps: (context) => [...boot(context), ['PUT', '/actions', { action_type: 'FlushMetrics' }]],
    status: 204,
  },
  {
    name: 'PATCH /drives after boot succeeds',
    steps: (context) => [
      ...boot(context),
      ['PATCH', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: context.kernel }],
    ],
    status: 204,
  },
  {
    name: 'PATCH /drives with a missing file is refused',
    steps: (context) => [
      ...boot(context),
      ['PATCH', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: join(context.dir, 'gone') }],
    ],
    status: 400,
    fault: 'No such file or directory (os error 2)',
  },
  {
    name: 'PATCH /balloon above the memory is refused',
    steps: (context) => [
      ['PUT', '/balloon', { amount_mib: 10, deflate_on_oom: true }],
      ...boot(context),
      ['PATCH', '/balloon', { amount_mib: 4096 }],
    ],
    status: 400,
    fault: 'Amount of pages requested is too large.',
  },
  {
    name: 'GET /balloon/statistics without statistics is refused',
    steps: (context) => [
      ['PUT', '/balloon', { amount_mib: 10, deflate_on_oom: true }],
      ...boot(context),
      ['GET', '/balloon/statistics'],
    ],
    status: 400,
    fault: 'Statistics for the balloon device are not enabled',
  },
  {
    name: 'switching balloon statistics on after boot is refused',
    steps: (context) => [
      ['PUT', '/balloon', { amount_mib: 10, deflate_on_oom: true }],
      ...boot(context),
      ['PATCH', '/balloon/statistics', { stats_polling_interval_s: 5 }],
    ],
    status: 400,
    fault: 'Cannot enable or disable the statistics after boot.',
  },
  {
    name: 'GET /mmds after boot without an MMDS network interface is refused',
    steps: (context) => [['PUT', '/mmds', { a: 1 }], ...boot(context), ['GET', '/mmds']],
    status: 400,
    fault: 'MMDS error: The MMDS data store is not initialized.',
  },
  {
    name: 'PATCH /mmds before any PUT is refused',
    steps: () => [['PATCH', '/mmds', { a: 1 }]],
    status: 400,
    fault: 'MMDS error: The MMDS data store is not initialized.',
  },
  {
    name: 'PUT /mmds above the size limit gives 413',
    args: ['--mmds-size-limit', '100'],
    steps: () => [['PUT', '/mmds', { data: 'x'.repeat(200) }]],
    status: 413,
    fault: "The MMDS patch request doesn't fit.",
  },
  {
    name: 'GET /hotplug/memory after boot without the device is refused',
    steps: (context) => [...boot(context), ['GET', '/hotplug/memory']],
    status: 400,
    fault: 'Memory hotplug device not found.',
  },
];

const validationRows: Row[] = [
  {
    name: 'an unknown top-level field',
    steps: (context) => [['PUT', '/boot-source', { kernel_image_path: context.kernel, extra: 1 }]],
    status: 400,
    fault:
      'An error occurred when deserializing the json body of a request: unknown field `extra`, expected one of `kernel_image_path`, `initrd_path`, `boot_args`',
  },
  {
    name: 'an unknown field in an action',
    steps: () => [['PUT', '/actions', { action_type: 'InstanceStart', when: 'now' }]],
    status: 400,
    fault: 'unknown field `when`, expected `action_type`',
  },
  {
    name: 'an unknown field in a rate limiter',
    steps: (context) => [
      [
        'PUT',
        '/drives/rootfs',
        { ...(rootDrive(context)[2] as object), rate_limiter: { bytes: { size: 1, refill_time: 1 } } },
      ],
    ],
    status: 400,
    fault: 'unknown field `bytes`, expected `bandwidth` or `ops`',
  },
  {
    name: 'an unknown field in a token bucket is ignored',
    steps: (context) => [
      [
        'PUT',
        '/drives/rootfs',
        {
          ...(rootDrive(context)[2] as object),
          rate_limiter: { ops: { size: 1, refill_time: 1, extra: 2 } },
        },
      ],
    ],
    status: 204,
  },
  {
    name: 'an unknown field in a metrics body is ignored',
    steps: (context) => [['PUT', '/metrics', { metrics_path: join(context.dir, 'm'), emit_id: true }]],
    status: 204,
  },
  {
    name: 'a missing required field',
    steps: () => [['PUT', '/boot-source', { boot_args: 'console=ttyS0' }]],
    status: 400,
    fault: 'missing field `kernel_image_path`',
  },
  {
    name: 'a JSON type mismatch',
    steps: () => [['PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: '256' }]],
    status: 400,
    fault: 'invalid type: string "256", expected usize',
  },
  {
    name: 'an unknown enum value',
    steps: () => [['PUT', '/actions', { action_type: 'Reboot' }]],
    status: 400,
    fault: 'unknown variant `Reboot`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel`',
  },
  {
    name: 'malformed JSON',
    steps: () => [['PUT', '/boot-source', '{"kernel_image_path": ']],
    status: 400,
    fault: 'EOF while parsing a value at line 1 column 22',
  },
  {
    name: 'a missing drive id in the path',
    steps: (context) => [['PUT', '/drives/', rootDrive(context)[2]]],
    status: 400,
    fault: 'The ID cannot be empty.',
  },
  {
    name: 'a hyphen in a resource id',
    steps: (context) => [
      ['PUT', '/drives/root-fs', { ...(rootDrive(context)[2] as object), drive_id: 'root-fs' }],
    ],
    status: 400,
    fault: 'API Resource IDs can only contain alphanumeric characters and underscores.',
  },
  {
    name: 'a drive id that differs from the path',
    steps: (context) => [['PUT', '/drives/other', rootDrive(context)[2]]],
    status: 400,
    fault: 'The id from the path does not match the id from the body!',
  },
  {
    name: 'a pmem id that differs from the path',
    steps: (context) => [['PUT', '/pmem/other', { id: 'pm0', path_on_host: context.rootfs }]],
    status: 400,
    fault: 'The id from the path does not match the id from the body!',
  },
  {
    name: 'a network interface id that differs from the path',
    steps: () => [['PUT', '/network-interfaces/eth1', { iface_id: 'eth0', host_dev_name: 'tap0' }]],
    status: 400,
    fault: 'The id from the path [eth1] does not match the id from the body [eth0]!',
  },
  ...([0, 33] as const).map(
    (vcpuCount): Row => ({
      name: `vcpu_count ${vcpuCount}`,
      steps: () => [['PUT', '/machine-config', { vcpu_count: vcpuCount, mem_size_mib: 128 }]],
      status: 400,
      fault:
        'The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even number if SMT is enabled.',
    }),
  ),
  {
    name: 'vcpu_count beyond u8',
    steps: () => [['PUT', '/machine-config', { vcpu_count: 256, mem_size_mib: 128 }]],
    status: 400,
    fault: 'invalid value: integer `256`, expected u8',
  },
  {
    name: 'an odd vcpu_count with SMT',
    steps: () => [['PUT', '/machine-config', { vcpu_count: 3, mem_size_mib: 128, smt: true }]],
    status: 400,
    fault: 'must be 1 or an even number if SMT is enabled',
  },
  ...([1, 2] as const).map(
    (vcpuCount): Row => ({
      name: `vcpu_count ${vcpuCount} with SMT is accepted`,
      steps: () => [['PUT', '/machine-config', { vcpu_count: vcpuCount, mem_size_mib: 128, smt: true }]],
      status: 204,
    }),
  ),
  {
    name: 'mem_size_mib 0',
    steps: () => [['PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 0 }]],
    status: 400,
    fault: 'The memory size (MiB) is either 0, or not a multiple of the configured page size.',
  },
  {
    name: 'an odd mem_size_mib with 2M huge pages',
    steps: () => [['PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 129, huge_pages: '2M' }]],
    status: 400,
    fault: 'The memory size (MiB) is either 0, or not a multiple of the configured page size.',
  },
  {
    name: 'an empty PATCH /machine-config',
    steps: () => [['PATCH', '/machine-config', {}]],
    status: 400,
    fault: 'Empty PATCH request.',
  },
  {
    name: 'an invalid MAC address',
    steps: () => [tap('eth0', 'tap0', '06:00:AC:10:00')],
    status: 400,
    fault: 'The provided MAC address is invalid.',
  },
  {
    name: 'a MAC address used twice',
    steps: () => [tap('eth0', 'tap0', '06:00:AC:10:00:02'), tap('eth1', 'tap1', '06:00:ac:10:00:02')],
    status: 400,
    fault: 'The MAC address is already in use: 06:00:ac:10:00:02',
  },
  {
    name: 'a TAP name longer than 15 bytes',
    steps: () => [tap('eth0', 'a-very-long-tap0')],
    status: 400,
    fault: 'Open tap device failed: Invalid interface name',
  },
  {
    name: 'a TAP used by two interfaces',
    steps: () => [tap('eth0', 'tap0'), tap('eth1', 'tap0')],
    status: 400,
    fault: 'Device or resource busy (os error 16). Invalid TUN/TAP Backend provided by tap0.',
  },
  {
    name: 'an MTU below 68',
    steps: () => [['PUT', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0', mtu: 67 }]],
    status: 400,
    fault: 'Invalid MTU 67',
  },
  {
    name: 'an MTU above 65535',
    steps: () => [
      ['PUT', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0', mtu: 65536 }],
    ],
    status: 400,
    fault: 'invalid value: integer `65536`, expected u16',
  },
  {
    name: 'a second root drive',
    steps: (context) => [
      rootDrive(context),
      ['PUT', '/drives/other', { drive_id: 'other', path_on_host: context.kernel, is_root_device: true }],
    ],
    status: 400,
    fault: 'A root block device already exists!',
  },
  {
    name: 'a missing kernel file',
    steps: (context) => [['PUT', '/boot-source', { kernel_image_path: join(context.dir, 'nope') }]],
    status: 400,
    fault: 'Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)',
  },
  {
    name: 'a missing initrd file',
    steps: (context) => [
      ['PUT', '/boot-source', { kernel_image_path: context.kernel, initrd_path: join(context.dir, 'nope') }],
    ],
    status: 400,
    fault: 'No such file or directory (os error 2)',
  },
  {
    name: 'a missing drive file',
    steps: (context) => [
      [
        'PUT',
        '/drives/rootfs',
        { drive_id: 'rootfs', path_on_host: join(context.dir, 'nope'), is_root_device: true },
      ],
    ],
    status: 400,
    fault: 'Error manipulating the backing file: No such file or directory (os error 2)',
  },
  {
    name: 'a hotplug block size that is not a power of 2',
    steps: () => [['PUT', '/hotplug/memory', { total_size_mib: 1024, block_size_mib: 3 }]],
    status: 400,
    fault: 'Block size must be a power of 2',
  },
  {
    name: 'a hotplug slot size below 128 MiB',
    steps: () => [['PUT', '/hotplug/memory', { total_size_mib: 1024, slot_size_mib: 64 }]],
    status: 400,
    fault: 'Slot size must not be lower than 128 MiB',
  },
  {
    name: 'a hotplug total that is not a multiple of the slot size',
    steps: () => [['PUT', '/hotplug/memory', { total_size_mib: 200 }]],
    status: 400,
    fault: 'Total size must be a multiple of slot size (128 MiB)',
  },
  {
    name: 'a snapshot load without a memory source',
    steps: (context) => [['PUT', '/snapshot/load', { snapshot_path: join(context.dir, 's') }]],
    status: 400,
    fault: 'missing field: either `mem_backend` or `mem_file_path` is required',
  },
  {
    name: 'a snapshot load with two memory sources',
    steps: (context) => [
      [
        'PUT',
        '/snapshot/load',
        {
          snapshot_path: 's',
          mem_file_path: 'm',
          mem_backend: { backend_type: 'File', backend_path: join(context.dir, 'm') },
        },
      ],
    ],
    status: 400,
    fault: 'too many fields: either `mem_backend` or `mem_file_path` exclusively is required',
  },
  {
    name: 'PUT /snapshot without an operation',
    steps: () => [['PUT', '/snapshot', { snapshot_path: 's' }]],
    status: 400,
    fault: 'Missing snapshot operation type.',
  },
  {
    name: 'an unknown snapshot operation',
    steps: () => [['PUT', '/snapshot/delete', { snapshot_path: 's' }]],
    status: 400,
    fault: 'Invalid request method and/or path: PUT /snapshot/delete.',
  },
  {
    name: 'an unknown path',
    steps: () => [['GET', '/foo/bar']],
    status: 400,
    fault: 'Invalid request method and/or path: GET foo.',
  },
  {
    name: 'a known path with the wrong method',
    steps: () => [['GET', '/actions']],
    status: 400,
    fault: 'Invalid request method and/or path: GET actions.',
  },
  {
    name: 'a PUT without a body',
    steps: () => [['PUT', '/boot-source']],
    status: 400,
    fault: 'Empty PUT request.',
  },
  {
    name: 'a PATCH without a body',
    steps: () => [['PATCH', '/vm']],
    status: 400,
    fault: 'Empty PATCH request.',
  },
  {
    name: 'a GET with a body',
    steps: () => [['GET', '/', { a: 1 }]],
    status: 400,
    fault: 'GET request cannot have a body.',
  },
  {
    name: 'a DELETE with a body',
    steps: () => [['DELETE', '/drives/rootfs', { a: 1 }]],
    status: 400,
    fault: 'Empty Delete request.',
  },
  {
    name: 'a vsock socket path that already exists',
    prepare: (context) => writeFileSync(join(context.dir, 'stale.sock'), ''),
    steps: (context) => [['PUT', '/vsock', { guest_cid: 3, uds_path: join(context.dir, 'stale.sock') }]],
    status: 400,
    fault:
      'Cannot create backend for vsock device: Error binding to the host-side Unix socket: Address in use',
  },
  {
    name: 'a guest CID of 2 (Firecracker does not check it)',
    steps: (context) => [['PUT', '/vsock', { guest_cid: 2, uds_path: join(context.dir, 'v.sock') }]],
    status: 204,
  },
  {
    name: 'a logger level in any case',
    steps: () => [['PUT', '/logger', { level: 'wArNiNg' }]],
    status: 204,
  },
  {
    name: 'an unknown logger level',
    steps: () => [['PUT', '/logger', { level: 'Verbose' }]],
    status: 400,
    fault: 'unknown variant `Verbose`',
  },
];

describe.concurrent('the VMM state machine', () => {
  it.for(orderingRows)('$name → $status', async (row, test) => {
    const reply = await runRow(row, test);
    expect(reply.status, reply.text).toBe(row.status);
    if (row.fault !== undefined) expect(JSON.parse(reply.text).fault_message).toContain(row.fault);
  });
});

describe.concurrent('request validation', () => {
  it.for(validationRows)('should answer $status for $name', async (row, test) => {
    const reply = await runRow(row, test);
    expect(reply.status, reply.text).toBe(row.status);
    if (row.fault !== undefined) expect(JSON.parse(reply.text).fault_message).toContain(row.fault);
  });
});

describe('snapshot load ordering', () => {
  afterEach(cleanupSimulators);

  it.each([
    [
      'PUT /logger',
      (dir: string): [string, string, unknown] => ['PUT', '/logger', { log_path: join(dir, 'log') }],
    ],
    [
      'PUT /metrics',
      (dir: string): [string, string, unknown] => ['PUT', '/metrics', { metrics_path: join(dir, 'metrics') }],
    ],
    [
      'PUT /serial',
      (dir: string): [string, string, unknown] => [
        'PUT',
        '/serial',
        { serial_out_path: join(dir, 'serial') },
      ],
    ],
    [
      'PUT /cpu-config',
      (): [string, string, unknown] => ['PUT', '/cpu-config', { kvm_capabilities: ['!56'] }],
    ],
    ['PUT /mmds', (): [string, string, unknown] => ['PUT', '/mmds', { latest: {} }]],
  ])(
    'should still allow a load after %s (the load then fails on the missing file and exits)',
    async (_name, step) => {
      const simulator = await startSimulator();
      const [method, path, body] = step(simulator.dir);
      expect((await simulator.request(method, path, body)).status).toBe(204);
      const reply = await simulator.request('PUT', '/snapshot/load', {
        snapshot_path: 'missing.vmstate',
        mem_backend: { backend_type: 'File', backend_path: 'missing.mem' },
      });
      expect(reply.status).toBe(400);
      expect(reply.json().fault_message).toContain(
        'Failed to open snapshot file: No such file or directory (os error 2)',
      );
      expect((await exitWithin(simulator)).code).toBe(1);
    },
  );
});

describe('GET endpoints', () => {
  afterEach(cleanupSimulators);

  it('should describe a fresh instance', async () => {
    const simulator = await startSimulator({ args: ['--id', 'sim-1'] });
    expect((await simulator.request('GET', '/')).json()).toEqual({
      id: 'sim-1',
      state: 'Not started',
      vmm_version: '1.16.1',
      app_name: 'Firecracker',
    });
    expect((await simulator.request('GET', '/version')).json()).toEqual({ firecracker_version: '1.16.1' });
    expect((await simulator.request('GET', '/machine-config')).json()).toEqual({
      vcpu_count: 1,
      mem_size_mib: 128,
      smt: false,
      track_dirty_pages: false,
      huge_pages: 'None',
    });
    const mmds = await simulator.request('GET', '/mmds');
    expect(mmds.status).toBe(200);
    expect(mmds.json()).toEqual({});
  });

  it('should reset omitted optional machine-config fields on PUT and keep them on PATCH', async () => {
    const simulator = await startSimulator();
    await simulator.request('PUT', '/machine-config', {
      vcpu_count: 2,
      mem_size_mib: 256,
      smt: true,
      track_dirty_pages: true,
    });
    await simulator.request('PATCH', '/machine-config', { vcpu_count: 4 });
    expect((await simulator.request('GET', '/machine-config')).json()).toMatchObject({
      vcpu_count: 4,
      smt: true,
      track_dirty_pages: true,
    });
    await simulator.request('PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: 256 });
    expect((await simulator.request('GET', '/machine-config')).json()).toMatchObject({
      smt: false,
      track_dirty_pages: false,
    });
  });

  it('should return the full configuration in kebab case, root drive first', async () => {
    const simulator = await startSimulator();
    const files = bootFiles(simulator.dir);
    await simulator.request('PUT', '/boot-source', {
      kernel_image_path: files.kernel,
      boot_args: 'console=ttyS0',
    });
    await simulator.request('PUT', '/drives/data', {
      drive_id: 'data',
      path_on_host: files.kernel,
      is_root_device: false,
      is_read_only: true,
    });
    await simulator.request('PUT', '/drives/rootfs', {
      drive_id: 'rootfs',
      path_on_host: files.rootfs,
      is_root_device: true,
    });
    await simulator.request('PUT', '/network-interfaces/eth0', {
      iface_id: 'eth0',
      host_dev_name: 'tap0',
      guest_mac: 'AA:FC:00:00:00:01',
    });
    await simulator.request('PUT', '/mmds/config', { network_interfaces: ['eth0'], version: 'V2' });
    await simulator.request('PUT', '/vsock', { guest_cid: 7, uds_path: join(simulator.dir, 'v.sock') });
    const config = (await simulator.request('GET', '/vm/config')).json();
    expect(config['boot-source']).toEqual({
      kernel_image_path: files.kernel,
      initrd_path: null,
      boot_args: 'console=ttyS0',
    });
    expect((config.drives as { drive_id: string }[]).map((drive) => drive.drive_id)).toEqual([
      'rootfs',
      'data',
    ]);
    expect(config['network-interfaces']).toEqual([
      {
        iface_id: 'eth0',
        host_dev_name: 'tap0',
        guest_mac: 'aa:fc:00:00:00:01',
        rx_rate_limiter: null,
        tx_rate_limiter: null,
      },
    ]);
    expect(config['mmds-config']).toEqual({
      version: 'V2',
      network_interfaces: ['eth0'],
      ipv4_address: '169.254.169.254',
      imds_compat: false,
    });
    expect(config.vsock).toEqual({ guest_cid: 7, uds_path: join(simulator.dir, 'v.sock') });
    expect(config['machine-config']).toMatchObject({ vcpu_count: 1, mem_size_mib: 128 });
    for (const key of ['balloon', 'cpu-config', 'logger', 'metrics', 'entropy', 'memory-hotplug'])
      expect(config[key]).toBeNull();
  });

  it('should keep MMDS data with PUT, merge it with PATCH and serve it after boot through an MMDS interface', async () => {
    const simulator = await startSimulator();
    await configureBootWithMmds(simulator.dir, simulator.request);
    await simulator.request('PUT', '/mmds', { latest: { 'meta-data': { 'instance-id': 'i-1', zone: 'a' } } });
    await simulator.request('PATCH', '/mmds', { latest: { 'meta-data': { zone: null, ami: 'x' } } });
    expect((await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' })).status).toBe(204);
    expect((await simulator.request('GET', '/mmds')).json()).toEqual({
      latest: { 'meta-data': { 'instance-id': 'i-1', ami: 'x' } },
    });
  });

  it('should re-bind the vsock socket when the vsock is configured again before boot', async () => {
    const simulator = await startSimulator();
    const first = join(simulator.dir, 'v1.sock');
    const second = join(simulator.dir, 'v2.sock');
    expect((await simulator.request('PUT', '/vsock', { guest_cid: 3, uds_path: first })).status).toBe(204);
    expect(existsSync(first)).toBe(true);
    expect((await simulator.request('PUT', '/vsock', { guest_cid: 3, uds_path: second })).status).toBe(204);
    expect(existsSync(first)).toBe(false);
    expect(existsSync(second)).toBe(true);
  });

  it('should require a listening backend for a vhost-user drive', async () => {
    const simulator = await startSimulator();
    const socketPath = join(simulator.dir, 'vhost.sock');
    const refused = await simulator.request('PUT', '/drives/data', {
      drive_id: 'data',
      is_root_device: false,
      socket: socketPath,
    });
    expect(refused.status).toBe(400);
    expect(refused.json().fault_message).toContain('No such file or directory (os error 2)');
    const backend = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => backend.listen(socketPath, resolve));
    try {
      const accepted = await simulator.request('PUT', '/drives/data', {
        drive_id: 'data',
        is_root_device: false,
        socket: socketPath,
      });
      expect(accepted.status, accepted.text).toBe(204);
    } finally {
      await new Promise((resolve) => backend.close(resolve));
    }
  });
});

async function configureBootWithMmds(
  dir: string,
  request: (method: string, path: string, body?: unknown) => Promise<{ status: number; text: string }>,
): Promise<void> {
  const files = bootFiles(dir);
  for (const [method, path, body] of [
    ['PUT', '/boot-source', { kernel_image_path: files.kernel }],
    ['PUT', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0' }],
    ['PUT', '/mmds/config', { network_interfaces: ['eth0'], version: 'V2' }],
  ] as const) {
    const reply = await request(method, path, body);
    expect(reply.status, reply.text).toBe(204);
  }
}

describe('jsonMergePatch', () => {
  it.each([
    [{ a: 1, b: { c: 2 } }, { b: { c: null, d: 3 } }, { a: 1, b: { d: 3 } }],
    [{ a: [1, 2] }, { a: [3] }, { a: [3] }],
    ['text', { a: 1 }, { a: 1 }],
    [{ a: 1 }, 'replacement', 'replacement'],
  ])('should merge %j with %j into %j', (target, patch, expected) => {
    expect(jsonMergePatch(target, patch)).toEqual(expected);
  });
});
