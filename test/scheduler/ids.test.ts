import { describe, expect, it } from 'vitest';
import { isJobId, jobIdTime, newJobId } from '../../src/jobs/ids.js';

describe('job ids', () => {
  it('are 13 URL- and custom_id-safe characters that encode their creation time', () => {
    const id = newJobId(Date.UTC(2025, 0, 2, 3, 4, 5, 678));
    expect(id).toMatch(/^[0-9a-z]{13}$/);
    expect(isJobId(id)).toBe(true);
    expect(encodeURIComponent(id)).toBe(id);
    expect(jobIdTime(id)).toBe(Date.UTC(2025, 0, 2, 3, 4, 5, 678));
  });

  it('sort as strings in creation order, also within one millisecond', () => {
    const ids: string[] = [];
    for (let i = 0; i < 2000; i++) ids.push(newJobId(1_700_000_000_000 + Math.floor(i / 500)));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('are rejected by isJobId when malformed', () => {
    expect(isJobId('')).toBe(false);
    expect(isJobId('0123456789abu')).toBe(false); // u is not in the alphabet
    expect(isJobId('../etc/passwd')).toBe(false);
  });
});
