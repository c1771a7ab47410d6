/**
 * The agent loop of one task attempt (the task child workflow), as pure functions: model call, tool calls, repeat
 * until the agent answers without tools (done), hands the task over (handoff) or fails. The orchestrator decides what
 * happens next; this loop never retries or reroutes on its own.
 */
import { HANDOFF_TOOL, HandoffInput } from './handoff';
import { addUsage, textOf, toolUsesOf, type ChatMessage, type ModelResponse, type TokenUsage, type ToolResultBlock, type ToolUseBlock } from './model';
import type { EventDraft } from './session';

export type TaskOutcome =
  | { kind: 'done'; output: string; usage: TokenUsage }
  | { kind: 'handoff'; to: string; reason: string; notes?: string; usage: TokenUsage }
  | { kind: 'failed'; reason: string; usage: TokenUsage };

export type AgentLoopState = {
  agentId: string;
  /** Agents this one may hand over to (the session's catalogue, without itself). */
  handoffTargets: readonly string[];
  maxModelCalls: number;
  messages: ChatMessage[];
  pendingToolCalls: ToolUseBlock[];
  modelCalls: number;
  usage: TokenUsage;
  /** Index of the first message not yet recorded in a `model.context` trace event. */
  contextRecorded: number;
  outcome: TaskOutcome | null;
};

export type AgentNode = { kind: 'model_call'; call: number } | { kind: 'tool_calls'; calls: ToolUseBlock[] };

export type AgentResult =
  | { kind: 'model_response'; response: ModelResponse }
  | { kind: 'model_failed'; code: string; message: string }
  | { kind: 'tool_results'; results: ToolResultBlock[] };

export function initialAgentLoop(args: { agentId: string; prompt: string; handoffTargets: readonly string[]; maxModelCalls: number }): AgentLoopState {
  return {
    agentId: args.agentId,
    handoffTargets: args.handoffTargets,
    maxModelCalls: args.maxModelCalls,
    messages: [{ role: 'user', content: [{ type: 'text', text: args.prompt }] }],
    pendingToolCalls: [],
    modelCalls: 0,
    usage: { inputTokens: 0, outputTokens: 0 },
    contextRecorded: 0,
    outcome: null,
  };
}

export function nextAgentNode(s: AgentLoopState): AgentNode {
  if (s.outcome) throw new Error('nextAgentNode() called on a finished task');
  if (s.pendingToolCalls.length > 0) return { kind: 'tool_calls', calls: s.pendingToolCalls };
  return { kind: 'model_call', call: s.modelCalls + 1 };
}

/**
 * Splits the tool calls of a response: a valid handoff ends the task; an invalid one is answered with an error the
 * model can act on; every other call goes to the tool activity.
 */
export function checkHandoff(s: AgentLoopState, call: ToolUseBlock): { ok: true; handoff: HandoffInput } | { ok: false; error: string } {
  const parsed = HandoffInput.safeParse(call.input);
  if (!parsed.success) {
    return { ok: false, error: `invalid arguments for handoff: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`).join('; ')}` };
  }
  if (parsed.data.to === s.agentId) return { ok: false, error: 'handoff: you cannot hand a task to yourself' };
  if (!s.handoffTargets.includes(parsed.data.to)) {
    return { ok: false, error: `handoff: unknown agent "${parsed.data.to}" (available: ${s.handoffTargets.join(', ') || '(none)'})` };
  }
  return { ok: true, handoff: parsed.data };
}

export function reduceAgent(s: AgentLoopState, result: AgentResult): { state: AgentLoopState; events: EventDraft[] } {
  const actor = `agent:${s.agentId}`;
  const events: EventDraft[] = [];
  switch (result.kind) {
    case 'model_response': {
      const r = result.response;
      const calls = toolUsesOf(r.content);
      let next: AgentLoopState = {
        ...s,
        messages: [...s.messages, { role: 'assistant', content: r.content }],
        usage: addUsage(s.usage, r.usage),
        modelCalls: s.modelCalls + 1,
        contextRecorded: s.messages.length,
      };
      events.push({ actor, type: 'message.assistant', payload: { model: r.model, content: r.content, stopReason: r.stopReason, usage: r.usage } });
      if (calls.length === 0) {
        return { state: { ...next, outcome: { kind: 'done', output: textOf(r.content), usage: next.usage } }, events };
      }
      for (const c of calls) events.push({ actor, type: 'tool.called', payload: { toolUseId: c.id, name: c.name, input: c.input } });
      const handoffCall = calls.find((c) => c.name === HANDOFF_TOOL);
      if (handoffCall) {
        const checked = checkHandoff(next, handoffCall);
        if (checked.ok) {
          const { to, reason, notes } = checked.handoff;
          next = { ...next, outcome: { kind: 'handoff', to, reason, ...(notes !== undefined ? { notes } : {}), usage: next.usage } };
          return { state: next, events };
        }
      }
      if (next.modelCalls >= s.maxModelCalls) {
        next = { ...next, outcome: { kind: 'failed', reason: `turn_limit_exceeded: ${s.maxModelCalls} model calls without finishing the task`, usage: next.usage } };
        return { state: next, events };
      }
      return { state: { ...next, pendingToolCalls: calls }, events };
    }
    case 'model_failed':
      return { state: { ...s, outcome: { kind: 'failed', reason: `${result.code}: ${result.message}`, usage: s.usage } }, events };
    case 'tool_results':
      for (const r of result.results) {
        events.push({ actor: 'tool', type: 'tool.result', payload: { toolUseId: r.toolUseId, content: r.content, isError: r.isError ?? false } });
      }
      return { state: { ...s, pendingToolCalls: [], messages: [...s.messages, { role: 'user', content: result.results }] }, events };
  }
}
