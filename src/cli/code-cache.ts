/**
 * mvisor's start-up bundle loaded with a V8 code cache written at build time.
 *
 * A VM process spends most of its start-up compiling JavaScript: the one-file
 * bundle of its start-up path (scripts/bundle.mjs, 0.9 MB) and the generated
 * config validators. Node 20 keeps no compile cache for modules
 * (`module.enableCompileCache` is Node 22), and the `v8-compile-cache` package
 * writes its cache at run time under the temporary directory, which a
 * read-only install or a freshly booted test host never reuses; so `make
 * build` writes each file's cache beside it (`<file>.v8cache`) and this loads
 * the files through `vm.Script` with it. V8 checks a cache against its
 * version, flags and the source, and compiles as usual when it does not fit.
 *
 * A file loaded so cannot use `import()`: Node 20 drops a script's dynamic
 * import callback when the script comes from a code cache
 * (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING), so scripts/bundle.mjs refuses a
 * bundle with one. (That is also why mvctl cannot start this way: oclif
 * imports its commands.)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const here = dirname(fileURLToPath(import.meta.url));

/** The start-up bundle (beside vm-run.js, so that its relative paths resolve the same). */
export const STARTUP_BUNDLE = join(here, 'vm-run.bundle.cjs');

/** CommonJS files the bundle requires at start-up, loaded first so that they come from the cache too. */
export const STARTUP_PRELOADS = [join(here, '../../validators/vmm-config.cjs')];

interface Loaded {
  exports: unknown;
  script: vm.Script;
}

/**
 * Loads a CommonJS file as `require` would (and puts it in require's cache,
 * so a later `require` of it returns the same module), compiling it with its
 * `.v8cache` when there is one.
 */
export function requireWithCodeCache(file: string): Loaded {
  const source = readFileSync(file, 'utf8');
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(`${file}.v8cache`);
  } catch {
    // no cache: compile as usual
  }
  const script = new vm.Script(Module.wrap(source), {
    filename: file,
    ...(cachedData ? { cachedData } : {}),
  });
  const require = createRequire(file);
  const mod = new Module(file);
  mod.filename = file;
  require.cache[file] = mod;
  try {
    const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
    wrapper.call(mod.exports, mod.exports, require, mod, file, dirname(file));
  } catch (e) {
    delete require.cache[file];
    throw e;
  }
  mod.loaded = true;
  return { exports: mod.exports, script };
}

/** Loads the start-up bundle (and what it requires first); returns its exports. */
export function loadStartupBundle(): unknown {
  for (const file of STARTUP_PRELOADS) {
    try {
      requireWithCodeCache(file);
    } catch {
      // missing or broken: the bundle's own require reports it as it always did
    }
  }
  return requireWithCodeCache(STARTUP_BUNDLE).exports;
}

/** Writes the `.v8cache` of each start-up file (`make build`, after the bundle). */
export function writeStartupCodeCache(): string[] {
  const loaded = [...STARTUP_PRELOADS, STARTUP_BUNDLE].map((file) => ({
    file,
    ...requireWithCodeCache(file),
  }));
  // Run the config path once, so that the cache holds the functions it compiles.
  const bundle = loaded[loaded.length - 1]!.exports as { warmUpForCodeCache?: () => void };
  bundle.warmUpForCodeCache?.();
  for (const { file, script } of loaded) writeFileSync(`${file}.v8cache`, script.createCachedData());
  return loaded.map((l) => l.file);
}
