import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionWorkflowInput, sessionWorkflow } from '../workflows';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ limits: { maxHistoryEvents: 60 } });
});
afterAll(async () => {
  await stack?.stop();
});

describe('when things go wrong', () => {
  it('fails loudly when a scripted model runs out of turns, with the reason on the session', async () => {
    const agent = await stack.agent('short-script', 'exhausted');
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'go', agent })).body.id as string;
    const session = await stack.waitForStatus(id, (s) => s.status === 'failed');
    expect(session.statusReason).toMatch(/^scenario_exhausted: scripted scenario "exhausted" has 1 turns/);
    const events = await stack.events(id);
    expect(events[events.length - 1]!.data).toMatchObject({ type: 'session.ended', payload: { status: 'failed' } });
    // Not retried: a non-retryable failure ends the session at once.
    expect(events.filter((e) => e.data.type === 'message.assistant')).toHaveLength(1);
  });

  it('retries a model call that fails transiently, and records the deltas of the attempt that succeeded', async () => {
    const agent = await stack.agent('flaky-agent', 'flaky');
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'try again', agent })).body.id as string;
    const session = await stack.waitForStatus(id, (s) => s.status === 'blocked');
    expect(session.finalAnswer).toBe('worked on the third attempt');
    const deltas = (await stack.traceRows(id)).filter((r) => r.type === 'model.delta');
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.every((d) => (d.payload as { attempt: number }).attempt === 3)).toBe(true);
    await stack.api('POST', `/v1/sessions/${id}/close`);
  });

  it('returns bad tool arguments and unknown tools to the model as errors naming the problem', async () => {
    const agent = await stack.agent('sloppy', 'bad-tool-args');
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'write something', agent })).body.id as string;
    const session = await stack.waitForStatus(id, (s) => s.status === 'blocked');
    expect(session.finalAnswer).toBe('I will fix my arguments next time.');
    const results = (await stack.traceRows(id)).filter((r) => r.type === 'tool.result').map((r) => r.payload as { content: string; isError: boolean });
    expect(results).toHaveLength(2);
    expect(results[0]).toMatchObject({ isError: true });
    expect(results[0]!.content).toMatch(/invalid arguments for blackboard_write: key: .*; value: /);
    expect(results[1]).toMatchObject({ isError: true, content: expect.stringContaining('unknown tool "rm_rf"') });
    expect(await stack.db.blackboardEntry.count({ where: { sessionId: id } })).toBe(0);
    await stack.api('POST', `/v1/sessions/${id}/close`);
  });

  it('continues-as-new when history grows, keeping the conversation, the trace numbering and the blackboard', async () => {
    const agent = await stack.agent('chatty', 'chatty-loop');
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'message 0', agent })).body.id as string;
    await stack.waitForStatus(id, (s) => s.status === 'blocked');
    for (let i = 1; i <= 6; i++) {
      await stack.api('POST', `/v1/sessions/${id}/messages`, { content: `message ${i}` });
      await stack.waitForStatus(id, (s) => s.status === 'blocked' && s.finalAnswer === `echo: message ${i}`);
    }
    const rows = await stack.traceRows(id);
    const runIds = new Set(rows.map((r) => r.runId));
    expect(runIds.size).toBeGreaterThan(1); // the workflow continued-as-new at least once
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
    expect(rows.filter((r) => r.type === 'message.user')).toHaveLength(7);
    expect(rows.filter((r) => r.type === 'session.started')).toHaveLength(1);
    expect(await stack.db.blackboardEntry.count({ where: { sessionId: id } })).toBe(7);
    // The model saw the whole conversation after the restart: its input grew monotonically.
    const inputs = rows.filter((r) => r.type === 'message.assistant').map((r) => (r.payload as any).usage.inputTokens as number);
    expect(inputs).toEqual([...inputs].sort((a, b) => a - b));
    await stack.api('POST', `/v1/sessions/${id}/close`);
    await stack.waitForStatus(id, (s) => s.status === 'done');
  });

  it('creates the session row from the workflow when the API died between starting the workflow and writing the row', async () => {
    const agentId = await stack.agent('orphan-agent', 'note-then-answer');
    const agent = (await stack.db.agentDefinition.findUniqueOrThrow({ where: { id: agentId } })) as unknown as SessionWorkflowInput['agent'];
    const id = `ses_orphan${Date.now()}`;
    // Exactly what the service does first; the API then "crashes" before its own insert.
    await stack.temporal.workflow.start<typeof sessionWorkflow>('sessionWorkflow', {
      workflowId: id,
      taskQueue: stack.taskQueue,
      args: [{ sessionId: id, goal: 'survive the crash', agent, metadata: { from: 'crash' } }],
    });
    const session = await stack.waitForStatus(id, (s) => s.status === 'blocked');
    expect(session).toMatchObject({ goal: 'survive the crash', agentId, metadata: { from: 'crash' }, finalAnswer: 'Done: survive the crash' });
    const got = await stack.api('GET', `/v1/sessions/${id}`);
    expect(got).toMatchObject({ status: 200, body: { id, status: 'blocked' } });
    await stack.api('POST', `/v1/sessions/${id}/close`);
  });

  it('ends a session that waits for input longer than its idle timeout', async () => {
    const agent = await stack.agent('idler', 'note-then-answer');
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'then leave', agent, idleTimeoutSeconds: 1 })).body.id as string;
    const session = await stack.waitForStatus(id, (s) => s.status === 'done', 30_000);
    expect(session.statusReason).toBe('idle_timeout');
  });
});
