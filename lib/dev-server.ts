import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { resolveTemporalCli } from './temporal-cli';
import { outputTail } from './output-tail';

/** How long the dev server may take to accept connections. Reopening a large SQLite file is the slow case. */
export const DEV_SERVER_START_TIMEOUT_MS = 60_000;
/** How long `stop()` waits after SIGTERM before SIGKILL. */
export const DEV_SERVER_STOP_TIMEOUT_MS = 10_000;

export type DevServerOptions = {
  /** SQLite state file. It is what makes a restart lose nothing; its folder is created. */
  dbFilename: string;
  /** Default 127.0.0.1. */
  ip?: string;
  /** gRPC port; 0 or unset picks a free one. */
  port?: number;
  /** Web UI port; 0 or unset picks a free one. */
  uiPort?: number;
  /** Default true. Without the UI, `uiUrl` is null. */
  ui?: boolean;
  /** Created at start-up. "default" always exists. */
  namespace?: string;
  /**
   * Own process group, so a Ctrl-C in the terminal does not reach the server: the caller stops it last, after the
   * worker that talks to it. Default false (a crashed caller then cannot leave a server behind on a terminal).
   */
  detached?: boolean;
  log?: (msg: string) => void;
};

export type DevServer = {
  /** host:port for `Connection.connect` / `NativeConnection.connect`. */
  address: string;
  uiUrl: string | null;
  /** Settles when the server process ends, for whatever reason (including `stop()`). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
};

/**
 * Dynamic config for the dev server. It has a single history shard, and its transfer queue is polled at most 20 times
 * a second by default, so after a short burst every task dispatch (each workflow task and each activity) waits about
 * 50 ms. Measured here: a no-op activity loop went from 100 ms to 9 ms per iteration with these values.
 */
export const DEV_SERVER_DYNAMIC_CONFIG: readonly string[] = [
  'history.transferProcessorMaxPollRPS=1000',
  'history.transferProcessorMaxPollHostRPS=10000',
];
const dynamicConfigArgs = () => DEV_SERVER_DYNAMIC_CONFIG.flatMap((kv) => ['--dynamic-config-value', kv]);

/**
 * Starts the Temporal dev server with its state in `dbFilename` and resolves once it answers gRPC calls.
 * Uses the CLI binary from `resolveTemporalCli`; with none available, lets `@temporalio/testing` download one.
 */
export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const log = opts.log ?? (() => undefined);
  const ip = opts.ip ?? '127.0.0.1';
  const namespace = opts.namespace ?? 'default';
  const ui = opts.ui ?? true;
  const dbFilename = path.resolve(opts.dbFilename);
  await mkdir(path.dirname(dbFilename), { recursive: true });

  const cli = await resolveTemporalCli({ log });

  if (cli.path === null) {
    log('no Temporal CLI binary found: @temporalio/testing will download one');
    const port = opts.port !== undefined && opts.port !== 0 ? opts.port : await freePort(ip);
    const uiPort = ui ? (opts.uiPort !== undefined && opts.uiPort !== 0 ? opts.uiPort : await freePort(ip)) : undefined;
    // Loaded only here: it pulls in the worker's native bridge, which the CLI path does not need.
    const { TestWorkflowEnvironment } = await import('@temporalio/testing');
    const env = await TestWorkflowEnvironment.createLocal({
      server: { dbFilename, ip, port, ui, uiPort, namespace, extraArgs: dynamicConfigArgs() },
    });
    let resolveExited: (v: { code: number | null; signal: NodeJS.Signals | null }) => void = () => undefined;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => (resolveExited = r));
    let stopping: Promise<void> | undefined;
    return {
      address: env.address,
      uiUrl: uiPort !== undefined ? `http://${urlHost(ip)}:${uiPort}` : null,
      exited,
      stop: () =>
        (stopping ??= env.teardown().finally(() => resolveExited({ code: 0, signal: null }))),
    };
  }

  const port = opts.port !== undefined && opts.port !== 0 ? opts.port : await freePort(ip);
  const uiPort = opts.uiPort !== undefined && opts.uiPort !== 0 ? opts.uiPort : await freePort(ip);
  const args = ['server', 'start-dev', '--db-filename', dbFilename, '--ip', ip, '--port', String(port)];
  args.push(...(ui ? ['--ui-port', String(uiPort)] : ['--headless']));
  if (namespace !== 'default') args.push('--namespace', namespace);
  args.push('--log-level', 'warn', ...dynamicConfigArgs());

  log(`starting the Temporal dev server (${cli.source}: ${cli.path}) on ${ip}:${port}, state in ${dbFilename}`);
  const child = spawn(cli.path, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.detached ?? false,
  });

  const { lines: tail, remember } = outputTail(30);
  child.stdout?.on('data', remember);
  child.stderr?.on('data', remember);

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });

  // A caller that exits without stop() must not leave the server holding the port.
  const killOnExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const address = `${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      process.removeListener('exit', killOnExit);
      await terminate(child, exited);
    })());

  try {
    await waitUntilServing({ address, namespace, exited, tail });
  } catch (err) {
    await stop();
    throw err;
  }

  const uiUrl = ui ? `http://${urlHost(ip)}:${uiPort}` : null;
  log(`Temporal dev server ready at ${address}${uiUrl !== null ? `, UI ${uiUrl}` : ''}`);
  return {
    address,
    uiUrl,
    exited: exited.then(({ code, signal }) => ({ code, signal })),
    stop,
  };
}

async function waitUntilServing(args: {
  address: string;
  namespace: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>;
  tail: string[];
}): Promise<void> {
  const deadline = Date.now() + DEV_SERVER_START_TIMEOUT_MS;
  let ended: { code: number | null; signal: NodeJS.Signals | null; error?: Error } | undefined;
  void args.exited.then((e) => (ended = e));
  let lastError = 'no attempt yet';
  const tailText = (): string =>
    args.tail.length > 0 ? `\nserver output (last lines):\n${args.tail.join('\n')}` : '\n(the server printed nothing)';

  while (Date.now() < deadline) {
    if (ended !== undefined) {
      const how = ended.error?.message ?? `exit ${ended.code ?? ended.signal ?? 'unknown'}`;
      throw new Error(`the Temporal dev server stopped before it was ready (${how})${tailText()}`);
    }
    // lazy + ensureConnected rather than connect(): a failed connect() leaves its gRPC channel open, and that channel
    // would keep the caller's process alive.
    const connection = Connection.lazy({ address: args.address, connectTimeout: 2_000 });
    try {
      await connection.ensureConnected();
      await connection.workflowService.getSystemInfo({});
      // The namespace is registered during start-up; wait for it too, so the first caller does not race it.
      await connection.workflowService.describeNamespace({ namespace: args.namespace });
      return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    } finally {
      await connection.close().catch(() => undefined);
    }
    await sleep(250);
  }
  throw new Error(
    `the Temporal dev server at ${args.address} did not answer within ${DEV_SERVER_START_TIMEOUT_MS / 1000}s ` +
      `(last error: ${lastError})${tailText()}`,
  );
}

async function terminate(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill('SIGTERM');
  const timer = new AbortController();
  const stopped = await Promise.race([
    exited.then(() => true),
    sleep(DEV_SERVER_STOP_TIMEOUT_MS, false, { signal: timer.signal }).catch(() => false),
  ]);
  timer.abort(); // the timer must not hold the caller's event loop open
  if (!stopped) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Asks the OS for a free TCP port on `host`. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not pick a free port'))));
    });
  });
}

function urlHost(ip: string): string {
  if (ip === '0.0.0.0' || ip === '::') return '127.0.0.1';
  return ip.includes(':') ? `[${ip}]` : ip;
}
