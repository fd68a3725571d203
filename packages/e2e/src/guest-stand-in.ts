import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mustRun } from './commands.js';

/**
 * What plays the guest's network stack inside the stand-in namespace: a TCP echo service (the network primitive
 * configures `eth0` with the guest's address and MAC). The agent exits when its stdin closes, so it never
 * outlives the suite.
 */
const GUEST_AGENT = `
const net = require('node:net');
const [port] = process.argv.slice(1);
const server = net.createServer((socket) => { socket.on('error', () => {}); socket.pipe(socket); });
server.listen(Number(port), '0.0.0.0', () => process.stdout.write('listening\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

/**
 * The simulator has no guest network stack: for each VM, a namespace whose `eth0` (the far end of a veth pair
 * the network primitive creates instead of the TAP, `@microvm/network/testing`'s `guestStandIn`) is configured
 * as the guest, with an echo service on the guest's TCP port.
 */
export class GuestStandIn {
  readonly #prefix: string;
  readonly #tcpPort: number;
  readonly #namespaces = new Map<string, string>();
  readonly #agents: ChildProcess[] = [];

  /** `namePrefix`: namespaces are `<namePrefix>-1`, `-2`, …, one per VM id. */
  constructor(options: { namePrefix: string; tcpPort: number }) {
    this.#prefix = options.namePrefix;
    this.#tcpPort = options.tcpPort;
  }

  /** The namespace playing `vmId`'s guest, made on first use. Synchronous: the network primitive calls it so. */
  namespaceFor(vmId: string): string {
    const known = this.#namespaces.get(vmId);
    if (known !== undefined) return known;
    const namespace = `${this.#prefix}-${this.#namespaces.size + 1}`;
    execFileSync('ip', ['netns', 'add', namespace], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#namespaces.set(vmId, namespace);
    const agent = spawn(
      'ip',
      ['netns', 'exec', namespace, process.execPath, '-e', GUEST_AGENT, String(this.#tcpPort)],
      { stdio: ['pipe', 'ignore', 'inherit'] },
    );
    agent.on('error', () => undefined);
    this.#agents.push(agent);
    return namespace;
  }

  get namespaces(): string[] {
    return [...this.#namespaces.values()];
  }

  /** Stops every agent and deletes every namespace. Never throws: it runs in afterAll, also after failures. */
  async close(): Promise<string[]> {
    const problems: string[] = [];
    for (const agent of this.#agents.splice(0)) {
      agent.stdin?.end();
      if (agent.exitCode === null && agent.signalCode === null) {
        const exited = new Promise((resolve) => agent.once('exit', resolve));
        agent.kill('SIGKILL');
        await exited;
      }
    }
    for (const namespace of this.#namespaces.values()) {
      await mustRun('ip', ['netns', 'del', namespace]).catch((error: unknown) =>
        problems.push(`guest stand-in namespace ${namespace}: ${String(error)}`),
      );
    }
    this.#namespaces.clear();
    return problems;
  }
}
