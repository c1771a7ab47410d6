import Anthropic, { APIConnectionError, APIError } from '@anthropic-ai/sdk';
import { TroupeError } from '../../core/errors';
import { ModelResponse, StopReason } from '../../core/model';
import type { ChatMessage, ContentBlock, TextBlock, ToolSpec, ToolUseBlock } from '../../core/model';
import type { ModelProvider, ModelRequest, StreamHooks } from './types';

export type AnthropicProviderOptions = {
  apiKey: string;
  /** Defaults to the SDK's (https://api.anthropic.com); tests point it at a local fake. */
  baseURL?: string;
  /** SDK-level retries. 0 by default: Temporal retries the whole activity, with its own policy. */
  maxRetries?: number;
  /** Time allowed until the response headers arrive (the SDK arms it around fetch only). */
  timeoutMs?: number;
};

/** Statuses worth retrying: timeout, conflict, rate limit, and every 5xx (529 = overloaded). */
const RETRYABLE_STATUSES = new Set([408, 409, 429]);
/** Error types the API can send mid-stream (an SSE `error` event has no HTTP status). */
const RETRYABLE_ERROR_TYPES = new Set(['overloaded_error', 'api_error', 'rate_limit_error', 'timeout_error']);

/**
 * Anthropic Messages API over the official SDK, always streaming.
 *
 * Aborts: when `hooks.signal` aborts, `complete` rejects with `signal.reason` (what `signal.throwIfAborted()`
 * throws): a DOMException named `AbortError` for a plain `controller.abort()`, or the `CancelledFailure` that the
 * Temporal worker aborts an activity with. Both are what the worker reports as a cancellation, so an abort is never
 * disguised as a `model_error`.
 */
export function createAnthropicProvider(opts: AnthropicProviderOptions): ModelProvider {
  const client = new Anthropic({
    apiKey: opts.apiKey,
    baseURL: opts.baseURL,
    maxRetries: opts.maxRetries ?? 0,
    timeout: opts.timeoutMs,
  });
  const redact = (text: string) => (opts.apiKey ? text.split(opts.apiKey).join('[redacted]') : text);

  return {
    name: 'anthropic',
    async complete(request, hooks) {
      hooks.signal.throwIfAborted();
      try {
        const stream = await client.messages.create(toWireParams(request), { signal: hooks.signal });
        return await collect(stream, hooks);
      } catch (error) {
        // The SDK turns an abort into APIUserAbortError, or ends the stream quietly; surface the signal's reason.
        hooks.signal.throwIfAborted();
        throw toTroupeError(error, redact);
      }
    },
  };
}

function toWireParams(request: ModelRequest): Anthropic.MessageCreateParamsStreaming {
  return {
    model: request.model,
    max_tokens: request.maxTokens,
    ...(request.system ? { system: request.system } : {}),
    messages: request.messages.map(toWireMessage),
    ...(request.tools.length > 0 ? { tools: request.tools.map(toWireTool) } : {}),
    stream: true,
  };
}

function toWireMessage(message: ChatMessage): Anthropic.MessageParam {
  // The API rejects empty text blocks; a turn that was only a tool call may carry one.
  const blocks = message.content.filter((b) => !(b.type === 'text' && b.text === '' && message.content.length > 1));
  return { role: message.role, content: blocks.map(toWireBlock) };
}

function toWireBlock(block: ContentBlock): Anthropic.ContentBlockParam {
  switch (block.type) {
    case 'text':
      return { type: 'text', text: block.text };
    case 'tool_use':
      return { type: 'tool_use', id: block.id, name: block.name, input: block.input };
    case 'tool_result':
      return {
        type: 'tool_result',
        tool_use_id: block.toolUseId,
        content: block.content,
        ...(block.isError !== undefined ? { is_error: block.isError } : {}),
      };
  }
}

function toWireTool(tool: ToolSpec): Anthropic.Tool {
  return {
    name: tool.name,
    description: tool.description,
    input_schema: { type: 'object', ...tool.inputSchema } as Anthropic.Tool.InputSchema,
  };
}

type Draft = TextBlock | (Omit<ToolUseBlock, 'input'> & { input: unknown; json: string }) | null;

/** Folds the raw event stream into our response; text deltas go out as they arrive. */
async function collect(
  stream: AsyncIterable<Anthropic.RawMessageStreamEvent>,
  hooks: StreamHooks,
): Promise<ModelResponse> {
  let model = '';
  let stopReason: string | null = null;
  const usage = { inputTokens: 0, outputTokens: 0 };
  const drafts: Draft[] = []; // by event index; null for block kinds we do not return (thinking, server tools)
  let stopped = false;

  for await (const event of stream) {
    switch (event.type) {
      case 'message_start':
        model = event.message.model;
        usage.inputTokens = event.message.usage.input_tokens;
        usage.outputTokens = event.message.usage.output_tokens;
        break;
      case 'content_block_start': {
        const b = event.content_block;
        drafts[event.index] =
          b.type === 'text' ? { type: 'text', text: b.text }
          : b.type === 'tool_use' ? { type: 'tool_use', id: b.id, name: b.name, input: b.input, json: '' }
          : null;
        break;
      }
      case 'content_block_delta': {
        const draft = drafts[event.index];
        if (event.delta.type === 'text_delta' && draft?.type === 'text') {
          draft.text += event.delta.text;
          hooks.onTextDelta(event.delta.text);
        } else if (event.delta.type === 'input_json_delta' && draft?.type === 'tool_use') {
          draft.json += event.delta.partial_json;
        }
        break;
      }
      case 'content_block_stop': {
        const draft = drafts[event.index];
        if (draft?.type === 'tool_use' && draft.json !== '') draft.input = parseToolInput(draft.name, draft.json);
        break;
      }
      case 'message_delta':
        stopReason = event.delta.stop_reason;
        usage.outputTokens = event.usage.output_tokens;
        if (event.usage.input_tokens != null) usage.inputTokens = event.usage.input_tokens;
        break;
      case 'message_stop':
        stopped = true;
        break;
    }
  }
  // An aborted SDK stream ends without an error; the caller turns this into the abort.
  hooks.signal.throwIfAborted();
  if (!stopped) {
    throw new TroupeError('model_error', 'Anthropic stream ended before message_stop', { retryable: true });
  }

  const content = drafts
    .filter((d): d is NonNullable<Draft> => d != null)
    .map((d) => (d.type === 'text' ? d : { type: d.type, id: d.id, name: d.name, input: d.input }));
  const parsed = ModelResponse.safeParse({ model, content, stopReason: toStopReason(stopReason), usage });
  if (!parsed.success) {
    throw new TroupeError('model_output_invalid', 'Anthropic response does not match ModelResponse', {
      issues: parsed.error.issues,
    });
  }
  return parsed.data;
}

function parseToolInput(name: string, json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    // Usually a tool call cut off by max_tokens; never run a tool on a guessed half of its arguments.
    throw new TroupeError('model_output_invalid', `Tool input for ${name} is not valid JSON`, { tool: name });
  }
}

function toStopReason(reason: string | null): StopReason {
  const known = StopReason.safeParse(reason);
  return known.success ? known.data : 'end_turn';
}

function toTroupeError(error: unknown, redact: (text: string) => string): TroupeError {
  if (error instanceof TroupeError) return error;
  if (error instanceof APIConnectionError) {
    return new TroupeError('model_error', redact(`Anthropic connection failed: ${error.message}`), {
      retryable: true,
    });
  }
  if (error instanceof APIError) {
    const status = error.status;
    const retryable =
      status === undefined ? error.type !== null && RETRYABLE_ERROR_TYPES.has(error.type)
      : RETRYABLE_STATUSES.has(status) || status >= 500;
    const reason = error.apiMessage ?? error.message;
    return new TroupeError('model_error', redact(`Anthropic API error ${status ?? '(stream)'}: ${reason}`), {
      retryable,
      status,
      type: error.type,
      requestId: error.requestID ?? undefined,
    });
  }
  // Anything else escaped the SDK while reading the body: most often the connection dropped mid-stream.
  const message = error instanceof Error ? error.message : String(error);
  return new TroupeError('model_error', redact(`Anthropic stream failed: ${message}`), { retryable: true });
}
