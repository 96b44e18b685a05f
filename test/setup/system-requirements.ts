/**
 * What `npm test` needs from the system, checked once before any test runs, so a missing package
 * is one message saying what to install instead of a browser or compiler failure deep in a test.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface SystemProbe {
  /** The Chromium the browser tests drive (CHROMIUM_PATH, else Debian's /usr/bin/chromium). */
  chromiumPath: string;
  /** PATH to look for compilers on. */
  path: string;
  /** Whether the Python that runs the demo model's training smoke test imports torch and numpy. */
  pythonHasTorch: boolean;
}

const onPath = (name: string, path: string) =>
  path.split(delimiter).some((dir) => dir && existsSync(join(dir, name)));

/** One line per missing requirement, with the Debian package that provides it. */
export function missingRequirements(probe: SystemProbe): string[] {
  const missing: string[] = [];
  if (!existsSync(probe.chromiumPath))
    missing.push(
      `Chromium for the playground's browser tests: no ${probe.chromiumPath} (Debian: apt-get install chromium fonts-noto-color-emoji; or set CHROMIUM_PATH to a Chromium)`,
    );
  if (!onPath('g++', probe.path))
    missing.push('g++ to build the custom-op library the native tests load (Debian: apt-get install g++)');
  if (!onPath('cc', probe.path))
    missing.push('cc to build the stand-in library of the binding tests (Debian: apt-get install gcc)');
  if (!onPath('redis-server', probe.path))
    missing.push(
      'redis-server for the cluster tests (a gateway and workers over BullMQ) (Debian: apt-get install redis-server)',
    );
  if (!probe.pythonHasTorch)
    missing.push(
      "PyTorch for the demo model's training smoke test (Debian: apt-get install python3-torch python3-numpy; or set ATELIER_TRAIN_PYTHON to a python3 that has them)",
    );
  return missing;
}

export default function checkSystem(): void {
  const missing = missingRequirements({
    chromiumPath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    path: process.env.PATH ?? '',
    pythonHasTorch:
      spawnSync(process.env.ATELIER_TRAIN_PYTHON ?? '/usr/bin/python3', ['-c', 'import torch, numpy'], {
        stdio: 'ignore',
      }).status === 0,
  });
  if (missing.length)
    throw new Error(`npm test needs what this system lacks:\n${missing.map((m) => `  - ${m}`).join('\n')}`);
}
