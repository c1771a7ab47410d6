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
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
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
  logLevel: z.infer<typeof Env>['LOG_LEVEL'];
};

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid environment: ${problems}`);
  }
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    temporalAddress: e.TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    temporalNamespace: e.TEMPORAL_NAMESPACE,
    taskQueue: e.TEMPORAL_TASK_QUEUE,
    port: e.PORT,
    apiTokens: (e.TROUPE_API_TOKENS ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t.length > 0),
    anthropic: { apiKey: e.ANTHROPIC_API_KEY, baseURL: e.ANTHROPIC_BASE_URL, defaultModel: e.TROUPE_ANTHROPIC_MODEL },
    scenarioDirs: (e.TROUPE_SCENARIO_DIRS ?? '').split(':').filter((d) => d.length > 0),
    logLevel: e.LOG_LEVEL,
  };
}
