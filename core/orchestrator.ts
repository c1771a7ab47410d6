/**
 * The multi-agent orchestrator as pure functions: plan -> route -> dispatch -> (retry | handoff | replan) ->
 * synthesize -> wait for the next message. `nextStep(state, now)` says what runs now; `reduceOrchestrator` folds the
 * result in and says which trace events describe the change. The session workflow runs the nodes (model calls, child
 * workflows, timers, signals) and mirrors every state to Postgres. No I/O, no clocks, no randomness here.
 */
import type { TaskOutcome } from './agent-loop';
import {
  planningPrompt,
  replanPrompt,
  synthesisPrompt,
  taskPrompt,
  type HandedArtifact,
  type HandoffNote,
  type TaskReport,
} from './context';
import { HANDOFF_TOOL } from './handoff';
import { addUsage, textOf, toolUsesOf, type ChatMessage, type ContentBlock, type ModelResponse, type TokenUsage } from './model';
import { extractPlan, SUBMIT_PLAN_TOOL, validatePlan, type PlanTask } from './plan';
import type { SessionStatus, TaskStatus, VersionedAgent } from './schemas';
import type { EventDraft, SessionSnapshot } from './session';

/** A router rule: a task whose goal matches `pattern` (case-insensitive regular expression) goes to `agent`. */
export type RouteRule = { pattern: string; agent: string };

/** Used when a session gives no rules of its own. Rules naming agents that do not exist are skipped. */
export const DEFAULT_ROUTES: readonly RouteRule[] = [
  { pattern: '\\b(review|audit|critique)', agent: 'reviewer' },
  { pattern: '\\b(tests?|testing|verify)\\b', agent: 'tester' },
  { pattern: '.', agent: 'coder' },
];

export type OrchestratorLimits = {
  maxParallelTasks: number;
  /** Invalid plans tolerated per planning step before the session fails. */
  maxPlanAttempts: number;
  /** Replans per round after tasks failed. */
  maxReplans: number;
  maxTasksPerPlan: number;
  /** Deadline of a task (all attempts) when its agent sets no timeoutSeconds. */
  defaultTaskTimeoutMs: number;
  /** Attempts of a task when its agent sets no retry policy. */
  defaultMaxAttempts: number;
  defaultBackoffMs: number;
  maxHandoffsPerTask: number;
  maxModelCallsPerTask: number;
  idleTimeoutMs: number;
  maxHistoryEvents: number;
};

export const DEFAULT_ORCHESTRATOR_LIMITS: OrchestratorLimits = {
  maxParallelTasks: 4,
  maxPlanAttempts: 3,
  maxReplans: 2,
  maxTasksPerPlan: 20,
  defaultTaskTimeoutMs: 30 * 60 * 1000,
  defaultMaxAttempts: 2,
  defaultBackoffMs: 1000,
  maxHandoffsPerTask: 3,
  maxModelCallsPerTask: 50,
  idleTimeoutMs: 24 * 3600 * 1000,
  maxHistoryEvents: 10_000,
};

export type TaskState = {
  id: string;
  /** The round's root task for planned tasks; null for a root task. */
  parentId: string | null;
  round: number;
  /** The planner's id for the task; `root` for a root task. */
  planKey: string;
  goal: string;
  role: string | null;
  input: unknown;
  /** Task ids. */
  dependsOn: string[];
  agentId: string | null;
  agentVersion: number | null;
  status: TaskStatus;
  statusReason: string | null;
  /** Attempts with the current agent (reset by a handoff). */
  attempts: number;
  /** Child workflow runs so far (attempts and handoffs together); names the next run. */
  runs: number;
  handoffs: number;
  handoff: HandoffNote | null;
  notBefore: number | null;
  deadlineAt: number | null;
  output: string | null;
  /** A failure the planner has already been told about. */
  replanned: boolean;
  /** Approvals the task's run is waiting for (the task is `blocked` while there are any). */
  waitingApprovals?: number;
};

export type Phase = 'planning' | 'executing' | 'synthesizing' | 'awaiting_input';

export type OrchestratorState = {
  sessionId: string;
  goal: string;
  project: string | null;
  planner: VersionedAgent;
  /** Every agent the session may use, frozen at its start: a running session keeps these versions. */
  agents: VersionedAgent[];
  routes: RouteRule[];
  limits: OrchestratorLimits;
  status: SessionStatus;
  statusReason: string | null;
  phase: Phase;
  round: number;
  plannerMessages: ChatMessage[];
  /** Index of the first planner message not yet recorded in a `model.context` trace event. */
  plannerContextRecorded: number;
  planCalls: number;
  planAttempts: number;
  replans: number;
  tasks: TaskState[];
  taskCounter: number;
  usage: TokenUsage;
  finalAnswer: string | null;
  awaitingSince: number | null;
  checkpoints: number;
  done: boolean;
};

export type DispatchSpec = {
  taskId: string;
  attempt: number;
  run: number;
  agent: VersionedAgent;
  prompt: string;
  handoffTargets: string[];
  maxModelCalls: number;
};

export type OrchestratorNode =
  | { kind: 'plan'; call: number }
  | { kind: 'synthesize' }
  | { kind: 'dispatch'; tasks: DispatchSpec[] }
  | { kind: 'await_tasks'; wakeAt: number | null }
  | { kind: 'await_input' };

export type OrchestratorResult =
  | { kind: 'model_response'; response: ModelResponse }
  | { kind: 'model_failed'; code: string; message: string }
  | { kind: 'dispatched'; taskIds: string[] }
  | { kind: 'task_finished'; taskId: string; outcome: TaskOutcome }
  | { kind: 'task_timed_out'; taskId: string }
  | { kind: 'tick' }
  | { kind: 'task_approval'; taskId: string; approvalId: string; pending: boolean }
  | { kind: 'user_message'; content: string }
  | { kind: 'closed' }
  | { kind: 'idle_timeout' }
  | { kind: 'cancelled' };

export const TERMINAL_TASK: readonly TaskStatus[] = ['done', 'failed', 'cancelled'];
/** A task whose run is in flight: running, or blocked while its run waits for a person's approval. */
export const isActiveTask = (t: Pick<TaskState, 'status'>) => t.status === 'running' || t.status === 'blocked';
const isTerminalTask = (t: TaskState) => TERMINAL_TASK.includes(t.status);

// ---------------------------------------------------------------- routing

export type RouteDecision = { agentId: string; by: 'assignment' | 'role' | 'rule'; rule?: string } | { error: string };

/** Explicit assignment, else the first agent (by id) with the task's role, else the first matching router rule. */
export function route(task: Pick<PlanTask, 'agent' | 'role' | 'goal'>, agents: readonly VersionedAgent[], rules: readonly RouteRule[]): RouteDecision {
  if (task.agent !== undefined) {
    return agents.some((a) => a.id === task.agent) ? { agentId: task.agent, by: 'assignment' } : { error: `unknown agent "${task.agent}"` };
  }
  if (task.role !== undefined) {
    const byRole = agents.filter((a) => a.role === task.role).sort((a, b) => a.id.localeCompare(b.id))[0];
    if (byRole) return { agentId: byRole.id, by: 'role' };
  }
  for (const rule of rules) {
    if (!agents.some((a) => a.id === rule.agent)) continue;
    if (new RegExp(rule.pattern, 'i').test(task.goal)) return { agentId: rule.agent, by: 'rule', rule: rule.pattern };
  }
  const roles = [...new Set(agents.map((a) => a.role))].sort();
  return {
    error:
      (task.role !== undefined ? `no agent has role "${task.role}"` : 'no role or agent given') +
      ` and no routing rule matches the goal (roles: ${roles.join(', ')})`,
  };
}

// ---------------------------------------------------------------- construction

function rootTask(sessionId: string, round: number, goal: string, planner: VersionedAgent): TaskState {
  return {
    id: `${sessionId}.r${round}`,
    parentId: null,
    round,
    planKey: 'root',
    goal,
    role: planner.role,
    input: null,
    dependsOn: [],
    agentId: planner.id,
    agentVersion: planner.version,
    status: 'running',
    statusReason: null,
    attempts: 0,
    runs: 0,
    handoffs: 0,
    handoff: null,
    notBefore: null,
    deadlineAt: null,
    output: null,
    replanned: false,
  };
}

function agentSummaries(s: Pick<OrchestratorState, 'agents' | 'planner'>) {
  return s.agents.filter((a) => a.id !== s.planner.id).map((a) => ({ id: a.id, role: a.role, ...(a.description ? { description: a.description } : {}) }));
}

export function initialOrchestratorState(args: {
  sessionId: string;
  goal: string;
  project: string | null;
  planner: VersionedAgent;
  agents: VersionedAgent[];
  routes?: RouteRule[];
  limits?: Partial<OrchestratorLimits>;
}): OrchestratorState {
  const base = { agents: args.agents, planner: args.planner };
  return {
    sessionId: args.sessionId,
    goal: args.goal,
    project: args.project,
    planner: args.planner,
    agents: args.agents,
    routes: args.routes ?? [...DEFAULT_ROUTES],
    limits: { ...DEFAULT_ORCHESTRATOR_LIMITS, ...args.limits },
    status: 'running',
    statusReason: null,
    phase: 'planning',
    round: 1,
    plannerMessages: [{ role: 'user', content: [{ type: 'text', text: planningPrompt(args.goal, agentSummaries(base), 1) }] }],
    plannerContextRecorded: 0,
    planCalls: 0,
    planAttempts: 0,
    replans: 0,
    tasks: [rootTask(args.sessionId, 1, args.goal, args.planner)],
    taskCounter: 0,
    usage: { inputTokens: 0, outputTokens: 0 },
    finalAnswer: null,
    awaitingSince: null,
    checkpoints: 0,
    done: false,
  };
}

export function orchestratorStartEvents(s: OrchestratorState): EventDraft[] {
  const root = s.tasks[0]!;
  return [
    {
      actor: 'orchestrator',
      type: 'session.started',
      payload: {
        goal: s.goal,
        mode: 'orchestrated',
        agent: { id: s.planner.id, model: s.planner.model, version: s.planner.version },
        agents: s.agents.map((a) => ({ id: a.id, role: a.role, version: a.version })),
      },
    },
    { actor: 'user', type: 'message.user', payload: { content: s.goal } },
    { actor: 'orchestrator', type: 'task.created', payload: { taskId: root.id, round: 1, goal: root.goal, agent: s.planner.id, status: 'running' } },
  ];
}

// ---------------------------------------------------------------- next

const roundTasks = (s: OrchestratorState) => s.tasks.filter((t) => t.round === s.round && t.parentId !== null);
const rootOf = (s: OrchestratorState) => s.tasks.find((t) => t.round === s.round && t.parentId === null)!;
const byId = (s: OrchestratorState, id: string) => s.tasks.find((t) => t.id === id);

function depsDone(s: OrchestratorState, t: TaskState): boolean {
  return t.dependsOn.every((d) => byId(s, d)?.status === 'done');
}

function agentOf(s: OrchestratorState, id: string | null): VersionedAgent | undefined {
  return s.agents.find((a) => a.id === id);
}

function handedTo(s: OrchestratorState, t: TaskState): HandedArtifact[] {
  return t.dependsOn.flatMap((d) => {
    const dep = byId(s, d);
    return dep && dep.status === 'done' ? [{ taskId: dep.id, planKey: dep.planKey, agent: dep.agentId ?? '', goal: dep.goal, output: dep.output ?? '' }] : [];
  });
}

/** orchestrator.next: what runs now. `now` is workflow time (ms). Only called while `!state.done`. */
export function nextStep(s: OrchestratorState, now: number): OrchestratorNode {
  if (s.done) throw new Error('nextStep() called on a finished session');
  switch (s.phase) {
    case 'planning':
      return { kind: 'plan', call: s.planCalls + 1 };
    case 'synthesizing':
      return { kind: 'synthesize' };
    case 'awaiting_input':
      return { kind: 'await_input' };
    case 'executing': {
      const tasks = roundTasks(s);
      const running = tasks.filter(isActiveTask);
      const eligible = tasks.filter((t) => t.status === 'pending' && depsDone(s, t));
      const ready = eligible.filter((t) => (t.notBefore ?? 0) <= now);
      const slots = s.limits.maxParallelTasks - running.length;
      if (ready.length > 0 && slots > 0) {
        return {
          kind: 'dispatch',
          tasks: ready.slice(0, slots).map((t) => {
            const agent = agentOf(s, t.agentId)!;
            return {
              taskId: t.id,
              attempt: t.attempts + 1,
              run: t.runs + 1,
              agent,
              prompt: taskPrompt({ goal: t.goal, input: t.input, handed: handedTo(s, t), ...(t.handoff ? { handoff: t.handoff } : {}) }),
              handoffTargets: agent.tools.includes(HANDOFF_TOOL) ? s.agents.filter((a) => a.id !== agent.id && a.id !== s.planner.id).map((a) => a.id) : [],
              maxModelCalls: s.limits.maxModelCallsPerTask,
            };
          }),
        };
      }
      const wakeTimes = [
        ...running.map((t) => t.deadlineAt).filter((x): x is number => x !== null),
        ...eligible.map((t) => t.notBefore).filter((x): x is number => x !== null && x > now),
      ];
      return { kind: 'await_tasks', wakeAt: wakeTimes.length > 0 ? Math.min(...wakeTimes) : null };
    }
  }
}

/** The node as recorded in `workflow.node.enter`: ids and numbers, not prompts or whole agent definitions. */
export function describeNode(node: OrchestratorNode): unknown {
  if (node.kind === 'dispatch') {
    return { kind: 'dispatch', tasks: node.tasks.map((t) => ({ taskId: t.taskId, agent: t.agent.id, version: t.agent.version, attempt: t.attempt })) };
  }
  return node;
}

// ---------------------------------------------------------------- reduce

type Acc = { s: OrchestratorState; events: EventDraft[]; now: number };

function updateTask(acc: Acc, id: string, patch: Partial<TaskState>): TaskState {
  let updated: TaskState | undefined;
  acc.s = {
    ...acc.s,
    tasks: acc.s.tasks.map((t) => {
      if (t.id !== id) return t;
      updated = { ...t, ...patch };
      return updated;
    }),
  };
  if (!updated) throw new Error(`unknown task ${id}`);
  return updated;
}

function setStatus(acc: Acc, status: SessionStatus, reason: string | null) {
  const s = acc.s;
  if (s.status === status && s.statusReason === reason) return;
  acc.events.push({
    actor: 'orchestrator',
    type: 'state.mutated',
    payload: { status: { from: s.status, to: status }, statusReason: { from: s.statusReason, to: reason } },
  });
  acc.s = { ...s, status, statusReason: reason };
}

function taskEvent(acc: Acc, type: string, t: TaskState, extra: Record<string, unknown> = {}) {
  acc.events.push({ actor: 'orchestrator', type, payload: { taskId: t.id, planKey: t.planKey, status: t.status, ...extra } });
}

/** Appends a user turn, merging into the last message when it is already a user turn. */
function appendUser(messages: ChatMessage[], blocks: ContentBlock[]): ChatMessage[] {
  const last = messages[messages.length - 1];
  if (last?.role === 'user') return [...messages.slice(0, -1), { role: 'user', content: [...last.content, ...blocks] }];
  return [...messages, { role: 'user', content: blocks }];
}

function cancelOpenTasks(acc: Acc, reason: string, filter: (t: TaskState) => boolean = () => true) {
  for (const t of acc.s.tasks) {
    if (isTerminalTask(t) || !filter(t)) continue;
    const u = updateTask(acc, t.id, { status: 'cancelled', statusReason: reason });
    taskEvent(acc, 'task.cancelled', u, { reason });
  }
}

function end(acc: Acc, status: SessionStatus, reason: string) {
  if (status !== 'done') cancelOpenTasks(acc, status === 'cancelled' ? 'cancelled' : `session_${status}`, (t) => t.parentId !== null);
  const root = rootOf(acc.s);
  if (!isTerminalTask(root)) {
    const u = updateTask(acc, root.id, { status: status === 'done' ? 'done' : status, statusReason: reason });
    taskEvent(acc, status === 'cancelled' ? 'task.cancelled' : status === 'failed' ? 'task.failed' : 'task.completed', u, { reason });
  }
  setStatus(acc, status, reason);
  acc.s = { ...acc.s, done: true };
  acc.events.push({
    actor: 'orchestrator',
    type: 'session.ended',
    payload: { status, reason, finalAnswer: acc.s.finalAnswer, usage: acc.s.usage },
  });
}

function reports(s: OrchestratorState): TaskReport[] {
  return roundTasks(s).map((t) => ({ planKey: t.planKey, goal: t.goal, agent: t.agentId, status: t.status, reason: t.statusReason, output: t.output }));
}

/** When nothing in the round can progress any more: replan after failures, fail the session, or synthesize. */
function settle(acc: Acc) {
  const s = acc.s;
  if (s.phase !== 'executing') return;
  const tasks = roundTasks(s);
  const progressable = tasks.some((t) => isActiveTask(t) || (t.status === 'pending' && depsDone(s, t)));
  if (progressable) return;
  // Pending tasks that wait on a failed or cancelled task can never run: they are superseded, not failed.
  for (const t of tasks) {
    if (t.status !== 'pending') continue;
    const blocker = t.dependsOn.map((d) => byId(acc.s, d)).find((d) => d && d.status !== 'done');
    const reason = `superseded: depends on "${blocker?.planKey ?? '?'}", which ${blocker?.status ?? 'did not finish'}`;
    const u = updateTask(acc, t.id, { status: 'cancelled', statusReason: reason });
    taskEvent(acc, 'task.cancelled', u, { reason });
  }
  const newlyFailed = roundTasks(acc.s).filter((t) => t.status === 'failed' && !t.replanned);
  if (newlyFailed.length === 0) {
    acc.s = {
      ...acc.s,
      phase: 'synthesizing',
      plannerMessages: appendUser(acc.s.plannerMessages, [{ type: 'text', text: synthesisPrompt(reports(acc.s)) }]),
    };
    return;
  }
  for (const t of newlyFailed) updateTask(acc, t.id, { replanned: true });
  const first = newlyFailed[0]!;
  if (acc.s.replans >= acc.s.limits.maxReplans) {
    end(acc, 'failed', `task_failed: task "${first.planKey}" failed (${first.statusReason ?? 'unknown reason'}) and no replans are left`);
    return;
  }
  const replans = acc.s.replans + 1;
  acc.events.push({
    actor: 'orchestrator',
    type: 'plan.replanning',
    payload: { replan: replans, failed: newlyFailed.map((t) => ({ taskId: t.id, planKey: t.planKey, reason: t.statusReason })) },
  });
  acc.s = {
    ...acc.s,
    phase: 'planning',
    replans,
    planAttempts: 0,
    plannerMessages: appendUser(acc.s.plannerMessages, [{ type: 'text', text: replanPrompt(reports(acc.s), acc.s.limits.maxReplans - replans) }]),
  };
}

function acceptPlanResponse(acc: Acc, response: ModelResponse) {
  const s = acc.s;
  const plannerActor = `agent:${s.planner.id}`;
  const extracted = extractPlan(response);
  const toolUses = toolUsesOf(response.content);
  // Tasks go to the other agents: the planner plans and synthesizes, it is never assigned a task.
  const workers = s.agents.filter((a) => a.id !== s.planner.id);
  const tasks = roundTasks(s);
  const validation =
    'error' in extracted
      ? ({ ok: false, errors: [extracted.error] } as const)
      : validatePlan(extracted.raw, {
          agents: workers.map((a) => a.id),
          doneKeys: tasks.filter((t) => t.status === 'done').map((t) => t.planKey),
          usedKeys: tasks.map((t) => t.planKey),
          maxTasks: s.limits.maxTasksPerPlan,
          routable: (t) => {
            const r = route(t, workers, s.routes);
            return 'error' in r ? r.error : null;
          },
        });
  const planToolId = 'error' in extracted ? null : extracted.toolUseId;
  // Every tool_use gets a tool_result so the planner's conversation stays well-formed.
  const answer = (planText: string, isError: boolean): ContentBlock[] => {
    const results: ContentBlock[] = toolUses.map((u) => ({
      type: 'tool_result' as const,
      toolUseId: u.id,
      content: u.id === planToolId ? planText : `only ${SUBMIT_PLAN_TOOL} is available to you`,
      isError: u.id === planToolId ? isError : true,
    }));
    // A plan given as text (no submit_plan call) is answered in text, after the results of any other tool calls.
    return planToolId === null ? [...results, { type: 'text' as const, text: planText }] : results;
  };

  if (!validation.ok) {
    const attempt = s.planAttempts + 1;
    acc.events.push({ actor: 'orchestrator', type: 'plan.rejected', payload: { attempt, errors: validation.errors } });
    acc.s = { ...acc.s, planAttempts: attempt };
    if (attempt >= s.limits.maxPlanAttempts) {
      end(acc, 'failed', `plan_invalid: the planner returned no valid plan in ${attempt} attempts: ${validation.errors.join('; ')}`);
      return;
    }
    const text = `The plan is invalid. Fix these problems and submit it again:\n${validation.errors.map((e) => `- ${e}`).join('\n')}`;
    acc.s = { ...acc.s, plannerMessages: appendUser(acc.s.plannerMessages, answer(text, true)) };
    return;
  }

  const plan = validation.plan;
  const root = rootOf(s);
  const keyToId = new Map(tasks.filter((t) => t.status === 'done').map((t) => [t.planKey, t.id]));
  let counter = s.taskCounter;
  for (const p of plan.tasks) keyToId.set(p.id, `${root.id}.t${++counter}`);
  const created: TaskState[] = plan.tasks.map((p) => {
    const decision = route(p, workers, s.routes) as Exclude<RouteDecision, { error: string }>;
    const agent = agentOf(s, decision.agentId)!;
    return {
      id: keyToId.get(p.id)!,
      parentId: root.id,
      round: s.round,
      planKey: p.id,
      goal: p.goal,
      role: p.role ?? null,
      input: p.input ?? null,
      dependsOn: p.dependsOn.map((d) => keyToId.get(d)!),
      agentId: agent.id,
      agentVersion: agent.version,
      status: 'pending',
      statusReason: null,
      attempts: 0,
      runs: 0,
      handoffs: 0,
      handoff: null,
      notBefore: null,
      deadlineAt: null,
      output: null,
      replanned: false,
    };
  });
  acc.events.push({
    actor: plannerActor,
    type: 'plan.accepted',
    payload: {
      attempt: s.planAttempts + 1,
      replan: s.replans,
      summary: plan.summary ?? null,
      tasks: created.map((t) => ({ taskId: t.id, planKey: t.planKey, goal: t.goal, dependsOn: t.dependsOn })),
    },
  });
  acc.s = {
    ...acc.s,
    tasks: [...acc.s.tasks, ...created],
    taskCounter: counter,
    planAttempts: 0,
    phase: 'executing',
    plannerMessages: appendUser(acc.s.plannerMessages, answer('Plan accepted. The tasks are running.', false)),
  };
  plan.tasks.forEach((p, i) => {
    const t = created[i]!;
    const decision = route(p, workers, s.routes) as Exclude<RouteDecision, { error: string }>;
    taskEvent(acc, 'task.created', t, { round: t.round, parentId: t.parentId, goal: t.goal, role: t.role, dependsOn: t.dependsOn });
    acc.events.push({
      actor: 'orchestrator',
      type: 'task.routed',
      payload: { taskId: t.id, planKey: t.planKey, agent: t.agentId, version: t.agentVersion, by: decision.by, ...(decision.rule ? { rule: decision.rule } : {}) },
    });
  });
  if (created.length === 0) {
    acc.s = { ...acc.s, phase: 'synthesizing', plannerMessages: appendUser(acc.s.plannerMessages, [{ type: 'text', text: synthesisPrompt(reports(acc.s)) }]) };
  }
}

function taskFinished(acc: Acc, taskId: string, outcome: TaskOutcome) {
  const t = byId(acc.s, taskId);
  acc.s = { ...acc.s, usage: addUsage(acc.s.usage, outcome.usage) };
  if (!t || !isActiveTask(t)) return; // a late result of a task that already timed out or was cancelled
  switch (outcome.kind) {
    case 'done': {
      const u = updateTask(acc, taskId, { status: 'done', statusReason: null, output: outcome.output, deadlineAt: null });
      taskEvent(acc, 'task.completed', u, { agent: u.agentId, attempt: u.attempts, output: outcome.output });
      break;
    }
    case 'handoff': {
      acc.events.push({
        actor: `agent:${t.agentId}`,
        type: 'handoff',
        payload: { taskId, planKey: t.planKey, from: t.agentId, to: outcome.to, reason: outcome.reason, ...(outcome.notes ? { notes: outcome.notes } : {}) },
      });
      const target = agentOf(acc.s, outcome.to);
      if (!target || t.handoffs + 1 > acc.s.limits.maxHandoffsPerTask) {
        const reason = target ? `handoff_limit_exceeded: more than ${acc.s.limits.maxHandoffsPerTask} handoffs` : `handoff to unknown agent "${outcome.to}"`;
        const u = updateTask(acc, taskId, { status: 'failed', statusReason: reason, deadlineAt: null });
        taskEvent(acc, 'task.failed', u, { reason });
        break;
      }
      const u = updateTask(acc, taskId, {
        status: 'pending',
        agentId: target.id,
        agentVersion: target.version,
        attempts: 0,
        handoffs: t.handoffs + 1,
        handoff: { from: t.agentId ?? '', reason: outcome.reason, ...(outcome.notes ? { notes: outcome.notes } : {}) },
        notBefore: null,
      });
      acc.events.push({ actor: 'orchestrator', type: 'task.routed', payload: { taskId, planKey: u.planKey, agent: target.id, version: target.version, by: 'handoff' } });
      break;
    }
    case 'failed': {
      const agent = agentOf(acc.s, t.agentId);
      const maxAttempts = agent?.retry?.maxAttempts ?? acc.s.limits.defaultMaxAttempts;
      if (t.attempts < maxAttempts) {
        const backoffMs = agent?.retry ? agent.retry.backoffSeconds * 1000 : acc.s.limits.defaultBackoffMs;
        const u = updateTask(acc, taskId, { status: 'pending', statusReason: `retrying: ${outcome.reason}`, notBefore: acc.now + backoffMs });
        taskEvent(acc, 'task.retrying', u, { attempt: t.attempts, maxAttempts, reason: outcome.reason, retryAt: new Date(acc.now + backoffMs).toISOString() });
      } else {
        const reason = `${outcome.reason} (after ${t.attempts} attempt${t.attempts === 1 ? '' : 's'})`;
        const u = updateTask(acc, taskId, { status: 'failed', statusReason: reason, deadlineAt: null });
        taskEvent(acc, 'task.failed', u, { reason, attempts: t.attempts });
      }
      break;
    }
  }
}

export function reduceOrchestrator(state: OrchestratorState, result: OrchestratorResult, now: number): { state: OrchestratorState; events: EventDraft[] } {
  const acc: Acc = { s: state, events: [], now };
  const plannerActor = `agent:${state.planner.id}`;
  switch (result.kind) {
    case 'model_response': {
      const r = result.response;
      acc.s = {
        ...acc.s,
        plannerMessages: [...acc.s.plannerMessages, { role: 'assistant', content: r.content }],
        plannerContextRecorded: acc.s.plannerMessages.length,
        planCalls: acc.s.planCalls + 1,
        usage: addUsage(acc.s.usage, r.usage),
      };
      acc.events.push({ actor: plannerActor, type: 'message.assistant', payload: { model: r.model, content: r.content, stopReason: r.stopReason, usage: r.usage } });
      if (state.phase === 'planning') {
        acceptPlanResponse(acc, r);
      } else if (state.phase === 'synthesizing') {
        const answer = textOf(r.content);
        const stray = toolUsesOf(r.content);
        if (stray.length > 0) {
          // No tools are offered for the final answer; any call still gets a result so the conversation stays valid.
          acc.s = {
            ...acc.s,
            plannerMessages: appendUser(
              acc.s.plannerMessages,
              stray.map((u) => ({ type: 'tool_result' as const, toolUseId: u.id, content: 'no tools are available while writing the final answer', isError: true })),
            ),
          };
        }
        const root = updateTask(acc, rootOf(acc.s).id, { status: 'done', output: answer });
        taskEvent(acc, 'task.completed', root, { agent: state.planner.id, output: answer });
        acc.s = { ...acc.s, finalAnswer: answer, phase: 'awaiting_input', awaitingSince: now };
        setStatus(acc, 'blocked', 'awaiting_input');
      }
      break;
    }
    case 'model_failed':
      end(acc, 'failed', `${state.phase === 'planning' ? 'plan_failed' : 'synthesis_failed'}: ${result.code}: ${result.message}`);
      break;
    case 'dispatched':
      for (const id of result.taskIds) {
        const t = byId(acc.s, id)!;
        const agent = agentOf(acc.s, t.agentId);
        const timeoutMs = agent?.timeoutSeconds ? agent.timeoutSeconds * 1000 : acc.s.limits.defaultTaskTimeoutMs;
        const u = updateTask(acc, id, {
          status: 'running',
          statusReason: null,
          attempts: t.attempts + 1,
          runs: t.runs + 1,
          notBefore: null,
          deadlineAt: t.deadlineAt ?? now + timeoutMs,
        });
        taskEvent(acc, 'task.dispatched', u, { agent: u.agentId, version: u.agentVersion, attempt: u.attempts, run: u.runs, deadline: new Date(u.deadlineAt!).toISOString() });
      }
      break;
    case 'task_finished':
      taskFinished(acc, result.taskId, result.outcome);
      if (acc.s.statusReason === 'awaiting_approval' && !acc.s.tasks.some((x) => x.status === 'blocked')) setStatus(acc, 'running', null);
      settle(acc);
      break;
    case 'task_timed_out': {
      const t = byId(acc.s, result.taskId);
      if (t && isActiveTask(t)) {
        const agent = agentOf(acc.s, t.agentId);
        const limitS = Math.round((agent?.timeoutSeconds ? agent.timeoutSeconds * 1000 : acc.s.limits.defaultTaskTimeoutMs) / 1000);
        const reason = `timeout: no result within ${limitS}s`;
        const u = updateTask(acc, t.id, { status: 'failed', statusReason: reason, deadlineAt: null });
        taskEvent(acc, 'task.failed', u, { reason, attempts: u.attempts });
      }
      settle(acc);
      break;
    }
    case 'tick':
      settle(acc);
      break;
    case 'task_approval': {
      const t = byId(acc.s, result.taskId);
      if (!t || !isActiveTask(t)) break;
      const waiting = Math.max(0, (t.waitingApprovals ?? 0) + (result.pending ? 1 : -1));
      const u = updateTask(acc, t.id, { waitingApprovals: waiting, status: waiting > 0 ? 'blocked' : 'running', statusReason: waiting > 0 ? 'awaiting_approval' : null });
      if (u.status !== t.status) taskEvent(acc, u.status === 'blocked' ? 'task.blocked' : 'task.resumed', u, { approvalId: result.approvalId });
      const anyWaiting = acc.s.tasks.some((x) => x.status === 'blocked');
      if (acc.s.status === 'running' || acc.s.statusReason === 'awaiting_approval') {
        setStatus(acc, anyWaiting ? 'blocked' : 'running', anyWaiting ? 'awaiting_approval' : null);
      }
      break;
    }
    case 'user_message': {
      const round = acc.s.round + 1;
      const root = rootTask(acc.s.sessionId, round, result.content, acc.s.planner);
      acc.events.push({ actor: 'user', type: 'message.user', payload: { content: result.content } });
      acc.s = {
        ...acc.s,
        round,
        tasks: [...acc.s.tasks, root],
        phase: 'planning',
        planAttempts: 0,
        replans: 0,
        awaitingSince: null,
        plannerMessages: appendUser(acc.s.plannerMessages, [{ type: 'text', text: planningPrompt(result.content, agentSummaries(acc.s), round) }]),
      };
      taskEvent(acc, 'task.created', root, { round, goal: root.goal, agent: acc.s.planner.id });
      setStatus(acc, 'running', null);
      break;
    }
    case 'closed':
      end(acc, 'done', 'closed');
      break;
    case 'idle_timeout':
      end(acc, 'done', 'idle_timeout');
      break;
    case 'cancelled':
      end(acc, 'cancelled', 'cancelled');
      break;
  }
  return { state: acc.s, events: acc.events };
}

// ---------------------------------------------------------------- mirror

export type TaskSnapshot = {
  id: string;
  parentId: string | null;
  round: number;
  planKey: string;
  goal: string;
  role: string | null;
  input: unknown;
  dependsOn: string[];
  assignedAgent: string | null;
  agentVersion: number | null;
  status: TaskStatus;
  statusReason: string | null;
  attempts: number;
  output: string | null;
};

export function taskSnapshotOf(t: TaskState): TaskSnapshot {
  return {
    id: t.id,
    parentId: t.parentId,
    round: t.round,
    planKey: t.planKey,
    goal: t.goal,
    role: t.role,
    input: t.input,
    dependsOn: t.dependsOn,
    assignedAgent: t.agentId,
    agentVersion: t.agentVersion,
    status: t.status,
    statusReason: t.statusReason,
    attempts: t.attempts,
    output: t.output,
  };
}

export function orchestratorSnapshotOf(s: OrchestratorState): SessionSnapshot {
  return { status: s.status, statusReason: s.statusReason, finalAnswer: s.finalAnswer, usage: s.usage, version: s.checkpoints, ended: s.done };
}
