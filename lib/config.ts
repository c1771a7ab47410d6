import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** Every environment variable Troupe reads, parsed once with zod. Bad values fail at start-up with the variable's name. */
const Env = z.object({
  DATABASE_URL: z.string().url().default('postgresql://postgres@127.0.0.1:5432/troupe'),
  TEMPORAL_ADDRESS: z.string().min(1).optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('troupe-sessions'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  TROUPE_API_TOKENS: z.string().optional(),
  ANTHROPIC_API_KEY: z.string().min(1).optional(),
  ANTHROPIC_BASE_URL: z.string().url().optional(),
  TROUPE_ANTHROPIC_MODEL: z.string().min(1).default('claude-sonnet-5-5'),
  /** Extra folders of scripted scenarios (path-delimited), searched before the built-in `scenarios/`. */
  TROUPE_SCENARIO_DIRS: z.string().optional(),
  /** A folder of team agent files (YAML), applied at API start-up after the built-in agents. */
  TROUPE_AGENTS_DIR: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Extra secrets (comma-separated) redacted verbatim from every trace payload, besides the keys and tokens above. */
  TROUPE_SECRETS: z.string().optional(),
  /** run_command's sandbox (lib/sandbox.ts): bubblewrap when it works, else commands refused; or required; or explicitly none. */
  TROUPE_SANDBOX: z.enum(['auto', 'bubblewrap', 'unsandboxed']).default('auto'),
  /** The guardrail policy (YAML or JSON); default policies/default.yaml. */
  TROUPE_POLICY_FILE: z.string().min(1).optional(),
  /** Where session worktrees live; default <project>/.data/workspaces. */
  TROUPE_WORKSPACES_DIR: z.string().min(1).optional(),
  /** How long a person has to decide a guardrail `ask` before it expires (a denial). */
  TROUPE_APPROVAL_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(30 * 24 * 3600).default(3600),
  /** How long a session's worktree stays after the session ended (its branch and snapshots stay for good). */
  TROUPE_WORKSPACE_RETENTION_HOURS: z.coerce.number().min(0).max(24 * 365).default(24),
  /** Repositories a session may name must be inside one of these folders (comma-separated); unset: any path. */
  TROUPE_REPO_ROOTS: z.string().optional(),
});

export type Config = {
  databaseUrl: string;
  /** Unset means "the local dev server on 127.0.0.1:7233". */
  temporalAddress: string;
  temporalNamespace: string;
  taskQueue: string;
  port: number;
  apiTokens: string[];
  anthropic: { apiKey?: string; baseURL?: string; defaultModel: string };
  scenarioDirs: string[];
  /** TROUPE_AGENTS_DIR: team agent files applied at API start-up after the built-ins. */
  agentsDir?: string;
  logLevel: z.infer<typeof Env>['LOG_LEVEL'];
  /**
   * Values redacted verbatim from trace payloads (lib/db/trace.ts configureTraceRedaction): TROUPE_SECRETS, the
   * Anthropic key and the API tokens. (Passwords inside URLs, such as DATABASE_URL's, are caught by pattern.)
   */
  secrets: string[];
  /** TROUPE_SANDBOX: how run_command sandboxes commands (lib/sandbox.ts resolveSandbox). */
  sandbox: 'auto' | 'bubblewrap' | 'unsandboxed';
  /** TROUPE_POLICY_FILE (unset: the shipped policies/default.yaml). */
  policyFile?: string;
  workspacesDir: string;
  approvalTimeoutMs: number;
  workspaceRetentionMs: number;
  /** TROUPE_REPO_ROOTS; empty means any path. */
  repoRoots: string[];
};

function splitList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
}


export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid environment: ${problems}`);
  }
  const e = parsed.data;
  const apiTokens = splitList(e.TROUPE_API_TOKENS);
  const secrets = [...splitList(e.TROUPE_SECRETS), e.ANTHROPIC_API_KEY, ...apiTokens];
  return {
    databaseUrl: e.DATABASE_URL,
    temporalAddress: e.TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    temporalNamespace: e.TEMPORAL_NAMESPACE,
    taskQueue: e.TEMPORAL_TASK_QUEUE,
    port: e.PORT,
    apiTokens,
    anthropic: { apiKey: e.ANTHROPIC_API_KEY, baseURL: e.ANTHROPIC_BASE_URL, defaultModel: e.TROUPE_ANTHROPIC_MODEL },
    scenarioDirs: (e.TROUPE_SCENARIO_DIRS ?? '').split(':').filter((d) => d.length > 0),
    ...(e.TROUPE_AGENTS_DIR ? { agentsDir: e.TROUPE_AGENTS_DIR } : {}),
    logLevel: e.LOG_LEVEL,
    secrets: [...new Set(secrets.filter((s): s is string => s !== undefined && s.length > 0))],
    sandbox: e.TROUPE_SANDBOX,
    ...(e.TROUPE_POLICY_FILE ? { policyFile: e.TROUPE_POLICY_FILE } : {}),
    workspacesDir: e.TROUPE_WORKSPACES_DIR ?? fileURLToPath(new URL('../.data/workspaces', import.meta.url)),
    approvalTimeoutMs: e.TROUPE_APPROVAL_TIMEOUT_SECONDS * 1000,
    workspaceRetentionMs: e.TROUPE_WORKSPACE_RETENTION_HOURS * 3600 * 1000,
    repoRoots: splitList(e.TROUPE_REPO_ROOTS),
  };
}
