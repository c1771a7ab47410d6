import type { ChatMessage, ModelResponse, ToolSpec } from '../../core/model';

/** One model call, provider-neutral. `model` is the part after the provider prefix (`claude-sonnet-4-5`). */
export type ModelRequest = {
  model: string;
  system: string;
  messages: ChatMessage[];
  tools: ToolSpec[];
  maxTokens: number;
  /** Facts about the call that providers may use (the scripted provider scripts task-level failures with them). */
  meta?: { taskAttempt?: number };
};

export type StreamHooks = {
  /** Called for every streamed text fragment, in order. */
  onTextDelta: (text: string) => void;
  /** Aborted when the activity is cancelled (session cancel) or times out. */
  signal: AbortSignal;
};

/**
 * A model provider. Errors are thrown as TroupeError with code `model_error` (details `{ retryable, status? }`),
 * `scenario_exhausted`, `scenario_not_found` or `model_output_invalid`; the activity decides retry from them.
 */
export interface ModelProvider {
  readonly name: string;
  complete(request: ModelRequest, hooks: StreamHooks): Promise<ModelResponse>;
}
