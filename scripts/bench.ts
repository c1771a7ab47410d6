/**
 * `npm run bench`: measures Troupe's orchestration overhead on a real stack (Temporal dev server or TEMPORAL_ADDRESS,
 * a fresh Postgres database, one worker process per scenario). Every model is scripted and answers at once, so what
 * the Temporal histories show between model calls is what Troupe itself spends.
 *
 *   npm run bench -- [--scenario steps|fanout|all] [--sessions N] [--steps N] [--tasks K] [--concurrency N]
 *   (or the env SCENARIO, SESSIONS, STEPS, TASKS, CONCURRENCY; flags win)
 *
 * Scenario `steps` (the default): each session runs a generated scenario of STEPS tool-call turns and one closing
 * text turn (defaults: 10 sessions x 20 steps, concurrency 5). Step overhead = the gap between two consecutive
 * callModel ActivityTaskStarted events of a session.
 *
 * Scenario `fanout`: each session is an orchestrated session (a `planner` agent) whose scripted planner submits a plan
 * of TASKS independent tasks, all explicitly assigned to one scripted task agent that answers at once with text, and
 * run together (maxParallelTasks = TASKS, at most 32); then the planner is called once more for the synthesis and the
 * session blocks awaiting input (defaults: 5 sessions x 8 tasks, concurrency 5). All times are Temporal history event
 * times (one server clock): the parent's history and each child `taskWorkflow`'s history.
 *   - task overhead: per task, (parent ChildWorkflowExecutionCompleted - parent StartChildWorkflowExecutionInitiated)
 *     minus the child's callModel run time (sum of ActivityTaskStarted -> ActivityTaskCompleted). I.e. the task's wall
 *     time as the parent sees it, less the time the model activity actually ran: starting the child, its workflow
 *     tasks and checkpoints, the activity's queue wait, completing the child and telling the parent. Reported with its
 *     three parts: dispatch (Initiated -> the child's first callModel ActivityTaskScheduled), model queue (callModel
 *     Scheduled -> Started) and return (the child's last callModel ActivityTaskCompleted -> the parent's
 *     ChildWorkflowExecutionCompleted).
 *   - fan-out start spread: per session, the last minus the first child WorkflowExecutionStarted (and, as
 *     modelStartSpread, the last minus the first child callModel ActivityTaskStarted: when work really begins).
 *   - tail latency: per session, from the parent's last ChildWorkflowExecutionCompleted to the end of the turn, i.e.
 *     the checkpoint marker after the synthesis callModel completed (the checkpoint that records blocked /
 *     awaiting_input; the marker's time is the completion of that workflow task). tailToSynthesis is the part up to
 *     the synthesis callModel ActivityTaskScheduled (pure orchestration, before the planner runs).
 *   - sessions/s and tasks/s: all sessions (tasks) over the wall time from the first session's WorkflowExecutionStarted
 *     to the last session's end of turn. Worker peak RSS: the worker process's VmHWM.
 * Percentiles are nearest-rank: with fewer than 100 samples, p99 is the maximum.
 *
 * Scenario `all` runs steps, then fanout (one dev server and database; a fresh worker and task queue for each, so each
 * peak RSS is its own) and prints one JSON line holding both results.
 *
 * Prints exactly one JSON line on stdout; every log goes to stderr. Cleans up everything, even on failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { pino } from 'pino';
import { createPrisma } from '../lib/db/client';
import { dropDatabase, ensureDatabase, migrate } from '../lib/db/migrate';
import { TraceNotifier } from '../lib/db/trace';
import { startDevServer } from '../lib/dev-server';
import { PROJECT_ROOT } from '../lib/temporal-cli';
import { putAgent } from '../service/agents';
import { createSessionService, type SessionService } from '../service/sessions';

const AGENT_ID = 'bench-agent';
const SCENARIO = 'bench-step';
const WORKER_READY_TIMEOUT_MS = 120_000;
const WORKER_STOP_TIMEOUT_MS = 15_000;

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;
type HistoryEvent = NonNullable<History['events']>[number];

const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Options

type Options = { sessions: number; steps: number; concurrency: number };

function parseOptions(): Options {
  let values: Partial<Record<keyof Options, string>>;
  try {
    ({ values } = parseArgs({ options: { sessions: { type: 'string' }, steps: { type: 'string' }, concurrency: { type: 'string' } } }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}; usage: npm run bench -- [--sessions N] [--steps N] [--concurrency N]`);
  }
  const read = (flag: keyof Options, env: string, fallback: number): number => {
    const raw = values[flag] ?? process.env[env];
    if (raw === undefined || raw === '') return fallback;
    if (!/^[1-9][0-9]*$/.test(raw.trim()) || !Number.isSafeInteger(Number(raw))) {
      throw new UsageError(`--${flag} / ${env} must be a positive integer, got ${JSON.stringify(raw)}`);
    }
    return Number(raw);
  };
  return { sessions: read('sessions', 'SESSIONS', 10), steps: read('steps', 'STEPS', 20), concurrency: read('concurrency', 'CONCURRENCY', 5) };
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------------------------
// Cleanup: every resource registers how to release it; released in reverse order, once, whatever happens.

const cleanups: { name: string; fn: () => Promise<unknown> | unknown }[] = [];
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    for (const { name, fn } of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log(`cleanup: ${name} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  })());
}

// ---------------------------------------------------------------------------------------------------------------
// Stack pieces

function benchDatabaseUrl(): string {
  const url = new URL(process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432');
  url.pathname = `/troupe_bench_${process.pid}`;
  return url.toString();
}

/** STEPS turns that each call one tool, then one text turn that ends the turn. */
function writeScenario(dir: string, steps: number): void {
  const turns = [
    ...Array.from({ length: steps }, (_, i) => ({
      toolCalls: [{ name: 'blackboard_write', input: { key: `step-${i + 1}`, value: `bench step ${i + 1}`, kind: 'fact' } }],
    })),
    { text: 'bench turn finished' },
  ];
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `${SCENARIO}.json`), JSON.stringify({ name: SCENARIO, loop: false, turns }));
}

type WorkerProcess = { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> };

/** `node --import tsx worker/main.ts`, so the child's pid is the worker's own node process (its RSS is what we sample). */
function spawnWorker(env: Record<string, string>): WorkerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    // The worker's JSON logs go to our stderr: stdout carries only the result line.
    stdio: ['ignore', 2, 2],
    // Own process group: a Ctrl-C reaches only us, and cleanup stops the worker with exactly one SIGTERM.
    detached: true,
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => {
      log(`could not start the worker: ${err.message}`);
      resolve({ code: null, signal: null });
    });
  });
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  void exited.then(() => process.removeListener('exit', killOnExit));
  return { child, exited };
}

async function stopWorker(worker: WorkerProcess): Promise<void> {
  const { child } = worker;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const stopped = await Promise.race([worker.exited.then(() => true), sleep(WORKER_STOP_TIMEOUT_MS, false, { ref: false })]);
  if (!stopped) {
    log(`the worker did not stop within ${WORKER_STOP_TIMEOUT_MS / 1000}s; killing it`);
    child.kill('SIGKILL');
    await worker.exited;
  }
}

/** Resolves once the task queue has both workflow and activity pollers (the worker is really polling). */
async function waitForPollers(connection: Connection, namespace: string, taskQueue: string, worker: WorkerProcess): Promise<void> {
  let exited = false;
  void worker.exited.then(() => (exited = true));
  const deadline = Date.now() + WORKER_READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`the worker exited before it started polling (exit ${worker.child.exitCode ?? worker.child.signalCode})`);
    const counts = await Promise.all(
      [1, 2].map(async (taskQueueType) => {
        const res = await connection.workflowService.describeTaskQueue({ namespace, taskQueue: { name: taskQueue }, taskQueueType });
        return res.pollers?.length ?? 0;
      }),
    );
    if (counts.every((n) => n > 0)) return;
    await sleep(200);
  }
  throw new Error(`the worker did not poll ${taskQueue} within ${WORKER_READY_TIMEOUT_MS / 1000}s`);
}

/** Peak resident set size of a live process, in MB (VmHWM, Linux). */
function peakRssMb(pid: number): number {
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match?.[1]) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

// ---------------------------------------------------------------------------------------------------------------
// Workload

/** Resolves when the session is blocked awaiting input (its turn ended); woken by trace NOTIFYs, re-checked every second. */
async function untilEndOfTurn(sessions: SessionService, notifier: TraceNotifier, id: string, timeoutMs: number): Promise<void> {
  let dirty = true;
  let wake: () => void = () => undefined;
  const unsubscribe = notifier.subscribe(id, () => {
    dirty = true;
    wake();
  });
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (!dirty) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 1_000).unref();
        });
      }
      dirty = false;
      const s = await sessions.get(id);
      if (s.status === 'blocked' && s.statusReason === 'awaiting_input') return;
      if (s.status === 'done' || s.status === 'failed' || s.status === 'cancelled') {
        throw new Error(`session ${id} ended before its turn did: ${s.status} (${s.statusReason ?? 'no reason'})`);
      }
      if (Date.now() > deadline) throw new Error(`session ${id} did not finish its turn within ${timeoutMs / 1000}s (status ${s.status})`);
    }
  } finally {
    unsubscribe();
  }
}

/** Runs `count` jobs with at most `concurrency` at once; stops starting new ones after the first failure. */
async function pool<T>(count: number, concurrency: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (!failed && next < count) {
      const i = next++;
      try {
        results[i] = await job(i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return results;
}

// ---------------------------------------------------------------------------------------------------------------
// Metrics, from the workflow histories

const eventMs = (e: HistoryEvent): number => {
  const t = e.eventTime;
  if (!t) throw new Error(`history event ${String(e.eventId)} has no time`);
  const seconds = typeof t.seconds === 'number' ? t.seconds : (t.seconds?.toNumber() ?? 0);
  return seconds * 1000 + (t.nanos ?? 0) / 1e6;
};

/** Every run of the workflow, oldest first (a session may have continued-as-new). */
async function fullHistory(temporal: Client, id: string): Promise<HistoryEvent[]> {
  const runs: HistoryEvent[][] = [];
  let runId: string | undefined;
  for (;;) {
    const events = (await temporal.workflow.getHandle(id, runId).fetchHistory()).events ?? [];
    runs.unshift(events);
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
    if (!runId) return runs.flat();
  }
}

type SessionTimes = { startedAt: number; endOfTurnAt: number; modelCallStarts: number[] };

/**
 * When the workflow started; when each callModel activity started; and when the turn ended, i.e. when the checkpoint
 * after the last model call (the one that records `blocked`/`awaiting_input`) completed.
 */
function sessionTimes(events: HistoryEvent[]): SessionTimes {
  const activityType = new Map<string, string>(); // scheduled event id -> activity type (server-side activities)
  const typeOf = (scheduledEventId: unknown): string | undefined => activityType.get(String(scheduledEventId));
  const modelCallStarts: number[] = [];
  let lastModelCallDone = -1;
  let endOfTurnAt: number | undefined;
  events.forEach((e, i) => {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) activityType.set(String(e.eventId), scheduled.activityType?.name ?? '');
    const started = e.activityTaskStartedEventAttributes;
    if (started && typeOf(started.scheduledEventId) === 'callModel') modelCallStarts.push(eventMs(e));
    const completed = e.activityTaskCompletedEventAttributes;
    if (completed && typeOf(completed.scheduledEventId) === 'callModel') {
      lastModelCallDone = i;
      endOfTurnAt = undefined;
    }
    // Checkpoints are local activities: each one is a marker, recorded when its workflow task completes.
    if (e.markerRecordedEventAttributes && lastModelCallDone >= 0 && endOfTurnAt === undefined) {
      endOfTurnAt = eventMs(e);
    }
  });
  const first = events[0];
  if (!first?.workflowExecutionStartedEventAttributes) throw new Error('history does not begin with WorkflowExecutionStarted');
  if (endOfTurnAt === undefined) throw new Error('history has no checkpoint after the last model call');
  return { startedAt: eventMs(first), endOfTurnAt, modelCallStarts: modelCallStarts.sort((a, b) => a - b) };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  const v = sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
  if (v === undefined) throw new Error('no values');
  return v;
}

const round = (n: number, digits: number): number => Number(n.toFixed(digits));

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseOptions();
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  const taskQueue = `bench-${randomBytes(6).toString('hex')}`;
  log(`${opts.sessions} sessions x ${opts.steps} steps, concurrency ${opts.concurrency}`);

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'troupe-bench-'));
  cleanups.push({ name: 'temp dir', fn: () => rmSync(tmp, { recursive: true, force: true }) });

  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  if (!temporalAddress) {
    const server = await startDevServer({
      dbFilename: path.join(tmp, 'temporal.db'),
      ui: false,
      namespace,
      // Like the worker, out of reach of a Ctrl-C: cleanup stops it last.
      detached: true,
      log: (m) => log(`[temporal] ${m}`),
    });
    cleanups.push({ name: 'dev server', fn: () => server.stop() });
    temporalAddress = server.address;
  }

  const databaseUrl = benchDatabaseUrl();
  await dropDatabase(databaseUrl);
  cleanups.push({ name: 'database', fn: () => dropDatabase(databaseUrl) });
  await ensureDatabase(databaseUrl);
  await migrate(databaseUrl);
  log(`database ${new URL(databaseUrl).pathname.slice(1)} migrated`);

  const scenarioDir = path.join(tmp, 'scenarios');
  writeScenario(scenarioDir, opts.steps);

  const connection = await Connection.connect({ address: temporalAddress });
  cleanups.push({ name: 'temporal connection', fn: () => connection.close() });
  const temporal = new Client({ connection, namespace });

  const worker = spawnWorker({
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: temporalAddress,
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_TASK_QUEUE: taskQueue,
    TROUPE_SCENARIO_DIRS: scenarioDir,
    LOG_LEVEL: 'warn',
  });
  cleanups.push({ name: 'worker', fn: () => stopWorker(worker) });
  await waitForPollers(connection, namespace, taskQueue, worker);
  log(`worker ${worker.child.pid} is polling ${taskQueue}`);
  const workerDied = worker.exited.then(({ code, signal }) => {
    throw new Error(`the worker exited during the benchmark (${code ?? signal})`);
  });
  workerDied.catch(() => undefined);

  const logger = pino({ name: 'bench', level: process.env.LOG_LEVEL ?? 'warn' }, pino.destination({ fd: 2, sync: true }));
  const db = createPrisma(databaseUrl);
  cleanups.push({ name: 'prisma', fn: () => db.$disconnect() });
  const notifier = new TraceNotifier(databaseUrl, { onError: (err) => log(`trace notifier: ${err.message}`) });
  await notifier.start();
  cleanups.push({ name: 'trace notifier', fn: () => notifier.close() });
  // One turn is STEPS tool-calling model calls plus the closing one: lift the per-turn guard above that.
  const sessions = createSessionService({ db, temporal, taskQueue, notifier, logger, limits: { maxModelCallsPerTurn: opts.steps + 1 } });

  await putAgent(db, {
    id: AGENT_ID,
    name: 'Bench agent',
    role: 'assistant',
    model: `scripted:${SCENARIO}`,
    instructions: 'Benchmark agent: writes one blackboard entry per step.',
    tools: ['blackboard_write'],
    permissions: [],
    memoryScope: 'session',
  });

  const turnTimeoutMs = 120_000 + 2_000 * opts.steps;
  const run = pool(opts.sessions, opts.concurrency, async (i) => {
    const { id } = await sessions.start({ goal: `bench session ${i + 1}`, agent: AGENT_ID });
    await untilEndOfTurn(sessions, notifier, id, turnTimeoutMs);
    await sessions.close(id);
    log(`session ${i + 1}/${opts.sessions} finished its turn (${id})`);
    return id;
  });
  const ids = await Promise.race([run, workerDied]);
  // Closed sessions end on their own; wait for that so nothing is in flight when the worker is measured and stopped.
  await Promise.race([Promise.all(ids.map((id) => temporal.workflow.getHandle(id).result())), workerDied]);

  const workerPeakRssMb = peakRssMb(worker.child.pid as number);

  const gaps: number[] = [];
  let firstStart = Infinity;
  let lastEnd = -Infinity;
  for (const id of ids) {
    const t = sessionTimes(await fullHistory(temporal, id));
    if (t.modelCallStarts.length !== opts.steps + 1) {
      throw new Error(`session ${id}: expected ${opts.steps + 1} callModel activities, history has ${t.modelCallStarts.length}`);
    }
    for (let k = 1; k < t.modelCallStarts.length; k++) gaps.push(t.modelCallStarts[k]! - t.modelCallStarts[k - 1]!);
    firstStart = Math.min(firstStart, t.startedAt);
    lastEnd = Math.max(lastEnd, t.endOfTurnAt);
  }
  gaps.sort((a, b) => a - b);
  const wallSeconds = (lastEnd - firstStart) / 1000;

  const result = {
    scenario: 'steps',
    sessions: opts.sessions,
    steps: opts.steps,
    concurrency: opts.concurrency,
    stepOverheadMs: { p50: round(percentile(gaps, 50), 1), p99: round(percentile(gaps, 99), 1) },
    stepsPerSecond: round((opts.sessions * opts.steps) / wallSeconds, 2),
    wallSeconds: round(wallSeconds, 3),
    workerPeakRssMb: round(workerPeakRssMb, 1),
    machine: { cpus: os.availableParallelism(), memGb: round(os.totalmem() / 1024 ** 3, 1), node: process.version },
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // `on`, not `once`: under tsx a Ctrl-C arrives twice (from the terminal and relayed by tsx); later ones are ignored.
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

main().then(
  async () => {
    await cleanup();
    process.exit(0);
  },
  async (err: unknown) => {
    if (interrupted) return; // the signal handler cleans up and exits
    log(err instanceof UsageError ? err.message : `failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanup();
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
