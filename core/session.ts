/**
 * The spec's run loop as pure functions: `next(state)` decides the node to run, `reduce(state, result)` folds the
 * node's result into a new state and says which trace events describe the change. No I/O, no clocks, no randomness:
 * the workflow (workflows/session.ts) supplies time and runs the nodes, so this file is safe to import there.
 */
import type { AgentDefinition, SessionStatus } from './schemas';
import {
  addUsage,
  textOf,
  toolUsesOf,
  type ChatMessage,
  type ModelResponse,
  type TokenUsage,
  type ToolResultBlock,
  type ToolUseBlock,
} from './model';

export type SessionLimits = {
  /** Model calls allowed between two user messages before the session fails (guards a looping agent). */
  maxModelCallsPerTurn: number;
  /** History length at which the workflow continues-as-new (Temporal also suggests it on its own). */
  maxHistoryEvents: number;
  /** How long a session waits for the next user message before it ends. */
  idleTimeoutMs: number;
};

export const DEFAULT_LIMITS: SessionLimits = {
  maxModelCallsPerTurn: 50,
  maxHistoryEvents: 10_000,
  idleTimeoutMs: 24 * 3600 * 1000,
};

export type SessionState = {
  sessionId: string;
  goal: string;
  agent: AgentDefinition;
  limits: SessionLimits;
  status: SessionStatus;
  statusReason: string | null;
  messages: ChatMessage[];
  /** Tool calls of the last assistant message that have not run yet. */
  pendingToolCalls: ToolUseBlock[];
  modelCallsThisTurn: number;
  usage: TokenUsage;
  /** Text of the last assistant turn; the session's answer when it ends. */
  finalAnswer: string | null;
  /** Workflow time (ms) at which the session started waiting for input; carries across continue-as-new. */
  awaitingSince: number | null;
  /** Number of checkpoints written so far; the idempotency key space of trace events and the mirror's version. */
  checkpoints: number;
  done: boolean;
};

export type Node =
  | { kind: 'model_call'; call: number }
  | { kind: 'tool_calls'; calls: ToolUseBlock[] }
  | { kind: 'await_input' };

export type NodeResult =
  | { kind: 'model_response'; response: ModelResponse }
  | { kind: 'model_failed'; code: string; message: string }
  | { kind: 'tool_results'; results: ToolResultBlock[] }
  | { kind: 'user_message'; content: string }
  | { kind: 'closed' }
  | { kind: 'idle_timeout' }
  | { kind: 'cancelled' };

/** A trace event as the pure layer describes it; the workflow adds seq keys, run id and time. */
export type EventDraft = { actor: string; type: string; payload: unknown };

export type SessionEndReason = 'closed' | 'idle_timeout' | 'cancelled' | string;

export function initialState(args: {
  sessionId: string;
  goal: string;
  agent: AgentDefinition;
  limits?: Partial<SessionLimits>;
}): SessionState {
  return {
    sessionId: args.sessionId,
    goal: args.goal,
    agent: args.agent,
    limits: { ...DEFAULT_LIMITS, ...args.limits },
    status: 'running',
    statusReason: null,
    messages: [{ role: 'user', content: [{ type: 'text', text: args.goal }] }],
    pendingToolCalls: [],
    modelCallsThisTurn: 0,
    usage: { inputTokens: 0, outputTokens: 0 },
    finalAnswer: null,
    awaitingSince: null,
    checkpoints: 0,
    done: false,
  };
}

export function startEvents(state: SessionState): EventDraft[] {
  return [
    {
      actor: 'orchestrator',
      type: 'session.started',
      payload: { goal: state.goal, agent: { id: state.agent.id, model: state.agent.model } },
    },
    { actor: 'user', type: 'message.user', payload: { content: state.goal } },
  ];
}

/** orchestrator.next: which node runs now. Only called while `!state.done`. */
export function next(state: SessionState): Node {
  if (state.done) throw new Error('next() called on a finished session');
  if (state.pendingToolCalls.length > 0) return { kind: 'tool_calls', calls: state.pendingToolCalls };
  const last = state.messages[state.messages.length - 1];
  if (last === undefined || last.role === 'user') return { kind: 'model_call', call: state.modelCallsThisTurn + 1 };
  return { kind: 'await_input' };
}

function withStatus(
  state: SessionState,
  status: SessionStatus,
  statusReason: string | null,
  events: EventDraft[],
): SessionState {
  if (state.status === status && state.statusReason === statusReason) return state;
  events.push({
    actor: 'orchestrator',
    type: 'state.mutated',
    payload: { status: { from: state.status, to: status }, statusReason: { from: state.statusReason, to: statusReason } },
  });
  return { ...state, status, statusReason };
}

function end(state: SessionState, status: SessionStatus, reason: string, events: EventDraft[]): SessionState {
  const ended = { ...withStatus(state, status, reason, events), done: true, pendingToolCalls: [] };
  events.push({
    actor: 'orchestrator',
    type: 'session.ended',
    payload: { status, reason, finalAnswer: ended.finalAnswer, usage: ended.usage },
  });
  return ended;
}

/** reduce: fold a node's result into the state. `now` is workflow time in ms. */
export function reduce(
  state: SessionState,
  result: NodeResult,
  now: number,
): { state: SessionState; events: EventDraft[] } {
  const events: EventDraft[] = [];
  const actor = `agent:${state.agent.id}`;
  let s = state;
  switch (result.kind) {
    case 'model_response': {
      const r = result.response;
      const calls = toolUsesOf(r.content);
      const text = textOf(r.content);
      s = {
        ...s,
        messages: [...s.messages, { role: 'assistant', content: r.content }],
        usage: addUsage(s.usage, r.usage),
        modelCallsThisTurn: s.modelCallsThisTurn + 1,
      };
      events.push({
        actor,
        type: 'message.assistant',
        payload: { model: r.model, content: r.content, stopReason: r.stopReason, usage: r.usage },
      });
      if (calls.length > 0) {
        if (s.modelCallsThisTurn >= s.limits.maxModelCallsPerTurn) {
          s = end(s, 'failed', `turn_limit_exceeded: ${s.limits.maxModelCallsPerTurn} model calls without finishing the turn`, events);
          break;
        }
        for (const c of calls) events.push({ actor, type: 'tool.called', payload: { toolUseId: c.id, name: c.name, input: c.input } });
        s = { ...s, pendingToolCalls: calls };
      } else {
        s = { ...s, finalAnswer: text, pendingToolCalls: [], awaitingSince: now };
        s = withStatus(s, 'blocked', 'awaiting_input', events);
      }
      break;
    }
    case 'model_failed':
      s = end(s, 'failed', `${result.code}: ${result.message}`, events);
      break;
    case 'tool_results': {
      for (const r of result.results) {
        events.push({ actor: 'tool', type: 'tool.result', payload: { toolUseId: r.toolUseId, content: r.content, isError: r.isError ?? false } });
      }
      s = { ...s, pendingToolCalls: [], messages: [...s.messages, { role: 'user', content: result.results }] };
      break;
    }
    case 'user_message':
      events.push({ actor: 'user', type: 'message.user', payload: { content: result.content } });
      s = {
        ...s,
        messages: [...s.messages, { role: 'user', content: [{ type: 'text', text: result.content }] }],
        modelCallsThisTurn: 0,
        awaitingSince: null,
      };
      s = withStatus(s, 'running', null, events);
      break;
    case 'closed':
      s = end(s, 'done', 'closed', events);
      break;
    case 'idle_timeout':
      s = end(s, 'done', 'idle_timeout', events);
      break;
    case 'cancelled':
      s = end(s, 'cancelled', 'cancelled', events);
      break;
  }
  return { state: s, events };
}

/** The slice of state mirrored to Postgres after each reduce. */
export type SessionSnapshot = {
  status: SessionStatus;
  statusReason: string | null;
  finalAnswer: string | null;
  usage: TokenUsage;
  version: number;
  ended: boolean;
};

export function snapshotOf(state: SessionState): SessionSnapshot {
  return {
    status: state.status,
    statusReason: state.statusReason,
    finalAnswer: state.finalAnswer,
    usage: state.usage,
    version: state.checkpoints,
    ended: state.done,
  };
}
