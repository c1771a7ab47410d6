/**
 * The task workflow: one attempt of one task, run as a child of the orchestrated session (its own history, its own
 * agent loop). It returns an outcome (done, handoff or failed); what happens next is the orchestrator's decision.
 * Its trace events go to the session's trace, tagged with the task id.
 */
import { CancellationScope, getExternalWorkflowHandle, isCancellation, workflowInfo } from '@temporalio/workflow';
import { DEFAULT_APPROVAL_TIMEOUT_MS } from '../core/approval';
import type { Workspace } from '../lib/workspace';
import { ApprovalGate } from './approvals';
import { taskApprovalSignal } from './messages';
import { runToolCalls } from './tool-calls';
import { checkHandoff, initialAgentLoop, nextAgentNode, reduceAgent, type AgentLoopState, type AgentNode, type AgentResult, type TaskOutcome } from '../core/agent-loop';
import { HANDOFF_TOOL } from '../core/handoff';
import type { ToolResultBlock } from '../core/model';
import type { DispatchSpec } from '../core/orchestrator';
import type { EventDraft } from '../core/session';
import { callModelNode, store } from './common';

/** One run of a task: what the orchestrator decided to dispatch (core/orchestrator.ts) plus the session's context. */
export type TaskWorkflowInput = DispatchSpec & {
  sessionId: string;
  project: string | null;
  /** The session's worktree when it names a repository (tasks of such a session run one at a time). */
  workspace?: Workspace;
  approvalTimeoutMs?: number;
};

export function taskWorkflowId(taskId: string, run: number): string {
  return `${taskId}.run${run}`;
}

export async function taskWorkflow(input: TaskWorkflowInput): Promise<TaskOutcome> {
  let state: AgentLoopState = initialAgentLoop({
    agentId: input.agent.id,
    prompt: input.prompt,
    handoffTargets: input.handoffTargets,
    maxModelCalls: input.maxModelCalls,
  });
  // Keys are unique within the session: task id + run + checkpoint number (+ step for activity-written events).
  const prefix = `${input.taskId}.run${input.run}:`;
  let checkpoints = 0;
  let pending: EventDraft[] = [
    { actor: `agent:${input.agent.id}`, type: 'message.task', payload: { taskId: input.taskId, attempt: input.attempt, agent: input.agent.id, version: input.agent.version, content: input.prompt } },
  ];

  const gate = new ApprovalGate();
  const parent = workflowInfo().parent;

  async function record(events: EventDraft[]): Promise<void> {
    checkpoints += 1;
    const { runId } = workflowInfo();
    const timestamp = new Date().toISOString();
    const request = {
      sessionId: input.sessionId,
      events: events.map((e, i) => ({ ...e, key: `${prefix}c${checkpoints}:${i}`, runId, taskId: input.taskId, timestamp })),
    };
    await CancellationScope.nonCancellable(() => store.checkpoint(request));
  }

  async function runNode(node: AgentNode): Promise<AgentResult> {
    const common = { sessionId: input.sessionId, step: checkpoints, agent: input.agent, project: input.project, taskId: input.taskId, keyPrefix: prefix };
    if (node.kind === 'model_call') {
      return callModelNode({ ...common, messages: state.messages, taskAttempt: input.attempt, recordFrom: state.contextRecorded });
    }
    // A valid handoff already ended the task in reduce; a handoff still pending was refused: tell the model why.
    const refused = new Map(
      node.calls
        .filter((c) => c.name === HANDOFF_TOOL)
        .map((c): [string, ToolResultBlock] => {
          const checked = checkHandoff(state, c);
          return [c.id, { type: 'tool_result', toolUseId: c.id, content: checked.ok ? 'handoff accepted' : checked.error, isError: !checked.ok }];
        }),
    );
    const ran = await runToolCalls(
      node.calls.filter((c) => !refused.has(c.id)),
      {
        base: { ...common, ...(input.workspace ? { workspace: input.workspace } : {}) },
        gate,
        approvalTimeoutMs: input.approvalTimeoutMs ?? DEFAULT_APPROVAL_TIMEOUT_MS,
        // The session shows the task (and itself) blocked while a person decides.
        onWaiting: async (approvalId, waiting) => {
          if (parent) await getExternalWorkflowHandle(parent.workflowId).signal(taskApprovalSignal, { taskId: input.taskId, approvalId, pending: waiting });
        },
      },
    );
    const byId = new Map(ran.map((r) => [r.toolUseId, r]));
    return { kind: 'tool_results', results: node.calls.map((c) => refused.get(c.id) ?? byId.get(c.id)!) };
  }

  try {
    while (!state.outcome) {
      const node = nextAgentNode(state);
      await record([...pending, { actor: 'orchestrator', type: 'workflow.node.enter', payload: { kind: node.kind, taskId: input.taskId } }]);
      pending = [];
      const result = await runNode(node);
      const reduced = reduceAgent(state, result);
      state = reduced.state;
      pending = [{ actor: 'orchestrator', type: 'workflow.node.exit', payload: { kind: node.kind, result: result.kind, taskId: input.taskId } }, ...reduced.events];
    }
    await record(pending);
    return state.outcome;
  } catch (err) {
    if (!isCancellation(err)) throw err;
    await CancellationScope.nonCancellable(() =>
      record([...pending, { actor: 'orchestrator', type: 'task.attempt.cancelled', payload: { taskId: input.taskId, attempt: input.attempt } }]),
    );
    throw err;
  }
}
