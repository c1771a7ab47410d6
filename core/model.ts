import { z } from 'zod';

/** Provider-neutral conversation shapes (close to the Anthropic Messages API, which is the richest we support). */
export const TextBlock = z.object({ type: z.literal('text'), text: z.string() });
export const ToolUseBlock = z.object({
  type: z.literal('tool_use'),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.unknown(),
});
export const ToolResultBlock = z.object({
  type: z.literal('tool_result'),
  toolUseId: z.string().min(1),
  content: z.string(),
  isError: z.boolean().optional(),
});
export const ContentBlock = z.discriminatedUnion('type', [TextBlock, ToolUseBlock, ToolResultBlock]);
export type TextBlock = z.infer<typeof TextBlock>;
export type ToolUseBlock = z.infer<typeof ToolUseBlock>;
export type ToolResultBlock = z.infer<typeof ToolResultBlock>;
export type ContentBlock = z.infer<typeof ContentBlock>;

export const ChatMessage = z.object({
  role: z.enum(['user', 'assistant']),
  content: z.array(ContentBlock),
});
export type ChatMessage = z.infer<typeof ChatMessage>;

export const StopReason = z.enum(['end_turn', 'tool_use', 'max_tokens', 'stop_sequence', 'refusal', 'pause_turn']);
export type StopReason = z.infer<typeof StopReason>;

export const TokenUsage = z.object({
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
});
export type TokenUsage = z.infer<typeof TokenUsage>;

/** What a model call returns to the workflow. Validated by the activity before it is trusted. */
export const ModelResponse = z.object({
  model: z.string(),
  content: z.array(z.union([TextBlock, ToolUseBlock])),
  stopReason: StopReason,
  usage: TokenUsage,
});
export type ModelResponse = z.infer<typeof ModelResponse>;

/** A tool as the model sees it. */
export type ToolSpec = { name: string; description: string; inputSchema: Record<string, unknown> };

export function textOf(blocks: readonly ContentBlock[]): string {
  return blocks
    .filter((b): b is TextBlock => b.type === 'text')
    .map((b) => b.text)
    .join('');
}

export function toolUsesOf(blocks: readonly ContentBlock[]): ToolUseBlock[] {
  return blocks.filter((b): b is ToolUseBlock => b.type === 'tool_use');
}

export function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  return { inputTokens: a.inputTokens + b.inputTokens, outputTokens: a.outputTokens + b.outputTokens };
}
