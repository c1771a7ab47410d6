/**
 * The session workflow: the spec's run loop on Temporal. Decisions come from core/session.ts (pure);
 * this file only runs nodes (activities, waits) and writes checkpoints. Deterministic: no I/O, no Node APIs.
 */
import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  setHandler,
  workflowInfo,
  log,
} from '@temporalio/workflow';
import type { AgentDefinition } from '../core/schemas';
import {
  initialState,
  next,
  reduce,
  snapshotOf,
  startEvents,
  type EventDraft,
  type Node,
  type NodeResult,
  type SessionLimits,
  type SessionState,
} from '../core/session';
import { DEFAULT_APPROVAL_TIMEOUT_MS } from '../core/approval';
import type { Workspace } from '../lib/workspace';
import { ApprovalGate } from './approvals';
import { awaitUserInput, callModelNode, durableStore, prepareSessionWorkspace, store, tool } from './common';
import { runToolCalls } from './tool-calls';
import { closeSignal, rollbackUpdate, sessionViewQuery, userMessageSignal } from './messages';

export type SessionWorkflowInput = {
  sessionId: string;
  goal: string;
  agent: AgentDefinition;
  limits?: Partial<SessionLimits>;
  /** The session's metadata from the API, so the workflow can create the session row if the API could not. */
  metadata?: Record<string, unknown>;
  /** The session's project (scope of `project` memory on the blackboard). */
  project?: string | null;
  /** Set only by continue-as-new. */
  /** Real path of the repository the session works on, in its own worktree. */
  repo?: string;
  /** How long a guardrail `ask` waits for a person before it expires (a denial). */
  approvalTimeoutMs?: number;
  carried?: { state: SessionState; inbox: string[]; closeRequested: boolean; workspace?: Workspace; rollbacks?: number };
};

export type SessionOutcome = { status: SessionState['status']; reason: string | null; finalAnswer: string | null };

export async function sessionWorkflow(input: SessionWorkflowInput): Promise<SessionOutcome> {
  let state: SessionState = input.carried?.state ?? initialState(input);
  const inbox: string[] = input.carried?.inbox ?? [];
  let closeRequested = input.carried?.closeRequested ?? false;
  let pending: EventDraft[] = input.carried ? [] : startEvents(state);
  let workspace: Workspace | undefined = input.carried?.workspace;
  let rollbacks = input.carried?.rollbacks ?? 0;
  let waitingApprovals = 0;
  const gate = new ApprovalGate();

  setHandler(
    rollbackUpdate,
    async ({ snapshot, by }) => {
      rollbacks += 1;
      return tool.restoreWorkspace({ sessionId: state.sessionId, workspace: workspace!, sha: snapshot, by, key: `rollback${rollbacks}:${snapshot}` });
    },
    {
      validator: (_request: { snapshot: string; by: string }) => {
        if (!workspace) throw ApplicationFailure.nonRetryable('the session has no repository', 'conflict');
        if (state.statusReason !== 'awaiting_input') throw ApplicationFailure.nonRetryable('a rollback is only possible while the session waits for input', 'conflict');
      },
    },
  );

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

  /** Writes pending trace events and mirrors the state; idempotent (keys come from the checkpoint number). */
  async function checkpoint(events: EventDraft[], durable = false): Promise<void> {
    state = { ...state, checkpoints: state.checkpoints + 1 };
    const n = state.checkpoints;
    const { runId } = workflowInfo();
    const timestamp = new Date().toISOString();
    const request = {
      sessionId: state.sessionId,
      // The first checkpoint also creates the session row when it is missing (the API starts the workflow first).
      ...(n === 1 ? { create: { goal: state.goal, agent: state.agent, metadata: input.metadata ?? {}, project: input.project ?? null } } : {}),
      snapshot: snapshotOf(state),
      events: events.map((e, i) => ({ ...e, key: `c${n}:${i}`, runId, timestamp })),
    };
    // A checkpoint is never cut short by a cancel: what was decided gets written. Cancellation then reaches the
    // next model call, tool run or wait, which all run in the cancellable root scope.
    await CancellationScope.nonCancellable(() => (durable ? durableStore : store).checkpoint(request));
  }

  async function runNode(node: Node): Promise<NodeResult> {
    switch (node.kind) {
      case 'model_call':
        return callModelNode({
          sessionId: state.sessionId,
          step: state.checkpoints,
          agent: state.agent,
          messages: state.messages,
          project: input.project ?? null,
        });
      case 'tool_calls': {
        const results = await runToolCalls(node.calls, {
          base: { sessionId: state.sessionId, step: state.checkpoints, agent: state.agent, project: input.project ?? null, ...(workspace ? { workspace } : {}) },
          gate,
          approvalTimeoutMs: input.approvalTimeoutMs ?? DEFAULT_APPROVAL_TIMEOUT_MS,
          onWaiting: async (_approvalId, waiting) => {
            waitingApprovals += waiting ? 1 : -1;
            const [status, reason] = waitingApprovals > 0 ? (['blocked', 'awaiting_approval'] as const) : (['running', null] as const);
            if (state.status === status && state.statusReason === reason) return;
            const event = { actor: 'orchestrator', type: 'state.mutated', payload: { status: { from: state.status, to: status }, statusReason: { from: state.statusReason, to: reason } } };
            state = { ...state, status, statusReason: reason };
            await checkpoint([event], true);
          },
        });
        return { kind: 'tool_results', results };
      }
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
      if (info.continueAsNewSuggested || info.historyLength >= state.limits.maxHistoryEvents) {
        if (pending.length > 0) await checkpoint(pending);
        pending = [];
        await condition(allHandlersFinished);
        log.info('continuing as new', { sessionId: state.sessionId, historyLength: info.historyLength });
        return await continueAsNew<typeof sessionWorkflow>({ ...input, carried: { state, inbox, closeRequested, ...(workspace ? { workspace } : {}), rollbacks } });
      }
      const node = next(state);
      await checkpoint([...pending, { actor: 'orchestrator', type: 'workflow.node.enter', payload: node }]);
      pending = []; // written: a cancel below must not write them again
      const result = await runNode(node);
      const reduced = reduce(state, result, Date.now());
      state = reduced.state;
      pending = [{ actor: 'orchestrator', type: 'workflow.node.exit', payload: { kind: node.kind, result: result.kind } }, ...reduced.events];
    }
    await checkpoint(pending);
  } catch (err) {
    if (!isCancellation(err) || state.done) throw err;
    // Record the cancellation even though the workflow's scope is cancelled, then let Temporal mark it cancelled.
    await CancellationScope.nonCancellable(async () => {
      const reduced = reduce(state, { kind: 'cancelled' }, Date.now());
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
