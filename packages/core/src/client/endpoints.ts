/**
 * Every endpoint of the Firecracker API (v1.16.1) and the client method that calls it.
 * The conformance test walks `firecracker.yaml` and fails when a path + method has no row here.
 *
 * Version requirements: Firecracker denies unknown fields and paths, so the client refuses them
 * before sending when the running Firecracker is older. Sources (upstream CHANGELOG.md unless noted):
 * - 1.1.0  `mem_backend` on `PUT /snapshot/load`.
 * - 1.4.0  `PUT /cpu-config` (custom CPU templates) and `PUT /entropy` (virtio-rng).
 * - 1.5.0  `kvm_capabilities` and `vcpu_features` in custom CPU templates (#3967).
 * - 1.6.0  vhost-user block: `socket` on `PUT /drives/{id}` (#4138…).
 * - 1.7.0  `huge_pages` on `/machine-config` (#4360).
 * - 1.12.0 `network_overrides` on `PUT /snapshot/load` (#4731; absent from the 1.11.0 spec).
 * - 1.13.0 `imds_compat` on `PUT /mmds/config` (#5310); `track_dirty_pages` on `PUT /snapshot/load`
 *          (#5274, which deprecated `enable_diff_snapshots` in its favour).
 * - 1.14.0 `/serial` (#5350), `/pmem/{id}` (#5463), `/hotplug/memory` (#5534), balloon free page
 *          hinting/reporting: the `free_page_*` fields and `/balloon/hinting/*` (#5491).
 * - 1.16.0 hot-unplug `DELETE` of drives, network interfaces and pmem (#5786); `vsock_override`
 *          on `PUT /snapshot/load` (#5323); `mtu` on network interfaces; `clock_realtime`
 *          (both absent from the 1.15 spec, present in 1.16.0 per FACTS §4).
 *          `rate_limiter` on `PUT /serial`: absent from the 1.15 spec and present in 1.16.1's; no
 *          CHANGELOG line was found to confirm 1.16.0 itself, so 1.16.0 is inferred.
 * `io_engine` (1.0.0) and everything older is not gated: before 1.0.0 `GET /version` did not exist.
 */

export type FirecrackerHttpMethod = 'GET' | 'PUT' | 'PATCH' | 'DELETE';

export interface FirecrackerEndpoint {
  readonly method: FirecrackerHttpMethod;
  /** Path template as the spec writes it, e.g. `/drives/{drive_id}`. */
  readonly path: string;
  /** The `FirecrackerClient` method that calls it. */
  readonly clientMethod: string;
  /** Whether the request carries a JSON body. */
  readonly requestBody: 'none' | 'required' | 'optional';
  /** Whether a 2xx answer carries a JSON body the client returns. */
  readonly responseBody: 'json' | 'none';
  /** Oldest Firecracker that knows the endpoint; absent means "every version the client supports". */
  readonly sinceVersion?: string;
  /** Top-level body fields newer than the endpoint itself, with the version that introduced each. */
  readonly fieldsSinceVersion?: Readonly<Record<string, string>>;
  /** False for endpoints Firecracker's code serves but its swagger file does not list. */
  readonly inSpec: boolean;
}

const endpointList = [
  {
    method: 'GET',
    path: '/',
    clientMethod: 'describeInstance',
    requestBody: 'none',
    responseBody: 'json',
    inSpec: true,
  },
  {
    method: 'GET',
    path: '/version',
    clientMethod: 'getVersion',
    requestBody: 'none',
    responseBody: 'json',
    inSpec: true,
  },
  {
    method: 'GET',
    path: '/vm/config',
    clientMethod: 'getVmConfig',
    requestBody: 'none',
    responseBody: 'json',
    inSpec: true,
  },
  {
    method: 'GET',
    path: '/machine-config',
    clientMethod: 'getMachineConfig',
    requestBody: 'none',
    responseBody: 'json',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/machine-config',
    clientMethod: 'putMachineConfig',
    requestBody: 'required',
    responseBody: 'none',
    fieldsSinceVersion: { huge_pages: '1.7.0' },
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/machine-config',
    clientMethod: 'patchMachineConfig',
    requestBody: 'required',
    responseBody: 'none',
    fieldsSinceVersion: { huge_pages: '1.7.0' },
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/boot-source',
    clientMethod: 'putBootSource',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/cpu-config',
    clientMethod: 'putCpuConfig',
    requestBody: 'required',
    responseBody: 'none',
    sinceVersion: '1.4.0',
    fieldsSinceVersion: { kvm_capabilities: '1.5.0', vcpu_features: '1.5.0' },
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/drives/{drive_id}',
    clientMethod: 'putDrive',
    requestBody: 'required',
    responseBody: 'none',
    fieldsSinceVersion: { socket: '1.6.0' },
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/drives/{drive_id}',
    clientMethod: 'patchDrive',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'DELETE',
    path: '/drives/{drive_id}',
    clientMethod: 'deleteDrive',
    requestBody: 'none',
    responseBody: 'none',
    sinceVersion: '1.16.0',
    inSpec: false,
  },
  {
    method: 'PUT',
    path: '/network-interfaces/{iface_id}',
    clientMethod: 'putNetworkInterface',
    requestBody: 'required',
    responseBody: 'none',
    fieldsSinceVersion: { mtu: '1.16.0' },
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/network-interfaces/{iface_id}',
    clientMethod: 'patchNetworkInterface',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'DELETE',
    path: '/network-interfaces/{iface_id}',
    clientMethod: 'deleteNetworkInterface',
    requestBody: 'none',
    responseBody: 'none',
    sinceVersion: '1.16.0',
    inSpec: false,
  },
  {
    method: 'PUT',
    path: '/pmem/{id}',
    clientMethod: 'putPmem',
    requestBody: 'required',
    responseBody: 'none',
    sinceVersion: '1.14.0',
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/pmem/{id}',
    clientMethod: 'patchPmem',
    requestBody: 'required',
    responseBody: 'none',
    sinceVersion: '1.14.0',
    inSpec: true,
  },
  {
    method: 'DELETE',
    path: '/pmem/{id}',
    clientMethod: 'deletePmem',
    requestBody: 'none',
    responseBody: 'none',
    sinceVersion: '1.16.0',
    inSpec: false,
  },
  {
    method: 'PUT',
    path: '/vsock',
    clientMethod: 'putVsock',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/balloon',
    clientMethod: 'putBalloon',
    requestBody: 'required',
    responseBody: 'none',
    fieldsSinceVersion: { free_page_hinting: '1.14.0', free_page_reporting: '1.14.0' },
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/balloon',
    clientMethod: 'patchBalloon',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'GET',
    path: '/balloon',
    clientMethod: 'getBalloon',
    requestBody: 'none',
    responseBody: 'json',
    inSpec: true,
  },
  {
    method: 'GET',
    path: '/balloon/statistics',
    clientMethod: 'getBalloonStatistics',
    requestBody: 'none',
    responseBody: 'json',
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/balloon/statistics',
    clientMethod: 'patchBalloonStatistics',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/balloon/hinting/start',
    clientMethod: 'startBalloonHinting',
    requestBody: 'optional',
    responseBody: 'none',
    sinceVersion: '1.14.0',
    inSpec: true,
  },
  {
    method: 'GET',
    path: '/balloon/hinting/status',
    clientMethod: 'getBalloonHintingStatus',
    requestBody: 'none',
    responseBody: 'json',
    sinceVersion: '1.14.0',
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/balloon/hinting/stop',
    clientMethod: 'stopBalloonHinting',
    requestBody: 'none',
    responseBody: 'none',
    sinceVersion: '1.14.0',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/entropy',
    clientMethod: 'putEntropy',
    requestBody: 'required',
    responseBody: 'none',
    sinceVersion: '1.4.0',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/serial',
    clientMethod: 'putSerial',
    requestBody: 'required',
    responseBody: 'none',
    sinceVersion: '1.14.0',
    fieldsSinceVersion: { rate_limiter: '1.16.0' },
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/logger',
    clientMethod: 'putLogger',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/metrics',
    clientMethod: 'putMetrics',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/mmds/config',
    clientMethod: 'putMmdsConfig',
    requestBody: 'required',
    responseBody: 'none',
    fieldsSinceVersion: { imds_compat: '1.13.0' },
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/mmds',
    clientMethod: 'putMmds',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/mmds',
    clientMethod: 'patchMmds',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'GET',
    path: '/mmds',
    clientMethod: 'getMmds',
    requestBody: 'none',
    responseBody: 'json',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/hotplug/memory',
    clientMethod: 'putMemoryHotplug',
    requestBody: 'required',
    responseBody: 'none',
    sinceVersion: '1.14.0',
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/hotplug/memory',
    clientMethod: 'patchMemoryHotplug',
    requestBody: 'required',
    responseBody: 'none',
    sinceVersion: '1.14.0',
    inSpec: true,
  },
  {
    method: 'GET',
    path: '/hotplug/memory',
    clientMethod: 'getMemoryHotplug',
    requestBody: 'none',
    responseBody: 'json',
    sinceVersion: '1.14.0',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/actions',
    clientMethod: 'createAction',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PATCH',
    path: '/vm',
    clientMethod: 'patchVm',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/snapshot/create',
    clientMethod: 'createSnapshot',
    requestBody: 'required',
    responseBody: 'none',
    inSpec: true,
  },
  {
    method: 'PUT',
    path: '/snapshot/load',
    clientMethod: 'loadSnapshot',
    requestBody: 'required',
    responseBody: 'none',
    fieldsSinceVersion: {
      mem_backend: '1.1.0',
      network_overrides: '1.12.0',
      track_dirty_pages: '1.13.0',
      vsock_override: '1.16.0',
      clock_realtime: '1.16.0',
    },
    inSpec: true,
  },
] as const satisfies readonly FirecrackerEndpoint[];

/** The name of a `FirecrackerClient` method that maps 1:1 to an endpoint. */
export type FirecrackerEndpointName = (typeof endpointList)[number]['clientMethod'];

export const firecrackerEndpoints: readonly FirecrackerEndpoint[] = endpointList;

const endpointsByName = new Map<string, FirecrackerEndpoint>(
  endpointList.map((endpoint) => [endpoint.clientMethod, endpoint]),
);

export function endpointNamed(name: FirecrackerEndpointName): FirecrackerEndpoint {
  const endpoint = endpointsByName.get(name);
  if (endpoint === undefined) throw new Error(`No Firecracker endpoint is named ${name}`);
  return endpoint;
}

/** The endpoint a concrete request targets (`PUT /drives/rootfs` → `PUT /drives/{drive_id}`), if any. */
export function findEndpoint(method: string, path: string): FirecrackerEndpoint | undefined {
  const pathOnly = path.split('?')[0] ?? path;
  return endpointList.find(
    (endpoint) => endpoint.method === method && templateMatches(endpoint.path, pathOnly),
  );
}

function templateMatches(template: string, path: string): boolean {
  const templateSegments = template.split('/');
  const pathSegments = path.split('/');
  if (templateSegments.length !== pathSegments.length) return false;
  return templateSegments.every((segment, index) =>
    segment.startsWith('{') ? (pathSegments[index] ?? '') !== '' : segment === pathSegments[index],
  );
}
