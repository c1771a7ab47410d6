/**
 * Workspace manager: a session (or a task running in parallel with others) works in its own git worktree, on its own
 * branch `troupe/<workspaceId>`, created from the user's repository without touching the user's checkout (HEAD,
 * index, files and current branch stay as they are). Every step that changed the worktree is snapshotted as a commit
 * on that branch, with a `Troupe-Step: <stepKey>` trailer; rollback resets the worktree to an earlier snapshot.
 *
 * Git is always run through execFile-style spawning with an argv array (no shell), a sanitised environment (no
 * inherited GIT_* variables), hooks disabled (`core.hooksPath=/dev/null`), no signing, no fsmonitor, a fixed author
 * `Troupe <troupe@localhost>`, and — for everything inside a worktree — an explicit `--git-dir`/`--work-tree`, so a
 * `.git` file the model rewrote inside the worktree can never point git at a config of its choosing.
 *
 * Snapshots hold what `git add -A` sees: ignored files (node_modules, build output) are neither snapshotted nor
 * removed by a restore (`git clean -ffd`, not `-x`), and empty directories are not tracked.
 *
 * A workspace is used by one step at a time: parallel work on one repository gets one worktree per task.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { TroupeError } from '../core/errors';

export const AUTHOR_NAME = 'Troupe';
export const AUTHOR_EMAIL = 'troupe@localhost';
export const STEP_TRAILER = 'Troupe-Step';

/** The repository a session names: the top of its working tree and its (shared) git directory. */
export type Repository = { root: string; gitCommonDir: string; headSha: string };

/** A worktree of a repository. Plain data: safe to pass across the Temporal boundary. */
export type Workspace = {
  id: string;
  /** realpath of the worktree. */
  root: string;
  /** `troupe/<id>` */
  branch: string;
  /** The commit the branch started from. */
  baseSha: string;
  /** realpath of the user's repository (its main working tree). */
  repo: string;
  /** The repository's shared git directory (objects, refs, config). */
  gitCommonDir: string;
  /** The worktree's private git directory (`<gitCommonDir>/worktrees/<name>`: HEAD, index). */
  gitDir: string;
};

export type Snapshot = { sha: string; stepKey: string | null; subject: string; committedAt: string };

// ---------------------------------------------------------------------------------------------------------------
// running git

const GIT_CONFIG: readonly string[] = [
  'core.hooksPath=/dev/null',
  'commit.gpgsign=false',
  'tag.gpgsign=false',
  'safe.directory=*',
  'core.fsmonitor=false',
  'core.pager=cat',
  'core.quotePath=false',
  'color.ui=false',
  'advice.detachedHead=false',
  'user.name=' + AUTHOR_NAME,
  'user.email=' + AUTHOR_EMAIL,
];

/** The parent's environment without anything that steers git (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, GIT_CONFIG_*…). */
export function gitEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('GIT_') || k === 'EMAIL' || k.startsWith('LC_') || k === 'LANG' || k === 'LANGUAGE') continue;
    env[k] = v;
  }
  return {
    ...env,
    LC_ALL: 'C',
    GIT_TERMINAL_PROMPT: '0',
    // Only the repository's own config and our -c flags: the worker's ~/.gitconfig and /etc/gitconfig are not the
    // user's intent for this repository (and could name filters, excludes or helpers of their own).
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: AUTHOR_NAME,
    GIT_AUTHOR_EMAIL: AUTHOR_EMAIL,
    GIT_COMMITTER_NAME: AUTHOR_NAME,
    GIT_COMMITTER_EMAIL: AUTHOR_EMAIL,
    ...extra,
  };
}

export type GitOptions = {
  cwd: string;
  /** Exit codes that are answers, not failures (e.g. 1 for `diff --quiet`). Default: only 0. */
  ok?: readonly number[];
  env?: Record<string, string>;
  /** Stop reading (and kill git) after this many bytes of stdout; `truncated` says so. Default 64 MiB. */
  maxOutput?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
};
export type GitResult = { code: number; stdout: string; stderr: string; truncated: boolean };

/** Runs `git <hardening -c flags> ...args`, argv only, never a shell. */
export function git(args: readonly string[], opts: GitOptions): Promise<GitResult> {
  const argv = [...GIT_CONFIG.flatMap((c) => ['-c', c]), ...args];
  const maxOutput = opts.maxOutput ?? 64 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn('git', argv, { cwd: opts.cwd, env: gitEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'], signal: opts.signal });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let truncated = false;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (chunk: Buffer) => {
      if (truncated) return;
      if (outBytes + chunk.length > maxOutput) {
        out.push(chunk.subarray(0, maxOutput - outBytes));
        outBytes = maxOutput;
        truncated = true;
        child.kill('SIGKILL');
        return;
      }
      out.push(chunk);
      outBytes += chunk.length;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (errBytes < 1024 * 1024) err.push(chunk);
      errBytes += chunk.length;
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (truncated) return resolve({ code: code ?? -1, stdout, stderr, truncated });
      if (timedOut) return reject(new TroupeError('unavailable', `git ${args[0]} timed out`));
      const exit = code ?? -1;
      if (exit === 0 || (opts.ok ?? []).includes(exit)) return resolve({ code: exit, stdout, stderr, truncated });
      const what = signal ? `was killed by ${signal}` : `exited with ${exit}`;
      reject(new GitError(`git ${args.filter((a) => !a.startsWith('--git-dir=') && !a.startsWith('--work-tree=')).slice(0, 3).join(' ')} ${what}: ${stderr.trim().slice(0, 2000)}`, exit, stderr));
    });
  });
}

export class GitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'GitError';
  }
}

/** Git on the shared repository (refs, objects, worktree list), never discovering a repository from a directory. */
function repoGit(repo: { repo: string; gitCommonDir: string }, args: readonly string[], opts: Omit<GitOptions, 'cwd'> = {}) {
  return git([`--git-dir=${repo.gitCommonDir}`, ...args], { ...opts, cwd: repo.gitCommonDir });
}

/** Git inside a worktree, with its git dir and work tree named explicitly. */
function wtGit(ws: Workspace, args: readonly string[], opts: Omit<GitOptions, 'cwd'> = {}) {
  return git([`--git-dir=${ws.gitDir}`, `--work-tree=${ws.root}`, ...args], { ...opts, cwd: ws.root });
}

// ---------------------------------------------------------------------------------------------------------------
// small helpers

const SHA = /^[0-9a-f]{7,64}$/;
const WORKSPACE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    (err: unknown) => {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
      throw err;
    },
  );
}

function checkWorkspaceId(id: string): void {
  if (!WORKSPACE_ID.test(id) || id.includes('..') || id.endsWith('.lock') || id.endsWith('.')) {
    throw new TroupeError(
      'bad_request',
      `workspace id "${id}": use 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit (no "..", not ending in "." or ".lock")`,
    );
  }
}

function checkStepKey(stepKey: string): void {
  if (stepKey.length === 0 || stepKey.length > 256 || /[\u0000-\u001f\u007f]/.test(stepKey) || stepKey.trim() !== stepKey) {
    throw new TroupeError('bad_request', `step key "${stepKey.slice(0, 80)}": 1-256 characters, one line, no surrounding spaces`);
  }
}

function checkSha(sha: string, what: string): void {
  if (!SHA.test(sha)) throw new TroupeError('bad_request', `${what} "${sha.slice(0, 80)}" is not a commit sha (7-64 lowercase hex digits)`);
}

async function revParse(repo: { repo: string; gitCommonDir: string }, rev: string): Promise<string | null> {
  const r = await repoGit(repo, ['rev-parse', '--verify', '--quiet', rev], { ok: [1, 128] });
  return r.code === 0 ? r.stdout.trim() : null;
}

async function isAncestor(repo: { repo: string; gitCommonDir: string }, ancestor: string, of: string): Promise<boolean> {
  const r = await repoGit(repo, ['merge-base', '--is-ancestor', ancestor, of], { ok: [1] });
  return r.code === 0;
}

/** Per-process serialisation of the git operations that write a worktree's index or HEAD. */
const locks = new Map<string, Promise<unknown>>();
async function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const settled = run.then(
    () => undefined,
    () => undefined,
  );
  locks.set(key, settled);
  try {
    return await run;
  } finally {
    if (locks.get(key) === settled) locks.delete(key);
  }
}

function baseRefOf(id: string): string {
  return `refs/troupe/base/${id}`;
}
function abandonedRefPrefix(id: string): string {
  return `refs/troupe/abandoned/${id}/`;
}

// ---------------------------------------------------------------------------------------------------------------
// repository and workspace lifecycle

/** Opens the repository a session names: realpath, a non-bare git repository with at least one commit. */
export async function openRepository(repoPath: string): Promise<Repository> {
  if (typeof repoPath !== 'string' || repoPath.trim() === '' || repoPath.includes('\0')) {
    throw new TroupeError('bad_request', 'repository path is empty');
  }
  let real: string;
  try {
    real = await realpath(repoPath);
  } catch {
    throw new TroupeError('bad_request', `repository "${repoPath}" does not exist`);
  }
  if (!(await stat(real)).isDirectory()) throw new TroupeError('bad_request', `repository "${repoPath}" is not a directory`);
  const probe = await git(['rev-parse', '--is-bare-repository', '--git-common-dir'], { cwd: real, ok: [128] });
  if (probe.code !== 0) throw new TroupeError('bad_request', `repository "${repoPath}" is not a git repository`);
  const [bare, commonDir] = probe.stdout.trim().split('\n');
  const top = await git(['rev-parse', '--show-toplevel'], { cwd: real, ok: [128] });
  const toplevel = top.stdout.trim();
  if (bare === 'true' || top.code !== 0 || !toplevel || !commonDir) {
    throw new TroupeError('bad_request', `repository "${repoPath}" is a bare repository (or a git directory); give a repository with a working tree`);
  }
  const root = await realpath(toplevel);
  const gitCommonDir = await realpath(path.resolve(real, commonDir));
  const head = await revParse({ repo: root, gitCommonDir }, 'HEAD^{commit}');
  if (!head) throw new TroupeError('bad_request', `repository "${repoPath}" has no commits yet; commit something first`);
  return { root, gitCommonDir, headSha: head };
}

/** The private git dir git registered for a worktree at `root` (found from the shared git dir, which we trust). */
async function findAdminDir(gitCommonDir: string, root: string): Promise<string | null> {
  const dir = path.join(gitCommonDir, 'worktrees');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
  for (const name of names) {
    const gitdirFile = await readFile(path.join(dir, name, 'gitdir'), 'utf8').catch(() => null);
    if (gitdirFile !== null && path.resolve(gitdirFile.trim()) === path.join(root, '.git')) return path.join(dir, name);
  }
  return null;
}

function metaPath(baseDir: string, id: string): string {
  return path.join(baseDir, '.meta', `${id}.json`);
}

async function writeMeta(baseDir: string, ws: Workspace): Promise<void> {
  const file = metaPath(baseDir, ws.id);
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomUUID()}.tmp`;
  await writeFile(tmp, JSON.stringify({ ...ws, createdAt: new Date().toISOString() }, null, 2));
  await rename(tmp, file);
}

/** The worktree's `.git` link, rewritten when a command in the worktree deleted or replaced it. */
async function repairGitLink(ws: Workspace): Promise<void> {
  const link = path.join(ws.root, '.git');
  const want = `gitdir: ${ws.gitDir}\n`;
  const st = await lstat(link).catch(() => null);
  if (st?.isFile()) {
    const have = await readFile(link, 'utf8').catch(() => '');
    if (have === want) return;
  }
  if (st) await rm(link, { recursive: true, force: true });
  await writeFile(link, want);
}

const READY_MARKER = 'troupe-ready';

export type CreateWorkspaceOptions = {
  /** Path of the user's repository (any directory inside its working tree). */
  repo: string;
  /** e.g. the session id, or `<session>.<task>` for a task's own worktree. */
  workspaceId: string;
  /** Where worktrees live, e.g. `<project>/.data/workspaces`; created when missing. */
  baseDir: string;
  /** What the branch starts from; default the repository's HEAD. Remembered: a second call reuses the first base. */
  baseRef?: string;
};

/**
 * Creates the worktree `<baseDir>/<workspaceId>` on a new branch `troupe/<workspaceId>`. Idempotent (activities are
 * retried): a second call returns the existing worktree, and a call after a crash half-way finishes the job. If the
 * branch survives from an earlier, removed worktree of the same id, the new worktree continues it.
 */
export async function createWorkspace(opts: CreateWorkspaceOptions): Promise<Workspace> {
  checkWorkspaceId(opts.workspaceId);
  const repo = await openRepository(opts.repo);
  const r = { repo: repo.root, gitCommonDir: repo.gitCommonDir };
  await mkdir(opts.baseDir, { recursive: true });
  const baseDir = await realpath(opts.baseDir);
  await checkBaseDirOutsideCheckout(repo, baseDir);

  const id = opts.workspaceId;
  const root = path.join(baseDir, id);
  const branch = `troupe/${id}`;
  const branchRef = `refs/heads/${branch}`;

  return withLock(`create:${root}`, async () => {
    // 1. The base, recorded first (as a ref in the shared repository), so a retry starts from the same commit even if
    //    the user's HEAD moved in between.
    let baseSha = await revParse(r, `${baseRefOf(id)}^{commit}`);
    if (!baseSha) {
      if (await revParse(r, branchRef)) {
        throw new TroupeError('conflict', `branch "${branch}" already exists in ${repo.root} and was not created by Troupe`);
      }
      const baseRef = opts.baseRef ?? 'HEAD';
      if (baseRef.startsWith('-') || baseRef.includes('\0')) throw new TroupeError('bad_request', `baseRef "${baseRef}" is not a revision`);
      const resolved = await revParse(r, `${baseRef}^{commit}`);
      if (!resolved) throw new TroupeError('bad_request', `baseRef "${baseRef}" is not a commit in ${repo.root}`);
      // Create-only (`''` as the old value): two racing creators agree on one base.
      await repoGit(r, ['update-ref', '-m', 'troupe: workspace base', baseRefOf(id), resolved, ''], { ok: [1, 128] });
      baseSha = await revParse(r, `${baseRefOf(id)}^{commit}`);
      if (!baseSha) throw new TroupeError('internal', `could not record the base of workspace ${id}`);
    }

    // 2. The worktree.
    let gitDir = await findAdminDir(repo.gitCommonDir, root);
    if (gitDir && !(await exists(root))) {
      await repoGit(r, ['worktree', 'prune']);
      gitDir = null;
    }
    if (!gitDir) {
      // A directory git does not know is what a crash before `worktree add` registered it leaves behind: ours to remove.
      if (await exists(root)) await rm(root, { recursive: true, force: true });
      const branchExists = (await revParse(r, branchRef)) !== null;
      const add = branchExists ? ['worktree', 'add', '--quiet', root, branch] : ['worktree', 'add', '--quiet', '-b', branch, root, baseSha];
      try {
        await repoGit(r, add);
      } catch (err) {
        throw new TroupeError('conflict', `could not create the worktree for ${id}: ${(err as Error).message}`);
      }
      gitDir = await findAdminDir(repo.gitCommonDir, root);
      if (!gitDir) throw new TroupeError('internal', `git did not register the worktree ${root}`);
    }
    const head = (await readFile(path.join(gitDir, 'HEAD'), 'utf8')).trim();
    if (head !== `ref: ${branchRef}`) {
      throw new TroupeError('conflict', `worktree ${root} is not on branch ${branch} (HEAD: ${head.slice(0, 100)})`);
    }
    const ws: Workspace = { id, root: await realpath(root), branch, baseSha, repo: repo.root, gitCommonDir: repo.gitCommonDir, gitDir };

    // 3. Ready: the checkout is complete. Without the marker a crash may have cut the checkout short; no step can
    //    have run yet (createWorkspace never returned), so resetting to the branch tip loses nothing.
    if (!(await exists(path.join(gitDir, READY_MARKER)))) {
      await repairGitLink(ws);
      await wtGit(ws, ['reset', '--quiet', '--hard', 'HEAD']);
      await wtGit(ws, ['clean', '-ffdq']);
      await writeFile(path.join(gitDir, READY_MARKER), new Date().toISOString());
    }
    await writeMeta(baseDir, ws);
    return ws;
  });
}

/** Refuses a baseDir inside the user's working tree unless git ignores it (else the user's `git status` changes). */
async function checkBaseDirOutsideCheckout(repo: Repository, baseDir: string): Promise<void> {
  const rel = path.relative(repo.root, baseDir);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return;
  if (rel === '') throw new TroupeError('bad_request', `baseDir ${baseDir} is the repository itself`);
  const probe = path.join(rel, '__troupe_probe__');
  const r = await git([`--git-dir=${repo.gitCommonDir}`, `--work-tree=${repo.root}`, 'check-ignore', '-q', '--', probe], { cwd: repo.root, ok: [1] });
  if (r.code !== 0) {
    throw new TroupeError('bad_request', `baseDir ${baseDir} is inside the repository ${repo.root} and not ignored by git; put it elsewhere or ignore it`);
  }
}

/** The workspace `createWorkspace` made in `baseDir`, or null (never created, or removed). */
export async function openWorkspace(baseDir: string, workspaceId: string): Promise<Workspace | null> {
  checkWorkspaceId(workspaceId);
  const realBase = await realpath(baseDir).catch(() => null);
  if (!realBase) return null;
  const raw = await readFile(metaPath(realBase, workspaceId), 'utf8').catch(() => null);
  if (raw === null) return null;
  const meta = JSON.parse(raw) as Workspace & { createdAt?: string };
  const { createdAt: _createdAt, ...ws } = meta;
  if (!(await exists(ws.root)) || !(await exists(ws.gitDir))) return null;
  return ws;
}

/**
 * The workspace whose worktree is `root` in the repository `gitCommonDir` — what a tool has in its context. Everything
 * is read from the shared git dir (outside the worktree, so nothing a command in the worktree could have forged).
 */
export async function attachWorkspace(opts: { root: string; gitCommonDir: string }): Promise<Workspace> {
  const root = await realpath(opts.root);
  const gitCommonDir = await realpath(opts.gitCommonDir);
  const gitDir = await findAdminDir(gitCommonDir, root);
  if (!gitDir) throw new TroupeError('internal', `${root} is not a worktree of ${gitCommonDir}`);
  const head = (await readFile(path.join(gitDir, 'HEAD'), 'utf8')).trim();
  const m = /^ref: refs\/heads\/troupe\/(.+)$/.exec(head);
  if (!m?.[1]) throw new TroupeError('internal', `worktree ${root} is not on a troupe/ branch`);
  const id = m[1];
  const list = await git([`--git-dir=${gitCommonDir}`, 'worktree', 'list', '--porcelain'], { cwd: gitCommonDir });
  const mainRoot = /^worktree (.+)$/m.exec(list.stdout)?.[1] ?? path.dirname(gitCommonDir);
  const repo = { repo: mainRoot, gitCommonDir };
  const baseSha = await revParse(repo, `${baseRefOf(id)}^{commit}`);
  if (!baseSha) throw new TroupeError('internal', `workspace ${id} has no recorded base`);
  return { id, root, branch: `troupe/${id}`, baseSha, repo: mainRoot, gitCommonDir, gitDir };
}

/**
 * Removes the worktree (files included, `--force`) and prunes git's record of it. The branch, with its snapshots,
 * is kept unless `deleteBranch` (which also drops the base ref and the refs of abandoned snapshots). Idempotent.
 */
export async function removeWorkspace(ws: Workspace, opts: { deleteBranch?: boolean } = {}): Promise<void> {
  await withLock(ws.root, async () => {
    const registered = await findAdminDir(ws.gitCommonDir, ws.root);
    if (registered && (await exists(ws.root))) {
      const r = await repoGit(ws, ['worktree', 'remove', '--force', '--force', ws.root], { ok: [128] });
      // e.g. a worktree with submodules: it is ours (git registered it at this path), remove it by hand.
      if (r.code !== 0) await rm(ws.root, { recursive: true, force: true });
    }
    await repoGit(ws, ['worktree', 'prune']);
    const baseDir = path.dirname(ws.root);
    await unlink(metaPath(baseDir, ws.id)).catch(() => undefined);
    if (opts.deleteBranch) {
      const refs = await repoGit(ws, ['for-each-ref', '--format=%(refname)', `refs/heads/${ws.branch}`, baseRefOf(ws.id), abandonedRefPrefix(ws.id)]);
      for (const ref of refs.stdout.split('\n').filter(Boolean)) await repoGit(ws, ['update-ref', '-d', ref]);
    }
  });
}

export type SweepOptions = {
  /** How long a finished session's worktrees are kept. */
  retentionMs: number;
  /**
   * When the session owning this workspace ended, or null/undefined while it is still going (or unknown: kept). The
   * caller maps `<session>.<task>` ids to their session.
   */
  endedAt(workspaceId: string): Date | null | undefined | Promise<Date | null | undefined>;
  now?: Date;
  deleteBranch?: boolean;
};

/**
 * Removes the worktrees in `baseDir` whose session ended at least `retentionMs` ago. One that cannot be removed is
 * reported in `failed` and the sweep goes on; when its repository is gone, its directory is simply deleted.
 */
export async function sweepWorkspaces(baseDir: string, opts: SweepOptions): Promise<{ removed: string[]; failed: { id: string; error: string }[] }> {
  const removed: string[] = [];
  const failed: { id: string; error: string }[] = [];
  const realBase = await realpath(baseDir).catch(() => null);
  if (!realBase) return { removed, failed };
  const files = await readdir(path.join(realBase, '.meta')).catch(() => [] as string[]);
  const now = (opts.now ?? new Date()).getTime();
  for (const file of files.filter((f) => f.endsWith('.json')).sort()) {
    const id = file.slice(0, -'.json'.length);
    if (!WORKSPACE_ID.test(id)) continue;
    const ended = await opts.endedAt(id);
    if (!ended || now - ended.getTime() < opts.retentionMs) continue;
    const raw = await readFile(path.join(realBase, '.meta', file), 'utf8').catch(() => null);
    if (raw === null) continue;
    try {
      const ws = JSON.parse(raw) as Workspace;
      if (ws.id !== id || path.dirname(ws.root) !== realBase) throw new Error(`metadata of ${id} does not describe ${path.join(realBase, id)}`);
      if (await exists(ws.gitCommonDir)) {
        await removeWorkspace(ws, { deleteBranch: opts.deleteBranch ?? false });
      } else {
        await rm(ws.root, { recursive: true, force: true });
        await unlink(metaPath(realBase, id)).catch(() => undefined);
      }
      removed.push(id);
    } catch (err) {
      failed.push({ id, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return { removed, failed };
}

// ---------------------------------------------------------------------------------------------------------------
// snapshots, steps, rollback

function commitMessage(stepKey: string, message: string | undefined): string {
  const body = (message ?? `step ${stepKey}`)
    .split('\n')
    .filter((line) => !line.toLowerCase().startsWith(`${STEP_TRAILER.toLowerCase()}:`))
    .join('\n')
    .trim()
    .slice(0, 4000);
  return `troupe: ${body || `step ${stepKey}`}\n\n${STEP_TRAILER}: ${stepKey}\n`;
}

function stepKeyOf(messageBody: string): string | null {
  const lines = messageBody.trimEnd().split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = new RegExp(`^${STEP_TRAILER}: (.+)$`).exec(lines[i] ?? '');
    if (m?.[1]) return m[1];
  }
  return null;
}

async function headStepKey(ws: Workspace): Promise<{ sha: string; stepKey: string | null }> {
  const r = await repoGit(ws, ['log', '-1', '--format=%H%x00%B', `refs/heads/${ws.branch}`, '--']);
  const [sha = '', body = ''] = r.stdout.split('\0');
  return { sha: sha.trim(), stepKey: stepKeyOf(body) };
}

/**
 * Commits every change in the worktree (`git add -A`: tracked, deleted and untracked files; ignored files are not
 * snapshotted) with a `Troupe-Step: <stepKey>` trailer. A clean worktree makes no commit and answers HEAD with
 * `changed: false` — unless HEAD already is this step's snapshot (a retried call after the commit): then HEAD with
 * `changed: true`, so the caller records the artifact either way.
 */
export async function snapshot(ws: Workspace, opts: { stepKey: string; message?: string }): Promise<{ sha: string; changed: boolean }> {
  checkStepKey(opts.stepKey);
  return withLock(ws.root, async () => {
    await repairGitLink(ws);
    await wtGit(ws, ['add', '--all', '--', '.']);
    const dirty = (await wtGit(ws, ['diff', '--cached', '--quiet', '--no-ext-diff', 'HEAD', '--'], { ok: [1] })).code === 1;
    if (!dirty) {
      const head = await headStepKey(ws);
      return { sha: head.sha, changed: head.stepKey === opts.stepKey };
    }
    await wtGit(ws, ['commit', '--quiet', '--no-verify', '--no-gpg-sign', '--cleanup=verbatim', '-m', commitMessage(opts.stepKey, opts.message)]);
    const sha = (await wtGit(ws, ['rev-parse', 'HEAD'])).stdout.trim();
    return { sha, changed: true };
  });
}

/** The sha of HEAD when HEAD is the snapshot of `stepKey` (the step already ran and was committed), else null. */
export async function stepCommit(ws: Workspace, stepKey: string): Promise<string | null> {
  checkStepKey(stepKey);
  const head = await headStepKey(ws);
  return head.stepKey === stepKey ? head.sha : null;
}

/**
 * Resets the worktree to `sha` (`git reset --hard` + `git clean -ffd`): tracked and untracked files are as they were
 * in that snapshot; ignored files stay (node_modules survives a rollback). `sha` must be on the branch, between its
 * base and its tip. The branch moves back too; the snapshots after `sha` stay reachable under
 * `refs/troupe/abandoned/<id>/<sha>` until the branch is deleted.
 */
export async function restore(ws: Workspace, sha: string): Promise<{ sha: string }> {
  checkSha(sha, 'snapshot');
  return withLock(ws.root, async () => {
    const full = await revParse(ws, `${sha}^{commit}`);
    if (!full) throw new TroupeError('bad_request', `snapshot ${sha} is not a commit in ${ws.repo}`);
    const tip = await revParse(ws, `refs/heads/${ws.branch}`);
    if (!tip) throw new TroupeError('not_found', `branch ${ws.branch} does not exist`);
    if (!(await isAncestor(ws, full, tip)) || !(await isAncestor(ws, ws.baseSha, full))) {
      throw new TroupeError('bad_request', `snapshot ${sha} is not on branch ${ws.branch} (between its base ${ws.baseSha.slice(0, 12)} and its tip)`);
    }
    if (tip !== full) await repoGit(ws, ['update-ref', '-m', 'troupe: rollback', `${abandonedRefPrefix(ws.id)}${tip}`, tip]);
    await repairGitLink(ws);
    await wtGit(ws, ['reset', '--quiet', '--hard', full]);
    await wtGit(ws, ['clean', '-ffdq']);
    return { sha: full };
  });
}

/** Snapshots on the branch since its base, oldest first. */
export async function listSnapshots(ws: Workspace): Promise<Snapshot[]> {
  const r = await repoGit(ws, ['log', '--reverse', '--format=%H%x1f%cI%x1f%s%x1f%B%x1e', `${ws.baseSha}..refs/heads/${ws.branch}`, '--']);
  return r.stdout
    .split('\x1e')
    .map((rec) => rec.replace(/^\n/, ''))
    .filter((rec) => rec.trim() !== '')
    .map((rec) => {
      const [sha = '', committedAt = '', subject = '', body = ''] = rec.split('\x1f');
      return { sha, committedAt, subject, stepKey: stepKeyOf(body) };
    });
}

/**
 * Step bracketing for a tool call that mutates the workspace. Call before running the step:
 * - HEAD already is this step's snapshot → `{ alreadyDone: true, sha }`: do not run it again.
 * - a retry (`retry: true`, e.g. the activity's attempt > 1: the worker may have died mid-command) → the worktree is
 *   restored to HEAD, the pre-step snapshot, discarding whatever the interrupted attempt did.
 * - a first attempt → stray uncommitted changes (none, when every mutating step is bracketed) are snapshotted as
 *   `<stepKey>:pre`, so HEAD is the pre-step state.
 * After the step, `endStep` snapshots it. A crash anywhere leaves the step run once (HEAD is its snapshot) or not at
 * all (the next attempt starts from HEAD).
 */
export async function beginStep(
  ws: Workspace,
  opts: { stepKey: string; retry: boolean },
): Promise<{ alreadyDone: true; sha: string } | { alreadyDone: false; preSha: string }> {
  const done = await stepCommit(ws, opts.stepKey);
  if (done) return { alreadyDone: true, sha: done };
  if (opts.retry) {
    await removeStaleLocks(ws);
    const head = await headStepKey(ws);
    await restore(ws, head.sha);
    return { alreadyDone: false, preSha: head.sha };
  }
  const pre = await snapshot(ws, { stepKey: `${opts.stepKey}:pre`, message: `before step ${opts.stepKey}` });
  return { alreadyDone: false, preSha: pre.sha };
}

/** Snapshots a finished step (see `beginStep`). */
export function endStep(ws: Workspace, opts: { stepKey: string; message?: string }): Promise<{ sha: string; changed: boolean }> {
  return snapshot(ws, opts);
}

/** Lock files a git process killed mid-write leaves behind; only called on a retry, when no git of ours is running. */
async function removeStaleLocks(ws: Workspace): Promise<void> {
  await rm(path.join(ws.gitDir, 'index.lock'), { force: true });
  await rm(path.join(ws.gitDir, 'HEAD.lock'), { force: true });
  await rm(path.join(ws.gitCommonDir, 'refs', 'heads', `${ws.branch}.lock`), { force: true });
}

// ---------------------------------------------------------------------------------------------------------------
// looking at changes

/**
 * The worktree as a tree object, untracked files included (ignored ones not), built in a throwaway copy of the index:
 * the worktree's real index, HEAD and files are not touched.
 */
async function worktreeTree(ws: Workspace): Promise<string> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'troupe-index-'));
  try {
    const index = path.join(tmp, 'index');
    const real = path.join(ws.gitDir, 'index');
    const copied = await copyFile(real, index).then(
      () => true,
      (err: unknown) => {
        if (!isErrno(err, 'ENOENT')) throw err;
        return false;
      },
    );
    // Keep the index's own mtime: git trusts cached file stats only for files older than the index ("racy git"), so
    // a copy stamped "now" would hide a same-size edit made in the same second as the last snapshot.
    if (copied) {
      const { atime, mtime } = await stat(real);
      await utimes(index, atime, mtime);
    }
    const env = { GIT_INDEX_FILE: index };
    await wtGit(ws, ['add', '--all', '--', '.'], { env });
    return (await wtGit(ws, ['write-tree'], { env })).stdout.trim();
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export type DiffOptions = {
  /** Compare against this commit; default the workspace's base (everything the session changed). */
  from?: string;
  nameStatus?: boolean;
  /** Cap on the output; `truncated` says when it was hit. Default 4 MiB. */
  maxBytes?: number;
};

/**
 * `git diff` from `from` (default: the base) to the worktree as it is now, untracked files included as added files
 * (through a temporary index; see worktreeTree). No external diff tools, no textconv filters.
 */
export async function diff(ws: Workspace, opts: DiffOptions = {}): Promise<{ text: string; truncated: boolean }> {
  const from = opts.from ?? ws.baseSha;
  checkSha(from, 'from');
  if (!(await revParse(ws, `${from}^{commit}`))) throw new TroupeError('bad_request', `from: ${from} is not a commit`);
  const tree = await withLock(ws.root, () => worktreeTree(ws));
  const mode = opts.nameStatus ? ['--name-status'] : ['--patch', '--stat'];
  const r = await repoGit(ws, ['diff', '--no-color', '--no-ext-diff', '--no-textconv', '-M', ...mode, from, tree, '--'], {
    maxOutput: opts.maxBytes ?? 4 * 1024 * 1024,
  });
  return { text: r.stdout, truncated: r.truncated };
}

/** `git status --porcelain=v1 --untracked-files=all`: what changed since the last snapshot (HEAD). */
export async function status(ws: Workspace): Promise<string> {
  const r = await wtGit(ws, ['status', '--porcelain=v1', '--untracked-files=all'], { env: { GIT_OPTIONAL_LOCKS: '0' } });
  return r.stdout;
}

export type GrepOptions = {
  pattern: string;
  /** Worktree-relative path (already checked, e.g. by resolveInside) to search under; default everything. */
  path?: string;
  /** Extended regular expression (`-E`) instead of a fixed string (`-F`). */
  regex?: boolean;
  ignoreCase?: boolean;
  maxBytes?: number;
  signal?: AbortSignal;
};

/**
 * `git grep -n -I --untracked` in the worktree: tracked and untracked files (ignored ones and binaries skipped), lines
 * as `path:line:text`. An invalid regular expression is a TroupeError('bad_request') with git's message.
 */
export async function grep(ws: Workspace, opts: GrepOptions): Promise<{ text: string; truncated: boolean; matched: boolean }> {
  const args = ['grep', '-n', '-I', '--untracked', '--no-color', opts.regex ? '-E' : '-F'];
  if (opts.ignoreCase) args.push('-i');
  args.push('-e', opts.pattern, '--', opts.path ? `:(literal)${opts.path}` : '.');
  const r = await wtGit(ws, args, { ok: [1, 128], maxOutput: opts.maxBytes ?? 1024 * 1024, timeoutMs: 60_000, ...(opts.signal ? { signal: opts.signal } : {}) });
  if (r.truncated) return { text: r.stdout, truncated: true, matched: true };
  if (r.code === 128) throw new TroupeError('bad_request', `search failed: ${r.stderr.trim().replace(/^fatal: /, '').slice(0, 500)}`);
  return { text: r.stdout, truncated: false, matched: r.code === 0 };
}
