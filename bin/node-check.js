// Imported first by the bins: a clear message on a Node.js that is too old
// (Debian 12 ships 18), before anything fails in a stranger way.
import process from 'node:process';

// 20.12: crypto.hash() (one-shot hashes, used by the planner and the VM UUIDs).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 12)) {
  process.stderr.write(
    `mvisor needs Node.js 20.12 or newer; this is ${process.version} (README.md, "The two commands", says how to get it)\n`,
  );
  process.exit(1);
}
