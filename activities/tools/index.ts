import { z } from 'zod';
import type { Db } from '../../lib/db/client';
import type { ToolSpec } from '../../core/model';

export type ToolContext = {
  db: Db;
  sessionId: string;
  agentId: string;
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

const BlackboardKind = z.enum(['fact', 'artifact', 'decision']);

/** Built-in tools. The blackboard here is the session-scoped minimum; scopes and TTL come with the registries. */
export const BUILTIN_TOOLS: readonly ToolDefinition[] = [
  defineTool({
    name: 'blackboard_write',
    description: 'Save a fact, artifact or decision on the session blackboard under a key, for later steps to read.',
    input: z
      .object({
        key: z.string().min(1).max(200),
        value: z.string().max(100_000),
        kind: BlackboardKind.default('fact'),
      })
      .strict(),
    async run(ctx, input) {
      await ctx.db.blackboardEntry.createMany({
        data: [
          {
            id: `${ctx.sessionId}:${ctx.callKey}`,
            sessionId: ctx.sessionId,
            kind: input.kind,
            key: input.key,
            value: input.value,
            writtenBy: `agent:${ctx.agentId}`,
            idempotencyKey: ctx.callKey,
          },
        ],
        skipDuplicates: true,
      });
      return `saved ${input.kind} "${input.key}"`;
    },
  }),
  defineTool({
    name: 'blackboard_read',
    description: 'Read entries from the session blackboard: the latest value of one key, or all keys when none is given.',
    input: z.object({ key: z.string().min(1).max(200).optional() }).strict(),
    async run(ctx, input) {
      const rows = await ctx.db.blackboardEntry.findMany({
        where: { sessionId: ctx.sessionId, ...(input.key ? { key: input.key } : {}) },
        orderBy: { createdAt: 'asc' },
      });
      const latest = new Map<string, { kind: string; value: unknown; writtenBy: string }>();
      for (const r of rows) latest.set(r.key, { kind: r.kind, value: r.value, writtenBy: r.writtenBy });
      if (latest.size === 0) return input.key ? `no entry "${input.key}"` : 'the blackboard is empty';
      return JSON.stringify(Object.fromEntries(latest));
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
