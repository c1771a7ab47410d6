/** `npm run worker`: one worker process. Run as many as you like against one Temporal cluster and one Postgres. */
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../lib/config';
import { createPrisma } from '../lib/db/client';
import { ensureDatabase, migrate } from '../lib/db/migrate';
import { createLogger } from '../lib/logger';
import { startBlackboardPurge } from '../service/blackboard';
import { startWorkspaceSweep } from '../service/workspaces';
import { createTroupeWorker, defaultModelFor, installTemporalLogging, OFFLINE_MODEL } from './build';

const config = loadConfig();
const logger = createLogger({ name: 'worker', level: config.logLevel });
installTemporalLogging(logger);

async function main() {
  await ensureDatabase(config.databaseUrl);
  await migrate(config.databaseUrl, { log: (msg) => logger.info(msg) });
  const db = createPrisma(config.databaseUrl);
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const worker = await createTroupeWorker({ config, db, logger, connection });
  // Expired blackboard entries are already invisible; this deletes them every 5 minutes (unref'd, errors logged).
  const stopPurge = startBlackboardPurge(db, logger);
  // Worktrees of sessions that ended more than TROUPE_WORKSPACE_RETENTION_HOURS ago are removed every 10 minutes
  // (branches and snapshots kept; unref'd, errors logged; safe with several workers).
  const stopWorkspaceSweep = startWorkspaceSweep(db, logger, { retentionMs: config.workspaceRetentionMs });
  const model = defaultModelFor(config);
  if (model === OFFLINE_MODEL) {
    logger.warn({ defaultModel: model }, 'ANTHROPIC_API_KEY is not set: the default agent runs on the built-in offline scripted scenario');
  } else {
    logger.info({ defaultModel: model }, 'the default agent uses Claude');
  }
  // Ctrl-C in a terminal and a supervisor's SIGTERM often both arrive: shut down once, ignore the rest.
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down worker');
      worker.shutdown();
    });
  }
  logger.info({ taskQueue: config.taskQueue, temporal: config.temporalAddress, namespace: config.temporalNamespace }, 'worker started');
  await worker.run();
  stopPurge();
  stopWorkspaceSweep();
  await connection.close();
  await db.$disconnect();
  logger.info('worker stopped');
}

main().catch((err: unknown) => {
  logger.fatal({ err }, 'worker failed');
  process.exit(1);
});
