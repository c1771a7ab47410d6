/**
 * A real Troupe stack for one test file: the HTTP API on a random port, the service layer, an in-process worker on
 * the file's own task queue, all against the real Temporal dev server and Postgres from global-setup.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { inject } from 'vitest';
import { createApprovalService } from '../../service/approvals';
import { buildApp } from '../../api/app';
import { createReadiness } from '../../api/readiness';
import type { AgentDefinition, Session, TraceEvent } from '../../core/schemas';
import type { SessionLimits } from '../../core/session';
import type { OrchestratorLimits } from '../../core/orchestrator';
import { loadConfig, type Config } from '../../lib/config';
import { createPrisma } from '../../lib/db/client';
import { TraceNotifier } from '../../lib/db/trace';
import { createLogger } from '../../lib/logger';
import { createAgentService, ensureBuiltinAgents, putAgent } from '../../service/agents';
import { createSessionService } from '../../service/sessions';
import { createTroupeWorker, installTemporalLogging } from '../../worker/build';
import { readSse } from '../../lib/sse-client';

export const TEST_SCENARIOS = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../scenarios');

export type Stack = Awaited<ReturnType<typeof startStack>>;

export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({ DATABASE_URL: inject('databaseUrl'), TEMPORAL_ADDRESS: inject('temporalAddress'), LOG_LEVEL: 'warn' }),
    scenarioDirs: [TEST_SCENARIOS],
    workspacesDir: path.join(os.tmpdir(), `troupe-test-workspaces-${process.pid}`),
    ...overrides,
  };
}

export async function startStack(opts: { limits?: Partial<SessionLimits>; orchestratorLimits?: Partial<OrchestratorLimits>; approvalTimeoutMs?: number; worker?: boolean; config?: Partial<Config> } = {}) {
  const taskQueue = `test-${randomUUID()}`;
  const config = testConfig({ taskQueue, ...opts.config });
  const logger = createLogger({ name: 'test', level: process.env.TEST_LOG_LEVEL ?? 'warn' });
  installTemporalLogging(logger);
  const db = createPrisma(config.databaseUrl);
  await ensureBuiltinAgents(db);
  const connection = await Connection.connect({ address: config.temporalAddress });
  const temporal = new Client({ connection, namespace: config.temporalNamespace });
  const notifier = new TraceNotifier(config.databaseUrl);
  await notifier.start();
  const sessions = createSessionService({
    db,
    temporal,
    taskQueue,
    notifier,
    logger,
    limits: opts.limits,
    orchestratorLimits: opts.orchestratorLimits,
    ...(opts.approvalTimeoutMs ? { approvalTimeoutMs: opts.approvalTimeoutMs } : {}),
  });
  const token = randomBytes(16).toString('hex');
  const app = buildApp({
    sessions,
    agents: createAgentService(db),
    approvals: createApprovalService({ db, temporal, logger }),
    db,
    apiTokens: [token],
    logger,
    readiness: createReadiness(db, connection),
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  let worker: Worker | undefined;
  let workerRun: Promise<void> | undefined;
  let nativeConnection: NativeConnection | undefined;
  async function startWorker() {
    nativeConnection ??= await NativeConnection.connect({ address: config.temporalAddress });
    worker = await createTroupeWorker({ config, db, logger, connection: nativeConnection, taskQueue });
    workerRun = worker.run();
  }
  if (opts.worker !== false) await startWorker();

  const auth = { authorization: `Bearer ${token}` };
  async function api(method: string, route: string, body?: unknown, headers: Record<string, string> = auth) {
    const res = await fetch(baseUrl + route, {
      method,
      headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return { status: res.status, body: json };
  }

  return {
    baseUrl,
    token,
    taskQueue,
    config,
    db,
    temporal,
    sessions,
    api,
    startWorker,
    /** Registers an agent that runs on a scripted scenario from test/scenarios. */
    async agent(id: string, scenario: string, extra: Partial<AgentDefinition> = {}) {
      await putAgent(db, {
        id,
        name: id,
        role: 'assistant',
        model: `scripted:${scenario}`,
        instructions: `You are the ${id} test agent.`,
        tools: ['blackboard_write', 'blackboard_read'],
        permissions: [],
        memoryScope: 'session',
        ...extra,
      });
      return id;
    },
    /** Reads the SSE stream until `until` says stop (or the stream ends). */
    async events(sessionId: string, opts: { after?: number; lastEventId?: string; until?: (e: TraceEvent) => boolean; timeoutMs?: number } = {}) {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(new Error('SSE read timed out')), opts.timeoutMs ?? 60_000);
      const seen: { id: string | undefined; event: string | undefined; data: TraceEvent }[] = [];
      try {
        const qs = opts.after !== undefined ? `?after=${opts.after}` : '';
        const headers: Record<string, string> = { ...auth, ...(opts.lastEventId ? { 'last-event-id': opts.lastEventId } : {}) };
        for await (const msg of readSse(`${baseUrl}/v1/sessions/${sessionId}/events${qs}`, { headers, signal: abort.signal })) {
          const data = JSON.parse(msg.data) as TraceEvent;
          seen.push({ id: msg.id, event: msg.event, data });
          if (opts.until?.(data)) break;
        }
      } finally {
        clearTimeout(timer);
        abort.abort();
      }
      return seen;
    },
    async waitForStatus(sessionId: string, predicate: (s: Session) => boolean, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = await sessions.get(sessionId).catch((err: unknown) => {
          if ((err as { code?: string }).code === 'not_found') return undefined; // not written yet
          throw err;
        });
        if (s && predicate(s)) return s;
        if (Date.now() > deadline) throw new Error(`session ${sessionId} stuck at ${s ? `${s.status}/${s.statusReason}` : 'not found'}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async traceRows(sessionId: string) {
      return db.traceEvent.findMany({ where: { sessionId }, orderBy: { seq: 'asc' } });
    },
    async stopWorker() {
      worker?.shutdown();
      await workerRun;
      worker = undefined;
    },
    async stop() {
      if (worker) {
        worker.shutdown();
        await workerRun;
      }
      await nativeConnection?.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await notifier.close();
      await connection.close();
      await db.$disconnect();
    },
  };
}
