import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMcpClientManager } from '../activities/tools/mcp-client';
import type { ToolContext } from '../activities/tools/index';
import type { AgentDefinition, McpServerConfig } from '../core/schemas';
import { evaluate } from '../core/policy';
import { checkAgent } from '../service/agent-store';
import { startStack, type Stack } from './support/stack';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE: McpServerConfig = {
  name: 'fixture',
  command: [process.execPath, '--import', 'tsx', path.join(ROOT, 'test/support/mcp-stdio-server.ts')],
};

function agentDef(extra: Partial<AgentDefinition> = {}): AgentDefinition {
  return {
    id: 'mcp-user',
    name: 'mcp user',
    role: 'assistant',
    model: 'scripted:mcp-echo',
    instructions: 'Use the fixture.',
    tools: ['mcp__fixture__*'],
    permissions: ['mcp'],
    memoryScope: 'session',
    mcpServers: [FIXTURE],
    ...extra,
  };
}

const payload = (r: { payload: unknown }) => r.payload as Record<string, unknown>;

describe('MCP client manager over stdio', () => {
  const mcp = createMcpClientManager({ callTimeoutMs: 20_000 });
  afterAll(() => mcp.close());
  const ctx = { signal: new AbortController().signal } as ToolContext;

  it('lists the fixture tools namespaced, with their JSON schemas, and calls them', async () => {
    const agent = agentDef();
    const specs = await mcp.specs(agent, agent.tools);
    expect(specs.map((s) => s.name).sort()).toEqual(['mcp__fixture__add', 'mcp__fixture__boom', 'mcp__fixture__echo']);
    expect(specs.find((s) => s.name === 'mcp__fixture__add')!.inputSchema).toMatchObject({ type: 'object', required: ['a', 'b'] });

    const echo = (await mcp.tool(agent, 'mcp__fixture__echo'))!;
    expect(echo.input.safeParse({ text: 'hi' }).success).toBe(true);
    expect(echo.input.safeParse({}).success).toBe(false);
    expect(await echo.run(ctx, { text: 'hi' })).toBe('hi');
    const add = (await mcp.tool(agent, 'mcp__fixture__add'))!;
    expect(add.input.safeParse({ a: 1, b: 'x' }).success).toBe(false);
    expect(await add.run(ctx, { a: 2, b: 40 })).toBe('42');
    const boom = (await mcp.tool(agent, 'mcp__fixture__boom'))!;
    await expect(boom.run(ctx, {})).rejects.toMatchObject({ code: 'bad_request', message: 'boom: something broke' });
  }, 30_000);

  it('offers only what the agent lists and the server allow-list keeps', async () => {
    const agent = agentDef({ tools: ['mcp__fixture__echo'], mcpServers: [{ ...FIXTURE, tools: ['echo', 'add'] }] });
    expect((await mcp.specs(agent, agent.tools)).map((s) => s.name)).toEqual(['mcp__fixture__echo']);
    expect(await mcp.tool(agent, 'mcp__fixture__add')).toBeUndefined(); // allowed by the server, not listed by the agent
    expect(await mcp.tool(agent, 'mcp__other__echo')).toBeUndefined();
    expect(await mcp.specs(agent, [])).toEqual([]); // the planner's override: no MCP tools
  }, 30_000);

  it('turns an unreachable server into a tool error, not a crash', async () => {
    const agent = agentDef({ id: 'mcp-broken', mcpServers: [{ name: 'fixture', command: [process.execPath, '-e', 'process.exit(3)'] }] });
    expect(await mcp.specs(agent, agent.tools)).toEqual([]);
    const tool = (await mcp.tool(agent, 'mcp__fixture__echo'))!;
    await expect(tool.run(ctx, { text: 'x' })).rejects.toMatchObject({ code: 'bad_request' });
  }, 30_000);
});

describe('MCP tools in the guardrails and the registry', () => {
  const facts = (permissions: string[]) => ({ tool: 'mcp__fixture__echo', agent: { id: 'a', role: 'assistant', permissions }, paths: [] });
  const policy = { version: 1 as const, default: 'allow' as const, askAboveRisk: 70, rules: [] };

  it('needs the mcp permission, narrowable to servers', () => {
    expect(evaluate(facts(['mcp']), policy as never)).toMatchObject({ effect: 'allow', requiredPermissions: ['mcp'] });
    expect(evaluate(facts(['mcp:fix*']), policy as never).effect).toBe('allow');
    expect(evaluate(facts(['mcp:github']), policy as never)).toMatchObject({ effect: 'deny', stage: 'permission' });
    expect(evaluate(facts(['read']), policy as never)).toMatchObject({ effect: 'deny', stage: 'permission', reason: expect.stringContaining('"mcp"') });
  });

  it('validates server declarations and namespaced tool names', () => {
    expect(checkAgent(agentDef()).problems).toEqual([]);
    expect(checkAgent(agentDef({ tools: ['mcp__nope__echo'] })).problems).toMatchObject([{ path: 'tools.0', message: expect.stringContaining('does not declare') }]);
    expect(checkAgent(agentDef({ tools: ['mcp__fixture__add'], mcpServers: [{ ...FIXTURE, tools: ['echo'] }] })).problems).toMatchObject([{ path: 'tools.0' }]);
    expect(checkAgent(agentDef({ mcpServers: [{ name: 'fixture', command: ['x'], url: 'http://localhost:1/mcp' }] })).problems).toMatchObject([{ path: 'mcpServers.0' }]);
    expect(checkAgent(agentDef({ mcpServers: [{ name: 'fixture' }] })).problems).toMatchObject([{ path: 'mcpServers.0' }]);
    expect(checkAgent(agentDef({ mcpServers: [FIXTURE, FIXTURE] })).problems).toMatchObject([{ path: 'mcpServers.1.name' }]);
  });
});

describe('MCP tools in a session', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  async function runUntilAwaitingInput(agent: string) {
    const created = await stack.api('POST', '/v1/sessions', { goal: 'echo something', agent });
    expect(created.status).toBe(201);
    const id: string = created.body.id;
    const s = await stack.waitForStatus(id, (x) => x.status === 'blocked' || x.status === 'failed');
    expect(s).toMatchObject({ status: 'blocked', statusReason: 'awaiting_input' });
    return { id, rows: await stack.traceRows(id) };
  }

  it('stores mcpServers, offers the tools to the model, judges and traces every call', async () => {
    const created = await stack.api('POST', '/v1/agents', agentDef({ id: 'mcp-echoer' }));
    expect(created.status).toBe(201);
    expect(created.body.mcpServers).toEqual([FIXTURE]);
    expect((await stack.api('GET', '/v1/agents/mcp-echoer')).body.mcpServers).toEqual([FIXTURE]);

    const { rows } = await runUntilAwaitingInput('mcp-echoer');
    const context = rows.find((r) => r.type === 'model.context')!;
    expect(payload(context).tools).toEqual(expect.arrayContaining(['mcp__fixture__echo', 'mcp__fixture__add']));
    expect(rows.filter((r) => r.type === 'guardrail.decision').map(payload)).toMatchObject([{ tool: 'mcp__fixture__echo', effect: 'allow' }]);
    expect(rows.filter((r) => r.type === 'tool.called').map(payload)).toMatchObject([{ name: 'mcp__fixture__echo', input: { text: 'hello over mcp' } }]);
    expect(rows.filter((r) => r.type === 'tool.result').map(payload)).toMatchObject([{ content: 'hello over mcp', isError: false }]);
  }, 90_000);

  it('denies the tools to an agent without the mcp permission', async () => {
    await stack.agent('mcp-no-perm', 'mcp-echo', { tools: ['mcp__fixture__echo'], permissions: [], mcpServers: [FIXTURE] });
    const { rows } = await runUntilAwaitingInput('mcp-no-perm');
    expect(rows.filter((r) => r.type === 'guardrail.decision').map(payload)).toMatchObject([{ tool: 'mcp__fixture__echo', effect: 'deny', stage: 'permission' }]);
    expect(rows.filter((r) => r.type === 'tool.result').map(payload)).toMatchObject([{ isError: true, content: expect.stringContaining('lacks the "mcp" permission') }]);
  }, 90_000);

  it('rejects a tool of an undeclared server at registration', async () => {
    const res = await stack.api('POST', '/v1/agents', agentDef({ id: 'mcp-bad', tools: ['mcp__ghost__echo'] }));
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('ghost');
  });
});
