import { z } from 'zod';
import type { Db } from '../../lib/db/client';
import type { ToolSpec } from '../../core/model';
import { canWriteScope, readableScopes } from '../../core/blackboard';
import { TroupeError } from '../../core/errors';
import { BlackboardKind, BlackboardScope, type AgentDefinition } from '../../core/schemas';
import { readEntries, writeEntry } from '../../service/blackboard';
import { HANDOFF, SUBMIT_PLAN } from './handoff';
import { CODING_TOOLS } from './coding';

export type ToolContext = {
  db: Db;
  sessionId: string;
  /** The session's project (scope of `project` memory); null when the session names none. */
  project: string | null;
  /** The agent making the call (its memoryScope decides what the blackboard tools may see and write). */
  agent: AgentDefinition;
  agentId: string;
  /** The task the call belongs to; null in a single-agent chat session. */
  taskId: string | null;
  /** Temporal run id of the calling workflow (for trace events the tool writes). */
  runId: string;
  /** Unique per call and stable across retries: the idempotency key of the call's side effects. */
  callKey: string;
  signal: AbortSignal;
};

export type ToolDefinition<S extends z.ZodType = z.ZodType> = {
  name: string;
  description: string;
  input: S;
  run(ctx: ToolContext, input: z.infer<S>): Promise<string>;
};

function defineTool<S extends z.ZodType>(tool: ToolDefinition<S>): ToolDefinition {
  return tool as unknown as ToolDefinition;
}

/** The scopes the calling agent may read and write, or a tool error when its memoryScope is `none`. */
function allowedScopes(ctx: ToolContext, tool: string): BlackboardScope[] {
  const scopes = readableScopes(ctx.agent.memoryScope);
  if (scopes.length === 0) {
    throw new TroupeError('bad_request', `${tool}: agent "${ctx.agent.id}" has memoryScope "none" and cannot use the blackboard`);
  }
  return scopes;
}

/** Built-in tools. Blackboard errors the model can act on are TroupeError('bad_request'), with a message for the model. */
export const BUILTIN_TOOLS: readonly ToolDefinition[] = [
  HANDOFF,
  SUBMIT_PLAN,
  ...CODING_TOOLS,
  defineTool({
    name: 'blackboard_write',
    description:
      'Save a fact, artifact or decision on the blackboard under a key, for later steps and other agents to read. ' +
      'scope: "session" (this session), "project" (every session of the project) or "global"; default: the widest your ' +
      'memory allows. ttlSeconds: forget the entry after that long.',
    input: z
      .object({
        key: z.string().trim().min(1).max(200),
        value: z.string().max(100_000),
        kind: BlackboardKind.default('fact'),
        scope: BlackboardScope.optional(),
        ttlSeconds: z.number().int().min(1).max(365 * 24 * 3600).optional(),
      })
      .strict(),
    async run(ctx, input) {
      const allowed = allowedScopes(ctx, 'blackboard_write');
      const memoryScope = ctx.agent.memoryScope as BlackboardScope; // not `none`: allowedScopes threw
      const scope = input.scope ?? memoryScope;
      if (!canWriteScope(ctx.agent.memoryScope, scope)) {
        throw new TroupeError(
          'bad_request',
          `blackboard_write: scope "${scope}" is wider than agent "${ctx.agent.id}"'s memoryScope "${memoryScope}"; allowed scopes: ${allowed.join(', ')}`,
        );
      }
      const entry = await writeEntry(ctx.db, {
        session: { id: ctx.sessionId, project: ctx.project },
        key: input.key,
        value: input.value,
        kind: input.kind,
        scope,
        ...(input.ttlSeconds !== undefined ? { ttlSeconds: input.ttlSeconds } : {}),
        actor: `agent:${ctx.agentId}`,
        taskId: ctx.taskId,
        idempotencyKey: ctx.callKey,
        runId: ctx.runId,
      });
      return `saved ${entry.kind} "${entry.key}"${scope === 'session' ? '' : ` (${scope} scope)`}${entry.expiresAt ? ` until ${entry.expiresAt}` : ''}`;
    },
  }),
  defineTool({
    name: 'blackboard_read',
    description:
      'Read the blackboard entries visible to you (the latest value of each key): one key, one kind, or all when none is given.',
    input: z.object({ key: z.string().trim().min(1).max(200).optional(), kind: BlackboardKind.optional() }).strict(),
    async run(ctx, input) {
      allowedScopes(ctx, 'blackboard_read');
      const entries = await readEntries(ctx.db, {
        session: { id: ctx.sessionId, project: ctx.project },
        memoryScope: ctx.agent.memoryScope,
        ...(input.key !== undefined ? { key: input.key } : {}),
        ...(input.kind !== undefined ? { kind: input.kind } : {}),
      });
      if (entries.length === 0) {
        if (input.key !== undefined) return `no entry "${input.key}"${input.kind ? ` of kind ${input.kind}` : ''}`;
        return input.kind ? `no ${input.kind} entries on the blackboard` : 'the blackboard is empty';
      }
      return JSON.stringify(
        entries.map((e) => ({
          key: e.key,
          kind: e.kind,
          scope: e.scope,
          value: e.value,
          by: e.provenance.actor,
          ...(e.provenance.taskId ? { taskId: e.provenance.taskId } : {}),
          ...(e.expiresAt ? { expiresAt: e.expiresAt } : {}),
        })),
      );
    },
  }),
];

function specOf(t: ToolDefinition): ToolSpec {
  const schema = z.toJSONSchema(t.input, { io: 'input' }) as Record<string, unknown>;
  delete schema.$schema;
  return { name: t.name, description: t.description, inputSchema: schema };
}

export function createToolRegistry(tools: readonly ToolDefinition[] = BUILTIN_TOOLS) {
  const byName = new Map(tools.map((t) => [t.name, t]));
  // The JSON Schemas the model sees are built once, not on every model call.
  const specByName = new Map(tools.map((t) => [t.name, specOf(t)]));
  return {
    get: (name: string) => byName.get(name),
    names: () => [...byName.keys()],
    specs: (names: readonly string[]): ToolSpec[] => names.flatMap((n) => specByName.get(n) ?? []),
  };
}
export type ToolRegistry = ReturnType<typeof createToolRegistry>;
