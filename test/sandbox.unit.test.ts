import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TroupeError } from '../core/errors';
import { loadConfig } from '../lib/config';
import { buildBwrapArgs, decodeBwrapStatus, DEFAULT_LIMITS, resolveLimits, runCommand, utf8SafeLength } from '../lib/sandbox';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'troupe-sbx-unit-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('TROUPE_SANDBOX', () => {
  it('defaults to auto, accepts the three modes, rejects anything else by name', () => {
    expect(loadConfig({}).sandbox).toBe('auto');
    for (const mode of ['auto', 'bubblewrap', 'unsandboxed'] as const) expect(loadConfig({ TROUPE_SANDBOX: mode }).sandbox).toBe(mode);
    expect(() => loadConfig({ TROUPE_SANDBOX: 'none' })).toThrow(/TROUPE_SANDBOX/);
  });
});

describe('buildBwrapArgs', () => {
  const args = (network: boolean, readOnlyPaths?: string[]) => buildBwrapArgs({ root: '/w/tree', cwd: '/w/tree/sub', network, readOnlyPaths });
  const pairs = (a: string[], flag: string) => a.flatMap((v, i) => (v === flag ? [a[i + 1]] : []));

  it('binds the system read-only, the worktree read-write, and nothing of the host else', () => {
    const a = args(false);
    expect(a).toContain('--unshare-all');
    expect(a).not.toContain('--share-net');
    expect(a).toEqual(expect.arrayContaining(['--die-with-parent', '--new-session', '--cap-drop', 'ALL']));
    expect(pairs(a, '--bind')).toEqual(['/w/tree']);
    expect(pairs(a, '--ro-bind').concat(pairs(a, '--ro-bind-try')).every((p) => /^\/(usr|etc|bin|sbin|lib)/.test(p ?? ''))).toBe(true);
    expect(pairs(a, '--ro-bind-try')).not.toContain('/etc/shadow');
    expect(pairs(a, '--tmpfs')).toEqual(['/tmp']);
    expect(pairs(a, '--chdir')).toEqual(['/w/tree/sub']);
    // Order matters: /tmp before the worktree (which may live under /tmp), the root made read-only after every mount.
    expect(a.indexOf('--tmpfs')).toBeLessThan(a.indexOf('--bind'));
    expect(a.indexOf('--bind')).toBeLessThan(a.indexOf('--remount-ro'));
    expect(a).not.toContain('--clearenv'); // the environment is set by spawn, see lib/sandbox.ts
  });

  it('network and extra read-only paths', () => {
    const a = args(true, ['/w/git-common']);
    expect(a).toContain('--share-net');
    expect(pairs(a, '--ro-bind')).toContain('/w/git-common');
    expect(a.lastIndexOf('--ro-bind')).toBeGreaterThan(a.indexOf('--bind'));
  });
});

describe('helpers', () => {
  it('decodeBwrapStatus: 128+N is signal N', () => {
    expect(decodeBwrapStatus(152, null)).toEqual({ exitCode: null, signal: 'SIGXCPU' });
    expect(decodeBwrapStatus(137, null)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(decodeBwrapStatus(3, null)).toEqual({ exitCode: 3, signal: null });
    expect(decodeBwrapStatus(null, 'SIGKILL')).toEqual({ exitCode: null, signal: 'SIGKILL' });
  });

  it('utf8SafeLength drops a cut-off character only', () => {
    const euro = Buffer.from('a€', 'utf8'); // 61 e2 82 ac
    expect(utf8SafeLength(euro)).toBe(4);
    expect(utf8SafeLength(euro.subarray(0, 3))).toBe(1);
    expect(utf8SafeLength(euro.subarray(0, 2))).toBe(1);
    expect(utf8SafeLength(Buffer.from('abc'))).toBe(3);
    expect(utf8SafeLength(Buffer.from('😀', 'utf8').subarray(0, 3))).toBe(0);
  });

  it('resolveLimits fills defaults and checks bounds', () => {
    expect(resolveLimits()).toEqual(DEFAULT_LIMITS);
    expect(resolveLimits({ cpuSeconds: 5 })).toEqual({ ...DEFAULT_LIMITS, cpuSeconds: 5 });
    expect(() => resolveLimits({ cpuSeconds: 0 })).toThrow(/limits.cpuSeconds/);
    expect(() => resolveLimits({ maxOutputBytes: 1.5 })).toThrow(/limits.maxOutputBytes/);
    expect(() => resolveLimits({ memoryMb: 1 })).toThrow(/limits.memoryMb/);
  });
});

describe('runCommand input checks (no process is started)', () => {
  const sandbox = { mode: 'unavailable' as const, reason: 'test' };
  const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e instanceof TroupeError ? `${e.code}: ${e.message}` : String(e)));

  it('bad input is bad_request; an unavailable sandbox is unavailable', async () => {
    expect(await code(runCommand({ argv: [], root, sandbox }))).toMatch(/^bad_request: argv must be a non-empty array/);
    expect(await code(runCommand({ argv: ['x'], root, cwd: '..', sandbox }))).toMatch(/^bad_request: cwd must stay inside root/);
    expect(await code(runCommand({ argv: [42 as unknown as string], root, sandbox }))).toMatch(/^bad_request: argv\[0\] must be a string/);
    expect(await code(runCommand({ argv: Array(5000).fill('x'), root, sandbox }))).toMatch(/^bad_request: argv has 5000 items/);
    expect(await code(runCommand({ argv: ['x'], root, env: { A: 'b\0' }, sandbox }))).toMatch(/^bad_request: env.A contains a NUL/);
    expect(await code(runCommand({ argv: ['x'], root, readOnlyPaths: ['rel'], sandbox }))).toMatch(/^bad_request: readOnlyPaths/);
    expect(await code(runCommand({ argv: ['x'], root: '/usr/lib', sandbox }))).toMatch(/^bad_request: root may not be a system directory/);
    expect(await code(runCommand({ argv: ['x'], root, sandbox }))).toBe('unavailable: commands are disabled: test');
  });
});
