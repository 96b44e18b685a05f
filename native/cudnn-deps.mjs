#!/usr/bin/env node
/**
 * The build-time dependencies of atelier:Fp8Attention's cuDNN path, unpacked into the git-ignored
 * `.gpu/cudnn/` (nothing of cuDNN or its frontend is ever committed):
 *
 *   .gpu/cudnn/include/           cuDNN's C headers (cudnn*.h), from the nvidia-cudnn-cu13 wheel, and
 *                                 nvrtc.h from the nvidia-cuda-nvrtc wheel (the frontend includes it for
 *                                 an engine we never use; this machine's CUDA toolkit has no NVRTC)
 *   .gpu/cudnn/frontend/include/  NVIDIA's cuDNN frontend (header-only C++), from a git mirror
 *   .gpu/cudnn/VERSION            what was unpacked: the wheels' names and the frontend's commit
 *
 * Headers only: the library uses the frontend's dynamic loading (NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING)
 * and opens libcudnn.so.9 itself when an Fp8Attention kernel first runs, so nothing links against
 * cuDNN and the build needs no .so. When VERSION is present, `native/library.mjs` compiles the CUDA
 * library with -DATELIER_WITH_CUDNN; without it the library builds exactly as before and the CUDA
 * Fp8Attention kernel says it was built without cuDNN.
 *
 *   node native/cudnn-deps.mjs [--wheel PATH] [--nvrtc-wheel PATH] [--frontend GIT_DIR] [--commit REV]
 *   (defaults: the newest /tmp/whl/nvidia_cudnn_cu13-*.whl and nvidia_cuda_nvrtc-13.*.whl, else
 *   `python3 -m pip download <package> --no-deps` into /tmp/whl; the frontend mirror at
 *   /work/.mirror/NVIDIA+cudnn-frontend/repo, or $ATELIER_CUDNN_FRONTEND_GIT; its tag v1.19.1)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { CUDNN_DEPS_DIR } from './library.mjs';

const WHEEL_DIR = '/tmp/whl';
const DEFAULT_FRONTEND = '/work/.mirror/NVIDIA+cudnn-frontend/repo';
/**
 * The frontend release that goes with the GPU machine's cuDNN 9.19 (NVIDIA's own H200 SDPA
 * benchmark ran 1.19 on 9.19.1). Newer frontends compiled against the wheel's 9.24 headers take
 * 9.22-only code paths: with dynamic loading, v1.23's tensor descriptor refuses every tensor on a
 * backend older than 9.22 (cudnn_frontend_Tensor.h, CUDNN_ATTR_TENSOR_CONSTANT_VALUE's check).
 */
const FRONTEND_TAG = 'v1.19.1';

const { values } = parseArgs({
  options: {
    wheel: { type: 'string' },
    'nvrtc-wheel': { type: 'string' },
    frontend: { type: 'string' },
    commit: { type: 'string', default: FRONTEND_TAG },
  },
});

/** The newest wheel in WHEEL_DIR whose name matches, downloaded with pip when there is none. */
function findWheel(given, pattern, spec) {
  if (given) return given;
  const local = () =>
    existsSync(WHEEL_DIR)
      ? readdirSync(WHEEL_DIR)
          .filter((f) => pattern.test(f))
          .sort()
          .map((f) => join(WHEEL_DIR, f))
      : [];
  if (local().length === 0) {
    console.log(`no ${spec} wheel in ${WHEEL_DIR}: python3 -m pip download ${spec} --no-deps`);
    execFileSync('python3', ['-m', 'pip', 'download', spec, '--no-deps', '-d', WHEEL_DIR], {
      stdio: 'inherit',
    });
  }
  const found = local();
  if (found.length === 0) throw new Error(`no ${spec} wheel in ${WHEEL_DIR}`);
  return found[found.length - 1];
}

// Unpack into a fresh folder beside the target, then rename: never a half-written deps folder.
const staging = `${CUDNN_DEPS_DIR}.${process.pid}.partial`;
rmSync(staging, { recursive: true, force: true });
mkdirSync(join(staging, 'include'), { recursive: true });
mkdirSync(join(staging, 'frontend'), { recursive: true });

const wheel = findWheel(values.wheel, /^nvidia_cudnn_cu13-.*\.whl$/, 'nvidia-cudnn-cu13');
const nvrtcWheel = findWheel(
  values['nvrtc-wheel'],
  /^nvidia_cuda_nvrtc-13\..*\.whl$/,
  'nvidia-cuda-nvrtc==13.0.*',
);
// A wheel is a zip; Python's zipfile reads it wherever unzip is not installed. Headers only.
const unzip = `
import sys, zipfile, os, re
wheel, out, pattern = sys.argv[1], sys.argv[2], re.compile(sys.argv[3])
names = []
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if pattern.fullmatch(name):
            with open(os.path.join(out, os.path.basename(name)), 'wb') as f:
                f.write(z.read(name))
            names.append(name)
if not names:
    sys.exit('no ' + sys.argv[3] + ' in ' + wheel)
print(len(names))
`;
const unpack = (from, pattern) =>
  execFileSync('python3', ['-c', unzip, from, join(staging, 'include'), pattern], {
    encoding: 'utf8',
  }).trim();
const headers = unpack(wheel, 'nvidia/cudnn/include/[^/]+\\.h');
unpack(nvrtcWheel, 'nvidia/[^/]+/include/nvrtc\\.h');

const frontend = values.frontend ?? process.env.ATELIER_CUDNN_FRONTEND_GIT ?? DEFAULT_FRONTEND;
const commit = execFileSync('git', ['-C', frontend, 'rev-parse', values.commit], { encoding: 'utf8' }).trim();
const archive = execFileSync('git', ['-C', frontend, 'archive', '--format=tar', commit, 'include'], {
  maxBuffer: 256 * 1024 * 1024,
});
execFileSync('tar', ['-x', '-C', join(staging, 'frontend')], { input: archive });

const version = `cudnn wheel ${basename(wheel)}\nnvrtc wheel ${basename(nvrtcWheel)}\ncudnn-frontend ${commit}\n`;
writeFileSync(join(staging, 'VERSION'), version);
rmSync(CUDNN_DEPS_DIR, { recursive: true, force: true });
renameSync(staging, CUDNN_DEPS_DIR);
console.log(
  `cuDNN deps in ${CUDNN_DEPS_DIR}: ${headers} cuDNN headers from ${basename(wheel)}, frontend ${commit.slice(0, 12)}`,
);
