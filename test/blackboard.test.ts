/**
 * The blackboard against real Postgres: scopes and memoryScope visibility, TTL and purge, provenance, idempotent
 * writes, the tools, the HTTP routes, and secrets kept out of the trace.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_TOOLS, type ToolContext } from '../activities/tools';
import { REDACTED } from '../core/redact';
import type { AgentDefinition, BlackboardEntry, MemoryScope } from '../core/schemas';
import { appendTraceEvents, configureTraceRedaction } from '../lib/db/trace';
import { MAX_READ_ENTRIES, purgeExpired, readEntries, writeEntry } from '../service/blackboard';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ worker: false });
});
afterAll(async () => {
  await stack?.stop();
});

/** Unique per test run: other test files share the database (and the global scope). */
const run = randomBytes(4).toString('hex');
const uniq = (name: string) => `${name}-${run}`;

type SessionRef = { id: string; project: string | null };
let counter = 0;
async function newSession(project: string | null = null, status = 'running'): Promise<SessionRef> {
  const id = `bb-${run}-${++counter}`;
  await stack.db.session.create({ data: { id, goal: 'blackboard test', agentId: 'assistant', agentSnapshot: {}, status, project } });
  return { id, project };
}

function agent(id: string, memoryScope: MemoryScope): AgentDefinition {
  return {
    id,
    name: id,
    role: 'assistant',
    model: 'scripted:none',
    instructions: '',
    tools: ['blackboard_write', 'blackboard_read'],
    permissions: [],
    memoryScope,
  };
}

let calls = 0;
function ctx(session: SessionRef, who: AgentDefinition, extra: Partial<ToolContext> = {}): ToolContext {
  return {
    db: stack.db,
    sessionId: session.id,
    project: session.project,
    agent: who,
    agentId: who.id,
    taskId: null,
    runId: 'run-test',
    callKey: `${++calls}:toolu_${run}`,
    signal: new AbortController().signal,
    ...extra,
  };
}

function tool(name: string) {
  const t = BUILTIN_TOOLS.find((x) => x.name === name);
  if (!t) throw new Error(`no tool ${name}`);
  return t;
}
/** Runs a tool the way runTool does: arguments parsed (defaults applied) by the tool's schema, then `run`. */
async function call(name: string, c: ToolContext, input: unknown): Promise<string> {
  const t = tool(name);
  return t.run(c, t.input.parse(input));
}
async function readTool(c: ToolContext, input: { key?: string; kind?: string } = {}): Promise<{ key: string; value: unknown; scope: string; by: string }[]> {
  const out = await call('blackboard_read', c, input);
  return out.startsWith('[') ? (JSON.parse(out) as { key: string; value: unknown; scope: string; by: string }[]) : [];
}
const keysOf = (entries: readonly { key: string }[]) => entries.map((e) => e.key);

describe('scopes and memoryScope', () => {
  it('session entries: shared by the agents of one session, not with memoryScope none, not across sessions', async () => {
    const s1 = await newSession();
    const s2 = await newSession();
    const out = await call('blackboard_write', ctx(s1, agent('writer', 'session')), { key: 'plan', value: 'step one, then two' });
    expect(out).toBe('saved fact "plan"');

    const other = await readTool(ctx(s1, agent('reader', 'session')));
    expect(other).toEqual([{ key: 'plan', kind: 'fact', scope: 'session', value: 'step one, then two', by: 'agent:writer' }]);
    expect(await readTool(ctx(s2, agent('reader', 'session')))).toEqual([]);
    expect(await call('blackboard_read', ctx(s2, agent('reader', 'session')), { key: 'plan' })).toBe('no entry "plan"');

    // memoryScope none: the service shows nothing, the tools say why.
    expect(await readEntries(stack.db, { session: s1, memoryScope: 'none' })).toEqual([]);
    await expect(call('blackboard_read', ctx(s1, agent('amnesiac', 'none')), {})).rejects.toThrow(/memoryScope "none"/);
    await expect(call('blackboard_write', ctx(s1, agent('amnesiac', 'none')), { key: 'k', value: 'v' })).rejects.toThrow(
      /memoryScope "none" and cannot use the blackboard/,
    );
  });

  it('project entries: shared across the sessions of one project, not another project, not with session memory', async () => {
    const alpha = uniq('alpha');
    const a1 = await newSession(alpha);
    const a2 = await newSession(alpha);
    const b1 = await newSession(uniq('beta'));
    const key = uniq('conventions');
    // A project-memory agent writes to its project by default.
    expect(await call('blackboard_write', ctx(a1, agent('architect', 'project')), { key, value: 'use zod everywhere', kind: 'decision' })).toBe(
      `saved decision "${key}" (project scope)`,
    );

    expect(await readTool(ctx(a2, agent('coder', 'project')), { key })).toMatchObject([{ key, value: 'use zod everywhere', scope: 'project', by: 'agent:architect' }]);
    expect(await readTool(ctx(b1, agent('coder', 'project')), { key })).toEqual([]);
    expect(await readTool(ctx(a2, agent('narrow', 'session')), { key })).toEqual([]);
    expect(await readTool(ctx(a1, agent('narrow', 'session')), { key })).toEqual([]);
    // A project-memory agent still sees its session's entries too.
    await call('blackboard_write', ctx(a2, agent('coder', 'project')), { key: 'mine', value: 'local', scope: 'session' });
    expect(keysOf(await readEntries(stack.db, { session: a2, memoryScope: 'project' })).sort()).toEqual([key, 'mine'].sort());
  });

  it('sessions without a project share the default project', async () => {
    const n1 = await newSession(null);
    const n2 = await newSession(null);
    const key = uniq('unnamed-project-note');
    await call('blackboard_write', ctx(n1, agent('architect', 'project')), { key, value: 'shared' });
    expect(keysOf(await readEntries(stack.db, { session: n2, memoryScope: 'project', key }))).toEqual([key]);
  });

  it('global entries: visible to global-memory agents anywhere, to no one else', async () => {
    const g1 = await newSession(uniq('one'));
    const g2 = await newSession(uniq('two'));
    const key = uniq('company-style');
    await call('blackboard_write', ctx(g1, agent('librarian', 'global')), { key, value: 'British spelling' });
    expect(await readTool(ctx(g2, agent('librarian', 'global')), { key })).toMatchObject([{ key, scope: 'global', value: 'British spelling' }]);
    expect(await readTool(ctx(g2, agent('coder', 'project')), { key })).toEqual([]);
    expect(await readTool(ctx(g1, agent('coder', 'project')), { key })).toEqual([]);
    expect(await readTool(ctx(g1, agent('coder', 'session')), { key })).toEqual([]);
  });

  it('a write to a scope wider than the memoryScope is refused, naming the allowed scopes', async () => {
    const s = await newSession(uniq('p'));
    await expect(call('blackboard_write', ctx(s, agent('narrow', 'session')), { key: 'k', value: 'v', scope: 'project' })).rejects.toThrow(
      'blackboard_write: scope "project" is wider than agent "narrow"\'s memoryScope "session"; allowed scopes: session',
    );
    await expect(call('blackboard_write', ctx(s, agent('mid', 'project')), { key: 'k', value: 'v', scope: 'global' })).rejects.toThrow(
      /allowed scopes: session, project$/,
    );
    // Narrower is fine.
    expect(await call('blackboard_write', ctx(s, agent('wide', 'global')), { key: 'k', value: 'v', scope: 'session' })).toBe('saved fact "k"');
    expect(await stack.db.blackboardEntry.count({ where: { sessionId: s.id } })).toBe(1);
  });

  it('reads return the latest value per key (oldest first) unless history is asked for, and filter by key and kind', async () => {
    const s = await newSession();
    const w = agent('writer', 'session');
    await call('blackboard_write', ctx(s, w), { key: 'a', value: 'a1' });
    await call('blackboard_write', ctx(s, w), { key: 'b', value: 'b1', kind: 'artifact' });
    await call('blackboard_write', ctx(s, w), { key: 'a', value: 'a2' });
    const latest = await readEntries(stack.db, { session: s, memoryScope: 'session' });
    expect(latest.map((e) => [e.key, e.value])).toEqual([
      ['b', 'b1'],
      ['a', 'a2'],
    ]);
    const history = await readEntries(stack.db, { session: s, memoryScope: 'session', includeHistory: true });
    expect(history.map((e) => e.value)).toEqual(['a1', 'b1', 'a2']);
    expect((await readEntries(stack.db, { session: s, memoryScope: 'session', kind: 'artifact' })).map((e) => e.key)).toEqual(['b']);
    expect((await readTool(ctx(s, w), { key: 'a' })).map((e) => e.value)).toEqual(['a2']);
    expect(await call('blackboard_read', ctx(s, w), { kind: 'decision' })).toBe('no decision entries on the blackboard');
    expect(MAX_READ_ENTRIES).toBe(500);
  });
});

describe('TTL, provenance, idempotency', () => {
  it('an expired entry is invisible at once and purged later', async () => {
    const s = await newSession();
    const w = agent('writer', 'session');
    const out = await call('blackboard_write', ctx(s, w), { key: 'short-lived', value: 'soon gone', ttlSeconds: 1 });
    expect(out).toMatch(/^saved fact "short-lived" until \d{4}-/);
    await call('blackboard_write', ctx(s, w), { key: 'kept', value: 'forever' });
    // An entry that expired long ago, written directly.
    await stack.db.blackboardEntry.create({
      data: { id: `${s.id}:old`, sessionId: s.id, kind: 'fact', key: 'ancient', value: 'x', writtenBy: 'app', idempotencyKey: 'old', scope: 'session', scopeKey: s.id, expiresAt: new Date(Date.now() - 3_600_000) },
    });
    expect(keysOf(await readEntries(stack.db, { session: s, memoryScope: 'session' }))).toEqual(['short-lived', 'kept']);

    await new Promise((r) => setTimeout(r, 1_200));
    expect(keysOf(await readEntries(stack.db, { session: s, memoryScope: 'session' }))).toEqual(['kept']);
    expect(keysOf(await readEntries(stack.db, { session: s, memoryScope: 'session', includeHistory: true }))).toEqual(['kept']);
    expect(await call('blackboard_read', ctx(s, w), { key: 'short-lived' })).toBe('no entry "short-lived"');
    expect(await stack.db.blackboardEntry.count({ where: { sessionId: s.id } })).toBe(3); // invisible, not yet deleted

    // Within the grace period nothing of this session goes; past it both expired entries do.
    await purgeExpired(stack.db, { olderThanMs: 60 * 60_000 });
    expect(await stack.db.blackboardEntry.count({ where: { sessionId: s.id } })).toBe(2);
    expect(await purgeExpired(stack.db, { olderThanMs: 0 })).toBeGreaterThanOrEqual(1);
    expect((await stack.db.blackboardEntry.findMany({ where: { sessionId: s.id } })).map((e) => e.key)).toEqual(['kept']);
  });

  it('provenance names the actor and task and points at the blackboard.written trace event', async () => {
    const s = await newSession(uniq('prov'));
    await call('blackboard_write', ctx(s, agent('planner', 'project'), { taskId: 'task-7', callKey: 'c3:toolu_9' }), {
      key: 'api-shape',
      value: 'REST',
      kind: 'decision',
      ttlSeconds: 3600,
    });
    const [entry] = await readEntries(stack.db, { session: s, memoryScope: 'project', key: 'api-shape' });
    expect(entry).toMatchObject({
      id: `${s.id}:c3:toolu_9`,
      key: 'api-shape',
      kind: 'decision',
      value: 'REST',
      scope: 'project',
      provenance: { actor: 'agent:planner', sessionId: s.id, taskId: 'task-7', traceSeq: expect.any(Number) },
    });
    expect(Date.parse(entry!.expiresAt!) - Date.parse(entry!.createdAt)).toBe(3_600_000);
    const trace = await stack.db.traceEvent.findUniqueOrThrow({ where: { sessionId_seq: { sessionId: s.id, seq: entry!.provenance.traceSeq! } } });
    expect(trace).toMatchObject({ type: 'blackboard.written', actor: 'agent:planner', taskId: 'task-7', runId: 'run-test', idempotencyKey: 'bb:c3:toolu_9' });
    expect(trace.payload).toEqual({ entryId: entry!.id, key: 'api-shape', kind: 'decision', scope: 'project', value: 'REST', expiresAt: entry!.expiresAt });
    expect((await stack.db.session.findUniqueOrThrow({ where: { id: s.id } })).lastSeq).toBe(trace.seq);
  });

  it('a retried write (same idempotency key) makes one entry and one trace event, even when retries race', async () => {
    const s = await newSession();
    const c = ctx(s, agent('writer', 'session'), { callKey: '4:toolu_retry' });
    const first = await call('blackboard_write', c, { key: 'once', value: 'v1' });
    const again = await Promise.all([1, 2, 3].map(() => call('blackboard_write', c, { key: 'once', value: 'v1' })));
    expect(again).toEqual([first, first, first]);

    const args = { session: s, key: 'raced', value: { n: 1 }, kind: 'fact' as const, scope: 'session' as const, actor: 'app', taskId: null, idempotencyKey: 'race-1', runId: 'api' };
    const raced = await Promise.all([1, 2, 3, 4].map(() => writeEntry(stack.db, args)));
    expect(new Set(raced.map((e) => JSON.stringify(e))).size).toBe(1);

    expect(await stack.db.blackboardEntry.count({ where: { sessionId: s.id } })).toBe(2);
    const events = await stack.traceRows(s.id);
    expect(events.map((e) => [e.seq, e.type, e.idempotencyKey])).toEqual([
      [1, 'blackboard.written', 'bb:4:toolu_retry'],
      [2, 'blackboard.written', 'bb:race-1'],
    ]);
  });

  it('a write to an unknown session is not_found and leaves nothing behind', async () => {
    await expect(
      writeEntry(stack.db, { session: { id: `missing-${run}`, project: null }, key: 'k', value: 1, kind: 'fact', scope: 'session', actor: 'app', taskId: null, idempotencyKey: 'x', runId: 'api' }),
    ).rejects.toMatchObject({ code: 'not_found' });
  });
});

describe('HTTP API', () => {
  it('POST writes as actor app (201), GET lists what the session sees', async () => {
    const project = uniq('http');
    const s = await newSession(project);
    const other = await newSession(project);
    const created = await stack.api('POST', `/v1/sessions/${s.id}/blackboard`, { key: 'spec', value: { pages: 3, draft: true }, kind: 'artifact' });
    expect(created.status).toBe(201);
    const entry = created.body as BlackboardEntry;
    expect(entry).toMatchObject({
      key: 'spec',
      kind: 'artifact',
      scope: 'session',
      value: { pages: 3, draft: true },
      expiresAt: null,
      provenance: { actor: 'app', sessionId: s.id, taskId: null, traceSeq: 1 },
    });
    expect(entry.id).toMatch(new RegExp(`^${s.id}:api:[0-9a-f-]{36}$`));
    const trace = await stack.traceRows(s.id);
    expect(trace).toMatchObject([{ seq: 1, type: 'blackboard.written', actor: 'app', runId: 'api' }]);

    const shared = await stack.api('POST', `/v1/sessions/${other.id}/blackboard`, { key: 'team', value: 'blue', scope: 'project', ttlSeconds: 600 });
    expect(shared.status).toBe(201);
    expect(shared.body.expiresAt).not.toBeNull();
    const globalKey = uniq('http-global');
    expect((await stack.api('POST', `/v1/sessions/${other.id}/blackboard`, { key: globalKey, value: null, scope: 'global' })).status).toBe(201);

    const listed = await stack.api('GET', `/v1/sessions/${s.id}/blackboard`);
    expect(listed.status).toBe(200);
    const mine = (listed.body.data as BlackboardEntry[]).filter((e) => e.scope !== 'global' || e.key === globalKey);
    expect(mine.map((e) => [e.scope, e.key, e.value])).toEqual([
      ['session', 'spec', { pages: 3, draft: true }],
      ['project', 'team', 'blue'],
      ['global', globalKey, null],
    ]);
    expect((await stack.api('GET', `/v1/sessions/${s.id}/blackboard?scope=project`)).body.data.map((e: BlackboardEntry) => e.key)).toEqual(['team']);
    expect((await stack.api('GET', `/v1/sessions/${s.id}/blackboard?key=spec&kind=artifact`)).body.data).toHaveLength(1);
    expect((await stack.api('GET', `/v1/sessions/${s.id}/blackboard?key=spec&kind=fact`)).body.data).toEqual([]);
    // The other session does not see this session's entry.
    expect((await stack.api('GET', `/v1/sessions/${other.id}/blackboard?scope=session`)).body.data).toEqual([]);
  });

  it('400 names the bad field; 404 unknown session; 409 ended session; 401 without a token', async () => {
    const s = await newSession();
    const path = `/v1/sessions/${s.id}/blackboard`;
    const noKey = await stack.api('POST', path, { key: '  ', value: 1 });
    expect(noKey.status).toBe(400);
    expect(noKey.body.error.code).toBe('bad_request');
    expect(noKey.body.error.details.map((d: { path: string }) => d.path)).toEqual(['key']);
    const noValue = await stack.api('POST', path, { key: 'k' });
    expect(noValue.status).toBe(400);
    expect(noValue.body.error.details.map((d: { path: string }) => d.path)).toEqual(['value']);
    const badScope = await stack.api('POST', path, { key: 'k', value: 1, scope: 'universe', ttlSeconds: 0 });
    expect(badScope.status).toBe(400);
    expect(badScope.body.error.details.map((d: { path: string }) => d.path).sort()).toEqual(['scope', 'ttlSeconds']);
    const extra = await stack.api('POST', path, { key: 'k', value: 1, owner: 'me' });
    expect(extra.status).toBe(400);
    expect(extra.body.error.message).toMatch(/owner/);
    const badQuery = await stack.api('GET', `${path}?kind=rumour`);
    expect(badQuery.status).toBe(400);
    expect(badQuery.body.error.details[0].path).toBe('kind');
    const badHeader = await stack.api('POST', path, { key: 'k', value: 1 }, { authorization: `Bearer ${stack.token}`, 'idempotency-key': 'has spaces' });
    expect(badHeader.status).toBe(400);
    expect(badHeader.body.error.details[0].path).toBe('Idempotency-Key');

    for (const method of ['GET', 'POST']) {
      const missing = await stack.api(method, `/v1/sessions/nope-${run}/blackboard`, method === 'POST' ? { key: 'k', value: 1 } : undefined);
      expect(missing.status, method).toBe(404);
      expect(missing.body.error.code).toBe('not_found');
    }
    for (const status of ['done', 'failed', 'cancelled']) {
      const ended = await newSession(null, status);
      const res = await stack.api('POST', `/v1/sessions/${ended.id}/blackboard`, { key: 'k', value: 1 });
      expect(res.status, status).toBe(409);
      expect(res.body.error.code).toBe('conflict');
      // Reading an ended session's blackboard is fine.
      expect((await stack.api('GET', `/v1/sessions/${ended.id}/blackboard`)).status).toBe(200);
    }
    expect((await stack.api('GET', path, undefined, {})).status).toBe(401);
    expect((await stack.api('POST', path, { key: 'k', value: 1 }, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect(await stack.db.blackboardEntry.count({ where: { sessionId: s.id } })).toBe(0);
  });

  it('an Idempotency-Key replay returns the same entry and writes once; reuse for another write is a 409', async () => {
    const s = await newSession();
    const path = `/v1/sessions/${s.id}/blackboard`;
    const headers = { authorization: `Bearer ${stack.token}`, 'idempotency-key': 'client-req:42' };
    const body = { key: 'release', value: { version: '1.2.0', notes: ['a', 'b'] }, kind: 'decision' };
    const first = await stack.api('POST', path, body, headers);
    const second = await stack.api('POST', path, { ...body, value: { notes: ['a', 'b'], version: '1.2.0' } }, headers);
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.body).toEqual(first.body);
    expect(first.body.id).toBe(`${s.id}:api:client-req:42`);
    expect(await stack.db.blackboardEntry.count({ where: { sessionId: s.id } })).toBe(1);
    expect((await stack.traceRows(s.id)).map((e) => e.idempotencyKey)).toEqual(['bb:api:client-req:42']);

    const reused = await stack.api('POST', path, { key: 'release', value: 'something else' }, headers);
    expect(reused.status).toBe(409);
    expect(await stack.db.blackboardEntry.count({ where: { sessionId: s.id } })).toBe(1);
  });

  it('is in the OpenAPI document', async () => {
    const doc = await fetch(`${stack.baseUrl}/openapi.json`).then((r) => r.json() as Promise<{ paths: Record<string, Record<string, unknown>>; components: { schemas: Record<string, unknown> } }>);
    expect(Object.keys(doc.paths['/v1/sessions/{id}/blackboard'] ?? {}).sort()).toEqual(['get', 'post']);
    expect(doc.components.schemas).toHaveProperty('BlackboardEntry');
    expect(doc.components.schemas).toHaveProperty('WriteBlackboardBody');
  });
});

describe('secrets stay out of the trace', () => {
  afterAll(() => configureTraceRedaction([]));

  it('a secret planted in a trace payload is stored redacted', async () => {
    const s = await newSession();
    configureTraceRedaction(['deployment-passphrase-77']);
    await appendTraceEvents(stack.db, s.id, [
      {
        key: 'planted',
        runId: 'run-test',
        actor: 'tool',
        type: 'tool.result',
        payload: {
          content: 'export ANTHROPIC_API_KEY=sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 and deployment-passphrase-77',
          headers: { authorization: 'Bearer 0123456789abcdef0123456789abcdef' },
          password: 'hunter2',
          usage: { inputTokens: 12 },
          commit: '3f786850e387550fdab836ed7e6dc881de23001b',
        },
        timestamp: new Date().toISOString(),
      },
    ]);
    // A blackboard write: the trace records it redacted.
    await call('blackboard_write', ctx(s, agent('writer', 'session')), { key: 'creds', value: 'github token ghp_16C7e42F292c6912E7710c838347Ae178B4a' });

    const [planted, written] = await stack.traceRows(s.id);
    expect(planted!.payload).toEqual({
      content: `export ANTHROPIC_API_KEY=${REDACTED} and ${REDACTED}`,
      headers: { authorization: REDACTED },
      password: REDACTED,
      usage: { inputTokens: 12 },
      commit: '3f786850e387550fdab836ed7e6dc881de23001b',
    });
    expect((written!.payload as { value: string }).value).toBe(`github token ${REDACTED}`);
    expect(JSON.stringify(await stack.traceRows(s.id))).not.toMatch(/hunter2|sk-ant-|ghp_|deployment-passphrase|0123456789abcdef0123/);
    // Over SSE too (the stream reads the stored rows).
    const streamed = await stack.events(s.id, { until: (e) => e.seq === 2 });
    expect(JSON.stringify(streamed)).not.toMatch(/hunter2|sk-ant-|ghp_|deployment-passphrase/);
  });
});
