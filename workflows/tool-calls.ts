/**
 * Tool calls with guardrails, shared by the session and task workflows. The tool activity evaluates the policy
 * itself (allow runs at once, deny is answered at once); an `ask` comes back as a request, and the workflow then
 * files a durable approval, blocks the step until a person decides or the request expires, records the decision,
 * and either runs the call (approved) or tells the model it was not run (denied, expired).
 */
import { CancellationScope, workflowInfo } from '@temporalio/workflow';
import type { RunToolInput } from '../activities';
import { approvalIdOf, deniedResult, type ApprovalOutcome } from '../core/approval';
import type { ToolResultBlock, ToolUseBlock } from '../core/model';
import { toolVerb } from '../core/risk';
import type { ApprovalGate } from './approvals';
import { durableStore, runToolNode } from './common';

export type ToolCallsContext = {
  base: Omit<RunToolInput, 'call'>;
  gate: ApprovalGate;
  approvalTimeoutMs: number;
  /** Called when the step starts and stops waiting for a person (mirrors blocked/awaiting_approval). */
  onWaiting: (approvalId: string, waiting: boolean) => Promise<void>;
};

/**
 * Runs a turn's tool calls: in parallel, except in a session with a worktree when any call can change it (write or
 * exec): then one after another, so each step's snapshot holds exactly its own changes.
 */
export async function runToolCalls(calls: readonly ToolUseBlock[], ctx: ToolCallsContext): Promise<ToolResultBlock[]> {
  const mutating = ctx.base.workspace !== undefined && calls.some((c) => ['write', 'exec'].includes(toolVerb(c.name) ?? ''));
  if (!mutating) return Promise.all(calls.map((call) => runOne(call, ctx)));
  const results: ToolResultBlock[] = [];
  for (const call of calls) results.push(await runOne(call, ctx));
  return results;
}

function strip(result: ToolResultBlock): ToolResultBlock {
  const { type, toolUseId, content, isError } = result;
  return { type, toolUseId, content, ...(isError !== undefined ? { isError } : {}) };
}

async function runOne(call: ToolUseBlock, ctx: ToolCallsContext): Promise<ToolResultBlock> {
  const first = await runToolNode({ ...ctx.base, call });
  if (!first.approvalRequest) return strip(first);

  const stepKey = `${ctx.base.keyPrefix ?? ''}${ctx.base.step}:${call.id}`;
  // From the session and the step (the step key names the task run too): stable across retries and replays.
  const approvalId = approvalIdOf(ctx.base.sessionId, stepKey);
  const common = { sessionId: ctx.base.sessionId, approvalId, stepKey, ...(ctx.base.taskId ? { taskId: ctx.base.taskId } : {}) };
  ctx.gate.open(approvalId, ctx.approvalTimeoutMs);
  await CancellationScope.nonCancellable(() =>
    durableStore.requestApproval({
      ...common,
      workflowId: workflowInfo().workflowId,
      agentId: ctx.base.agent.id,
      tool: call.name,
      input: call.input,
      decision: first.approvalRequest,
      expiresAt: new Date(Date.now() + ctx.approvalTimeoutMs).toISOString(),
    }),
  );
  await ctx.onWaiting(approvalId, true);
  let outcome: ApprovalOutcome;
  try {
    outcome = await ctx.gate.wait(approvalId);
  } catch (err) {
    // Cancelled while waiting: the request is withdrawn, so nobody can decide it any more.
    await CancellationScope.nonCancellable(() => durableStore.settleApproval({ ...common, status: 'cancelled', by: null, reason: 'the session was cancelled' }));
    throw err;
  }
  await CancellationScope.nonCancellable(() => durableStore.settleApproval({ ...common, ...outcome }));
  await ctx.onWaiting(approvalId, false);
  if (outcome.status !== 'approved') return { type: 'tool_result', toolUseId: call.id, isError: true, content: deniedResult(call.name, outcome) };
  return strip(await runToolNode({ ...ctx.base, call, approval: { approvalId, by: outcome.by ?? 'unknown' } }));
}
