import { describe, expect, it } from 'vitest';
import { missingRequirements } from './system-requirements.js';

describe('npm test on a system that lacks a package', () => {
  it('says what to install for each missing one', () => {
    expect(
      missingRequirements({ chromiumPath: '/nowhere/chromium', path: '/nowhere/bin', pythonHasTorch: false }),
    ).toEqual([
      expect.stringMatching(
        /no \/nowhere\/chromium \(Debian: apt-get install chromium fonts-noto-color-emoji; or set CHROMIUM_PATH/,
      ),
      expect.stringContaining('apt-get install g++'),
      expect.stringContaining('apt-get install gcc'),
      expect.stringContaining('apt-get install redis-server'),
      expect.stringContaining('apt-get install python3-torch python3-numpy'),
    ]);
  });

  it('finds nothing missing where the packages are', () => {
    expect(
      missingRequirements({
        chromiumPath: process.execPath,
        path: process.env.PATH ?? '',
        pythonHasTorch: true,
      }),
    ).toEqual([]);
  });
});
