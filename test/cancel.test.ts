import { type WorkflowExecutionStatusName } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('cancel', () => {
  it('stops a session in the middle of a slow model call promptly, and says cancelled, not blocked', async () => {
    const agent = await stack.agent('sloth', 'slow'); // the model would take 120 s to answer
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'take your time', agent })).body.id as string;
    // Wait until the model call is in flight.
    await stack.events(id, { until: (e) => e.type === 'workflow.node.enter' && (e.payload as any).kind === 'model_call' });
    await new Promise((r) => setTimeout(r, 500));

    const started = Date.now();
    const res = await stack.api('POST', `/v1/sessions/${id}/cancel`);
    expect(res.status).toBe(202);
    const session = await stack.waitForStatus(id, (s) => s.status === 'cancelled', 20_000);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(session).toMatchObject({ status: 'cancelled', statusReason: 'cancelled', finalAnswer: null });
    expect(session.endedAt).not.toBeNull();

    // The stream ends with the cancellation; no assistant message was ever produced.
    const events = await stack.events(id);
    const types = events.map((e) => e.data.type);
    expect(types[types.length - 1]).toBe('session.ended');
    expect(events[events.length - 1]!.data.payload).toMatchObject({ status: 'cancelled' });
    expect(types).not.toContain('message.assistant');
    // Every event once: what was written before the cancel is not written again by it.
    expect(types).toEqual([
      'session.started',
      'message.user',
      'workflow.node.enter',
      'model.context', // written before the call went out
      'state.mutated', // running -> cancelled
      'session.ended',
    ]);
    expect(events.map((e) => Number(e.id))).toEqual([1, 2, 3, 4, 5, 6]);

    // Temporal agrees, and the model activity was cancelled rather than left running.
    const description = await stack.temporal.workflow.getHandle(id).describe();
    expect(description.status.name).toBe<WorkflowExecutionStatusName>('CANCELLED');
    const history = await stack.temporal.workflow.getHandle(id).fetchHistory();
    const kinds = (history.events ?? []).map((e) => Object.keys(e).find((k) => k.endsWith('EventAttributes')));
    expect(kinds).toContain('activityTaskCancelRequestedEventAttributes');

    // A second cancel is a conflict.
    expect((await stack.api('POST', `/v1/sessions/${id}/cancel`)).status).toBe(409);
  });

  it('cancels a session that is waiting for input', async () => {
    const agent = await stack.agent('waiter', 'note-then-answer');
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'wait for me', agent })).body.id as string;
    await stack.waitForStatus(id, (s) => s.status === 'blocked');
    const res = await stack.api('POST', `/v1/sessions/${id}/cancel`);
    expect(res.status).toBe(202);
    expect(res.body.status).toBe('cancelled');
  });
});
