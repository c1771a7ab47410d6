/** `npm run api`: one API process. Run as many as you like behind a load balancer. */
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../lib/config';
import { createPrisma } from '../lib/db/client';
import { ensureDatabase, migrate } from '../lib/db/migrate';
import { configureTraceRedaction, TraceNotifier } from '../lib/db/trace';
import { createLogger } from '../lib/logger';
import { createAgentService, ensureBuiltinAgents } from '../service/agents';
import { createSessionService } from '../service/sessions';
import { createApprovalService } from '../service/approvals';
import { buildApp } from './app';
import { createReadiness } from './readiness';

const config = loadConfig();
const logger = createLogger({ name: 'api', level: config.logLevel });
configureTraceRedaction(config.secrets);

async function main() {
  if (config.apiTokens.length === 0) {
    throw new Error('TROUPE_API_TOKENS is not set: the API has no open mode (npm start generates a token for local use)');
  }
  await ensureDatabase(config.databaseUrl);
  await migrate(config.databaseUrl, { log: (msg) => logger.info(msg) });
  const db = createPrisma(config.databaseUrl);
  // Built-in agents, then the team's agent files (TROUPE_AGENTS_DIR) over them, in one idempotent apply.
  const agents = await ensureBuiltinAgents(db, { teamDir: config.agentsDir });
  logger.info({ agentsDir: config.agentsDir, agents: agents.map((r) => `${r.agent.id}@${r.agent.version} ${r.change}`) }, 'agents applied');
  const connection = await Connection.connect({ address: config.temporalAddress });
  const temporal = new Client({ connection, namespace: config.temporalNamespace });
  const notifier = new TraceNotifier(config.databaseUrl, { onError: (err) => logger.warn({ err }, 'trace listener error') });
  await notifier.start();
  const sessions = createSessionService({
    db,
    temporal,
    taskQueue: config.taskQueue,
    notifier,
    logger,
    repoRoots: config.repoRoots,
    approvalTimeoutMs: config.approvalTimeoutMs,
  });
  const app = buildApp({
    sessions,
    agents: createAgentService(db),
    approvals: createApprovalService({ db, temporal, logger }),
    db,
    apiTokens: config.apiTokens,
    logger,
    readiness: createReadiness(db, connection),
  });
  const server = app.listen(config.port, () => {
    logger.info({ url: `http://127.0.0.1:${config.port}`, taskQueue: config.taskQueue }, 'api listening');
  });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down api');
    server.close();
    server.closeAllConnections();
    void Promise.allSettled([notifier.close(), connection.close(), db.$disconnect()]).then(() => process.exit(0));
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err: unknown) => {
  logger.fatal({ err }, 'api failed to start');
  process.exit(1);
});
