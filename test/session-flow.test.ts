import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('a session over HTTP', () => {
  it('runs the agent loop, streams every step as SSE, waits for input, resumes on a second message and ends when closed', async () => {
    const agent = await stack.agent('notetaker', 'note-then-answer');
    const created = await stack.api('POST', '/v1/sessions', { goal: 'remember the plan', agent, metadata: { ticket: 'T-1' } });
    expect(created.status).toBe(201);
    const id: string = created.body.id;
    expect(id).toMatch(/^ses_/);
    expect(created.body).toMatchObject({ goal: 'remember the plan', agentId: agent, metadata: { ticket: 'T-1' } });

    // First turn: read the stream until the session waits for input.
    const first = await stack.events(id, {
      until: (e) => e.type === 'state.mutated' && (e.payload as any).statusReason.to === 'awaiting_input',
    });
    const types = first.map((m) => m.data.type);
    expect(types).toEqual([
      'session.started',
      'message.user',
      'workflow.node.enter', // model_call
      'model.context', // exactly what the model was sent
      'model.delta',
      'workflow.node.exit',
      'message.assistant',
      'tool.called',
      'workflow.node.enter', // tool_calls
      'guardrail.decision', // allowed: the policy's decision is traced for every call
      'blackboard.written',
      'workflow.node.exit',
      'tool.result',
      'workflow.node.enter', // model_call
      'model.context',
      'model.delta',
      'workflow.node.exit',
      'message.assistant',
      'state.mutated',
    ]);
    // SSE ids are the per-session seq, dense from 1, and the event name is the trace type.
    expect(first.map((m) => m.id)).toEqual(first.map((_, i) => String(i + 1)));
    expect(first.every((m) => m.event === m.data.type && m.data.sessionId === id)).toBe(true);
    expect(first[2]!.data.payload).toEqual({ kind: 'model_call', call: 1 });
    expect(first[7]!.data.payload).toMatchObject({ name: 'blackboard_write', input: { key: 'goal', value: 'remember this', kind: 'fact' } });
    expect(first[12]!.data.payload).toMatchObject({ content: 'saved fact "goal"', isError: false });
    expect(first[17]!.data.payload).toMatchObject({ content: [{ type: 'text', text: 'Done: remember the plan' }], stopReason: 'end_turn' });

    const waiting = await stack.waitForStatus(id, (s) => s.status === 'blocked');
    expect(waiting).toMatchObject({ status: 'blocked', statusReason: 'awaiting_input', finalAnswer: 'Done: remember the plan' });
    expect(waiting.usage.outputTokens).toBeGreaterThan(0);
    // The tool really ran: the note is on the blackboard, with its provenance.
    const notes = await stack.db.blackboardEntry.findMany({ where: { sessionId: id } });
    expect(notes).toMatchObject([{ key: 'goal', value: 'remember this', kind: 'fact', writtenBy: `agent:${agent}` }]);

    // Second message resumes the same session.
    const sent = await stack.api('POST', `/v1/sessions/${id}/messages`, { content: 'and now the next step' });
    expect(sent.status).toBe(202);
    const lastSeq = Number(first[first.length - 1]!.id);
    const second = await stack.events(id, {
      lastEventId: String(lastSeq),
      until: (e) => e.type === 'state.mutated' && (e.payload as any).statusReason.to === 'awaiting_input',
    });
    expect(Number(second[0]!.id)).toBe(lastSeq + 1);
    expect(second.map((m) => m.data.type)).toEqual([
      'workflow.node.enter', // await_input
      'workflow.node.exit',
      'message.user',
      'state.mutated', // blocked -> running
      'workflow.node.enter',
      'model.context',
      'model.delta',
      'workflow.node.exit',
      'message.assistant',
      'state.mutated', // running -> blocked
    ]);
    expect(second[2]!.data.payload).toEqual({ content: 'and now the next step' });
    await stack.waitForStatus(id, (s) => s.finalAnswer === 'Second answer: and now the next step');

    // Closing ends the session; the stream (resumed with ?after=) ends by itself with session.ended.
    const closed = await stack.api('POST', `/v1/sessions/${id}/close`);
    expect(closed.status).toBe(202);
    const tail = await stack.events(id, { after: lastSeq });
    expect(tail[tail.length - 1]!.data).toMatchObject({ type: 'session.ended', payload: { status: 'done', reason: 'closed' } });
    const done = await stack.waitForStatus(id, (s) => s.status === 'done');
    expect(done).toMatchObject({ statusReason: 'closed', finalAnswer: 'Second answer: and now the next step' });
    expect(done.endedAt).not.toBeNull();

    // A full replay from the start equals what is stored, with no gaps or duplicates.
    const all = await stack.events(id);
    const rows = await stack.traceRows(id);
    expect(all.map((m) => Number(m.id))).toEqual(rows.map((r) => r.seq));
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));

    // Acting on a finished session is a conflict.
    expect((await stack.api('POST', `/v1/sessions/${id}/messages`, { content: 'hello?' })).status).toBe(409);
    expect((await stack.api('POST', `/v1/sessions/${id}/cancel`)).status).toBe(409);
  });

  it('queues a message sent while the agent is still working and answers it when the turn ends', async () => {
    const agent = await stack.agent('slowpoke', 'slow-then-echo');
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'start slowly', agent })).body.id as string;
    await stack.events(id, { until: (e) => e.type === 'workflow.node.enter' && (e.payload as { kind: string }).kind === 'model_call' });
    const sent = await stack.api('POST', `/v1/sessions/${id}/messages`, { content: 'typed ahead' });
    expect(sent).toMatchObject({ status: 202, body: { status: 'running' } });
    const session = await stack.waitForStatus(id, (s) => s.finalAnswer === 'second: typed ahead');
    expect(session.status).toBe('blocked');
    const types = (await stack.traceRows(id)).map((r) => r.type);
    // The queued message is taken only after the first turn ended.
    expect(types.indexOf('message.user', 2)).toBeGreaterThan(types.indexOf('message.assistant'));
    await stack.api('POST', `/v1/sessions/${id}/close`);
  });
});
