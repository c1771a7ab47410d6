/** Activity proxies and node runners shared by the session, orchestrated-session and task workflows. */
import { ActivityFailure, ApplicationFailure, condition, isCancellation, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { EventDraft } from '../core/session';
import type { Workspace } from '../lib/workspace';
import type { CallModelInput, createActivities, RunToolInput, RunToolResult } from '../activities';
import type { ModelResponse } from '../core/model';

type Activities = ReturnType<typeof createActivities>;

// Named timeouts and retry policies per activity kind.
// Checkpoints are local activities: a short, idempotent Postgres write that runs in the worker holding the workflow,
// without a round trip through the Temporal server (two fewer dispatches and workflow tasks per step). If the worker
// dies before the workflow task completes, the write is simply repeated: its keys make that a no-op.
export const store = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  localRetryThreshold: '10 seconds',
  retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds', backoffCoefficient: 2 },
});
/**
 * The same writes as `store`, as regular activities: used on the approval path (filing, settling, the blocked/running
 * status around the wait). Approvals are rare and wait for people, so the dispatch cost does not matter, and each
 * write shows up as its own activity in the Temporal UI next to the update that decided it.
 */
export const durableStore = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds', backoffCoefficient: 2 },
});
export const model = proxyActivities<Activities>({
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
export const tool = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', backoffCoefficient: 2, maximumAttempts: 5 },
});

function failureOf(err: unknown): { code: string; message: string } {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  const code = cause instanceof ApplicationFailure && cause.type ? cause.type : 'model_error';
  return { code, message: cause instanceof Error ? cause.message : String(cause) };
}

/** One model call; a failure after the activity's retries is a result, not an exception (cancellation still throws). */
export async function callModelNode(
  input: CallModelInput,
): Promise<{ kind: 'model_response'; response: ModelResponse } | { kind: 'model_failed'; code: string; message: string }> {
  try {
    return { kind: 'model_response', response: await model.callModel(input) };
  } catch (err) {
    if (isCancellation(err)) throw err;
    return { kind: 'model_failed', ...failureOf(err) };
  }
}

/** One tool call; a tool that keeps failing is reported to the model, which can choose another way. */
export async function runToolNode(input: RunToolInput): Promise<RunToolResult> {
  try {
    return await tool.runTool(input);
  } catch (err) {
    if (isCancellation(err)) throw err;
    const { message } = failureOf(err);
    return { type: 'tool_result', toolUseId: input.call.id, isError: true, content: `tool failed: ${message}` };
  }
}

/** Waits for the next user message, a close request or the idle timeout (counted from `awaitingSince`). */
export async function awaitUserInput(args: {
  inbox: string[];
  closeRequested: () => boolean;
  awaitingSince: number | null;
  idleTimeoutMs: number;
}): Promise<{ kind: 'user_message'; content: string } | { kind: 'closed' } | { kind: 'idle_timeout' }> {
  const since = args.awaitingSince ?? Date.now();
  const remaining = Math.max(1, args.idleTimeoutMs - (Date.now() - since));
  await condition(() => args.inbox.length > 0 || args.closeRequested(), remaining);
  if (args.inbox.length > 0) return { kind: 'user_message', content: args.inbox.shift() as string };
  if (args.closeRequested()) return { kind: 'closed' };
  return { kind: 'idle_timeout' };
}

/** Makes the session's worktree (idempotent; call once its row exists) and the trace event that records it. */
export async function prepareSessionWorkspace(sessionId: string, repo: string): Promise<{ workspace: Workspace; event: EventDraft }> {
  const workspace = await tool.prepareWorkspace({ sessionId, repo, workspaceId: sessionId });
  return {
    workspace,
    event: { actor: 'workspace', type: 'workspace.ready', payload: { root: workspace.root, branch: workspace.branch, baseSha: workspace.baseSha } },
  };
}
