/**
 * Workspace retention: the git worktree of a session that ended stays for `workspaceRetentionMs`
 * (TROUPE_WORKSPACE_RETENTION_HOURS), so a person can look at it; then a worker's periodic sweep removes it and records
 * `sessions.workspace_removed_at`. The branch `troupe/<id>` and its snapshots stay in the repository for good.
 *
 * Every worker may run the sweep. Each session is handled in its own short transaction holding a transaction-level
 * advisory lock on the session id: a second sweeper skips a session another one is working on, and re-checks
 * `workspace_removed_at` once it holds the lock, so a worktree is removed (and reported) once. The advisory lock does
 * not touch the session row, so trace and blackboard writes are never blocked by a sweep. A sweeper that dies
 * mid-removal leaves the row unmarked (its transaction rolls back): the next sweep finishes the job, since removal is
 * idempotent (a worktree directory already gone counts as removed).
 */
import { lstat, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../lib/db/client';
import type { Logger } from '../lib/logger';
import { removeWorkspace, type Workspace } from '../lib/workspace';

/** How many ended sessions one sweep looks at (the oldest first). */
export const SWEEP_BATCH_SIZE = 100;
export const WORKSPACE_SWEEP_INTERVAL_MS = 10 * 60_000;
/** The first key of the two-key advisory lock a sweeper holds on a session (the second is hashtext(session id)). */
const SWEEP_LOCK_CLASS = 0x7472_7770; // "trwp"
/** Upper bound on one session's removal (git's own commands time out after 2 minutes each). */
const REMOVAL_TIMEOUT_MS = 5 * 60_000;

export type SweepLogger = Pick<Logger, 'info' | 'warn'>;

export type SweepEndedWorkspacesOptions = {
  /** How long a worktree stays after its session ended. */
  retentionMs: number;
  /** "Now" for the retention cutoff (default: the current time). */
  now?: Date;
  logger?: SweepLogger;
  /** Sessions looked at per call, oldest `ended_at` first (default SWEEP_BATCH_SIZE). */
  batchSize?: number;
};

export type SweepResult = {
  /** Sessions whose worktree this call removed (or found already gone), and marked `workspace_removed_at`. */
  removed: string[];
  /** Sessions whose worktree could not be removed; they stay unmarked and are retried by the next sweep. */
  failed: { sessionId: string; error: string }[];
};

type Outcome = 'removed' | 'skipped';

/**
 * Removes the worktrees of sessions that ended more than `retentionMs` before `now` and are not marked removed yet
 * (at most `batchSize` sessions per call), keeping their branches, and sets `workspace_removed_at`. A failure on one
 * session is logged and reported in `failed`; the others still go. Sessions another sweeper is handling right now are
 * skipped (in neither list).
 */
export async function sweepEndedWorkspaces(db: Db, opts: SweepEndedWorkspacesOptions): Promise<SweepResult> {
  const { retentionMs } = opts;
  if (!Number.isFinite(retentionMs) || retentionMs < 0) throw new Error(`retentionMs must be a non-negative number, got ${retentionMs}`);
  const batchSize = opts.batchSize ?? SWEEP_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
  const cutoff = new Date((opts.now ?? new Date()).getTime() - retentionMs);

  const candidates = await db.$queryRaw<{ id: string }[]>`
    SELECT "id" FROM "sessions"
    WHERE "workspace" IS NOT NULL AND "workspace_removed_at" IS NULL AND "ended_at" IS NOT NULL AND "ended_at" < ${cutoff}
    ORDER BY "ended_at" ASC, "id" ASC
    LIMIT ${batchSize}`;

  const result: SweepResult = { removed: [], failed: [] };
  for (const { id: sessionId } of candidates) {
    try {
      const outcome = await db.$transaction(
        async (tx): Promise<Outcome> => {
          const [lock] = await tx.$queryRaw<{ locked: boolean }[]>`
            SELECT pg_try_advisory_xact_lock(${SWEEP_LOCK_CLASS}::int, hashtext(${sessionId}::text)) AS "locked"`;
          if (!lock?.locked) return 'skipped'; // another sweeper is on it
          // Read after the lock: a sweeper that finished this session before we got the lock has committed its mark.
          const [row] = await tx.$queryRaw<{ workspace: unknown }[]>`
            SELECT "workspace" FROM "sessions" WHERE "id" = ${sessionId} AND "workspace_removed_at" IS NULL`;
          if (!row) return 'skipped';
          const ws = parseWorkspace(row.workspace);
          await removeSessionWorktree(ws);
          await tx.$executeRaw`
            UPDATE "sessions" SET "workspace_removed_at" = clock_timestamp() WHERE "id" = ${sessionId} AND "workspace_removed_at" IS NULL`;
          opts.logger?.info({ sessionId, root: ws.root, branch: ws.branch }, 'removed the worktree of an ended session (branch kept)');
          return 'removed';
        },
        { timeout: REMOVAL_TIMEOUT_MS },
      );
      if (outcome === 'removed') result.removed.push(sessionId);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      opts.logger?.warn({ sessionId, err }, 'could not remove the worktree of an ended session; the next sweep retries');
      result.failed.push({ sessionId, error });
    }
  }
  return result;
}

/**
 * Runs `sweepEndedWorkspaces` every `intervalMs` (default 10 minutes) on an unref'd timer, so it never keeps the
 * process alive. Errors are logged, never thrown; a sweep still running when the next tick comes is not doubled.
 * Returns a function that stops it. Every worker may run one (see the module comment).
 */
export function startWorkspaceSweep(db: Db, logger: SweepLogger, opts: { retentionMs: number; intervalMs?: number; batchSize?: number }): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    sweepEndedWorkspaces(db, { retentionMs: opts.retentionMs, logger, ...(opts.batchSize ? { batchSize: opts.batchSize } : {}) })
      .then(({ removed, failed }) => {
        if (removed.length > 0 || failed.length > 0) logger.info({ removed: removed.length, failed: failed.length }, 'swept the worktrees of ended sessions');
      })
      .catch((err: unknown) => logger.warn({ err }, 'sweeping the worktrees of ended sessions failed'))
      .finally(() => {
        running = false;
      });
  }, opts.intervalMs ?? WORKSPACE_SWEEP_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------------------------------------------------------

const WORKSPACE_FIELDS = ['id', 'root', 'branch', 'baseSha', 'repo', 'gitCommonDir', 'gitDir'] as const;

function parseWorkspace(value: unknown): Workspace {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('sessions.workspace is not an object');
  const record = value as Record<string, unknown>;
  for (const field of WORKSPACE_FIELDS) {
    const v = record[field];
    if (typeof v !== 'string' || v === '' || v.includes('\0')) throw new Error(`sessions.workspace.${field} is missing or not a string`);
  }
  const ws = record as unknown as Workspace;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(ws.id) || ws.id.includes('..')) throw new Error('sessions.workspace.id is not a workspace id');
  if (!path.isAbsolute(ws.root) || !path.isAbsolute(ws.gitCommonDir)) throw new Error('sessions.workspace has a relative path');
  return ws;
}

async function lstatOrNull(p: string) {
  return lstat(p).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  });
}

/**
 * Removes the worktree, keeping the branch and its snapshots (lib/workspace.ts removeWorkspace: `git worktree remove
 * --force`, only at a path git registered as a worktree, then `git worktree prune`). A directory already gone is fine.
 * When the repository itself is gone, there is no git to ask: the directory is deleted only if it still looks like a
 * worktree (a `.git` file, not a directory), never anything else.
 */
async function removeSessionWorktree(ws: Workspace): Promise<void> {
  if (await lstatOrNull(ws.gitCommonDir)) {
    await removeWorkspace(ws, { deleteBranch: false });
    return;
  }
  const root = await lstatOrNull(ws.root);
  if (root) {
    const link = await lstatOrNull(path.join(ws.root, '.git'));
    if (!root.isDirectory() || !link?.isFile()) {
      throw new Error(`the repository ${ws.repo} is gone and ${ws.root} does not look like one of its worktrees; left alone`);
    }
    await rm(ws.root, { recursive: true, force: true });
  }
  // The metadata createWorkspace keeps next to the worktrees (lib/workspace.ts metaPath).
  await unlink(path.join(path.dirname(ws.root), '.meta', `${ws.id}.json`)).catch(() => undefined);
}
