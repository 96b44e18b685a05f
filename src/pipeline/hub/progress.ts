/** Download speed over a sliding window, and a one-line progress bar for terminals. */

/** Speed is measured over the last few seconds, so a stall shows quickly and a burst doesn't linger. */
const WINDOW_MS = 5000;

export class SpeedMeter {
  readonly #samples: { at: number; bytes: number }[] = [];

  constructor(readonly now: () => number = () => performance.now()) {}

  /** Records the running byte count and returns bytes per second over the window. */
  update(bytes: number): number {
    const at = this.now();
    this.#samples.push({ at, bytes });
    while (this.#samples.length > 2 && at - this.#samples[0].at > WINDOW_MS) this.#samples.shift();
    const first = this.#samples[0];
    const elapsed = (at - first.at) / 1000;
    return elapsed > 0 ? Math.max(0, (bytes - first.bytes) / elapsed) : 0;
  }
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** `[#######.......]  42%  1.20 GB / 2.85 GB  85.3 MB/s  0:19 left  clip_g.safetensors` */
export function formatProgressLine(
  p: { file: string; bytes: number; total: number; bytesPerSecond: number },
  width = 24,
): string {
  const fraction = p.total > 0 ? Math.min(1, p.bytes / p.total) : 1;
  const filled = Math.round(fraction * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const left = p.bytesPerSecond > 0 ? `  ${formatDuration((p.total - p.bytes) / p.bytesPerSecond)} left` : '';
  return `${bar} ${String(Math.floor(fraction * 100)).padStart(3)}%  ${formatBytes(p.bytes)} / ${formatBytes(p.total)}  ${formatBytes(p.bytesPerSecond)}/s${left}  ${p.file}`;
}

function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}
