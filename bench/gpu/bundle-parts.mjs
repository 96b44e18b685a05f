// What bench/gpu/bundle.mjs (the pipeline, for the GPU benchmark and checks) and
// bench/multi-gpu/bundle.mjs (the whole product, for the multi-GPU run) both do: esbuild's
// options for node, koffi's files under the bundle's node_modules, and the report of what each
// device call carries (64 MiB limit).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const MIB = 1024 * 1024;

/** ESM for node 20, split into chunks, with `require` for the bundled CommonJS. */
export const NODE_ESM = {
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
};

/** koffi's JavaScript, ESM and CommonJS (the C-API run thread requires it): not its sources or docs. */
function koffiFiles(dir = 'node_modules/koffi', rel = '') {
  return readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) return ['doc', 'vendor', 'lib', 'build'].includes(path) ? [] : koffiFiles(dir, path);
    return /\.(c?js|json)$|^LICENSE/.test(e.name) && e.name !== 'cnoke.cjs' ? [path] : [];
  });
}

/**
 * koffi (a native module: its JavaScript and the linux-x64 glibc binary only) into
 * `<out>/node_modules`, so `import 'koffi'` resolves from the bundle's own folder. koffi 3 loads
 * its binary with require('@koromix/koffi-<platform>') (src/koffi/src/static.js).
 */
export function copyKoffi(out) {
  const files = {
    koffi: koffiFiles(),
    '@koromix/koffi-linux-x64': ['package.json', 'index.js', 'linux_x64/koffi.node'],
  };
  for (const [pkg, names] of Object.entries(files)) {
    for (const file of names) {
      const target = join(out, 'node_modules', pkg, file);
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(join('node_modules', pkg, file), target);
    }
  }
}

/** Bytes of a file or folder (0 when it is not there). */
export function bytes(path) {
  if (!existsSync(path)) return 0;
  const s = statSync(path);
  return s.isDirectory() ? readdirSync(path).reduce((n, f) => n + bytes(join(path, f)), 0) : s.size;
}

/** The files every device call sends: tracked and untracked, not ignored. */
function repoBytes() {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    encoding: 'utf8',
  });
  return files
    .split('\0')
    .filter(Boolean)
    .reduce((n, f) => n + bytes(f), 0);
}

/**
 * Prints what the repository's files weigh and, for each device call of `sets` (name → the
 * ignored paths it carries), its total against the 64 MiB limit; `missingHint` follows the list
 * of paths that are not there.
 */
export function reportCarry(sets, missingHint = '') {
  const repo = repoBytes();
  console.log(`the repository's files travel with every call: ${(repo / MIB).toFixed(1)} MiB`);
  for (const [name, paths] of Object.entries(sets)) {
    const missing = paths.filter((p) => !existsSync(p));
    const total = paths.reduce((n, p) => n + bytes(p), 0) + repo;
    console.log(
      `${name}: ${(total / MIB).toFixed(1)} MiB of 64${total > 64 * MIB ? '  TOO BIG' : ''}` +
        `${missing.length ? `  (missing: ${missing.join(', ')}${missingHint})` : ''}`,
    );
  }
}
