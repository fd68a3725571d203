import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** The pid in a jailer pid file, or undefined when the file is missing or holds no pid. */
export async function readPidFile(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Whether `pid` is a live process (not a zombie) started with `--id <vmId>` on its command line. */
export async function isVmmOf(pid: number, vmId: string): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    if (state === 'Z' || state === 'X') return false;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return argv.some((arg, index) => arg === '--id' && argv[index + 1] === vmId);
  } catch {
    return false;
  }
}

/**
 * Kills the VMM named in a jail's pid file if it is still there (a VM whose supervisor is gone) and waits until
 * it is gone. Checks the command line first: a reused pid is never signalled.
 */
export async function killLeftoverVmm(
  pidFilePath: string,
  vmId: string,
  options: { timeoutMs?: number } = {},
): Promise<number | undefined> {
  const pid = await readPidFile(pidFilePath);
  if (pid === undefined || !(await isVmmOf(pid, vmId))) return undefined;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return undefined;
  }
  const deadline = performance.now() + (options.timeoutMs ?? 5_000);
  while (await isVmmOf(pid, vmId)) {
    if (performance.now() > deadline) throw new Error(`The VMM (pid ${pid}) of VM '${vmId}' did not exit`);
    await sleep(20);
  }
  return pid;
}
