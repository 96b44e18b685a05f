/**
 * What the multi-GPU driver watches while a run lasts: every GPU's memory and utilization (one
 * `nvidia-smi` polling all devices; none on a machine without it), the host's CPU (/proc/stat) and
 * the CPU time of each product process tree (/proc/<pid>/stat), so a run can say what limited it.
 * Samples carry Date.now() times, the clock the product stores job times with.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

export interface GpuSample {
  t: number;
  device: number;
  usedMiB: number;
  utilPercent: number;
}

/** One line of `nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader,nounits`. */
export function parseGpuLine(line: string, t: number): GpuSample | undefined {
  const parts = line.split(',').map((p) => p.trim());
  if (parts.length < 3) return undefined;
  const [device, used, util] = parts.map(Number);
  if (!Number.isInteger(device) || !Number.isFinite(used)) return undefined;
  return { t, device: device!, usedMiB: used!, utilPercent: Number.isFinite(util) ? util! : 0 };
}

export interface GpuDeviceReport {
  device: number;
  /** Memory in use before the product started (other tenants, the driver's own context). */
  baselineGiB: number;
  peakGiB: number;
  /** peak − baseline: what this run's processes took on the device. */
  peakAddedGiB: number;
  /** Mean utilization.gpu over the measured window. */
  meanUtilPercent: number | null;
}

/** Polls every GPU's memory and utilization every `everyMs`; `available` is false without nvidia-smi. */
export class GpuMonitor {
  readonly samples: GpuSample[] = [];
  #proc: ChildProcess | undefined;
  #available = false;
  #buffer = '';

  constructor(readonly everyMs = 200) {}

  start(): Promise<void> {
    this.#proc = spawn(
      'nvidia-smi',
      [
        '--query-gpu=index,memory.used,utilization.gpu',
        '--format=csv,noheader,nounits',
        '-lms',
        String(this.everyMs),
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    return new Promise((resolve) => {
      // No nvidia-smi (the CPU smoke run): no samples, memory reads as null.
      this.#proc!.once('error', () => resolve());
      this.#proc!.stdout!.setEncoding('utf8').on('data', (text: string) => {
        this.#buffer += text;
        const lines = this.#buffer.split('\n');
        this.#buffer = lines.pop() ?? '';
        const t = Date.now();
        for (const line of lines) {
          const sample = parseGpuLine(line, t);
          if (!sample) continue;
          this.samples.push(sample);
          if (!this.#available) {
            this.#available = true;
            resolve();
          }
        }
      });
      this.#proc!.once('exit', () => resolve());
    });
  }

  get available(): boolean {
    return this.#available;
  }

  stop(): void {
    this.#proc?.kill();
  }

  /** Per device: baseline (last sample before `from`), peak in [from, to], mean utilization in [windowFrom, windowTo]. */
  report(from: number, to: number, window: [number, number]): GpuDeviceReport[] {
    return reportGpus(this.samples, from, to, window);
  }
}

export function reportGpus(
  samples: readonly GpuSample[],
  from: number,
  to: number,
  window: [number, number],
): GpuDeviceReport[] {
  const devices = [...new Set(samples.map((s) => s.device))].sort((a, b) => a - b);
  return devices.map((device) => {
    const mine = samples.filter((s) => s.device === device);
    const before = mine.filter((s) => s.t < from);
    const baseline = (before.at(-1) ?? mine[0])?.usedMiB ?? 0;
    const during = mine.filter((s) => s.t >= from && s.t <= to);
    const peak = Math.max(baseline, ...during.map((s) => s.usedMiB));
    const inWindow = mine.filter((s) => s.t >= window[0] && s.t <= window[1]);
    const util = inWindow.length
      ? inWindow.reduce((sum, s) => sum + s.utilPercent, 0) / inWindow.length
      : null;
    return {
      device,
      baselineGiB: baseline / 1024,
      peakGiB: peak / 1024,
      peakAddedGiB: (peak - baseline) / 1024,
      meanUtilPercent: util,
    };
  });
}

// ---- CPU and host memory -------------------------------------------------------------------------

const PAGE_BYTES = 4096;

interface ProcStat {
  pid: number;
  ppid: number;
  /** The command name (`comm`), at most 15 characters. */
  name: string;
  /** utime + stime, in clock ticks. */
  ticks: number;
  /** Resident set, in pages. */
  rssPages: number;
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number.parseInt(text, 10);
  const name = text.slice(open + 1, close);
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
  const ppid = Number(fields[1]);
  const ticks = Number(fields[11]) + Number(fields[12]);
  // rss is field 24.
  const rssPages = Number(fields[21] ?? 0);
  return Number.isFinite(pid) && Number.isFinite(ppid) && Number.isFinite(ticks)
    ? { pid, ppid, name, ticks, rssPages: Number.isFinite(rssPages) ? rssPages : 0 }
    : undefined;
}

/** Pids of `parent`'s children whose command name is `name` (a redis-server the driver started). */
export function childPidsNamed(parent: number, name: string): number[] {
  if (!existsSync('/proc')) return [];
  return readProcesses()
    .filter((p) => p.ppid === parent && p.name.startsWith(name.slice(0, 15)))
    .map((p) => p.pid);
}

function readProcesses(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = parseProcStat(readFileSync(`/proc/${name}/stat`, 'utf8'));
      if (stat) out.push(stat);
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** Busy and total jiffies of the host (first line of /proc/stat). */
export function parseHostCpu(text: string): { busy: number; total: number } | undefined {
  const line = text.split('\n', 1)[0] ?? '';
  if (!line.startsWith('cpu ')) return undefined;
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  const total = values.slice(0, 8).reduce((s, v) => s + (Number.isFinite(v) ? v : 0), 0);
  return { busy: total - idle, total };
}

/** Memory in use on the host (MemTotal − MemAvailable), bytes, from /proc/meminfo. */
export function parseMeminfoUsed(text: string): number | undefined {
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]);
  const used = kib('MemTotal') - kib('MemAvailable');
  return Number.isFinite(used) ? used * 1024 : undefined;
}

interface CpuSample {
  t: number;
  host?: { busy: number; total: number };
  hostUsedBytes?: number;
  /** Ticks per role: each role's root processes and all their descendants. */
  roles: Record<string, number>;
  /** Resident bytes per role, summed over the same process trees. */
  rss: Record<string, number>;
}

export interface CpuReport {
  /** Mean share of all cores busy over the window (0–100), null without /proc. */
  hostBusyPercent: number | null;
  cores: number;
  /** Mean cores each role's processes kept busy over the window (1.0 = one core all the time). */
  roleCores: Record<string, number>;
  /** The most host memory in use (MemTotal − MemAvailable) over the whole run, GiB. */
  hostMemPeakGiB: number | null;
  /** The largest resident set of each role's process tree over the whole run, GiB. */
  rolePeakRssGiB: Record<string, number>;
}

/** Samples /proc every `everyMs`: the host's CPU and each role's process tree (`setRoles`). */
export class CpuMonitor {
  readonly #samples: CpuSample[] = [];
  #roles: Record<string, number[]> = {};
  #timer: NodeJS.Timeout | undefined;
  readonly #ticksPerSecond = 100;

  constructor(
    readonly cores: number,
    readonly everyMs = 1000,
  ) {}

  get available(): boolean {
    return existsSync('/proc/stat');
  }

  /** Which root pids make up each role (e.g. gateway: [pid], workers: [pid, pid]). */
  setRoles(roles: Record<string, number[]>): void {
    this.#roles = roles;
  }

  start(): void {
    if (!this.available) return;
    this.sample();
    this.#timer = setInterval(() => this.sample(), this.everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  sample(): void {
    if (!this.available) return;
    const t = Date.now();
    let host: CpuSample['host'];
    try {
      host = parseHostCpu(readFileSync('/proc/stat', 'utf8'));
    } catch {
      host = undefined;
    }
    const procs = readProcesses();
    const children = new Map<number, ProcStat[]>();
    for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
    const byPid = new Map(procs.map((p) => [p.pid, p]));
    const roles: Record<string, number> = {};
    const rss: Record<string, number> = {};
    for (const [role, pids] of Object.entries(this.#roles)) {
      let ticks = 0;
      let pages = 0;
      const stack = pids.map((pid) => byPid.get(pid)).filter((p): p is ProcStat => p !== undefined);
      const seen = new Set<number>();
      while (stack.length > 0) {
        const p = stack.pop()!;
        if (seen.has(p.pid)) continue;
        seen.add(p.pid);
        ticks += p.ticks;
        pages += p.rssPages;
        stack.push(...(children.get(p.pid) ?? []));
      }
      roles[role] = ticks;
      rss[role] = pages * PAGE_BYTES;
    }
    let hostUsedBytes: number | undefined;
    try {
      hostUsedBytes = parseMeminfoUsed(readFileSync('/proc/meminfo', 'utf8'));
    } catch {
      hostUsedBytes = undefined;
    }
    this.#samples.push({
      t,
      ...(host ? { host } : {}),
      ...(hostUsedBytes ? { hostUsedBytes } : {}),
      roles,
      rss,
    });
  }

  /** Means over [from, to] from the samples nearest its ends; memory peaks over every sample. */
  report(from: number, to: number): CpuReport {
    const inside = this.#samples.filter((s) => s.t >= from && s.t <= to);
    const first = inside[0];
    const last = inside.at(-1);
    const used = this.#samples.flatMap((s) => (s.hostUsedBytes ? [s.hostUsedBytes] : []));
    const hostMemPeakGiB = used.length ? Math.max(...used) / 2 ** 30 : null;
    const rolePeakRssGiB: Record<string, number> = {};
    for (const s of this.#samples)
      for (const [role, bytes] of Object.entries(s.rss))
        rolePeakRssGiB[role] = Math.max(rolePeakRssGiB[role] ?? 0, bytes / 2 ** 30);
    if (!first || !last || first === last)
      return { hostBusyPercent: null, cores: this.cores, roleCores: {}, hostMemPeakGiB, rolePeakRssGiB };
    const seconds = (last.t - first.t) / 1000;
    const roleCores: Record<string, number> = {};
    for (const role of Object.keys(last.roles)) {
      // A process tree that lost processes (stopped) can go down: clamp at zero.
      const ticks = Math.max(0, (last.roles[role] ?? 0) - (first.roles[role] ?? 0));
      roleCores[role] = ticks / this.#ticksPerSecond / seconds;
    }
    const host =
      first.host && last.host && last.host.total > first.host.total
        ? (100 * (last.host.busy - first.host.busy)) / (last.host.total - first.host.total)
        : null;
    return { hostBusyPercent: host, cores: this.cores, roleCores, hostMemPeakGiB, rolePeakRssGiB };
  }
}
