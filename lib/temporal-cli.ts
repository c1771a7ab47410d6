import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { outputTail } from './output-tail';

/**
 * The Temporal CLI release we build. v1.5.1 is the newest tag that `go install pkg@version` accepts: later tags carry
 * a `replace` directive in go.mod, which `go install` refuses.
 */
export const TEMPORAL_CLI_VERSION = 'v1.5.1';

const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal';

/** The repository root, found from this file rather than the cwd, so scripts and tests agree wherever they run. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Where a local build lands: `<root>/.tools/bin/temporal` (git-ignored). */
export const LOCAL_TEMPORAL_CLI = path.join(PROJECT_ROOT, '.tools', 'bin', 'temporal');

export type ResolvedTemporalCli =
  | { path: string; source: 'env' | 'path' | 'tools' | 'built' }
  /** No binary here: let `@temporalio/testing` download one (needs internet). */
  | { path: null; source: 'download' };

export type ResolveTemporalCliOptions = {
  log?: (msg: string) => void;
  /** Build with `go install` when nothing else is found and `go` is on PATH. Default true. */
  allowBuild?: boolean;
};

/**
 * Finds a Temporal CLI binary, in this order: `TEMPORAL_CLI_PATH`, `temporal` on PATH, `<root>/.tools/bin/temporal`,
 * a fresh `go install` into `<root>/.tools/bin`, and finally "download" (the SDK fetches one itself).
 */
export async function resolveTemporalCli(opts: ResolveTemporalCliOptions = {}): Promise<ResolvedTemporalCli> {
  const log = opts.log ?? (() => undefined);
  const allowBuild = opts.allowBuild ?? true;

  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv !== undefined && fromEnv !== '') {
    const resolved = path.resolve(fromEnv);
    if (!(await isExecutableFile(resolved))) {
      throw new Error(
        `TEMPORAL_CLI_PATH=${fromEnv} is not an executable file; point it at a Temporal CLI binary or unset it`,
      );
    }
    return { path: resolved, source: 'env' };
  }

  const onPath = await findOnPath('temporal');
  if (onPath !== null) return { path: onPath, source: 'path' };

  if (await isExecutableFile(LOCAL_TEMPORAL_CLI)) return { path: LOCAL_TEMPORAL_CLI, source: 'tools' };

  if (allowBuild) {
    const go = await findOnPath('go');
    if (go !== null) {
      await buildTemporalCli(go, log);
      return { path: LOCAL_TEMPORAL_CLI, source: 'built' };
    }
  }

  return { path: null, source: 'download' };
}

async function buildTemporalCli(go: string, log: (msg: string) => void): Promise<void> {
  const gobin = path.dirname(LOCAL_TEMPORAL_CLI);
  await mkdir(gobin, { recursive: true });
  const target = `${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION}`;
  log(`building the Temporal CLI: go install ${target} into ${gobin} (this can take a few minutes the first time)`);
  const started = Date.now();

  const { lines: tail, remember } = outputTail(40, (line) => log(`  ${line}`));

  const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    const child = spawn(go, ['install', target], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, GOBIN: gobin },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', remember);
    child.stderr.on('data', remember);
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });

  if (result.error !== undefined || result.code !== 0 || !(await isExecutableFile(LOCAL_TEMPORAL_CLI))) {
    const why =
      result.error !== undefined
        ? result.error.message
        : result.code !== 0
          ? `exit ${result.code ?? result.signal ?? 'unknown'}`
          : `no binary at ${LOCAL_TEMPORAL_CLI}`;
    throw new Error(
      `building the Temporal CLI with \`go install ${target}\` failed (${why}).` +
        (tail.length > 0 ? `\n${tail.join('\n')}` : '') +
        `\nSet TEMPORAL_CLI_PATH to an existing binary, or put \`temporal\` on PATH.`,
    );
  }
  log(`built the Temporal CLI at ${LOCAL_TEMPORAL_CLI} in ${Math.round((Date.now() - started) / 1000)}s`);
}

async function findOnPath(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return null;
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}
