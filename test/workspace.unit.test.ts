import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { TroupeError } from '../core/errors';
import {
  attachWorkspace,
  beginStep,
  createWorkspace,
  diff,
  endStep,
  listSnapshots,
  openRepository,
  openWorkspace,
  removeWorkspace,
  restore,
  snapshot,
  status,
  stepCommit,
  sweepWorkspaces,
  type Workspace,
} from '../lib/workspace';

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'troupe-ws-test-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

/** Plain git for test setup, as the user would run it (their identity, their hooks). */
function g(cwd: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=User', '-c', 'user.email=user@example.com', ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' },
  }).trim();
}

let n = 0;
/** A user repository with two commits, on branch `main`, with a .gitignore for node_modules. */
function makeRepo(): { repo: string; baseDir: string } {
  const dir = path.join(tmpRoot, `case-${++n}`);
  const repo = path.join(dir, 'repo');
  mkdirSync(path.join(repo, 'src'), { recursive: true });
  g(repo, 'init', '-q', '-b', 'main');
  writeFileSync(path.join(repo, 'README.md'), '# demo\n');
  g(repo, 'add', '.');
  g(repo, 'commit', '-qm', 'first');
  writeFileSync(path.join(repo, 'src', 'a.ts'), 'export const a = 1;\n');
  writeFileSync(path.join(repo, '.gitignore'), 'node_modules/\n');
  g(repo, 'add', '.');
  g(repo, 'commit', '-qm', 'second');
  return { repo, baseDir: path.join(dir, 'workspaces') };
}

function userState(repo: string) {
  return {
    head: g(repo, 'rev-parse', 'HEAD'),
    branch: g(repo, 'symbolic-ref', '--short', 'HEAD'),
    status: g(repo, 'status', '--porcelain', '--untracked-files=all'),
    index: createHash('sha256').update(readFileSync(path.join(repo, '.git', 'index'))).digest('hex'),
    readme: readFileSync(path.join(repo, 'README.md'), 'utf8'),
    a: readFileSync(path.join(repo, 'src', 'a.ts'), 'utf8'),
  };
}

async function rejects(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').toBeInstanceOf(TroupeError);
  expect((err as TroupeError).code).toBe(code);
  expect((err as TroupeError).message).toMatch(message);
}

const read = (ws: Workspace, rel: string) => readFileSync(path.join(ws.root, rel), 'utf8');
const write = (ws: Workspace, rel: string, content: string) => {
  mkdirSync(path.dirname(path.join(ws.root, rel)), { recursive: true });
  writeFileSync(path.join(ws.root, rel), content);
};

describe('openRepository', () => {
  it('accepts a repository (or a directory inside one) and answers its realpath, git dir and HEAD', async () => {
    const { repo } = makeRepo();
    const r = await openRepository(path.join(repo, 'src'));
    expect(r.root).toBe(realpathSync(repo));
    expect(r.gitCommonDir).toBe(realpathSync(path.join(repo, '.git')));
    expect(r.headSha).toBe(g(repo, 'rev-parse', 'HEAD'));
  });

  it('refuses what is not a usable repository, with clear errors', async () => {
    const dir = mkdtempSync(path.join(tmpRoot, 'not-repo-'));
    await rejects(openRepository(path.join(dir, 'missing')), 'bad_request', /does not exist/);
    await rejects(openRepository(dir), 'bad_request', /is not a git repository/);
    const empty = path.join(dir, 'empty');
    mkdirSync(empty);
    g(empty, 'init', '-q');
    await rejects(openRepository(empty), 'bad_request', /has no commits yet/);
    const bare = path.join(dir, 'bare.git');
    g(dir, 'init', '-q', '--bare', bare);
    await rejects(openRepository(bare), 'bad_request', /bare repository/);
    writeFileSync(path.join(dir, 'file'), 'x');
    await rejects(openRepository(path.join(dir, 'file')), 'bad_request', /not a directory/);
  });
});

describe('createWorkspace', () => {
  it('creates a worktree on troupe/<id> from HEAD and leaves the user checkout untouched', async () => {
    const { repo, baseDir } = makeRepo();
    // Uncommitted work of the user's own must survive too.
    writeFileSync(path.join(repo, 'README.md'), '# demo\nuser edit\n');
    writeFileSync(path.join(repo, 'notes.txt'), 'mine\n');
    const before = userState(repo);

    const ws = await createWorkspace({ repo, workspaceId: 's1', baseDir });
    expect(ws.root).toBe(path.join(realpathSync(baseDir), 's1'));
    expect(ws.branch).toBe('troupe/s1');
    expect(ws.baseSha).toBe(before.head);
    expect(ws.repo).toBe(realpathSync(repo));
    expect(read(ws, 'README.md')).toBe('# demo\n');
    expect(read(ws, 'src/a.ts')).toBe('export const a = 1;\n');
    expect(g(ws.root, 'symbolic-ref', '--short', 'HEAD')).toBe('troupe/s1');
    expect(g(repo, 'branch', '--list', 'troupe/s1')).toContain('troupe/s1');

    expect(userState(repo)).toEqual(before);
    expect(g(repo, 'worktree', 'list', '--porcelain')).toContain(`worktree ${ws.root}`);
  });

  it('is idempotent: a second call returns the same worktree, with its work and its base', async () => {
    const { repo, baseDir } = makeRepo();
    const ws = await createWorkspace({ repo, workspaceId: 'sess', baseDir });
    write(ws, 'wip.txt', 'in progress\n');
    // The user moves on in the meantime: the workspace keeps its base.
    writeFileSync(path.join(repo, 'later.txt'), 'x');
    g(repo, 'add', '.');
    g(repo, 'commit', '-qm', 'later');
    const again = await createWorkspace({ repo, workspaceId: 'sess', baseDir });
    expect(again).toEqual(ws);
    expect(read(again, 'wip.txt')).toBe('in progress\n');
    expect(existsSync(path.join(again.root, 'later.txt'))).toBe(false);
    expect(await openWorkspace(baseDir, 'sess')).toEqual(ws);
    expect(await openWorkspace(baseDir, 'other')).toBeNull();
  });

  it('starts from baseRef when given, and refuses bad ids, bad refs and foreign branches', async () => {
    const { repo, baseDir } = makeRepo();
    const first = g(repo, 'rev-parse', 'HEAD~1');
    const ws = await createWorkspace({ repo, workspaceId: 'old', baseDir, baseRef: first });
    expect(ws.baseSha).toBe(first);
    expect(existsSync(path.join(ws.root, 'src', 'a.ts'))).toBe(false);
    await rejects(createWorkspace({ repo, workspaceId: '../escape', baseDir }), 'bad_request', /workspace id/);
    await rejects(createWorkspace({ repo, workspaceId: 'x.lock', baseDir }), 'bad_request', /workspace id/);
    await rejects(createWorkspace({ repo, workspaceId: 'r1', baseDir, baseRef: 'no-such-branch' }), 'bad_request', /not a commit/);
    await rejects(createWorkspace({ repo, workspaceId: 'r2', baseDir, baseRef: '--output=/tmp/x' }), 'bad_request', /not a revision/);
    g(repo, 'branch', 'troupe/mine');
    await rejects(createWorkspace({ repo, workspaceId: 'mine', baseDir }), 'conflict', /not created by Troupe/);
  });

  it('refuses a baseDir inside the user checkout unless git ignores it', async () => {
    const { repo } = makeRepo();
    await rejects(createWorkspace({ repo, workspaceId: 's', baseDir: path.join(repo, 'wt') }), 'bad_request', /not ignored/);
    const ws = await createWorkspace({ repo, workspaceId: 's', baseDir: path.join(repo, 'node_modules', 'wt') });
    expect(g(repo, 'status', '--porcelain')).toBe('');
    await removeWorkspace(ws);
  });

  it('finishes the job after a crash half-way (a stray directory, a checkout cut short)', async () => {
    const { repo, baseDir } = makeRepo();
    // Crash before git registered the worktree: a directory git does not know.
    mkdirSync(path.join(baseDir, 'c1'), { recursive: true });
    writeFileSync(path.join(baseDir, 'c1', 'junk'), 'x');
    const ws = await createWorkspace({ repo, workspaceId: 'c1', baseDir });
    expect(existsSync(path.join(ws.root, 'junk'))).toBe(false);
    expect(read(ws, 'README.md')).toBe('# demo\n');

    // Crash during the checkout: registered, files missing, no ready marker.
    const ws2 = await createWorkspace({ repo, workspaceId: 'c2', baseDir });
    rmSync(path.join(ws2.gitDir, 'troupe-ready'));
    rmSync(path.join(ws2.root, 'src'), { recursive: true });
    writeFileSync(path.join(ws2.root, 'half'), 'x');
    await createWorkspace({ repo, workspaceId: 'c2', baseDir });
    expect(read(ws2, 'src/a.ts')).toBe('export const a = 1;\n');
    expect(existsSync(path.join(ws2.root, 'half'))).toBe(false);

    // The worktree directory vanished (deleted by hand): git's stale record is pruned and the worktree re-made.
    rmSync(ws2.root, { recursive: true });
    const ws3 = await createWorkspace({ repo, workspaceId: 'c2', baseDir });
    expect(read(ws3, 'README.md')).toBe('# demo\n');
  });

  it('gives parallel tasks their own worktrees of one repository', async () => {
    const { repo, baseDir } = makeRepo();
    const [a, b] = await Promise.all([
      createWorkspace({ repo, workspaceId: 'sess.t1', baseDir }),
      createWorkspace({ repo, workspaceId: 'sess.t2', baseDir }),
    ]);
    write(a, 'a.txt', 'a');
    write(b, 'b.txt', 'b');
    const [sa, sb] = await Promise.all([snapshot(a, { stepKey: 'k1' }), snapshot(b, { stepKey: 'k1' })]);
    expect(sa.changed && sb.changed).toBe(true);
    expect(g(repo, 'show', '--name-only', '--format=', 'troupe/sess.t1')).toBe('a.txt');
    expect(g(repo, 'show', '--name-only', '--format=', 'troupe/sess.t2')).toBe('b.txt');
  });
});

describe('snapshots', () => {
  let ws: Workspace;
  let repo: string;
  beforeEach(async () => {
    const r = makeRepo();
    repo = r.repo;
    ws = await createWorkspace({ repo: r.repo, workspaceId: 'snap', baseDir: r.baseDir });
  });

  it('commits every change with a Troupe-Step trailer, as Troupe, and nothing when clean', async () => {
    write(ws, 'src/a.ts', 'export const a = 2;\n');
    write(ws, 'src/new.ts', 'new\n');
    rmSync(path.join(ws.root, 'README.md'));
    const s = await snapshot(ws, { stepKey: 'task1.run1:3:toolu_1', message: 'edit a.ts\nTroupe-Step: forged' });
    expect(s.changed).toBe(true);
    expect(s.sha).toBe(g(ws.root, 'rev-parse', 'HEAD'));
    const msg = g(repo, 'log', '-1', '--format=%B', s.sha);
    expect(msg).toBe('troupe: edit a.ts\n\nTroupe-Step: task1.run1:3:toolu_1');
    expect(g(repo, 'log', '-1', '--format=%an <%ae>|%cn <%ce>', s.sha)).toBe('Troupe <troupe@localhost>|Troupe <troupe@localhost>');
    expect(g(repo, 'show', '--name-status', '--format=', s.sha).split('\n').sort()).toEqual(['A\tsrc/new.ts', 'D\tREADME.md', 'M\tsrc/a.ts']);
    expect(g(repo, 'rev-parse', 'HEAD')).toBe(ws.baseSha); // the user's HEAD did not move

    const clean = await snapshot(ws, { stepKey: 'next' });
    expect(clean).toEqual({ sha: s.sha, changed: false });
    // The same step again after its commit (a retried call): HEAD, reported as changed so it is recorded.
    expect(await snapshot(ws, { stepKey: 'task1.run1:3:toolu_1' })).toEqual({ sha: s.sha, changed: true });
  });

  it('concurrent calls on one workspace are serialised in the process (no index.lock clashes)', async () => {
    write(ws, 'a', '1');
    const results = await Promise.all([snapshot(ws, { stepKey: 'p1' }), snapshot(ws, { stepKey: 'p2' }), diff(ws), status(ws)]);
    expect(results[0].changed).toBe(true);
    expect(results[1]).toEqual({ sha: results[0].sha, changed: false });
  });

  it('ignored files are not snapshotted', async () => {
    write(ws, 'node_modules/pkg/index.js', 'x');
    expect((await snapshot(ws, { stepKey: 'k' })).changed).toBe(false);
  });

  it('stepCommit says whether HEAD is the snapshot of a step', async () => {
    expect(await stepCommit(ws, 'k1')).toBeNull();
    write(ws, 'f', '1');
    const s1 = await snapshot(ws, { stepKey: 'k1' });
    expect(await stepCommit(ws, 'k1')).toBe(s1.sha);
    expect(await stepCommit(ws, 'k2')).toBeNull();
    write(ws, 'f', '2');
    await snapshot(ws, { stepKey: 'k2' });
    expect(await stepCommit(ws, 'k1')).toBeNull();
    await rejects(stepCommit(ws, 'two\nlines'), 'bad_request', /step key/);
  });

  it('listSnapshots lists the commits since the base with their step keys', async () => {
    expect(await listSnapshots(ws)).toEqual([]);
    write(ws, 'f', '1');
    const s1 = await snapshot(ws, { stepKey: 'k1' });
    write(ws, 'f', '2');
    const s2 = await snapshot(ws, { stepKey: 'k2', message: 'second' });
    const list = await listSnapshots(ws);
    expect(list.map((s) => [s.sha, s.stepKey, s.subject])).toEqual([
      [s1.sha, 'k1', 'troupe: step k1'],
      [s2.sha, 'k2', 'troupe: second'],
    ]);
    expect(Date.parse(list[0]!.committedAt)).not.toBeNaN();
  });

  it('restore rolls tracked and untracked files back to an earlier snapshot, keeping ignored files', async () => {
    write(ws, 'src/a.ts', 'v1\n');
    write(ws, 'kept.txt', 'kept\n');
    const s1 = await snapshot(ws, { stepKey: 'k1' });
    write(ws, 'src/a.ts', 'v2\n');
    rmSync(path.join(ws.root, 'kept.txt'));
    write(ws, 'later/new.txt', 'later\n');
    const s2 = await snapshot(ws, { stepKey: 'k2' });
    write(ws, 'untracked-now.txt', 'x');
    write(ws, 'src/a.ts', 'v3 uncommitted\n');
    write(ws, 'node_modules/dep.js', 'dep');

    expect(await restore(ws, s1.sha.slice(0, 12))).toEqual({ sha: s1.sha });
    expect(read(ws, 'src/a.ts')).toBe('v1\n');
    expect(read(ws, 'kept.txt')).toBe('kept\n');
    expect(existsSync(path.join(ws.root, 'later'))).toBe(false);
    expect(existsSync(path.join(ws.root, 'untracked-now.txt'))).toBe(false);
    expect(read(ws, 'node_modules/dep.js')).toBe('dep');
    expect(await status(ws)).toBe('');
    expect(g(repo, 'rev-parse', 'troupe/snap')).toBe(s1.sha);
    // The abandoned snapshot stays reachable.
    expect(g(repo, 'rev-parse', `refs/troupe/abandoned/snap/${s2.sha}`)).toBe(s2.sha);
    // Back to the very start.
    await restore(ws, ws.baseSha);
    expect(read(ws, 'src/a.ts')).toBe('export const a = 1;\n');
    expect(await listSnapshots(ws)).toEqual([]);
  });

  it('restore refuses commits that are not snapshots of this workspace', async () => {
    write(ws, 'f', '1');
    await snapshot(ws, { stepKey: 'k1' });
    writeFileSync(path.join(repo, 'user.txt'), 'u');
    g(repo, 'add', '.');
    g(repo, 'commit', '-qm', 'user work');
    await rejects(restore(ws, g(repo, 'rev-parse', 'HEAD')), 'bad_request', /not on branch troupe\/snap/);
    await rejects(restore(ws, g(repo, 'rev-parse', 'HEAD~2')), 'bad_request', /not on branch/); // before the base
    await rejects(restore(ws, 'deadbeefdeadbeef'), 'bad_request', /not a commit/);
    await rejects(restore(ws, '--output=/tmp/pwned'), 'bad_request', /not a commit sha/);
    await rejects(restore(ws, 'HEAD~1'), 'bad_request', /not a commit sha/);
  });

  it('diff and status show new, changed and deleted files without touching the index', async () => {
    write(ws, 'src/a.ts', 'export const a = 2;\n');
    write(ws, 'fresh.txt', 'brand new\n');
    rmSync(path.join(ws.root, 'README.md'));
    const st = await status(ws);
    expect(st.split('\n').filter(Boolean).sort()).toEqual([' D README.md', ' M src/a.ts', '?? fresh.txt']);
    const d = await diff(ws);
    expect(d.truncated).toBe(false);
    expect(d.text).toContain('diff --git a/fresh.txt b/fresh.txt');
    expect(d.text).toContain('new file mode');
    expect(d.text).toContain('+brand new');
    expect(d.text).toContain('-export const a = 1;');
    expect(d.text).toContain('deleted file mode');
    expect(await status(ws)).toBe(st); // still untracked: the diff used a throwaway index
    expect((await diff(ws, { nameStatus: true })).text.split('\n').filter(Boolean).sort()).toEqual(['A\tfresh.txt', 'D\tREADME.md', 'M\tsrc/a.ts']);

    const s1 = await snapshot(ws, { stepKey: 'k1' });
    write(ws, 'fresh.txt', 'changed\n');
    const since = await diff(ws, { from: s1.sha });
    expect(since.text).toContain('-brand new');
    expect(since.text).not.toContain('src/a.ts');
    // Everything since the base, snapshots included.
    expect((await diff(ws)).text).toContain('src/a.ts');
    await rejects(diff(ws, { from: 'nothex' }), 'bad_request', /not a commit sha/);
  });

  it('survives a worktree whose .git link was deleted or forged', async () => {
    write(ws, '.git', `gitdir: ${path.join(tmpRoot, 'evil')}\n`);
    write(ws, 'f', '1');
    const s = await snapshot(ws, { stepKey: 'k' });
    expect(s.changed).toBe(true);
    expect(read(ws, '.git')).toBe(`gitdir: ${ws.gitDir}\n`);
    rmSync(path.join(ws.root, '.git'));
    await restore(ws, ws.baseSha);
    expect(read(ws, '.git')).toBe(`gitdir: ${ws.gitDir}\n`);
    expect(existsSync(path.join(ws.root, 'f'))).toBe(false);
  });
});

describe('git hardening', () => {
  it('never runs the repository hooks', async () => {
    const { repo, baseDir } = makeRepo();
    const marker = path.join(tmpRoot, `hook-ran-${n}`);
    for (const hook of ['pre-commit', 'commit-msg', 'post-commit', 'post-checkout', 'prepare-commit-msg', 'reference-transaction']) {
      const file = path.join(repo, '.git', 'hooks', hook);
      writeFileSync(file, `#!/bin/sh\necho ${hook} >> ${marker}\n`);
      chmodSync(file, 0o755);
    }
    // The hooks work when the user commits…
    writeFileSync(path.join(repo, 'u.txt'), 'u');
    g(repo, 'add', '.');
    g(repo, 'commit', '-qm', 'user');
    expect(readFileSync(marker, 'utf8')).toContain('pre-commit');
    rmSync(marker);
    // Hooks named by the repository's config are ignored too.
    g(repo, 'config', 'core.hooksPath', path.join(repo, '.git', 'hooks'));
    // …and never when Troupe works.
    const ws = await createWorkspace({ repo, workspaceId: 'h', baseDir });
    write(ws, 'f', '1');
    const step = await beginStep(ws, { stepKey: 'k', retry: false });
    expect(step.alreadyDone).toBe(false);
    await endStep(ws, { stepKey: 'k' });
    await restore(ws, ws.baseSha);
    await removeWorkspace(ws, { deleteBranch: true });
    expect(existsSync(marker)).toBe(false);
  });

  it('ignores GIT_* variables of the parent environment', async () => {
    const { repo, baseDir } = makeRepo();
    const saved = { dir: process.env.GIT_DIR, tree: process.env.GIT_WORK_TREE, index: process.env.GIT_INDEX_FILE };
    process.env.GIT_DIR = path.join(tmpRoot, 'nope');
    process.env.GIT_WORK_TREE = tmpRoot;
    process.env.GIT_INDEX_FILE = path.join(tmpRoot, 'nope-index');
    try {
      const ws = await createWorkspace({ repo, workspaceId: 'env', baseDir });
      write(ws, 'f', '1');
      expect((await snapshot(ws, { stepKey: 'k' })).changed).toBe(true);
    } finally {
      for (const [k, v] of [['GIT_DIR', saved.dir], ['GIT_WORK_TREE', saved.tree], ['GIT_INDEX_FILE', saved.index]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});

describe('step atomicity', () => {
  it('a retried step starts from the pre-step snapshot; a committed step is not run again', async () => {
    const { repo, baseDir } = makeRepo();
    const ws = await createWorkspace({ repo, workspaceId: 'atom', baseDir });

    // Attempt 1 starts, changes half of what it meant to, and the worker dies.
    const b1 = await beginStep(ws, { stepKey: 'step-1', retry: false });
    expect(b1).toEqual({ alreadyDone: false, preSha: ws.baseSha });
    write(ws, 'src/a.ts', 'half-written');
    write(ws, 'partial.txt', 'partial');
    writeFileSync(path.join(ws.gitDir, 'index.lock'), ''); // git was killed mid-write

    // Attempt 2: back to the pre-step state, then the step runs once and is committed.
    const b2 = await beginStep(ws, { stepKey: 'step-1', retry: true });
    expect(b2).toEqual({ alreadyDone: false, preSha: ws.baseSha });
    expect(read(ws, 'src/a.ts')).toBe('export const a = 1;\n');
    expect(existsSync(path.join(ws.root, 'partial.txt'))).toBe(false);
    write(ws, 'src/a.ts', 'done\n');
    const end = await endStep(ws, { stepKey: 'step-1' });
    expect(end.changed).toBe(true);

    // Attempt 3 (the worker died after the commit, before reporting): the step is not run again.
    expect(await beginStep(ws, { stepKey: 'step-1', retry: true })).toEqual({ alreadyDone: true, sha: end.sha });
    expect((await listSnapshots(ws)).map((s) => s.stepKey)).toEqual(['step-1']);
  });

  it('stray uncommitted changes before a first attempt become a pre-step snapshot', async () => {
    const { repo, baseDir } = makeRepo();
    const ws = await createWorkspace({ repo, workspaceId: 'stray', baseDir });
    write(ws, 'stray.txt', 'x');
    const b = await beginStep(ws, { stepKey: 's2', retry: false });
    expect(b.alreadyDone).toBe(false);
    expect((await listSnapshots(ws)).map((s) => s.stepKey)).toEqual(['s2:pre']);
  });
});

describe('removal and retention', () => {
  it('removeWorkspace removes the worktree and keeps the branch; a new workspace of that id continues it', async () => {
    const { repo, baseDir } = makeRepo();
    const ws = await createWorkspace({ repo, workspaceId: 'gone', baseDir });
    write(ws, 'f', 'kept in the branch');
    const s = await snapshot(ws, { stepKey: 'k' });
    await removeWorkspace(ws);
    expect(existsSync(ws.root)).toBe(false);
    expect(g(repo, 'worktree', 'list', '--porcelain')).not.toContain(ws.root);
    expect(g(repo, 'rev-parse', 'troupe/gone')).toBe(s.sha);
    expect(await openWorkspace(baseDir, 'gone')).toBeNull();
    await removeWorkspace(ws); // idempotent

    const back = await createWorkspace({ repo, workspaceId: 'gone', baseDir });
    expect(read(back, 'f')).toBe('kept in the branch');
    expect(back.baseSha).toBe(ws.baseSha);
    expect((await listSnapshots(back)).map((x) => x.sha)).toEqual([s.sha]);

    await removeWorkspace(back, { deleteBranch: true });
    expect(g(repo, 'branch', '--list', 'troupe/*')).toBe('');
    expect(g(repo, 'for-each-ref', 'refs/troupe/')).toBe('');
  });

  it('sweepWorkspaces removes the worktrees of sessions that ended longer ago than the retention', async () => {
    const { repo, baseDir } = makeRepo();
    const now = new Date('2030-01-01T00:00:00Z');
    const hour = 3600_000;
    const ended: Record<string, Date | null> = {
      old: new Date(now.getTime() - 48 * hour),
      recent: new Date(now.getTime() - hour),
      running: null,
    };
    for (const id of ['old', 'old.task1', 'recent', 'running']) await createWorkspace({ repo, workspaceId: id, baseDir });
    const removed = await sweepWorkspaces(baseDir, { retentionMs: 24 * hour, now, endedAt: (id) => ended[id.split('.')[0]!] });
    expect(removed).toEqual({ removed: ['old', 'old.task1'], failed: [] });
    expect(existsSync(path.join(baseDir, 'old'))).toBe(false);
    expect(existsSync(path.join(baseDir, 'recent'))).toBe(true);
    expect(existsSync(path.join(baseDir, 'running'))).toBe(true);
    expect(g(repo, 'branch', '--list', 'troupe/old')).toContain('troupe/old'); // branch kept by default
    expect(await sweepWorkspaces(path.join(tmpRoot, 'no-such-dir'), { retentionMs: 0, endedAt: () => now })).toEqual({ removed: [], failed: [] });
    // The repository itself was deleted: the worktree directory still goes.
    rmSync(repo, { recursive: true });
    expect(await sweepWorkspaces(baseDir, { retentionMs: 0, now, endedAt: () => now })).toEqual({ removed: ['recent', 'running'], failed: [] });
    expect(existsSync(path.join(baseDir, 'recent'))).toBe(false);
  });

  it('attachWorkspace rebuilds the workspace from its root and git dir', async () => {
    const { repo, baseDir } = makeRepo();
    const ws = await createWorkspace({ repo, workspaceId: 'att', baseDir });
    expect(await attachWorkspace({ root: ws.root, gitCommonDir: ws.gitCommonDir })).toEqual(ws);
    await rejects(attachWorkspace({ root: repo, gitCommonDir: ws.gitCommonDir }), 'internal', /not a worktree/);
  });
});
