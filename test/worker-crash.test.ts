import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { putAgent } from '../service/agents';
import { git, makeRepo } from './support/repo';
import { ORCHESTRATION_AGENTS, scriptedPlanner } from './support/orchestration-agents';
import { startStack, TEST_SCENARIOS, type Stack } from './support/stack';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
let stack: Stack;
const workers: ChildProcess[] = [];

/** Starts `npm run worker`'s entry point as a real child process on this test's task queue. */
async function spawnWorker(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: stack.config.databaseUrl,
      TEMPORAL_ADDRESS: stack.config.temporalAddress,
      TEMPORAL_TASK_QUEUE: stack.taskQueue,
      TROUPE_SCENARIO_DIRS: TEST_SCENARIOS,
      TROUPE_WORKSPACES_DIR: stack.config.workspacesDir,
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  workers.push(child);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not start:\n${output}`)), 60_000);
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('"msg":"worker started"')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}:\n${output}`)));
  });
  return child;
}

beforeAll(async () => {
  stack = await startStack({ worker: false });
});
// Each test starts with no worker on the task queue: the replacement workers of earlier tests are stopped, so the
// worker a test kills is the one running its session.
beforeEach(async () => {
  await Promise.all(
    workers.filter((w) => w.exitCode === null && w.signalCode === null).map((w) => {
      const exited = new Promise((r) => w.once('exit', r));
      w.kill('SIGKILL');
      return exited;
    }),
  );
});
afterAll(async () => {
  for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  await stack?.stop();
});

describe('a worker killed mid-session', () => {
  it('is replaced by a new worker and the session completes with no duplicated trace events or records', async () => {
    const first = await spawnWorker();
    const agent = await stack.agent('plodder', 'slow-steps', { tools: ['blackboard_write'] });
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'four careful steps', agent })).body.id as string;

    // Kill the worker with SIGKILL while the third model call is in flight (two steps done, three to go).
    let modelCalls = 0;
    await stack.events(id, { until: (e) => e.type === 'workflow.node.enter' && (e.payload as any).kind === 'model_call' && ++modelCalls === 3 });
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect((await stack.sessions.get(id)).status).toBe('running');

    await spawnWorker();
    const session = await stack.waitForStatus(id, (s) => s.status === 'blocked', 90_000);
    expect(session).toMatchObject({ statusReason: 'awaiting_input', finalAnswer: 'all four steps are done' });

    const rows = await stack.traceRows(id);
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
    const count = (type: string) => rows.filter((r) => r.type === type).length;
    expect(count('session.started')).toBe(1);
    expect(count('message.user')).toBe(1);
    expect(count('message.assistant')).toBe(5);
    expect(count('tool.called')).toBe(4);
    expect(count('tool.result')).toBe(4);
    expect(count('workflow.node.enter')).toBe(9 + 1); // 5 model calls, 4 tool runs, then waiting for input
    expect(count('workflow.node.exit')).toBe(9);
    // Each tool call ran its side effect exactly once.
    const notes = await stack.db.blackboardEntry.findMany({ where: { sessionId: id }, orderBy: { key: 'asc' } });
    expect(notes.map((n) => n.key)).toEqual(['step1', 'step2', 'step3', 'step4']);
    // The stream a client would see is the same dense sequence.
    const streamed = await stack.events(id, { until: (e) => e.seq === rows.length });
    expect(streamed.map((m) => Number(m.id))).toEqual(rows.map((r) => r.seq));
    await stack.api('POST', `/v1/sessions/${id}/close`);
    await stack.waitForStatus(id, (s) => s.status === 'done');
  }, 150_000);

  it('loses nothing of an orchestrated fan-out: the tasks in flight finish on the new worker, each dispatched and completed once', async () => {
    const first = await spawnWorker();
    for (const a of ORCHESTRATION_AGENTS) await putAgent(stack.db, a);
    await putAgent(stack.db, scriptedPlanner('crash-planner', 'plan-three'));
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'parts, then combine', agent: 'crash-planner' })).body.id as string;

    // Kill the worker while tasks a and b are running in parallel (their model calls take 800 ms).
    await stack.events(id, { until: (e) => e.type === 'workflow.node.enter' && (e.payload as any).kind === 'await_tasks' });
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    await spawnWorker();
    const session = await stack.waitForStatus(id, (s) => s.statusReason === 'awaiting_input' || s.status === 'failed', 120_000);
    expect(session).toMatchObject({ status: 'blocked', finalAnswer: 'Final answer: A, B and C are done.' });

    const tasks = await stack.db.task.findMany({ where: { sessionId: id, parentId: { not: null } }, orderBy: { planKey: 'asc' } });
    expect(tasks.map((t) => [t.planKey, t.status, t.attempts])).toEqual([
      ['a', 'done', 1],
      ['b', 'done', 1],
      ['c', 'done', 1],
    ]);
    const rows = await stack.traceRows(id);
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
    for (const t of tasks) {
      const of = (type: string) => rows.filter((r) => r.type === type && (r.payload as any).taskId === t.id).length;
      expect([of('task.created'), of('task.routed'), of('task.dispatched'), of('task.completed')]).toEqual([1, 1, 1, 1]);
    }
    expect(rows.filter((r) => r.type === 'plan.accepted')).toHaveLength(1);
  }, 180_000);

  it('leaves the worktree as if a mutating command ran once or not at all when the worker dies in the middle of it', async () => {
    const first = await spawnWorker();
    const agent = await stack.agent('c-slow-mutator', 'slow-mutation', { role: 'test-coder', tools: ['run_command'], permissions: ['read', 'write', 'exec'], memoryScope: 'none' });
    const repo = makeRepo();
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'write two files', agent, repo })).body.id as string;

    // Wait until the command is half done (a.txt written, b.txt not yet), then kill the worker with SIGKILL.
    const root = await (async () => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const s = await stack.sessions.get(id).catch(() => undefined);
        if (s?.workspace && existsSync(path.join(s.workspace.root, 'a.txt'))) return s.workspace.root;
        if (Date.now() > deadline) throw new Error('the command never started');
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    expect(existsSync(path.join(root, 'b.txt'))).toBe(false);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    await new Promise((r) => setTimeout(r, 7_000)); // longer than the command: a surviving sandbox would write b.txt now
    expect(existsSync(path.join(root, 'b.txt'))).toBe(false);

    await spawnWorker();
    const session = await stack.waitForStatus(id, (s) => s.statusReason === 'awaiting_input' || s.status === 'failed', 120_000);
    expect(session.status).toBe('blocked');
    expect(readFileSync(path.join(root, 'a.txt'), 'utf8')).toBe('partial\n');
    expect(readFileSync(path.join(root, 'b.txt'), 'utf8')).toBe('done\n');
    // No commit on the session branch ever holds the half-done state (a.txt without b.txt).
    const commits = git(repo, 'rev-list', `troupe/${id}`).split('\n');
    for (const sha of commits) {
      const files = git(repo, 'ls-tree', '--name-only', sha).split('\n');
      expect(files.includes('a.txt') && !files.includes('b.txt'), `commit ${sha} has a.txt without b.txt`).toBe(false);
    }
    // The step ran to completion exactly once as far as the history can tell: one snapshot with both files.
    const rows = await stack.traceRows(id);
    const snaps = rows.filter((r) => r.type === 'workspace.snapshot');
    expect(snaps).toHaveLength(1);
    expect(git(repo, 'ls-tree', '--name-only', (snaps[0]!.payload as any).sha).split('\n')).toEqual(expect.arrayContaining(['a.txt', 'b.txt']));
  }, 180_000);
});
