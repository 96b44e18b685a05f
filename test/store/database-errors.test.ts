/**
 * A data dir or atelier.db that cannot be used ends the start with one line naming the file and
 * what to do — from openStore, from the scheduler's recovery, and from the `atelier` command as
 * an operator runs it — never a SqliteError's stack trace.
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreError } from '../../src/errors.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { DATABASE_FILE, openStore } from '../../src/store/index.js';
import { makeSpec, TestPipeline } from '../scheduler/helpers.js';

const bin = fileURLToPath(new URL('../../bin/atelier.js', import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  // Innermost first: a folder made read-only inside another is opened up before its parent goes.
  for (const dir of dirs.splice(0).reverse()) {
    chmodSync(dir, 0o755);
    rmSync(dir, { recursive: true, force: true });
  }
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'atelier-db-'));
  dirs.push(dir);
  return dir;
}

/** A data dir holding an atelier.db with `jobs` jobs in it, checkpointed into the main file. */
function databaseWithJobs(jobs: number): { dir: string; file: string } {
  const dir = tempDir();
  const store = openStore({ dataDir: dir });
  for (let i = 0; i < jobs; i++)
    store.jobs.insert(`job${i}`, makeSpec('alice', { prompt: 'x'.repeat(400) }), i);
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  store.close();
  return { dir, file: join(dir, DATABASE_FILE) };
}

function storeErrorOf(fn: () => unknown): StoreError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(StoreError);
    return error as StoreError;
  }
  throw new Error('expected a StoreError');
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `atelier <args>` in a real process, as test/cli does; `uid` runs it as another user. */
function atelier(args: string[], dataDir: string, options: { uid?: number } = {}): Promise<Run> {
  const cwd = tempDir();
  chmodSync(cwd, 0o777);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd,
      env: { PATH: process.env.PATH, HOME: cwd, ATELIER_DATA_DIR: dataDir },
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('openStore on a file that is not a usable database', () => {
  it('names a garbage atelier.db as not a SQLite database and says what to do', () => {
    const dir = tempDir();
    const file = join(dir, DATABASE_FILE);
    writeFileSync(file, 'this is not a database, just some text that someone put here. '.repeat(100));
    const error = storeErrorOf(() => openStore({ dataDir: dir }));
    expect(error.message).toBe(
      `${file} is not a SQLite database (SQLITE_NOTADB): move it aside to start fresh, or restore a backup`,
    );
    expect(error.file).toBe(file);
    expect(error.code).toBe('STORE');
  });

  it('names a truncated atelier.db as damaged', () => {
    const { dir, file } = databaseWithJobs(200);
    truncateSync(file, Math.floor(statSync(file).size / 2));
    expect(storeErrorOf(() => openStore({ dataDir: dir })).message).toBe(
      `${file} is damaged (SQLITE_CORRUPT: database disk image is malformed): move it aside, with its -wal and -shm files, to start fresh, or restore a backup`,
    );
  });

  it('names an atelier.db that is a folder', () => {
    const dir = tempDir();
    const file = join(dir, DATABASE_FILE);
    mkdirSync(file);
    expect(storeErrorOf(() => openStore({ dataDir: dir })).message).toBe(
      `cannot open ${file} (SQLITE_CANTOPEN: it is a folder, not a database file): move it aside, or set ATELIER_DATA_DIR to a folder this user can write to`,
    );
  });

  it('names a data dir below a file', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), '');
    const dataDir = join(dir, 'file', 'data');
    expect(storeErrorOf(() => openStore({ dataDir })).message).toBe(
      `cannot create the folder ${dataDir} (ENOTDIR: a part of the path is a file, not a folder): move that file aside, or set ATELIER_DATA_DIR to a folder this user can write to`,
    );
  });
});

describe('recovery on a database damaged past its first pages', () => {
  it('throws the one-line StoreError, not a SqliteError', async () => {
    const { dir, file } = databaseWithJobs(300);
    const fd = openSync(file, 'r+');
    const junk = Buffer.alloc(20 * 4096, 0xab);
    writeSync(fd, junk, 0, junk.length, Math.floor(statSync(file).size / 2 / 4096) * 4096);
    closeSync(fd);
    const store = openStore({ dataDir: dir });
    const scheduler = new Scheduler(store, {
      runners: [new JobExecutor({ pipeline: new TestPipeline(), store })],
    });
    try {
      const error = await scheduler.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StoreError);
      expect((error as Error).message).toBe(
        `${file} is damaged (SQLITE_CORRUPT: database disk image is malformed): move it aside, with its -wal and -shm files, to start fresh, or restore a backup`,
      );
    } finally {
      await scheduler.stop();
      store.close();
    }
  });
});

describe('atelier serve and doctor with an unusable data dir', () => {
  it('serve: one line naming a garbage atelier.db, exit 1', async () => {
    const dir = tempDir();
    const file = join(dir, DATABASE_FILE);
    writeFileSync(file, Buffer.alloc(8192, 0x5a));
    const r = await atelier(['serve'], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `atelier: ${file} is not a SQLite database (SQLITE_NOTADB): move it aside to start fresh, or restore a backup\n`,
    );
  });

  it('serve: one line naming a truncated atelier.db', async () => {
    const { file } = databaseWithJobs(200);
    const dir = tempDir();
    copyFileSync(file, join(dir, DATABASE_FILE));
    truncateSync(join(dir, DATABASE_FILE), 3000);
    const r = await atelier(['serve'], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^atelier: ${join(dir, DATABASE_FILE)} is damaged \\(SQLITE_CORRUPT: .*\\): move it aside.*restore a backup\\n$`,
      ),
    );
  });

  it('serve: one line for a data dir that cannot be created', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), '');
    const dataDir = join(dir, 'file', 'data');
    const r = await atelier(['serve'], dataDir);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `atelier: cannot create the folder ${dataDir} (ENOTDIR: a part of the path is a file, not a folder): move that file aside, or set ATELIER_DATA_DIR to a folder this user can write to\n`,
    );
  });

  it('doctor: reports the garbage database in its row, no stack trace', async () => {
    const dir = tempDir();
    const file = join(dir, DATABASE_FILE);
    writeFileSync(file, Buffer.alloc(8192, 0x5a));
    const r = await atelier(['doctor'], dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      new RegExp(
        `^database +PROBLEM: ${file} is not a SQLite database \\(SQLITE_NOTADB\\): move it aside`,
        'm',
      ),
    );
    expect(r.stderr).not.toMatch(/SqliteError|\n\s+at /);
  });

  // Permissions mean nothing to root: as root, the command runs as `nobody` instead.
  const asRoot = process.getuid?.() === 0;
  const unprivileged = asRoot ? { uid: 65534 } : {};
  it.skipIf(process.platform === 'win32')(
    'serve: one line for a data dir this user cannot write',
    async () => {
      const parent = tempDir();
      chmodSync(parent, 0o755);
      const dataDir = join(parent, 'data');
      mkdirSync(dataDir);
      chmodSync(dataDir, 0o555);
      dirs.push(dataDir);
      const r = await atelier(['serve'], dataDir, unprivileged);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `atelier: cannot open ${join(dataDir, DATABASE_FILE)} (SQLITE_CANTOPEN: this user cannot write to ${dataDir}: permission denied): make ${dataDir} writable by this user, or set ATELIER_DATA_DIR to a folder this user can write to\n`,
      );
    },
  );

  it.skipIf(process.platform === 'win32')(
    'serve: one line for a data dir this user cannot create',
    async () => {
      const parent = tempDir();
      chmodSync(parent, 0o555);
      const dataDir = join(parent, 'data');
      const r = await atelier(['serve'], dataDir, unprivileged);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `atelier: cannot create the folder ${dataDir} (EACCES: permission denied): create it for this user, or set ATELIER_DATA_DIR to a folder this user can write to\n`,
      );
    },
  );
});
