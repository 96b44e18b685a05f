/**
 * The shape of `bench/results/multi-gpu-<date>.json`: the machine, the settings, one summary row
 * per run (./report.ts), each run's details, and the runs skipped with why.
 */
import type { CompletionOrderReport, FairnessReport, RateReport, StoredJobRow, Summary } from './analysis.js';
import type { CpuReport, GpuDeviceReport } from './monitor.js';
import type { EngineLine, Mode } from './product.js';
import type { JobObservation } from './users.js';

export type SummaryRow = Record<string, string | number | null>;

export interface MachineInfo {
  node: string;
  platform: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  gpus: { index: number; name?: string; driver?: string; memory?: string }[];
}

export interface LimitsReport {
  ok: boolean;
  /** Each person's one job over `queue.maxQueuedPerUser`: all must be refused. */
  queueCap: { max: number; probes: number; refused: number; answers: string[] };
  /** The probe person's ask after its whole burst: must be refused; its two jobs then cancelled. */
  rateLimit: { refused: boolean; answer: string; cancelled: number };
  /** Load jobs refused (none expected: the limits are set not to bind under the load). */
  loadRefusals: number;
  /** The most jobs one person had waiting or running at once, from the stored rows. */
  maxOutstanding: number;
  failed: number;
  /** Results not at the first result's size (every job asks for the model's 1:1 size). */
  wrongSize: number;
}

/** Everything measured in one run (the JSON's `runs[]`). */
export interface RunResult {
  mode: Mode;
  gpus: number;
  startedAt: string;
  /** Spawning the processes → the playground listening (cluster: every worker registered too). */
  coldStartSeconds: number;
  /** One short job per GPU, all finished. */
  warmupSeconds: number;
  /** t0 (ms since the epoch): the admin resumed the queue with every person's jobs queued. */
  t0: number;
  windowSeconds: number;
  rates: RateReport;
  /** t0 → the first result. */
  firstImageSeconds: number | null;
  /** t0 → each person's first result. */
  userFirstImageSeconds: Summary | null;
  /** Asking → result, per job in the window (queue wait included). */
  latencySeconds: Summary | null;
  /** started → finished in the product, per job: one GPU's time per image, PNG and storing included. */
  jobSeconds: Summary | null;
  fairness: FairnessReport;
  completion: CompletionOrderReport;
  limits: LimitsReport;
  gpu: { available: boolean; devices: GpuDeviceReport[]; usedAsExpected: boolean | null };
  cpu: CpuReport & { driverCores: number };
  engine: EngineLine[];
  errors: string[];
  jobs: JobObservation[];
  stored: StoredJobRow[];
}

export interface BenchResult {
  name: 'multi-gpu';
  issue: 16;
  measuredAt: string;
  machine: MachineInfo;
  settings: Record<string, unknown>;
  rows: SummaryRow[];
  runs: RunResult[];
  skipped: { mode: Mode; gpus: number; why: string }[];
}
