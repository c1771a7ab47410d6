/**
 * Workspace retention against real Postgres and real git: the worktree of a session that ended longer ago than the
 * retention is removed (its branch and snapshots kept) and `workspace_removed_at` recorded; everything else is left
 * alone; a worktree already gone, a repository already gone, a repeated sweep, a failing session and two sweepers at
 * once are all handled.
 */
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPrisma } from '../lib/db/client';
import { createWorkspace, snapshot, type Workspace } from '../lib/workspace';
import { startWorkspaceSweep, sweepEndedWorkspaces, type SweepLogger } from '../service/workspaces';
import { git, makeRepo } from './support/repo';
import { startStack, type Stack } from './support/stack';

const HOUR = 3600_000;
const RETENTION = 24 * HOUR;

let stack: Stack;
let repo: string;
let baseDir: string;
const cleanup: string[] = [];

beforeAll(async () => {
  stack = await startStack({ worker: false });
  repo = makeRepo();
  baseDir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'troupe-retention-')));
  cleanup.push(repo, baseDir);
});
afterAll(async () => {
  await stack?.stop();
  for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
});

/** Unique per run: other test files share the database (their sessions end "now", far inside the retention). */
const run = randomBytes(4).toString('hex');
let counter = 0;

async function session(opts: { endedAgoMs: number | null; repo?: string; workspace?: object }): Promise<{ id: string; ws: Workspace }> {
  const id = `ret-${run}-${++counter}`;
  const repoPath = opts.repo ?? repo;
  const ws = await createWorkspace({ repo: repoPath, workspaceId: id, baseDir });
  await stack.db.session.create({
    data: {
      id,
      goal: 'workspace retention test',
      agentId: 'x',
      agentSnapshot: {},
      status: opts.endedAgoMs === null ? 'running' : 'done',
      repo: repoPath,
      workspace: opts.workspace ?? (ws as object),
      endedAt: opts.endedAgoMs === null ? null : new Date(Date.now() - opts.endedAgoMs),
    },
  });
  return { id, ws };
}

const worktrees = (repoPath: string) => git(repoPath, 'worktree', 'list', '--porcelain');
const removedAt = async (id: string) => (await stack.db.session.findUniqueOrThrow({ where: { id } })).workspaceRemovedAt;
const sweep = (logger?: SweepLogger) => sweepEndedWorkspaces(stack.db, { retentionMs: RETENTION, ...(logger ? { logger } : {}) });
const sorted = (ids: string[]) => [...ids].sort();

describe('sweepEndedWorkspaces', () => {
  it('removes the worktree of a session ended past the retention, keeps its branch and snapshots, and leaves the rest alone', async () => {
    const old = await session({ endedAgoMs: 48 * HOUR });
    writeFileSync(path.join(old.ws.root, 'notes.txt'), 'work the session did\n');
    const snap = await snapshot(old.ws, { stepKey: 'step-1' });
    const recent = await session({ endedAgoMs: HOUR });
    const running = await session({ endedAgoMs: null });
    // Somebody deleted this worktree by hand: git still lists it (prunable) until the sweep prunes it.
    const gone = await session({ endedAgoMs: 30 * HOUR });
    rmSync(gone.ws.root, { recursive: true, force: true });
    expect(worktrees(repo)).toContain(gone.ws.root);

    // `now` sets the cutoff: seen from 30 hours ago, nothing had ended 24 hours before. (Never a `now` in the future
    // here: other test files' sessions, ended moments ago, would be swept.)
    expect(await sweepEndedWorkspaces(stack.db, { retentionMs: RETENTION, now: new Date(Date.now() - 30 * HOUR) })).toEqual({ removed: [], failed: [] });
    expect(existsSync(old.ws.root)).toBe(true);

    const result = await sweep();
    expect(result.failed).toEqual([]);
    expect(sorted(result.removed)).toEqual(sorted([old.id, gone.id]));

    expect(existsSync(old.ws.root)).toBe(false);
    expect(worktrees(repo)).not.toContain(old.ws.root);
    expect(worktrees(repo)).not.toContain(gone.ws.root);
    // The branch and its commits stay.
    expect(git(repo, 'rev-parse', `refs/heads/troupe/${old.id}`)).toBe(snap.sha);
    expect(git(repo, 'show', `${snap.sha}:notes.txt`)).toBe('work the session did');
    expect(git(repo, 'rev-parse', '--verify', `refs/heads/troupe/${gone.id}`)).toMatch(/^[0-9a-f]{40}$/);
    expect(await removedAt(old.id)).toBeInstanceOf(Date);
    expect(await removedAt(gone.id)).toBeInstanceOf(Date);

    for (const kept of [recent, running]) {
      expect(existsSync(path.join(kept.ws.root, 'src/add.js'))).toBe(true);
      expect(worktrees(repo)).toContain(kept.ws.root);
      expect(await removedAt(kept.id)).toBeNull();
    }
    // The user's checkout is untouched.
    expect(git(repo, 'status', '--porcelain')).toBe('');
    expect(git(repo, 'rev-parse', '--abbrev-ref', 'HEAD')).toBe('main');

    // A second sweep has nothing left to do, and does not move the marks.
    const marks = [await removedAt(old.id), await removedAt(gone.id)];
    expect(await sweep()).toEqual({ removed: [], failed: [] });
    expect([await removedAt(old.id), await removedAt(gone.id)]).toEqual(marks);

  });

  it('reports and logs a session it cannot clean up, and still removes the others', async () => {
    const broken = await session({ endedAgoMs: 48 * HOUR });
    // Its recorded repository is not a git repository any more: git refuses, nothing is marked.
    const notARepo = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'troupe-not-a-repo-')));
    cleanup.push(notARepo);
    await stack.db.session.update({ where: { id: broken.id }, data: { workspace: { ...broken.ws, gitCommonDir: notARepo } } });
    const malformed = await session({ endedAgoMs: 47 * HOUR, workspace: { id: 'x' } });
    const fine = await session({ endedAgoMs: 46 * HOUR });

    const logger = { info: vi.fn(), warn: vi.fn() };
    const result = await sweep(logger);
    expect(result.removed).toEqual([fine.id]);
    expect(result.failed.map((f) => f.sessionId)).toEqual([broken.id, malformed.id]);
    expect(result.failed[0]?.error).toMatch(/not a git repository/);
    expect(result.failed[1]?.error).toMatch(/sessions\.workspace\.root/);
    expect(logger.warn).toHaveBeenCalledTimes(2);
    expect(logger.warn.mock.calls.map((c) => (c[0] as { sessionId: string }).sessionId)).toEqual([broken.id, malformed.id]);
    expect(logger.info).toHaveBeenCalledWith(expect.objectContaining({ sessionId: fine.id }), expect.any(String));

    expect(existsSync(fine.ws.root)).toBe(false);
    expect(existsSync(broken.ws.root)).toBe(true); // left for the next sweep
    expect(await removedAt(broken.id)).toBeNull();
    expect(await removedAt(malformed.id)).toBeNull();

    // Retried next time: once the recorded repository is right again, the worktree goes.
    await stack.db.session.update({ where: { id: broken.id }, data: { workspace: broken.ws as object } });
    const retry = await sweep();
    expect(retry.removed).toEqual([broken.id]);
    expect(existsSync(broken.ws.root)).toBe(false);
    // Keep the malformed row out of the later tests' results.
    await stack.db.session.update({ where: { id: malformed.id }, data: { workspaceRemovedAt: new Date() } });
  });

  it('deletes the worktree of a repository that is gone, but nothing that does not look like a worktree', async () => {
    const doomedRepo = makeRepo();
    cleanup.push(doomedRepo);
    const orphan = await session({ endedAgoMs: 48 * HOUR, repo: doomedRepo });
    const notWorktree = await session({ endedAgoMs: 48 * HOUR, repo: doomedRepo });
    rmSync(path.join(notWorktree.ws.root, '.git'));
    rmSync(doomedRepo, { recursive: true, force: true });

    const result = await sweep();
    expect(result.removed).toEqual([orphan.id]);
    expect(result.failed).toEqual([{ sessionId: notWorktree.id, error: expect.stringMatching(/does not look like one of its worktrees/) }]);
    expect(existsSync(orphan.ws.root)).toBe(false);
    expect(existsSync(notWorktree.ws.root)).toBe(true);
    await stack.db.session.update({ where: { id: notWorktree.id }, data: { workspaceRemovedAt: new Date() } });
  });

  it('two sweepers at once remove every worktree exactly once, without failures', async () => {
    const sessions = [];
    for (let i = 0; i < 6; i++) sessions.push(await session({ endedAgoMs: (48 + i) * HOUR }));
    // A second client: a second worker has its own connections.
    const other = createPrisma(stack.config.databaseUrl);
    try {
      const [a, b] = await Promise.all([sweep(), sweepEndedWorkspaces(other, { retentionMs: RETENTION })]);
      expect(a.failed).toEqual([]);
      expect(b.failed).toEqual([]);
      expect(sorted([...a.removed, ...b.removed])).toEqual(sorted(sessions.map((s) => s.id)));
    } finally {
      await other.$disconnect();
    }
    for (const s of sessions) {
      expect(existsSync(s.ws.root)).toBe(false);
      expect(await removedAt(s.id)).toBeInstanceOf(Date);
    }
    expect(await sweep()).toEqual({ removed: [], failed: [] });
  });

  it('only looks at a bounded batch per call, oldest first', async () => {
    const sessions = [];
    for (let i = 0; i < 3; i++) sessions.push(await session({ endedAgoMs: (100 - i) * HOUR }));
    const first = await sweepEndedWorkspaces(stack.db, { retentionMs: RETENTION, batchSize: 2 });
    expect(first).toEqual({ removed: [sessions[0]!.id, sessions[1]!.id], failed: [] });
    const second = await sweepEndedWorkspaces(stack.db, { retentionMs: RETENTION, batchSize: 2 });
    expect(second).toEqual({ removed: [sessions[2]!.id], failed: [] });
  });
});

describe('startWorkspaceSweep', () => {
  it('sweeps periodically until stopped', async () => {
    const s = await session({ endedAgoMs: 48 * HOUR });
    const logger = { info: vi.fn(), warn: vi.fn() };
    const stop = startWorkspaceSweep(stack.db, logger, { retentionMs: RETENTION, intervalMs: 50 });
    try {
      await vi.waitFor(async () => expect(await removedAt(s.id)).toBeInstanceOf(Date), { timeout: 10_000, interval: 50 });
    } finally {
      stop();
    }
    expect(existsSync(s.ws.root)).toBe(false);
    expect(logger.warn).not.toHaveBeenCalled();
    expect(logger.info).toHaveBeenCalledWith({ removed: 1, failed: 0 }, 'swept the worktrees of ended sessions');
  });
});
