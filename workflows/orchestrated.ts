/**
 * The orchestrated session workflow: the multi-agent run loop. A planner plans, the orchestrator routes each task to
 * an agent and runs it as a child workflow (independent tasks in parallel up to a limit), retries, times out,
 * follows handoffs, replans after failures, and has the planner write the final answer. Decisions are pure
 * (core/orchestrator.ts); this file runs nodes and mirrors every state to Postgres.
 */
import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  log,
  setHandler,
  sleep,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import {
  describeNode,
  initialOrchestratorState,
  isActiveTask,
  nextStep,
  orchestratorSnapshotOf,
  orchestratorStartEvents,
  reduceOrchestrator,
  taskSnapshotOf,
  type DispatchSpec,
  type OrchestratorLimits,
  type OrchestratorNode,
  type OrchestratorResult,
  type OrchestratorState,
  type RouteRule,
  type TaskState,
} from '../core/orchestrator';
import { SUBMIT_PLAN_TOOL } from '../core/plan';
import type { VersionedAgent } from '../core/schemas';
import type { EventDraft } from '../core/session';
import type { Workspace } from '../lib/workspace';
import { awaitUserInput, callModelNode, prepareSessionWorkspace, store } from './common';
import { closeSignal, sessionViewQuery, taskApprovalSignal, userMessageSignal } from './messages';
import type { SessionOutcome } from './session';
import { taskWorkflow, taskWorkflowId } from './task';

export type OrchestratedSessionInput = {
  sessionId: string;
  goal: string;
  project: string | null;
  planner: VersionedAgent;
  /** The agent catalogue frozen at session start. */
  agents: VersionedAgent[];
  routes?: RouteRule[];
  limits?: Partial<OrchestratorLimits>;
  metadata?: Record<string, unknown>;
  /** Real path of the repository the session works on; its tasks share the session's worktree, one at a time. */
  repo?: string;
  approvalTimeoutMs?: number;
  /** Set only by continue-as-new. */
  carried?: { state: OrchestratorState; inbox: string[]; closeRequested: boolean; workspace?: Workspace };
};

type RunningTask = { scope: CancellationScope; result: Promise<OrchestratorResult> };

export async function orchestratedSessionWorkflow(input: OrchestratedSessionInput): Promise<SessionOutcome> {
  let state: OrchestratorState = input.carried?.state ?? initialOrchestratorState(input);
  const inbox: string[] = input.carried?.inbox ?? [];
  let closeRequested = input.carried?.closeRequested ?? false;
  let pending: EventDraft[] = input.carried ? [] : orchestratorStartEvents(state);
  const running = new Map<string, RunningTask>();
  let workspace: Workspace | undefined = input.carried?.workspace;
  /** Approval notices from task runs, in arrival order. */
  const approvalNotices: { taskId: string; approvalId: string; pending: boolean }[] = [];
  setHandler(taskApprovalSignal, (notice) => {
    approvalNotices.push(notice);
  });
  /** The task objects as last written to Postgres (state is immutable, so identity tells what changed). */
  const mirrored = new Map<string, TaskState>(input.carried ? state.tasks.map((t) => [t.id, t]) : []);

  setHandler(userMessageSignal, ({ content }) => {
    inbox.push(content);
  });
  setHandler(closeSignal, () => {
    closeRequested = true;
  });
  setHandler(sessionViewQuery, () => ({
    status: state.status,
    statusReason: state.statusReason,
    queuedMessages: inbox.length,
    checkpoints: state.checkpoints,
  }));

  async function checkpoint(events: EventDraft[]): Promise<void> {
    state = { ...state, checkpoints: state.checkpoints + 1 };
    const n = state.checkpoints;
    const { runId } = workflowInfo();
    const timestamp = new Date().toISOString();
    const changed = state.tasks.filter((t) => mirrored.get(t.id) !== t);
    const request = {
      sessionId: state.sessionId,
      ...(n === 1 ? { create: { goal: state.goal, agent: state.planner, metadata: input.metadata ?? {}, project: state.project } } : {}),
      snapshot: orchestratorSnapshotOf(state),
      tasks: changed.map(taskSnapshotOf),
      events: events.map((e, i) => ({ ...e, key: `c${n}:${i}`, runId, timestamp })),
    };
    await CancellationScope.nonCancellable(() => store.checkpoint(request));
    for (const t of changed) mirrored.set(t.id, t);
  }

  function startTask(spec: DispatchSpec): Promise<void> {
    const scope = new CancellationScope();
    let started!: () => void;
    const startedPromise = new Promise<void>((resolve) => (started = resolve));
    const result = scope
      .run(async () => {
        const handle = await startChild(taskWorkflow, {
          workflowId: taskWorkflowId(spec.taskId, spec.run),
          args: [
            {
              ...spec,
              sessionId: state.sessionId,
              project: state.project,
              ...(workspace ? { workspace } : {}),
              ...(input.approvalTimeoutMs ? { approvalTimeoutMs: input.approvalTimeoutMs } : {}),
            },
          ],
          memo: { taskId: spec.taskId, agent: spec.agent.id },
        });
        started();
        return handle.result();
      })
      .then(
        (outcome): OrchestratorResult => ({ kind: 'task_finished', taskId: spec.taskId, outcome }),
        (err: unknown): OrchestratorResult => {
          started();
          // A cancelled child (session cancel, deadline) rejects: whoever cancelled it decides what that means.
          if (isCancellation(err)) throw err;
          // A child that failed outright (not an agent failure, which is an outcome) counts as a failed attempt.
          const message = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
          return { kind: 'task_finished', taskId: spec.taskId, outcome: { kind: 'failed', reason: `task_workflow_failed: ${message}`, usage: { inputTokens: 0, outputTokens: 0 } } };
        },
      );
    result.catch(() => undefined); // observed later by awaitTasks; never an unhandled rejection meanwhile
    running.set(spec.taskId, { scope, result });
    return startedPromise;
  }

  async function awaitTasks(wakeAt: number | null): Promise<OrchestratorResult> {
    const notice = approvalNotices.shift();
    if (notice) return { kind: 'task_approval', ...notice };
    const entries = [...running.entries()];
    const first = Promise.race(
      entries.map(([id, r]) => {
        const settled = r.result.then(() => id);
        settled.catch(() => undefined); // only the race's outcome matters; the losers must not count as unhandled
        return settled;
      }),
    );
    const timerScope = new CancellationScope();
    const timer =
      wakeAt === null ? new Promise<null>(() => undefined) : timerScope.run(() => sleep(Math.max(1, wakeAt - Date.now()))).then(() => null);
    timer.catch(() => undefined); // once the race is decided, cancelling the timer must not be an unhandled rejection
    const noticeScope = new CancellationScope();
    const noticed = noticeScope.run(() => condition(() => approvalNotices.length > 0)).then(() => null);
    noticed.catch(() => undefined);
    // A session cancel rejects the race (through a child or the timer): it propagates to the caller.
    const winner = await Promise.race([first, timer, noticed]);
    noticeScope.cancel();
    if (winner === null && approvalNotices.length > 0) {
      timerScope.cancel();
      return { kind: 'task_approval', ...approvalNotices.shift()! };
    }
    if (winner !== null) {
      timerScope.cancel();
      const entry = running.get(winner)!;
      running.delete(winner);
      return entry.result;
    }
    // The timer fired: a running task passed its deadline, or a retry's backoff is over.
    const now = Date.now();
    const late = state.tasks.find((t) => isActiveTask(t) && t.deadlineAt !== null && t.deadlineAt <= now && running.has(t.id));
    if (!late) return { kind: 'tick' };
    const entry = running.get(late.id)!;
    running.delete(late.id);
    entry.scope.cancel();
    await entry.result.catch(() => undefined); // the child records its cancellation before we go on
    return { kind: 'task_timed_out', taskId: late.id };
  }

  /** Children whose task is no longer running (session failed, cancelled) are cancelled and awaited. */
  async function cancelStaleChildren(): Promise<void> {
    for (const [id, entry] of [...running.entries()]) {
      const task = state.tasks.find((t) => t.id === id);
      if (task && isActiveTask(task)) continue;
      running.delete(id);
      entry.scope.cancel();
      await entry.result.catch(() => undefined);
    }
  }

  async function runNode(node: OrchestratorNode): Promise<OrchestratorResult> {
    switch (node.kind) {
      case 'plan':
      case 'synthesize': {
        const root = state.tasks.find((t) => t.round === state.round && t.parentId === null);
        return callModelNode({
          sessionId: state.sessionId,
          step: state.checkpoints,
          agent: state.planner,
          messages: state.plannerMessages,
          project: state.project,
          ...(root ? { taskId: root.id } : {}),
          tools: node.kind === 'plan' ? [SUBMIT_PLAN_TOOL] : [],
          recordFrom: state.plannerContextRecorded,
        });
      }
      case 'dispatch':
        await Promise.all(node.tasks.map(startTask));
        return { kind: 'dispatched', taskIds: node.tasks.map((t) => t.taskId) };
      case 'await_tasks':
        return awaitTasks(node.wakeAt);
      case 'await_input':
        return awaitUserInput({ inbox, closeRequested: () => closeRequested, awaitingSince: state.awaitingSince, idleTimeoutMs: state.limits.idleTimeoutMs });
    }
  }

  try {
    if (input.repo && !workspace) {
      // The session row exists after the first checkpoint; then the worktree is made (idempotent) and recorded on it.
      await checkpoint(pending);
      pending = [];
      const prepared = await prepareSessionWorkspace(state.sessionId, input.repo);
      workspace = prepared.workspace;
      pending = [prepared.event];
    }
    while (!state.done) {
      const info = workflowInfo();
      if (running.size === 0 && (info.continueAsNewSuggested || info.historyLength >= state.limits.maxHistoryEvents)) {
        if (pending.length > 0) await checkpoint(pending);
        pending = [];
        await condition(allHandlersFinished);
        log.info('continuing as new', { sessionId: state.sessionId, historyLength: info.historyLength });
        return await continueAsNew<typeof orchestratedSessionWorkflow>({ ...input, carried: { state, inbox, closeRequested, ...(workspace ? { workspace } : {}) } });
      }
      const node = nextStep(state, Date.now());
      await checkpoint([...pending, { actor: 'orchestrator', type: 'workflow.node.enter', payload: describeNode(node) }]);
      pending = [];
      const result = await runNode(node);
      const reduced = reduceOrchestrator(state, result, Date.now());
      state = reduced.state;
      pending = [{ actor: 'orchestrator', type: 'workflow.node.exit', payload: { kind: node.kind, result: result.kind } }, ...reduced.events];
      await cancelStaleChildren();
    }
    await checkpoint(pending);
  } catch (err) {
    if (!isCancellation(err) || state.done) throw err;
    // The session was cancelled: the cancel reaches every child through its scope. Wait for them to stop, then record
    // every open task as cancelled (never failed, never blocked) and let Temporal mark the workflow cancelled.
    await CancellationScope.nonCancellable(async () => {
      await Promise.allSettled([...running.values()].map((r) => r.result));
      running.clear();
      const reduced = reduceOrchestrator(state, { kind: 'cancelled' }, Date.now());
      state = reduced.state;
      await checkpoint([...pending, ...reduced.events]);
    });
    throw err;
  }

  if (state.status === 'failed') {
    throw ApplicationFailure.nonRetryable(state.statusReason ?? 'session failed', 'session_failed');
  }
  return { status: state.status, reason: state.statusReason, finalAnswer: state.finalAnswer };
}
