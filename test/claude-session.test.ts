import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAKE_ANTHROPIC_KEY, startFakeAnthropic, type FakeAnthropic } from './support/fake-anthropic';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
let fake: FakeAnthropic;
beforeAll(async () => {
  fake = await startFakeAnthropic([
    {
      content: [
        { type: 'text', text: 'Let me write that down.' },
        { type: 'tool_use', id: 'toolu_01', name: 'blackboard_write', input: { key: 'language', value: 'TypeScript' } },
      ],
      usage: { inputTokens: 120, outputTokens: 30 },
    },
    { content: [{ type: 'text', text: 'Noted: the project uses TypeScript.' }], usage: { inputTokens: 180, outputTokens: 12 } },
  ]);
  stack = await startStack({ config: { anthropic: { apiKey: FAKE_ANTHROPIC_KEY, baseURL: fake.url, defaultModel: 'claude-sonnet-5-5' } } });
});
afterAll(async () => {
  await stack?.stop();
  await fake?.close();
});

describe('the default agent with an ANTHROPIC_API_KEY', () => {
  it('runs on Claude through the real SDK: streamed deltas, tool use, token usage, and no key in the trace', async () => {
    const id = (await stack.api('POST', '/v1/sessions', { goal: 'Remember that we use TypeScript.' })).body.id as string;
    const session = await stack.waitForStatus(id, (s) => s.status === 'blocked');
    expect(session).toMatchObject({
      agentId: 'assistant',
      finalAnswer: 'Noted: the project uses TypeScript.',
      usage: { inputTokens: 300, outputTokens: 42 },
    });

    expect(fake.requests).toHaveLength(2);
    const [first, second] = fake.requests;
    expect(first!.body).toMatchObject({ model: 'claude-sonnet-5-5', stream: true, messages: [{ role: 'user' }] });
    expect(JSON.stringify(first!.body.system)).toContain("Troupe's general assistant");
    expect((first!.body.tools as { name: string }[]).map((t) => t.name)).toEqual(['blackboard_write', 'blackboard_read']);
    // The second call carries the tool's real result back to Claude.
    expect(JSON.stringify(second!.body.messages)).toContain('"tool_use_id":"toolu_01"');
    expect(JSON.stringify(second!.body.messages)).toContain('saved fact \\"language\\"');

    const rows = await stack.traceRows(id);
    const streamed = rows.filter((r) => r.type === 'model.delta').map((r) => (r.payload as { text: string }).text).join('');
    expect(streamed).toBe('Let me write that down.Noted: the project uses TypeScript.');
    const assistant = rows.filter((r) => r.type === 'message.assistant').map((r) => r.payload as { model: string; usage: unknown });
    expect(assistant[0]).toMatchObject({ model: 'claude-sonnet-5-5', usage: { inputTokens: 120, outputTokens: 30 } });
    expect(JSON.stringify(rows)).not.toContain(FAKE_ANTHROPIC_KEY);
    await stack.api('POST', `/v1/sessions/${id}/close`);
  });
});
