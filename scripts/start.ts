/**
 * `npm start`: the whole local stack in the foreground. The Temporal dev server (state in .data/temporal.db, so a
 * restart loses nothing), Postgres migrations, then one worker and one API process. Ctrl-C stops them in order.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../lib/config';
import { ensureDatabase, migrate } from '../lib/db/migrate';
import { startDevServer, type DevServer } from '../lib/dev-server';
import { createLogger } from '../lib/logger';
import { PROJECT_ROOT } from '../lib/temporal-cli';

const DATA_DIR = path.join(PROJECT_ROOT, '.data');
const TOKEN_FILE = path.join(DATA_DIR, 'api-token');
const DEV_SERVER_PORT = 7233;
const DEV_SERVER_UI_PORT = 8233;
/** A child gets this long after SIGTERM to finish in-flight work before SIGKILL. */
const CHILD_STOP_TIMEOUT_MS = 15_000;
/** tsx compiles on first start and both children run migrations; give the API this long to listen. */
const API_START_TIMEOUT_MS = 120_000;

// .env fills in only what the environment does not already set.
const envFile = path.join(PROJECT_ROOT, '.env');
if (existsSync(envFile)) process.loadEnvFile(envFile);

const config = loadConfig();
const logger = createLogger({ name: 'start', level: config.logLevel });

type Child = { name: string; process: ChildProcess; exited: Promise<void> };

let devServer: DevServer | undefined;
const children: Child[] = [];
let shuttingDown = false;

async function main(): Promise<void> {
  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  let temporalUi: string | null = null;
  if (temporalAddress === undefined || temporalAddress === '') {
    if (await isListening('127.0.0.1', DEV_SERVER_PORT)) {
      throw new Error(
        `something is already listening on 127.0.0.1:${DEV_SERVER_PORT}. Stop it, or set ` +
          `TEMPORAL_ADDRESS=127.0.0.1:${DEV_SERVER_PORT} to use that Temporal server instead of starting one.`,
      );
    }
    devServer = await startDevServer({
      dbFilename: path.join(DATA_DIR, 'temporal.db'),
      ip: '127.0.0.1',
      port: DEV_SERVER_PORT,
      uiPort: DEV_SERVER_UI_PORT,
      namespace: config.temporalNamespace,
      // Our own process group: Ctrl-C must not stop Temporal before the worker has drained.
      detached: true,
      log: (msg) => logger.info(msg),
    });
    temporalAddress = devServer.address;
    temporalUi = devServer.uiUrl;
    void devServer.exited.then(({ code, signal }) => {
      if (!shuttingDown) {
        logger.error({ code, signal }, 'the Temporal dev server stopped unexpectedly');
        void shutdown(1);
      }
    });
  } else {
    logger.info({ temporalAddress }, 'using the Temporal server from TEMPORAL_ADDRESS');
  }

  await ensureDatabase(config.databaseUrl);
  const { applied } = await migrate(config.databaseUrl, { log: (msg) => logger.info(msg) });
  logger.info({ applied: applied.length }, 'database migrated');

  let generatedToken: string | undefined;
  const childEnv: NodeJS.ProcessEnv = { ...process.env, TEMPORAL_ADDRESS: temporalAddress };
  if (config.apiTokens.length === 0) {
    generatedToken = randomBytes(24).toString('base64url');
    childEnv.TROUPE_API_TOKENS = generatedToken;
    // `npm run demo` and the README's curl examples read it from here.
    await mkdir(path.dirname(TOKEN_FILE), { recursive: true });
    await writeFile(TOKEN_FILE, `${generatedToken}\n`, { mode: 0o600 });
  }

  startChild('worker', 'worker/main.ts', childEnv);
  const api = startChild('api', 'api/main.ts', childEnv);

  const apiUrl = `http://127.0.0.1:${config.port}`;
  const up = await waitForHttp(`${apiUrl}/healthz`, api);
  if (shuttingDown) return;
  if (!up) logger.warn({ apiUrl }, `the API did not answer within ${API_START_TIMEOUT_MS / 1000}s; still waiting on it`);

  const anthropic = config.anthropic.apiKey !== undefined;
  logger.info(
    {
      apiUrl,
      // Field name chosen so the logger's `token` redaction does not hide it: printing it is the point.
      generatedApiToken: generatedToken,
      apiTokenFile: generatedToken !== undefined ? TOKEN_FILE : undefined,
      temporalAddress,
      temporalUi,
      anthropicApiKeySet: anthropic,
    },
    'troupe is running',
  );
  const lines = [
    '',
    `  Troupe API    ${apiUrl}`,
    generatedToken !== undefined
      ? `  API token     ${generatedToken}  (generated for this run, saved in .data/api-token; set TROUPE_API_TOKENS to choose your own)`
      : '  API token     from TROUPE_API_TOKENS',
    `  Temporal      ${temporalAddress}${temporalUi !== null ? `   UI ${temporalUi}` : ''}`,
    `  Anthropic     ${anthropic ? 'ANTHROPIC_API_KEY is set' : 'ANTHROPIC_API_KEY is not set: agents run the offline scripted model'}`,
    '  Ctrl-C stops everything.',
    '',
  ];
  process.stderr.write(lines.join('\n') + '\n');
}

function startChild(name: string, entry: string, env: NodeJS.ProcessEnv): Child {
  const child = spawn(path.join(PROJECT_ROOT, 'node_modules', '.bin', 'tsx'), [entry], {
    cwd: PROJECT_ROOT,
    env,
    // stdout carries the child's JSON log lines straight through.
    stdio: ['ignore', 'inherit', 'inherit'],
    // Own process group, so Ctrl-C reaches only us and we stop the API before the worker.
    detached: true,
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      if (!shuttingDown) {
        logger.error({ child: name, code, signal }, `${name} exited unexpectedly; stopping everything`);
        void shutdown(1);
      }
      resolve();
    });
    child.once('error', (err) => {
      logger.error({ child: name, err }, `could not start ${name}`);
      resolve();
      if (!shuttingDown) void shutdown(1);
    });
  });
  const entryChild = { name, process: child, exited };
  children.push(entryChild);
  logger.info({ child: name, pid: child.pid }, `started ${name}`);
  return entryChild;
}

async function stopChild(child: Child): Promise<void> {
  const p = child.process;
  if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return;
  logger.info({ child: child.name }, `stopping ${child.name}`);
  // tsx relays SIGTERM to the script it runs and exits with it.
  p.kill('SIGTERM');
  const timer = new AbortController();
  const stopped = await Promise.race([
    child.exited.then(() => true),
    sleep(CHILD_STOP_TIMEOUT_MS, false, { signal: timer.signal }).catch(() => false),
  ]);
  timer.abort();
  if (!stopped) {
    logger.warn({ child: child.name }, `${child.name} did not stop within ${CHILD_STOP_TIMEOUT_MS / 1000}s; killing it`);
    killGroup(p);
    await child.exited;
  }
}

/** SIGKILL the whole group: tsx's own node child would otherwise survive its parent. */
function killGroup(p: ChildProcess): void {
  if (p.pid === undefined) return;
  try {
    process.kill(-p.pid, 'SIGKILL');
  } catch {
    p.kill('SIGKILL');
  }
}

let shutdownPromise: Promise<never> | undefined;
function shutdown(code: number): Promise<never> {
  shuttingDown = true;
  return (shutdownPromise ??= (async () => {
    const byName = (name: string) => children.find((c) => c.name === name);
    for (const name of ['api', 'worker']) {
      const child = byName(name);
      if (child !== undefined) await stopChild(child).catch((err: unknown) => logger.error({ err }, `stopping ${name}`));
    }
    if (devServer !== undefined) {
      logger.info('stopping the Temporal dev server');
      await devServer.stop().catch((err: unknown) => logger.error({ err }, 'stopping the Temporal dev server'));
    }
    logger.info({ exitCode: code }, 'stopped');
    process.exit(code);
  })());
}

async function isListening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(1_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/** True once `url` answers any HTTP status; false on timeout or when `child` has exited. */
async function waitForHttp(url: string, child: Child): Promise<boolean> {
  const deadline = Date.now() + API_START_TIMEOUT_MS;
  while (Date.now() < deadline && !shuttingDown) {
    if (child.process.exitCode !== null || child.process.signalCode !== null) return false;
    try {
      await fetch(url, { signal: AbortSignal.timeout(1_000) });
      return true;
    } catch {
      await sleep(300);
    }
  }
  return false;
}

// A second Ctrl-C while stopping means "now": kill everything we started.
let signals = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    signals += 1;
    if (signals === 1) {
      logger.info({ signal }, 'shutting down');
      void shutdown(0);
      return;
    }
    logger.warn({ signal }, 'second signal: killing everything now');
    for (const c of children) killGroup(c.process);
    process.exit(130);
  });
}

// Whatever way we leave, leave no child running in its own process group.
process.on('exit', () => {
  for (const c of children) {
    if (c.process.exitCode === null && c.process.signalCode === null) killGroup(c.process);
  }
});

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  logger.fatal({ err }, message);
  process.stderr.write(`\nnpm start failed: ${message}\n\n`);
  void shutdown(1);
});
