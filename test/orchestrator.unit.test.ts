import { describe, expect, it } from 'vitest';
import { checkHandoff, initialAgentLoop, nextAgentNode, reduceAgent, type AgentLoopState, type TaskOutcome } from '../core/agent-loop';
import { synthesisPrompt, taskPrompt } from '../core/context';
import type { ChatMessage, ModelResponse, ToolResultBlock, ToolUseBlock } from '../core/model';
import {
  DEFAULT_ORCHESTRATOR_LIMITS,
  DEFAULT_ROUTES,
  describeNode,
  initialOrchestratorState,
  nextStep,
  reduceOrchestrator,
  route,
  taskSnapshotOf,
  type DispatchSpec,
  type OrchestratorLimits,
  type OrchestratorResult,
  type OrchestratorState,
  type RouteRule,
  type TaskState,
} from '../core/orchestrator';
import type { VersionedAgent } from '../core/schemas';
import type { EventDraft } from '../core/session';

// ---------------------------------------------------------------- fixtures

const agent = (id: string, role: string, extra: Partial<VersionedAgent> = {}): VersionedAgent => ({
  id,
  name: id,
  role,
  model: 'scripted:x',
  instructions: '',
  tools: [],
  permissions: [],
  memoryScope: 'session',
  version: 1,
  ...extra,
});

const planner = agent('planner', 'planner');
/** May hand tasks over; default timeout and retry policy. */
const coder = agent('coder', 'coder', { tools: ['handoff'], version: 3 });
/** Own retry policy (3 attempts, 5 s apart) and a 60 s deadline. */
const reviewer = agent('reviewer', 'reviewer', { retry: { maxAttempts: 3, backoffSeconds: 5 }, timeoutSeconds: 60 });
const tester = agent('tester', 'tester');
const AGENTS = [planner, coder, reviewer, tester];

const usage = { inputTokens: 10, outputTokens: 5 };
const T0 = 1_700_000_000_000;

type PlanInputTask = { id: string; goal: string; role?: string; agent?: string; dependsOn?: string[]; input?: unknown };

function fresh(limits: Partial<OrchestratorLimits> = {}, agents: VersionedAgent[] = AGENTS): OrchestratorState {
  return initialOrchestratorState({ sessionId: 's', goal: 'build the thing', project: null, planner, agents, limits });
}

const response = (...content: ModelResponse['content']): OrchestratorResult => ({
  kind: 'model_response',
  response: { model: 'm', content, stopReason: content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn', usage },
});
const submitPlan = (tasks: PlanInputTask[], id = 'plan-1'): OrchestratorResult => response({ type: 'tool_use', id, name: 'submit_plan', input: { tasks } });
const textReply = (text: string): OrchestratorResult => response({ type: 'text', text });

const done = (output: string): TaskOutcome => ({ kind: 'done', output, usage });
const failed = (reason: string): TaskOutcome => ({ kind: 'failed', reason, usage });
const handoff = (to: string, reason = 'better placed', notes?: string): TaskOutcome => ({ kind: 'handoff', to, reason, ...(notes ? { notes } : {}), usage });
const finished = (taskId: string, outcome: TaskOutcome): OrchestratorResult => ({ kind: 'task_finished', taskId, outcome });

const types = (events: EventDraft[]) => events.map((e) => e.type);
const payloadOf = (e: EventDraft | undefined) => e?.payload as Record<string, unknown>;

/** The task of the current round with this plan key. */
function task(s: OrchestratorState, key: string): TaskState {
  const t = s.tasks.find((x) => x.round === s.round && x.planKey === key);
  if (!t) throw new Error(`no task "${key}" in round ${s.round}`);
  return t;
}
const rootOf = (s: OrchestratorState) => task(s, 'root');
const lastMessage = (s: OrchestratorState): ChatMessage => s.plannerMessages[s.plannerMessages.length - 1]!;
const textIn = (m: ChatMessage) => m.content.map((b) => (b.type === 'text' ? b.text : b.type === 'tool_result' ? b.content : '')).join('\n');

function planned(tasks: PlanInputTask[], limits: Partial<OrchestratorLimits> = {}, agents: VersionedAgent[] = AGENTS): OrchestratorState {
  const s = reduceOrchestrator(fresh(limits, agents), submitPlan(tasks), T0).state;
  expect(s.phase).toBe('executing');
  return s;
}

function expectDispatch(s: OrchestratorState, now: number): DispatchSpec[] {
  const node = nextStep(s, now);
  if (node.kind !== 'dispatch') throw new Error(`expected a dispatch, got ${JSON.stringify(node)}`);
  return node.tasks;
}

/** Runs the dispatch node at `now` and folds its result in. */
function dispatch(s: OrchestratorState, now: number): { state: OrchestratorState; specs: DispatchSpec[]; events: EventDraft[] } {
  const specs = expectDispatch(s, now);
  const r = reduceOrchestrator(s, { kind: 'dispatched', taskIds: specs.map((t) => t.taskId) }, now);
  return { state: r.state, specs, events: r.events };
}

/**
 * The planner's conversation as a provider requires it: it starts with the user, roles alternate, and every tool_use
 * of an assistant turn is answered by a tool_result in the next user turn.
 */
function expectWellFormed(messages: readonly ChatMessage[]) {
  expect(messages[0]?.role).toBe('user');
  messages.forEach((m, i) => {
    if (i > 0) expect(m.role, `message ${i} repeats the role ${m.role}`).not.toBe(messages[i - 1]!.role);
    if (m.role !== 'assistant') return;
    const uses = m.content.filter((b): b is ToolUseBlock => b.type === 'tool_use').map((u) => u.id);
    const next = messages[i + 1];
    if (uses.length === 0 || !next) return;
    const answered = next.content.filter((b): b is ToolResultBlock => b.type === 'tool_result').map((b) => b.toolUseId);
    expect([...answered].sort(), `tool_use ids of message ${i} need tool_results in message ${i + 1}`).toEqual([...uses].sort());
  });
}

// ---------------------------------------------------------------- route

describe('route', () => {
  const coderB = agent('coder-b', 'coder');
  const coderA = agent('coder-a', 'coder');
  const rules: RouteRule[] = [
    { pattern: 'review', agent: 'ghost' },
    { pattern: 'review', agent: 'reviewer' },
    { pattern: '.', agent: 'coder' },
  ];

  it('gives an explicit assignment precedence over the role', () => {
    expect(route({ agent: 'tester', role: 'coder', goal: 'review it' }, AGENTS, rules)).toEqual({ agentId: 'tester', by: 'assignment' });
  });

  it('rejects an explicit assignment to an unknown agent rather than routing by role', () => {
    expect(route({ agent: 'ghost', role: 'coder', goal: 'x' }, AGENTS, rules)).toEqual({ error: 'unknown agent "ghost"' });
  });

  it('picks the first agent by id among those with the role, whatever the catalogue order', () => {
    expect(route({ role: 'coder', goal: 'review it' }, [coderB, reviewer, coderA], rules)).toEqual({ agentId: 'coder-a', by: 'role' });
  });

  it('falls back to the rules in order, skipping rules whose agent does not exist', () => {
    expect(route({ goal: 'Review the patch' }, AGENTS, rules)).toEqual({ agentId: 'reviewer', by: 'rule', rule: 'review' });
    expect(route({ goal: 'write the parser' }, AGENTS, rules)).toEqual({ agentId: 'coder', by: 'rule', rule: '.' });
    // A role no agent holds also falls back to the rules.
    expect(route({ role: 'auditor', goal: 'review it' }, AGENTS, rules)).toMatchObject({ agentId: 'reviewer', by: 'rule' });
  });

  it('matches rule patterns case-insensitively (default rules)', () => {
    expect(route({ goal: 'AUDIT the code' }, AGENTS, DEFAULT_ROUTES)).toMatchObject({ agentId: 'reviewer', by: 'rule' });
    expect(route({ goal: 'Write Tests for the parser' }, AGENTS, DEFAULT_ROUTES)).toMatchObject({ agentId: 'tester', by: 'rule' });
    expect(route({ goal: 'Implement the parser' }, AGENTS, DEFAULT_ROUTES)).toMatchObject({ agentId: 'coder', by: 'rule' });
  });

  it('lists the available roles when nothing matches', () => {
    const agents = [coderB, reviewer, coderA];
    expect(route({ role: 'artist', goal: 'paint' }, agents, [{ pattern: 'code', agent: 'coder-a' }])).toEqual({
      error: 'no agent has role "artist" and no routing rule matches the goal (roles: coder, reviewer)',
    });
    expect(route({ goal: 'paint' }, agents, [])).toEqual({
      error: 'no role or agent given and no routing rule matches the goal (roles: coder, reviewer)',
    });
  });
});

// ---------------------------------------------------------------- orchestrator

describe('orchestrator: planning', () => {
  it('starts by asking the planner for a plan, with the root task running', () => {
    const s = fresh();
    expect(nextStep(s, T0)).toEqual({ kind: 'plan', call: 1 });
    expect(s.tasks).toHaveLength(1);
    expect(rootOf(s)).toMatchObject({ id: 's.r1', parentId: null, status: 'running', agentId: 'planner' });
    const prompt = textIn(lastMessage(s));
    expect(prompt).toContain('build the thing');
    // The planner's catalogue lists the other agents, not the planner itself.
    expect(prompt).toContain('- coder (role coder)');
    expect(prompt).not.toContain('- planner');
  });

  it('creates and routes the tasks of an accepted plan', () => {
    const r = reduceOrchestrator(
      fresh(),
      submitPlan([
        { id: 'code', goal: 'write the parser', role: 'coder', input: { file: 'p.ts' } },
        { id: 'check', goal: 'check it', agent: 'reviewer', dependsOn: ['code'] },
        { id: 'verify', goal: 'verify the parser', dependsOn: ['code'] },
      ]),
      T0,
    );
    const s = r.state;
    expect(s.phase).toBe('executing');
    expect(types(r.events)).toEqual([
      'message.assistant',
      'plan.accepted',
      'task.created',
      'task.routed',
      'task.created',
      'task.routed',
      'task.created',
      'task.routed',
    ]);
    expect(payloadOf(r.events[1])).toMatchObject({
      attempt: 1,
      replan: 0,
      tasks: [
        { taskId: 's.r1.t1', planKey: 'code', dependsOn: [] },
        { taskId: 's.r1.t2', planKey: 'check', dependsOn: ['s.r1.t1'] },
        { taskId: 's.r1.t3', planKey: 'verify', dependsOn: ['s.r1.t1'] },
      ],
    });
    expect(r.events.filter((e) => e.type === 'task.routed').map(payloadOf)).toEqual([
      { taskId: 's.r1.t1', planKey: 'code', agent: 'coder', version: 3, by: 'role' },
      { taskId: 's.r1.t2', planKey: 'check', agent: 'reviewer', version: 1, by: 'assignment' },
      { taskId: 's.r1.t3', planKey: 'verify', agent: 'tester', version: 1, by: 'rule', rule: DEFAULT_ROUTES[1]!.pattern },
    ]);
    expect(task(s, 'code')).toMatchObject({
      id: 's.r1.t1',
      parentId: 's.r1',
      round: 1,
      status: 'pending',
      agentId: 'coder',
      agentVersion: 3,
      role: 'coder',
      input: { file: 'p.ts' },
      attempts: 0,
    });
    expect(task(s, 'check')).toMatchObject({ dependsOn: ['s.r1.t1'], status: 'pending', agentId: 'reviewer', input: null });
    // The submit_plan call is answered.
    expect(lastMessage(s)).toEqual({
      role: 'user',
      content: [{ type: 'tool_result', toolUseId: 'plan-1', content: 'Plan accepted. The tasks are running.', isError: false }],
    });
  });

  it('answers an invalid plan with a tool_result error for the submit_plan call and asks again', () => {
    const r = reduceOrchestrator(fresh(), submitPlan([{ id: 'a', goal: 'x', dependsOn: ['nope'] }], 'tu-42'), T0);
    expect(types(r.events)).toEqual(['message.assistant', 'plan.rejected']);
    expect(payloadOf(r.events[1])).toEqual({ attempt: 1, errors: ['tasks.0.dependsOn: unknown task "nope"'] });
    const s = r.state;
    expect(s).toMatchObject({ phase: 'planning', status: 'running', planAttempts: 1, done: false });
    expect(s.tasks).toHaveLength(1);
    const answer = lastMessage(s);
    expect(answer.role).toBe('user');
    expect(answer.content).toHaveLength(1);
    expect(answer.content[0]).toMatchObject({ type: 'tool_result', toolUseId: 'tu-42', isError: true });
    expect(textIn(answer)).toContain('tasks.0.dependsOn: unknown task "nope"');
    expect(nextStep(s, T0)).toEqual({ kind: 'plan', call: 2 });
  });

  it('answers a reply without a plan in text, and fails the session with plan_invalid after maxPlanAttempts', () => {
    let s = fresh({ maxPlanAttempts: 2 });
    let r = reduceOrchestrator(s, textReply('Let me think about it.'), T0);
    s = r.state;
    expect(lastMessage(s)).toMatchObject({ role: 'user', content: [{ type: 'text' }] });
    expect(textIn(lastMessage(s))).toContain('no plan found');
    expect(s.done).toBe(false);

    r = reduceOrchestrator(s, submitPlan([{ id: 'a', goal: 'x', agent: 'wizard' }], 'p2'), T0 + 1);
    s = r.state;
    expect(s.done).toBe(true);
    expect(s.status).toBe('failed');
    expect(s.statusReason).toMatch(/^plan_invalid: the planner returned no valid plan in 2 attempts: /);
    expect(s.statusReason).toContain('unknown agent "wizard"');
    expect(rootOf(s)).toMatchObject({ status: 'failed' });
    expect(types(r.events)).toEqual(['message.assistant', 'plan.rejected', 'task.failed', 'state.mutated', 'session.ended']);
    expect(() => nextStep(s, T0 + 2)).toThrow();
  });

  it('resets the attempts count after an accepted plan', () => {
    let s = fresh({ maxPlanAttempts: 2 });
    s = reduceOrchestrator(s, textReply('hmm'), T0).state;
    expect(s.planAttempts).toBe(1);
    s = reduceOrchestrator(s, submitPlan([{ id: 'a', goal: 'code' }]), T0).state;
    expect(s.planAttempts).toBe(0);
  });

  it('answers every tool_use of the planner response, the plan and any other tool', () => {
    const r = reduceOrchestrator(
      fresh(),
      response(
        { type: 'tool_use', id: 'x1', name: 'search', input: {} },
        { type: 'tool_use', id: 'p1', name: 'submit_plan', input: { tasks: [{ id: 'a', goal: 'code' }] } },
      ),
      T0,
    );
    expect(r.state.phase).toBe('executing');
    expect(lastMessage(r.state).content).toEqual([
      { type: 'tool_result', toolUseId: 'x1', content: 'only submit_plan is available to you', isError: true },
      { type: 'tool_result', toolUseId: 'p1', content: 'Plan accepted. The tasks are running.', isError: false },
    ]);
    expectWellFormed(r.state.plannerMessages);
  });

  it('accepts a plan given as JSON text and answers it in text', () => {
    const s = reduceOrchestrator(fresh(), textReply('```json\n{"tasks": [{"id": "a", "goal": "code"}]}\n```'), T0).state;
    expect(s.phase).toBe('executing');
    expect(task(s, 'a').status).toBe('pending');
    expect(lastMessage(s)).toEqual({ role: 'user', content: [{ type: 'text', text: 'Plan accepted. The tasks are running.' }] });
  });

  it('goes straight to synthesis on an empty plan', () => {
    const s = reduceOrchestrator(fresh(), submitPlan([]), T0).state;
    expect(s.phase).toBe('synthesizing');
    expect(nextStep(s, T0)).toEqual({ kind: 'synthesize' });
    expectWellFormed(s.plannerMessages);
  });

  it('fails the session when the planner model call fails', () => {
    const r = reduceOrchestrator(fresh(), { kind: 'model_failed', code: 'rate_limited', message: 'slow down' }, T0);
    expect(r.state).toMatchObject({ done: true, status: 'failed', statusReason: 'plan_failed: rate_limited: slow down' });
    expect(types(r.events).at(-1)).toBe('session.ended');
  });

  it('counts the planner usage', () => {
    const s = reduceOrchestrator(fresh(), submitPlan([{ id: 'a', goal: 'code' }]), T0).state;
    expect(s.usage).toEqual(usage);
  });
});

describe('orchestrator: dispatching', () => {
  it('dispatches only tasks whose dependencies are done, at most maxParallelTasks at once', () => {
    let s = planned(
      [
        { id: 'a', goal: 'code a' },
        { id: 'b', goal: 'code b' },
        { id: 'c', goal: 'code c' },
        { id: 'd', goal: 'code d', dependsOn: ['a'] },
      ],
      { maxParallelTasks: 2 },
    );
    let d = dispatch(s, T0);
    expect(d.specs.map((t) => t.taskId)).toEqual([task(s, 'a').id, task(s, 'b').id]);
    s = d.state;
    // Both slots are taken: wait for the first deadline.
    expect(nextStep(s, T0 + 10)).toEqual({ kind: 'await_tasks', wakeAt: T0 + DEFAULT_ORCHESTRATOR_LIMITS.defaultTaskTimeoutMs });

    // b finishes: one slot frees, c runs; d still waits for a.
    s = reduceOrchestrator(s, finished(task(s, 'b').id, done('B')), T0 + 100).state;
    d = dispatch(s, T0 + 100);
    expect(d.specs.map((t) => t.taskId)).toEqual([task(s, 'c').id]);
    s = d.state;
    expect(task(s, 'd').status).toBe('pending');

    // a finishes: d becomes dispatchable.
    s = reduceOrchestrator(s, finished(task(s, 'a').id, done('A')), T0 + 200).state;
    expect(expectDispatch(s, T0 + 200).map((t) => t.taskId)).toEqual([task(s, 'd').id]);
  });

  it('gives each dispatch its agent, attempt, run, prompt, handoff targets and model-call budget', () => {
    const s = planned(
      [
        { id: 'a', goal: 'code a', input: { path: 'src/a.ts' } },
        { id: 'r', goal: 'look at it', agent: 'reviewer' },
      ],
      { maxModelCallsPerTask: 7 },
    );
    const [a, r] = expectDispatch(s, T0);
    expect(a).toEqual({
      taskId: 's.r1.t1',
      attempt: 1,
      run: 1,
      agent: coder,
      prompt: taskPrompt({ goal: 'code a', input: { path: 'src/a.ts' }, handed: [] }),
      // The coder holds the handoff tool: it may hand over to any agent but itself and the planner.
      handoffTargets: ['reviewer', 'tester'],
      maxModelCalls: 7,
    });
    // The reviewer has no handoff tool.
    expect(r).toMatchObject({ agent: reviewer, handoffTargets: [] });
  });

  it('marks dispatched tasks running with a deadline from the agent timeout or the default', () => {
    const r = reduceOrchestrator(
      planned([{ id: 'a', goal: 'code' }, { id: 'r', goal: 'x', agent: 'reviewer' }], { defaultTaskTimeoutMs: 90_000 }),
      { kind: 'dispatched', taskIds: ['s.r1.t1', 's.r1.t2'] },
      T0,
    );
    expect(task(r.state, 'a')).toMatchObject({ status: 'running', attempts: 1, runs: 1, deadlineAt: T0 + 90_000, notBefore: null });
    expect(task(r.state, 'r')).toMatchObject({ status: 'running', attempts: 1, runs: 1, deadlineAt: T0 + 60_000 });
    expect(types(r.events)).toEqual(['task.dispatched', 'task.dispatched']);
    expect(payloadOf(r.events[1])).toMatchObject({
      taskId: 's.r1.t2',
      status: 'running',
      agent: 'reviewer',
      attempt: 1,
      run: 1,
      deadline: new Date(T0 + 60_000).toISOString(),
    });
    expect(nextStep(r.state, T0)).toEqual({ kind: 'await_tasks', wakeAt: T0 + 60_000 });
  });

  it('hands the output of a finished dependency to the dependent task', () => {
    let s = dispatch(planned([{ id: 'code', goal: 'write the parser' }, { id: 'rev', goal: 'review the parser', agent: 'reviewer', dependsOn: ['code'] }]), T0).state;
    const r = reduceOrchestrator(s, finished('s.r1.t1', done('parser.ts written')), T0 + 5);
    s = r.state;
    expect(types(r.events)).toEqual(['task.completed']);
    expect(task(s, 'code')).toMatchObject({ status: 'done', output: 'parser.ts written', deadlineAt: null });
    const [spec] = expectDispatch(s, T0 + 5);
    expect(spec?.taskId).toBe('s.r1.t2');
    expect(spec?.prompt).toBe(
      taskPrompt({
        goal: 'review the parser',
        handed: [{ taskId: 's.r1.t1', planKey: 'code', agent: 'coder', goal: 'write the parser', output: 'parser.ts written' }],
      }),
    );
    expect(spec?.prompt).toContain('parser.ts written');
  });

  it('describes a dispatch node by ids only, and other nodes as they are', () => {
    const s = planned([{ id: 'a', goal: 'code' }]);
    const node = nextStep(s, T0);
    expect(describeNode(node)).toEqual({ kind: 'dispatch', tasks: [{ taskId: 's.r1.t1', agent: 'coder', version: 3, attempt: 1 }] });
    expect(JSON.stringify(describeNode(node))).not.toContain('# Your task');
    expect(describeNode({ kind: 'await_tasks', wakeAt: 5 })).toEqual({ kind: 'await_tasks', wakeAt: 5 });
  });

  it('snapshots a task for the registry mirror', () => {
    const s = planned([{ id: 'a', goal: 'code', role: 'coder', input: [1] }]);
    expect(taskSnapshotOf(task(s, 'a'))).toEqual({
      id: 's.r1.t1',
      parentId: 's.r1',
      round: 1,
      planKey: 'a',
      goal: 'code',
      role: 'coder',
      input: [1],
      dependsOn: [],
      assignedAgent: 'coder',
      agentVersion: 3,
      status: 'pending',
      statusReason: null,
      attempts: 0,
      output: null,
    });
  });
});

describe('orchestrator: failures, retries and replans', () => {
  it('retries a failed task after the backoff, keeping its deadline', () => {
    let s = dispatch(planned([{ id: 'r', goal: 'check', agent: 'reviewer' }]), T0).state;
    const r = reduceOrchestrator(s, finished('s.r1.t1', failed('flaky')), T0 + 1000);
    s = r.state;
    expect(types(r.events)).toEqual(['task.retrying']);
    expect(payloadOf(r.events[0])).toMatchObject({ attempt: 1, maxAttempts: 3, reason: 'flaky', retryAt: new Date(T0 + 6000).toISOString() });
    expect(task(s, 'r')).toMatchObject({ status: 'pending', statusReason: 'retrying: flaky', notBefore: T0 + 6000, attempts: 1 });
    expect(s.phase).toBe('executing');

    expect(nextStep(s, T0 + 1000)).toEqual({ kind: 'await_tasks', wakeAt: T0 + 6000 });
    expect(nextStep(s, T0 + 5999)).toEqual({ kind: 'await_tasks', wakeAt: T0 + 6000 });
    const d = dispatch(s, T0 + 6000);
    expect(d.specs).toMatchObject([{ taskId: 's.r1.t1', attempt: 2, run: 2 }]);
    // The deadline covers all attempts together.
    expect(task(d.state, 'r')).toMatchObject({ status: 'running', attempts: 2, runs: 2, notBefore: null, statusReason: null, deadlineAt: T0 + 60_000 });
  });

  it('uses the default attempts and backoff for an agent without a retry policy', () => {
    let s = dispatch(planned([{ id: 'a', goal: 'code' }], { defaultMaxAttempts: 2, defaultBackoffMs: 250 }), T0).state;
    s = reduceOrchestrator(s, finished('s.r1.t1', failed('oops')), T0 + 10).state;
    expect(task(s, 'a')).toMatchObject({ status: 'pending', notBefore: T0 + 260 });
    s = dispatch(s, T0 + 260).state;
    const r = reduceOrchestrator(s, finished('s.r1.t1', failed('oops again')), T0 + 300);
    expect(task(r.state, 'a')).toMatchObject({ status: 'failed', statusReason: 'oops again (after 2 attempts)' });
    expect(types(r.events)[0]).toBe('task.failed');
  });

  it('replans when nothing can progress after a failure, superseding (not failing) the blocked dependents', () => {
    let s = planned(
      [
        { id: 'a', goal: 'code a' },
        { id: 'b', goal: 'review a', agent: 'reviewer', dependsOn: ['a'] },
        { id: 'c', goal: 'code c' },
      ],
      { defaultMaxAttempts: 1 },
    );
    s = dispatch(s, T0).state;
    s = reduceOrchestrator(s, finished(task(s, 'c').id, done('C done')), T0 + 1).state;
    const r = reduceOrchestrator(s, finished(task(s, 'a').id, failed('compile error')), T0 + 2);
    s = r.state;

    expect(task(s, 'a')).toMatchObject({ status: 'failed', statusReason: 'compile error (after 1 attempt)' });
    expect(task(s, 'b')).toMatchObject({ status: 'cancelled', statusReason: 'superseded: depends on "a", which failed' });
    expect(task(s, 'c').status).toBe('done');
    expect(s.tasks.filter((t) => t.status === 'failed').map((t) => t.planKey)).toEqual(['a']);
    expect(types(r.events)).toEqual(['task.failed', 'task.cancelled', 'plan.replanning']);
    expect(payloadOf(r.events[2])).toEqual({
      replan: 1,
      failed: [{ taskId: task(s, 'a').id, planKey: 'a', reason: 'compile error (after 1 attempt)' }],
    });
    expect(s).toMatchObject({ phase: 'planning', replans: 1, status: 'running', done: false });
    expect(rootOf(s).status).toBe('running');
    expect(nextStep(s, T0 + 2)).toEqual({ kind: 'plan', call: 2 });
    const prompt = textIn(lastMessage(s));
    expect(prompt).toContain('compile error');
    expect(prompt).toContain('Replans left after this one: 1');
    expectWellFormed(s.plannerMessages);
  });

  it('lets a replan depend on a task that is done, but not reuse a key of the round', () => {
    let s = planned([{ id: 'a', goal: 'code a' }, { id: 'c', goal: 'code c' }], { defaultMaxAttempts: 1 });
    s = dispatch(s, T0).state;
    s = reduceOrchestrator(s, finished('s.r1.t2', done('C done')), T0 + 1).state;
    s = reduceOrchestrator(s, finished('s.r1.t1', failed('boom')), T0 + 2).state;
    expect(s.phase).toBe('planning');

    let r = reduceOrchestrator(s, submitPlan([{ id: 'a', goal: 'code a again' }], 'replan-1'), T0 + 3);
    expect(types(r.events)).toContain('plan.rejected');
    expect(textIn(lastMessage(r.state))).toContain('"a" was already used in this round');
    s = r.state;

    r = reduceOrchestrator(s, submitPlan([{ id: 'a2', goal: 'code a differently', dependsOn: ['c'] }], 'replan-2'), T0 + 4);
    s = r.state;
    expect(payloadOf(r.events.find((e) => e.type === 'plan.accepted'))).toMatchObject({ replan: 1 });
    expect(task(s, 'a2')).toMatchObject({ id: 's.r1.t3', dependsOn: ['s.r1.t2'], status: 'pending' });
    const [spec] = expectDispatch(s, T0 + 4);
    expect(spec?.prompt).toContain('C done');

    // Once the replacement is done, the round synthesizes: the failure was already handled by the replan.
    s = dispatch(s, T0 + 4).state;
    s = reduceOrchestrator(s, finished('s.r1.t3', done('A2 done')), T0 + 5).state;
    expect(s.phase).toBe('synthesizing');
    expectWellFormed(s.plannerMessages);
  });

  it('fails the session when a task fails and no replans are left', () => {
    let s = planned([{ id: 'a', goal: 'code a' }, { id: 'b', goal: 'review a', agent: 'reviewer', dependsOn: ['a'] }], { defaultMaxAttempts: 1, maxReplans: 0 });
    s = dispatch(s, T0).state;
    const r = reduceOrchestrator(s, finished('s.r1.t1', failed('boom')), T0 + 1);
    s = r.state;
    expect(s).toMatchObject({ done: true, status: 'failed' });
    expect(s.statusReason).toBe('task_failed: task "a" failed (boom (after 1 attempt)) and no replans are left');
    expect(rootOf(s)).toMatchObject({ status: 'failed', statusReason: s.statusReason });
    expect(task(s, 'b')).toMatchObject({ status: 'cancelled' });
    expect(task(s, 'b').statusReason).toMatch(/^superseded: /);
    expect(types(r.events).at(-1)).toBe('session.ended');
    expect(payloadOf(r.events.at(-1))).toMatchObject({ status: 'failed', reason: s.statusReason });
    expect(r.events.some((e) => e.type === 'plan.replanning')).toBe(false);
  });

  it('waits for running tasks before replanning', () => {
    let s = planned([{ id: 'a', goal: 'code a' }, { id: 'c', goal: 'code c' }], { defaultMaxAttempts: 1 });
    s = dispatch(s, T0).state;
    s = reduceOrchestrator(s, finished('s.r1.t1', failed('boom')), T0 + 1).state;
    expect(s.phase).toBe('executing');
    expect(task(s, 'c').status).toBe('running');
    s = reduceOrchestrator(s, finished('s.r1.t2', done('C')), T0 + 2).state;
    expect(s.phase).toBe('planning');
  });

  it('fails a task that passed its deadline without retrying it', () => {
    let s = dispatch(planned([{ id: 'r', goal: 'check', agent: 'reviewer' }, { id: 'a', goal: 'code' }]), T0).state;
    const r = reduceOrchestrator(s, { kind: 'task_timed_out', taskId: 's.r1.t1' }, T0 + 60_000);
    s = r.state;
    // The reviewer has attempts left, but the deadline covers all of them.
    expect(task(s, 'r')).toMatchObject({ status: 'failed', statusReason: 'timeout: no result within 60s', deadlineAt: null });
    expect(types(r.events)).toEqual(['task.failed']);
    expect(payloadOf(r.events[0])).toMatchObject({ reason: 'timeout: no result within 60s', attempts: 1 });

    const r2 = reduceOrchestrator(s, { kind: 'task_timed_out', taskId: 's.r1.t2' }, T0 + 1_800_000);
    expect(task(r2.state, 'a').statusReason).toBe(`timeout: no result within ${DEFAULT_ORCHESTRATOR_LIMITS.defaultTaskTimeoutMs / 1000}s`);
  });

  it('ignores a late result of a task that is no longer running, except for its usage', () => {
    let s = dispatch(planned([{ id: 'r', goal: 'check', agent: 'reviewer' }, { id: 'a', goal: 'code' }]), T0).state;
    s = reduceOrchestrator(s, { kind: 'task_timed_out', taskId: 's.r1.t1' }, T0 + 60_000).state;
    const before = s.usage;
    const r = reduceOrchestrator(s, finished('s.r1.t1', done('too late')), T0 + 60_001);
    expect(task(r.state, 'r')).toMatchObject({ status: 'failed', output: null });
    expect(r.events).toEqual([]);
    expect(r.state.usage).toEqual({ inputTokens: before.inputTokens + usage.inputTokens, outputTokens: before.outputTokens + usage.outputTokens });
    expect(r.state.tasks).toEqual(s.tasks);
  });

  it('a tick re-checks the round without changing a running one', () => {
    const s = dispatch(planned([{ id: 'a', goal: 'code' }]), T0).state;
    const r = reduceOrchestrator(s, { kind: 'tick' }, T0 + 1);
    expect(r.events).toEqual([]);
    expect(r.state).toEqual(s);
  });
});

describe('orchestrator: handoffs', () => {
  it('reroutes a handed-over task to the new agent with the handoff note', () => {
    let s = dispatch(planned([{ id: 'a', goal: 'code it' }]), T0).state;
    const r = reduceOrchestrator(s, finished('s.r1.t1', handoff('reviewer', 'needs a review', 'wrote half of it')), T0 + 1);
    s = r.state;
    expect(types(r.events)).toEqual(['handoff', 'task.routed']);
    expect(r.events[0]).toMatchObject({
      actor: 'agent:coder',
      payload: { taskId: 's.r1.t1', planKey: 'a', from: 'coder', to: 'reviewer', reason: 'needs a review', notes: 'wrote half of it' },
    });
    expect(payloadOf(r.events[1])).toMatchObject({ taskId: 's.r1.t1', agent: 'reviewer', by: 'handoff' });
    expect(task(s, 'a')).toMatchObject({ status: 'pending', agentId: 'reviewer', agentVersion: 1, attempts: 0, handoffs: 1, runs: 1 });

    const [spec] = expectDispatch(s, T0 + 1);
    expect(spec).toMatchObject({ taskId: 's.r1.t1', attempt: 1, run: 2, agent: reviewer });
    expect(spec?.prompt).toBe(
      taskPrompt({ goal: 'code it', handed: [], handoff: { from: 'coder', reason: 'needs a review', notes: 'wrote half of it' } }),
    );
  });

  it('fails a task handed over more than maxHandoffsPerTask times', () => {
    const ping = agent('ping', 'coder', { tools: ['handoff'] });
    const pong = agent('pong', 'coder', { tools: ['handoff'] });
    let s = planned([{ id: 'a', goal: 'code', agent: 'ping' }], { maxHandoffsPerTask: 2 }, [planner, ping, pong]);
    const hops = ['pong', 'ping'];
    for (const [i, to] of hops.entries()) {
      s = dispatch(s, T0 + i).state;
      s = reduceOrchestrator(s, finished('s.r1.t1', handoff(to)), T0 + i).state;
      expect(task(s, 'a')).toMatchObject({ status: 'pending', agentId: to, handoffs: i + 1 });
    }
    s = dispatch(s, T0 + 10).state;
    const r = reduceOrchestrator(s, finished('s.r1.t1', handoff('pong')), T0 + 10);
    expect(task(r.state, 'a')).toMatchObject({ status: 'failed', statusReason: 'handoff_limit_exceeded: more than 2 handoffs', handoffs: 2 });
    expect(types(r.events).slice(0, 2)).toEqual(['handoff', 'task.failed']);
  });

  it('fails a task handed over to an agent the session does not have', () => {
    const s = dispatch(planned([{ id: 'a', goal: 'code' }], { maxReplans: 0 }), T0).state;
    const r = reduceOrchestrator(s, finished('s.r1.t1', handoff('ghost')), T0 + 1);
    expect(task(r.state, 'a')).toMatchObject({ status: 'failed', statusReason: 'handoff to unknown agent "ghost"' });
  });
});

describe('orchestrator: synthesis, rounds and endings', () => {
  function allDone(): OrchestratorState {
    let s = planned([{ id: 'a', goal: 'code a' }, { id: 'b', goal: 'review a', agent: 'reviewer', dependsOn: ['a'] }]);
    s = dispatch(s, T0).state;
    s = reduceOrchestrator(s, finished('s.r1.t1', done('A out')), T0 + 1).state;
    s = dispatch(s, T0 + 1).state;
    return reduceOrchestrator(s, finished('s.r1.t2', done('B out')), T0 + 2).state;
  }

  it('moves to synthesis once every task is done, with the results in the synthesis prompt', () => {
    const s = allDone();
    expect(s.phase).toBe('synthesizing');
    expect(nextStep(s, T0 + 2)).toEqual({ kind: 'synthesize' });
    const prompt = synthesisPrompt([
      { planKey: 'a', goal: 'code a', agent: 'coder', status: 'done', reason: null, output: 'A out' },
      { planKey: 'b', goal: 'review a', agent: 'reviewer', status: 'done', reason: null, output: 'B out' },
    ]);
    expect(lastMessage(s).role).toBe('user');
    expect(lastMessage(s).content.at(-1)).toEqual({ type: 'text', text: prompt });
    expectWellFormed(s.plannerMessages);
  });

  it('answers with the synthesis, completes the root task and waits for input', () => {
    const r = reduceOrchestrator(allDone(), textReply('All built.'), T0 + 3);
    const s = r.state;
    expect(s).toMatchObject({ finalAnswer: 'All built.', phase: 'awaiting_input', status: 'blocked', statusReason: 'awaiting_input', awaitingSince: T0 + 3, done: false });
    expect(rootOf(s)).toMatchObject({ status: 'done', output: 'All built.' });
    expect(types(r.events)).toEqual(['message.assistant', 'task.completed', 'state.mutated']);
    expect(nextStep(s, T0 + 3)).toEqual({ kind: 'await_input' });
  });

  it('fails the session when the synthesis call fails', () => {
    const r = reduceOrchestrator(allDone(), { kind: 'model_failed', code: 'overloaded', message: 'try later' }, T0 + 3);
    expect(r.state).toMatchObject({ done: true, status: 'failed', statusReason: 'synthesis_failed: overloaded: try later' });
  });

  it('starts round 2 with a new root task on the next user message', () => {
    let s = reduceOrchestrator(allDone(), textReply('All built.'), T0 + 3).state;
    const r = reduceOrchestrator(s, { kind: 'user_message', content: 'now add docs' }, T0 + 4);
    s = r.state;
    expect(s).toMatchObject({ round: 2, phase: 'planning', status: 'running', statusReason: null, awaitingSince: null, replans: 0, planAttempts: 0 });
    expect(rootOf(s)).toMatchObject({ id: 's.r2', round: 2, parentId: null, goal: 'now add docs', status: 'running' });
    expect(types(r.events)).toEqual(['message.user', 'task.created', 'state.mutated']);
    expect(textIn(lastMessage(s))).toContain('now add docs');
    expect(nextStep(s, T0 + 4)).toEqual({ kind: 'plan', call: 3 });
    expectWellFormed(s.plannerMessages);

    // Keys of round 1 may be used again; ids keep counting.
    s = reduceOrchestrator(s, submitPlan([{ id: 'a', goal: 'write docs' }], 'plan-r2'), T0 + 5).state;
    expect(task(s, 'a')).toMatchObject({ id: 's.r2.t3', parentId: 's.r2', round: 2 });
    expect(expectDispatch(s, T0 + 5).map((t) => t.taskId)).toEqual(['s.r2.t3']);
    // Round 1 is untouched.
    expect(s.tasks.filter((t) => t.round === 1).every((t) => t.status === 'done')).toBe(true);
  });

  it('cancels every open task on cancel, failing none', () => {
    let s = planned(
      [
        { id: 'a', goal: 'code a' },
        { id: 'b', goal: 'review a', agent: 'reviewer', dependsOn: ['a'] },
        { id: 'c', goal: 'code c' },
        { id: 'd', goal: 'code d' },
      ],
      { maxParallelTasks: 2 },
    );
    s = dispatch(s, T0).state;
    s = reduceOrchestrator(s, finished('s.r1.t3', done('C')), T0 + 1).state;
    s = dispatch(s, T0 + 1).state; // d runs
    s = reduceOrchestrator(s, finished('s.r1.t4', done('D')), T0 + 2).state;
    const r = reduceOrchestrator(s, { kind: 'cancelled' }, T0 + 3);
    s = r.state;
    expect(s).toMatchObject({ done: true, status: 'cancelled', statusReason: 'cancelled' });
    expect(s.tasks.map((t) => [t.planKey, t.status])).toEqual([
      ['root', 'cancelled'],
      ['a', 'cancelled'],
      ['b', 'cancelled'],
      ['c', 'done'],
      ['d', 'done'],
    ]);
    expect(s.tasks.some((t) => t.status === 'failed')).toBe(false);
    expect(types(r.events)).toEqual(['task.cancelled', 'task.cancelled', 'task.cancelled', 'state.mutated', 'session.ended']);
    expect(payloadOf(r.events.at(-1))).toMatchObject({ status: 'cancelled', reason: 'cancelled' });
  });

  it.each([
    [{ kind: 'closed' } as const, 'closed'],
    [{ kind: 'idle_timeout' } as const, 'idle_timeout'],
  ])('ends a waiting session as done on %o', (result, reason) => {
    const s = reduceOrchestrator(reduceOrchestrator(allDone(), textReply('ok'), T0 + 3).state, result, T0 + 4).state;
    expect(s).toMatchObject({ done: true, status: 'done', statusReason: reason, finalAnswer: 'ok' });
  });

  it('keeps the planner conversation well-formed through rejections, replans, synthesis and a second round', () => {
    let s = fresh({ defaultMaxAttempts: 1, maxPlanAttempts: 5 });
    const check = () => {
      expectWellFormed(s.plannerMessages);
      return s;
    };
    s = reduceOrchestrator(s, submitPlan([{ id: 'a', goal: 'x', dependsOn: ['a'] }], 'bad-1'), T0).state;
    check();
    s = reduceOrchestrator(s, textReply('{"tasks": "no"}'), T0).state;
    check();
    s = reduceOrchestrator(
      s,
      response(
        { type: 'text', text: 'Here it is.' },
        { type: 'tool_use', id: 'good-1', name: 'submit_plan', input: { tasks: [{ id: 'a', goal: 'code' }, { id: 'b', goal: 'code more' }] } },
        { type: 'tool_use', id: 'stray', name: 'read_file', input: { path: 'x' } },
      ),
      T0,
    ).state;
    check();
    s = dispatch(s, T0).state;
    s = reduceOrchestrator(s, finished(task(s, 'a').id, failed('boom')), T0 + 1).state;
    s = reduceOrchestrator(s, finished(task(s, 'b').id, done('B')), T0 + 2).state;
    expect(s.phase).toBe('planning');
    check();
    s = reduceOrchestrator(s, submitPlan([{ id: 'a2', goal: 'retry a', dependsOn: ['b'] }], 'good-2'), T0 + 3).state;
    check();
    s = dispatch(s, T0 + 3).state;
    s = reduceOrchestrator(s, finished(task(s, 'a2').id, done('A2')), T0 + 4).state;
    expect(s.phase).toBe('synthesizing');
    check();
    s = reduceOrchestrator(s, textReply('Final.'), T0 + 5).state;
    s = reduceOrchestrator(s, { kind: 'user_message', content: 'and more' }, T0 + 6).state;
    check();
    s = reduceOrchestrator(s, submitPlan([], 'good-3'), T0 + 7).state;
    check();
    expect(s.phase).toBe('synthesizing');
  });
});

// ---------------------------------------------------------------- agent loop

describe('agent loop', () => {
  const fresh = (over: Partial<Parameters<typeof initialAgentLoop>[0]> = {}): AgentLoopState =>
    initialAgentLoop({ agentId: 'coder', prompt: 'do the task', handoffTargets: ['reviewer', 'tester'], maxModelCalls: 5, ...over });
  const reply = (...content: ModelResponse['content']) => ({
    kind: 'model_response' as const,
    response: { model: 'm', content, stopReason: content.some((b) => b.type === 'tool_use') ? ('tool_use' as const) : ('end_turn' as const), usage },
  });
  const call = (id: string, name: string, input: unknown): ToolUseBlock => ({ type: 'tool_use', id, name, input });

  it('starts with a model call on the prompt', () => {
    const s = fresh();
    expect(s.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'do the task' }] }]);
    expect(nextAgentNode(s)).toEqual({ kind: 'model_call', call: 1 });
  });

  it('finishes with the text of a response without tool calls', () => {
    const r = reduceAgent(fresh(), reply({ type: 'text', text: 'Done: ' }, { type: 'text', text: 'parser written' }));
    expect(r.state.outcome).toEqual({ kind: 'done', output: 'Done: parser written', usage });
    expect(types(r.events)).toEqual(['message.assistant']);
    expect(r.events[0]?.actor).toBe('agent:coder');
    expect(() => nextAgentNode(r.state)).toThrow();
  });

  it('queues tool calls, records them, and calls the model again with their results', () => {
    const calls = [call('t1', 'read_file', { path: 'a' }), call('t2', 'exec', { cmd: 'ls' })];
    let r = reduceAgent(fresh(), reply({ type: 'text', text: 'Looking.' }, ...calls));
    expect(r.state.outcome).toBeNull();
    expect(r.state.pendingToolCalls).toEqual(calls);
    expect(types(r.events)).toEqual(['message.assistant', 'tool.called', 'tool.called']);
    expect(payloadOf(r.events[2])).toEqual({ toolUseId: 't2', name: 'exec', input: { cmd: 'ls' } });
    expect(nextAgentNode(r.state)).toEqual({ kind: 'tool_calls', calls });

    const results: ToolResultBlock[] = [
      { type: 'tool_result', toolUseId: 't1', content: 'A' },
      { type: 'tool_result', toolUseId: 't2', content: 'denied', isError: true },
    ];
    r = reduceAgent(r.state, { kind: 'tool_results', results });
    expect(r.state.pendingToolCalls).toEqual([]);
    expect(r.state.messages.at(-1)).toEqual({ role: 'user', content: results });
    expect(r.events.map(payloadOf)).toEqual([
      { toolUseId: 't1', content: 'A', isError: false },
      { toolUseId: 't2', content: 'denied', isError: true },
    ]);
    expect(nextAgentNode(r.state)).toEqual({ kind: 'model_call', call: 2 });
  });

  it('hands the task over on a valid handoff call', () => {
    const r = reduceAgent(fresh(), reply(call('h1', 'handoff', { to: 'reviewer', reason: 'needs review', notes: 'see a.ts' })));
    expect(r.state.outcome).toEqual({ kind: 'handoff', to: 'reviewer', reason: 'needs review', notes: 'see a.ts', usage });
    expect(types(r.events)).toEqual(['message.assistant', 'tool.called']);
  });

  it.each([
    ['to itself', { to: 'coder', reason: 'me' }, 'handoff: you cannot hand a task to yourself'],
    ['to an unknown agent', { to: 'wizard', reason: 'magic' }, 'handoff: unknown agent "wizard" (available: reviewer, tester)'],
    ['without a reason', { to: 'reviewer' }, /^invalid arguments for handoff: reason: /],
    ['with unknown arguments', { to: 'reviewer', reason: 'r', urgent: true }, /^invalid arguments for handoff: /],
  ])('leaves an invalid handoff %s pending for the workflow to answer', (_label, input, error) => {
    const h = call('h1', 'handoff', input);
    const r = reduceAgent(fresh(), reply(h));
    expect(r.state.outcome).toBeNull();
    expect(r.state.pendingToolCalls).toEqual([h]);
    expect(nextAgentNode(r.state)).toEqual({ kind: 'tool_calls', calls: [h] });
    const checked = checkHandoff(r.state, h);
    expect(checked.ok).toBe(false);
    if (!checked.ok) expect(checked.error).toEqual(typeof error === 'string' ? error : expect.stringMatching(error));
  });

  it('says when no agent is available to hand over to', () => {
    const checked = checkHandoff(fresh({ handoffTargets: [] }), call('h', 'handoff', { to: 'reviewer', reason: 'x' }));
    expect(checked).toEqual({ ok: false, error: 'handoff: unknown agent "reviewer" (available: (none))' });
  });

  it('fails on a failed model call', () => {
    const r = reduceAgent(fresh(), { kind: 'model_failed', code: 'model_error', message: 'boom' });
    expect(r.state.outcome).toEqual({ kind: 'failed', reason: 'model_error: boom', usage: { inputTokens: 0, outputTokens: 0 } });
  });

  it('fails with turn_limit_exceeded when the last allowed model call still asks for tools', () => {
    let s = fresh({ maxModelCalls: 2 });
    s = reduceAgent(s, reply(call('t1', 'read_file', {}))).state;
    expect(s.outcome).toBeNull();
    s = reduceAgent(s, { kind: 'tool_results', results: [{ type: 'tool_result', toolUseId: 't1', content: 'x' }] }).state;
    s = reduceAgent(s, reply(call('t2', 'read_file', {}))).state;
    expect(s.outcome).toEqual({ kind: 'failed', reason: 'turn_limit_exceeded: 2 model calls without finishing the task', usage: { inputTokens: 20, outputTokens: 10 } });
  });

  it('still finishes on the last allowed call when it answers without tools', () => {
    const s = reduceAgent(fresh({ maxModelCalls: 1 }), reply({ type: 'text', text: 'ok' })).state;
    expect(s.outcome).toMatchObject({ kind: 'done', output: 'ok' });
  });

  it('records as context the messages that were sent to the model', () => {
    let s = fresh();
    expect(s.contextRecorded).toBe(0);
    s = reduceAgent(s, reply(call('t1', 'read_file', {}))).state;
    expect(s.contextRecorded).toBe(1);
    s = reduceAgent(s, { kind: 'tool_results', results: [{ type: 'tool_result', toolUseId: 't1', content: 'x' }] }).state;
    expect(s.contextRecorded).toBe(1);
    s = reduceAgent(s, reply({ type: 'text', text: 'done' })).state;
    expect(s.contextRecorded).toBe(3);
    expect(s.messages).toHaveLength(4);
  });
});

describe('orchestrator: regressions', () => {
  it('tells the planner what is wrong with a text plan even when it also called another tool', () => {
    const r = reduceOrchestrator(
      fresh(),
      response({ type: 'text', text: '{"tasks":[{"id":"a","goal":"x","dependsOn":["zz"]}]}' }, { type: 'tool_use', id: 'u1', name: 'search', input: {} }),
      T0,
    );
    expect(types(r.events)).toContain('plan.rejected');
    expect(lastMessage(r.state).content[0]).toEqual({ type: 'tool_result', toolUseId: 'u1', content: 'only submit_plan is available to you', isError: true });
    expect(textIn(lastMessage(r.state))).toContain('tasks.0.dependsOn: unknown task "zz"');
    expectWellFormed(r.state.plannerMessages);
  });

  it('answers a tool call in the synthesis reply, so the next round is a valid conversation', () => {
    let s = planned([{ id: 'a', goal: 'code', agent: 'coder' }]);
    s = dispatch(s, T0).state;
    s = reduceOrchestrator(s, finished(task(s, 'a').id, done('ok')), T0 + 1).state;
    expect(s.phase).toBe('synthesizing');
    s = reduceOrchestrator(s, response({ type: 'text', text: 'answer' }, { type: 'tool_use', id: 'sx', name: 'submit_plan', input: {} }), T0 + 2).state;
    expect(s.finalAnswer).toBe('answer');
    s = reduceOrchestrator(s, { kind: 'user_message', content: 'more' }, T0 + 3).state;
    expect(lastMessage(s).content[0]).toMatchObject({ type: 'tool_result', toolUseId: 'sx', isError: true });
    expectWellFormed(s.plannerMessages);
  });

  it('says which dependency a superseded task waited on, even down a chain', () => {
    let s = planned([
      { id: 'a', goal: 'one', agent: 'tester' },
      { id: 'b', goal: 'two', agent: 'tester', dependsOn: ['a'] },
      { id: 'c', goal: 'three', agent: 'tester', dependsOn: ['b'] },
    ], { defaultMaxAttempts: 1 });
    s = dispatch(s, T0).state;
    s = reduceOrchestrator(s, finished(task(s, 'a').id, failed('boom')), T0 + 1).state;
    expect(task(s, 'b').statusReason).toBe('superseded: depends on "a", which failed');
    expect(task(s, 'c').statusReason).toBe('superseded: depends on "b", which cancelled');
  });

  it('never assigns a task to the planner itself', () => {
    const r = reduceOrchestrator(fresh(), submitPlan([{ id: 'a', goal: 'plan more', agent: 'planner' }]), T0);
    expect(types(r.events)).toContain('plan.rejected');
    expect(textIn(lastMessage(r.state))).toContain('unknown agent "planner"');
    const byRole = reduceOrchestrator(fresh(), submitPlan([{ id: 'a', goal: 'zzz', role: 'planner' }]), T0, );
    // role "planner" matches no worker; the default catch-all rule sends it to the coder instead
    expect(task(byRole.state, 'a').agentId).toBe('coder');
  });
});
