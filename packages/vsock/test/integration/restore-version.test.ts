import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LeaseStore, MicrovmError, type VmEvent, type VmPrimitive } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  GUEST_CID_POOL,
  listenerPathOf,
  SHARED_GUEST_CID_POOL,
  type VsockPrimitive,
  vsockPrimitive,
} from '../../src/index.js';
import { caught, createSandbox, roundTrip, type Sandbox } from './helpers.js';

/**
 * A clone gets its own vsock socket, which travels as `vsock_override` of `PUT /snapshot/load`: Firecracker
 * >= 1.16 only. Here the clone's simulator reports 1.15.0, end to end through the provider and this primitive.
 */

const ECHO_PORT = 5000;
const LISTENER_PORT = 52;

let sandbox: Sandbox;

beforeEach(async () => {
  sandbox = await createSandbox();
});

afterEach(async () => {
  await sandbox.cleanup();
});

/** Records what the clone's VMM process was and what it logged (the simulator logs every API request). */
function processRecorder(): VmPrimitive & { pids: number[]; log(): string } {
  const pids: number[] = [];
  let log = '';
  return {
    name: 'process-recorder',
    pids,
    log: () => log,
    spawned(context) {
      pids.push(context.process.pid);
      context.process.stdout?.on('data', (chunk: Buffer) => {
        log += String(chunk);
      });
    },
  };
}

/** Live processes whose argv puts their API socket in this VM's folder of the sandbox (the provider's launch). */
async function simulatorProcessesOf(vmId: string): Promise<number[]> {
  const vmDir = join(sandbox.stateDir, 'vms', vmId);
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv: string[] = await readFile(`/proc/${entry}/cmdline`, 'utf8').then(
      (text) => text.split('\0'),
      // Gone while we looked.
      () => [],
    );
    const socketIndex = argv.indexOf('--api-sock');
    if (socketIndex !== -1 && argv[socketIndex + 1]?.startsWith(`${vmDir}/`)) found.push(Number(entry));
  }
  return found;
}

async function echoes(vsock: VsockPrimitive, vmId: string, text: string): Promise<string | undefined> {
  // A restored guest may reset the first stream (the transport reset queued in the snapshot): retry a little.
  let answer: string | undefined;
  for (let attempt = 0; attempt < 3 && answer === undefined; attempt += 1) {
    const socket = await vsock.connect(vmId, ECHO_PORT, { timeoutMs: 10_000 });
    answer = await roundTrip(socket, text);
    socket.destroy();
  }
  return answer;
}

/** A running source VM with vsock (and a guest-to-host listener), and a snapshot of it. */
async function sourceAndSnapshot() {
  const sourceVsock = vsockPrimitive({ listeners: { [LISTENER_PORT]: (socket) => socket.end('host\n') } });
  const sourceProvider = sandbox.provider([sourceVsock]);
  const source = await sourceProvider.create('vm-source', sandbox.spec());
  const snapshot = await sourceProvider.snapshot('vm-source', { snapshotId: 'snap-vsock' });
  return { sourceVsock, sourceProvider, source, snapshot };
}

describe('restoring a clone whose vsock socket moves', () => {
  it('should fail with ERR_MICROVM_UNSUPPORTED_BY_VERSION on Firecracker 1.15.0 and leave nothing behind', async () => {
    const { sourceVsock, source, snapshot } = await sourceAndSnapshot();
    const leases = new LeaseStore(sandbox.stateDir);
    const cidLeasesBefore = await leases.list(GUEST_CID_POOL);
    expect(cidLeasesBefore.map((lease) => lease.owner)).toEqual(['vm-source']);
    expect(await leases.list(SHARED_GUEST_CID_POOL)).toEqual([]);

    const cloneVsock = vsockPrimitive({ listeners: { [LISTENER_PORT]: (socket) => socket.end('host\n') } });
    const recorder = processRecorder();
    const olderProvider = sandbox.provider([cloneVsock, recorder], { reportedVersion: '1.15.0' });
    const events: VmEvent[] = [];
    olderProvider.onEvent((event) => events.push(event));

    const error = await caught(olderProvider.restore('vm-clone', snapshot.snapshotId));
    expect(MicrovmError.isInstance(error), String(error)).toBe(true);
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_UNSUPPORTED_BY_VERSION');
    expect((error as MicrovmError).message).toBe(
      'field "vsock_override" of PUT /snapshot/load needs Firecracker >= 1.16.0, but 1.15.0 is running',
    );

    // The clone's simulator was spawned and asked (the failure is the version gate, not an earlier step)...
    const clonePhases = events.flatMap((event) =>
      event.type === 'phase' && event.vmId === 'vm-clone' ? [event.phase] : [],
    );
    expect(clonePhases).toEqual(expect.arrayContaining(['prepare:vsock', 'spawn', 'api-socket']));
    expect(clonePhases).not.toContain('snapshot-load');
    expect(recorder.pids).toHaveLength(1);
    expect(recorder.log()).toContain('The API server received a Get request on "/version".');
    // ...and the load itself never reached the older VMM.
    expect(recorder.log()).not.toContain('/snapshot/load');

    // No process of the clone is left: neither the one that was spawned nor any other in its folder.
    const [clonePid] = recorder.pids as [number];
    const cloneCommandLine = await readFile(`/proc/${clonePid}/cmdline`, 'utf8').catch(() => '');
    expect(cloneCommandLine).not.toContain(join(sandbox.stateDir, 'vms', 'vm-clone'));
    expect(await simulatorProcessesOf('vm-clone')).toEqual([]);

    // The rollback ran every teardown without a warning and removed the record and its folder.
    expect(events.filter((event) => event.type === 'warning')).toEqual([]);
    expect(await olderProvider.get('vm-clone')).toBeUndefined();
    expect((await olderProvider.list()).map((vm) => vm.vmId)).toEqual(['vm-source']);
    const cloneDir = join(sandbox.stateDir, 'vms', 'vm-clone');
    const cloneSocket = join(cloneDir, 'vsock.sock');
    expect(existsSync(cloneSocket)).toBe(false);
    expect(existsSync(listenerPathOf(cloneSocket, LISTENER_PORT))).toBe(false);
    expect(existsSync(cloneDir)).toBe(false);
    expect(cloneVsock.vsockOf('vm-clone')).toBeUndefined();

    // The CID the clone shared is released; the source keeps its own lease, its socket and its guest.
    expect(await leases.list(SHARED_GUEST_CID_POOL)).toEqual([]);
    expect(await leases.list(GUEST_CID_POOL)).toEqual(cidLeasesBefore);
    expect(existsSync(source.facts.vsock!.hostUdsPath)).toBe(true);
    expect(await echoes(sourceVsock, 'vm-source', 'source still serves\n')).toBe('source still serves\n');
    // The snapshot is untouched: the failed restore can be retried on a newer Firecracker.
    expect((await olderProvider.listSnapshots()).map((info) => info.snapshotId)).toEqual(['snap-vsock']);
  });

  it('should restore the same clone on the default version (the control: only the version differs)', async () => {
    const { source, snapshot } = await sourceAndSnapshot();
    const cloneVsock = vsockPrimitive({ listeners: { [LISTENER_PORT]: (socket) => socket.end('host\n') } });
    const recorder = processRecorder();
    const currentProvider = sandbox.provider([cloneVsock, recorder]);
    const clone = await currentProvider.restore('vm-clone', snapshot.snapshotId);
    expect(clone.state).toBe('running');
    expect(recorder.log()).toContain('The API server received a Put request on "/snapshot/load"');

    const cloneSocket = join(sandbox.stateDir, 'vms', 'vm-clone', 'vsock.sock');
    expect(clone.facts.vsock).toEqual({ guestCid: source.facts.vsock?.guestCid, hostUdsPath: cloneSocket });
    expect(existsSync(cloneSocket)).toBe(true);
    expect(existsSync(listenerPathOf(cloneSocket, LISTENER_PORT))).toBe(true);
    expect(await echoes(cloneVsock, 'vm-clone', 'clone serves\n')).toBe('clone serves\n');
    const leases = new LeaseStore(sandbox.stateDir);
    expect(await leases.list(SHARED_GUEST_CID_POOL)).toEqual([
      expect.objectContaining({ value: `${source.facts.vsock?.guestCid}.vm-clone`, owner: 'vm-clone' }),
    ]);
    // What the failing test checks for absence is there while the clone runs: those checks can see it.
    expect(await simulatorProcessesOf('vm-clone')).toEqual([clone.pid]);
    expect(recorder.pids).toEqual([clone.pid]);

    await currentProvider.destroy('vm-clone');
    expect(await simulatorProcessesOf('vm-clone')).toEqual([]);
    expect(existsSync(cloneSocket)).toBe(false);
    expect(await leases.list(SHARED_GUEST_CID_POOL)).toEqual([]);
  });
});
