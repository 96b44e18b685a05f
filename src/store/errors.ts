/**
 * What the operator reads when the data dir or `atelier.db` cannot be used: one line naming the
 * file, the cause (SQLite's or the OS's code) and what to do, instead of a raw `SqliteError`. And
 * the error a job row gets when its stored spec cannot be read back.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { AtelierError, StoreError } from '../errors.js';

interface CodedError extends Error {
  code: string;
  path?: string;
}

function hasCode(error: unknown): error is CodedError {
  return error instanceof Error && typeof (error as { code?: unknown }).code === 'string';
}

/** An error raised by SQLite (better-sqlite3's SqliteError, with an extended code). */
export function isSqliteError(error: unknown): error is CodedError {
  return hasCode(error) && error.code.startsWith('SQLITE_');
}

/** Node's file-system errors an operator fixes by hand. */
const FS_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder',
  EEXIST: 'a file is in the way',
  ENOENT: 'no such file or folder',
  EIO: 'input/output error',
};

function errnoReason(code: string): string {
  return FS_REASONS[code] ?? code;
}

/** Why SQLite could not open `file` and what to do, found by looking at the file and its folder. */
function whyCannotOpen(file: string): { why: string; fix: string } {
  const dir = dirname(file);
  const fix = `make ${dir} a folder this user can write to, ${elsewhere}`;
  try {
    if (!statSync(dir).isDirectory()) return { why: `${dir} is not a folder`, fix };
  } catch (error) {
    if (hasCode(error)) return { why: `${dir}: ${errnoReason(error.code)}`, fix };
  }
  try {
    if (statSync(file).isDirectory())
      return { why: 'it is a folder, not a database file', fix: `move it aside, ${elsewhere}` };
  } catch {
    // No file yet: SQLite creates it, if it may write the folder.
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (error) {
    if (hasCode(error))
      return {
        why: `this user cannot write to ${dir}: ${errnoReason(error.code)}`,
        fix: `make ${dir} writable by this user, ${elsewhere}`,
      };
  }
  return { why: '', fix };
}

const elsewhere = 'or set ATELIER_DATA_DIR to a folder this user can write to';

/**
 * The one-line StoreError for an error raised while opening or using the database `file`; an
 * AtelierError is returned as it is, anything that is neither SQLite's nor the file system's too.
 */
export function storeError(error: unknown, file: string): unknown {
  if (error instanceof AtelierError || !hasCode(error)) return error;
  const dir = dirname(file);
  const { code } = error;
  const fail = (message: string) => new StoreError(file, message, { cause: error });
  const primary = /^SQLITE_[A-Z]+/.exec(code)?.[0];
  switch (primary) {
    case 'SQLITE_NOTADB':
      return fail(
        `${file} is not a SQLite database (${code}): move it aside to start fresh, or restore a backup`,
      );
    case 'SQLITE_CORRUPT':
      return fail(
        `${file} is damaged (${code}: ${error.message}): move it aside, with its -wal and -shm files, to start fresh, or restore a backup`,
      );
    case 'SQLITE_CANTOPEN': {
      const { why, fix } = whyCannotOpen(file);
      return fail(`cannot open ${file} (${code}${why ? `: ${why}` : ''}): ${fix}`);
    }
    case 'SQLITE_READONLY':
    case 'SQLITE_PERM':
    case 'SQLITE_AUTH':
      return fail(
        `cannot write ${file} (${code}: ${error.message}): make ${dir} and the files in it writable by this user, ${elsewhere}`,
      );
    case 'SQLITE_FULL':
      return fail(`cannot write ${file} (${code}): the disk is full; free some space and start again`);
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return fail(
        `${file} is locked by another process (${code}): stop the other Atelier using ${dir}, or set ATELIER_DATA_DIR elsewhere`,
      );
    case 'SQLITE_IOERR':
      return fail(
        `cannot read or write ${file} (${code}: ${error.message}): check the disk and the file system it is on`,
      );
    case undefined:
      break;
    default:
      return fail(
        `${file} could not be used (${code}: ${error.message}): move it aside to start fresh, or restore a backup`,
      );
  }
  if (!(code in FS_REASONS)) return error;
  const path = error.path ?? file;
  const cause = `${code}: ${errnoReason(code)}`;
  if (code === 'ENOSPC') return fail(`cannot write ${path} (${cause}): free some space and start again`);
  if (code === 'ENOTDIR' || code === 'EEXIST')
    return fail(`cannot create the folder ${path} (${cause}): move that file aside, ${elsewhere}`);
  if ((error as { syscall?: string }).syscall === 'mkdir')
    return fail(`cannot create the folder ${path} (${cause}): create it for this user, ${elsewhere}`);
  return fail(`cannot write ${path} (${cause}): make it writable by this user, ${elsewhere}`);
}

/** A job row whose stored spec is not valid JSON or lacks what every job has. */
export class UnreadableJobError extends AtelierError {
  constructor(
    readonly jobId: string,
    readonly problem: string,
  ) {
    super(
      'STORE',
      `the stored job row is unreadable (${problem}); it was failed instead of run`,
      'This job could not be read back after the bot restarted, so it was dropped. Please ask for it again.',
    );
  }
}
