// Makes sure the host tools the demo drives are installed: `ip` (iproute2), `nft` (nftables) and `nsenter`
// (util-linux). On a fresh Debian/Ubuntu machine run as root it installs the missing ones with apt-get, so the
// README's demo command needs no step of its own; anywhere else it says what to install.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

const tools = [
  { command: 'ip', debianPackage: 'iproute2' },
  { command: 'nft', debianPackage: 'nftables' },
  { command: 'nsenter', debianPackage: 'util-linux' },
];

function onPath(command) {
  // Only PATH: the demo spawns the tools by name, so one outside PATH would not be found then either.
  const directories = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return directories.some((directory) => {
    try {
      accessSync(join(directory, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const missing = tools.filter((tool) => !onPath(tool.command));
if (missing.length === 0) process.exit(0);

const packages = missing.map((tool) => tool.debianPackage);
const isRoot = process.getuid?.() === 0;
if (!isRoot || !onPath('apt-get')) {
  console.error(
    `microvm demo: missing ${missing.map((tool) => tool.command).join(', ')}; install ${packages.join(' ')}`,
  );
  process.exit(1);
}
console.error(
  `microvm demo: installing ${packages.join(' ')} with apt-get (needed for namespaces and nftables)`,
);
const environment = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
for (const argv of [
  ['apt-get', 'update', '-qq'],
  ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...packages],
]) {
  const result = spawnSync(argv[0], argv.slice(1), {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: environment,
  });
  if (result.status !== 0) {
    const why =
      result.error?.message ?? (result.signal ? `signal ${result.signal}` : `exit ${result.status}`);
    console.error(
      `microvm demo: \`${argv.join(' ')}\` failed (${why}); install ${packages.join(' ')} yourself`,
    );
    process.exit(1);
  }
}
