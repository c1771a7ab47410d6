/**
 * The command sandbox against the real bubblewrap. Nothing is skipped: CI installs bubblewrap, so a host where it does
 * not work fails here, loudly, with the reason.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TroupeError } from '../core/errors';
import { detectSandbox, resolveSandbox, runCommand, type RunCommandOptions, type SandboxStatus } from '../lib/sandbox';

let sandbox: SandboxStatus;
let root: string;
let outside: string;
let homeMarkerFile: string;
const marker = `troupe-marker-${randomBytes(6).toString('hex')}`;

/** Live (non-zombie) processes whose command line contains `needle`, read from /proc like `pgrep -f`. */
async function processesMatching(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      if (!cmdline.includes(needle)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      found.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return found;
}

async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

function run(argv: string[], extra: Partial<RunCommandOptions> = {}) {
  return runCommand({ argv, root, sandbox, ...extra });
}

async function expectBadRequest(p: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TroupeError);
  expect((err as TroupeError).code).toBe('bad_request');
  expect((err as TroupeError).message).toMatch(message);
}

beforeAll(async () => {
  sandbox = await detectSandbox();
  if (sandbox.mode !== 'bubblewrap') {
    throw new Error(`bubblewrap must work on this machine (CI installs the Debian package \`bubblewrap\`): ${JSON.stringify(sandbox)}`);
  }
  root = await mkdtemp(path.join(os.tmpdir(), 'troupe-sbx-root-'));
  await writeFile(path.join(root, 'file.txt'), 'hello from the worktree\n');
  await mkdir(path.join(root, 'sub'));
  outside = await mkdtemp(path.join(os.tmpdir(), 'troupe-sbx-outside-'));
  await writeFile(path.join(outside, 'secret.txt'), `${marker}-outside\n`);
  homeMarkerFile = path.join(os.homedir(), `.${marker}`);
  await writeFile(homeMarkerFile, `${marker}-home\n`);
});

afterAll(async () => {
  await Promise.all([root, outside, homeMarkerFile].filter(Boolean).map((p) => rm(p, { recursive: true, force: true })));
});

describe('detectSandbox / resolveSandbox', () => {
  it('finds a working bubblewrap here', () => {
    expect(sandbox).toEqual({ mode: 'bubblewrap', bwrapPath: expect.stringMatching(/bwrap$/) });
  });

  it('reports a missing or broken bwrap as unavailable, with the reason and the way out', async () => {
    const missing = await detectSandbox({ bwrapPath: '/nonexistent/bwrap' });
    expect(missing.mode).toBe('unavailable');
    if (missing.mode !== 'unavailable') return;
    expect(missing.reason).toContain('/nonexistent/bwrap does not exist');
    expect(missing.reason).toContain('TROUPE_SANDBOX=unsandboxed');
    // A bwrap that exists but does not work (as when user namespaces are disabled) fails the probe.
    const broken = await detectSandbox({ bwrapPath: '/bin/false' });
    expect(broken).toEqual({ mode: 'unavailable', reason: expect.stringContaining('failed (exit 1)') });
    const fallback = await detectSandbox({ bwrapPath: '/bin/false', allowUnsandboxed: true });
    expect(fallback).toEqual({ mode: 'unsandboxed', warning: expect.stringContaining('WITHOUT a sandbox') });
  });

  it('TROUPE_SANDBOX: auto finds bubblewrap, bubblewrap fails loudly when it does not work, unsandboxed warns', async () => {
    expect((await resolveSandbox({ mode: 'auto' })).mode).toBe('bubblewrap');
    expect((await resolveSandbox({ mode: 'bubblewrap' })).mode).toBe('bubblewrap');
    await expect(resolveSandbox({ mode: 'bubblewrap', bwrapPath: '/bin/false' })).rejects.toThrow(/TROUPE_SANDBOX=bubblewrap, but bubblewrap is not available/);
    const warnings: string[] = [];
    const logger = { warn: (_obj: object, msg: string) => void warnings.push(msg) };
    expect(await resolveSandbox({ mode: 'auto', bwrapPath: '/bin/false' }, logger)).toMatchObject({ mode: 'unavailable' });
    expect(warnings.pop()).toMatch(/run_command is disabled/);
    expect(await resolveSandbox({ mode: 'unsandboxed' }, logger)).toMatchObject({ mode: 'unsandboxed' });
    expect(warnings.pop()).toMatch(/WITHOUT a sandbox/);
    expect(await resolveSandbox({ mode: 'off' })).toMatchObject({ mode: 'unavailable' });
  });
});

describe('runCommand under bubblewrap', () => {
  it('runs in the worktree: output, exit code and a nonzero exit', async () => {
    const r = await run(['sh', '-c', 'cat file.txt; ls; pwd; echo oops >&2; exit 3']);
    expect(r).toMatchObject({ exitCode: 3, signal: null, timedOut: false, cancelled: false, sandboxed: true, stderr: 'oops\n' });
    expect(r.stdout).toBe(`hello from the worktree\nfile.txt\nsub\n${root}\n`);
    const ok = await run(['cat', 'file.txt']);
    expect(ok).toMatchObject({ exitCode: 0, stdout: 'hello from the worktree\n', stdoutTruncated: false });
    const sub = await run(['pwd'], { cwd: 'sub' });
    expect(sub.stdout.trim()).toBe(path.join(root, 'sub'));
    const missing = await run(['no-such-program-xyz']);
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr).toContain('no-such-program-xyz');
  });

  it('argv is never a shell string: metacharacters are plain arguments', async () => {
    const r = await run(['echo', '$(touch pwned)', '; rm -rf /', '`id`']);
    expect(r.stdout).toBe('$(touch pwned) ; rm -rf / `id`\n');
    expect(existsSync(path.join(root, 'pwned'))).toBe(false);
  });

  it('writes inside the worktree; /tmp is private; the system and other host paths are read-only or absent', async () => {
    const name = `tmp-${marker}`;
    const r = await run(['sh', '-c', `echo made > made.txt && echo private > /tmp/${name} && cat /tmp/${name}`]);
    expect(r).toMatchObject({ exitCode: 0, stdout: 'private\n' });
    expect(await readFile(path.join(root, 'made.txt'), 'utf8')).toBe('made\n');
    expect(existsSync(path.join('/tmp', name))).toBe(false);
    expect(existsSync(path.join(os.tmpdir(), name))).toBe(false);

    for (const target of ['/usr/troupe-x', '/etc/troupe-x', '/troupe-x', path.join(outside, 'new.txt')]) {
      const w = await run(['sh', '-c', 'echo x > "$1"', 'sh', target]);
      expect(w.exitCode, `writing ${target} must fail`).not.toBe(0);
    }
    // Host paths outside /tmp cannot even be created (the sandbox's root is read-only); under /tmp they land in the
    // private tmpfs and never reach the host.
    const hostDir = path.join(os.homedir(), `${marker}-dir`);
    const mk = await run(['mkdir', '-p', hostDir]);
    expect(mk.exitCode).not.toBe(0);
    expect(existsSync(hostDir)).toBe(false);
    const viaTmp = await run(['sh', '-c', 'mkdir -p "$1" && echo x > "$1/new.txt"', 'sh', outside]);
    expect(viaTmp.exitCode).toBe(0);
    expect(existsSync(path.join(outside, 'new.txt'))).toBe(false);
    expect(existsSync('/usr/troupe-x')).toBe(false);
  });

  it('cannot read outside the worktree: other temp dirs, the home directory, /etc secrets', async () => {
    for (const file of [path.join(outside, 'secret.txt'), homeMarkerFile, '/etc/shadow']) {
      const r = await run(['cat', file]);
      expect(r.exitCode, `reading ${file} must fail`).not.toBe(0);
      expect(r.stdout).not.toContain(marker);
    }
    const ls = await run(['ls', '/']);
    const top = ls.stdout.trim().split('\n');
    for (const hidden of ['home', 'root', 'work', 'var', 'opt', 'run', 'srv', 'mnt', 'sys']) expect(top).not.toContain(hidden);
    expect(top).toEqual(expect.arrayContaining(['usr', 'etc', 'tmp', 'proc', 'dev']));
    // A symlink in the worktree that points out of it leads nowhere inside.
    await symlink(outside, path.join(root, 'escape'));
    try {
      const r = await run(['cat', 'escape/secret.txt']);
      expect(r.exitCode).not.toBe(0);
      expect(r.stdout).not.toContain(marker);
    } finally {
      await rm(path.join(root, 'escape'));
    }
  });

  it('readOnlyPaths are visible but not writable', async () => {
    const r = await run(['sh', '-c', 'cat "$1/secret.txt"; echo x > "$1/w.txt"', 'sh', outside], { readOnlyPaths: [outside] });
    expect(r.stdout).toBe(`${marker}-outside\n`);
    expect(r.stderr).toMatch(/Read-only file system/);
    expect(existsSync(path.join(outside, 'w.txt'))).toBe(false);
  });

  it('the environment is cleared: no host variables, not even through /proc', async () => {
    process.env.SECRET_TOKEN = `${marker}-env`;
    try {
      const r = await run(['sh', '-c', 'env; cat /proc/[0-9]*/environ | tr "\\0" "\\n"'], { env: { FOO: 'bar' } });
      expect(r.exitCode).toBe(0);
      expect(r.stdout).not.toContain(marker);
      expect(r.stdout).not.toContain('SECRET_TOKEN');
      const vars = r.stdout.split('\n');
      expect(vars).toEqual(expect.arrayContaining(['FOO=bar', 'HOME=/tmp', 'LANG=C.UTF-8', 'TERM=dumb', expect.stringMatching(/^PATH=/)]));
    } finally {
      delete process.env.SECRET_TOKEN;
    }
  });

  it('no network unless asked for: a host TCP server on 127.0.0.1 is unreachable, and reachable with network: true', async () => {
    let connections = 0;
    const server = net.createServer((sock) => {
      connections++;
      sock.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = String((server.address() as net.AddressInfo).port);
    const connect = ['bash', '-c', 'exec 3<>"/dev/tcp/127.0.0.1/$1" && echo connected', 'bash', port];
    try {
      const denied = await run(connect);
      expect(denied.exitCode).not.toBe(0);
      expect(denied.stdout).not.toContain('connected');
      expect(connections).toBe(0);
      const allowed = await run(connect, { network: true });
      expect(allowed).toMatchObject({ exitCode: 0, stdout: 'connected\n' });
      expect(await until(async () => connections === 1, 2_000)).toBe(true);
    } finally {
      server.close();
    }
  });

  /** A shell with background children: one in its process group, one detached by setsid with its stdio closed. */
  function spawner(tag: string): string[] {
    return ['sh', '-c', 'sleep "$1" & setsid sleep "$1" </dev/null >/dev/null 2>&1 & echo started; wait', 'sh', tag];
  }

  it('the wall-clock timeout kills the whole sandbox: no background process survives', async () => {
    const tag = `4000.${Date.now() % 100000}1`;
    const started = run(spawner(tag), { limits: { timeoutMs: 1_500 } });
    expect(await until(async () => (await processesMatching(`sleep ${tag}`)).length === 2, 5_000)).toBe(true);
    const r = await started;
    expect(r).toMatchObject({ timedOut: true, cancelled: false, exitCode: null, signal: 'SIGKILL', stdout: 'started\n' });
    expect(r.durationMs).toBeGreaterThanOrEqual(1_400);
    expect(r.durationMs).toBeLessThan(5_000);
    expect(await processesMatching(`sleep ${tag}`)).toEqual([]);
  });

  it('an AbortSignal cancels: the whole sandbox is killed, cancelled: true', async () => {
    const tag = `4000.${Date.now() % 100000}2`;
    const ac = new AbortController();
    const started = run(spawner(tag), { signal: ac.signal });
    expect(await until(async () => (await processesMatching(`sleep ${tag}`)).length === 2, 5_000)).toBe(true);
    ac.abort();
    const r = await started;
    expect(r).toMatchObject({ cancelled: true, timedOut: false, exitCode: null, signal: 'SIGKILL' });
    expect(await processesMatching(`sleep ${tag}`)).toEqual([]);
    // Already aborted: nothing runs.
    const again = await run(['touch', 'never.txt'], { signal: ac.signal });
    expect(again).toMatchObject({ cancelled: true, exitCode: null });
    expect(existsSync(path.join(root, 'never.txt'))).toBe(false);
  });

  it('background processes do not outlive a command that exits normally', async () => {
    const tag = `4000.${Date.now() % 100000}3`;
    const r = await run(['sh', '-c', 'setsid sleep "$1" </dev/null >/dev/null 2>&1 & sleep 0.3; echo bye', 'sh', tag]);
    expect(r).toMatchObject({ exitCode: 0, stdout: 'bye\n', timedOut: false });
    expect(await processesMatching(`sleep ${tag}`)).toEqual([]);
  });

  it('a worker that dies (SIGKILL) takes the sandbox with it', async () => {
    const tag = `4000.${Date.now() % 100000}5`;
    const dir = await mkdtemp(path.join(os.tmpdir(), 'troupe-sbx-worker-'));
    const script = path.join(dir, 'worker.mts');
    const lib = new URL('../lib/sandbox.ts', import.meta.url).href;
    await writeFile(
      script,
      `import { runCommand } from ${JSON.stringify(lib)};\n` +
        `await runCommand(${JSON.stringify({ argv: spawner(tag), root, sandbox })});\n`,
    );
    const worker = spawn(process.execPath, ['--import', 'tsx', script], { cwd: process.cwd(), stdio: 'ignore' });
    try {
      expect(await until(async () => (await processesMatching(`sleep ${tag}`)).length === 2, 10_000)).toBe(true);
      worker.kill('SIGKILL');
      expect(await until(async () => (await processesMatching(`sleep ${tag}`)).length === 0, 3_000)).toBe(true);
    } finally {
      worker.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the CPU limit kills a busy loop long before the wall-clock limit', async () => {
    const r = await run(['bash', '-c', 'while :; do :; done'], { limits: { cpuSeconds: 1, timeoutMs: 30_000 } });
    expect(r.timedOut).toBe(false);
    expect(r.exitCode).toBeNull();
    expect(['SIGXCPU', 'SIGKILL']).toContain(r.signal);
    expect(r.durationMs).toBeLessThan(10_000);
    // No core file lands in the worktree.
    expect((await readdir(root)).filter((f) => f.startsWith('core'))).toEqual([]);
  });

  it('CPU and memory limits are applied as rlimits', async () => {
    const r = await run(['bash', '-c', 'ulimit -St; ulimit -Ht; ulimit -v; ulimit -c'], { limits: { cpuSeconds: 7, memoryMb: 256 } });
    expect(r.stdout).toBe(`7\n8\n${256 * 1024}\n0\n`);
  });

  it('output beyond maxOutputBytes is cut (the head is kept) and marked truncated, per stream', async () => {
    const r = await run(['sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" a; echo small >&2'], { limits: { maxOutputBytes: 1000 } });
    expect(r).toMatchObject({ exitCode: 0, stdoutTruncated: true, stderrTruncated: false, stderr: 'small\n' });
    expect(r.stdout).toBe('a'.repeat(1000));
  });

  it('refuses a cwd outside the root, and bad argv, env and limits, before running anything', async () => {
    await expectBadRequest(run(['pwd'], { cwd: '../' }), /cwd must stay inside root/);
    await expectBadRequest(run(['pwd'], { cwd: outside }), /cwd must stay inside root/);
    await symlink(outside, path.join(root, 'link-out'));
    try {
      await expectBadRequest(run(['pwd'], { cwd: 'link-out' }), /resolves to/);
    } finally {
      await rm(path.join(root, 'link-out'));
    }
    await expectBadRequest(run(['pwd'], { cwd: 'missing' }), /cwd does not exist/);
    await expectBadRequest(run([]), /non-empty array/);
    await expectBadRequest(run(['']), /argv\[0\]/);
    await expectBadRequest(run(['echo', 'a\0b']), /NUL/);
    await expectBadRequest(run(['echo', 'x'.repeat(300_000)]), /bytes/);
    await expectBadRequest(run(['pwd'], { env: { 'BAD-NAME': 'x' } }), /valid variable name/);
    await expectBadRequest(run(['pwd'], { limits: { timeoutMs: 0 } }), /limits.timeoutMs/);
    await expectBadRequest(runCommand({ argv: ['pwd'], root: 'relative/path', sandbox }), /absolute/);
    await expectBadRequest(runCommand({ argv: ['pwd'], root: '/', sandbox }), /system directory/);
  });
});

describe('runCommand without bubblewrap', () => {
  it('unavailable: refuses with a clear message naming the fix', async () => {
    const unavailable = await detectSandbox({ bwrapPath: '/nonexistent/bwrap' });
    const err = await runCommand({ argv: ['true'], root, sandbox: unavailable }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TroupeError);
    expect((err as TroupeError).code).toBe('unavailable');
    expect((err as TroupeError).message).toMatch(
      /^commands are disabled: bubblewrap is not available \(.*\); install bubblewrap .* or set TROUPE_SANDBOX=unsandboxed to run commands without a sandbox$/,
    );
  });

  it('unsandboxed (explicit opt-in): runs without bwrap, says so, keeps the limits and kill semantics', async () => {
    const un: SandboxStatus = { mode: 'unsandboxed', warning: 'test' };
    process.env.SECRET_TOKEN = `${marker}-env`;
    try {
      const r = await runCommand({ argv: ['sh', '-c', 'cat file.txt; cat "$1"; env'], root, sandbox: un, env: { FOO: 'bar' } });
      // No isolation: the host file outside the worktree is readable (that is what "unsandboxed" means).
      expect(r).toMatchObject({ exitCode: 0, sandboxed: false });
      expect(r.stdout).toContain('hello from the worktree');
      expect(r.stdout).not.toContain('SECRET_TOKEN');
      expect(r.stdout).toContain('FOO=bar');
      const direct = await runCommand({ argv: ['cat', path.join(outside, 'secret.txt')], root, sandbox: un });
      expect(direct.stdout).toBe(`${marker}-outside\n`);
    } finally {
      delete process.env.SECRET_TOKEN;
    }
    const tag = `4000.${Date.now() % 100000}4`;
    const started = runCommand({ argv: ['sh', '-c', 'sleep "$1" & sleep "$1" >/dev/null 2>&1 & wait', 'sh', tag], root, sandbox: un, limits: { timeoutMs: 1_500 } });
    expect(await until(async () => (await processesMatching(`sleep ${tag}`)).length === 2, 5_000)).toBe(true);
    const t = await started;
    expect(t).toMatchObject({ timedOut: true, signal: 'SIGKILL', sandboxed: false });
    expect(await processesMatching(`sleep ${tag}`)).toEqual([]);
    const cpu = await runCommand({ argv: ['bash', '-c', 'while :; do :; done'], root, sandbox: un, limits: { cpuSeconds: 1, timeoutMs: 30_000 } });
    expect(cpu).toMatchObject({ timedOut: false, exitCode: null, signal: 'SIGXCPU' });
  });
});
