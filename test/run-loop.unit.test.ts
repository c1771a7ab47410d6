import { describe, expect, it } from 'vitest';
import { initialState, next, reduce, startEvents, type SessionState } from '../core/session';
import type { AgentDefinition } from '../core/schemas';

const agent: AgentDefinition = {
  id: 'a',
  name: 'A',
  role: 'assistant',
  model: 'scripted:x',
  instructions: '',
  tools: ['blackboard_write'],
  permissions: [],
  memoryScope: 'session',
};
const usage = { inputTokens: 10, outputTokens: 5 };
const fresh = () => initialState({ sessionId: 's', goal: 'do it', agent });

describe('orchestrator.next and reduce', () => {
  it('starts with a model call on the goal, and announces the session and the user message', () => {
    const s = fresh();
    expect(next(s)).toEqual({ kind: 'model_call', call: 1 });
    expect(startEvents(s).map((e) => e.type)).toEqual(['session.started', 'message.user']);
  });

  it('runs requested tools, then calls the model again with their results', () => {
    let s = fresh();
    const call = { type: 'tool_use' as const, id: 't1', name: 'blackboard_write', input: { key: 'k', value: 'v' } };
    let r = reduce(s, { kind: 'model_response', response: { model: 'm', content: [call], stopReason: 'tool_use', usage } }, 0);
    s = r.state;
    expect(r.events.map((e) => e.type)).toEqual(['message.assistant', 'tool.called']);
    expect(next(s)).toEqual({ kind: 'tool_calls', calls: [call] });
    r = reduce(s, { kind: 'tool_results', results: [{ type: 'tool_result', toolUseId: 't1', content: 'ok' }] }, 0);
    s = r.state;
    expect(r.events.map((e) => e.type)).toEqual(['tool.result']);
    expect(next(s)).toEqual({ kind: 'model_call', call: 2 });
    expect(s.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
  });

  it('blocks for input when the model ends its turn, and resumes on the next message', () => {
    let s = reduce(fresh(), { kind: 'model_response', response: { model: 'm', content: [{ type: 'text', text: 'hi' }], stopReason: 'end_turn', usage } }, 1000).state;
    expect(s).toMatchObject({ status: 'blocked', statusReason: 'awaiting_input', finalAnswer: 'hi', awaitingSince: 1000 });
    expect(next(s)).toEqual({ kind: 'await_input' });
    const r = reduce(s, { kind: 'user_message', content: 'more' }, 2000);
    s = r.state;
    expect(s).toMatchObject({ status: 'running', statusReason: null, awaitingSince: null, modelCallsThisTurn: 0 });
    expect(r.events.map((e) => e.type)).toEqual(['message.user', 'state.mutated']);
    expect(next(s)).toEqual({ kind: 'model_call', call: 1 });
  });

  it.each([
    [{ kind: 'closed' } as const, 'done', 'closed'],
    [{ kind: 'idle_timeout' } as const, 'done', 'idle_timeout'],
    [{ kind: 'cancelled' } as const, 'cancelled', 'cancelled'],
    [{ kind: 'model_failed', code: 'model_error', message: 'boom' } as const, 'failed', 'model_error: boom'],
  ])('ends the session on %o', (result, status, reason) => {
    const r = reduce(fresh(), result, 0);
    expect(r.state).toMatchObject({ done: true, status, statusReason: reason });
    expect(r.events[r.events.length - 1]).toMatchObject({ type: 'session.ended', payload: { status, reason } });
    expect(() => next(r.state)).toThrow();
  });

  it('fails a turn that keeps calling tools past the limit instead of looping forever', () => {
    let s: SessionState = { ...fresh(), limits: { ...fresh().limits, maxModelCallsPerTurn: 2 } };
    const call = { type: 'tool_use' as const, id: 't', name: 'blackboard_write', input: {} };
    for (let i = 0; i < 2; i++) {
      s = reduce(s, { kind: 'model_response', response: { model: 'm', content: [call], stopReason: 'tool_use', usage } }, 0).state;
      if (!s.done) s = reduce(s, { kind: 'tool_results', results: [{ type: 'tool_result', toolUseId: 't', content: 'ok' }] }, 0).state;
    }
    expect(s).toMatchObject({ done: true, status: 'failed' });
    expect(s.statusReason).toMatch(/^turn_limit_exceeded/);
  });

  it('sums token usage across calls', () => {
    let s = fresh();
    for (let i = 0; i < 3; i++) {
      s = reduce(s, { kind: 'model_response', response: { model: 'm', content: [{ type: 'text', text: 'x' }], stopReason: 'end_turn', usage } }, 0).state;
      s = reduce(s, { kind: 'user_message', content: 'again' }, 0).state;
    }
    expect(s.usage).toEqual({ inputTokens: 30, outputTokens: 15 });
  });
});
