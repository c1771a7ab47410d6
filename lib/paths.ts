/**
 * Resolving a path the model names to a file inside a workspace, refusing everything that leaves it: absolute paths,
 * `..`, NUL bytes, the repository's `.git` (read or write, at any depth), and symlinks (at the end or in the middle)
 * whose target lies outside the workspace. Pure string checks come first (`normalizeRelPath`, also used for policy
 * facts), then the file system is asked (`realpath`) — the answer is always the resolved location.
 */
import { lstat, realpath } from 'node:fs/promises';
import path from 'node:path';
import { TroupeError } from '../core/errors';

export const MAX_PATH_LENGTH = 4096;

export type ResolvedPath = {
  /** Absolute path with every symlink resolved (for a new file: its nearest existing ancestor resolved). */
  abs: string;
  /** `abs` relative to the real workspace root, `/`-separated; `''` for the root itself. */
  rel: string;
};

function refuse(userPath: string, why: string): never {
  const shown = userPath.length > 200 ? `${userPath.slice(0, 200)}…` : userPath;
  throw new TroupeError('bad_request', `path "${shown.replace(/\0/g, '\\0')}": ${why}`);
}

function isGitSegment(segment: string): boolean {
  return segment.toLowerCase() === '.git';
}

/**
 * The pure part of `resolveInside`: checks `userPath` as a string and returns it normalised (`./a//b/` → `a/b`,
 * `.` → `''`). Throws TroupeError('bad_request') naming the path and the problem.
 */
export function normalizeRelPath(userPath: string, opts: { forWrite: boolean }): string {
  if (typeof userPath !== 'string' || userPath.length === 0) refuse(String(userPath ?? ''), 'is empty');
  if (userPath.includes('\0')) refuse(userPath, 'contains a NUL byte');
  if (userPath.length > MAX_PATH_LENGTH) refuse(userPath, `is longer than ${MAX_PATH_LENGTH} characters`);
  if (path.posix.isAbsolute(userPath)) refuse(userPath, 'is absolute; give a path relative to the workspace root');
  const segments = userPath.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) refuse(userPath, 'contains ".."; paths must stay inside the workspace');
  if (segments.some(isGitSegment)) refuse(userPath, 'is inside .git, which the tools do not read or write');
  const rel = segments.join('/');
  if (opts.forWrite && rel === '') refuse(userPath, 'is the workspace root, not a file');
  return rel;
}

/** `normalizeRelPath` that never throws: the raw string when it is not a valid path (for policy facts). */
export function lexicalRelPath(userPath: string): string {
  try {
    return normalizeRelPath(userPath, { forWrite: false });
  } catch {
    return userPath;
  }
}

function relInside(realRoot: string, candidate: string): string | null {
  if (candidate === realRoot) return '';
  const rel = path.relative(realRoot, candidate);
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return null;
  return rel.split(path.sep).join('/');
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/**
 * Resolves `userPath` inside `root`. An existing target must resolve (symlinks followed) inside realpath(root); a new
 * file's nearest existing ancestor must. A dangling symlink is refused (writing through it would create its target
 * wherever it points). The resolved location must not be inside `.git` either (`link -> .git/config`).
 */
export async function resolveInside(root: string, userPath: string, opts: { forWrite: boolean }): Promise<ResolvedPath> {
  const lexical = normalizeRelPath(userPath, opts);
  const realRoot = await realpath(root);
  const joined = lexical === '' ? realRoot : path.join(realRoot, ...lexical.split('/'));

  let existing = joined;
  const missing: string[] = [];
  for (;;) {
    try {
      const real = await realpath(existing);
      const rel = relInside(realRoot, real);
      if (rel === null) refuse(userPath, 'resolves (through a symlink) to a location outside the workspace');
      if (rel.split('/').some(isGitSegment)) refuse(userPath, 'resolves (through a symlink) into .git');
      const abs = missing.length === 0 ? real : path.join(real, ...missing);
      const fullRel = [rel, ...missing].filter((s) => s !== '').join('/');
      if (opts.forWrite && fullRel === '') refuse(userPath, 'is the workspace root, not a file');
      return { abs, rel: fullRel };
    } catch (err) {
      if (err instanceof TroupeError) throw err;
      if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ENOTDIR')) throw err;
      // realpath failed: either the entry does not exist, or it is a symlink to something that does not.
      const isLink = await lstat(existing).then(
        (s) => s.isSymbolicLink(),
        () => false,
      );
      if (isLink) refuse(userPath, 'is (or passes through) a dangling symlink');
      if (existing === realRoot) throw err;
      missing.unshift(path.basename(existing));
      existing = path.dirname(existing);
    }
  }
}
