/** A GPU check of capi-checks.ts as a CPU dry run: small shapes, the CPU build of our op library. */
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { type CheckName, type CheckResult, runCheck } from './capi-checks.js';

export function cpuDryRun(name: CheckName, runs = 3): Promise<CheckResult> {
  return runCheck(name, {
    provider: 'cpu',
    deviceId: 0,
    ops: buildCustomOpsLibrary('cpu'),
    small: true,
    runs,
  });
}
