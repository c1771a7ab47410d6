import { z } from 'zod';

/** The spec's three core types plus the session, as zod schemas. Types derive from them with z.infer. */

export const MemoryScope = z.enum(['none', 'session', 'project', 'global']);
export type MemoryScope = z.infer<typeof MemoryScope>;

export const Permission = z.string().regex(/^[a-z][a-z0-9_]*(:[a-z0-9_*./-]+)?$/, 'permission like "exec" or "write:src/**"');
export type Permission = z.infer<typeof Permission>;

export const AgentDefinition = z.object({
  id: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes'),
  name: z.string().min(1).max(200),
  role: z.string().min(1).max(100),
  /** `<provider>:<model>`, e.g. `anthropic:claude-sonnet-5-5` or `scripted:<scenario>`; `default` picks by the worker's config. */
  model: z.string().min(1).max(200),
  instructions: z.string().max(100_000),
  tools: z.array(z.string().min(1)).max(100),
  permissions: z.array(Permission).max(100),
  memoryScope: MemoryScope,
});
export type AgentDefinition = z.infer<typeof AgentDefinition>;

export const TASK_STATUSES = ['pending', 'running', 'blocked', 'done', 'failed', 'cancelled'] as const;
export const TaskStatus = z.enum(TASK_STATUSES);
export type TaskStatus = z.infer<typeof TaskStatus>;

export const Artifact = z.object({
  id: z.string(),
  kind: z.string(),
  name: z.string(),
  uri: z.string().optional(),
  data: z.unknown().optional(),
});
export type Artifact = z.infer<typeof Artifact>;

export const Task = z.object({
  id: z.string(),
  parentId: z.string().optional(),
  sessionId: z.string(),
  assignedAgent: z.string().optional(),
  goal: z.string(),
  status: TaskStatus,
  input: z.unknown(),
  output: z.unknown().optional(),
  artifacts: z.array(Artifact).optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Task = z.infer<typeof Task>;

export const TraceEvent = z.object({
  id: z.string(),
  seq: z.number().int().positive(),
  runId: z.string(),
  sessionId: z.string(),
  taskId: z.string().optional(),
  actor: z.string(),
  type: z.string(),
  payload: z.unknown(),
  timestamp: z.string(),
});
export type TraceEvent = z.infer<typeof TraceEvent>;

/** Session statuses share the task vocabulary: one word, one meaning. */
export const SessionStatus = TaskStatus;
export type SessionStatus = TaskStatus;
export const TERMINAL_STATUSES: readonly SessionStatus[] = ['done', 'failed', 'cancelled'];
export function isTerminal(status: SessionStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

export const BlockedReason = z.enum(['awaiting_input', 'awaiting_approval']);
export type BlockedReason = z.infer<typeof BlockedReason>;

export const TokenUsageView = z.object({ inputTokens: z.number().int(), outputTokens: z.number().int() });

export const Session = z.object({
  id: z.string(),
  goal: z.string(),
  agentId: z.string(),
  status: SessionStatus,
  /** Why the session is blocked, failed or done (e.g. `awaiting_input`, `idle_timeout`, `closed`). */
  statusReason: z.string().nullable(),
  finalAnswer: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()),
  usage: TokenUsageView,
  lastSeq: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
  endedAt: z.string().nullable(),
});
export type Session = z.infer<typeof Session>;

// ---- HTTP request bodies and queries (the API's edge) ----

const MAX_CONTENT = 200_000;

export const CreateSessionBody = z
  .object({
    goal: z.string().trim().min(1, 'goal must not be empty').max(MAX_CONTENT),
    agent: z.string().min(1).max(63).optional(),
    metadata: z
      .record(z.string(), z.unknown())
      .refine((m) => JSON.stringify(m).length <= 16_384, 'metadata must serialize to at most 16 KiB')
      .optional(),
    /** How long a session waits for the next user message before it ends (default one day). */
    idleTimeoutSeconds: z.number().int().min(1).max(30 * 24 * 3600).optional(),
  })
  .strict();
export type CreateSessionBody = z.infer<typeof CreateSessionBody>;

export const SendMessageBody = z
  .object({ content: z.string().trim().min(1, 'content must not be empty').max(MAX_CONTENT) })
  .strict();
export type SendMessageBody = z.infer<typeof SendMessageBody>;

export const ListSessionsQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().min(1).optional(),
    status: SessionStatus.optional(),
  })
  .strict();
export type ListSessionsQuery = z.infer<typeof ListSessionsQuery>;

export const SessionPage = z.object({ data: z.array(Session), nextCursor: z.string().nullable() });

export const EventsQuery = z.object({ after: z.coerce.number().int().min(0).optional() }).strict();

export const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
