import { isLiveState, MicrovmError, type VmInfo, validateVmId } from '@microvm/core';
import { JSON_OPTION, stringOption } from '../args.js';
import type { Command, CommandContext } from '../context.js';
import { EXIT_CODES, formatAge, formatDuration, formatTable, toJson } from '../output.js';

const idArgument = [{ name: 'id' }];

function notFound(vmId: string): MicrovmError {
  return new MicrovmError({ code: 'ERR_MICROVM_VM_NOT_FOUND', message: `No VM with id '${vmId}' exists` });
}

async function requireVm(context: CommandContext, vmId: string): Promise<VmInfo> {
  const info = await (await context.provider()).provider.get(vmId);
  if (!info) throw notFound(vmId);
  return info;
}

export const psCommand: Command = {
  name: 'ps',
  summary: 'List VMs (running, paused and created; -a adds stopped and failed)',
  usage: 'ps [-a] [--json]',
  options: {
    all: { type: 'boolean', short: 'a', description: 'include stopped and failed VMs' },
    ...JSON_OPTION,
  },
  positionals: [],
  examples: ['microvm ps', 'microvm ps -a --json | jq -r ".[].vmId"'],
  async run(context) {
    const all = await (await context.provider()).provider.list();
    const shown = context.values.all
      ? all
      : all.filter((vm) => isLiveState(vm.state) || vm.state === 'creating');
    if (context.json) {
      context.io.stdout.write(toJson(shown));
      return EXIT_CODES.ok;
    }
    const nowMs = context.dependencies.nowMs();
    const rows = shown.map((vm) => [
      vm.vmId,
      vm.state,
      vm.pid === undefined || !isLiveState(vm.state) ? '-' : String(vm.pid),
      String(vm.spec.machine.vcpuCount),
      `${vm.spec.machine.memSizeMib} MiB`,
      vm.facts.network?.guestIp ?? '-',
      formatAge(vm.createdAt, nowMs),
    ]);
    context.io.stdout.write(formatTable(['ID', 'STATE', 'PID', 'VCPUS', 'MEMORY', 'IP', 'CREATED'], rows));
    return EXIT_CODES.ok;
  },
};

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'Print everything recorded about a VM as JSON (spec, facts, pid, exit)',
  usage: 'inspect <id>',
  options: { ...JSON_OPTION },
  positionals: idArgument,
  examples: ['microvm inspect web-1', 'microvm inspect web-1 | jq .facts.network.guestIp'],
  async run(context) {
    context.io.stdout.write(toJson(await requireVm(context, context.positionals[0]!)));
    return EXIT_CODES.ok;
  },
};

function stateChange(name: 'pause' | 'resume', summary: string): Command {
  return {
    name,
    summary,
    usage: `${name} <id> [--json]`,
    options: { ...JSON_OPTION },
    positionals: idArgument,
    examples: [`microvm ${name} web-1`],
    async run(context) {
      const { provider } = await context.provider();
      const vmId = context.positionals[0]!;
      const info = name === 'pause' ? await provider.pause(vmId) : await provider.resume(vmId);
      context.io.stdout.write(context.json ? toJson(info) : `${info.vmId} ${info.state}\n`);
      return EXIT_CODES.ok;
    },
  };
}

export const pauseCommand = stateChange('pause', 'Pause a running VM (its vCPUs stop; memory stays)');
export const resumeCommand = stateChange('resume', 'Resume a paused VM');

function stopVerb(name: 'stop' | 'kill', summary: string, example: string): Command {
  return {
    name,
    summary,
    usage: `${name} <id> [--json]`,
    options: { ...JSON_OPTION },
    positionals: idArgument,
    examples: [example],
    async run(context) {
      const { provider } = await context.provider();
      const vmId = context.positionals[0]!;
      const result = name === 'stop' ? await provider.stop(vmId) : await provider.kill(vmId);
      context.io.stdout.write(
        context.json
          ? toJson(result)
          : `${vmId} ${result.vm.state} (${result.how}, ${formatDuration(result.durationMs)})\n`,
      );
      return EXIT_CODES.ok;
    },
  };
}

export const stopCommand = stopVerb(
  'stop',
  'Stop a VM gracefully (Ctrl-Alt-Del through the shutdown primitive, then SIGKILL); it stays listed until rm',
  'microvm stop web-1 && microvm rm web-1',
);
export const killCommand = stopVerb(
  'kill',
  'Stop a VM at once (SIGKILL); it stays listed until rm',
  'microvm kill web-1',
);

export const rmCommand: Command = {
  name: 'rm',
  summary: 'Remove a stopped VM and everything it owns on the host; -f stops a live one first (SIGKILL)',
  usage: 'rm [-f] <id>',
  options: { force: { type: 'boolean', short: 'f', description: 'kill the VM first if it is still live' } },
  positionals: idArgument,
  examples: ['microvm rm web-1', 'microvm rm -f web-1'],
  async run(context) {
    const vmId = context.positionals[0]!;
    const { provider } = await context.provider();
    const info = await provider.get(vmId);
    if (info && (isLiveState(info.state) || info.state === 'creating') && !context.values.force) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_INVALID_STATE',
        message:
          info.state === 'creating'
            ? `VM '${vmId}' is being created (by another microvm; if that one crashed, use rm -f or gc)`
            : `VM '${vmId}' is ${info.state}: stop it first (microvm stop ${vmId}) or use rm -f`,
      });
    }
    // A folder without a record (a crash mid-create) is removed too: destroy() knows how.
    await provider.destroy(vmId, { graceful: false });
    context.io.stdout.write(`${vmId}\n`);
    return EXIT_CODES.ok;
  },
};

export const snapshotCommand: Command = {
  name: 'snapshot',
  summary: 'Snapshot a running or paused VM (paused during the copy, resumed after); prints the snapshot id',
  usage: 'snapshot <id> [--snapshot-id <id>] [--json]',
  options: {
    'snapshot-id': {
      type: 'string',
      valueName: 'id',
      description: 'name of the snapshot ([A-Za-z0-9-]{1,64}; default <vm id>-<time>)',
    },
    ...JSON_OPTION,
  },
  positionals: idArgument,
  examples: ['microvm snapshot web-1 --snapshot-id web-golden', 'microvm restore web-golden --name web-2'],
  async run(context) {
    const { provider } = await context.provider();
    const snapshotId = stringOption(context.values, 'snapshot-id');
    const snapshot = await provider.snapshot(context.positionals[0]!, snapshotId ? { snapshotId } : {});
    context.io.stdout.write(context.json ? toJson(snapshot) : `${snapshot.snapshotId}\n`);
    return EXIT_CODES.ok;
  },
};

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'Start a new VM from a snapshot, in the background; prints its id',
  usage: 'restore <snapshot-id> [--name <id>] [--paused] [--json]',
  options: {
    name: { type: 'string', valueName: 'id', description: 'the new VM id (default vm-<random>)' },
    paused: { type: 'boolean', description: 'leave the restored VM paused instead of resuming it' },
    ...JSON_OPTION,
  },
  positionals: [{ name: 'snapshot-id' }],
  examples: ['microvm restore web-golden --name web-2'],
  async run(context) {
    const snapshotId = context.positionals[0]!;
    const vmId = validateVmId(stringOption(context.values, 'name') ?? context.dependencies.newVmId(), 'name');
    const settings = await context.settings();
    const { selfCommand } = context.io;
    if (!selfCommand) throw new Error('restore needs io.selfCommand to start the supervisor');
    const info = await context.dependencies.startSupervisor(
      {
        kind: 'restore',
        vmId,
        snapshotId,
        resume: !context.values.paused,
        stateDir: settings.stateDir,
        firecracker: settings.firecracker,
      },
      {
        selfCommand,
        env: settings.env,
        ...(context.io.signal && { signal: context.io.signal }),
        onEvent: (event) => context.showEvent(event),
      },
    );
    context.io.stdout.write(context.json ? toJson(info) : `${info.vmId}\n`);
    return EXIT_CODES.ok;
  },
};

export const snapshotsCommand: Command = {
  name: 'snapshots',
  summary: 'List snapshots in the state directory',
  usage: 'snapshots [--json]',
  options: { ...JSON_OPTION },
  positionals: [],
  examples: ['microvm snapshots'],
  async run(context) {
    const snapshots = await (await context.provider()).provider.listSnapshots();
    if (context.json) {
      context.io.stdout.write(toJson(snapshots));
      return EXIT_CODES.ok;
    }
    const nowMs = context.dependencies.nowMs();
    const rows = snapshots.map((snapshot) => [
      snapshot.snapshotId,
      snapshot.sourceVmId,
      snapshot.type,
      formatAge(snapshot.createdAt, nowMs),
    ]);
    context.io.stdout.write(formatTable(['SNAPSHOT', 'FROM VM', 'TYPE', 'CREATED'], rows));
    return EXIT_CODES.ok;
  },
};

export const deleteSnapshotCommand: Command = {
  name: 'delete-snapshot',
  summary: 'Delete a snapshot and its files (VMs restored from it are not affected)',
  usage: 'delete-snapshot <snapshot-id>',
  options: {},
  positionals: [{ name: 'snapshot-id' }],
  examples: ['microvm delete-snapshot web-golden'],
  async run(context) {
    const snapshotId = context.positionals[0]!;
    const { provider } = await context.provider();
    const known = await provider.listSnapshots();
    if (!known.some((snapshot) => snapshot.snapshotId === snapshotId)) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_SNAPSHOT_NOT_FOUND',
        message: `No snapshot with id '${snapshotId}' exists`,
      });
    }
    await provider.deleteSnapshot(snapshotId);
    context.io.stdout.write(`${snapshotId}\n`);
    return EXIT_CODES.ok;
  },
};

export const gcCommand: Command = {
  name: 'gc',
  summary:
    'Clean up after crashes: remove VMs whose VMM is gone (stopped, failed, half-created) and host resources no VM owns',
  usage: 'gc [--json]',
  options: { ...JSON_OPTION },
  positionals: [],
  examples: ['microvm gc'],
  async run(context) {
    const result = await (await context.provider()).provider.reconcile();
    if (context.json) {
      context.io.stdout.write(toJson(result));
      return EXIT_CODES.ok;
    }
    if (result.destroyedVmIds.length === 0 && result.removed.length === 0) {
      context.io.stdout.write('nothing to clean up\n');
      return EXIT_CODES.ok;
    }
    for (const vmId of result.destroyedVmIds) context.io.stdout.write(`removed VM ${vmId}\n`);
    for (const resource of result.removed) context.io.stdout.write(`removed ${resource}\n`);
    return EXIT_CODES.ok;
  },
};
