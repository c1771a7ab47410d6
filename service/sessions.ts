/**
 * The session service: start, read, list, message, cancel, close and stream sessions. Every front door (HTTP today;
 * MCP, A2A, ACP and the CLI later) goes through here; none talks to Temporal or Prisma itself.
 */
import { randomUUID } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { openRepository } from '../lib/workspace';
import { ActivityFailure, ApplicationFailure, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { TroupeError } from '../core/errors';
import { isTerminal, type CreateSessionBody, type ListSessionsQuery, type Session, type SessionStatus, type TraceEvent } from '../core/schemas';
import type { SessionLimits } from '../core/session';
import type { Db } from '../lib/db/client';
import { listTraceEvents, type TraceNotifier } from '../lib/db/trace';
import type { Logger } from '../lib/logger';
import { closeSignal, rollbackUpdate, userMessageSignal } from '../workflows/messages';
import type { OrchestratedSessionInput, SessionWorkflowInput } from '../workflows';
import type { OrchestratorLimits } from '../core/orchestrator';
import { agentCatalogue, DEFAULT_AGENT_ID, getAgent } from './agents';

/** An agent with this role runs a session as an orchestrator: plan, route, dispatch tasks to the other agents. */
export const PLANNER_ROLE = 'planner';

type SessionRow = NonNullable<Awaited<ReturnType<Db['session']['findUnique']>>>;

export function toSessionView(row: SessionRow): Session {
  return {
    id: row.id,
    goal: row.goal,
    agentId: row.agentId,
    project: row.project,
    repo: row.repo,
    workspace: row.workspace ? (({ root, branch, baseSha }) => ({ root, branch, baseSha }))(row.workspace as { root: string; branch: string; baseSha: string }) : null,
    status: row.status as SessionStatus,
    statusReason: row.statusReason,
    finalAnswer: row.finalAnswer,
    metadata: (row.metadata ?? {}) as Record<string, unknown>,
    usage: { inputTokens: row.inputTokens, outputTokens: row.outputTokens },
    lastSeq: row.lastSeq,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    endedAt: row.endedAt?.toISOString() ?? null,
  };
}

export type SessionServiceDeps = {
  db: Db;
  temporal: Client;
  taskQueue: string;
  notifier: TraceNotifier;
  logger: Logger;
  /** Overrides of the workflow's limits for every session this service starts (tests use small ones). */
  limits?: Partial<SessionLimits>;
  /** Overrides of the orchestrator's limits for every orchestrated session this service starts. */
  orchestratorLimits?: Partial<OrchestratorLimits>;
  /** How long cancel waits for the workflow to acknowledge before answering. */
  cancelWaitMs?: number;
  /** TROUPE_REPO_ROOTS: a session's repository must be inside one of these (empty: anywhere). */
  repoRoots?: readonly string[];
  /** How long a guardrail `ask` waits for a person (default: the workflows' one hour). */
  approvalTimeoutMs?: number;
};

const PAGE_BATCH = 500;

function encodeCursor(row: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify([row.createdAt.toISOString(), row.id])).toString('base64url');
}
function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string];
    const date = new Date(createdAt);
    if (typeof id !== 'string' || Number.isNaN(date.getTime())) throw new Error('bad cursor');
    return { createdAt: date, id };
  } catch {
    throw new TroupeError('bad_request', 'invalid cursor', [{ path: 'cursor', message: 'not a cursor returned by this API' }]);
  }
}

/** The repository a session names: an existing git repository with a commit, inside the allowed roots (by real path). */
async function checkRepo(repo: string, roots: readonly string[]): Promise<string> {
  let found;
  try {
    found = await openRepository(repo);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new TroupeError('bad_request', `repo: ${message}`, [{ path: 'repo', message }]);
  }
  if (roots.length > 0) {
    const allowed = await Promise.all(roots.map((r) => realpath(r).catch(() => null)));
    const inside = allowed.some((r) => r !== null && (found.root === r || found.root.startsWith(r + path.sep)));
    if (!inside) {
      throw new TroupeError('bad_request', `repo: ${found.root} is outside the allowed repository roots`, [{ path: 'repo', message: 'outside TROUPE_REPO_ROOTS' }]);
    }
  }
  return found.root;
}

export function createSessionService(deps: SessionServiceDeps) {
  const { db, temporal, logger } = deps;

  async function load(id: string): Promise<SessionRow> {
    const row = await db.session.findUnique({ where: { id } });
    if (!row) throw new TroupeError('not_found', `session ${id} not found`);
    return row;
  }

  async function loadActive(id: string, action: string): Promise<SessionRow> {
    const row = await load(id);
    if (isTerminal(row.status as SessionStatus)) {
      throw new TroupeError('conflict', `cannot ${action}: session ${id} is ${row.status}`, { status: row.status });
    }
    return row;
  }

  /** Runs a Temporal call on a session's workflow; a workflow that no longer runs is a 409, not a 500. */
  async function onWorkflow<T>(id: string, action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        const row = await load(id);
        throw new TroupeError('conflict', `cannot ${action}: session ${id} is no longer running (${row.status})`, { status: row.status });
      }
      throw err;
    }
  }

  return {
    async start(body: CreateSessionBody): Promise<Session> {
      const agentId = body.agent ?? DEFAULT_AGENT_ID;
      const agent = await getAgent(db, agentId);
      if (!agent) {
        throw new TroupeError('bad_request', `unknown agent "${agentId}"`, [{ path: 'agent', message: `no agent "${agentId}"` }]);
      }
      if (body.agent !== undefined && agent.role !== PLANNER_ROLE && (body.routes || body.maxParallelTasks)) {
        throw new TroupeError('bad_request', `routes and maxParallelTasks apply to orchestrated sessions; agent "${agentId}" is not a planner`, [
          { path: body.routes ? 'routes' : 'maxParallelTasks', message: `agent "${agentId}" has role "${agent.role}", not "${PLANNER_ROLE}"` },
        ]);
      }
      const repo = body.repo !== undefined ? await checkRepo(body.repo, deps.repoRoots ?? []) : undefined;
      const id = `ses_${randomUUID().replaceAll('-', '')}`;
      const metadata = body.metadata ?? {};
      const project = body.project ?? null;
      const idle = body.idleTimeoutSeconds ? { idleTimeoutMs: body.idleTimeoutSeconds * 1000 } : {};
      let start: { type: string; args: [SessionWorkflowInput] | [OrchestratedSessionInput] };
      if (agent.role === PLANNER_ROLE) {
        // The whole catalogue is frozen now: a running session keeps the agent versions it started with.
        const agents = await agentCatalogue(db);
        for (const [i, r] of (body.routes ?? []).entries()) {
          if (!agents.some((a) => a.id === r.agent)) {
            throw new TroupeError('bad_request', `routes.${i}.agent: unknown agent "${r.agent}"`, [{ path: `routes.${i}.agent`, message: `no agent "${r.agent}"` }]);
          }
        }
        const input: OrchestratedSessionInput = {
          sessionId: id,
          goal: body.goal,
          project,
          planner: agent,
          agents,
          ...(body.routes ? { routes: body.routes } : {}),
          limits: {
            ...deps.orchestratorLimits,
            ...idle,
            ...(body.maxParallelTasks ? { maxParallelTasks: body.maxParallelTasks } : {}),
            // Tasks of a session with a repository share its worktree: one at a time, so no step sees another's half-done changes.
            ...(repo ? { maxParallelTasks: 1 } : {}),
          },
          metadata,
          ...(repo ? { repo } : {}),
          ...(deps.approvalTimeoutMs ? { approvalTimeoutMs: deps.approvalTimeoutMs } : {}),
        };
        start = { type: 'orchestratedSessionWorkflow', args: [input] };
      } else {
        const input: SessionWorkflowInput = {
          sessionId: id,
          goal: body.goal,
          agent,
          metadata,
          project,
          limits: { ...deps.limits, ...idle },
          ...(repo ? { repo } : {}),
          ...(deps.approvalTimeoutMs ? { approvalTimeoutMs: deps.approvalTimeoutMs } : {}),
        };
        start = { type: 'sessionWorkflow', args: [input] };
      }
      // The workflow starts first and its first checkpoint creates the session row if it is missing, so a crash
      // between the two steps leaves either nothing or a complete session, never a row without a workflow.
      try {
        await temporal.workflow.start(start.type, {
          workflowId: id,
          taskQueue: deps.taskQueue,
          args: start.args,
          memo: { goal: body.goal.slice(0, 200), agent: agentId },
        });
      } catch (err) {
        logger.error({ sessionId: id, err }, 'could not start session workflow');
        throw new TroupeError('unavailable', 'could not start the session: Temporal is unavailable');
      }
      await db.session.createMany({
        data: [{ id, goal: body.goal, agentId, agentSnapshot: agent, status: 'pending', metadata: metadata as object, project, repo: repo ?? null }],
        skipDuplicates: true,
      });
      logger.info({ sessionId: id, agent: agentId }, 'session started');
      return toSessionView(await load(id));
    },

    async get(id: string): Promise<Session> {
      return toSessionView(await load(id));
    },

    /** One page of the session's stored trace (seq > after, at most `limit`), without following it live. */
    async trace(id: string, after = 0, limit = PAGE_BATCH): Promise<TraceEvent[]> {
      await load(id);
      return listTraceEvents(db, id, after, limit);
    },

    async list(query: ListSessionsQuery): Promise<{ data: Session[]; nextCursor: string | null }> {
      const after = query.cursor ? decodeCursor(query.cursor) : undefined;
      const rows = await db.session.findMany({
        where: {
          ...(query.status ? { status: query.status } : {}),
          ...(after
            ? { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] }
            : {}),
        },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        take: query.limit + 1,
      });
      const page = rows.slice(0, query.limit);
      const last = page[page.length - 1];
      return { data: page.map(toSessionView), nextCursor: rows.length > query.limit && last ? encodeCursor(last) : null };
    },

    async sendMessage(id: string, content: string): Promise<Session> {
      const row = await loadActive(id, 'send a message');
      await onWorkflow(id, 'send a message', () => temporal.workflow.getHandle(id).signal(userMessageSignal, { content }));
      logger.info({ sessionId: id }, 'user message sent');
      return toSessionView(row);
    },

    async close(id: string): Promise<Session> {
      await loadActive(id, 'close the session');
      await onWorkflow(id, 'close the session', () => temporal.workflow.getHandle(id).signal(closeSignal));
      return toSessionView(await load(id));
    },

    /** Restores the session's worktree to one of its snapshots (only while the session waits for input). */
    async rollback(id: string, snapshot: string, by = 'api'): Promise<{ sha: string }> {
      await loadActive(id, 'roll back');
      try {
        return await onWorkflow(id, 'roll back', () => temporal.workflow.getHandle(id).executeUpdate(rollbackUpdate, { args: [{ snapshot, by }] }));
      } catch (err) {
        if (err instanceof WorkflowUpdateFailedError) {
          let cause: unknown = err.cause;
          while (cause instanceof ActivityFailure) cause = cause.cause;
          if (cause instanceof ApplicationFailure && (cause.type === 'conflict' || cause.type === 'bad_request')) {
            throw new TroupeError(cause.type, `cannot roll back session ${id}: ${cause.message}`, cause.type === 'bad_request' ? [{ path: 'snapshot', message: cause.message }] : undefined);
          }
        }
        throw err;
      }
    },

    /** Requests cancellation and waits briefly for the workflow to record it, so the answer usually says `cancelled`. */
    async cancel(id: string): Promise<Session> {
      await loadActive(id, 'cancel');
      const handle = temporal.workflow.getHandle(id);
      await onWorkflow(id, 'cancel', () => handle.cancel());
      logger.info({ sessionId: id }, 'session cancel requested');
      const wait = deps.cancelWaitMs ?? 5_000;
      await Promise.race([handle.result().catch(() => undefined), new Promise((r) => setTimeout(r, wait).unref())]);
      return toSessionView(await load(id));
    },

    /**
     * The session's trace from `after` on: replays what is stored, then follows live (woken by Postgres NOTIFY,
     * never by polling). Ends after the `session.ended` event, or at once when the session already ended.
     */
    async *events(id: string, after: number, signal: AbortSignal): AsyncGenerator<TraceEvent> {
      await load(id);
      let last = after;
      let dirty = true;
      let wake: (() => void) | undefined;
      const unsubscribe = deps.notifier.subscribe(id, () => {
        dirty = true;
        wake?.();
      });
      const onAbort = () => wake?.();
      signal.addEventListener('abort', onAbort);
      try {
        while (!signal.aborted) {
          if (dirty) {
            dirty = false;
            const batch = await listTraceEvents(db, id, last, PAGE_BATCH);
            for (const event of batch) {
              yield event;
              last = event.seq;
              if (event.type === 'session.ended') return;
            }
            if (batch.length === PAGE_BATCH) {
              dirty = true;
              continue;
            }
            if (batch.length === 0) {
              const row = await load(id);
              if (isTerminal(row.status as SessionStatus) && row.lastSeq <= last) return;
            }
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
            if (dirty || signal.aborted) resolve();
          });
          wake = undefined;
        }
      } finally {
        unsubscribe();
        signal.removeEventListener('abort', onAbort);
      }
    },
  };
}

export type SessionService = ReturnType<typeof createSessionService>;
