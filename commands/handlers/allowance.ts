/** What a user can still make under the image limits: "you can make 2 more images now, the next in 1 min". */
import { formatDuration } from '../../src/scheduler/duration.js';
import type { Allowance } from '../../src/scheduler/limits.js';

export function allowanceLine(allowance: Allowance): string {
  if (allowance.unlimited) return 'No image limit applies to you.';
  const { availableNow, burst, nextInMs } = allowance;
  const images = (n: number) => `${n} more ${n === 1 ? 'image' : 'images'}`;
  if (availableNow >= burst) return `You can make ${images(availableNow)} now (the most at once).`;
  const next = `the next in ${formatDuration(nextInMs)}`;
  if (availableNow < 1) return `You can make no more images now; ${next}.`;
  return `You can make ${images(availableNow)} now, ${next}.`;
}
