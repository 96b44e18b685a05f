// Bundles the multi-GPU run (issue 16) for the GPU machine into .gpu/multi/ and packs it as
// .gpu/multi.tar.xz (git-ignored, like everything under .gpu/): the whole product, not only the
// pipeline (bench/gpu/bundle.mjs), since the driver runs `atelier serve`, `atelier serve --role
// gateway` and `atelier worker` as an operator would. The GPU machine's runtime (../shared/gpu:
// node, onnxruntime-node and its CUDA provider) has no other package, so the bundle brings:
//
//   dist/js/            atelier.js (the CLI, bench/multi-gpu/atelier-entry.ts), multi-gpu.js (the
//                       driver), child.js + sd35.js + merge-worker.js (the pipeline process), their
//                       chunks, the playground's static files, and native/'s sources with the CUDA
//                       op library at build/<hash>/ where src/pipeline/ort/custom-ops.ts looks for it
//   config/default.yaml, package.json   read by the product relative to its code (../../)
//   node_modules/       the native packages: sharp (+ libvips), better-sqlite3, koffi
//   tokenizers/         clip/ and t5/ (the GPU bench's: ../shared/golden/tokenizers)
//   redis/              only with --with-redis: this machine's redis-server and the two libraries
//                       the GPU image may lack (see bench/multi-gpu/README.md: not installed there)
//
// Usage: node bench/multi-gpu/bundle.mjs [--with-redis]   (prints the carry sizes of both calls)
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { buildLibrary, findNvcc, NativeBuildError } from '../../native/library.mjs';
import { bytes, copyKoffi, MIB, NODE_ESM, reportCarry } from '../gpu/bundle-parts.mjs';

const OUT = '.gpu/multi';
const JS = join(OUT, 'dist', 'js');
const TARBALL = '.gpu/multi.tar.xz';
const withRedis = process.argv.includes('--with-redis');

rmSync(OUT, { recursive: true, force: true });
rmSync(TARBALL, { force: true });
mkdirSync(JS, { recursive: true });

const NATIVE_PACKAGES = ['onnxruntime-node', 'sharp', 'koffi', 'better-sqlite3'];
// Optional accelerators some dependencies try to load and do without (ws, discord.js, msgpackr).
const OPTIONAL = ['bufferutil', 'utf-8-validate', 'zlib-sync', 'msgpackr-extract', 'erlpack'];
const common = {
  ...NODE_ESM,
  outdir: JS,
  external: [...NATIVE_PACKAGES, ...OPTIONAL],
};

// The pipeline process's side, as bench/gpu/bundle.mjs builds it: the product names `sd35.js` as
// the module its child process loads, and merge-kernel.ts starts merge-worker.js beside its code.
await build({
  ...common,
  entryPoints: {
    child: 'src/pipeline/process/child.ts',
    sd35: 'src/pipeline/sd35/index.ts',
    'merge-worker': 'src/pipeline/lora/merge-worker.ts',
  },
  chunkNames: 'pipe-[name]-[hash]',
});

// The CLI and the driver. In a bundle, `sd35ProcessSpec` would name its own chunk as the module
// to load; it is pointed at the sd35.js entry above instead (a bundling detail, not a product change).
const sd35Module = {
  name: 'sd35-module',
  setup(b) {
    b.onLoad({ filter: /src[\\/]pipeline[\\/]sd35[\\/]index\.ts$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const patched = source.replace(
        'module: fileURLToPath(import.meta.url)',
        "module: fileURLToPath(new URL('./sd35.js', import.meta.url))",
      );
      if (patched === source) throw new Error('sd35ProcessSpec no longer names its module as expected');
      return { contents: patched, loader: 'ts', resolveDir: dirname(args.path) };
    });
  },
};
await build({
  ...common,
  entryPoints: { atelier: 'bench/multi-gpu/atelier-entry.ts', 'multi-gpu': 'bench/multi-gpu/multi-gpu.ts' },
  chunkNames: 'cli-[name]-[hash]',
  plugins: [sd35Module],
});

// Files the product reads relative to its code.
cpSync('adapters/playground/static', join(JS, 'static'), { recursive: true });
mkdirSync(join(OUT, 'config'), { recursive: true });
copyFileSync('config/default.yaml', join(OUT, 'config', 'default.yaml'));
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
writeFileSync(
  join(OUT, 'package.json'),
  `${JSON.stringify({ name: pkg.name, version: pkg.version, type: 'module', private: true }, null, 2)}\n`,
);

// Native packages, whole or as far as they load.
function copyPackage(name, filter = () => true) {
  const from = join('node_modules', name);
  const to = join(OUT, 'node_modules', name);
  cpSync(from, to, { recursive: true, dereference: true, filter: (src) => filter(relative(from, src)) });
}
for (const name of [
  'sharp',
  '@img/colour',
  '@img/sharp-linux-x64',
  '@img/sharp-libvips-linux-x64',
  'detect-libc',
  'semver',
])
  copyPackage(name, (rel) => !/^(src|docs?|install)(\/|$)/.test(rel) && !rel.endsWith('.md'));
copyPackage(
  'better-sqlite3',
  (rel) =>
    rel === '' ||
    rel === 'package.json' ||
    rel.startsWith('lib') ||
    rel === 'build' ||
    rel === 'build/Release' ||
    rel === 'build/Release/better_sqlite3.node',
);
for (const name of ['bindings', 'file-uri-to-path']) copyPackage(name);
// koffi, as bench/gpu/bundle.mjs copies it: its JavaScript and the linux-x64 binary.
copyKoffi(OUT);

// native/'s sources beside the code, and the CUDA op library where the bundled custom-ops.ts
// computes its path (a hash of those sources): so `models.runtime: auto` takes the C-API path.
let ops = 'not built: nvcc not found (the product runs the stock path)';
for (const dir of ['include', 'src']) cpSync(join('native', dir), join(JS, dir), { recursive: true });
copyFileSync('native/library.mjs', join(JS, 'library-where.mjs'));
const where = await import(pathToFileURL(join(JS, 'library-where.mjs')).href);
const target = where.libraryPath('cuda');
rmSync(join(JS, 'library-where.mjs'));
const nvcc = findNvcc();
if (nvcc) {
  try {
    const { path } = buildLibrary('cuda', { nvcc });
    if (basename(dirname(path)) !== basename(dirname(target)))
      throw new NativeBuildError('native/ changed while bundling: bundle again', '');
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(path, target);
    ops = `${path} → ${relative(OUT, target)}`;
  } catch (error) {
    if (!(error instanceof NativeBuildError)) throw error;
    ops = `BUILD FAILED, not bundled (the product would run the stock path):\n${error.output || error.message}`;
    process.exitCode = 1;
  }
}

// Tokenizers: the GPU bench's (bench/gpu/README.md), from .gpu/tokenizers or ../shared/golden.
const tokenizerSources = existsSync('.gpu/tokenizers/clip')
  ? { clip: '.gpu/tokenizers/clip', t5: '.gpu/tokenizers/t5' }
  : { clip: '../shared/golden/tokenizers/clip', t5: '../shared/golden/tokenizers/t5_tiny' };
let tokenizers = 'none found (pass --tokenizers on the GPU machine)';
if (existsSync(tokenizerSources.clip) && existsSync(tokenizerSources.t5)) {
  for (const [kind, from] of Object.entries(tokenizerSources))
    cpSync(from, join(OUT, 'tokenizers', kind), { recursive: true, dereference: true });
  tokenizers = `${tokenizerSources.clip}, ${tokenizerSources.t5}`;
}

// Optionally this machine's redis-server (Debian's 7.0) with the libraries an image without
// Redis is likely to lack; glibc, OpenSSL 3 and libsystemd come from the GPU machine.
let redis = 'not included (--with-redis to carry this machine’s redis-server)';
if (withRedis) {
  const server = realpathSync(
    execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim(),
  );
  mkdirSync(join(OUT, 'redis', 'lib'), { recursive: true });
  copyFileSync(server, join(OUT, 'redis', 'redis-server'));
  const ldd = execFileSync('ldd', [server], { encoding: 'utf8' });
  const libs = [];
  for (const lib of ['liblzf.so.1', 'libjemalloc.so.2']) {
    const path = new RegExp(`${lib.replace(/\./g, '\\.')} => (\\S+)`).exec(ldd)?.[1];
    if (path) {
      copyFileSync(realpathSync(path), join(OUT, 'redis', 'lib', lib));
      libs.push(lib);
    }
  }
  redis = `${server} (${execFileSync(server, ['--version'], { encoding: 'utf8' }).trim()}) + ${libs.join(', ')}`;
}

// Node resolves the bundle's packages from its own folder, as on the GPU machine (where the
// checkout's node_modules is the runtime's, with onnxruntime-node alone).
execFileSync(process.execPath, [join(JS, 'multi-gpu.js'), '--help'], { stdio: 'ignore' });
const probe =
  "await import('better-sqlite3'); await import('sharp'); const k = await import('koffi'); if (!k.default.sizeof('void*')) process.exit(1);";
execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: JS });

execFileSync('tar', ['-cJf', TARBALL, '-C', '.gpu', 'multi'], { env: { ...process.env, XZ_OPT: '-9 -T2' } });

const sets = {
  'call 1 (node, the bundle, the weights)': ['.gpu/runtime-a.tar.xz', '.gpu/device-env.sh', TARBALL],
  'call 2 (the CUDA provider, the runs)': ['.gpu/runtime-b.tar.xz', '.gpu/device-env.sh'],
};
console.log(
  `bundled into ${OUT}: ${(bytes(OUT) / MIB).toFixed(1)} MiB, packed ${TARBALL}: ${(bytes(TARBALL) / MIB).toFixed(1)} MiB`,
);
console.log(`custom-op library: ${ops}`);
console.log(`tokenizers: ${tokenizers}`);
console.log(`redis-server: ${redis}`);
reportCarry(sets, ': bash ../shared/gpu/make-bundle.sh');
