/**
 * The blackboard (context store): facts, artifacts and decisions agents and apps share, in three scopes: `session`
 * (one session), `project` (every session of the session's project) and `global` (everything). Who sees what follows
 * the reader's memoryScope (core/blackboard.ts). Every write is idempotent, records a `blackboard.written` trace event
 * in the same transaction and keeps its provenance (actor, session, task, trace seq). An entry with a TTL is invisible
 * the moment it expires (the read filters on the database clock) and purged later by `purgeExpired`.
 */
import { TroupeError } from '../core/errors';
import { readableScopes, scopeKeyOf } from '../core/blackboard';
import type { BlackboardEntry, BlackboardKind, BlackboardScope, MemoryScope } from '../core/schemas';
import { Prisma, type BlackboardEntry as BlackboardRow } from '../generated/prisma/client';
import type { Db } from '../lib/db/client';
import { appendTraceEvents } from '../lib/db/trace';
import type { Logger } from '../lib/logger';

/** The most entries one read returns: the most recent ones (still listed oldest first). */
export const MAX_READ_ENTRIES = 500;
/** How long an expired entry stays in the table before `purgeExpired` deletes it (it is invisible meanwhile). */
export const DEFAULT_PURGE_GRACE_MS = 10 * 60_000;
export const PURGE_INTERVAL_MS = 5 * 60_000;
export const BLACKBOARD_WRITTEN = 'blackboard.written';

export type BlackboardSessionRef = { id: string; project: string | null };

export type WriteEntryArgs = {
  session: BlackboardSessionRef;
  key: string;
  value: unknown;
  kind: BlackboardKind;
  scope: BlackboardScope;
  ttlSeconds?: number;
  /** `agent:<id>`, `app` or `user`. */
  actor: string;
  taskId: string | null;
  /** Unique per logical write and stable across retries; the entry id is `<sessionId>:<idempotencyKey>`. */
  idempotencyKey: string;
  /** Temporal run id recorded on the trace event (`api` for writes through the HTTP API). */
  runId: string;
};

export type ReadEntriesArgs = {
  session: BlackboardSessionRef;
  /** The reader's memoryScope: `none` sees nothing, `session` its session, `project` also its project, `global` all. */
  memoryScope: MemoryScope;
  key?: string;
  kind?: BlackboardKind;
  /** Only this scope (still limited to what memoryScope may read). */
  scope?: BlackboardScope;
  /** Every value written under each key, not only the latest. */
  includeHistory?: boolean;
};

export function toEntryView(row: BlackboardRow): BlackboardEntry {
  return {
    id: row.id,
    key: row.key,
    kind: row.kind as BlackboardKind,
    value: row.value,
    scope: row.scope as BlackboardScope,
    provenance: { actor: row.writtenBy, sessionId: row.sessionId, taskId: row.taskId, traceSeq: row.traceSeq },
    expiresAt: row.expiresAt?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
  };
}

/**
 * Writes one entry and its `blackboard.written` trace event (key `bb:<idempotencyKey>`) in one transaction, under the
 * session's row lock. A retry with the same idempotency key writes nothing and returns the entry the first attempt
 * wrote. Throws not_found when the session does not exist.
 */
export async function writeEntry(db: Db, args: WriteEntryArgs): Promise<BlackboardEntry> {
  const { session } = args;
  const id = `${session.id}:${args.idempotencyKey}`;
  const traceKey = `bb:${args.idempotencyKey}`;
  return db.$transaction(
    async (tx) => {
      // The session lock (the same one the trace store takes) orders writes within a session, so "latest" is
      // well-defined; the timestamp is read after the lock is held, from the database clock the reads filter on.
      const locked = await tx.$queryRaw<{ id: string }[]>`SELECT "id" FROM "sessions" WHERE "id" = ${session.id} FOR UPDATE`;
      if (locked.length === 0) throw new TroupeError('not_found', `session ${session.id} not found`);
      const existing = await tx.blackboardEntry.findUnique({ where: { id } });
      if (existing) return toEntryView(existing);

      const [clock] = await tx.$queryRaw<{ now: Date }[]>`SELECT clock_timestamp() AS "now"`;
      const now = new Date(clock?.now ?? Date.now());
      const expiresAt = args.ttlSeconds !== undefined ? new Date(now.getTime() + args.ttlSeconds * 1000) : null;

      const { inserted, lastSeq } = await appendTraceEvents(tx, session.id, [
        {
          key: traceKey,
          runId: args.runId,
          ...(args.taskId !== null ? { taskId: args.taskId } : {}),
          actor: args.actor,
          type: BLACKBOARD_WRITTEN,
          payload: { entryId: id, key: args.key, kind: args.kind, scope: args.scope, value: args.value, expiresAt: expiresAt?.toISOString() ?? null },
          timestamp: now.toISOString(),
        },
      ]);
      // The event can only pre-exist if the entry was purged after it expired and the write is retried later still.
      const traceSeq =
        inserted === 1
          ? lastSeq
          : ((await tx.traceEvent.findUnique({ where: { sessionId_idempotencyKey: { sessionId: session.id, idempotencyKey: traceKey } }, select: { seq: true } }))
              ?.seq ?? null);

      await tx.blackboardEntry.createMany({
        data: [
          {
            id,
            sessionId: session.id,
            kind: args.kind,
            key: args.key,
            value: args.value === null ? Prisma.JsonNull : (args.value as Prisma.InputJsonValue),
            writtenBy: args.actor,
            idempotencyKey: args.idempotencyKey,
            createdAt: now,
            scope: args.scope,
            scopeKey: scopeKeyOf(args.scope, session),
            taskId: args.taskId,
            traceSeq,
            expiresAt,
          },
        ],
        skipDuplicates: true,
      });
      return toEntryView(await tx.blackboardEntry.findUniqueOrThrow({ where: { id } }));
    },
    { maxWait: 10_000, timeout: 30_000 },
  );
}

type RawEntry = {
  id: string;
  sessionId: string;
  kind: string;
  key: string;
  value: unknown;
  writtenBy: string;
  idempotencyKey: string;
  createdAt: Date | string;
  scope: string;
  scopeKey: string;
  taskId: string | null;
  traceSeq: number | null;
  expiresAt: Date | string | null;
};

/**
 * Entries visible to a reader with `memoryScope` in this session: its session's entries, its project's and the global
 * ones, as far as memoryScope allows. Per (scope, key) only the latest value unless `includeHistory`. Expired entries
 * are never returned (`expires_at > now()` is part of the query). Oldest first; at most MAX_READ_ENTRIES (500), the
 * most recent ones when there are more.
 */
export async function readEntries(db: Db, args: ReadEntriesArgs): Promise<BlackboardEntry[]> {
  const scopes = readableScopes(args.memoryScope).filter((s) => args.scope === undefined || s === args.scope);
  if (scopes.length === 0) return [];
  const placement = Prisma.join(
    scopes.map((s) => Prisma.sql`("scope" = ${s} AND "scope_key" = ${scopeKeyOf(s, args.session)})`),
    ' OR ',
  );
  const where = Prisma.join(
    [
      Prisma.sql`(${placement})`,
      Prisma.sql`("expires_at" IS NULL OR "expires_at" > now())`,
      ...(args.key !== undefined ? [Prisma.sql`"key" = ${args.key}`] : []),
      ...(args.kind !== undefined ? [Prisma.sql`"kind" = ${args.kind}`] : []),
    ],
    ' AND ',
  );
  const columns = Prisma.sql`"id", "session_id" AS "sessionId", "kind", "key", "value", "written_by" AS "writtenBy",
    "idempotency_key" AS "idempotencyKey", "created_at" AS "createdAt", "scope", "scope_key" AS "scopeKey",
    "task_id" AS "taskId", "trace_seq" AS "traceSeq", "expires_at" AS "expiresAt"`;
  // Newest first inside (trace seq breaks ties within a session), the newest MAX_READ_ENTRIES kept, then re-sorted.
  const visible = args.includeHistory
    ? Prisma.sql`SELECT ${columns} FROM "blackboard_entries" WHERE ${where}`
    : Prisma.sql`SELECT DISTINCT ON ("scope", "key") ${columns} FROM "blackboard_entries" WHERE ${where}
        ORDER BY "scope", "key", "created_at" DESC, "trace_seq" DESC NULLS LAST, "id" DESC`;
  const rows = await db.$queryRaw<RawEntry[]>`
    SELECT * FROM (
      SELECT * FROM (${visible}) AS v
      ORDER BY "createdAt" DESC, "traceSeq" DESC NULLS LAST, "id" DESC
      LIMIT ${MAX_READ_ENTRIES}
    ) AS newest
    ORDER BY "createdAt" ASC, "traceSeq" ASC NULLS FIRST, "id" ASC`;
  return rows.map((r) =>
    toEntryView({
      ...r,
      value: r.value as BlackboardRow['value'],
      createdAt: new Date(r.createdAt),
      expiresAt: r.expiresAt === null ? null : new Date(r.expiresAt),
      traceSeq: r.traceSeq === null ? null : Number(r.traceSeq),
    }),
  );
}

/** Deletes entries that expired more than `olderThanMs` ago (default DEFAULT_PURGE_GRACE_MS). Returns how many. */
export async function purgeExpired(db: Db, opts: { olderThanMs?: number } = {}): Promise<number> {
  const grace = opts.olderThanMs ?? DEFAULT_PURGE_GRACE_MS;
  if (!Number.isFinite(grace) || grace < 0) throw new Error(`olderThanMs must be a non-negative number, got ${grace}`);
  return db.$executeRaw`
    DELETE FROM "blackboard_entries"
    WHERE "expires_at" IS NOT NULL AND "expires_at" < now() - make_interval(secs => ${grace / 1000}::double precision)`;
}

/**
 * Runs `purgeExpired` every `intervalMs` (default 5 minutes) on an unref'd timer, so it never keeps the process alive.
 * Errors are logged, never thrown. Returns a function that stops it. Every worker may run one: deletes are idempotent.
 */
export function startBlackboardPurge(db: Db, logger: Logger, opts: { intervalMs?: number; olderThanMs?: number } = {}): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    purgeExpired(db, { olderThanMs: opts.olderThanMs })
      .then((count) => {
        if (count > 0) logger.info({ count }, 'purged expired blackboard entries');
      })
      .catch((err: unknown) => logger.warn({ err }, 'purging expired blackboard entries failed'))
      .finally(() => {
        running = false;
      });
  }, opts.intervalMs ?? PURGE_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
