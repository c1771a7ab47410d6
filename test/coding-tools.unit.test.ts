import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CODING_TOOL_META, CODING_TOOLS, NO_WORKSPACE, resolveToolFacts, type CommandResult, type WorkspaceCommandOptions, type WorkspaceContext } from '../activities/tools/coding';
import type { ToolContext } from '../activities/tools/index';
import { TroupeError } from '../core/errors';
import { normalizeRelPath, resolveInside } from '../lib/paths';
import { detectSandbox, runCommand, type SandboxStatus } from '../lib/sandbox';
import { createWorkspace, type Workspace } from '../lib/workspace';

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'troupe-tools-test-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

function g(cwd: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=User', '-c', 'user.email=user@example.com', ...args], { cwd, encoding: 'utf8' }).trim();
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected a TroupeError').toBeInstanceOf(TroupeError);
  expect((err as TroupeError).code).toBe('bad_request');
  return (err as TroupeError).message;
}

// ---------------------------------------------------------------------------------------------------------------
describe('resolveInside', () => {
  let root: string;
  let outside: string;
  beforeAll(() => {
    const dir = mkdtempSync(path.join(tmpRoot, 'paths-'));
    root = path.join(dir, 'root');
    outside = path.join(dir, 'outside');
    mkdirSync(path.join(root, 'src', 'deep'), { recursive: true });
    mkdirSync(path.join(root, '.git'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(path.join(root, 'src', 'a.ts'), 'a');
    writeFileSync(path.join(root, '.git', 'config'), '[core]');
    writeFileSync(path.join(outside, 'secret'), 'secret');
    symlinkSync(path.join(outside, 'secret'), path.join(root, 'file-link'));
    symlinkSync(outside, path.join(root, 'dir-link'));
    symlinkSync('src', path.join(root, 'src-link'));
    symlinkSync('.git/config', path.join(root, 'git-link'));
    symlinkSync(path.join(outside, 'not-yet'), path.join(root, 'dangling'));
  });

  it('resolves paths inside the root to their real location', async () => {
    const real = realpathSync(root);
    expect(await resolveInside(root, 'src/a.ts', { forWrite: false })).toEqual({ abs: path.join(real, 'src', 'a.ts'), rel: 'src/a.ts' });
    expect(await resolveInside(root, './src//a.ts', { forWrite: true })).toEqual({ abs: path.join(real, 'src', 'a.ts'), rel: 'src/a.ts' });
    expect(await resolveInside(root, '.', { forWrite: false })).toEqual({ abs: real, rel: '' });
    // A symlink that stays inside resolves to its target.
    expect((await resolveInside(root, 'src-link/a.ts', { forWrite: true })).rel).toBe('src/a.ts');
    // New files in new directories: the nearest existing ancestor decides.
    expect(await resolveInside(root, 'src/deep/new/dir/file.ts', { forWrite: true })).toEqual({
      abs: path.join(real, 'src', 'deep', 'new', 'dir', 'file.ts'),
      rel: 'src/deep/new/dir/file.ts',
    });
  });

  it.each([
    ['../x', /contains "\.\."/],
    ['src/../../x', /contains "\.\."/],
    ['/etc/passwd', /is absolute/],
    ['', /is empty/],
    ['a\0b', /NUL/],
    ['.git/config', /inside \.git/],
    ['.GIT/config', /inside \.git/],
    ['sub/.git/hooks/pre-commit', /inside \.git/],
  ])('refuses %j before touching the disk', async (p, why) => {
    for (const forWrite of [false, true]) {
      expect(await refusal(resolveInside(root, p, { forWrite }))).toMatch(why);
    }
    expect(() => normalizeRelPath(p, { forWrite: true })).toThrow(why);
  });

  it('refuses symlink escapes, at the end and in the middle, into .git, and dangling links', async () => {
    for (const forWrite of [false, true]) {
      expect(await refusal(resolveInside(root, 'file-link', { forWrite }))).toMatch(/^path "file-link": resolves .* outside the workspace/);
      expect(await refusal(resolveInside(root, 'dir-link/secret', { forWrite }))).toMatch(/outside the workspace/);
      expect(await refusal(resolveInside(root, 'dir-link/new/file', { forWrite }))).toMatch(/outside the workspace/);
      expect(await refusal(resolveInside(root, 'git-link', { forWrite }))).toMatch(/into \.git/);
    }
    expect(await refusal(resolveInside(root, 'dangling', { forWrite: true }))).toMatch(/dangling symlink/);
  });

  it('refuses writing the root itself', async () => {
    expect(await refusal(resolveInside(root, '.', { forWrite: true }))).toMatch(/workspace root/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('coding tools', () => {
  let ws: Workspace;
  let wc: WorkspaceContext;
  let ranWith: WorkspaceCommandOptions[];
  let n = 0;

  /** A stand-in for lib/sandbox's runner: execFile, argv as given, no shell. */
  const execRunner = (opts: WorkspaceCommandOptions): Promise<CommandResult> => {
    ranWith.push(opts);
    const started = Date.now();
    const [file, ...args] = opts.argv;
    return new Promise((resolve) => {
      execFile(file!, args, { cwd: path.join(opts.root, opts.cwd ?? ''), encoding: 'utf8' }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
        resolve({
          exitCode: code,
          signal: null,
          stdout,
          stderr,
          stdoutTruncated: false,
          stderrTruncated: false,
          timedOut: false,
          cancelled: false,
          durationMs: Date.now() - started,
          sandboxed: false,
        });
      });
    });
  };

  beforeEach(async () => {
    const dir = path.join(tmpRoot, `tools-${++n}`);
    const repo = path.join(dir, 'repo');
    mkdirSync(path.join(repo, 'src'), { recursive: true });
    g(repo, 'init', '-q', '-b', 'main');
    writeFileSync(path.join(repo, 'src', 'app.ts'), 'const greeting = "hello";\nconsole.log(greeting);\nconsole.log(greeting);\n');
    writeFileSync(path.join(repo, 'README.md'), '# app\nuse a.b( carefully\n');
    writeFileSync(path.join(repo, '.gitignore'), 'node_modules/\n');
    g(repo, 'add', '.');
    g(repo, 'commit', '-qm', 'init');
    ws = await createWorkspace({ repo, workspaceId: `s${n}`, baseDir: path.join(dir, 'workspaces') });
    ranWith = [];
    wc = { root: ws.root, gitCommonDir: ws.gitCommonDir, runCommand: execRunner };
  });

  const ctxWith = (workspace: WorkspaceContext | undefined): ToolContext =>
    ({ sessionId: 's', signal: new AbortController().signal, ...(workspace ? { workspace } : {}) }) as unknown as ToolContext;

  /** Validates like runTool does, then runs the tool. */
  async function call(name: string, args: unknown, workspace: WorkspaceContext | null = wc): Promise<string> {
    const tool = CODING_TOOLS.find((t) => t.name === name);
    if (!tool) throw new Error(`no tool ${name}`);
    return tool.run(ctxWith(workspace ?? undefined), tool.input.parse(args));
  }
  const file = (rel: string) => readFileSync(path.join(ws.root, rel), 'utf8');

  it('every tool has strict input and guardrail metadata', () => {
    expect(CODING_TOOLS.map((t) => t.name).sort()).toEqual(Object.keys(CODING_TOOL_META).sort());
    for (const t of CODING_TOOLS) expect(t.input.safeParse({ bogus: 1, path: 'x', pattern: 'x', argv: ['x'] }).success).toBe(false);
    expect(Object.entries(CODING_TOOL_META).filter(([, m]) => m.mutates).map(([k]) => k).sort()).toEqual(['edit_file', 'run_command', 'write_file']);
    expect(CODING_TOOL_META.write_file!.facts({ path: './src//x.ts', content: 'c' })).toEqual({ paths: ['src/x.ts'], content: 'c' });
    expect(CODING_TOOL_META.edit_file!.facts({ path: 'a', old: '1\n2\n3\n', new: '1\n' })).toEqual({ paths: ['a'], content: '1\n', deletedLines: 2 });
    expect(CODING_TOOL_META.run_command!.facts({ argv: ['rm', '-rf', 'x'] })).toEqual({ paths: ['.'], command: ['rm', '-rf', 'x'] });
    expect(CODING_TOOL_META.list_dir!.facts({})).toEqual({ paths: ['.'] });
    expect(CODING_TOOL_META.read_file!.facts({ path: '../etc/passwd' })).toEqual({ paths: ['../etc/passwd'] });
    expect(CODING_TOOL_META.read_file!.facts({ nonsense: true })).toEqual({ paths: [] });
    expect(CODING_TOOL_META.git_diff!.facts({})).toEqual({ paths: [] });
  });

  it('resolveToolFacts resolves symlinks and counts the lines an overwrite deletes', async () => {
    writeFileSync(path.join(ws.root, 'big.txt'), 'line\n'.repeat(300));
    symlinkSync('src', path.join(ws.root, 'alias'));
    expect(await resolveToolFacts(wc, 'write_file', { path: 'alias/app.ts', content: 'x\n' })).toEqual({ paths: ['src/app.ts'], content: 'x\n', deletedLines: 2 });
    expect(await resolveToolFacts(wc, 'write_file', { path: 'big.txt', content: '' })).toMatchObject({ paths: ['big.txt'], deletedLines: 300 });
    expect(await resolveToolFacts(wc, 'write_file', { path: 'new.txt', content: 'a' })).toEqual({ paths: ['new.txt'], content: 'a' });
    expect(await resolveToolFacts(wc, 'edit_file', { path: 'big.txt', old: 'line\nline\n', new: '', replaceAll: true })).toMatchObject({ deletedLines: 300 });
    expect(await resolveToolFacts(wc, 'read_file', { path: '../x' })).toEqual({ paths: ['../x'] });
    expect(await resolveToolFacts(wc, 'list_dir', {})).toEqual({ paths: ['.'] });
    expect(await resolveToolFacts(undefined, 'run_command', { argv: ['ls'], cwd: 'alias' })).toEqual({ paths: ['alias'], command: ['ls'] });
    expect(await resolveToolFacts(wc, 'blackboard_write', {})).toEqual({ paths: [] });
  });

  it('without a workspace every tool says the session has no repository', async () => {
    for (const t of CODING_TOOLS) {
      const args = { read_file: { path: 'a' }, write_file: { path: 'a', content: '' }, edit_file: { path: 'a', old: 'a', new: 'b' }, search: { pattern: 'x' }, run_command: { argv: ['true'] } }[
        t.name
      ];
      expect(await refusal(call(t.name, args ?? {}, null))).toBe(NO_WORKSPACE);
    }
  });

  it('read_file: numbered lines, offset and limit, and clear errors', async () => {
    expect(await call('read_file', { path: 'src/app.ts' })).toBe(
      'src/app.ts: lines 1-3 of 3\n     1\tconst greeting = "hello";\n     2\tconsole.log(greeting);\n     3\tconsole.log(greeting);',
    );
    expect(await call('read_file', { path: 'src/app.ts', offset: 2, limit: 1 })).toBe('src/app.ts: lines 2-2 of 3; more: offset=3\n     2\tconsole.log(greeting);');
    expect(await refusal(call('read_file', { path: 'src/app.ts', offset: 9 }))).toMatch(/past the end/);
    expect(await refusal(call('read_file', { path: 'nope.ts' }))).toBe('path "nope.ts": no such file');
    expect(await refusal(call('read_file', { path: 'src' }))).toMatch(/is a directory; use list_dir/);
    expect(await refusal(call('read_file', { path: '.git' }))).toMatch(/inside \.git/);
    expect(await refusal(call('read_file', { path: '../repo/README.md' }))).toMatch(/contains "\.\."/);
    writeFileSync(path.join(ws.root, 'bin.dat'), Buffer.from([1, 2, 0, 3]));
    expect(await refusal(call('read_file', { path: 'bin.dat' }))).toMatch(/binary file/);
    writeFileSync(path.join(ws.root, 'empty.txt'), '');
    expect(await call('read_file', { path: 'empty.txt' })).toBe('empty.txt: (empty file)');
  });

  it('write_file creates directories inside the root, overwrites, and refuses .git and escapes', async () => {
    expect(await call('write_file', { path: 'lib/new/util.ts', content: 'export {};\n' })).toBe('created lib/new/util.ts (11 bytes, 1 lines)');
    expect(file('lib/new/util.ts')).toBe('export {};\n');
    expect(await call('write_file', { path: 'lib/new/util.ts', content: 'x' })).toMatch(/^overwrote lib\/new\/util.ts/);
    expect(await refusal(call('write_file', { path: '.git/hooks/pre-commit', content: '#!/bin/sh' }))).toMatch(/inside \.git/);
    expect(await refusal(call('write_file', { path: '.git', content: 'gitdir: /tmp/evil' }))).toMatch(/inside \.git/);
    expect(await refusal(call('write_file', { path: '/tmp/x', content: '' }))).toMatch(/is absolute/);
    expect(await refusal(call('write_file', { path: 'src', content: '' }))).toMatch(/is a directory/);
    expect(await refusal(call('write_file', { path: 'README.md/x', content: '' }))).toMatch(/parent is a file/);
    symlinkSync(tmpRoot, path.join(ws.root, 'out'));
    expect(await refusal(call('write_file', { path: 'out/pwned', content: 'x' }))).toMatch(/outside the workspace/);
    expect(existsSync(path.join(tmpRoot, 'pwned'))).toBe(false);
  });

  it('edit_file replaces exact text once, or all with replaceAll, and names what went wrong', async () => {
    expect(await call('edit_file', { path: 'src/app.ts', old: '"hello"', new: '"$& $1 hi"' })).toBe('edited src/app.ts: replaced 1 occurrence');
    expect(file('src/app.ts')).toContain('const greeting = "$& $1 hi";'); // inserted literally
    expect(await refusal(call('edit_file', { path: 'src/app.ts', old: 'console.log(greeting);', new: 'x' }))).toBe(
      'edit_file: old text occurs 2 times in src/app.ts; add surrounding context to make it unique, or set replaceAll',
    );
    expect(await refusal(call('edit_file', { path: 'src/app.ts', old: 'goodbye', new: 'x' }))).toMatch(/old text not found in src\/app.ts/);
    expect(await refusal(call('edit_file', { path: 'src/app.ts', old: 'a', new: 'a' }))).toMatch(/identical/);
    expect(await refusal(call('edit_file', { path: 'missing.ts', old: 'a', new: 'b' }))).toMatch(/no such file; use write_file/);
    expect(await call('edit_file', { path: 'src/app.ts', old: 'console.log(greeting);', new: 'log();', replaceAll: true })).toBe(
      'edited src/app.ts: replaced 2 occurrences',
    );
    expect(file('src/app.ts')).toBe('const greeting = "$& $1 hi";\nlog();\nlog();\n');
  });

  it('list_dir marks directories, skips .git, and refuses files and escapes', async () => {
    mkdirSync(path.join(ws.root, 'node_modules', 'dep'), { recursive: true });
    symlinkSync('src/app.ts', path.join(ws.root, 'entry'));
    expect(await call('list_dir', {})).toBe('./ (5 entries)\n.gitignore\nREADME.md\nentry -> src/app.ts\nnode_modules/\nsrc/');
    expect(await call('list_dir', { path: 'src' })).toBe('src/ (1 entry)\napp.ts');
    expect(await refusal(call('list_dir', { path: 'README.md' }))).toMatch(/is a file/);
    expect(await refusal(call('list_dir', { path: 'nope' }))).toMatch(/no such directory/);
    expect(await refusal(call('list_dir', { path: '..' }))).toMatch(/contains "\.\."/);
  });

  it('search: fixed strings by default, regex on request, untracked files included, ignored ones not', async () => {
    writeFileSync(path.join(ws.root, 'notes.txt'), 'greeting in an untracked file\n');
    mkdirSync(path.join(ws.root, 'node_modules'));
    writeFileSync(path.join(ws.root, 'node_modules', 'dep.js'), 'greeting\n');
    expect((await call('search', { pattern: 'greeting' })).split('\n').sort()).toEqual([
      'notes.txt:1:greeting in an untracked file',
      'src/app.ts:1:const greeting = "hello";',
      'src/app.ts:2:console.log(greeting);',
      'src/app.ts:3:console.log(greeting);',
    ]);
    expect(await call('search', { pattern: 'a.b(' })).toBe('README.md:2:use a.b( carefully'); // literal, not a regex
    expect(await call('search', { pattern: '^const [a-z]+ =', regex: true })).toBe('src/app.ts:1:const greeting = "hello";');
    expect(await call('search', { pattern: 'greeting', path: 'notes.txt' })).toBe('notes.txt:1:greeting in an untracked file');
    expect(await call('search', { pattern: 'GREETING', path: 'src', ignoreCase: true })).toMatch(/^src\/app.ts:1:/);
    expect(await call('search', { pattern: 'nowhere to be found' })).toBe('no matches for text "nowhere to be found"');
    expect(await refusal(call('search', { pattern: 'a(', regex: true }))).toMatch(/^search failed: /);
    expect(await refusal(call('search', { pattern: 'x', path: '.git' }))).toMatch(/inside \.git/);
    expect(await call('search', { pattern: '--output=/tmp/x' })).toBe('no matches for text "--output=/tmp/x"');
  });

  it('git_diff and git_status show what changed since the session started, new files included', async () => {
    expect(await call('git_diff', {})).toBe(`no changes since the session started (base ${ws.baseSha.slice(0, 12)})`);
    await call('write_file', { path: 'src/new.ts', content: 'export const x = 1;\n' });
    await call('edit_file', { path: 'README.md', old: '# app', new: '# the app' });
    const d = await call('git_diff', {});
    expect(d).toContain('diff --git a/src/new.ts b/src/new.ts');
    expect(d).toContain('+export const x = 1;');
    expect(d).toContain('-# app\n+# the app');
    const s = await call('git_status', {});
    expect(s).toBe(
      `branch troupe/${ws.id} (from ${ws.baseSha.slice(0, 12)}, 0 snapshots)\nchanged since the session started:\nM\tREADME.md\nA\tsrc/new.ts\n` +
        'not yet snapshotted (git status --porcelain):\n M README.md\n?? src/new.ts',
    );
  });

  it('run_command passes argv to the injected runner as it is: no shell, no expansion', async () => {
    const out = await call('run_command', { argv: ['echo', '$(touch pwned)', '`touch pwned2`', '*', '$HOME'] });
    expect(out).toMatch(/^\$ echo "\$\(touch pwned\)" "`touch pwned2`" "\*" "\$HOME"\nexit code 0 \(\d+ ms, NOT sandboxed\)\n--- stdout ---\n\$\(touch pwned\) `touch pwned2` \* \$HOME$/);
    expect(existsSync(path.join(ws.root, 'pwned'))).toBe(false);
    expect(existsSync(path.join(ws.root, 'pwned2'))).toBe(false);
    expect(ranWith[0]).toMatchObject({ argv: ['echo', '$(touch pwned)', '`touch pwned2`', '*', '$HOME'], root: ws.root, readOnlyPaths: [ws.gitCommonDir] });
    expect(ranWith[0]!.cwd).toBeUndefined();

    expect(await call('run_command', { argv: ['pwd'], cwd: 'src' })).toContain(`--- stdout ---\n${path.join(ws.root, 'src')}`);
    expect(ranWith[1]!.cwd).toBe('src');
    const failed = await call('run_command', { argv: ['ls', 'no-such-file'] });
    expect(failed).toMatch(/exit code 2 /);
    expect(failed).toContain('--- stderr ---');
    expect(await refusal(call('run_command', { argv: ['pwd'], cwd: '../..' }))).toMatch(/contains "\.\."/);
    expect(await refusal(call('run_command', { argv: ['pwd'], cwd: 'README.md' }))).toMatch(/no such directory/);
    expect(await refusal(call('run_command', { argv: ['true'] }, { root: ws.root, gitCommonDir: ws.gitCommonDir }))).toBe('commands are disabled for this session');
    expect(CODING_TOOLS.find((t) => t.name === 'run_command')!.input.safeParse({ argv: [] }).success).toBe(false);
    expect(CODING_TOOLS.find((t) => t.name === 'run_command')!.input.safeParse({ argv: Array(65).fill('x') }).success).toBe(false);
    expect(CODING_TOOLS.find((t) => t.name === 'run_command')!.input.safeParse({ argv: ['echo x'] }).success).toBe(true); // one argv item, not split
  });

  describe('run_command in the real sandbox (lib/sandbox)', () => {
    let sandbox: SandboxStatus;
    beforeAll(async () => {
      sandbox = await detectSandbox();
    });

    it('runs argv literally, writes inside the worktree, and cannot write the repository git dir', async (t) => {
      if (sandbox.mode !== 'bubblewrap') return t.skip(`bubblewrap unavailable: ${sandbox.mode === 'unavailable' ? sandbox.reason : sandbox.mode}`);
      const real: WorkspaceContext = { ...wc, runCommand: (o) => runCommand({ ...o, sandbox, limits: { timeoutMs: 30_000 } }) };
      const out = await call('run_command', { argv: ['touch', '$(touch pwned)', 'made-here'], cwd: 'src' }, real);
      expect(out).toMatch(/^\$ touch "\$\(touch pwned\)" made-here\nexit code 0 \(\d+ ms\)\n\(no output\)$/);
      expect(existsSync(path.join(ws.root, 'src', '$(touch pwned)'))).toBe(true);
      expect(existsSync(path.join(ws.root, 'src', 'made-here'))).toBe(true);
      expect(existsSync(path.join(ws.root, 'pwned'))).toBe(false);
      const git = await call('run_command', { argv: ['sh', '-c', `echo x > ${ws.gitCommonDir}/pwned`] }, real);
      expect(git).toMatch(/exit code [12] /);
      expect(git).toMatch(/Read-only file system/);
      expect(existsSync(path.join(ws.gitCommonDir, 'pwned'))).toBe(false);
    });

    it('an unavailable sandbox is an answer for the model', async () => {
      const off: WorkspaceContext = { ...wc, runCommand: (o) => runCommand({ ...o, sandbox: { mode: 'unavailable', reason: 'no bwrap here' } }) };
      expect(await refusal(call('run_command', { argv: ['true'] }, off))).toMatch(/commands are disabled: no bwrap here/);
    });
  });
});
