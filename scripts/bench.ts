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
 *     ChildWorkflowExecutionCompleted). The subtracted callModel run time is not only the model (the scripted one answers
 *     at once): it includes the activity's own Postgres work (blackboard read, model.context and trace writes) and the
 *     worker's hand-off, so this is a lower bound; taskWall (Initiated -> ChildWorkflowExecutionCompleted, nothing
 *     subtracted) is the upper bound, the whole cost of a task whose model answers at once.
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
import { DEFAULT_ORCHESTRATOR_LIMITS } from '../core/orchestrator';
import { SUBMIT_PLAN_TOOL } from '../core/plan';
import { createPrisma, type Db } from '../lib/db/client';
import { dropDatabase, ensureDatabase, migrate } from '../lib/db/migrate';
import { TraceNotifier } from '../lib/db/trace';
import { startDevServer } from '../lib/dev-server';
import type { Logger } from '../lib/logger';
import { PROJECT_ROOT } from '../lib/temporal-cli';
import { putAgent } from '../service/agents';
import { createSessionService, PLANNER_ROLE, type SessionService } from '../service/sessions';

const STEP_AGENT_ID = 'bench-agent';
const STEP_SCENARIO = 'bench-step';
const PLANNER_AGENT_ID = 'bench-planner';
const PLANNER_SCENARIO = 'bench-fanout-planner';
const TASK_AGENT_ID = 'bench-task';
const TASK_SCENARIO = 'bench-fanout-task';
/** CreateSessionBody allows maxParallelTasks up to 32: all K tasks must run at once. */
const MAX_FANOUT_TASKS = 32;
const WORKER_READY_TIMEOUT_MS = 120_000;
const WORKER_STOP_TIMEOUT_MS = 15_000;

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;
type HistoryEvent = NonNullable<History['events']>[number];

const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Options

type ScenarioName = 'steps' | 'fanout';
type StepsOptions = { sessions: number; steps: number; concurrency: number };
type FanoutOptions = { sessions: number; tasks: number; concurrency: number };
type Options = { scenario: ScenarioName | 'all'; steps: StepsOptions; fanout: FanoutOptions };

const USAGE = 'usage: npm run bench -- [--scenario steps|fanout|all] [--sessions N] [--steps N] [--tasks K] [--concurrency N]';

function parseOptions(): Options {
  type Flag = 'scenario' | 'sessions' | 'steps' | 'tasks' | 'concurrency';
  let values: Partial<Record<Flag, string>>;
  try {
    ({ values } = parseArgs({
      options: {
        scenario: { type: 'string' },
        sessions: { type: 'string' },
        steps: { type: 'string' },
        tasks: { type: 'string' },
        concurrency: { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}; ${USAGE}`);
  }
  const rawScenario = (values.scenario ?? process.env.SCENARIO ?? '').trim() || 'steps';
  if (rawScenario !== 'steps' && rawScenario !== 'fanout' && rawScenario !== 'all') {
    throw new UsageError(`--scenario / SCENARIO must be steps, fanout or all, got ${JSON.stringify(rawScenario)}; ${USAGE}`);
  }
  const scenario: Options['scenario'] = rawScenario;
  // A flag that the chosen scenario would ignore is a mistake worth saying (an env variable is not: it may be set for another run).
  if (scenario === 'steps' && values.tasks !== undefined) throw new UsageError(`--tasks applies to --scenario fanout (or all); ${USAGE}`);
  if (scenario === 'fanout' && values.steps !== undefined) throw new UsageError(`--steps applies to --scenario steps (or all); ${USAGE}`);
  const read = (flag: Exclude<Flag, 'scenario'>, env: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = values[flag] ?? process.env[env];
    if (raw === undefined || raw === '') return fallback;
    if (!/^[1-9][0-9]*$/.test(raw.trim()) || !Number.isSafeInteger(Number(raw))) {
      throw new UsageError(`--${flag} / ${env} must be a positive integer, got ${JSON.stringify(raw)}`);
    }
    if (Number(raw) > max) throw new UsageError(`--${flag} / ${env} must be at most ${max}, got ${raw}`);
    return Number(raw);
  };
  const concurrency = read('concurrency', 'CONCURRENCY', 5);
  return {
    scenario,
    steps: { sessions: read('sessions', 'SESSIONS', 10), steps: read('steps', 'STEPS', 20), concurrency },
    fanout: { sessions: read('sessions', 'SESSIONS', 5), tasks: read('tasks', 'TASKS', 8, MAX_FANOUT_TASKS), concurrency },
  };
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

function writeScenarioFile(dir: string, name: string, turns: unknown[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ name, loop: false, turns }));
}

/** STEPS turns that each call one tool, then one text turn that ends the turn. */
function writeStepScenario(dir: string, steps: number): void {
  writeScenarioFile(dir, STEP_SCENARIO, [
    ...Array.from({ length: steps }, (_, i) => ({
      toolCalls: [{ name: 'blackboard_write', input: { key: `step-${i + 1}`, value: `bench step ${i + 1}`, kind: 'fact' } }],
    })),
    { text: 'bench turn finished' },
  ]);
}

/** The planner: turn 1 submits TASKS independent tasks, all assigned to the task agent; turn 2 is the synthesis. */
function writeFanoutScenarios(dir: string, tasks: number): void {
  const plan = {
    summary: `${tasks} independent bench tasks`,
    tasks: Array.from({ length: tasks }, (_, i) => ({ id: `t${i + 1}`, agent: TASK_AGENT_ID, goal: `bench task ${i + 1}` })),
  };
  writeScenarioFile(dir, PLANNER_SCENARIO, [
    { text: `Plan: ${tasks} tasks in parallel.`, toolCalls: [{ name: SUBMIT_PLAN_TOOL, input: plan }] },
    { text: 'bench synthesis: every task is done' },
  ]);
  writeScenarioFile(dir, TASK_SCENARIO, [{ text: 'bench task done' }]);
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

const stats = (values: number[]): { p50: number; p99: number } => {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: round(percentile(sorted, 50), 1), p99: round(percentile(sorted, 99), 1) };
};

const idOf = (eventId: unknown): string => String(eventId);

/** The events of one run of a workflow (a child task workflow never continues as new). */
async function runHistory(temporal: Client, workflowId: string, runId: string): Promise<HistoryEvent[]> {
  return (await temporal.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
}

type ModelCall = { scheduledAt: number; startedAt: number; completedAt: number };

/** Every callModel activity of a history that completed, in schedule order (the scripted model never fails here). */
function modelCalls(events: HistoryEvent[], where: string): ModelCall[] {
  const calls = new Map<string, Partial<ModelCall>>(); // by scheduled event id
  for (const e of events) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) {
      if (scheduled.activityType?.name === 'callModel') calls.set(idOf(e.eventId), { scheduledAt: eventMs(e) });
      continue;
    }
    const started = e.activityTaskStartedEventAttributes;
    const startedCall = started && calls.get(idOf(started.scheduledEventId));
    if (startedCall) startedCall.startedAt = eventMs(e);
    const completed = e.activityTaskCompletedEventAttributes;
    const completedCall = completed && calls.get(idOf(completed.scheduledEventId));
    if (completedCall) completedCall.completedAt = eventMs(e);
    const failed = e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes;
    if (failed && calls.has(idOf(failed.scheduledEventId))) throw new Error(`${where}: a callModel activity failed or timed out`);
  }
  return [...calls.values()].map((c) => {
    if (c.scheduledAt === undefined || c.startedAt === undefined || c.completedAt === undefined) {
      throw new Error(`${where}: a callModel activity did not complete`);
    }
    return { scheduledAt: c.scheduledAt, startedAt: c.startedAt, completedAt: c.completedAt };
  });
}

type TaskTimes = { wall: number; overhead: number; dispatch: number; modelQueue: number; modelRun: number; return: number; startedAt: number; modelStartedAt: number };
type FanoutSessionTimes = {
  startedAt: number;
  endOfTurnAt: number;
  tasks: TaskTimes[];
  startSpread: number;
  modelStartSpread: number;
  tail: number;
  tailToSynthesis: number;
};

/** Reads a fan-out session's parent history and each child's history; see the file header for the definitions. */
async function fanoutSessionTimes(temporal: Client, id: string, expectedTasks: number): Promise<FanoutSessionTimes> {
  const parent = await fullHistory(temporal, id);
  const { startedAt, endOfTurnAt } = sessionTimes(parent);
  type Child = { workflowId: string; initiatedAt: number; runId?: string; completedAt?: number };
  const children = new Map<string, Child>(); // by initiated event id
  for (const e of parent) {
    const initiated = e.startChildWorkflowExecutionInitiatedEventAttributes;
    if (initiated) children.set(idOf(e.eventId), { workflowId: initiated.workflowId ?? '', initiatedAt: eventMs(e) });
    const started = e.childWorkflowExecutionStartedEventAttributes;
    const startedChild = started && children.get(idOf(started.initiatedEventId));
    if (startedChild) startedChild.runId = started.workflowExecution?.runId ?? undefined;
    const completed = e.childWorkflowExecutionCompletedEventAttributes;
    const completedChild = completed && children.get(idOf(completed.initiatedEventId));
    if (completedChild) completedChild.completedAt = eventMs(e);
  }
  if (children.size !== expectedTasks) throw new Error(`session ${id}: expected ${expectedTasks} child workflows, history has ${children.size}`);

  const tasks = await Promise.all(
    [...children.values()].map(async (c): Promise<TaskTimes> => {
      if (c.runId === undefined || c.completedAt === undefined) throw new Error(`session ${id}: child ${c.workflowId} did not complete`);
      const events = await runHistory(temporal, c.workflowId, c.runId);
      const first = events[0];
      if (!first?.workflowExecutionStartedEventAttributes) throw new Error(`child ${c.workflowId}: history does not begin with WorkflowExecutionStarted`);
      const calls = modelCalls(events, `child ${c.workflowId}`);
      const firstCall = calls[0];
      const lastCall = calls[calls.length - 1];
      if (!firstCall || !lastCall) throw new Error(`child ${c.workflowId}: no callModel activity`);
      const modelRun = calls.reduce((sum, m) => sum + (m.completedAt - m.startedAt), 0);
      return {
        wall: c.completedAt - c.initiatedAt,
        overhead: c.completedAt - c.initiatedAt - modelRun,
        dispatch: firstCall.scheduledAt - c.initiatedAt,
        modelQueue: calls.reduce((sum, m) => sum + (m.startedAt - m.scheduledAt), 0),
        modelRun,
        return: c.completedAt - lastCall.completedAt,
        startedAt: eventMs(first),
        modelStartedAt: firstCall.startedAt,
      };
    }),
  );

  // The planner's two calls: the plan, then (after every child completed) the synthesis.
  const plannerCalls = modelCalls(parent, `session ${id}`);
  const synthesis = plannerCalls[1];
  if (plannerCalls.length !== 2 || !synthesis) throw new Error(`session ${id}: expected 2 planner callModel activities, history has ${plannerCalls.length}`);
  const lastChildDone = Math.max(...[...children.values()].map((c) => c.completedAt ?? Infinity));
  if (synthesis.scheduledAt < lastChildDone) throw new Error(`session ${id}: the synthesis call was scheduled before the last task completed`);
  const spread = (times: number[]): number => Math.max(...times) - Math.min(...times);
  return {
    startedAt,
    endOfTurnAt,
    tasks,
    startSpread: spread(tasks.map((t) => t.startedAt)),
    modelStartSpread: spread(tasks.map((t) => t.modelStartedAt)),
    tail: endOfTurnAt - lastChildDone,
    tailToSynthesis: synthesis.scheduledAt - lastChildDone,
  };
}

const FANOUT_DEFINITIONS = {
  taskWallMs: 'per task: parent StartChildWorkflowExecutionInitiated -> parent ChildWorkflowExecutionCompleted',
  taskOverheadMs:
    "per task: taskWallMs - the child's callModel run time (ActivityTaskStarted->Completed); a lower bound, since that run time includes the activity's own Postgres work (blackboard read, trace writes)",
  taskOverheadPartsMs:
    "dispatch: Initiated -> child's first callModel ActivityTaskScheduled; modelQueue: callModel Scheduled -> Started; return: child's last callModel ActivityTaskCompleted -> parent ChildWorkflowExecutionCompleted (the three sum to taskOverheadMs)",
  taskModelRunMs:
    "per task: the child's callModel ActivityTaskStarted -> ActivityTaskCompleted (the scripted model answers at once: this is the activity's Postgres work and the worker's hand-off)",
  fanoutStartSpreadMs: 'per session: last - first child WorkflowExecutionStarted',
  fanoutModelStartSpreadMs: 'per session: last - first child callModel ActivityTaskStarted',
  tailLatencyMs:
    "per session: parent's last ChildWorkflowExecutionCompleted -> the checkpoint marker after the synthesis callModel completed (the one recording blocked/awaiting_input)",
  tailToSynthesisMs: "per session: parent's last ChildWorkflowExecutionCompleted -> the synthesis callModel ActivityTaskScheduled",
  sessionTurnMs: 'per session: WorkflowExecutionStarted -> end of turn (the blocked/awaiting_input checkpoint marker)',
  throughput: "sessions (tasks) over wallSeconds: first session's WorkflowExecutionStarted -> last session's end of turn",
  percentiles: 'nearest-rank over all samples; with fewer than 100 samples p99 is the maximum',
};

// ---------------------------------------------------------------------------------------------------------------
// Runs

type Stack = {
  namespace: string;
  temporalAddress: string;
  connection: Connection;
  temporal: Client;
  databaseUrl: string;
  db: Db;
  notifier: TraceNotifier;
  logger: Logger;
  scenarioDir: string;
};

/** Dev server (unless TEMPORAL_ADDRESS), a fresh migrated database, a Temporal client, Prisma and the trace notifier. */
async function openStack(): Promise<Stack> {
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
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

  const connection = await Connection.connect({ address: temporalAddress });
  cleanups.push({ name: 'temporal connection', fn: () => connection.close() });
  const temporal = new Client({ connection, namespace });

  const logger = pino({ name: 'bench', level: process.env.LOG_LEVEL ?? 'warn' }, pino.destination({ fd: 2, sync: true }));
  const db = createPrisma(databaseUrl);
  cleanups.push({ name: 'prisma', fn: () => db.$disconnect() });
  const notifier = new TraceNotifier(databaseUrl, { onError: (err) => log(`trace notifier: ${err.message}`) });
  await notifier.start();
  cleanups.push({ name: 'trace notifier', fn: () => notifier.close() });

  return { namespace, temporalAddress, connection, temporal, databaseUrl, db, notifier, logger, scenarioDir: path.join(tmp, 'scenarios') };
}

type RunningWorker = { worker: WorkerProcess; taskQueue: string; died: Promise<never> };

/** A fresh worker process on a fresh task queue (its peak RSS is this scenario's alone); registered for cleanup. */
async function launchWorker(stack: Stack): Promise<RunningWorker> {
  const taskQueue = `bench-${randomBytes(6).toString('hex')}`;
  const worker = spawnWorker({
    DATABASE_URL: stack.databaseUrl,
    TEMPORAL_ADDRESS: stack.temporalAddress,
    TEMPORAL_NAMESPACE: stack.namespace,
    TEMPORAL_TASK_QUEUE: taskQueue,
    TROUPE_SCENARIO_DIRS: stack.scenarioDir,
    LOG_LEVEL: 'warn',
  });
  // Registered after Prisma and the notifier, so cleanup stops the worker before closing them and dropping the database.
  cleanups.push({ name: `worker ${worker.child.pid ?? '?'}`, fn: () => stopWorker(worker) });
  await waitForPollers(stack.connection, stack.namespace, taskQueue, worker);
  log(`worker ${worker.child.pid} is polling ${taskQueue}`);
  const died = worker.exited.then(({ code, signal }): never => {
    throw new Error(`the worker exited during the benchmark (${code ?? signal})`);
  });
  died.catch(() => undefined);
  return { worker, taskQueue, died };
}

/** Runs the sessions, waits until every closed session's workflow has ended, samples the worker's peak RSS, stops it. */
async function runSessions(
  stack: Stack,
  w: RunningWorker,
  opts: { sessions: number; concurrency: number },
  startOne: (i: number) => Promise<string>,
  turnTimeoutMs: number,
  service: SessionService,
): Promise<{ ids: string[]; workerPeakRssMb: number }> {
  const run = pool(opts.sessions, opts.concurrency, async (i) => {
    const id = await startOne(i);
    await untilEndOfTurn(service, stack.notifier, id, turnTimeoutMs);
    await service.close(id);
    log(`session ${i + 1}/${opts.sessions} finished its turn (${id})`);
    return id;
  });
  const ids = await Promise.race([run, w.died]);
  // Closed sessions end on their own; wait for that so nothing is in flight when the worker is measured and stopped.
  await Promise.race([Promise.all(ids.map((id) => stack.temporal.workflow.getHandle(id).result())), w.died]);
  const workerPeakRssMb = peakRssMb(w.worker.child.pid as number);
  await stopWorker(w.worker);
  return { ids, workerPeakRssMb };
}

async function runSteps(stack: Stack, opts: StepsOptions) {
  log(`steps: ${opts.sessions} sessions x ${opts.steps} steps, concurrency ${opts.concurrency}`);
  writeStepScenario(stack.scenarioDir, opts.steps);
  const w = await launchWorker(stack);
  // One turn is STEPS tool-calling model calls plus the closing one: lift the per-turn guard above that.
  const sessions = createSessionService({
    db: stack.db,
    temporal: stack.temporal,
    taskQueue: w.taskQueue,
    notifier: stack.notifier,
    logger: stack.logger,
    limits: { maxModelCallsPerTurn: opts.steps + 1 },
  });

  await putAgent(stack.db, {
    id: STEP_AGENT_ID,
    name: 'Bench agent',
    role: 'assistant',
    model: `scripted:${STEP_SCENARIO}`,
    instructions: 'Benchmark agent: writes one blackboard entry per step.',
    tools: ['blackboard_write'],
    permissions: [],
    memoryScope: 'session',
  });

  const { ids, workerPeakRssMb } = await runSessions(
    stack,
    w,
    opts,
    async (i) => (await sessions.start({ goal: `bench session ${i + 1}`, agent: STEP_AGENT_ID })).id,
    120_000 + 2_000 * opts.steps,
    sessions,
  );

  const gaps: number[] = [];
  let firstStart = Infinity;
  let lastEnd = -Infinity;
  for (const id of ids) {
    const t = sessionTimes(await fullHistory(stack.temporal, id));
    if (t.modelCallStarts.length !== opts.steps + 1) {
      throw new Error(`session ${id}: expected ${opts.steps + 1} callModel activities, history has ${t.modelCallStarts.length}`);
    }
    for (let k = 1; k < t.modelCallStarts.length; k++) gaps.push(t.modelCallStarts[k]! - t.modelCallStarts[k - 1]!);
    firstStart = Math.min(firstStart, t.startedAt);
    lastEnd = Math.max(lastEnd, t.endOfTurnAt);
  }
  gaps.sort((a, b) => a - b);
  const wallSeconds = (lastEnd - firstStart) / 1000;

  return {
    scenario: 'steps',
    sessions: opts.sessions,
    steps: opts.steps,
    concurrency: opts.concurrency,
    stepOverheadMs: { p50: round(percentile(gaps, 50), 1), p99: round(percentile(gaps, 99), 1) },
    stepsPerSecond: round((opts.sessions * opts.steps) / wallSeconds, 2),
    wallSeconds: round(wallSeconds, 3),
    workerPeakRssMb: round(workerPeakRssMb, 1),
  };
}

async function runFanout(stack: Stack, opts: FanoutOptions) {
  log(`fanout: ${opts.sessions} sessions x ${opts.tasks} parallel tasks, concurrency ${opts.concurrency}`);
  writeFanoutScenarios(stack.scenarioDir, opts.tasks);
  const w = await launchWorker(stack);
  const sessions = createSessionService({
    db: stack.db,
    temporal: stack.temporal,
    taskQueue: w.taskQueue,
    notifier: stack.notifier,
    logger: stack.logger,
    // The plan has TASKS tasks: lift the per-plan guard (default 20) when K is above it.
    orchestratorLimits: { maxTasksPerPlan: Math.max(DEFAULT_ORCHESTRATOR_LIMITS.maxTasksPerPlan, opts.tasks) },
  });

  await putAgent(stack.db, {
    id: TASK_AGENT_ID,
    name: 'Bench task agent',
    role: 'bench-worker',
    model: `scripted:${TASK_SCENARIO}`,
    instructions: 'Benchmark task agent: answers at once.',
    tools: [],
    permissions: [],
    memoryScope: 'session',
  });
  await putAgent(stack.db, {
    id: PLANNER_AGENT_ID,
    name: 'Bench planner',
    role: PLANNER_ROLE,
    model: `scripted:${PLANNER_SCENARIO}`,
    instructions: 'Benchmark planner: plans independent tasks, then sums up.',
    tools: [],
    permissions: [],
    memoryScope: 'session',
  });

  const { ids, workerPeakRssMb } = await runSessions(
    stack,
    w,
    opts,
    async (i) => (await sessions.start({ goal: `bench fan-out session ${i + 1}`, agent: PLANNER_AGENT_ID, maxParallelTasks: opts.tasks })).id,
    120_000 + 2_000 * opts.tasks,
    sessions,
  );

  const perSession = await Promise.all(ids.map((id) => fanoutSessionTimes(stack.temporal, id, opts.tasks)));
  const tasks = perSession.flatMap((s) => s.tasks);
  const firstStart = Math.min(...perSession.map((s) => s.startedAt));
  const lastEnd = Math.max(...perSession.map((s) => s.endOfTurnAt));
  const wallSeconds = (lastEnd - firstStart) / 1000;

  return {
    scenario: 'fanout',
    sessions: opts.sessions,
    tasks: opts.tasks,
    concurrency: opts.concurrency,
    taskWallMs: stats(tasks.map((t) => t.wall)),
    taskOverheadMs: stats(tasks.map((t) => t.overhead)),
    taskOverheadPartsMs: {
      dispatch: stats(tasks.map((t) => t.dispatch)),
      modelQueue: stats(tasks.map((t) => t.modelQueue)),
      return: stats(tasks.map((t) => t.return)),
    },
    taskModelRunMs: stats(tasks.map((t) => t.modelRun)),
    fanoutStartSpreadMs: stats(perSession.map((s) => s.startSpread)),
    fanoutModelStartSpreadMs: stats(perSession.map((s) => s.modelStartSpread)),
    tailLatencyMs: stats(perSession.map((s) => s.tail)),
    tailToSynthesisMs: stats(perSession.map((s) => s.tailToSynthesis)),
    sessionTurnMs: stats(perSession.map((s) => s.endOfTurnAt - s.startedAt)),
    sessionsPerSecond: round(opts.sessions / wallSeconds, 3),
    tasksPerSecond: round((opts.sessions * opts.tasks) / wallSeconds, 2),
    wallSeconds: round(wallSeconds, 3),
    workerPeakRssMb: round(workerPeakRssMb, 1),
    definitions: FANOUT_DEFINITIONS,
  };
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseOptions();
  const stack = await openStack();
  const machine = { cpus: os.availableParallelism(), memGb: round(os.totalmem() / 1024 ** 3, 1), node: process.version };
  let result: Record<string, unknown>;
  if (opts.scenario === 'steps') {
    result = { ...(await runSteps(stack, opts.steps)), machine };
  } else if (opts.scenario === 'fanout') {
    result = { ...(await runFanout(stack, opts.fanout)), machine };
  } else {
    const steps = await runSteps(stack, opts.steps);
    const fanout = await runFanout(stack, opts.fanout);
    result = { scenario: 'all', steps, fanout, machine };
  }
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
