import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PrismaClient } from '../generated/prisma/client';
import { createPrisma } from '../lib/db/client';
import { dropDatabase, ensureDatabase, migrate } from '../lib/db/migrate';
import { appendTraceEvents, listTraceEvents, TraceNotifier, type NewTraceEvent } from '../lib/db/trace';

const SERVER_URL = process.env.TROUPE_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const dbName = `troupe_test_${randomBytes(6).toString('hex')}`;
const url = (() => {
  const u = new URL(SERVER_URL);
  u.pathname = `/${dbName}`;
  return u.toString();
})();

let db: PrismaClient;
const extraClients: PrismaClient[] = [];
const notifiers: TraceNotifier[] = [];

beforeAll(async () => {
  await ensureDatabase(url);
  await migrate(url);
  db = createPrisma(url);
}, 60_000);

afterAll(async () => {
  for (const n of notifiers) await n.close();
  for (const c of extraClients) await c.$disconnect();
  await db?.$disconnect();
  await dropDatabase(url);
}, 60_000);

let sessionCounter = 0;
async function newSession(): Promise<string> {
  const id = `s-${++sessionCounter}-${randomBytes(3).toString('hex')}`;
  await db.session.create({ data: { id, goal: 'test', agentId: 'agent', agentSnapshot: {}, status: 'running' } });
  return id;
}

function ev(key: string, extra: Partial<NewTraceEvent> = {}): NewTraceEvent {
  return {
    key,
    runId: 'run-1',
    actor: 'orchestrator',
    type: 'test.event',
    payload: { key },
    timestamp: '2026-01-02T03:04:05.678Z',
    ...extra,
  };
}

async function seqs(sessionId: string): Promise<number[]> {
  const rows = await db.traceEvent.findMany({ where: { sessionId }, orderBy: { seq: 'asc' }, select: { seq: true } });
  return rows.map((r) => r.seq);
}

async function lastSeqOf(sessionId: string): Promise<number> {
  return (await db.session.findUniqueOrThrow({ where: { id: sessionId } })).lastSeq;
}

/** Resolves with the next value pushed, or rejects after `ms` (a deadline, not a poll). */
function nextValue<T>(queue: T[], waiters: ((v: T) => void)[], ms = 5_000): Promise<T> {
  if (queue.length > 0) return Promise.resolve(queue.shift()!);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no notification within ${ms}ms`)), ms);
    waiters.push((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

function collector() {
  const queue: number[] = [];
  const waiters: ((v: number) => void)[] = [];
  const all: number[] = [];
  const listener = (seq: number) => {
    all.push(seq);
    const w = waiters.shift();
    if (w) w(seq);
    else queue.push(seq);
  };
  return { listener, all, next: (ms?: number) => nextValue(queue, waiters, ms) };
}

describe('appendTraceEvents', () => {
  it('assigns dense seqs 1..n in array order, with ids <sessionId>:<seq>', async () => {
    const s = await newSession();
    const r = await appendTraceEvents(db, s, [ev('a'), ev('b'), ev('c')]);
    expect(r).toEqual({ inserted: 3, lastSeq: 3 });
    const rows = await db.traceEvent.findMany({ where: { sessionId: s }, orderBy: { seq: 'asc' } });
    expect(rows.map((x) => [x.seq, x.id, x.idempotencyKey])).toEqual([
      [1, `${s}:1`, 'a'],
      [2, `${s}:2`, 'b'],
      [3, `${s}:3`, 'c'],
    ]);
    expect(await lastSeqOf(s)).toBe(3);
    expect(await appendTraceEvents(db, s, [ev('d')])).toEqual({ inserted: 1, lastSeq: 4 });
  });

  it('re-appending the same keys inserts nothing and returns the same lastSeq', async () => {
    const s = await newSession();
    const batch = [ev('k1'), ev('k2')];
    expect(await appendTraceEvents(db, s, batch)).toEqual({ inserted: 2, lastSeq: 2 });
    expect(await appendTraceEvents(db, s, batch)).toEqual({ inserted: 0, lastSeq: 2 });
    expect(await appendTraceEvents(db, s, [])).toEqual({ inserted: 0, lastSeq: 2 });
    expect(await seqs(s)).toEqual([1, 2]);
  });

  it('a mixed batch only adds the new keys (and a key repeated within a batch once)', async () => {
    const s = await newSession();
    await appendTraceEvents(db, s, [ev('old1'), ev('old2')]);
    const r = await appendTraceEvents(db, s, [ev('old1'), ev('new1'), ev('old2'), ev('new2'), ev('new1')]);
    expect(r).toEqual({ inserted: 2, lastSeq: 4 });
    const rows = await db.traceEvent.findMany({ where: { sessionId: s }, orderBy: { seq: 'asc' } });
    expect(rows.map((x) => [x.seq, x.idempotencyKey])).toEqual([
      [1, 'old1'],
      [2, 'old2'],
      [3, 'new1'],
      [4, 'new2'],
    ]);
  });

  it('concurrent appends from several connections produce unique gap-free seqs', async () => {
    const s = await newSession();
    const clients = Array.from({ length: 5 }, () => createPrisma(url));
    extraClients.push(...clients);
    // Each connection appends 8 batches of 3 new keys, plus a retried batch that overlaps another connection's keys.
    await Promise.all(
      clients.map((c, ci) =>
        Promise.all(
          Array.from({ length: 8 }, (_, bi) =>
            appendTraceEvents(c, s, [ev(`c${ci}-b${bi}-0`), ev(`c${ci}-b${bi}-1`), ev(`c${ci}-b${bi}-2`)]).then(() =>
              appendTraceEvents(c, s, [ev(`c${(ci + 1) % clients.length}-b${bi}-1`), ev(`shared-${bi}`)]),
            ),
          ),
        ),
      ),
    );
    const total = 5 * 8 * 3 + 8; // each connection's keys once, plus one `shared-<bi>` per batch index
    const rows = await db.traceEvent.findMany({ where: { sessionId: s }, orderBy: { seq: 'asc' } });
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(new Set(rows.map((r) => r.idempotencyKey)).size).toBe(total);
    expect(await lastSeqOf(s)).toBe(total);
  }, 60_000);

  it('joins the caller transaction: a rollback leaves no events and no seq bump', async () => {
    const s = await newSession();
    await appendTraceEvents(db, s, [ev('kept')]);
    await expect(
      db.$transaction(async (tx) => {
        expect(await appendTraceEvents(tx, s, [ev('lost1'), ev('lost2')])).toEqual({ inserted: 2, lastSeq: 3 });
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(await seqs(s)).toEqual([1]);
    expect(await lastSeqOf(s)).toBe(1);
    expect(await appendTraceEvents(db, s, [ev('lost1')])).toEqual({ inserted: 1, lastSeq: 2 });
  });

  it('throws a clear error for an unknown session', async () => {
    await expect(appendTraceEvents(db, 'no-such-session', [ev('x')])).rejects.toThrow(/session no-such-session does not exist/);
  });

  it('rejects an invalid timestamp without writing anything', async () => {
    const s = await newSession();
    await expect(appendTraceEvents(db, s, [ev('ok'), ev('bad', { timestamp: 'yesterday' })])).rejects.toThrow(/invalid timestamp/);
    expect(await seqs(s)).toEqual([]);
  });
});

describe('listTraceEvents', () => {
  it('returns events after N in seq order, in the core TraceEvent shape', async () => {
    const s = await newSession();
    const events = Array.from({ length: 10 }, (_, i) =>
      ev(`e${i}`, {
        payload: { i, nested: { ok: true }, list: [1, 'two'] },
        ...(i % 2 === 0 ? { taskId: `task-${i}` } : {}),
        timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i, 123)).toISOString(),
      }),
    );
    await appendTraceEvents(db, s, events);

    const after4 = await listTraceEvents(db, s, 4);
    expect(after4.map((e) => e.seq)).toEqual([5, 6, 7, 8, 9, 10]);
    expect(after4[0]).toEqual({
      id: `${s}:5`,
      seq: 5,
      runId: 'run-1',
      sessionId: s,
      actor: 'orchestrator',
      type: 'test.event',
      payload: { i: 4, nested: { ok: true }, list: [1, 'two'] },
      taskId: 'task-4',
      timestamp: '2026-01-01T00:00:04.123Z',
    });
    expect(after4[1]).not.toHaveProperty('taskId');
    expect((await listTraceEvents(db, s, 0, 3)).map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(await listTraceEvents(db, s, 10)).toEqual([]);
    expect(await listTraceEvents(db, 'no-such-session', 0)).toEqual([]);
  });

  it('works inside a transaction client too', async () => {
    const s = await newSession();
    const listed = await db.$transaction(async (tx) => {
      await appendTraceEvents(tx, s, [ev('t1'), ev('t2')]);
      return listTraceEvents(tx, s, 0);
    });
    expect(listed.map((e) => e.seq)).toEqual([1, 2]);
  });
});

describe('TraceNotifier', () => {
  afterEach(async () => {
    for (const n of notifiers.splice(0)) await n.close();
  });

  async function startNotifier(): Promise<{ notifier: TraceNotifier; errors: Error[] }> {
    const errors: Error[] = [];
    const notifier = new TraceNotifier(url, { onError: (e) => errors.push(e), minBackoffMs: 20, maxBackoffMs: 200 });
    notifiers.push(notifier);
    await notifier.start();
    return { notifier, errors };
  }

  it('delivers a notification for a committed append, not for a rolled-back one', async () => {
    const { notifier } = await startNotifier();
    const s = await newSession();
    const other = await newSession();
    const c = collector();
    const otherC = collector();
    notifier.subscribe(s, c.listener);
    notifier.subscribe(other, otherC.listener);

    await appendTraceEvents(db, s, [ev('a'), ev('b')]);
    expect(await c.next()).toBe(2);

    // Rolled back: no notification. A later committed append's notification is the next one to arrive, and
    // notifications are delivered in commit order on the one connection, so a stray one would show up first.
    await expect(
      db.$transaction(async (tx) => {
        await appendTraceEvents(tx, s, [ev('rolled-back')]);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    await appendTraceEvents(db, s, [ev('c')]);
    expect(await c.next()).toBe(3);

    // A duplicate-only append changes nothing and announces nothing.
    await appendTraceEvents(db, s, [ev('a')]);
    await appendTraceEvents(db, other, [ev('x')]);
    expect(await otherC.next()).toBe(1);
    expect(c.all).toEqual([2, 3]);
  });

  it('notifies at commit, not at insert time', async () => {
    const { notifier } = await startNotifier();
    const s = await newSession();
    const c = collector();
    notifier.subscribe(s, c.listener);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let appended!: () => void;
    const appendedP = new Promise<void>((r) => (appended = r));
    const tx = db.$transaction(async (t) => {
      await appendTraceEvents(t, s, [ev('slow')]);
      appended();
      await gate;
    });
    await appendedP;
    // The transaction is still open: the listener must not have fired yet. Ask the server for a round trip on the
    // notifier's own channel (a NOTIFY on another session) and check ordering instead of sleeping.
    const probe = await newSession();
    const probeC = collector();
    notifier.subscribe(probe, probeC.listener);
    await appendTraceEvents(db, probe, [ev('probe')]);
    expect(await probeC.next()).toBe(1);
    expect(c.all).toEqual([]);
    release();
    await tx;
    expect(await c.next()).toBe(1);
  });

  it('unsubscribe stops delivery to that listener only', async () => {
    const { notifier } = await startNotifier();
    const s = await newSession();
    const a = collector();
    const b = collector();
    const unsubA = notifier.subscribe(s, a.listener);
    notifier.subscribe(s, b.listener);
    await appendTraceEvents(db, s, [ev('1')]);
    expect(await a.next()).toBe(1);
    expect(await b.next()).toBe(1);
    unsubA();
    unsubA(); // idempotent
    await appendTraceEvents(db, s, [ev('2')]);
    expect(await b.next()).toBe(2);
    expect(a.all).toEqual([1]);
  });

  it('a throwing listener is reported and does not stop the others', async () => {
    const { notifier, errors } = await startNotifier();
    const s = await newSession();
    const c = collector();
    notifier.subscribe(s, () => {
      throw new Error('listener boom');
    });
    notifier.subscribe(s, c.listener);
    await appendTraceEvents(db, s, [ev('1')]);
    expect(await c.next()).toBe(1);
    expect(errors.map((e) => e.message)).toContain('listener boom');
  });

  it('start() is idempotent: concurrent calls share one connection', async () => {
    const pids = async () =>
      (
        await db.$queryRaw<{ pid: number }[]>`
          SELECT pid FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'troupe-trace-notifier'`
      ).map((r) => r.pid);
    const before = new Set(await pids());
    const notifier = new TraceNotifier(url);
    notifiers.push(notifier);
    await Promise.all([notifier.start(), notifier.start()]);
    await notifier.start();
    expect((await pids()).filter((p) => !before.has(p))).toHaveLength(1);
    await notifier.close();
  });

  it('reconnects after the connection drops and tells every listener to re-read (seq -1)', async () => {
    const { notifier, errors } = await startNotifier();
    const s = await newSession();
    const c = collector();
    notifier.subscribe(s, c.listener);
    await appendTraceEvents(db, s, [ev('before')]);
    expect(await c.next()).toBe(1);

    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const killed = await admin.query(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'troupe-trace-notifier' AND pid <> pg_backend_pid()`,
      );
      expect(killed.rowCount).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    expect(await c.next()).toBe(-1);
    expect(errors.length).toBeGreaterThan(0); // the drop was reported

    await appendTraceEvents(db, s, [ev('after')]);
    expect(await c.next()).toBe(2);
    await notifier.close();
  }, 30_000);

  it('start() rejects when the database is unreachable, and close() is safe', async () => {
    const bad = new TraceNotifier('postgresql://postgres@127.0.0.1:1/nowhere');
    await expect(bad.start()).rejects.toThrow();
    await bad.close();
    await bad.close();
  });
});
