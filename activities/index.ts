/**
 * Activities: everything the session workflow does that touches the world. Built by `createActivities(deps)`
 * so the worker passes real dependencies and tests can pass their own. Every activity is safe to retry:
 * trace events and side effects carry idempotency keys that come from the workflow.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { TroupeError } from '../core/errors';
import { ModelResponse, type ChatMessage, type ToolResultBlock, type ToolUseBlock } from '../core/model';
import type { AgentDefinition } from '../core/schemas';
import type { SessionSnapshot } from '../core/session';
import type { Db } from '../lib/db/client';
import { appendTraceEvents, type NewTraceEvent } from '../lib/db/trace';
import type { Logger } from '../lib/logger';
import type { ResolvedModel } from './models/registry';
import type { ToolRegistry } from './tools';

export type ActivityDeps = {
  db: Db;
  resolveModel: (model: string) => ResolvedModel;
  tools: ToolRegistry;
  logger: Logger;
  /** Max output tokens per model call. */
  maxTokens?: number;
};

export type CheckpointInput = {
  sessionId: string;
  /** On the first checkpoint: what it takes to create the session row if the API has not written it. */
  create?: { goal: string; agent: AgentDefinition; metadata: Record<string, unknown> };
  snapshot: SessionSnapshot;
  events: (Omit<NewTraceEvent, 'payload'> & { payload: unknown })[];
};

export type CallModelInput = { sessionId: string; step: number; agent: AgentDefinition; messages: ChatMessage[] };
export type RunToolInput = { sessionId: string; step: number; agent: AgentDefinition; call: ToolUseBlock };

const DELTA_FLUSH_MS = 100;
const HEARTBEAT_MS = 2_000;

/** Maps a thrown error to a Temporal failure whose `type` is our stable error code. */
function toFailure(err: unknown): unknown {
  if (err instanceof TroupeError) {
    const retryable =
      err.code === 'model_error' &&
      (typeof err.details !== 'object' || err.details === null || (err.details as { retryable?: boolean }).retryable !== false);
    return ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: !retryable });
  }
  return err;
}

export function createActivities(deps: ActivityDeps) {
  const { db, logger } = deps;

  return {
    /** Appends the workflow's trace events and mirrors its state, in one transaction. Older versions never overwrite newer. */
    async checkpoint(input: CheckpointInput): Promise<{ lastSeq: number }> {
      const { snapshot } = input;
      return db.$transaction(async (tx) => {
        if (input.create) {
          const { goal, agent, metadata } = input.create;
          await tx.session.createMany({
            data: [{ id: input.sessionId, goal, agentId: agent.id, agentSnapshot: agent, status: 'pending', metadata: metadata as object }],
            skipDuplicates: true,
          });
        }
        const { lastSeq } = await appendTraceEvents(tx, input.sessionId, input.events);
        await tx.session.updateMany({
          where: { id: input.sessionId, stateVersion: { lt: snapshot.version } },
          data: {
            status: snapshot.status,
            statusReason: snapshot.statusReason,
            finalAnswer: snapshot.finalAnswer,
            inputTokens: snapshot.usage.inputTokens,
            outputTokens: snapshot.usage.outputTokens,
            stateVersion: snapshot.version,
            ...(snapshot.ended ? { endedAt: new Date() } : {}),
          },
        });
        return { lastSeq };
      });
    },

    /** One model call, streamed: text deltas become `model.delta` trace events as they arrive. */
    async callModel(input: CallModelInput): Promise<ModelResponse> {
      const ctx = Context.current();
      const { attempt, workflowExecution } = ctx.info;
      const log = logger.child({ sessionId: input.sessionId, activity: 'callModel', attempt });
      let resolved: ResolvedModel;
      try {
        resolved = deps.resolveModel(input.agent.model);
      } catch (err) {
        throw toFailure(err);
      }

      let buffer = '';
      let deltaIndex = 0;
      let flushing: Promise<unknown> = Promise.resolve();
      const flush = () => {
        if (buffer.length === 0) return flushing;
        const event: NewTraceEvent = {
          key: `d${input.step}:${attempt}:${deltaIndex++}`,
          runId: workflowExecution?.runId ?? 'unknown',
          actor: `agent:${input.agent.id}`,
          type: 'model.delta',
          payload: { text: buffer, attempt },
          timestamp: new Date().toISOString(),
        };
        buffer = '';
        flushing = flushing.then(() => appendTraceEvents(db, input.sessionId, [event]));
        return flushing;
      };
      const flushTimer = setInterval(() => {
        flush().catch((err: unknown) => log.warn({ err }, 'writing model deltas failed'));
      }, DELTA_FLUSH_MS);
      // Heartbeats carry cancellation to this activity even while the model is silent.
      const heartbeatTimer = setInterval(() => ctx.heartbeat(), HEARTBEAT_MS);

      try {
        log.debug({ model: resolved.qualified }, 'calling model');
        const response = await resolved.provider.complete(
          {
            model: resolved.model,
            system: input.agent.instructions,
            messages: input.messages,
            tools: deps.tools.specs(input.agent.tools),
            maxTokens: deps.maxTokens ?? 8192,
          },
          {
            signal: ctx.cancellationSignal,
            onTextDelta: (text) => {
              buffer += text;
            },
          },
        );
        await flush();
        const parsed = ModelResponse.safeParse(response);
        if (!parsed.success) {
          throw new TroupeError('model_output_invalid', `model returned an invalid response: ${parsed.error.message}`);
        }
        log.info({ model: parsed.data.model, stopReason: parsed.data.stopReason, usage: parsed.data.usage }, 'model call finished');
        return parsed.data;
      } catch (err) {
        if (ctx.cancellationSignal.aborted) {
          log.info('model call cancelled');
          throw ctx.cancellationSignal.reason ?? err;
        }
        log.warn({ err: err instanceof Error ? { message: err.message, code: (err as TroupeError).code } : err }, 'model call failed');
        throw toFailure(err);
      } finally {
        clearInterval(flushTimer);
        clearInterval(heartbeatTimer);
        await flushing.catch(() => undefined);
      }
    },

    /**
     * Runs one tool call. Bad input from the model (unknown tool, arguments that fail validation) is returned
     * to the model as an error result naming what is wrong, so it can correct itself.
     */
    async runTool(input: RunToolInput): Promise<ToolResultBlock> {
      const ctx = Context.current();
      const { call, agent } = input;
      const errorResult = (content: string): ToolResultBlock => ({ type: 'tool_result', toolUseId: call.id, content, isError: true });
      const tool = agent.tools.includes(call.name) ? deps.tools.get(call.name) : undefined;
      if (!tool) return errorResult(`unknown tool "${call.name}"; available: ${agent.tools.join(', ') || '(none)'}`);
      const args = tool.input.safeParse(call.input);
      if (!args.success) {
        const problems = args.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`).join('; ');
        return errorResult(`invalid arguments for ${call.name}: ${problems}`);
      }
      const heartbeatTimer = setInterval(() => ctx.heartbeat(), HEARTBEAT_MS);
      try {
        const content = await tool.run(
          { db, sessionId: input.sessionId, agentId: agent.id, callKey: `${input.step}:${call.id}`, signal: ctx.cancellationSignal },
          args.data,
        );
        return { type: 'tool_result', toolUseId: call.id, content };
      } finally {
        clearInterval(heartbeatTimer);
      }
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
