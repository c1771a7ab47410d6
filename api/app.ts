import express, { type Request, type Response } from 'express';
import { TroupeError } from '../core/errors';
import { CreateSessionBody, EventsQuery, ListSessionsQuery, RollbackBody, SendMessageBody } from '../core/schemas';
import type { Db } from '../lib/db/client';
import type { Logger } from '../lib/logger';
import type { SessionService } from '../service/sessions';
import type { AgentService } from '../service/agents';
import { agentsRouter } from './agents';
import { blackboardRouter } from './blackboard';
import { tasksRouter } from './tasks';
import { approvalsRouter } from './approvals';
import type { ApprovalService } from '../service/approvals';
import { createTaskService } from '../service/tasks';
import { requireToken } from './auth';
import { errorMiddleware, notFoundRoute, parseOr400 } from './errors';
import { openApiDocument } from './openapi';
import { mcpRouter } from '../gateway/mcp';
import { a2aRouter } from '../gateway/a2a';

export type Readiness = () => Promise<Record<string, { ok: boolean; error?: string }>>;

const SSE_KEEPALIVE_MS = 15_000;

/** Builds the Express app (no listening here, so tests can mount it on any port). */
export function buildApp(deps: { sessions: SessionService; agents: AgentService; approvals: ApprovalService; db: Db; apiTokens: readonly string[]; logger: Logger; readiness: Readiness }) {
  const { sessions, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      logger.info(
        { method: req.method, path: req.originalUrl.split('?')[0], status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6, ...(req.params.id ? { sessionId: req.params.id } : {}) },
        'request',
      );
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = await deps.readiness();
    const ok = Object.values(checks).every((c) => c.ok);
    res.status(ok ? 200 : 503).json({ ok, checks });
  });
  app.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });

  const v1 = express.Router();
  v1.use(requireToken(deps.apiTokens));
  v1.use(express.json({ limit: '1mb' }));
  v1.use(agentsRouter(deps.agents));
  v1.use(blackboardRouter({ db: deps.db }));
  v1.use(tasksRouter(createTaskService(deps.db)));
  v1.use(approvalsRouter(deps.approvals));

  const sessionId = (req: Request) => String(req.params.id);

  v1.post('/sessions', async (req, res) => {
    const body = parseOr400(CreateSessionBody, req.body, 'body');
    res.status(201).json(await sessions.start(body));
  });
  v1.get('/sessions', async (req, res) => {
    res.json(await sessions.list(parseOr400(ListSessionsQuery, req.query, 'query')));
  });
  v1.get('/sessions/:id', async (req, res) => {
    res.json(await sessions.get(sessionId(req)));
  });
  v1.post('/sessions/:id/messages', async (req, res) => {
    const body = parseOr400(SendMessageBody, req.body, 'body');
    res.status(202).json(await sessions.sendMessage(sessionId(req), body.content));
  });
  v1.post('/sessions/:id/cancel', async (req, res) => {
    res.status(202).json(await sessions.cancel(sessionId(req)));
  });
  v1.post('/sessions/:id/close', async (req, res) => {
    res.status(202).json(await sessions.close(sessionId(req)));
  });
  v1.post('/sessions/:id/rollback', async (req, res) => {
    const body = parseOr400(RollbackBody, req.body, 'body');
    res.json(await sessions.rollback(sessionId(req), body.snapshot));
  });
  v1.get('/sessions/:id/events', async (req, res) => {
    await streamEvents(req, res);
  });

  async function streamEvents(req: Request, res: Response) {
    const id = sessionId(req);
    const query = parseOr400(EventsQuery, req.query, 'query');
    const lastEventId = req.get('last-event-id');
    let after = query.after ?? 0;
    if (lastEventId !== undefined) {
      if (!/^\d+$/.test(lastEventId.trim())) {
        throw new TroupeError('bad_request', 'Last-Event-ID must be a non-negative integer', [{ path: 'Last-Event-ID', message: 'not an integer' }]);
      }
      after = Number(lastEventId.trim());
    }
    await sessions.get(id); // 404 before any stream headers
    res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), SSE_KEEPALIVE_MS);
    try {
      for await (const event of sessions.events(id, after, abort.signal)) {
        const ok = res.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
        if (!ok) await new Promise((resolve) => res.once('drain', resolve));
      }
    } catch (err) {
      logger.error({ sessionId: id, err }, 'event stream failed');
      res.write(`event: error\ndata: ${JSON.stringify({ error: { code: 'internal', message: 'event stream failed' } })}\n\n`);
    } finally {
      clearInterval(keepalive);
      res.end();
    }
  }

  // MCP (Streamable HTTP) at /mcp: its own bearer check and body limit, JSON-RPC error shapes.
  app.use(mcpRouter({ sessions, approvals: deps.approvals, agents: deps.agents, apiTokens: deps.apiTokens, logger }));
  // A2A: the agent card at /.well-known/agent-card.json (public), JSON-RPC at /a2a (bearer token, JSON-RPC error shapes).
  app.use(a2aRouter({ sessions, apiTokens: deps.apiTokens, logger }));
  app.use('/v1', v1);
  app.use(notFoundRoute);
  app.use(errorMiddleware(logger));
  return app;
}
