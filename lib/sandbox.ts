/**
 * The command sandbox behind `run_command`.
 *
 * A command runs under bubblewrap (`bwrap`): the system directories read-only, the worktree read-write, nothing else of
 * the host's filesystem (no /home, /root, /work, /var, /run, and only an allowlist of /etc), a private /tmp, its own
 * PID, IPC, UTS and network namespaces (network only when asked for), no capabilities, and limits on wall-clock time,
 * CPU time, (optionally) address space, and captured output. On timeout or cancel the whole process group is SIGKILLed,
 * and because the command lives in its own PID namespace, every process it started dies with it.
 *
 * Where bubblewrap does not work, commands are refused with a clear error, unless the operator explicitly chose the
 * unsandboxed mode (`TROUPE_SANDBOX=unsandboxed`): same limits and kill semantics, no isolation. Never silently.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import path from 'node:path';
import { TroupeError } from '../core/errors';

export type SandboxLimits = {
  /** Wall-clock limit; the process group is SIGKILLed when it passes. */
  timeoutMs: number;
  /** RLIMIT_CPU per process (soft; SIGXCPU at the soft limit, SIGKILL one second later). */
  cpuSeconds: number;
  /** Bytes kept of stdout and of stderr, each (the head). */
  maxOutputBytes: number;
  /** RLIMIT_AS (address space) per process, when set. Unset by default: JIT runtimes reserve far more than they use. */
  memoryMb?: number;
};

export const DEFAULT_LIMITS: Readonly<SandboxLimits> = Object.freeze({
  timeoutMs: 120_000,
  cpuSeconds: 60,
  maxOutputBytes: 1024 * 1024,
});

/** `TROUPE_SANDBOX` (lib/config.ts). */
export type SandboxSetting = 'auto' | 'bubblewrap' | 'unsandboxed';
/** What the operator asked for; `off` (programmatic only) disables commands altogether. */
export type SandboxConfig = { mode: SandboxSetting | 'off'; bwrapPath?: string };

/** What the worker found: decided once at start-up (see resolveSandbox) and handed to every runCommand. */
export type SandboxStatus =
  | { mode: 'bubblewrap'; bwrapPath: string }
  | { mode: 'unsandboxed'; warning: string }
  | { mode: 'unavailable'; reason: string };

export type RunCommandOptions = {
  /** Program and arguments. Never joined into a shell string; argv[0] is looked up on the sandbox's PATH. */
  argv: string[];
  /** The worktree: an absolute path to a directory, bound read-write at the same path. */
  root: string;
  /** Working directory, relative to root (default: root). Must stay inside root by real path. */
  cwd?: string;
  /** Added to the minimal environment (PATH, HOME, LANG, TERM, TMPDIR). The host environment is never passed on. */
  env?: Record<string, string>;
  /** Share the host's network namespace (default false: only a private loopback). Not enforceable unsandboxed. */
  network?: boolean;
  limits?: Partial<SandboxLimits>;
  /** Aborting kills the process group; the result says `cancelled: true`. */
  signal?: AbortSignal;
  sandbox: SandboxStatus;
  /** Extra absolute paths bound read-only at the same path (e.g. the git common dir of a worktree). */
  readOnlyPaths?: string[];
};

export type CommandResult = {
  exitCode: number | null;
  /** The signal that ended the command (see `decodeBwrapStatus` for how it is known inside bubblewrap). */
  signal: string | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
  cancelled: boolean;
  durationMs: number;
  sandboxed: boolean;
};

const MAX_ARGV_ITEMS = 4096;
const MAX_ARGV_BYTES = 256 * 1024;
const MAX_ENV_ITEMS = 256;
const MAX_ENV_BYTES = 64 * 1024;
const LIMIT_BOUNDS = {
  timeoutMs: [1, 24 * 3600 * 1000],
  cpuSeconds: [1, 24 * 3600],
  maxOutputBytes: [1, 256 * 1024 * 1024],
  memoryMb: [16, 1024 * 1024],
} as const;
/** How long to wait, after the command's process exits, for its pipes to close and the rest of it to be gone. */
const REAP_GRACE_MS = 2_000;
const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const SANDBOX_SUFFIX = 'install bubblewrap (Debian package `bubblewrap`) or set TROUPE_SANDBOX=unsandboxed to run commands without a sandbox';

/** Top-level system directories bound read-only when present (a merged-/usr symlink is recreated as a symlink). */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/**
 * The parts of /etc a program needs (users and groups for `id`/git, name resolution, TLS trust stores, the dynamic
 * linker's cache, Debian's alternatives symlinks, locale and time zone, shell start-up files). Not /etc as a whole:
 * uid 0 in the sandbox could read /etc/shadow, /etc/ssl/private or credentials in /etc/npmrc and /etc/pip.conf.
 * Missing entries are skipped; ETC_PATTERNS adds versioned directories.
 */
export const ETC_ALLOWLIST: readonly string[] = [
  'alternatives',
  'bash.bashrc',
  'ca-certificates',
  'ca-certificates.conf',
  'crypto-policies',
  'debian_version',
  'fonts',
  'gai.conf',
  'gitconfig',
  'group',
  'host.conf',
  'hosts',
  'inputrc',
  'ld.so.cache',
  'ld.so.conf',
  'ld.so.conf.d',
  'locale.alias',
  'locale.conf',
  'localtime',
  'lsb-release',
  'magic',
  'magic.mime',
  'mime.types',
  'networks',
  'nsswitch.conf',
  'os-release',
  'passwd',
  'perl',
  'pki/ca-trust',
  'pki/tls/certs',
  'pki/tls/cert.pem',
  'pki/tls/openssl.cnf',
  'profile',
  'protocols',
  'python3',
  'resolv.conf',
  'services',
  'sgml',
  'shells',
  'ssl/certs',
  'ssl/openssl.cnf',
  'terminfo',
  'timezone',
  'vim',
  'wgetrc',
  'xml',
];
/** Versioned /etc entries some runtimes need (Debian's python3.N config, the JDK's conf symlinks into /etc). */
const ETC_PATTERNS = [/^python3\.\d+$/, /^java-\d+-openjdk$/];

function etcEntries(): string[] {
  let names: string[] = [];
  try {
    names = readdirSync('/etc');
  } catch {
    // No /etc at all: nothing to bind.
  }
  return [...ETC_ALLOWLIST, ...names.filter((n) => ETC_PATTERNS.some((re) => re.test(n))).sort()];
}
/** Roots that would expose or shadow the system if bound read-write. */
const FORBIDDEN_ROOTS = ['/', '/usr', '/etc', '/bin', '/sbin', '/lib', '/lib64', '/boot', '/dev', '/proc', '/sys', '/run', '/tmp', '/var'];
const FORBIDDEN_ROOT_PARENTS = ['/usr', '/etc', '/proc', '/sys', '/dev', '/boot'];

function badRequest(message: string, details?: unknown): never {
  throw new TroupeError('bad_request', message, details);
}

// ---------------------------------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------------------------------

function validateArgv(argv: unknown): string[] {
  if (!Array.isArray(argv) || argv.length === 0) badRequest('argv must be a non-empty array of strings');
  if (argv.length > MAX_ARGV_ITEMS) badRequest(`argv has ${argv.length} items; at most ${MAX_ARGV_ITEMS} are allowed`);
  let bytes = 0;
  argv.forEach((arg: unknown, i) => {
    if (typeof arg !== 'string') badRequest(`argv[${i}] must be a string`);
    if (arg.includes('\0')) badRequest(`argv[${i}] contains a NUL byte`);
    bytes += Buffer.byteLength(arg) + 1;
  });
  if ((argv[0] as string).trim() === '') badRequest('argv[0] (the program) must be a non-empty string');
  if (bytes > MAX_ARGV_BYTES) badRequest(`argv is ${bytes} bytes; at most ${MAX_ARGV_BYTES} are allowed`);
  return argv as string[];
}

function validateEnv(env: unknown): Record<string, string> {
  if (env === undefined) return {};
  if (typeof env !== 'object' || env === null || Array.isArray(env)) badRequest('env must be an object of strings');
  const entries = Object.entries(env as Record<string, unknown>);
  if (entries.length > MAX_ENV_ITEMS) badRequest(`env has ${entries.length} variables; at most ${MAX_ENV_ITEMS} are allowed`);
  let bytes = 0;
  for (const [key, value] of entries) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) badRequest(`env: ${JSON.stringify(key)} is not a valid variable name`);
    if (typeof value !== 'string') badRequest(`env.${key} must be a string`);
    if (value.includes('\0')) badRequest(`env.${key} contains a NUL byte`);
    bytes += key.length + Buffer.byteLength(value) + 2;
  }
  if (bytes > MAX_ENV_BYTES) badRequest(`env is ${bytes} bytes; at most ${MAX_ENV_BYTES} are allowed`);
  return env as Record<string, string>;
}

/** DEFAULT_LIMITS overridden by `limits`, each checked against its bounds. */
export function resolveLimits(limits: Partial<SandboxLimits> = {}): SandboxLimits {
  const merged: SandboxLimits = { ...DEFAULT_LIMITS, ...limits };
  for (const key of Object.keys(LIMIT_BOUNDS) as (keyof typeof LIMIT_BOUNDS)[]) {
    const value = merged[key];
    if (value === undefined && key === 'memoryMb') continue;
    const [min, max] = LIMIT_BOUNDS[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      badRequest(`limits.${key} must be an integer from ${min} to ${max}`);
    }
  }
  return merged;
}

function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

async function realDirectory(p: string, what: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(p);
  } catch {
    return badRequest(`${what} does not exist: ${p}`);
  }
  if (!(await stat(real)).isDirectory()) badRequest(`${what} is not a directory: ${p}`);
  return real;
}

/** The worktree's real path; refuses anything that would expose or shadow the system if bound read-write. */
async function resolveRoot(root: unknown): Promise<string> {
  if (typeof root !== 'string' || root.includes('\0') || !path.isAbsolute(root)) badRequest('root must be an absolute path');
  const real = await realDirectory(root, 'root');
  if (FORBIDDEN_ROOTS.includes(real) || FORBIDDEN_ROOT_PARENTS.some((p) => isInside(p, real))) {
    badRequest(`root may not be a system directory: ${real}`);
  }
  return real;
}

/** `cwd` (relative to root) resolved by real path; must stay inside root, so a symlink out of it is refused too. */
async function resolveCwd(rootReal: string, cwd: unknown): Promise<string> {
  if (cwd === undefined || cwd === '') return rootReal;
  if (typeof cwd !== 'string' || cwd.includes('\0')) badRequest('cwd must be a path relative to root');
  const lexical = path.resolve(rootReal, cwd);
  if (!isInside(rootReal, lexical)) badRequest(`cwd must stay inside root: ${cwd}`);
  const real = await realDirectory(lexical, 'cwd');
  if (!isInside(rootReal, real)) badRequest(`cwd must stay inside root (it resolves to ${real}): ${cwd}`);
  return real;
}

async function resolveReadOnlyPaths(paths: unknown): Promise<string[]> {
  if (paths === undefined) return [];
  if (!Array.isArray(paths)) badRequest('readOnlyPaths must be an array of absolute paths');
  const out: string[] = [];
  for (const p of paths as unknown[]) {
    if (typeof p !== 'string' || p.includes('\0') || !path.isAbsolute(p)) badRequest('readOnlyPaths must be absolute paths');
    let real: string;
    try {
      real = await realpath(p);
    } catch {
      return badRequest(`readOnlyPaths: ${p} does not exist`);
    }
    if (real === '/') badRequest('readOnlyPaths may not include /');
    out.push(real);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// Host tools
// ---------------------------------------------------------------------------------------------------------------------

function isExecutable(p: string): boolean {
  try {
    accessSync(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** First executable `name` on PATH or in the standard system directories. */
function findProgram(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter((d) => path.isAbsolute(d)), '/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** prlimit (util-linux) applies the CPU, core and memory rlimits; it must be inside a system dir the sandbox sees. */
function findPrlimit(): string | undefined {
  return ['/usr/bin/prlimit', '/bin/prlimit', '/usr/local/bin/prlimit'].find(isExecutable);
}

/** setpriv (util-linux) gives the spawned process a parent-death signal, so a crashed worker leaves no command behind. */
function findSetpriv(): string | undefined {
  return ['/usr/bin/setpriv', '/bin/setpriv'].find(isExecutable);
}

// ---------------------------------------------------------------------------------------------------------------------
// bubblewrap arguments
// ---------------------------------------------------------------------------------------------------------------------

/**
 * The bwrap arguments for one command (everything before `--`). Mount operations apply in order: system dirs and the
 * /etc allowlist read-only, a fresh /tmp, /proc and /dev, then the worktree read-write (after /tmp, so a worktree under
 * /tmp shows through), then the extra read-only paths (after the worktree, so they can protect a part of it), and
 * finally the sandbox's own root directory is made read-only, so nothing can be written outside the worktree and /tmp.
 */
export function buildBwrapArgs(opts: { root: string; cwd: string; network: boolean; readOnlyPaths?: string[] }): string[] {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    let st;
    try {
      st = lstatSync(dir);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir);
    else if (st.isDirectory()) args.push('--ro-bind', dir, dir);
  }
  for (const entry of etcEntries()) {
    const p = path.join('/etc', entry);
    try {
      lstatSync(p);
    } catch {
      continue;
    }
    args.push('--ro-bind-try', p, p);
  }
  args.push('--tmpfs', '/tmp', '--proc', '/proc', '--dev', '/dev');
  args.push('--bind', opts.root, opts.root);
  for (const p of opts.readOnlyPaths ?? []) args.push('--ro-bind', p, p);
  args.push('--remount-ro', '/');
  args.push('--unshare-all');
  if (opts.network) args.push('--share-net');
  args.push('--die-with-parent', '--new-session', '--cap-drop', 'ALL');
  args.push('--chdir', opts.cwd);
  args.push('--json-status-fd', '3');
  return args;
}

/** The prlimit prefix: CPU soft:hard (SIGXCPU, then SIGKILL a second later), no core files, optional address space. */
function prlimitPrefix(prlimit: string, limits: SandboxLimits): string[] {
  return [
    prlimit,
    `--cpu=${limits.cpuSeconds}:${limits.cpuSeconds + 1}`,
    '--core=0',
    ...(limits.memoryMb !== undefined ? [`--as=${limits.memoryMb * 1024 * 1024}`] : []),
    '--',
  ];
}

function signalName(n: number): string | undefined {
  return Object.entries(osConstants.signals).find(([, v]) => v === n)?.[0];
}

/**
 * bubblewrap (like a shell) reports a command killed by signal N as exit status 128+N, so `exit 137` and SIGKILL look
 * the same from outside. We decode 129–192 as the signal (exitCode null), which is what it almost always is.
 */
export function decodeBwrapStatus(code: number | null, signal: string | null): { exitCode: number | null; signal: string | null } {
  if (code !== null && code > 128 && code <= 128 + 64) {
    const name = signalName(code - 128);
    if (name) return { exitCode: null, signal: name };
  }
  return { exitCode: code, signal };
}

// ---------------------------------------------------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------------------------------------------------

/** Length of `buf` without a trailing, incomplete UTF-8 sequence (so a cut never leaves half a character). */
export function utf8SafeLength(buf: Buffer): number {
  let i = buf.length - 1;
  // Walk back over continuation bytes (at most 3) to the lead byte of the last character.
  while (i >= 0 && buf.length - i <= 4 && ((buf[i] as number) & 0xc0) === 0x80) i--;
  if (i < 0) return buf.length;
  const lead = buf[i] as number;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return buf.length - i < need ? i : buf.length;
}

/**
 * Keeps the first `max` bytes of a stream and counts the rest. It keeps reading (and discarding) past the limit, so a
 * chatty command never blocks on a full pipe; the wall-clock and CPU limits bound how long that can go on.
 */
class HeadCapture {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly max: number) {}
  push(chunk: Buffer): void {
    if (this.size >= this.max) {
      if (chunk.length > 0) this.truncated = true;
      return;
    }
    const room = this.max - this.size;
    if (chunk.length > room) {
      this.chunks.push(Buffer.from(chunk.subarray(0, room)));
      this.size = this.max;
      this.truncated = true;
    } else {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
  }
  text(): string {
    const buf = Buffer.concat(this.chunks);
    return (this.truncated ? buf.subarray(0, utf8SafeLength(buf)) : buf).toString('utf8');
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Process supervision
// ---------------------------------------------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** State letter and process group of `pid` from /proc/<pid>/stat, or undefined when it is gone. */
async function procStat(pid: number | string): Promise<{ state: string; pgrp: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid pgrp …"; comm may contain spaces and parentheses, so parse after the last ")".
    const [state = '', , pgrp = ''] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state, pgrp: Number(pgrp) };
  } catch {
    return undefined;
  }
}

/** True while `pid` exists and is not a zombie. */
async function isLive(pid: number): Promise<boolean> {
  const st = await procStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

/**
 * True while any live (non-zombie) process is in group `pgid`. kill(-pgid, 0) alone is not enough: killed orphans stay
 * in the group as zombies until whatever adopted them reaps them.
 */
async function groupAlive(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((e) => /^\d+$/.test(e));
  } catch {
    return true;
  }
  for (const pid of pids) {
    const st = await procStat(pid);
    if (st && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X') return true;
  }
  return false;
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // ESRCH: already gone.
  }
}

async function waitUntil(check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(20);
  }
}

type Execution = { file: string; args: string[]; cwd: string; env: Record<string, string>; bwrapStatusFd: boolean; sandboxed: boolean };

/**
 * Spawns `file` in its own process group (detached: it is the group leader) and supervises it: wall-clock timer and
 * abort signal SIGKILL the whole group; after the leader exits, the group is SIGKILLed again so no background process
 * outlives the command; and, under bubblewrap, we wait until the sandbox's PID-namespace init (pid from bwrap's
 * --json-status-fd) is gone, which the kernel only allows once every process in the namespace has been killed.
 */
function execute(x: Execution, limits: SandboxLimits, signal: AbortSignal | undefined): Promise<CommandResult> {
  const started = performance.now();
  const stdout = new HeadCapture(limits.maxOutputBytes);
  const stderr = new HeadCapture(limits.maxOutputBytes);
  const result = (over: Partial<CommandResult>): CommandResult => ({
    exitCode: null,
    signal: null,
    stdout: stdout.text(),
    stderr: stderr.text(),
    stdoutTruncated: stdout.truncated,
    stderrTruncated: stderr.truncated,
    timedOut: false,
    cancelled: false,
    durationMs: Math.round(performance.now() - started),
    sandboxed: x.sandboxed,
    ...over,
  });
  if (signal?.aborted) return Promise.resolve(result({ cancelled: true }));

  return new Promise<CommandResult>((resolve, reject) => {
    const child = spawn(x.file, x.args, {
      cwd: x.cwd,
      env: x.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', x.bwrapStatusFd ? 'pipe' : 'ignore'],
    });
    let timedOut = false;
    let cancelled = false;
    let nsInitPid: number | undefined;
    let statusText = '';
    let exit: { code: number | null; signal: string | null } | undefined;
    let graceTimer: NodeJS.Timeout | undefined;

    const kill = (): void => {
      if (child.pid !== undefined) killGroup(child.pid);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, limits.timeoutMs);
    const onAbort = (): void => {
      cancelled = true;
      kill();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => {
      clearTimeout(timer);
      if (graceTimer) clearTimeout(graceTimer);
      signal?.removeEventListener('abort', onAbort);
    };

    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    const statusStream = child.stdio[3];
    if (statusStream && 'on' in statusStream) {
      statusStream.on('data', (chunk: Buffer) => {
        statusText += chunk.toString('utf8');
        const m = /"child-pid":\s*(\d+)/.exec(statusText);
        if (m) nsInitPid = Number(m[1]);
      });
      statusStream.on('error', () => undefined);
    }

    child.once('error', (err) => {
      cleanup();
      kill();
      reject(new TroupeError('unavailable', `could not start ${x.file}: ${err.message}`));
    });
    child.once('exit', (code, sig) => {
      exit = { code, signal: sig };
      // Whatever is left of the group (background jobs holding the pipes) goes too.
      kill();
      // A process that left the group and kept the pipes open must not hold the result hostage.
      graceTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        (statusStream as { destroy?: () => void } | null)?.destroy?.();
      }, REAP_GRACE_MS);
    });
    child.once('close', () => {
      void (async () => {
        cleanup();
        const pgid = child.pid;
        if (nsInitPid !== undefined) {
          const pid = nsInitPid;
          await waitUntil(async () => !(await isLive(pid)), REAP_GRACE_MS);
        }
        if (pgid !== undefined) await waitUntil(async () => !(await groupAlive(pgid)), REAP_GRACE_MS);
        const code = exit?.code ?? null;
        const sig = exit?.signal ?? null;
        const status = x.bwrapStatusFd && !timedOut && !cancelled ? decodeBwrapStatus(code, sig) : { exitCode: code, signal: sig };
        resolve(result({ ...status, timedOut, cancelled }));
      })();
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------------------------------

function baseEnv(home: string): Record<string, string> {
  return { PATH: SANDBOX_PATH, HOME: home, TMPDIR: '/tmp', LANG: 'C.UTF-8', TERM: 'dumb' };
}

/**
 * Runs one command under the given sandbox and returns what it did. Bad input throws TroupeError('bad_request');
 * a sandbox that is `unavailable` throws TroupeError('unavailable') saying how to fix it. A command that fails, times
 * out or is cancelled is a normal result, not an exception.
 */
export async function runCommand(opts: RunCommandOptions): Promise<CommandResult> {
  const argv = validateArgv(opts.argv);
  const extraEnv = validateEnv(opts.env);
  const limits = resolveLimits(opts.limits);
  if (opts.network !== undefined && typeof opts.network !== 'boolean') badRequest('network must be a boolean');
  const root = await resolveRoot(opts.root);
  const cwd = await resolveCwd(root, opts.cwd);
  const readOnlyPaths = await resolveReadOnlyPaths(opts.readOnlyPaths);

  const sandbox = opts.sandbox;
  if (sandbox.mode === 'unavailable') {
    throw new TroupeError('unavailable', `commands are disabled: ${sandbox.reason}`, { reason: sandbox.reason });
  }
  const prlimit = findPrlimit();
  if (!prlimit) {
    throw new TroupeError('unavailable', 'commands are disabled: prlimit (util-linux) was not found, so CPU and memory limits cannot be applied');
  }
  const setpriv = findSetpriv();
  const withParentDeath = (file: string, args: string[]): { file: string; args: string[] } =>
    setpriv ? { file: setpriv, args: ['--pdeathsig', 'KILL', '--', file, ...args] } : { file, args };
  const command = [...prlimitPrefix(prlimit, limits), ...argv];

  if (sandbox.mode === 'bubblewrap') {
    // The host environment never reaches bwrap: --clearenv would not be enough, because the sandbox could still read
    // bwrap's original environment block from /proc/1/environ. bwrap passes this minimal environment on as it is.
    const env = { ...baseEnv('/tmp'), ...extraEnv };
    const bwrapArgs = buildBwrapArgs({ root, cwd, network: opts.network === true, readOnlyPaths });
    const { file, args } = withParentDeath(sandbox.bwrapPath, [...bwrapArgs, '--', ...command]);
    return execute({ file, args, cwd: '/', env, bwrapStatusFd: true, sandboxed: true }, limits, opts.signal);
  }

  // Unsandboxed (explicit operator opt-in): same limits and kill semantics; a private HOME/TMPDIR per command.
  const scratch = await mkdtemp(path.join(tmpdir(), 'troupe-cmd-'));
  try {
    const env = { ...baseEnv(scratch), TMPDIR: scratch, ...extraEnv };
    const [first, ...rest] = command;
    const { file, args } = withParentDeath(first as string, rest);
    return await execute({ file, args, cwd, env, bwrapStatusFd: false, sandboxed: false }, limits, opts.signal);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Runs `true` in exactly the sandbox commands get; says why bubblewrap cannot be used when that fails. */
async function probeBubblewrap(bwrapPath: string | undefined): Promise<{ ok: true; bwrapPath: string } | { ok: false; detail: string }> {
  const bwrap = bwrapPath ?? findProgram('bwrap');
  if (!bwrap) return { ok: false, detail: 'bwrap was not found on PATH' };
  if (!path.isAbsolute(bwrap)) return { ok: false, detail: `bwrap path must be absolute: ${bwrap}` };
  if (!isExecutable(bwrap)) return { ok: false, detail: `${bwrap} does not exist or is not executable` };
  if (!findPrlimit()) return { ok: false, detail: 'prlimit (util-linux) was not found' };
  const root = await mkdtemp(path.join(tmpdir(), 'troupe-sandbox-probe-'));
  try {
    const r = await runCommand({
      argv: ['true'],
      root,
      sandbox: { mode: 'bubblewrap', bwrapPath: bwrap },
      limits: { timeoutMs: 15_000, cpuSeconds: 5, maxOutputBytes: 4096 },
    });
    if (r.exitCode === 0) return { ok: true, bwrapPath: bwrap };
    const how = r.timedOut ? 'timed out' : r.exitCode !== null ? `exit ${r.exitCode}` : `signal ${r.signal}`;
    const said = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' / ');
    return { ok: false, detail: `\`${bwrap} … true\` failed (${how})${said ? `: ${said}` : ''}` };
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * Checks that bubblewrap exists and actually works here (user namespaces may be disabled), by running `true` in the
 * exact sandbox commands get. `allowUnsandboxed` turns "unavailable" into "unsandboxed, with a warning".
 */
export async function detectSandbox(opts: { allowUnsandboxed?: boolean; bwrapPath?: string } = {}): Promise<SandboxStatus> {
  const probe = await probeBubblewrap(opts.bwrapPath);
  if (probe.ok) return { mode: 'bubblewrap', bwrapPath: probe.bwrapPath };
  if (opts.allowUnsandboxed) {
    return {
      mode: 'unsandboxed',
      warning: `bubblewrap is not available (${probe.detail}); commands run WITHOUT a sandbox: no filesystem or network isolation, only time, CPU and output limits`,
    };
  }
  return { mode: 'unavailable', reason: `bubblewrap is not available (${probe.detail}); ${SANDBOX_SUFFIX}` };
}

type WarnLogger = { warn: (obj: object, msg: string) => void };

/**
 * Turns the operator's setting (`TROUPE_SANDBOX`) into a status, once, at worker start-up:
 * `auto` → bubblewrap when it works, else unavailable (commands refused, with a warning logged);
 * `bubblewrap` → bubblewrap, or throws TroupeError('unavailable') saying why it does not work;
 * `unsandboxed` → unsandboxed, always, with a warning logged; `off` → unavailable.
 */
export async function resolveSandbox(config: SandboxConfig, logger?: WarnLogger): Promise<SandboxStatus> {
  switch (config.mode) {
    case 'off':
      return { mode: 'unavailable', reason: 'commands are turned off by configuration' };
    case 'unsandboxed': {
      const warning =
        'TROUPE_SANDBOX=unsandboxed: commands run WITHOUT a sandbox (no filesystem or network isolation; only time, CPU and output limits apply)';
      logger?.warn({ sandbox: 'unsandboxed' }, warning);
      return { mode: 'unsandboxed', warning };
    }
    case 'bubblewrap': {
      const status = await detectSandbox({ bwrapPath: config.bwrapPath });
      if (status.mode !== 'bubblewrap') {
        const reason = status.mode === 'unavailable' ? status.reason : status.warning;
        throw new TroupeError('unavailable', `TROUPE_SANDBOX=bubblewrap, but ${reason}`);
      }
      return status;
    }
    case 'auto': {
      const status = await detectSandbox({ bwrapPath: config.bwrapPath });
      if (status.mode === 'unavailable') logger?.warn({ sandbox: 'unavailable' }, `run_command is disabled: ${status.reason}`);
      return status;
    }
  }
}
