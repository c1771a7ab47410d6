/**
 * Records the workflow histories that test/replay.test.ts replays, so a non-deterministic change to workflow code
 * fails CI. Run it only when a workflow change is intentionally incompatible with the recorded histories:
 *
 *   node_modules/.bin/tsx scripts/record-histories.ts
 *
 * Everything it needs is its own and temporary: a Temporal dev server (state in a temp folder, no UI), a fresh Postgres
 * database (troupe_histories_<pid>, dropped at the end), an in-process worker and the session service. Each session
 * below runs the same scripted scenario every time, so the set of files and the shape of each history are stable
 * (ids and timestamps differ between recordings). Files land in test/histories/ as pretty-printed JSON; the old
 * *.json files there are replaced only after every session was recorded successfully.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowExecutionStatusName } from '@temporalio/client';
import { historyToJSON, type History } from '@temporalio/common/lib/proto-utils';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { Session, SessionStatus } from '../core/schemas';
import { loadConfig } from '../lib/config';
import { createPrisma, type Db } from '../lib/db/client';
import { dropDatabase, ensureDatabase, migrate } from '../lib/db/migrate';
import { TraceNotifier } from '../lib/db/trace';
import { startDevServer, type DevServer } from '../lib/dev-server';
import { createLogger } from '../lib/logger';
import { PROJECT_ROOT } from '../lib/temporal-cli';
import { ensureBuiltinAgents, putAgent } from '../service/agents';
import { createSessionService, type SessionService } from '../service/sessions';
import { createApprovalService, type ApprovalService } from '../service/approvals';
import { makeRepo } from '../test/support/repo';
import { createTroupeWorker, installTemporalLogging } from '../worker/build';
import { ORCHESTRATION_AGENTS, scriptedPlanner } from '../test/support/orchestration-agents';

const HISTORIES_DIR = path.join(PROJECT_ROOT, 'test', 'histories');
const SCENARIOS_DIR = path.join(PROJECT_ROOT, 'test', 'scenarios');
const BASE_URL = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';
/** Fixed, so the task queue recorded in every history is the same from one recording to the next. */
const TASK_QUEUE = 'troupe-histories';
/** Small enough that the chatty-loop session continues-as-new several times. */
const CONTINUE_AS_NEW_LIMITS = { maxHistoryEvents: 60 };
const WAIT_TIMEOUT_MS = 60_000;

type Recorded = { file: string; events: number; status: WorkflowExecutionStatusName };

type Ctx = {
  db: Db;
  temporal: Client;
  sessions: SessionService;
  /** The same service, but with limits small enough to force continue-as-new. */
  smallSessions: SessionService;
  /** Sessions whose approvals expire after a second. */
  hastySessions: SessionService;
  approvals: ApprovalService;
};

function log(msg: string): void {
  console.log(`[record-histories] ${msg}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls the service until the session satisfies `predicate`. */
async function waitFor(ctx: Ctx, id: string, what: string, predicate: (s: Session) => boolean): Promise<Session> {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  for (;;) {
    const s = await ctx.sessions.get(id);
    if (predicate(s)) return s;
    if (Date.now() > deadline) throw new Error(`session ${id}: waited ${WAIT_TIMEOUT_MS} ms for ${what}, still ${s.status}/${s.statusReason}`);
    await sleep(100);
  }
}
const status = (ctx: Ctx, id: string, wanted: SessionStatus) => waitFor(ctx, id, wanted, (s) => s.status === wanted);

/** Waits until the workflow's model activity has been picked up by the worker (it is running, not just scheduled). */
async function waitForModelCallInFlight(ctx: Ctx, id: string): Promise<void> {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  const handle = ctx.temporal.workflow.getHandle(id);
  for (;;) {
    const { raw } = await handle.describe();
    const running = (raw.pendingActivities ?? []).some(
      (a) => a.activityType?.name === 'callModel' && Number(a.state) === 2 /* PENDING_ACTIVITY_STATE_STARTED */,
    );
    if (running) return;
    if (Date.now() > deadline) throw new Error(`session ${id}: the model call never started`);
    await sleep(100);
  }
}

async function agent(db: Db, scenario: string): Promise<string> {
  const id = `replay-${scenario}`;
  await putAgent(db, {
    id,
    name: id,
    role: 'assistant',
    model: `scripted:${scenario}`,
    instructions: `You are the ${id} agent used to record replay histories.`,
    tools: ['blackboard_write', 'blackboard_read'],
    permissions: [],
    memoryScope: 'session',
  });
  return id;
}

/** Waits for the workflow itself to close (the session row is updated one activity earlier) and checks how it ended. */
async function closedAs(ctx: Ctx, id: string, expected: WorkflowExecutionStatusName): Promise<void> {
  const handle = ctx.temporal.workflow.getHandle(id);
  await handle.result().catch(() => undefined);
  const { status: actual } = await handle.describe();
  if (actual.name !== expected) throw new Error(`workflow ${id} ended ${actual.name}, expected ${expected}`);
}

/** Every run of a workflow chain, oldest first: walks back from the latest run through continuedExecutionRunId. */
async function runIdsOf(ctx: Ctx, id: string): Promise<string[]> {
  const runIds: string[] = [];
  let runId: string | undefined = (await ctx.temporal.workflow.getHandle(id).describe()).runId;
  while (runId) {
    runIds.unshift(runId);
    const history: History = await ctx.temporal.workflow.getHandle(id, runId).fetchHistory();
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    runId = started?.continuedExecutionRunId || undefined;
  }
  return runIds;
}

async function historyJson(ctx: Ctx, id: string, runId?: string): Promise<{ json: string; events: number }> {
  const history = await ctx.temporal.workflow.getHandle(id, runId).fetchHistory();
  return { json: historyToJSON(history) + '\n', events: history.events?.length ?? 0 };
}

/** Registers the orchestration scenarios' task agents and a scripted planner; returns the planner's id. */
async function planner(db: Db, scenario: string): Promise<string> {
  for (const a of ORCHESTRATION_AGENTS) await putAgent(db, a);
  const id = `replay-${scenario}`;
  await putAgent(db, scriptedPlanner(id, scenario));
  return id;
}

/** Starts an orchestrated session, waits for its answer and closes it. */
async function orchestrate(ctx: Ctx, scenario: string, goal: string): Promise<string> {
  const { id } = await ctx.sessions.start({ goal, agent: await planner(ctx.db, scenario) });
  const s = await waitFor(ctx, id, 'the final answer', (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
  if (s.status !== 'blocked') throw new Error(`${scenario}: session ended ${s.status}/${s.statusReason}`);
  await ctx.sessions.close(id);
  await status(ctx, id, 'done');
  return id;
}

/** Ids of the child workflows (task runs) a session started, in start order, from its history. */
async function childIdsOf(ctx: Ctx, id: string): Promise<string[]> {
  const history = await ctx.temporal.workflow.getHandle(id).fetchHistory();
  return (history.events ?? []).flatMap((e) => {
    const childId = e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId;
    return childId ? [childId] : [];
  });
}

const CODING_TOOLS = ['read_file', 'write_file', 'edit_file', 'list_dir', 'search', 'run_command', 'git_diff', 'git_status'];

/** A scripted coding agent with the coding tools. */
async function coder(db: Db, scenario: string, permissions = ['read', 'write', 'exec', 'git']): Promise<string> {
  const id = `replay-${scenario}`;
  await putAgent(db, { id, name: id, role: 'coder', model: `scripted:${scenario}`, instructions: 'Scripted coder.', tools: CODING_TOOLS, permissions, memoryScope: 'none' });
  return id;
}

/** Waits until the session has a pending approval and decides it. */
async function decidePending(ctx: Ctx, id: string, decision: 'approve' | 'deny'): Promise<void> {
  await waitFor(ctx, id, 'an approval request', (s) => s.statusReason === 'awaiting_approval');
  const [approval] = await ctx.approvals.list(id, 'pending');
  if (!approval) throw new Error(`session ${id}: no pending approval`);
  await ctx.approvals.decide(approval.id, { decision, by: 'recorder', reason: `${decision} for the recording` });
}

type Scenario = {
  name: string;
  /** Also write the history of every child workflow (task run) as <name>.task<N>.json. */
  children?: boolean;
  /** How the workflow (the last run, for a chain) ends in Temporal. */
  temporalStatus: WorkflowExecutionStatusName;
  /** Also write every run of a continue-as-new chain as <name>-run<N>.json. */
  chain?: boolean;
  run(ctx: Ctx): Promise<string>;
};

const SCENARIOS: Scenario[] = [
  {
    name: 'happy-path',
    temporalStatus: 'COMPLETED',
    async run(ctx) {
      const { id } = await ctx.sessions.start({ goal: 'remember this for later', agent: await agent(ctx.db, 'note-then-answer') });
      await status(ctx, id, 'blocked');
      await ctx.sessions.sendMessage(id, 'and one more thing');
      await waitFor(ctx, id, 'the second answer', (s) => s.status === 'blocked' && s.finalAnswer === 'Second answer: and one more thing');
      await ctx.sessions.close(id);
      await status(ctx, id, 'done');
      return id;
    },
  },
  {
    name: 'cancel-during-model',
    temporalStatus: 'CANCELLED',
    async run(ctx) {
      const { id } = await ctx.sessions.start({ goal: 'take your time', agent: await agent(ctx.db, 'slow') });
      await waitForModelCallInFlight(ctx, id);
      await ctx.sessions.cancel(id);
      await status(ctx, id, 'cancelled');
      return id;
    },
  },
  {
    name: 'scenario-exhausted',
    temporalStatus: 'FAILED',
    async run(ctx) {
      const { id } = await ctx.sessions.start({ goal: 'go', agent: await agent(ctx.db, 'exhausted') });
      await status(ctx, id, 'failed');
      return id;
    },
  },
  {
    name: 'bad-tool-args',
    temporalStatus: 'COMPLETED',
    async run(ctx) {
      const { id } = await ctx.sessions.start({ goal: 'write something', agent: await agent(ctx.db, 'bad-tool-args') });
      await status(ctx, id, 'blocked');
      await ctx.sessions.close(id);
      await status(ctx, id, 'done');
      return id;
    },
  },
  {
    name: 'flaky-retry',
    temporalStatus: 'COMPLETED',
    async run(ctx) {
      const { id } = await ctx.sessions.start({ goal: 'try again', agent: await agent(ctx.db, 'flaky') });
      await status(ctx, id, 'blocked');
      await ctx.sessions.close(id);
      await status(ctx, id, 'done');
      return id;
    },
  },
  {
    name: 'idle-timeout',
    temporalStatus: 'COMPLETED',
    async run(ctx) {
      const { id } = await ctx.sessions.start({
        goal: 'then leave',
        agent: await agent(ctx.db, 'note-then-answer'),
        idleTimeoutSeconds: 1,
      });
      const s = await status(ctx, id, 'done');
      if (s.statusReason !== 'idle_timeout') throw new Error(`idle-timeout session ended with reason ${s.statusReason}`);
      return id;
    },
  },
  {
    name: 'continue-as-new',
    temporalStatus: 'COMPLETED',
    chain: true,
    async run(ctx) {
      const { id } = await ctx.smallSessions.start({ goal: 'message 0', agent: await agent(ctx.db, 'chatty-loop') });
      await status(ctx, id, 'blocked');
      for (let i = 1; i <= 6; i++) {
        await ctx.smallSessions.sendMessage(id, `message ${i}`);
        await waitFor(ctx, id, `answer ${i}`, (s) => s.status === 'blocked' && s.finalAnswer === `echo: message ${i}`);
      }
      await ctx.smallSessions.close(id);
      await status(ctx, id, 'done');
      return id;
    },
  },
  {
    name: 'orchestrated-fanout',
    temporalStatus: 'COMPLETED',
    children: true,
    run: (ctx) => orchestrate(ctx, 'plan-three', 'Build the thing in parts'),
  },
  {
    name: 'orchestrated-retry',
    temporalStatus: 'COMPLETED',
    children: true,
    run: (ctx) => orchestrate(ctx, 'plan-one-flaky', 'Do it even if it fails once'),
  },
  {
    name: 'orchestrated-timeout-replan',
    temporalStatus: 'COMPLETED',
    children: true,
    run: (ctx) => orchestrate(ctx, 'plan-timeout-replan', 'Finish even if a task hangs'),
  },
  {
    name: 'orchestrated-handoff',
    temporalStatus: 'COMPLETED',
    children: true,
    run: (ctx) => orchestrate(ctx, 'plan-handoff', 'Change and review'),
  },
  {
    name: 'orchestrated-invalid-plan',
    temporalStatus: 'COMPLETED',
    run: (ctx) => orchestrate(ctx, 'plan-bad-then-good', 'Plan carefully'),
  },
  {
    name: 'coding-edit-test-rollback',
    temporalStatus: 'COMPLETED',
    async run(ctx) {
      const repo = makeRepo();
      const { id } = await ctx.sessions.start({ goal: 'fix add()', agent: await coder(ctx.db, 'coder-fix'), repo });
      const s = await waitFor(ctx, id, 'the fix', (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
      if (s.status !== 'blocked' || !s.workspace) throw new Error(`coding session ended ${s.status}/${s.statusReason}`);
      await ctx.sessions.rollback(id, s.workspace.baseSha, 'recorder');
      await ctx.sessions.close(id);
      await status(ctx, id, 'done');
      return id;
    },
  },
  {
    name: 'coding-deny-and-ask',
    temporalStatus: 'COMPLETED',
    async run(ctx) {
      const { id } = await ctx.sessions.start({ goal: 'clean up and publish', agent: await coder(ctx.db, 'guarded-commands'), repo: makeRepo() });
      await decidePending(ctx, id, 'deny');
      await waitFor(ctx, id, 'the answer', (x) => x.statusReason === 'awaiting_input');
      await ctx.sessions.close(id);
      await status(ctx, id, 'done');
      return id;
    },
  },
  {
    name: 'coding-approval-timeout',
    temporalStatus: 'COMPLETED',
    async run(ctx) {
      const { id } = await ctx.hastySessions.start({ goal: 'add a .env', agent: await coder(ctx.db, 'write-env'), repo: makeRepo() });
      await waitFor(ctx, id, 'the answer', (x) => x.statusReason === 'awaiting_input');
      await ctx.sessions.close(id);
      await status(ctx, id, 'done');
      return id;
    },
  },
  {
    name: 'orchestrated-task-approval',
    temporalStatus: 'COMPLETED',
    children: true,
    async run(ctx) {
      // plan-env-task assigns its task to `c-env-task` by id.
      await putAgent(ctx.db, { id: 'c-env-task', name: 'c-env-task', role: 'coder', model: 'scripted:write-env', instructions: 'Scripted coder.', tools: CODING_TOOLS, permissions: ['read', 'write'], memoryScope: 'none' });
      const { id } = await ctx.sessions.start({ goal: 'add configuration', agent: await planner(ctx.db, 'plan-env-task'), repo: makeRepo() });
      await decidePending(ctx, id, 'approve');
      await waitFor(ctx, id, 'the answer', (x) => x.statusReason === 'awaiting_input');
      await ctx.sessions.close(id);
      await status(ctx, id, 'done');
      return id;
    },
  },
  {
    name: 'orchestrated-cancel',
    temporalStatus: 'CANCELLED',
    children: true,
    async run(ctx) {
      const { id } = await ctx.sessions.start({ goal: 'Fan out and get cancelled', agent: await planner(ctx.db, 'plan-fanout-slow') });
      const deadline = Date.now() + WAIT_TIMEOUT_MS;
      while ((await ctx.db.task.count({ where: { sessionId: id, status: 'running', parentId: { not: null } } })) < 3) {
        if (Date.now() > deadline) throw new Error('orchestrated-cancel: the three tasks never ran');
        await sleep(100);
      }
      await ctx.sessions.cancel(id);
      await status(ctx, id, 'cancelled');
      return id;
    },
  },
];

async function main(): Promise<void> {
  const dbName = `troupe_histories_${process.pid}`;
  const databaseUrl = `${BASE_URL}/${dbName}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'troupe-histories-temporal-'));
  const logger = createLogger({ name: 'record-histories', level: process.env.LOG_LEVEL ?? 'error' });
  installTemporalLogging(logger);

  let server: DevServer | undefined;
  let db: Db | undefined;
  let connection: Connection | undefined;
  let nativeConnection: NativeConnection | undefined;
  let notifier: TraceNotifier | undefined;
  let worker: Worker | undefined;
  let workerRun: Promise<void> | undefined;
  try {
    log(`database ${dbName}`);
    await dropDatabase(databaseUrl);
    await ensureDatabase(databaseUrl);
    await migrate(databaseUrl);

    server = await startDevServer({ dbFilename: path.join(stateDir, 'temporal.db'), ui: false, log });
    const config = {
      ...loadConfig({ DATABASE_URL: databaseUrl, TEMPORAL_ADDRESS: server.address, LOG_LEVEL: 'warn' }),
      taskQueue: TASK_QUEUE,
      scenarioDirs: [SCENARIOS_DIR],
      workspacesDir: path.join(stateDir, 'workspaces'),
    };

    db = createPrisma(databaseUrl);
    await ensureBuiltinAgents(db);
    nativeConnection = await NativeConnection.connect({ address: server.address });
    worker = await createTroupeWorker({ config, db, logger, connection: nativeConnection, taskQueue: TASK_QUEUE });
    workerRun = worker.run();

    connection = await Connection.connect({ address: server.address });
    const temporal = new Client({ connection, namespace: config.temporalNamespace });
    notifier = new TraceNotifier(databaseUrl);
    await notifier.start();
    const deps = { db, temporal, taskQueue: TASK_QUEUE, notifier, logger };
    const ctx: Ctx = {
      db,
      temporal,
      sessions: createSessionService(deps),
      smallSessions: createSessionService({ ...deps, limits: CONTINUE_AS_NEW_LIMITS }),
      hastySessions: createSessionService({ ...deps, approvalTimeoutMs: 1_000 }),
      approvals: createApprovalService({ db, temporal, logger }),
    };

    // Recorded in memory first: a failed recording leaves the checked-in histories untouched.
    const files = new Map<string, string>();
    const summary: Recorded[] = [];
    for (const scenario of SCENARIOS) {
      log(`running ${scenario.name}`);
      const id = await scenario.run(ctx);
      await closedAs(ctx, id, scenario.temporalStatus);
      const latest = await historyJson(ctx, id);
      files.set(`${scenario.name}.json`, latest.json);
      summary.push({ file: `${scenario.name}.json`, events: latest.events, status: scenario.temporalStatus });
      if (scenario.children) {
        for (const [i, childId] of (await childIdsOf(ctx, id)).entries()) {
          const child = await historyJson(ctx, childId);
          const file = `${scenario.name}.task${i + 1}.json`;
          files.set(file, child.json);
          summary.push({ file, events: child.events, status: (await ctx.temporal.workflow.getHandle(childId).describe()).status.name });
        }
      }
      if (scenario.chain) {
        const runIds = await runIdsOf(ctx, id);
        if (runIds.length < 2) throw new Error(`${scenario.name}: expected a continue-as-new chain, got ${runIds.length} run`);
        for (const [i, runId] of runIds.entries()) {
          const run = await historyJson(ctx, id, runId);
          const file = `${scenario.name}-run${i + 1}.json`;
          files.set(file, run.json);
          summary.push({ file, events: run.events, status: i === runIds.length - 1 ? scenario.temporalStatus : 'CONTINUED_AS_NEW' });
        }
      }
    }

    for (const old of readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json'))) rmSync(path.join(HISTORIES_DIR, old));
    for (const [file, json] of files) writeFileSync(path.join(HISTORIES_DIR, file), json);

    log(`wrote ${files.size} histories to ${path.relative(process.cwd(), HISTORIES_DIR) || HISTORIES_DIR}:`);
    const width = Math.max(...summary.map((s) => s.file.length));
    for (const s of summary) console.log(`  ${s.file.padEnd(width)}  ${String(s.events).padStart(4)} events  ${s.status}`);
  } finally {
    if (worker) {
      worker.shutdown();
      await workerRun?.catch((err: unknown) => log(`worker stopped with an error: ${String(err)}`));
    }
    await nativeConnection?.close().catch(() => undefined);
    await notifier?.close();
    await connection?.close().catch(() => undefined);
    await db?.$disconnect();
    await server?.stop();
    rmSync(stateDir, { recursive: true, force: true });
    await dropDatabase(databaseUrl).catch((err: unknown) => log(`could not drop ${dbName}: ${String(err)}`));
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`record-histories failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
