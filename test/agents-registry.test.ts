import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyAgentFiles } from '../lib/agent-files';
import { createPrisma } from '../lib/db/client';
import { agentCatalogue, ensureBuiltinAgents, getAgent, getAgentVersion, putAgent } from '../service/agents';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ worker: false });
});
afterAll(async () => {
  await stack?.stop();
});

/** Other test files share the database: every agent here gets a unique id. */
const uid = (name: string) => `${name}-${randomBytes(4).toString('hex')}`;

const def = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  name: `Agent ${id}`,
  role: 'test-coder',
  model: 'default',
  instructions: 'Write the code.',
  tools: ['blackboard_read', 'blackboard_write', 'handoff'],
  permissions: ['read', 'write'],
  memoryScope: 'session',
  ...extra,
});

const expectError = (res: { status: number; body: unknown }, status: number, code: string) => {
  expect(res.status).toBe(status);
  expect(res.body).toMatchObject({ error: { code, message: expect.any(String) } });
};

async function postYaml(text: string, contentType = 'application/yaml') {
  const res = await fetch(`${stack.baseUrl}/v1/agents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.token}`, 'content-type': contentType },
    body: text,
  });
  return { status: res.status, body: (await res.json()) as Awaited<ReturnType<Stack['api']>>['body'] };
}

type ApplyJson = { change: string; agent: { id: string; version: number } };

const versionRows = (agentId: string) => stack.db.agentVersion.count({ where: { agentId } });

describe('listing', () => {
  it('shows the built-in default set', async () => {
    const res = await stack.api('GET', '/v1/agents');
    expect(res.status).toBe(200);
    const byId = Object.fromEntries((res.body.data as { id: string }[]).map((a) => [a.id, a]));
    for (const id of ['assistant', 'planner', 'coder', 'reviewer', 'tester']) {
      expect(byId[id]).toMatchObject({ id, model: 'default', source: 'builtin', version: expect.any(Number) });
    }
    expect(byId.coder).toMatchObject({ role: 'coder', retry: { maxAttempts: 2, backoffSeconds: 1 }, timeoutSeconds: 1800, permissions: ['read', 'write', 'exec'] });
    expect(byId.planner).toMatchObject({ role: 'planner', memoryScope: 'project', tools: ['blackboard_read'] });
    const ids = (res.body.data as { id: string }[]).map((a) => a.id);
    expect(ids).toEqual([...ids].sort());
  });

  it('re-applying the built-ins (every process does at start-up) makes no new version', async () => {
    const before = await stack.api('GET', '/v1/agents/coder');
    const results = await ensureBuiltinAgents(stack.db);
    expect(results.map((r) => r.change)).toEqual(results.map(() => 'unchanged'));
    expect((await stack.api('GET', '/v1/agents/coder')).body).toEqual(before.body);
  });
});

describe('versions', () => {
  it('create, get, put: a new version; ?version=1 still returns the old one; an identical PUT keeps the version', async () => {
    const id = uid('versioned');
    const created = await stack.api('POST', '/v1/agents', def(id, { description: 'first', retry: { maxAttempts: 3 } }));
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id, version: 1, source: 'api', description: 'first', retry: { maxAttempts: 3, backoffSeconds: 1 } });
    expect(created.body.createdAt).toEqual(expect.any(String));

    expect((await stack.api('GET', `/v1/agents/${id}`)).body).toEqual(created.body);
    expectError(await stack.api('POST', '/v1/agents', def(id)), 409, 'conflict');

    const put = await stack.api('PUT', `/v1/agents/${id}`, { ...def(id), instructions: 'Write better code.', id: undefined });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ id, version: 2, instructions: 'Write better code.' });
    expect(put.body.description).toBeUndefined();
    expect(put.body.retry).toBeUndefined();

    const current = await stack.api('GET', `/v1/agents/${id}`);
    expect(current.body).toMatchObject({ version: 2, instructions: 'Write better code.' });
    const old = await stack.api('GET', `/v1/agents/${id}?version=1`);
    expect(old.status).toBe(200);
    expect(old.body).toMatchObject({ id, version: 1, instructions: 'Write the code.', description: 'first', source: 'api' });
    expectError(await stack.api('GET', `/v1/agents/${id}?version=7`), 404, 'not_found');
    expectError(await stack.api('GET', `/v1/agents/${id}?version=zero`), 400, 'bad_request');

    // Saving the same definition again is not an edit.
    const same = await stack.api('PUT', `/v1/agents/${id}`, { ...def(id), instructions: 'Write better code.' });
    expect(same.status).toBe(200);
    expect(same.body).toMatchObject({ version: 2, updatedAt: put.body.updatedAt });
    expect(await versionRows(id)).toBe(2);

    const versions = await stack.api('GET', `/v1/agents/${id}/versions`);
    expect(versions.body.data.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    // Service readers: the current version and an old one, as sessions freeze them.
    expect(await getAgent(stack.db, id)).toMatchObject({ id, version: 2 });
    expect(await getAgentVersion(stack.db, id, 1)).toMatchObject({ id, version: 1, description: 'first' });
  });

  it('PUT creates a missing agent and refuses a body whose id differs from the path', async () => {
    const id = uid('upsert');
    const res = await stack.api('PUT', `/v1/agents/${id}`, def(id));
    expect(res).toMatchObject({ status: 200, body: { id, version: 1 } });
    const mismatch = await stack.api('PUT', `/v1/agents/${id}`, def('someone-else'));
    expectError(mismatch, 400, 'bad_request');
    expect(mismatch.body.error.details).toEqual([{ path: 'id', message: expect.stringContaining(id) }]);
  });

  it('delete: 404 on GET, gone from the list, versions still readable; re-creating continues the numbering', async () => {
    const id = uid('doomed');
    await stack.api('POST', '/v1/agents', def(id));
    await stack.api('PUT', `/v1/agents/${id}`, def(id, { name: 'Doomed v2' }));
    const del = await stack.api('DELETE', `/v1/agents/${id}`);
    expect(del.status).toBe(204);
    expectError(await stack.api('GET', `/v1/agents/${id}`), 404, 'not_found');
    expectError(await stack.api('DELETE', `/v1/agents/${id}`), 404, 'not_found');
    expect((await stack.api('GET', '/v1/agents')).body.data.map((a: { id: string }) => a.id)).not.toContain(id);
    expect((await agentCatalogue(stack.db)).map((a) => a.id)).not.toContain(id);
    expect(await getAgent(stack.db, id)).toBeNull();
    // Sessions that started with it can still read their version.
    expect(await getAgentVersion(stack.db, id, 2)).toMatchObject({ name: 'Doomed v2', version: 2 });
    expect((await stack.api('GET', `/v1/agents/${id}?version=1`)).body).toMatchObject({ version: 1 });
    // A session cannot start on a deleted agent.
    expectError(await stack.api('POST', '/v1/sessions', { goal: 'hi', agent: id }), 400, 'bad_request');

    const again = await stack.api('POST', '/v1/agents', def(id, { name: 'Doomed v2' }));
    expect(again).toMatchObject({ status: 201, body: { id, version: 3, name: 'Doomed v2' } });
    expect((await stack.api('GET', `/v1/agents/${id}/versions`)).body.data.map((v: { version: number }) => v.version)).toEqual([3, 2, 1]);
    expectError(await stack.api('GET', `/v1/agents/${uid('never')}/versions`), 404, 'not_found');
    expectError(await stack.api('DELETE', `/v1/agents/${uid('never')}`), 404, 'not_found');
  });
});

describe('validation', () => {
  const bad = async (body: unknown, path: string, text: string | RegExp) => {
    const res = await stack.api('POST', '/v1/agents', body);
    expectError(res, 400, 'bad_request');
    if (typeof text === 'string') expect(res.body.error.message).toContain(text);
    else expect(res.body.error.message).toMatch(text);
    expect(res.body.error.details.map((d: { path: string }) => d.path)).toContain(path);
    return res;
  };

  it('names the problem in a 400 and writes nothing', async () => {
    const id = uid('invalid');
    await bad(def(id, { tools: ['blackboard_read', 'shell'] }), 'tools.1', 'tools.1: unknown tool "shell"');
    await bad(def(id, { model: 'openai:gpt-9' }), 'model', 'unknown model provider "openai"');
    await bad(def(id, { permissions: ['read', 'root'] }), 'permissions.1', 'permissions.1: unknown permission');
    await bad(def(id, { permissions: ['read', 'Write Stuff'] }), 'permissions.1', 'permissions.1');
    await bad(def(id, { memoryScope: 'none' }), 'tools.0', /tools\.0: tool "blackboard_read" needs memory, but memoryScope is "none"/);
    await bad(def(id, { tools: ['handoff', 'handoff'] }), 'tools.1', 'duplicate tool "handoff"');
    await bad(def(id, { temperature: 0.2 }), '(agent)', /Unrecognized key.*temperature/);
    await bad(def(id, { id: 'Not_An_Id' }), 'id', 'id:');
    await bad({ ...def(id), name: undefined }, 'name', 'name:');
    expectError(await stack.api('POST', '/v1/agents', '[1, 2]'), 400, 'bad_request');
    expectError(await stack.api('POST', '/v1/agents', '{"id": '), 400, 'bad_request');
    expectError(await stack.api('PUT', `/v1/agents/${id}`, def(id, { tools: ['nope'] })), 400, 'bad_request');
    expect(await stack.db.agentDefinition.count({ where: { id } })).toBe(0);
    expect(await versionRows(id)).toBe(0);
  });
});

describe('YAML', () => {
  it('applies a list of agents: created, then unchanged or updated', async () => {
    const a = uid('yaml-a');
    const b = uid('yaml-b');
    const yaml = (bInstructions: string) => `
- id: ${a}
  name: YAML A
  role: test-reviewer
  model: scripted:note-then-answer
  instructions: |
    Review it.
  tools: [blackboard_read]
  permissions: [read]
  memoryScope: session
- id: ${b}
  name: YAML B
  role: test-tester
  model: default
  instructions: ${bInstructions}
  tools: []
  permissions: [read, exec]
  memoryScope: none
`;
    const first = await postYaml(yaml('Test it.'));
    expect(first.status).toBe(200);
    expect(first.body.data.map((r: ApplyJson) => [r.change, r.agent.id, r.agent.version])).toEqual([
      ['created', a, 1],
      ['created', b, 1],
    ]);
    expect(first.body.data[0].agent.instructions).toBe('Review it.\n');

    const second = await postYaml(yaml('Test it twice.'), 'text/yaml');
    expect(second.body.data.map((r: ApplyJson) => [r.change, r.agent.version])).toEqual([
      ['unchanged', 1],
      ['updated', 2],
    ]);
    expect((await stack.api('GET', `/v1/agents/${b}`)).body).toMatchObject({ version: 2, instructions: 'Test it twice.', memoryScope: 'none' });

    // One agent (not a list) works too.
    const single = await postYaml(`id: ${uid('yaml-single')}\nname: S\nrole: test-coder\nmodel: default\ninstructions: x\ntools: []\npermissions: []\nmemoryScope: none\n`);
    expect(single.body.data).toHaveLength(1);
  });

  it('is all or nothing, naming the bad item and field', async () => {
    const good = uid('yaml-good');
    const res = await postYaml(`
- { id: ${good}, name: G, role: test-coder, model: default, instructions: x, tools: [], permissions: [], memoryScope: none }
- { id: ${uid('yaml-bad')}, name: B, role: test-coder, model: default, instructions: x, tools: [teleport], permissions: [], memoryScope: none }
`);
    expectError(res, 400, 'bad_request');
    expect(res.body.error.message).toContain('1.tools.0: unknown tool "teleport"');
    expect(await stack.db.agentDefinition.count({ where: { id: good } })).toBe(0);

    expect((await postYaml('id: [unclosed')).body.error.message).toContain('not valid YAML');
    expectError(await postYaml('# nothing here\n'), 400, 'bad_request');
    const twice = await postYaml(`- ${JSON.stringify(def(good))}\n- ${JSON.stringify(def(good))}\n`);
    expectError(twice, 400, 'bad_request');
    expect(twice.body.error.message).toContain('defined twice');
  });
});

describe('auth and docs', () => {
  it('refuses every agent route without a token', async () => {
    for (const [method, route] of [
      ['GET', '/v1/agents'],
      ['POST', '/v1/agents'],
      ['GET', '/v1/agents/coder'],
      ['GET', '/v1/agents/coder/versions'],
      ['PUT', '/v1/agents/coder'],
      ['DELETE', '/v1/agents/coder'],
    ] as const) {
      expectError(await stack.api(method, route, undefined, {}), 401, 'unauthorized');
      expectError(await stack.api(method, route, undefined, { authorization: 'Bearer wrong' }), 401, 'unauthorized');
    }
    expect((await stack.api('GET', '/v1/agents/coder')).status).toBe(200);
  });

  it('documents the routes in the OpenAPI document', async () => {
    const doc = (await stack.api('GET', '/openapi.json', undefined, {})).body;
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/agents', '/v1/agents/{id}', '/v1/agents/{id}/versions', '/v1/sessions']));
    expect(Object.keys(doc.paths['/v1/agents/{id}'])).toEqual(expect.arrayContaining(['get', 'put', 'delete']));
    expect(doc.components.schemas.AgentDefinition.required).toEqual(expect.arrayContaining(['id', 'model', 'tools', 'memoryScope']));
    expect(doc.components.schemas.AgentUpdateBody.required).not.toContain('id');
  });
});

describe('concurrency', () => {
  it('concurrent applies of the same definition produce one version, and none fails', async () => {
    const id = uid('racer');
    const puts = await Promise.all(Array.from({ length: 8 }, () => stack.api('PUT', `/v1/agents/${id}`, def(id))));
    expect(puts.map((r) => [r.status, r.body.version])).toEqual(puts.map(() => [200, 1]));
    expect(await versionRows(id)).toBe(1);

    const changed = def(id, { instructions: 'Changed once.' });
    const again = await Promise.all(Array.from({ length: 8 }, () => stack.api('PUT', `/v1/agents/${id}`, changed)));
    expect(again.map((r) => [r.status, r.body.version])).toEqual(again.map(() => [200, 2]));
    expect(await versionRows(id)).toBe(2);
  });

  it('concurrent different edits each get their own version, with no gaps', async () => {
    const id = uid('editors');
    await putAgent(stack.db, def(id) as never);
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => stack.api('PUT', `/v1/agents/${id}`, def(id, { instructions: `Edit ${i}` }))));
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    expect(results.map((r) => r.body.version as number).sort()).toEqual([2, 3, 4, 5, 6, 7]);
    expect(await versionRows(id)).toBe(7);
  });

  it('two processes applying the same agent files at start-up at once make one version', async () => {
    const ids = [uid('boot-a'), uid('boot-b'), uid('boot-c')];
    const dir = mkdtempSync(path.join(os.tmpdir(), 'troupe-boot-'));
    try {
      writeFileSync(path.join(dir, 'team.yaml'), ids.map((id) => `- ${JSON.stringify(def(id))}`).join('\n'));
      // Separate clients (separate connection pools), like two API processes.
      const clients = [createPrisma(stack.config.databaseUrl), createPrisma(stack.config.databaseUrl), createPrisma(stack.config.databaseUrl)];
      try {
        const runs = await Promise.all(clients.map((db) => applyAgentFiles(db, dir)));
        const changes = runs.flat().map((r) => r.change);
        expect(changes.filter((c) => c === 'created')).toHaveLength(3);
        expect(changes.filter((c) => c === 'unchanged')).toHaveLength(6);
        for (const r of runs.flat()) expect(r.agent).toMatchObject({ version: 1, source: 'yaml:team.yaml' });
        for (const id of ids) expect(await versionRows(id)).toBe(1);
      } finally {
        await Promise.all(clients.map((c) => c.$disconnect()));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
