import { z } from 'zod';

/** The spec's three core types plus the session, as zod schemas. Types derive from them with z.infer. */

export const MemoryScope = z.enum(['none', 'session', 'project', 'global']);
export type MemoryScope = z.infer<typeof MemoryScope>;

/**
 * Permission verbs an agent may hold, optionally narrowed by a path glob or pattern after a colon
 * (`exec`, `write:src/**`, `mcp:github`). The guardrails enforce them before any policy rule. `mcp` covers the tools
 * of the agent's external MCP servers (`mcp:<server glob>` narrows it to some servers).
 */
export const PERMISSION_VERBS = ['read', 'write', 'exec', 'network', 'git', 'mcp'] as const;
export const Permission = z
  .string()
  .regex(/^[a-z][a-z0-9_]*(:[^\s]+)?$/, 'permission like "exec" or "write:src/**"')
  .refine((p) => (PERMISSION_VERBS as readonly string[]).includes(p.split(':')[0] ?? ''), {
    message: `unknown permission; known: ${PERMISSION_VERBS.join(', ')} (optionally "<verb>:<glob>")`,
  });
export type Permission = z.infer<typeof Permission>;

export const AgentId = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter');

/** Task-level retry policy of an agent: how many attempts a task gets and the pause between them. */
export const AgentRetry = z
  .object({
    maxAttempts: z.number().int().min(1).max(10),
    backoffSeconds: z.number().min(0).max(3600).default(1),
  })
  .strict();
export type AgentRetry = z.infer<typeof AgentRetry>;

/** Name of an agent's MCP server: its tools are offered as `mcp__<server>__<tool>`. */
export const McpServerName = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'lowercase letters, digits and dashes, starting with a letter (at most 32)');

/** An external MCP server an agent uses: a stdio command (argv) or a Streamable HTTP URL, exactly one of them. */
export const McpServerConfig = z
  .object({
    name: McpServerName,
    /** argv of a stdio server, e.g. ["npx", "-y", "@modelcontextprotocol/server-everything"]. */
    command: z.array(z.string().min(1).max(4096)).min(1).max(100).optional(),
    /** Streamable HTTP endpoint. */
    url: z.url({ protocol: /^https?$/ }).max(4096).optional(),
    /** Extra environment of a stdio server (on top of a minimal safe default: PATH, HOME, …). */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable name'), z.string().max(10_000)).optional(),
    /** Allow-list of the server's tool names (its own names, not namespaced); default: all of them. */
    tools: z.array(z.string().min(1).max(128)).max(200).optional(),
  })
  .strict()
  .refine((s) => (s.command === undefined) !== (s.url === undefined), {
    message: 'an MCP server needs exactly one of "command" (stdio argv) or "url" (Streamable HTTP)',
  });
export type McpServerConfig = z.infer<typeof McpServerConfig>;

export const MCP_TOOL_PREFIX = 'mcp__';
/** `mcp__<server>__<tool>` → its parts (tool may be `*` in an agent's tool list), or null for another name. */
export function parseMcpToolName(name: string): { server: string; tool: string } | null {
  const m = /^mcp__([a-z][a-z0-9-]{0,31})__(.+)$/.exec(name);
  return m ? { server: m[1]!, tool: m[2]! } : null;
}

/** The spec's AgentDefinition plus optional policy fields. Strict: an unknown field is an error, not ignored. */
export const AgentDefinition = z
  .object({
    id: AgentId,
    name: z.string().min(1).max(200),
    role: z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, 'lowercase role name, e.g. "coder"'),
    /** `<provider>:<model>`, e.g. `anthropic:claude-sonnet-5-5` or `scripted:<scenario>`; `default` picks by the worker's config. */
    model: z.string().min(1).max(200),
    instructions: z.string().max(100_000),
    tools: z.array(z.string().min(1)).max(100),
    permissions: z.array(Permission).max(100),
    memoryScope: MemoryScope,
    description: z.string().max(2000).optional(),
    retry: AgentRetry.optional(),
    /** Deadline of a task run by this agent (all attempts together). */
    timeoutSeconds: z.number().int().min(1).max(7 * 24 * 3600).optional(),
    /** External MCP servers; their tools are listed in `tools` as `mcp__<server>__<tool>` or `mcp__<server>__*`. */
    mcpServers: z.array(McpServerConfig).max(20).optional(),
  })
  .strict();
export type AgentDefinition = z.infer<typeof AgentDefinition>;

/** An agent as stored: the definition plus its version number (a session freezes these). */
export const VersionedAgent = AgentDefinition.extend({ version: z.number().int().positive() });
export type VersionedAgent = z.infer<typeof VersionedAgent>;

// ---- Blackboard ----

export const BlackboardKind = z.enum(['fact', 'artifact', 'decision']);
export type BlackboardKind = z.infer<typeof BlackboardKind>;
/** Where an entry lives; who may see it follows each agent's memoryScope (see core/blackboard.ts). */
export const BlackboardScope = z.enum(['session', 'project', 'global']);
export type BlackboardScope = z.infer<typeof BlackboardScope>;

export const BlackboardEntry = z.object({
  id: z.string(),
  key: z.string(),
  kind: BlackboardKind,
  value: z.unknown(),
  scope: BlackboardScope,
  provenance: z.object({
    /** `agent:<id>`, `user` or `app`. */
    actor: z.string(),
    sessionId: z.string(),
    taskId: z.string().nullable(),
    /** seq of the trace event that records the write. */
    traceSeq: z.number().int().nullable(),
  }),
  expiresAt: z.string().nullable(),
  createdAt: z.string(),
});
export type BlackboardEntry = z.infer<typeof BlackboardEntry>;

export const WriteBlackboardBody = z
  .object({
    key: z.string().trim().min(1).max(200),
    value: z.unknown().refine((v) => v !== undefined, 'value is required'),
    kind: BlackboardKind.default('fact'),
    scope: BlackboardScope.default('session'),
    ttlSeconds: z.number().int().min(1).max(365 * 24 * 3600).optional(),
  })
  .strict();
export type WriteBlackboardBody = z.infer<typeof WriteBlackboardBody>;

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
  project: z.string().nullable(),
  /** Real path of the session's repository, and its worktree once made. */
  repo: z.string().nullable(),
  workspace: z.object({ root: z.string(), branch: z.string(), baseSha: z.string() }).nullable(),
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
    /** A local git repository the session works on, in its own worktree and branch (the checkout is not touched). */
    repo: z.string().min(1).max(4096).optional(),
    /** The project this session works for: the scope of `project` memory on the blackboard. */
    project: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$/, 'letters, digits, ".", "_", "/" and "-"').optional(),
    metadata: z
      .record(z.string(), z.unknown())
      .refine((m) => JSON.stringify(m).length <= 16_384, 'metadata must serialize to at most 16 KiB')
      .optional(),
    /**
     * Router rules of an orchestrated session (agent role `planner`): a task with no agent and no matching role goes
     * to the first rule whose pattern (case-insensitive regular expression) matches its goal.
     */
    routes: z
      .array(
        z
          .object({
            pattern: z.string().min(1).max(500).refine((p) => {
              try {
                new RegExp(p, 'i');
                return true;
              } catch {
                return false;
              }
            }, 'not a valid regular expression'),
            agent: z.string().min(1).max(63),
          })
          .strict(),
      )
      .max(50)
      .optional(),
    /** How many tasks of an orchestrated session run at once (default 4). */
    maxParallelTasks: z.number().int().min(1).max(32).optional(),
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

// ---- Task registry views ----

/** A task as the API shows it: the spec's Task plus what the orchestrator decided about it. */
export const TaskView = Task.extend({
  round: z.number().int(),
  planKey: z.string().nullable(),
  role: z.string().nullable(),
  dependsOn: z.array(z.string()),
  agentVersion: z.number().int().nullable(),
  attempts: z.number().int(),
  statusReason: z.string().nullable(),
});
export type TaskView = z.infer<typeof TaskView>;

export type TaskNode = TaskView & { children: TaskNode[] };
export const TaskNode: z.ZodType<TaskNode> = TaskView.extend({
  get children() {
    return z.array(TaskNode);
  },
});

export const TaskTree = z.object({ data: z.array(TaskNode) });

// ---- Approvals ----

export const APPROVAL_STATUSES = ['pending', 'approved', 'denied', 'expired', 'cancelled'] as const;
export const ApprovalStatus = z.enum(APPROVAL_STATUSES);
export type ApprovalStatus = z.infer<typeof ApprovalStatus>;

export const ApprovalView = z.object({
  id: z.string(),
  sessionId: z.string(),
  taskId: z.string().nullable(),
  agentId: z.string(),
  tool: z.string(),
  input: z.unknown(),
  /** The guardrail decision that asked: effect, stage, rule, reason, risk score and reasons. */
  decision: z.unknown(),
  status: ApprovalStatus,
  decidedBy: z.string().nullable(),
  reason: z.string().nullable(),
  expiresAt: z.string(),
  createdAt: z.string(),
  decidedAt: z.string().nullable(),
});
export type ApprovalView = z.infer<typeof ApprovalView>;

export const DecideApprovalBody = z
  .object({
    decision: z.enum(['approve', 'deny']),
    reason: z.string().trim().max(2000).optional(),
    /** Who decides (shown in the trace and on the approval); defaults to "api". */
    by: z.string().trim().min(1).max(200).optional(),
  })
  .strict();
export type DecideApprovalBody = z.infer<typeof DecideApprovalBody>;

export const ListApprovalsQuery = z.object({ status: ApprovalStatus.optional() }).strict();

export const RollbackBody = z.object({ snapshot: z.string().regex(/^[0-9a-f]{7,64}$/, 'a commit sha of one of the session\'s snapshots') }).strict();
