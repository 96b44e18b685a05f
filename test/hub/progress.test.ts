import { describe, expect, it } from 'vitest';
import { formatBytes, formatProgressLine, SpeedMeter } from '../../src/pipeline/hub/progress.js';

describe('SpeedMeter', () => {
  it('measures speed over the last seconds, so a stall shows', () => {
    let now = 0;
    const meter = new SpeedMeter(() => now);
    expect(meter.update(0)).toBe(0);
    now = 1000;
    expect(meter.update(50_000_000)).toBe(50_000_000);
    now = 2000;
    expect(meter.update(100_000_000)).toBe(50_000_000);
    // Ten seconds without a byte: the window no longer holds the burst.
    now = 12_000;
    meter.update(100_000_000);
    now = 13_000;
    expect(meter.update(100_000_000)).toBe(0);
  });
});

describe('formatProgressLine', () => {
  it('shows a bar, the percentage, sizes, speed and time left', () => {
    const line = formatProgressLine(
      {
        file: 'sd3.5_large.safetensors',
        bytes: 4_115_100_000,
        total: 16_460_379_262,
        bytesPerSecond: 85_300_000,
      },
      20,
    );
    expect(line).toBe(
      '[#####...............]  25%  4.12 GB / 16.5 GB  85.3 MB/s  2:25 left  sd3.5_large.safetensors',
    );
  });

  it('formats sizes in decimal units', () => {
    expect([0, 999, 1000, 1_389_382_176, 9_787_841_024].map(formatBytes)).toEqual([
      '0 B',
      '999 B',
      '1.00 kB',
      '1.39 GB',
      '9.79 GB',
    ]);
  });
});
