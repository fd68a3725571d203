import { lstat, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { isAbsolute, join } from 'node:path';
import {
  hostPathOf,
  MicrovmError,
  type PrepareContext,
  type ReconcileContext,
  type ReconcileResult,
  type SpawnedContext,
  type StartedContext,
  type TeardownContext,
  ValidationError,
  type VmFacts,
  type VmPrimitive,
  type VsockFacts,
  validateGuestCid,
  validateUnixSocketPath,
} from '@microvm/core';
import { type ConnectVsockOptions, connectVsock, DEFAULT_CONNECT_TIMEOUT_MS } from './connect.js';
import {
  listenerPathOf,
  positiveMilliseconds,
  VsockError,
  validateListenerPath,
  validateVsockPort,
} from './errors.js';
import { listenVsock, removeStaleSocket, type VsockListener } from './listen.js';

/** Serves a guest-initiated connection of a VM the primitive manages. */
export type VsockListenerHandler = (socket: Socket, info: { vmId: string; port: number }) => unknown;

export interface VsockPrimitiveOptions {
  /** Lowest guest CID handed out. Default 3 (0-2 are reserved). */
  minGuestCid?: number;
  /** Highest guest CID handed out. Default 2^32 − 2. */
  maxGuestCid?: number;
  /** File name of the device socket in the VM's folder. Default `vsock.sock` (short: the 107-byte limit). */
  socketName?: string;
  /**
   * Guest-to-host services of every VM, by port: bound at `<uds_path>_<port>` before the guest boots and
   * closed on teardown.
   */
  listeners?: Record<number, VsockListenerHandler>;
  /** Default `timeoutMs` of `connect()`. Default 10000. */
  connectTimeoutMs?: number;
  /** Called when a listener's handler fails; its connection is destroyed either way. */
  onHandlerError?: (error: unknown, info: { vmId: string; port: number }) => void;
}

/** Lease pool of CIDs held by one VM each. */
export const GUEST_CID_POOL = 'vsock-cid';
/**
 * Lease pool of CIDs used by clones restored from a snapshot: the CID is part of the snapshot and cannot
 * change, so a clone shares its source's CID. Values are `<cid>.<vmId>`; fresh allocations skip these CIDs.
 */
export const SHARED_GUEST_CID_POOL = 'vsock-cid-shared';

const MAX_GUEST_CID = 0xffff_fffe;
const FILE_NAME = /^[A-Za-z0-9._-]{1,64}$/;

interface ManagedVm {
  vmId: string;
  guestCid: number;
  hostUdsPath: string;
  /** The uds_path Firecracker sees (a jail path when jailed). */
  udsPath: string;
  owner: { uid: number; gid: number } | undefined;
  listeners: Map<number, VsockListener>;
  /** Aborted on teardown, so connects in flight end with `device-closed`. */
  lifetime: AbortController;
}

/** The public handle of the vsock primitive: the hooks plus per-VM `connect` and `listen`. */
export interface VsockPrimitive extends VmPrimitive {
  readonly name: 'vsock';
  /**
   * Opens a host-initiated connection to `port` of a VM: by id (a VM this primitive prepared in this process),
   * or by its vsock facts (`(await provider.get(id)).facts.vsock`, e.g. after a restart of the host program).
   */
  connect(vm: string | VsockFacts, port: number, options?: ConnectVsockOptions): Promise<Socket>;
  /** Serves guest-initiated connections to `port` of a running VM until `close()` or the VM's teardown. */
  listen(vmId: string, port: number, handler: (socket: Socket) => unknown): Promise<VsockListener>;
  /** What the primitive knows about a VM it manages: its CID and host socket. */
  vsockOf(vmId: string): VsockFacts | undefined;
}

/**
 * The vsock primitive: gives every VM a host-unique guest CID (>= 3, leased in the state directory), a device
 * socket in its folder (or its jail), guest-to-host listeners, and `connect`/`listen` by VM id.
 *
 * A VM spec that already has `vsock` keeps its `udsPath` and gets exactly its `guestCid` (an error when
 * another VM holds it). A restored clone keeps the snapshot's CID (it cannot change) and gets its own socket,
 * which makes the provider send `vsock_override` (Firecracker >= 1.16).
 */
export function vsockPrimitive(options: VsockPrimitiveOptions = {}): VsockPrimitive {
  const minGuestCid = validateGuestCid(options.minGuestCid ?? 3, 'minGuestCid');
  const maxGuestCid = validateGuestCid(options.maxGuestCid ?? MAX_GUEST_CID, 'maxGuestCid');
  if (maxGuestCid < minGuestCid) {
    throw new ValidationError({
      field: 'maxGuestCid',
      rule: 'must not be below minGuestCid',
      value: maxGuestCid,
    });
  }
  const socketName = options.socketName ?? 'vsock.sock';
  if (!FILE_NAME.test(socketName) || socketName === '.' || socketName === '..') {
    throw new ValidationError({
      field: 'socketName',
      rule: 'must be a file name of 1-64 letters, digits, ".", "_" or "-"',
      value: socketName,
    });
  }
  const connectTimeoutMs = positiveMilliseconds(
    options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    'connectTimeoutMs',
  );
  const declared = new Map<number, VsockListenerHandler>();
  for (const [key, handler] of Object.entries(options.listeners ?? {})) {
    const port = validateVsockPort(Number(key), `listeners.${key}`);
    if (typeof handler !== 'function') {
      throw new ValidationError({ field: `listeners.${key}`, rule: 'must be a function', value: handler });
    }
    declared.set(port, handler);
  }
  const vms = new Map<string, ManagedVm>();

  function checkPaths(udsPath: string, field: string): void {
    validateUnixSocketPath(udsPath, field);
    for (const port of declared.keys()) validateListenerPath(udsPath, port, field);
  }

  async function claimCid(context: PrepareContext, requested: number | undefined): Promise<number> {
    const { leases, vmId } = context;
    const shared = await sharedCids(context);
    if (requested !== undefined) {
      const clone = shared.get(requested);
      const taken =
        (clone !== undefined && clone !== vmId) ||
        !(await leases.claim(GUEST_CID_POOL, String(requested), vmId));
      if (taken) {
        const owner = clone ?? (await leases.ownerOf(GUEST_CID_POOL, String(requested)));
        throw new ValidationError({
          field: 'vsock.guestCid',
          rule: `must not be in use by another VM (VM '${owner ?? 'unknown'}' holds it)`,
          value: requested,
        });
      }
      return requested;
    }
    function* candidates(): Generator<string> {
      for (let cid = minGuestCid; cid <= maxGuestCid; cid += 1) if (!shared.has(cid)) yield String(cid);
    }
    const value = await leases.claimFirstFree(GUEST_CID_POOL, vmId, candidates());
    if (value === undefined) {
      throw new ValidationError({
        field: 'maxGuestCid',
        rule: `every guest CID from ${minGuestCid} to ${maxGuestCid} is leased; raise maxGuestCid or destroy VMs`,
        value: maxGuestCid,
      });
    }
    return Number(value);
  }

  /** CIDs clones use, with the clone holding each (one of them). */
  async function sharedCids(context: PrepareContext): Promise<Map<number, string>> {
    const shared = new Map<number, string>();
    for (const lease of await context.leases.list(SHARED_GUEST_CID_POOL)) {
      shared.set(Number(lease.value.slice(0, lease.value.indexOf('.'))), lease.owner);
    }
    return shared;
  }

  /** The host path of the device socket: through the jail once the jailer primitive has rewritten the spec. */
  function refreshHostPath(vm: ManagedVm, facts: VmFacts, udsPath: string): void {
    const hostUdsPath = hostPathOf(facts, udsPath);
    checkPaths(hostUdsPath, 'vsock.udsPath');
    vm.udsPath = udsPath;
    vm.hostUdsPath = hostUdsPath;
    vm.owner = facts.jail ? { uid: facts.jail.uid, gid: facts.jail.gid } : undefined;
    facts.vsock = { guestCid: vm.guestCid, hostUdsPath };
  }

  async function bindDeclared(vm: ManagedVm, toleratesMissingFolder: boolean): Promise<void> {
    for (const [port, handler] of declared) {
      if (vm.listeners.has(port)) continue;
      try {
        vm.listeners.set(
          port,
          await bindListener(vm, port, (socket) => handler(socket, { vmId: vm.vmId, port })),
        );
      } catch (error) {
        // A jail whose folders the jailer makes at spawn time: bind once the VM has started instead.
        if (toleratesMissingFolder && isMissingFolder(error)) return;
        throw error;
      }
    }
  }

  function bindListener(vm: ManagedVm, port: number, handler: (socket: Socket) => unknown) {
    return listenVsock(vm.hostUdsPath, port, handler, {
      ...(vm.owner && { socketOwner: vm.owner }),
      ...(options.onHandlerError && {
        onHandlerError: (error: unknown) => options.onHandlerError?.(error, { vmId: vm.vmId, port }),
      }),
    });
  }

  /** The VM's state, rebuilt from its facts when this process did not prepare it (a restarted host program). */
  function managed(context: SpawnedContext | StartedContext): ManagedVm | undefined {
    const existing = vms.get(context.vmId);
    if (existing) return existing;
    if (!context.facts.vsock || !context.spec.vsock) return undefined;
    const vm: ManagedVm = {
      vmId: context.vmId,
      guestCid: context.facts.vsock.guestCid,
      hostUdsPath: context.facts.vsock.hostUdsPath,
      udsPath: context.spec.vsock.udsPath,
      owner: undefined,
      listeners: new Map(),
      lifetime: new AbortController(),
    };
    vms.set(context.vmId, vm);
    return vm;
  }

  return {
    name: 'vsock',

    async prepare(context) {
      const { vmId } = context;
      let guestCid: number;
      let udsPath: string;
      let sharesSourceCid = false;
      if (context.mode === 'restore') {
        const source = context.restore?.sourceSpec.vsock;
        if (!source) {
          // The snapshot has no vsock device, and a restore cannot add one.
          delete context.spec.vsock;
          return;
        }
        udsPath = join(context.vmDir, socketName);
        checkPaths(hostPathOf(context.facts, udsPath), 'vsock.udsPath');
        guestCid = source.guestCid;
        sharesSourceCid = true;
      } else {
        const requested = context.spec.vsock;
        udsPath = requested?.udsPath ?? join(context.vmDir, socketName);
        if (!isAbsolute(udsPath)) {
          throw new ValidationError({
            field: 'vsock.udsPath',
            rule: 'must be an absolute path',
            value: udsPath,
          });
        }
        checkPaths(hostPathOf(context.facts, udsPath), 'vsock.udsPath');
        if (requested) {
          validateGuestCid(requested.guestCid, 'vsock.guestCid');
          if (await exists(hostPathOf(context.facts, udsPath))) {
            throw new ValidationError({
              field: 'vsock.udsPath',
              rule: 'must not exist yet: Firecracker binds it (remove a stale socket first)',
              value: udsPath,
            });
          }
        }
        guestCid = requested?.guestCid ?? -1;
      }
      // The lease is on disk (owner = vmId) before the facts name it, so reconcile frees it after a crash.
      if (sharesSourceCid) {
        await context.leases.claim(SHARED_GUEST_CID_POOL, `${guestCid}.${vmId}`, vmId);
      } else {
        guestCid = await claimCid(context, guestCid === -1 ? undefined : guestCid);
      }
      const vm: ManagedVm = {
        vmId,
        guestCid,
        hostUdsPath: udsPath,
        udsPath,
        owner: undefined,
        listeners: new Map(),
        lifetime: new AbortController(),
      };
      context.spec.vsock = { guestCid, udsPath };
      refreshHostPath(vm, context.facts, udsPath);
      vms.set(vmId, vm);
      await context.persist();
      // A stale socket of a crashed earlier run in the VM's own folder would make Firecracker's bind fail.
      if (udsPath === join(context.vmDir, socketName)) await rm(vm.hostUdsPath, { force: true });
    },

    async spawned(context) {
      const vm = managed(context);
      if (!vm || !context.spec.vsock) return;
      refreshHostPath(vm, context.facts, context.spec.vsock.udsPath);
      // Before InstanceStart, so a guest that dials early finds its listener.
      await bindDeclared(vm, true);
    },

    async started(context) {
      const vm = managed(context);
      if (!vm || !context.spec.vsock) return;
      refreshHostPath(vm, context.facts, context.spec.vsock.udsPath);
      await bindDeclared(vm, false);
    },

    async teardown(context: TeardownContext) {
      const vm = vms.get(context.vmId);
      vms.delete(context.vmId);
      const errors: unknown[] = [];
      if (vm) {
        vm.lifetime.abort();
        for (const listener of vm.listeners.values())
          await listener.close().catch((error) => errors.push(error));
        vm.listeners.clear();
      }
      const hostUdsPath = context.facts.vsock?.hostUdsPath ?? vm?.hostUdsPath;
      if (hostUdsPath !== undefined) {
        // What a crashed run may have left: the listener sockets and the device socket Firecracker never unlinks.
        for (const port of declared.keys()) {
          // Only a dead socket (a crashed run's): a file or someone else's live socket stays.
          await removeStaleSocket(listenerPathOf(hostUdsPath, port)).catch(() => undefined);
        }
        await rm(hostUdsPath, { force: true }).catch((error) => errors.push(error));
      }
      await context.leases.releaseOwner(GUEST_CID_POOL, context.vmId);
      await context.leases.releaseOwner(SHARED_GUEST_CID_POOL, context.vmId);
      if (errors.length > 0) throw errors[0];
    },

    async reconcile(context: ReconcileContext): Promise<ReconcileResult> {
      const removed: string[] = [];
      for (const lease of await context.leases.releaseUnknownOwners(GUEST_CID_POOL, context.liveVmIds)) {
        removed.push(`vsock cid ${lease.value} of VM '${lease.owner}'`);
      }
      for (const lease of await context.leases.releaseUnknownOwners(
        SHARED_GUEST_CID_POOL,
        context.liveVmIds,
      )) {
        removed.push(
          `vsock cid ${lease.value.slice(0, lease.value.indexOf('.'))} shared by VM '${lease.owner}'`,
        );
      }
      return { removed };
    },

    connect(target, port, connectOptions = {}) {
      let hostUdsPath: string;
      let lifetime: AbortSignal | undefined;
      if (typeof target === 'string') {
        const vm = vms.get(target);
        if (!vm) return Promise.reject(unknownVm(target));
        hostUdsPath = vm.hostUdsPath;
        lifetime = vm.lifetime.signal;
      } else {
        hostUdsPath = target.hostUdsPath;
      }
      const signal =
        lifetime && connectOptions.signal
          ? AbortSignal.any([lifetime, connectOptions.signal])
          : (lifetime ?? connectOptions.signal);
      return connectVsock(hostUdsPath, port, {
        ...connectOptions,
        timeoutMs: connectOptions.timeoutMs ?? connectTimeoutMs,
        ...(signal && { signal }),
      }).catch((error: unknown) => {
        if (lifetime?.aborted) {
          throw new VsockError({
            reason: 'device-closed',
            message: `vsock CONNECT ${port}: VM '${String(target)}' was torn down`,
            hostUdsPath,
            port,
            cause: error,
          });
        }
        throw error;
      });
    },

    async listen(vmId, port, handler) {
      const vm = vms.get(vmId);
      if (!vm) throw unknownVm(vmId);
      validateVsockPort(port);
      if (vm.listeners.has(port)) {
        throw new ValidationError({
          field: 'port',
          rule: `VM '${vmId}' already has a listener on this port`,
          value: port,
        });
      }
      const listener = await bindListener(vm, port, handler);
      if (vm.lifetime.signal.aborted) {
        // Torn down while binding: teardown has closed the others and will never see this one.
        await listener.close();
        throw unknownVm(vmId);
      }
      const close = async () => {
        if (vm.listeners.get(port) === wrapped) vm.listeners.delete(port);
        await listener.close();
      };
      const wrapped: VsockListener = {
        path: listener.path,
        port,
        get connectionCount() {
          return listener.connectionCount;
        },
        close,
        [Symbol.asyncDispose]: close,
      };
      vm.listeners.set(port, wrapped);
      return wrapped;
    },

    vsockOf(vmId) {
      const vm = vms.get(vmId);
      return vm ? { guestCid: vm.guestCid, hostUdsPath: vm.hostUdsPath } : undefined;
    },
  };
}

function unknownVm(vmId: string): MicrovmError {
  return new MicrovmError({
    code: 'ERR_MICROVM_VM_NOT_FOUND',
    message: `The vsock primitive manages no VM '${vmId}' in this process; pass its facts instead ((await provider.get(id)).facts.vsock)`,
  });
}

function isMissingFolder(error: unknown): boolean {
  return ((error as { cause?: NodeJS.ErrnoException }).cause?.code ?? '') === 'ENOENT';
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
