import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const expectError = (res: { status: number; body: any }, status: number, code: string) => {
  expect(res.status).toBe(status);
  expect(res.body).toMatchObject({ error: { code, message: expect.any(String) } });
};

describe('authentication', () => {
  it('refuses every /v1 route without a valid bearer token', async () => {
    for (const [method, route] of [
      ['GET', '/v1/sessions'],
      ['POST', '/v1/sessions'],
      ['GET', '/v1/sessions/ses_x'],
      ['GET', '/v1/sessions/ses_x/events'],
      ['POST', '/v1/sessions/ses_x/messages'],
      ['POST', '/v1/sessions/ses_x/cancel'],
    ] as const) {
      expectError(await stack.api(method, route, undefined, {}), 401, 'unauthorized');
      expectError(await stack.api(method, route, undefined, { authorization: 'Bearer wrong' }), 401, 'unauthorized');
      expectError(await stack.api(method, route, undefined, { authorization: stack.token }), 401, 'unauthorized');
    }
    // A refused POST with a perfectly good body creates nothing.
    const goal = `unauthorized-${Date.now()}`;
    expectError(await stack.api('POST', '/v1/sessions', { goal }, { authorization: 'Bearer wrong' }), 401, 'unauthorized');
    expect(await stack.db.session.count({ where: { goal } })).toBe(0);
  });

  it('leaves health, readiness and the OpenAPI document open', async () => {
    expect((await stack.api('GET', '/healthz', undefined, {})).status).toBe(200);
    const ready = await stack.api('GET', '/readyz', undefined, {});
    expect(ready).toMatchObject({ status: 200, body: { ok: true, checks: { postgres: { ok: true }, temporal: { ok: true } } } });
    const doc = await stack.api('GET', '/openapi.json', undefined, {});
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/v1/sessions', '/v1/sessions/{id}/events', '/v1/sessions/{id}/messages']));
    expect(doc.body.components.schemas.CreateSessionBody.required).toEqual(['goal']);
  });
});

describe('bad input', () => {
  it('names the bad fields of a session body and writes nothing', async () => {
    // Other test files write sessions into the same database at the same time: count only this test's goals.
    const goal = `bad-input-${Date.now()}`;
    const res = await stack.api('POST', '/v1/sessions', { goal: '   ', agent: 7, surprise: true });
    expectError(res, 400, 'bad_request');
    const paths = (res.body.error.details as { path: string }[]).map((d) => d.path).sort();
    expect(paths).toEqual(['(body)', 'agent', 'goal']);
    expect(res.body.error.message).toContain('surprise');
    expectError(await stack.api('POST', '/v1/sessions', '{"goal": "unterminated'), 400, 'bad_request');
    expectError(await stack.api('POST', '/v1/sessions', { goal, agent: 'no-such-agent' }), 400, 'bad_request');
    expectError(await stack.api('POST', '/v1/sessions', { goal, agent: 'assistant', metadata: { big: 'x'.repeat(20_000) } }), 400, 'bad_request');
    expect(await stack.db.session.count({ where: { goal } })).toBe(0);
  });

  it('rejects a bad message, bad paging and a bad resume point', async () => {
    const created = await stack.api('POST', '/v1/sessions', { goal: 'hello', agent: await stack.agent('err-agent', 'note-then-answer') });
    const id = created.body.id as string;
    const res = await stack.api('POST', `/v1/sessions/${id}/messages`, { content: '' });
    expectError(res, 400, 'bad_request');
    expect(res.body.error.details).toEqual([{ path: 'content', message: 'content must not be empty' }]);
    expectError(await stack.api('GET', '/v1/sessions?limit=0'), 400, 'bad_request');
    expectError(await stack.api('GET', '/v1/sessions?cursor=garbage'), 400, 'bad_request');
    expectError(await stack.api('GET', `/v1/sessions/${id}/events?after=-3`), 400, 'bad_request');
    expectError(await stack.api('GET', `/v1/sessions/${id}/events`, undefined, { authorization: `Bearer ${stack.token}`, 'last-event-id': 'abc' }), 400, 'bad_request');
    await stack.api('POST', `/v1/sessions/${id}/cancel`);
  });
});

describe('unknown ids', () => {
  it('answers 404 for every session route', async () => {
    expectError(await stack.api('GET', '/v1/sessions/ses_missing'), 404, 'not_found');
    expectError(await stack.api('GET', '/v1/sessions/ses_missing/events'), 404, 'not_found');
    expectError(await stack.api('POST', '/v1/sessions/ses_missing/messages', { content: 'hi' }), 404, 'not_found');
    expectError(await stack.api('POST', '/v1/sessions/ses_missing/cancel'), 404, 'not_found');
    expectError(await stack.api('POST', '/v1/sessions/ses_missing/close'), 404, 'not_found');
    expectError(await stack.api('GET', '/v1/nothing-here'), 404, 'not_found');
  });
});

describe('listing', () => {
  it('pages through sessions newest first without repeats', async () => {
    const agent = await stack.agent('lister', 'note-then-answer');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await stack.api('POST', '/v1/sessions', { goal: `list ${i}`, agent, metadata: { batch: 'paging' } })).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: any } = await stack.api('GET', `/v1/sessions?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data.map((s: { id: string }) => s.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    // Newest first: our five appear in reverse creation order.
    expect(seen.filter((s) => ids.includes(s))).toEqual([...ids].reverse());
    for (const id of ids) await stack.api('POST', `/v1/sessions/${id}/cancel`);
  });
});
