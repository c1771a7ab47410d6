import pg from 'pg';
import { redactSecrets } from '../../core/redact';
import type { TraceEvent } from '../../core/schemas';
import type { Prisma, PrismaClient } from '../../generated/prisma/client';

/**
 * The trace store. Events are numbered per session (seq 1, 2, 3, ... with no gaps) under a row lock on the session,
 * written idempotently (a retried activity re-sends the same keys and nothing is duplicated), and announced with
 * NOTIFY so SSE streams wake up on commit without polling.
 */

/** LISTEN/NOTIFY channel; payload is JSON `{ sessionId, seq }` where seq is the session's last seq after the commit. */
export const TRACE_CHANNEL = 'troupe_trace';

export type NewTraceEvent = {
  /** Idempotency key, unique per session (chosen by the workflow or activity). */
  key: string;
  runId: string;
  taskId?: string;
  actor: string;
  type: string;
  payload: unknown;
  /** ISO-8601 timestamp. */
  timestamp: string;
};

type DbOrTx = PrismaClient | Prisma.TransactionClient;

/** This process's known secrets (API keys, API tokens, TROUPE_SECRETS), redacted verbatim from every trace payload. */
let traceSecrets: readonly string[] = [];

/**
 * Sets the secrets every trace payload is scrubbed of, on top of the credential patterns of core/redact.ts. Processes
 * that load lib/config.ts call it once at start-up with `config.secrets`; calling it again replaces the list.
 */
export function configureTraceRedaction(secrets: readonly string[]): void {
  traceSecrets = Object.freeze([...secrets]);
}

function isRootClient(db: DbOrTx): db is PrismaClient {
  return typeof (db as Partial<PrismaClient>).$transaction === 'function';
}

async function appendInTx(
  tx: Prisma.TransactionClient,
  sessionId: string,
  events: NewTraceEvent[],
): Promise<{ inserted: number; lastSeq: number }> {
  const locked = await tx.$queryRaw<{ last_seq: number }[]>`
    SELECT "last_seq" FROM "sessions" WHERE "id" = ${sessionId} FOR UPDATE`;
  const row = locked[0];
  if (!row) throw new Error(`cannot append trace events: session ${sessionId} does not exist`);
  const lastSeq = Number(row.last_seq);
  if (events.length === 0) return { inserted: 0, lastSeq };

  // Keys already stored for this session (the session lock means no one else can add any meanwhile).
  const keys = events.map((e) => e.key);
  const existing = await tx.$queryRaw<{ idempotency_key: string }[]>`
    SELECT "idempotency_key" FROM "trace_events"
    WHERE "session_id" = ${sessionId} AND "idempotency_key" = ANY(${keys}::text[])`;
  const seen = new Set(existing.map((r) => r.idempotency_key));

  const fresh: NewTraceEvent[] = [];
  for (const e of events) {
    if (seen.has(e.key)) continue;
    seen.add(e.key); // a key repeated inside one batch is written once
    fresh.push(e);
  }
  if (fresh.length === 0) return { inserted: 0, lastSeq };

  const seqs = fresh.map((_, i) => lastSeq + 1 + i);
  const ids = seqs.map((seq) => `${sessionId}:${seq}`);
  const timestamps = fresh.map((e) => {
    const t = new Date(e.timestamp);
    if (Number.isNaN(t.getTime())) throw new Error(`trace event ${e.key}: invalid timestamp ${JSON.stringify(e.timestamp)}`);
    return t.toISOString();
  });
  // Secrets never reach the trace: payloads are redacted before they are stored (and so before any stream sees them).
  const payloads = fresh.map((e) => JSON.stringify(redactSecrets(e.payload ?? null, traceSecrets)));
  const newLast = lastSeq + fresh.length;

  await tx.$executeRaw`
    INSERT INTO "trace_events"
      ("id", "session_id", "seq", "idempotency_key", "run_id", "task_id", "actor", "type", "payload", "timestamp")
    SELECT u.id, ${sessionId}, u.seq, u.key, u.run_id, u.task_id, u.actor, u.type, u.payload::jsonb, u.ts::timestamptz
    FROM unnest(
      ${ids}::text[], ${seqs}::int[], ${fresh.map((e) => e.key)}::text[], ${fresh.map((e) => e.runId)}::text[],
      ${fresh.map((e) => e.taskId ?? null)}::text[], ${fresh.map((e) => e.actor)}::text[],
      ${fresh.map((e) => e.type)}::text[], ${payloads}::text[], ${timestamps}::text[]
    ) AS u(id, seq, key, run_id, task_id, actor, type, payload, ts)`;
  await tx.$executeRaw`UPDATE "sessions" SET "last_seq" = ${newLast} WHERE "id" = ${sessionId}`;
  // Delivered by Postgres when (and only if) the surrounding transaction commits.
  await tx.$executeRaw`
    SELECT pg_notify(${TRACE_CHANNEL}, json_build_object('sessionId', ${sessionId}::text, 'seq', ${newLast}::int)::text)`;
  return { inserted: fresh.length, lastSeq: newLast };
}

/**
 * Appends events to a session's trace, idempotently and gap-free. With a transaction client the work joins the
 * caller's transaction (the session row stays locked until it ends); with the root client it runs in its own.
 * Events whose key already exists for the session are skipped; the rest get seq last_seq+1..n in array order.
 * Payloads are stored redacted (core/redact.ts plus the secrets given to configureTraceRedaction).
 * Returns how many were inserted and the session's last seq afterwards.
 */
export async function appendTraceEvents(
  db: DbOrTx,
  sessionId: string,
  events: NewTraceEvent[],
): Promise<{ inserted: number; lastSeq: number }> {
  if (isRootClient(db)) {
    return db.$transaction((tx) => appendInTx(tx, sessionId, events), { maxWait: 10_000, timeout: 30_000 });
  }
  return appendInTx(db, sessionId, events);
}

/** Events with seq > afterSeq, in seq order, at most `limit`, in the core TraceEvent shape. */
export async function listTraceEvents(
  db: DbOrTx,
  sessionId: string,
  afterSeq: number,
  limit = 500,
): Promise<TraceEvent[]> {
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`limit must be a positive integer, got ${limit}`);
  const rows = await db.traceEvent.findMany({
    where: { sessionId, seq: { gt: afterSeq } },
    orderBy: { seq: 'asc' },
    take: limit,
  });
  return rows.map((r) => {
    const event: TraceEvent = {
      id: r.id,
      seq: r.seq,
      runId: r.runId,
      sessionId: r.sessionId,
      actor: r.actor,
      type: r.type,
      payload: r.payload,
      timestamp: r.timestamp.toISOString(),
    };
    if (r.taskId !== null) event.taskId = r.taskId;
    return event;
  });
}

export type TraceListener = (seq: number) => void;

export type TraceNotifierOptions = {
  onError?: (err: Error) => void;
  /** First reconnect delay in ms (doubles up to maxBackoffMs). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
};

/**
 * One dedicated connection per process doing `LISTEN troupe_trace`, fanning notifications out to per-session
 * listeners. If the connection drops it reconnects with backoff and then calls every listener with seq -1
 * ("you may have missed something, re-read"), so subscribers never stall. Subscribe before reading the backlog,
 * then treat every call as "read after my cursor".
 */
export class TraceNotifier {
  private readonly listeners = new Map<string, Set<TraceListener>>();
  private client: pg.Client | null = null;
  private closed = false;
  private starting: Promise<void> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly onError: (err: Error) => void;

  constructor(
    private readonly databaseUrl: string,
    opts: TraceNotifierOptions = {},
  ) {
    this.onError = opts.onError ?? (() => {});
    this.minBackoffMs = opts.minBackoffMs ?? 100;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5_000;
    this.backoffMs = this.minBackoffMs;
  }

  /** Connects and starts listening. Rejects if the first connection fails (call again to retry). */
  async start(): Promise<void> {
    if (this.closed) throw new Error('TraceNotifier is closed');
    if (!this.starting) {
      this.starting = this.connect().catch((err: unknown) => {
        this.starting = null; // let a later start() try again
        throw err;
      });
    }
    return this.starting;
  }

  subscribe(sessionId: string, listener: TraceListener): () => void {
    let set = this.listeners.get(sessionId);
    if (!set) {
      set = new Set();
      this.listeners.set(sessionId, set);
    }
    // Wrap so the same function can be subscribed twice and unsubscribed independently.
    const entry: TraceListener = (seq) => listener(seq);
    set.add(entry);
    return () => {
      const current = this.listeners.get(sessionId);
      if (!current) return;
      current.delete(entry);
      if (current.size === 0) this.listeners.delete(sessionId);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const client = this.client;
    this.client = null;
    this.listeners.clear();
    if (client) await client.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.databaseUrl,
      application_name: 'troupe-trace-notifier',
      keepAlive: true,
    });
    let dropped = false;
    const onDrop = (err?: Error) => {
      if (err) this.reportError(err);
      if (dropped) return;
      dropped = true;
      if (this.client === client) this.client = null;
      client.removeAllListeners('notification');
      client.end().catch(() => {});
      this.scheduleReconnect();
    };
    client.on('notification', (msg) => this.dispatch(msg));
    // Attached before connect so a failing first connection never surfaces as an unhandled 'error' event.
    client.on('error', (err) => {
      if (this.client === client) onDrop(err);
      else this.reportError(err);
    });
    client.on('end', () => {
      if (this.client === client) onDrop();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${TRACE_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.backoffMs = this.minBackoffMs;
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed) return;
      this.connect().then(
        () => {
          if (this.closed) return;
          // Anything committed while we were away was not delivered: ask everyone to re-read.
          for (const set of [...this.listeners.values()]) for (const l of [...set]) this.call(l, -1);
        },
        (err: unknown) => {
          this.reportError(err instanceof Error ? err : new Error(String(err)));
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref?.();
  }

  private dispatch(msg: pg.Notification): void {
    if (msg.channel !== TRACE_CHANNEL || !msg.payload) return;
    let parsed: { sessionId?: unknown; seq?: unknown };
    try {
      parsed = JSON.parse(msg.payload) as { sessionId?: unknown; seq?: unknown };
    } catch {
      this.reportError(new Error(`malformed ${TRACE_CHANNEL} payload: ${msg.payload}`));
      return;
    }
    if (typeof parsed.sessionId !== 'string' || typeof parsed.seq !== 'number') return;
    const set = this.listeners.get(parsed.sessionId);
    if (!set) return;
    for (const l of [...set]) this.call(l, parsed.seq);
  }

  private call(listener: TraceListener, seq: number): void {
    try {
      listener(seq);
    } catch (err) {
      this.reportError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private reportError(err: Error): void {
    try {
      this.onError(err);
    } catch {
      // an error handler that throws must not take the notifier down
    }
  }
}
