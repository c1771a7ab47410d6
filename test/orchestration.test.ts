/**
 * Multi-agent orchestration, told as stories against the real Temporal dev server and Postgres with scripted models:
 * plan, route, parallel dispatch with dependencies, retry, timeout and replan, handoff, blackboard scopes, invalid
 * plans, cancel in the middle of a fan-out. Each story checks what a user would: the session, the task tree from the
 * API, the blackboard and the trace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskNode } from '../core/schemas';
import { putAgent } from '../service/agents';
import { ORCHESTRATION_AGENTS, scriptedPlanner } from './support/orchestration-agents';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ orchestratorLimits: { defaultBackoffMs: 100 } });
  for (const agent of ORCHESTRATION_AGENTS) await putAgent(stack.db, agent);
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

async function planner(id: string, scenario: string) {
  await putAgent(stack.db, scriptedPlanner(id, scenario));
  return id;
}

async function start(body: Record<string, unknown>) {
  const res = await stack.api('POST', '/v1/sessions', body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}

async function tree(sessionId: string): Promise<TaskNode[]> {
  const res = await stack.api('GET', `/v1/sessions/${sessionId}/tasks`);
  expect(res.status).toBe(200);
  return res.body.data as TaskNode[];
}

const payload = (e: { payload: unknown }) => e.payload as Record<string, any>;

describe('orchestrated sessions', () => {
  it('plans three tasks: two run in parallel, the third waits for both and gets their results; the API shows what the workflow decided', async () => {
    const p = await planner('o-planner-three', 'plan-three');
    const id = await start({ goal: 'Build the thing in parts', agent: p });
    const s = await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
    expect(s).toMatchObject({ status: 'blocked', statusReason: 'awaiting_input', finalAnswer: 'Final answer: A, B and C are done.' });

    const roots = await tree(id);
    expect(roots).toHaveLength(1);
    const root = roots[0]!;
    expect(root).toMatchObject({ id: `${id}.r1`, assignedAgent: p, status: 'done', output: 'Final answer: A, B and C are done.' });
    const byKey = Object.fromEntries(root.children.map((t) => [t.planKey, t]));
    expect(Object.keys(byKey).sort()).toEqual(['a', 'b', 'c']);
    for (const t of root.children) expect(t.status).toBe('done');
    expect(byKey.c!.dependsOn.sort()).toEqual([byKey.a!.id, byKey.b!.id].sort());

    const rows = await stack.traceRows(id);
    const seqOf = (type: string, taskId: string) => rows.find((r) => r.type === type && payload(r).taskId === taskId)!.seq;
    const [a, b, c] = [byKey.a!.id, byKey.b!.id, byKey.c!.id];
    // a and b were both dispatched before either finished: they ran at the same time.
    expect(Math.max(seqOf('task.dispatched', a), seqOf('task.dispatched', b))).toBeLessThan(Math.min(seqOf('task.completed', a), seqOf('task.completed', b)));
    // c started only after both finished, and was handed both results.
    expect(seqOf('task.dispatched', c)).toBeGreaterThan(Math.max(seqOf('task.completed', a), seqOf('task.completed', b)));
    const cPrompt = rows.find((r) => r.type === 'message.task' && r.taskId === c)!;
    expect(payload(cPrompt).content).toContain('slow result for: # Your task\nWrite part A');
    expect(payload(cPrompt).content).toContain('Write part B');
    expect(byKey.c!.output).toContain('echo: # Your task\nCombine A and B');

    // Every routing decision is in the trace, and the task registry agrees with the workflow's last word on each task.
    for (const t of root.children) {
      const routed = rows.filter((r) => r.type === 'task.routed' && payload(r).taskId === t.id);
      expect(routed.map((r) => payload(r).by)).toEqual(['assignment']);
      expect(t.assignedAgent).toBe(payload(routed.at(-1)!).agent);
      const last = rows.filter((r) => r.type.startsWith('task.') && r.type !== 'task.routed' && payload(r).taskId === t.id).at(-1)!;
      expect(payload(last).status).toBe(t.status);
      expect(t.agentVersion).toBe(1);
    }
    // Task events carry the task id in the trace column too (what an auditor filters by).
    expect(rows.filter((r) => r.taskId === a).map((r) => r.type)).toContain('message.assistant');
    const one = await stack.api('GET', `/v1/tasks/${c}`);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ id: c, sessionId: id, parentId: root.id, status: 'done', assignedAgent: 'o-echo' });
    expect((await stack.api('GET', '/v1/tasks/nope')).status).toBe(404);
  });

  it('retries a task whose agent fails once, and the second attempt succeeds', async () => {
    const p = await planner('o-planner-flaky', 'plan-one-flaky');
    const id = await start({ goal: 'Do it even if it fails once', agent: p });
    const s = await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
    expect(s.status).toBe('blocked');
    const [task] = (await tree(id))[0]!.children;
    expect(task).toMatchObject({ status: 'done', attempts: 2, output: 'worked on the second attempt' });
    const rows = await stack.traceRows(id);
    const retrying = rows.filter((r) => r.type === 'task.retrying');
    expect(retrying).toHaveLength(1);
    expect(payload(retrying[0]!)).toMatchObject({ taskId: task!.id, attempt: 1, maxAttempts: 2 });
    expect(payload(retrying[0]!).reason).toContain('scripted failure');
    expect(rows.filter((r) => r.type === 'task.dispatched').map((r) => payload(r).attempt)).toEqual([1, 2]);
  });

  it('fails a task that passes its deadline, cancels its run and replans around it', async () => {
    const p = await planner('o-planner-timeout', 'plan-timeout-replan');
    const id = await start({ goal: 'Finish even if a task hangs', agent: p });
    const s = await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed', 90_000);
    expect(s).toMatchObject({ status: 'blocked', finalAnswer: 'Replanned around the timeout; the fast task finished.' });
    const children = (await tree(id))[0]!.children;
    const slow = children.find((t) => t.planKey === 'slow')!;
    const fast = children.find((t) => t.planKey === 'fast')!;
    expect(slow.status).toBe('failed');
    expect(slow.statusReason).toMatch(/^timeout: no result within 2s/);
    expect(fast).toMatchObject({ status: 'done', assignedAgent: 'o-echo' });
    const rows = await stack.traceRows(id);
    const replanning = rows.find((r) => r.type === 'plan.replanning')!;
    expect(payload(replanning).failed).toEqual([expect.objectContaining({ taskId: slow.id, planKey: 'slow' })]);
    // The timed-out run was cancelled (its child workflow recorded it), not left running.
    expect(rows.some((r) => r.type === 'task.attempt.cancelled' && r.taskId === slow.id)).toBe(true);
    // The planner was told what failed and why.
    const replanContext = rows.filter((r) => r.type === 'model.context' && r.actor === `agent:${p}`)[1]!;
    expect(JSON.stringify(payload(replanContext).messages)).toContain('timeout: no result within 2s');
  }, 120_000);

  it('follows a handoff from a coder to a reviewer, after telling the coder its first handoff target does not exist', async () => {
    const p = await planner('o-planner-handoff', 'plan-handoff');
    const id = await start({ goal: 'Change and review', agent: p });
    await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
    const [task] = (await tree(id))[0]!.children;
    expect(task).toMatchObject({ status: 'done', assignedAgent: 'o-reviewer' });
    expect(String(task!.output)).toContain('reviewed:');
    expect(String(task!.output)).toContain('I rewrote parse() to be iterative');
    const rows = await stack.traceRows(id);
    const handoffs = rows.filter((r) => r.type === 'handoff');
    expect(handoffs.map(payload)).toEqual([
      expect.objectContaining({ taskId: task!.id, from: 'o-coder', to: 'o-reviewer', reason: 'the change needs a review' }),
    ]);
    const refused = rows.find((r) => r.type === 'tool.result' && payload(r).isError === true)!;
    expect(payload(refused).content).toContain('unknown agent "o-nobody"');
    expect(rows.filter((r) => r.type === 'task.routed' && payload(r).taskId === task!.id).map((r) => payload(r).by)).toEqual(['assignment', 'handoff']);
  });

  it('shows facts to agents in scope only: a session-scope reader sees them, a memoryScope none agent does not, expired ones nobody', async () => {
    const p = await planner('o-planner-facts', 'plan-facts');
    const project = `proj-${Date.now()}`;
    // Project memory written earlier by an app: one live entry, one already expired.
    const seed = await start({ goal: 'seed project memory', agent: 'o-echo', project });
    for (const [key, ttl] of [['live_note', undefined], ['stale_note', 1]] as const) {
      const res = await stack.api('POST', `/v1/sessions/${seed}/blackboard`, { key, value: `${key} value`, scope: 'project', ...(ttl ? { ttlSeconds: ttl } : {}) });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
    await new Promise((r) => setTimeout(r, 1_200)); // stale_note expires

    const id = await start({ goal: 'Share facts', agent: p, project });
    await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
    const children = (await tree(id))[0]!.children;
    const byKey = Object.fromEntries(children.map((t) => [t.planKey, t]));
    const rows = await stack.traceRows(id);
    const contextOf = (taskId: string) => payload(rows.find((r) => r.type === 'model.context' && r.taskId === taskId)!).system as string;
    expect(contextOf(byKey.read!.id)).toContain('build_command: make -j4 all');
    expect(contextOf(byKey.read!.id)).toContain('live_note: live_note value');
    expect(contextOf(byKey.read!.id)).not.toContain('stale_note');
    expect(contextOf(byKey.blind!.id)).not.toContain('make -j4 all');
    expect(contextOf(byKey.blind!.id)).not.toContain('Blackboard');

    // The blackboard API shows the fact with its provenance: agent, task and the trace event that wrote it.
    const bb = await stack.api('GET', `/v1/sessions/${id}/blackboard?key=build_command`);
    expect(bb.status).toBe(200);
    expect(bb.body.data).toHaveLength(1);
    const entry = bb.body.data[0];
    expect(entry).toMatchObject({ value: 'make -j4 all', kind: 'fact', scope: 'session', provenance: { actor: 'agent:o-writer', taskId: byKey.write!.id } });
    expect(rows.find((r) => r.seq === entry.provenance.traceSeq)?.type).toBe('blackboard.written');
  });

  it('sends an invalid plan back to the planner with the errors, then runs the fixed plan', async () => {
    const p = await planner('o-planner-bad', 'plan-bad-then-good');
    const id = await start({ goal: 'Plan carefully', agent: p });
    const s = await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
    expect(s).toMatchObject({ status: 'blocked', finalAnswer: 'Fixed plan ran.' });
    const rows = await stack.traceRows(id);
    const rejected = rows.filter((r) => r.type === 'plan.rejected');
    expect(rejected).toHaveLength(1);
    const errors = payload(rejected[0]!).errors.join('\n');
    expect(errors).toContain('unknown agent "o-ghost"');
    expect(errors).toContain('dependency cycle');
    // The planner saw the errors as the result of its submit_plan call.
    const second = rows.filter((r) => r.type === 'model.context' && r.actor === `agent:${p}`)[1]!;
    expect(JSON.stringify(payload(second).messages)).toContain('unknown agent \\"o-ghost\\"');
    const [task] = (await tree(id))[0]!.children;
    expect(task).toMatchObject({ planKey: 'x', goal: 'Real work', status: 'done' });
  });

  it('fails the session with a clear reason when the planner never returns a valid plan', async () => {
    const p = await planner('o-planner-never', 'plan-always-bad');
    const id = await start({ goal: 'Plan, please', agent: p });
    const s = await stack.waitForStatus(id, (x) => x.status === 'failed' || x.statusReason === 'awaiting_input');
    expect(s.status).toBe('failed');
    expect(s.statusReason).toMatch(/^plan_invalid: the planner returned no valid plan in 3 attempts: no plan found/);
    expect((await tree(id))[0]).toMatchObject({ status: 'failed' });
  });

  it('cancels the whole task tree when the session is cancelled in the middle of a parallel fan-out', async () => {
    const p = await planner('o-planner-fanout', 'plan-fanout-slow');
    const id = await start({ goal: 'Fan out and get cancelled', agent: p });
    await stack.events(id, { until: (e) => e.type === 'workflow.node.enter' && (e.payload as any).kind === 'await_tasks' });
    const running = (await tree(id))[0]!.children.filter((t) => t.status === 'running');
    expect(running).toHaveLength(3);
    const res = await stack.api('POST', `/v1/sessions/${id}/cancel`);
    expect(res.status).toBe(202);
    const s = await stack.waitForStatus(id, (x) => x.status === 'cancelled' || x.status === 'failed');
    expect(s.status).toBe('cancelled');
    const roots = await tree(id);
    const all = [roots[0]!, ...roots[0]!.children];
    expect(all.map((t) => t.status)).toEqual(['cancelled', 'cancelled', 'cancelled', 'cancelled', 'cancelled']);
    const rows = await stack.traceRows(id);
    for (const t of running) expect(rows.some((r) => r.type === 'task.attempt.cancelled' && r.taskId === t.id)).toBe(true);
    expect(rows.some((r) => r.type === 'task.failed')).toBe(false);
    // And the child workflows really stopped.
    for (const t of running) {
      const desc = await stack.temporal.workflow.getHandle(`${t.id}.run1`).describe();
      expect(desc.status.name).toBe('CANCELLED');
    }
  }, 90_000);

  // Routing by role picks the first agent (by id) with that role, so other test files (which share this database)
  // give their own agents test-only roles rather than `coder` or `reviewer`.
  it('runs the shipped default set out of the box: the planner plans, the coder and the reviewer are chosen by role', async () => {
    const id = await start({ goal: 'Add a --verbose flag to the CLI', agent: 'planner' });
    const s = await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
    expect(s.status, s.statusReason ?? '').toBe('blocked');
    expect(s.finalAnswer).toContain('offline scripted planner');
    const children = (await tree(id))[0]!.children;
    expect(children.map((t) => [t.planKey, t.role, t.status])).toEqual([
      ['implement', 'coder', 'done'],
      ['review', 'reviewer', 'done'],
    ]);
    const rows = await stack.traceRows(id);
    const routed = rows.filter((r) => r.type === 'task.routed').map(payload);
    expect(routed.map((r) => r.by)).toEqual(['role', 'role']);
    for (const [i, t] of children.entries()) {
      const agent = await stack.api('GET', `/v1/agents/${routed[i]!.agent}`);
      expect(agent.body.role).toBe(t.role);
    }
  });

  it("routes a task with no agent and no known role by the session's router rule", async () => {
    const p = await planner('o-planner-rule', 'plan-by-rule');
    const id = await start({ goal: 'Audit', agent: p, routes: [{ pattern: '\\baudit', agent: 'o-echo' }] });
    await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
    const [task] = (await tree(id))[0]!.children;
    expect(task).toMatchObject({ assignedAgent: 'o-echo', status: 'done' });
    const routed = (await stack.traceRows(id)).find((r) => r.type === 'task.routed')!;
    expect(payload(routed)).toMatchObject({ by: 'rule', rule: '\\baudit', agent: 'o-echo' });
    // A rule naming an unknown agent, or a bad pattern, is refused up front.
    const bad = await stack.api('POST', '/v1/sessions', { goal: 'x', agent: p, routes: [{ pattern: '(', agent: 'o-echo' }] });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('not a valid regular expression');
    const unknown = await stack.api('POST', '/v1/sessions', { goal: 'x', agent: p, routes: [{ pattern: 'x', agent: 'o-nobody' }] });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toContain('unknown agent "o-nobody"');
  });

  it('keeps the agent versions a session started with when an agent is edited mid-session', async () => {
    const agentDef = { ...ORCHESTRATION_AGENTS.find((a) => a.id === 'o-slow')!, id: 'o-versioned', name: 'o-versioned', instructions: 'Instructions of version one.' };
    await putAgent(stack.db, agentDef);
    const before = (await stack.api('GET', '/v1/agents/o-versioned')).body.version as number;
    const p = await planner('o-planner-versioned', 'plan-versioned');
    const id = await start({ goal: 'Which instructions?', agent: p });
    // Edited right after the session started (the catalogue was frozen when it started).
    const put = await stack.api('PUT', '/v1/agents/o-versioned', { ...agentDef, instructions: 'Instructions of version two.' });
    expect(put.status).toBe(200);
    expect(put.body.version).toBe(before + 1);
    await stack.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed');
    const [task] = (await tree(id))[0]!.children;
    expect(task).toMatchObject({ status: 'done', assignedAgent: 'o-versioned', agentVersion: before });
    const context = (await stack.traceRows(id)).find((r) => r.type === 'model.context' && r.taskId === task!.id)!;
    expect(payload(context).system).toContain('Instructions of version one.');
    expect(payload(context).system).not.toContain('version two');
  });
});
