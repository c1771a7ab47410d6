/**
 * The session workflow: the spec's run loop on Temporal. Decisions come from core/session.ts (pure);
 * this file only runs nodes (activities, waits) and writes checkpoints. Deterministic: no I/O, no Node APIs.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
  log,
} from '@temporalio/workflow';
import type { createActivities } from '../activities';
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
import type { ToolResultBlock } from '../core/model';
import { closeSignal, sessionViewQuery, userMessageSignal } from './messages';

type Activities = ReturnType<typeof createActivities>;

// Named timeouts and retry policies per activity kind.
// Checkpoints are local activities: a short, idempotent Postgres write that runs in the worker holding the workflow,
// without a round trip through the Temporal server (two fewer dispatches and workflow tasks per step). If the worker
// dies before the workflow task completes, the write is simply repeated: its keys make that a no-op.
const store = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  localRetryThreshold: '10 seconds',
  retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds', backoffCoefficient: 2 },
});
const model = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '10 seconds',
  retry: {
    initialInterval: '1 second',
    maximumInterval: '30 seconds',
    backoffCoefficient: 2,
    maximumAttempts: 5,
    nonRetryableErrorTypes: ['scenario_exhausted', 'scenario_not_found', 'unknown_provider', 'model_output_invalid', 'model_error_fatal'],
  },
});
const tool = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', backoffCoefficient: 2, maximumAttempts: 5 },
});

export type SessionWorkflowInput = {
  sessionId: string;
  goal: string;
  agent: AgentDefinition;
  limits?: Partial<SessionLimits>;
  /** The session's metadata from the API, so the workflow can create the session row if the API could not. */
  metadata?: Record<string, unknown>;
  /** Set only by continue-as-new. */
  carried?: { state: SessionState; inbox: string[]; closeRequested: boolean };
};

export type SessionOutcome = { status: SessionState['status']; reason: string | null; finalAnswer: string | null };

export async function sessionWorkflow(input: SessionWorkflowInput): Promise<SessionOutcome> {
  let state: SessionState = input.carried?.state ?? initialState(input);
  const inbox: string[] = input.carried?.inbox ?? [];
  let closeRequested = input.carried?.closeRequested ?? false;
  let pending: EventDraft[] = input.carried ? [] : startEvents(state);

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
  async function checkpoint(events: EventDraft[]): Promise<void> {
    state = { ...state, checkpoints: state.checkpoints + 1 };
    const n = state.checkpoints;
    const { runId } = workflowInfo();
    const timestamp = new Date().toISOString();
    const request = {
      sessionId: state.sessionId,
      // The first checkpoint also creates the session row when it is missing (the API starts the workflow first).
      ...(n === 1 ? { create: { goal: state.goal, agent: state.agent, metadata: input.metadata ?? {} } } : {}),
      snapshot: snapshotOf(state),
      events: events.map((e, i) => ({ ...e, key: `c${n}:${i}`, runId, timestamp })),
    };
    // A checkpoint is never cut short by a cancel: what was decided gets written. Cancellation then reaches the
    // next model call, tool run or wait, which all run in the cancellable root scope.
    await CancellationScope.nonCancellable(() => store.checkpoint(request));
  }

  async function runNode(node: Node): Promise<NodeResult> {
    switch (node.kind) {
      case 'model_call':
        try {
          const response = await model.callModel({
            sessionId: state.sessionId,
            step: state.checkpoints,
            agent: state.agent,
            messages: state.messages,
          });
          return { kind: 'model_response', response };
        } catch (err) {
          if (isCancellation(err)) throw err;
          const cause = err instanceof ActivityFailure ? err.cause : err;
          const code = cause instanceof ApplicationFailure && cause.type ? cause.type : 'model_error';
          return { kind: 'model_failed', code, message: cause instanceof Error ? cause.message : String(cause) };
        }
      case 'tool_calls': {
        const results = await Promise.all(
          node.calls.map(
            (call): Promise<ToolResultBlock> =>
              tool.runTool({ sessionId: state.sessionId, step: state.checkpoints, agent: state.agent, call }).catch((err: unknown) => {
                if (isCancellation(err)) throw err;
                const cause = err instanceof ActivityFailure ? err.cause : err;
                // A tool that keeps failing is reported to the model, which can choose another way.
                return { type: 'tool_result', toolUseId: call.id, isError: true, content: `tool failed: ${cause instanceof Error ? cause.message : String(cause)}` };
              }),
          ),
        );
        return { kind: 'tool_results', results };
      }
      case 'await_input': {
        const since = state.awaitingSince ?? Date.now();
        const remaining = Math.max(1, state.limits.idleTimeoutMs - (Date.now() - since));
        await condition(() => inbox.length > 0 || closeRequested, remaining);
        if (inbox.length > 0) return { kind: 'user_message', content: inbox.shift() as string };
        if (closeRequested) return { kind: 'closed' };
        return { kind: 'idle_timeout' };
      }
    }
  }

  try {
    while (!state.done) {
      const info = workflowInfo();
      if (info.continueAsNewSuggested || info.historyLength >= state.limits.maxHistoryEvents) {
        if (pending.length > 0) await checkpoint(pending);
        pending = [];
        await condition(allHandlersFinished);
        log.info('continuing as new', { sessionId: state.sessionId, historyLength: info.historyLength });
        return await continueAsNew<typeof sessionWorkflow>({ ...input, carried: { state, inbox, closeRequested } });
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
