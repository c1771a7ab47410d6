import { randomUUID } from 'node:crypto';
import express, { type Request, type Router } from 'express';
import { z } from 'zod';
import { TroupeError } from '../core/errors';
import { BlackboardKind, BlackboardScope, isTerminal, WriteBlackboardBody, type BlackboardEntry, type SessionStatus } from '../core/schemas';
import type { Db } from '../lib/db/client';
import { readEntries, writeEntry } from '../service/blackboard';
import { parseOr400 } from './errors';

/** Query of `GET /v1/sessions/:id/blackboard`. */
export const BlackboardQuery = z
  .object({
    key: z.string().trim().min(1).max(200).optional(),
    kind: BlackboardKind.optional(),
    scope: BlackboardScope.optional(),
  })
  .strict();

/** `Idempotency-Key` header: what a client may send to make a POST safe to retry. */
export const IDEMPOTENCY_KEY = /^[A-Za-z0-9_.:-]{1,200}$/;

/** JSON with object keys sorted, so two values compare equal whatever order Postgres' jsonb keeps their keys in. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * The blackboard seen from an application: `GET` lists what is visible in a session (its own entries, its project's
 * and the global ones: the view of a `global`-memory agent), `POST` writes an entry as actor `app`.
 */
export function blackboardRouter(deps: { db: Db }): Router {
  const { db } = deps;
  const router = express.Router();

  async function loadSession(id: string) {
    const row = await db.session.findUnique({ where: { id }, select: { id: true, project: true, status: true } });
    if (!row) throw new TroupeError('not_found', `session ${id} not found`);
    return row;
  }

  function idempotencyKeyOf(req: Request): string {
    const header = req.get('idempotency-key');
    if (header === undefined) return `api:${randomUUID()}`;
    if (!IDEMPOTENCY_KEY.test(header)) {
      throw new TroupeError('bad_request', 'invalid Idempotency-Key header: 1-200 characters of A-Z a-z 0-9 _ . : -', [
        { path: 'Idempotency-Key', message: '1-200 characters of A-Z a-z 0-9 _ . : -' },
      ]);
    }
    // Prefixed, so a client key can never collide with an agent's tool-call key in the same session.
    return `api:${header}`;
  }

  router.get('/sessions/:id/blackboard', async (req, res) => {
    const query = parseOr400(BlackboardQuery, req.query, 'query');
    const session = await loadSession(String(req.params.id));
    const data: BlackboardEntry[] = await readEntries(db, {
      session,
      memoryScope: 'global',
      ...(query.key !== undefined ? { key: query.key } : {}),
      ...(query.kind !== undefined ? { kind: query.kind } : {}),
      ...(query.scope !== undefined ? { scope: query.scope } : {}),
    });
    res.json({ data });
  });

  router.post('/sessions/:id/blackboard', async (req, res) => {
    const body = parseOr400(WriteBlackboardBody, req.body, 'body');
    const idempotencyKey = idempotencyKeyOf(req);
    const session = await loadSession(String(req.params.id));
    if (isTerminal(session.status as SessionStatus)) {
      throw new TroupeError('conflict', `cannot write to the blackboard: session ${session.id} is ${session.status}`, { status: session.status });
    }
    const entry = await writeEntry(db, {
      session,
      key: body.key,
      value: body.value,
      kind: body.kind,
      scope: body.scope,
      ...(body.ttlSeconds !== undefined ? { ttlSeconds: body.ttlSeconds } : {}),
      actor: 'app',
      taskId: null,
      idempotencyKey,
      runId: 'api',
    });
    // A replay must be the same request: the same key reused for a different write is a client bug, not a retry.
    if (entry.key !== body.key || entry.kind !== body.kind || entry.scope !== body.scope || canonical(entry.value) !== canonical(body.value)) {
      throw new TroupeError('conflict', 'Idempotency-Key was already used for a different blackboard write', {
        entryId: entry.id,
      });
    }
    res.status(201).json(entry);
  });

  return router;
}
