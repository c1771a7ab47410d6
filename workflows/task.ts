/**
 * The task workflow: one attempt of one task, run as a child of the orchestrated session (its own history, its own
 * agent loop). It returns an outcome (done, handoff or failed); what happens next is the orchestrator's decision.
 * Its trace events go to the session's trace, tagged with the task id.
 */
import { CancellationScope, isCancellation, workflowInfo } from '@temporalio/workflow';
import { checkHandoff, initialAgentLoop, nextAgentNode, reduceAgent, type AgentLoopState, type AgentNode, type AgentResult, type TaskOutcome } from '../core/agent-loop';
import { HANDOFF_TOOL } from '../core/handoff';
import type { ToolResultBlock } from '../core/model';
import type { VersionedAgent } from '../core/schemas';
import type { EventDraft } from '../core/session';
import { callModelNode, runToolNode, store } from './common';

export type TaskWorkflowInput = {
  sessionId: string;
  taskId: string;
  attempt: number;
  run: number;
  agent: VersionedAgent;
  prompt: string;
  handoffTargets: string[];
  maxModelCalls: number;
  project: string | null;
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
    const results = await Promise.all(
      node.calls.map((call): Promise<ToolResultBlock> => {
        if (call.name === HANDOFF_TOOL) {
          // A valid handoff already ended the task in reduce; this one was refused. Tell the model why.
          const checked = checkHandoff(state, call);
          const content = checked.ok ? 'handoff accepted' : checked.error;
          return Promise.resolve({ type: 'tool_result', toolUseId: call.id, content, isError: !checked.ok });
        }
        return runToolNode({ ...common, call });
      }),
    );
    return { kind: 'tool_results', results };
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
