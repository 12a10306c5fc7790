// Imported first by the bins: a clear message on a Node.js that is too old
// (Debian 12 ships 18), before anything fails in a stranger way.
import process from 'node:process';

const major = Number(process.versions.node.split('.')[0]);
if (major < 20) {
  process.stderr.write(
    `mvisor needs Node.js 20 or newer; this is ${process.version} (README.md, "The two commands", says how to get it)\n`,
  );
  process.exit(1);
}
