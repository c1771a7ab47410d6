import { fileURLToPath } from 'node:url';
import { Context } from '@temporalio/activity';
import { DefaultLogger, type NativeConnection, Runtime, Worker, bundleWorkflowCode, type LogLevel, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../activities';
import { createAnthropicProvider } from '../activities/models/anthropic';
import { createModelResolver } from '../activities/models/registry';
import { createScriptedProvider } from '../activities/models/scripted';
import { createToolRegistry } from '../activities/tools';
import { createMcpClientManager } from '../activities/tools/mcp-client';
import { loadPolicy } from '../lib/policy-files';
import { resolveSandbox, runCommand } from '../lib/sandbox';
import type { Config } from '../lib/config';
import type { Db } from '../lib/db/client';
import { configureTraceRedaction } from '../lib/db/trace';
import type { Logger } from '../lib/logger';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
export const OFFLINE_MODEL = 'scripted:offline-assistant';
/** Offline stand-ins by role, where the assistant's scenario would not do (a planner must return a plan). */
export const OFFLINE_BY_ROLE: Record<string, string> = { planner: 'scripted:offline-planner' };

/** Routes the Temporal SDK's own logs (including workflow `log.*`) into our logger, with `sessionId` set. */
let runtimeInstalled = false;
export function installTemporalLogging(logger: Logger): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const level = ({ trace: 'TRACE', debug: 'DEBUG', info: 'INFO', warn: 'WARN' } as Record<string, LogLevel>)[logger.level] ?? 'ERROR';
  Runtime.install({
    logger: new DefaultLogger(level, ({ level: lvl, message, meta }) => {
      const m = (meta ?? {}) as Record<string, unknown>;
      const fields = { ...m, ...(typeof m.workflowId === 'string' ? { sessionId: m.workflowId } : {}), source: 'temporal' };
      const method = lvl === 'ERROR' ? 'error' : lvl === 'WARN' ? 'warn' : lvl === 'DEBUG' || lvl === 'TRACE' ? 'debug' : 'info';
      logger[method](fields, message);
    }),
  });
}

/** The model `default` resolves to: Claude with a key, else the offline scenario. */
export function defaultModelFor(config: Config): string {
  return config.anthropic.apiKey ? `anthropic:${config.anthropic.defaultModel}` : OFFLINE_MODEL;
}

let bundlePromise: Promise<WorkflowBundleWithSourceMap> | undefined;
/** Bundles the workflow code once per process (several workers in one test process share it). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundlePromise ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
  return bundlePromise;
}

export async function createTroupeWorker(opts: {
  config: Config;
  db: Db;
  logger: Logger;
  connection: NativeConnection;
  taskQueue?: string;
}): Promise<Worker> {
  const { config, logger } = opts;
  configureTraceRedaction(config.secrets);
  const anthropic = config.anthropic.apiKey
    ? createAnthropicProvider({ apiKey: config.anthropic.apiKey, baseURL: config.anthropic.baseURL })
    : undefined;
  const scripted = createScriptedProvider({ scenarioDirs: config.scenarioDirs, attempt: () => Context.current().info.attempt });
  const resolveModel = createModelResolver({
    providers: { anthropic, scripted },
    defaultModel: defaultModelFor(config),
    ...(anthropic ? {} : { defaultByRole: OFFLINE_BY_ROLE }),
  });
  const sandbox = await resolveSandbox({ mode: config.sandbox }, logger);
  // Connections to the agents' MCP servers live as long as the worker runs (closed when run() returns).
  const mcp = createMcpClientManager({ logger });
  const activities = createActivities({
    db: opts.db,
    resolveModel,
    tools: createToolRegistry(),
    mcp,
    logger,
    policy: loadPolicy(config.policyFile),
    workspacesDir: config.workspacesDir,
    secrets: config.secrets,
    // Commands never get the network: the sandbox shares none (policy cannot widen it yet).
    runCommand: (o) => runCommand({ ...o, sandbox, network: false }),
  });
  const worker = await Worker.create({
    connection: opts.connection,
    namespace: config.temporalNamespace,
    taskQueue: opts.taskQueue ?? config.taskQueue,
    workflowBundle: await workflowBundle(),
    activities,
    shutdownGraceTime: '10 seconds',
  });
  const run = worker.run.bind(worker);
  worker.run = async () => {
    try {
      await run();
    } finally {
      await mcp.close();
    }
  };
  return worker;
}
