import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { createAnthropicProvider } from '../activities/models/anthropic';
import type { ModelRequest } from '../activities/models/types';
import { TroupeError } from '../core/errors';
import { FAKE_ANTHROPIC_KEY, apiKeyOf, startFakeAnthropic } from './support/fake-anthropic';
import type { FakeAnthropic, FakeTurn, RecordedRequest } from './support/fake-anthropic';

const MODEL = 'claude-sonnet-4-6';

let fake: FakeAnthropic | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function serve(script: FakeTurn[] | ((req: RecordedRequest) => FakeTurn)) {
  fake = await startFakeAnthropic(script);
  return fake;
}

function providerFor(server: FakeAnthropic, apiKey = FAKE_ANTHROPIC_KEY) {
  return createAnthropicProvider({ apiKey, baseURL: server.url });
}

function request(overrides: Partial<ModelRequest> = {}): ModelRequest {
  return {
    model: MODEL,
    system: 'You are the coder.',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Fix the bug.' }] }],
    tools: [],
    maxTokens: 1024,
    ...overrides,
  };
}

function hooks(signal = new AbortController().signal) {
  const deltas: string[] = [];
  const onTextDelta = (text: string): void => {
    deltas.push(text);
  };
  return { deltas, onTextDelta, signal };
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.fail('expected the call to reject'),
    (error: unknown) => error,
  );
}

describe('Anthropic provider against the fake Messages API', () => {
  it('streams text as deltas in order and returns the final response', async () => {
    const server = await serve([
      {
        content: [{ type: 'text', text: ['Looking ', 'at the ', 'failing ', 'test.'] }],
        usage: { inputTokens: 42, outputTokens: 7 },
        chunkDelayMs: 2,
      },
    ]);
    const h = hooks();

    const response = await providerFor(server).complete(request(), h);

    expect(h.deltas).toEqual(['Looking ', 'at the ', 'failing ', 'test.']);
    expect(response).toEqual({
      model: MODEL,
      content: [{ type: 'text', text: 'Looking at the failing test.' }],
      stopReason: 'end_turn',
      usage: { inputTokens: 42, outputTokens: 7 },
    });
    expect(server.requests[0]?.body.stream).toBe(true);
  });

  it('reassembles a tool call whose input arrives in several input_json_delta chunks', async () => {
    const input = { path: 'src/app.ts', edits: [{ line: 12, text: 'return a + b;' }], dryRun: false };
    const server = await serve([
      {
        content: [
          { type: 'text', text: 'I will edit the file.' },
          { type: 'tool_use', id: 'toolu_01', name: 'write_file', input },
        ],
        usage: { inputTokens: 100, outputTokens: 30 },
      },
    ]);

    const response = await providerFor(server).complete(request(), hooks());

    expect(response.stopReason).toBe('tool_use');
    expect(response.content).toEqual([
      { type: 'text', text: 'I will edit the file.' },
      { type: 'tool_use', id: 'toolu_01', name: 'write_file', input },
    ]);
    expect(response.usage).toEqual({ inputTokens: 100, outputTokens: 30 });
  });

  it('sends system, messages with tool results, tools, max_tokens and model in the wire shape', async () => {
    const server = await serve([{ content: [{ type: 'text', text: 'Done.' }] }]);
    const inputSchema = { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] };

    await providerFor(server).complete(
      request({
        maxTokens: 2048,
        tools: [{ name: 'read_file', description: 'Read a file', inputSchema }],
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'Read both files.' }] },
          {
            role: 'assistant',
            content: [
              { type: 'tool_use', id: 'toolu_a', name: 'read_file', input: { path: 'a.ts' } },
              { type: 'tool_use', id: 'toolu_b', name: 'read_file', input: { path: 'b.ts' } },
            ],
          },
          {
            role: 'user',
            content: [
              { type: 'tool_result', toolUseId: 'toolu_a', content: 'export const a = 1;' },
              { type: 'tool_result', toolUseId: 'toolu_b', content: 'ENOENT: b.ts', isError: true },
            ],
          },
        ],
      }),
      hooks(),
    );

    expect(server.requests).toHaveLength(1);
    const sent = server.requests[0]!;
    expect(sent.path).toBe('/v1/messages');
    expect(apiKeyOf(sent.headers)).toBe(FAKE_ANTHROPIC_KEY);
    expect(sent.headers['anthropic-version']).toBeTruthy();
    expect(sent.body).toEqual({
      model: MODEL,
      max_tokens: 2048,
      system: 'You are the coder.',
      stream: true,
      tools: [{ name: 'read_file', description: 'Read a file', input_schema: inputSchema }],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Read both files.' }] },
        {
          role: 'assistant',
          content: [
            { type: 'tool_use', id: 'toolu_a', name: 'read_file', input: { path: 'a.ts' } },
            { type: 'tool_use', id: 'toolu_b', name: 'read_file', input: { path: 'b.ts' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_a', content: 'export const a = 1;' },
            { type: 'tool_result', tool_use_id: 'toolu_b', content: 'ENOENT: b.ts', is_error: true },
          ],
        },
      ],
    });
  });

  it('maps stop reasons, and an unknown or missing one to end_turn', async () => {
    const server = await serve([
      { content: [{ type: 'text', text: 'cut' }], stopReason: 'max_tokens' },
      { content: [{ type: 'text', text: 'odd' }], stopReason: 'model_context_window_exceeded' },
      { content: [{ type: 'text', text: 'none' }], stopReason: null },
    ]);
    const provider = providerFor(server);

    const reasons = [];
    for (let i = 0; i < 3; i++) reasons.push((await provider.complete(request(), hooks())).stopReason);

    expect(reasons).toEqual(['max_tokens', 'end_turn', 'end_turn']);
  });

  it('rejects a wrong API key as a non-retryable model_error that does not contain the key', async () => {
    const server = await serve([]);
    const wrongKey = 'sk-ant-wrong-secret-0123456789';

    const error = await rejectionOf(providerFor(server, wrongKey).complete(request(), hooks()));

    expect(error).toBeInstanceOf(TroupeError);
    expect(error).toMatchObject({ code: 'model_error', details: { retryable: false, status: 401 } });
    expect(String((error as Error).message)).not.toContain(wrongKey);
    expect(JSON.stringify((error as TroupeError).details)).not.toContain(wrongKey);
  });

  it('redacts the API key even when the server echoes it back in the error', async () => {
    const server = await serve((req) => ({
      error: { status: 400, message: `key ${apiKeyOf(req.headers)} is not allowed here` },
    }));

    const error = await rejectionOf(providerFor(server).complete(request(), hooks()));

    expect(error).toMatchObject({ code: 'model_error', details: { retryable: false, status: 400 } });
    expect((error as Error).message).not.toContain(FAKE_ANTHROPIC_KEY);
    expect((error as Error).message).toContain('[redacted]');
  });

  it.each([
    { status: 529, retryable: true },
    { status: 500, retryable: true },
    { status: 429, retryable: true },
    { status: 403, retryable: false },
    { status: 404, retryable: false },
  ])('maps HTTP $status to model_error with retryable=$retryable, without SDK retries', async ({ status, retryable }) => {
    const server = await serve([{ error: { status } }]);

    const error = await rejectionOf(providerFor(server).complete(request(), hooks()));

    expect(error).toMatchObject({ code: 'model_error', details: { retryable, status } });
    expect(server.requests).toHaveLength(1);
  });

  it('treats an overload reported mid-stream as retryable', async () => {
    const server = await serve([
      { content: [{ type: 'text', text: 'Partial ' }], streamError: { type: 'overloaded_error', message: 'Overloaded' } },
    ]);
    const h = hooks();

    const error = await rejectionOf(providerFor(server).complete(request(), h));

    expect(h.deltas).toEqual(['Partial ']);
    expect(error).toMatchObject({ code: 'model_error', details: { retryable: true } });
  });

  it('treats an unreachable server as a retryable connection error', async () => {
    const server = await startFakeAnthropic([]);
    await server.close();

    const error = await rejectionOf(providerFor(server).complete(request(), hooks()));

    expect(error).toMatchObject({ code: 'model_error', details: { retryable: true } });
  });

  it('aborting mid-stream rejects promptly with the abort and cancels the HTTP request', async () => {
    const server = await serve([{ content: [{ type: 'text', text: ['Thinking ', 'about it'] }], hang: true }]);
    const controller = new AbortController();
    const h = hooks(controller.signal);
    let abortedAt = 0;
    h.onTextDelta = (text) => {
      h.deltas.push(text);
      if (h.deltas.length === 2) {
        abortedAt = Date.now();
        controller.abort();
      }
    };

    const error = await rejectionOf(providerFor(server).complete(request(), h));

    expect(Date.now() - abortedAt).toBeLessThan(500);
    expect(error).toBe(controller.signal.reason);
    expect((error as Error).name).toBe('AbortError');
    await expect.poll(() => server.requests[0]?.clientAborted).toBe(true);
  });

  it('does not call the API when the signal is already aborted', async () => {
    const server = await serve([]);
    const controller = new AbortController();
    controller.abort();

    const error = await rejectionOf(providerFor(server).complete(request(), hooks(controller.signal)));

    expect((error as Error).name).toBe('AbortError');
    expect(server.requests).toHaveLength(0);
  });

  it('rejects a tool call whose streamed input is cut off as model_output_invalid', async () => {
    // What a tool call ended by max_tokens looks like: the JSON never closes.
    const server = await serve([
      {
        content: [{ type: 'tool_use', name: 'write_file', input: {}, partialJson: ['{"path": "a.ts", ', '"text": "unfini'] }],
        stopReason: 'max_tokens',
      },
    ]);

    const error = await rejectionOf(providerFor(server).complete(request(), hooks()));

    expect(error).toMatchObject({ code: 'model_output_invalid' });
  });

  it('the fake also answers non-streaming requests the way the API does', async () => {
    const server = await serve([
      {
        content: [
          { type: 'text', text: 'Reading.' },
          { type: 'tool_use', id: 'toolu_n', name: 'read_file', input: { path: 'a.ts' } },
        ],
        usage: { inputTokens: 3, outputTokens: 4 },
      },
    ]);
    const client = new Anthropic({ apiKey: FAKE_ANTHROPIC_KEY, baseURL: server.url, maxRetries: 0 });

    const message = await client.messages.create({
      model: MODEL,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    });

    expect(message).toMatchObject({
      model: MODEL,
      role: 'assistant',
      stop_reason: 'tool_use',
      content: [
        { type: 'text', text: 'Reading.' },
        { type: 'tool_use', id: 'toolu_n', name: 'read_file', input: { path: 'a.ts' } },
      ],
      usage: { input_tokens: 3, output_tokens: 4 },
    });
  });
});
