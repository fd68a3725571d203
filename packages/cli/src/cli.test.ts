import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SimpleVmOptions } from '@microvm/composer';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type Harness, harness } from './__fixtures__/fake-provider.js';
import { runCli } from './cli.js';

const vmFlags = ['--kernel', '/img/vmlinux', '--rootfs', '/img/rootfs.ext4'];

let h: Harness;
beforeEach(() => {
  h = harness();
});

const cli = (...argv: string[]) => runCli(argv, h.io, h.dependencies);

async function startVm(name: string): Promise<void> {
  expect(await cli('run', '-d', '--name', name, ...vmFlags)).toBe(0);
  h.clearOutput();
}

describe('help and usage', () => {
  it('should print the commands and exit 2 (on stderr) when no command is given', async () => {
    expect(await cli()).toBe(2);
    expect(h.stdout()).toBe('');
    expect(h.stderr()).toContain('Usage: microvm <command>');
    expect(h.stderr()).toContain('130 interrupted');
  });

  it.each([
    [['--help'], 'Commands:'],
    [['help'], 'Commands:'],
    [['help', 'logs'], 'Usage: microvm logs'],
    [['run', '--help'], '--memory-mib <mib>'],
    [['rm', '-h'], '-f, --force'],
  ])('should print help for %j and exit 0', async (argv, expected) => {
    expect(await cli(...argv)).toBe(0);
    expect(h.stdout()).toContain(expected);
  });

  it.each([
    [['launch'], "unknown command 'launch'"],
    [['help', 'launch'], "unknown command 'launch'"],
    [['ps', '--bogus'], "Unknown option '--bogus'"],
    [['inspect'], 'inspect: missing <id>'],
    [['inspect', 'a', 'b'], 'unexpected argument(s): b'],
    [['logs', 'vm-1', '--tail', 'many'], '--tail must be a whole number'],
    [['--state-dir'], 'missing command'],
    [['ps', '--state-dir'], "Option '--state-dir <value>' argument missing"],
  ])('should reject %j with exit code 2 and point at the help', async (argv, message) => {
    expect(await cli(...argv)).toBe(2);
    expect(h.stderr()).toContain(message);
    expect(h.stderr()).toContain('--help');
  });
});

describe('settings', () => {
  it('should take --state-dir before or after the command, then MICROVM_STATE_DIR, then /var/lib/microvm', async () => {
    await cli('--state-dir', '/srv/a', 'ps');
    await cli('ps', '--state-dir=/srv/b');
    h.io.env.MICROVM_STATE_DIR = '/srv/c';
    await cli('ps');
    delete h.io.env.MICROVM_STATE_DIR;
    await cli('ps');
    expect(h.settings.map((settings) => settings.stateDir)).toEqual([
      '/srv/a',
      '/srv/b',
      '/srv/c',
      '/var/lib/microvm',
    ]);
  });

  it('should fall back to the simulator and its jailer, and say so when it starts a VM', async () => {
    expect(await cli('run', '-d', ...vmFlags)).toBe(0);
    expect(h.settings[0]?.firecracker).toEqual({ path: '/sim/firecracker.js', source: 'simulator' });
    expect(h.settings[0]?.env.MICROVM_JAILER_BIN).toBe('/sim/jailer.js');
    expect(h.stderr()).toContain('using the @microvm/simulator stand-in');
  });

  it('should prefer --firecracker over MICROVM_FIRECRACKER_BIN, and not announce it for commands that start no VM', async () => {
    // Named binaries must be executable files: checked before any primitive touches the host.
    const binaries = await mkdtemp(join(tmpdir(), 'mvcli-bin-'));
    const fromEnv = join(binaries, 'firecracker-env');
    const fromFlag = join(binaries, 'firecracker-flag');
    for (const path of [fromEnv, fromFlag]) await writeFile(path, '#!/bin/true\n', { mode: 0o755 });
    try {
      h.io.env.MICROVM_FIRECRACKER_BIN = fromEnv;
      await cli('ps');
      expect(h.stderr()).toBe('');
      await cli('run', '-d', ...vmFlags);
      await cli('run', '-d', '--firecracker', fromFlag, ...vmFlags);
      expect(h.settings.map((settings) => settings.firecracker)).toEqual([
        { path: fromEnv, source: 'env' },
        { path: fromEnv, source: 'env' },
        { path: fromFlag, source: 'flag' },
      ]);
      expect(h.settings[1]?.env.MICROVM_JAILER_BIN).toBeUndefined();
      expect(h.stderr()).toContain(`using firecracker ${fromEnv} (MICROVM_FIRECRACKER_BIN)`);
      // A typo is a usage error, never a fallback to the simulator.
      expect(await cli('run', '-d', '--firecracker', join(binaries, 'missing'), ...vmFlags)).toBe(2);
    } finally {
      await rm(binaries, { recursive: true, force: true });
    }
  });

  it('should close the provider after every command, also a failed one', async () => {
    await cli('ps');
    await cli('inspect', 'missing');
    expect(h.composed.closedCount).toBe(2);
  });
});

describe('run', () => {
  it('should start a detached VM through the supervisor and print only its id on stdout', async () => {
    expect(await cli('run', '-d', '--name', 'web-1', ...vmFlags, '--vcpus', '2', '--memory-mib', '512')).toBe(
      0,
    );
    expect(h.stdout()).toBe('web-1\n');
    expect(h.stderr()).toMatch(/web-1\s+create spawn\s+2 ms/);
    const request = h.supervisorRequests[0];
    expect(request).toMatchObject({ kind: 'create', vmId: 'web-1', stateDir: '/var/lib/microvm' });
    expect(request?.kind === 'create' && request.input).toEqual({
      kernel: '/img/vmlinux',
      rootfs: '/img/rootfs.ext4',
      vcpuCount: 2,
      memSizeMib: 512,
    });
    expect((await h.composed.fake.get('web-1'))?.state).toBe('running');
  });

  it('should name a VM when no --name is given, and print JSON with --json', async () => {
    expect(await cli('run', '-d', '--json', ...vmFlags)).toBe(0);
    expect(JSON.parse(h.stdout())).toMatchObject({ vmId: 'vm-test1', state: 'running' });
  });

  describe('with a spec file', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'microvm-cli-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('should resolve relative paths next to the file and let flags refine the short form', async () => {
      const spec = join(dir, 'web.json');
      await writeFile(
        spec,
        JSON.stringify({ kernel: 'vmlinux', rootfs: 'rootfs.ext4', vcpuCount: 4, egress: 'none' }),
      );
      expect(await cli('run', '-d', '--name', 'web-1', '--spec', spec, '--memory-mib', '1024')).toBe(0);
      const request = h.supervisorRequests[0];
      expect(request?.kind === 'create' && (request.input as SimpleVmOptions)).toEqual({
        kernel: join(dir, 'vmlinux'),
        rootfs: join(dir, 'rootfs.ext4'),
        vcpuCount: 4,
        memSizeMib: 1024,
        egress: 'none',
      });
    });

    it('should pass a full VmSpec through unchanged, and refuse flags beside it', async () => {
      const spec = join(dir, 'full.json');
      const vmSpec = {
        bootSource: { kernelImagePath: '/img/vmlinux' },
        machine: { vcpuCount: 1, memSizeMib: 128 },
        drives: [
          { driveId: 'rootfs', pathOnHost: '/img/rootfs.ext4', isRootDevice: true, isReadOnly: false },
        ],
      };
      await writeFile(spec, JSON.stringify(vmSpec));
      expect(await cli('run', '-d', '--name', 'full', '--spec', spec)).toBe(0);
      const request = h.supervisorRequests[0];
      expect(request?.kind === 'create' && request.input).toEqual(vmSpec);
      expect(await cli('run', '-d', '--spec', spec, '--vcpus', '2')).toBe(2);
      expect(h.stderr()).toContain('--vcpus cannot be combined with a full VmSpec');
    });

    it.each([
      ['not json', 'is not valid JSON'],
      ['[1, 2]', 'must hold a JSON object'],
    ])('should reject a file holding %s with exit code 2', async (content, message) => {
      const spec = join(dir, 'bad.json');
      await writeFile(spec, content);
      expect(await cli('run', '-d', '--spec', spec)).toBe(2);
      expect(h.stderr()).toContain(message);
      expect(await h.composed.fake.list()).toEqual([]);
    });
  });

  // Bad input: the value, the exit code, and nothing created.
  it.each([
    [['--rootfs', '/img/rootfs.ext4'], 2, 'run needs --kernel'],
    [['--kernel', '/img/vmlinux'], 2, 'run needs --rootfs'],
    [[...vmFlags, '--vcpus', 'two'], 2, '--vcpus must be a whole number from 1 to 32'],
    [[...vmFlags, '--vcpus', '0'], 2, '--vcpus must be a whole number'],
    [[...vmFlags, '--memory-mib', '-5'], 2, "Option '--memory-mib' argument is ambiguous"],
    [[...vmFlags, '--name', 'no spaces'], 2, 'ERR_MICROVM_INVALID_INPUT'],
    [['--spec', '/does/not/exist.json'], 2, '--spec /does/not/exist.json'],
  ])('should refuse %j with exit code %i and create nothing', async (flags, code, message) => {
    expect(await cli('run', '-d', ...flags)).toBe(code);
    expect(h.stderr()).toContain(message);
    expect(await h.composed.fake.list()).toEqual([]);
  });

  it('should answer a taken id with exit code 4', async () => {
    await startVm('web-1');
    expect(await cli('run', '-d', '--name', 'web-1', ...vmFlags)).toBe(4);
    expect(h.stderr()).toContain('[ERR_MICROVM_VM_EXISTS]');
    expect(h.stderr()).toContain('hint: choose another --name');
  });

  it('should stream the console in the foreground, then on Ctrl-C shut down, remove the VM and exit 130', async () => {
    h.composed.consoleLines = ['[    0.000000] Linux version 6.1', 'login:'];
    const running = cli('run', '--name', 'fg', ...vmFlags);
    await expect.poll(() => h.stdout()).toContain('login:');
    expect((await h.composed.fake.get('fg'))?.state).toBe('running');
    h.abort();
    expect(await running).toBe(130);
    expect(h.stdout()).toBe('[    0.000000] Linux version 6.1\nlogin:\n');
    expect(h.stderr()).toContain('VM fg stopped (graceful');
    expect(h.stderr()).toContain('VM fg removed');
    expect(await h.composed.fake.list()).toEqual([]);
  });

  it.each([
    [0, 0],
    [1, 1],
  ])(
    'should remove a foreground VM that ends on its own with exit code %i, and exit %i',
    async (vmmExit, cliExit) => {
      const running = cli('run', '--name', 'fg', ...vmFlags);
      await expect.poll(() => h.stderr()).toContain('Ctrl-C stops the VM');
      expect(h.stderr()).toContain('no console stream: the console primitive is off');
      h.composed.fake.simulateExit('fg', { exitCode: vmmExit, stderrTail: 'vcpu exploded\n' });
      expect(await running).toBe(cliExit);
      expect(h.stderr()).toContain(`VM fg ended on its own (exit code ${vmmExit})`);
      expect(h.stderr()).toContain('vcpu exploded');
      expect(await h.composed.fake.list()).toEqual([]);
    },
  );

  it('should exit 130 when interrupted before the VM exists', async () => {
    h.abort();
    expect(await cli('run', '--name', 'fg', ...vmFlags)).toBe(130);
    expect(h.stderr()).toContain('ERR_MICROVM_ABORTED');
    expect(await h.composed.fake.list()).toEqual([]);
  });
});

describe('ps and inspect', () => {
  it('should refuse an id that would leave the state directory, before reading anything (exit 2)', async () => {
    expect(await cli('inspect', '../../etc')).toBe(2);
    expect(await cli('logs', 'bad id!')).toBe(2);
    expect(h.stderr()).toContain('ERR_MICROVM_INVALID_INPUT');
  });

  beforeEach(async () => {
    await startVm('web-1');
    await startVm('web-2');
    await h.composed.fake.stop('web-2');
    h.composed.fake.facts.set('web-1', {
      network: {
        ifaceId: 'eth0',
        tapName: 'mvm-web-1',
        guestIp: '10.200.0.2',
        gatewayIp: '10.200.0.1',
        prefixLength: 30,
        netmask: '255.255.255.252',
        guestMac: '06:00:0a:c8:00:02',
      },
    });
  });

  it('should list live VMs in a table, and all of them with -a', async () => {
    const out = (argv: string[]) => {
      const before = h.stdout().length;
      return cli(...argv).then(() => h.stdout().slice(before));
    };
    const live = await out(['ps']);
    expect(live.split('\n')[0]).toMatch(/^ID\s+STATE\s+PID\s+VCPUS\s+MEMORY\s+IP\s+CREATED$/);
    expect(live).toMatch(/web-1\s+running\s+-\s+1\s+256 MiB\s+10\.200\.0\.2/);
    expect(live).not.toContain('web-2');
    expect(await out(['ps', '-a'])).toMatch(/web-2\s+stopped/);
  });

  it('should print VmInfo as JSON with ps --json and inspect', async () => {
    await cli('ps', '-a', '--json');
    expect(JSON.parse(h.stdout()).map((vm: { vmId: string }) => vm.vmId)).toEqual(['web-1', 'web-2']);
    const before = h.stdout().length;
    expect(await cli('inspect', 'web-1')).toBe(0);
    expect(JSON.parse(h.stdout().slice(before))).toMatchObject({
      vmId: 'web-1',
      facts: { network: { guestIp: '10.200.0.2' } },
    });
  });

  it('should answer an unknown id with exit code 3 and a hint', async () => {
    expect(await cli('inspect', 'web-9')).toBe(3);
    expect(h.stderr()).toContain("No VM with id 'web-9' exists [ERR_MICROVM_VM_NOT_FOUND]");
    expect(h.stderr()).toContain('microvm ps -a');
  });
});

describe('lifecycle commands', () => {
  beforeEach(async () => {
    await startVm('web-1');
  });

  it('should pause and resume, printing the new state', async () => {
    expect(await cli('pause', 'web-1')).toBe(0);
    expect(await cli('resume', 'web-1', '--json')).toBe(0);
    expect(h.stdout()).toContain('web-1 paused\n');
    expect(h.stdout()).toContain('"state": "running"');
  });

  it.each([
    ['pause', 'web-1', 4, 'ERR_MICROVM_INVALID_STATE'],
    ['resume', 'web-1', 4, 'ERR_MICROVM_INVALID_STATE'],
    ['snapshot', 'web-1', 4, 'ERR_MICROVM_INVALID_STATE'],
    ['stop', 'web-9', 3, 'ERR_MICROVM_VM_NOT_FOUND'],
    ['kill', 'web-9', 3, 'ERR_MICROVM_VM_NOT_FOUND'],
    ['rm', 'web-9', 3, 'ERR_MICROVM_VM_NOT_FOUND'],
  ])(
    'should answer %s %s on a stopped VM or unknown id with exit code %i',
    async (verb, id, code, errorCode) => {
      await h.composed.fake.stop('web-1');
      expect(await cli(verb, id)).toBe(code);
      expect(h.stderr()).toContain(errorCode);
    },
  );

  it('should stop and kill, saying how the VM ended', async () => {
    expect(await cli('stop', 'web-1')).toBe(0);
    expect(h.stdout()).toMatch(/^web-1 stopped \(graceful, 0 ms\)\n$/);
    expect(await cli('kill', 'web-1', '--json')).toBe(0);
    expect(h.stdout()).toContain('"how": "already-exited"');
  });

  it('should refuse to rm a live VM without -f (exit code 4), and kill it first with -f', async () => {
    expect(await cli('rm', 'web-1')).toBe(4);
    expect(h.stderr()).toContain("VM 'web-1' is running: stop it first");
    expect(await h.composed.fake.get('web-1')).toBeDefined();
    expect(await cli('rm', '-f', 'web-1')).toBe(0);
    expect(h.stdout()).toBe('web-1\n');
    expect(h.composed.fake.destroyed).toEqual([{ vmId: 'web-1', graceful: false }]);
    expect(await h.composed.fake.get('web-1')).toBeUndefined();
  });

  it('should snapshot, list, restore through the supervisor, and delete the snapshot', async () => {
    expect(await cli('snapshot', 'web-1', '--snapshot-id', 'golden')).toBe(0);
    expect(h.stdout()).toBe('golden\n');
    expect(await cli('snapshot', 'web-1', '--snapshot-id', 'golden')).toBe(4);
    expect(h.stderr()).toContain('ERR_MICROVM_SNAPSHOT_EXISTS');
    await cli('snapshots');
    expect(h.stdout()).toMatch(/SNAPSHOT\s+FROM VM\s+TYPE\s+CREATED\ngolden\s+web-1\s+Full/);
    expect(await cli('restore', 'golden', '--name', 'web-2', '--paused')).toBe(0);
    expect(h.supervisorRequests.at(-1)).toMatchObject({
      kind: 'restore',
      snapshotId: 'golden',
      vmId: 'web-2',
      resume: false,
    });
    expect((await h.composed.fake.get('web-2'))?.state).toBe('paused');
    expect(await cli('restore', 'nothing')).toBe(3);
    expect(await cli('delete-snapshot', 'golden')).toBe(0);
    expect(await cli('delete-snapshot', 'golden')).toBe(3);
    expect(await h.composed.fake.listSnapshots()).toEqual([]);
  });
});

describe('logs', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'microvm-cli-'));
    await startVm('web-1');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('should say clearly that a VM without the console primitive has no log, and exit 1', async () => {
    expect(await cli('logs', 'web-1')).toBe(1);
    expect(h.stderr()).toContain("VM 'web-1' has no console log");
    expect(h.stderr()).toContain('MICROVM_COMPOSE_CONSOLE=0');
  });

  it('should print the console log, or its last lines with -n', async () => {
    const consoleLogPath = join(dir, 'console.log');
    await writeFile(consoleLogPath, 'one\ntwo\nthree\n');
    h.composed.fake.facts.set('web-1', { console: { consoleLogPath } });
    expect(await cli('logs', 'web-1')).toBe(0);
    expect(await cli('logs', '-n', '2', 'web-1')).toBe(0);
    expect(h.stdout()).toBe('one\ntwo\nthree\ntwo\nthree\n');
  });

  it('should follow the log while the VM lives and stop when it stops', async () => {
    const consoleLogPath = join(dir, 'console.log');
    await writeFile(consoleLogPath, 'booting\n');
    h.composed.fake.facts.set('web-1', { console: { consoleLogPath } });
    const following = cli('logs', '-f', 'web-1');
    await expect.poll(() => h.stdout()).toBe('booting\n');
    await appendFile(consoleLogPath, 'ready\n');
    await expect.poll(() => h.stdout()).toBe('booting\nready\n');
    await h.composed.fake.stop('web-1');
    expect(await following).toBe(0);
  });

  it('should still print the lines written just after the VM is seen stopped', async () => {
    const consoleLogPath = join(dir, 'console.log');
    await writeFile(consoleLogPath, 'booting\n');
    h.composed.fake.facts.set('web-1', { console: { consoleLogPath } });
    // Like the supervisor, which may append the guest's last lines after the exit is recorded.
    const get = h.composed.fake.get.bind(h.composed.fake);
    let lateLine: Promise<void> | undefined;
    vi.spyOn(h.composed.fake, 'get').mockImplementation(async (vmId: string) => {
      const info = await get(vmId);
      if (info?.state === 'stopped' && !lateLine) {
        lateLine = new Promise((resolve) => setTimeout(resolve, 50)).then(() =>
          appendFile(consoleLogPath, 'reboot: Restarting system\n'),
        );
      }
      return info;
    });
    const following = cli('logs', '-f', 'web-1');
    await expect.poll(() => h.stdout()).toBe('booting\n');
    await h.composed.fake.stop('web-1');
    expect(await following).toBe(0);
    await lateLine;
    expect(h.stdout()).toBe('booting\nreboot: Restarting system\n');
  });

  it('should stop following on Ctrl-C with exit code 130', async () => {
    h.composed.fake.facts.set('web-1', { console: { consoleLogPath: join(dir, 'not-yet.log') } });
    const following = cli('logs', '-f', 'web-1');
    h.abort();
    expect(await following).toBe(130);
  });
});

describe('gc and doctor', () => {
  it('should print what gc removed, or that there was nothing', async () => {
    await cli('gc');
    expect(h.stdout()).toBe('nothing to clean up\n');
    h.composed.fake.reconcileResult = { destroyedVmIds: ['web-1'], removed: ['tap mvm-web-1'] };
    await cli('gc');
    expect(h.stdout()).toContain('removed VM web-1\nremoved tap mvm-web-1\n');
  });

  it('should print each check with a mark and its fix, and exit 1 on a failure', async () => {
    h.dependencies.runDoctor = async (options) => {
      expect(options.stateDir).toBe('/run/mvm');
      expect(options.host?.env.MICROVM_FIRECRACKER_BIN).toBe('/opt/fc');
      return [
        { name: 'platform', status: 'ok', detail: 'linux x64' },
        { name: 'root', status: 'warn', detail: 'running as uid 1000', fix: 'run with sudo' },
        { name: '/dev/kvm', status: 'fail', detail: 'missing', fix: 'modprobe kvm_intel' },
      ];
    };
    expect(await cli('doctor', '--state-dir', '/run/mvm', '--firecracker', '/opt/fc')).toBe(1);
    expect(h.stdout()).toContain('✓ platform  linux x64');
    expect(h.stdout()).toContain('! root      running as uid 1000');
    expect(h.stdout()).toContain('✗ /dev/kvm  missing\n            fix: modprobe kvm_intel');
    expect(h.stdout()).toContain('1 problem(s) found, 1 warning(s).');
  });

  it('should exit 0 and print the next step when nothing fails', async () => {
    h.dependencies.runDoctor = async () => [
      { name: 'firecracker binary', status: 'ok', detail: '/usr/bin/firecracker (v1.16.1)' },
    ];
    expect(await cli('doctor', '--json')).toBe(0);
    expect(JSON.parse(h.stdout())).toMatchObject({
      ok: true,
      nextStep: expect.stringContaining('pnpm test:e2e'),
    });
  });
});
