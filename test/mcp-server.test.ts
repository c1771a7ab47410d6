import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { Session, TraceEvent } from '../core/schemas';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
let client: Client;

async function connect(token: string | undefined): Promise<Client> {
  const c = new Client({ name: 'troupe-test', version: '1.0.0' });
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  await c.connect(new StreamableHTTPClientTransport(new URL(`${stack.baseUrl}/mcp`), { requestInit: { headers } }));
  return c;
}

async function call(name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

function text(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === 'text' ? first.text : '';
}

/** A raw JSON-RPC POST, as a misbehaving client would send it. */
async function rawPost(body: string, headers: Record<string, string> = { authorization: `Bearer ${stack.token}` }) {
  const res = await fetch(`${stack.baseUrl}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as { jsonrpc?: string; error?: { code: number; message: string }; id?: unknown } };
}

beforeAll(async () => {
  stack = await startStack();
  client = await connect(stack.token);
});
afterAll(async () => {
  await client?.close();
  await stack?.stop();
});

describe('the MCP server at /mcp', () => {
  it('lists its tools and the session trace resource template', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(
      ['cancel_session', 'close_session', 'decide_approval', 'get_session', 'list_agents', 'list_approvals', 'list_sessions', 'send_message', 'start_session'].sort(),
    );
    const start = tools.find((t) => t.name === 'start_session')!;
    expect(start.inputSchema.required).toEqual(['goal']);
    expect(Object.keys(start.inputSchema.properties ?? {})).toEqual(expect.arrayContaining(['goal', 'agent', 'project', 'repo', 'metadata']));
    const { resourceTemplates } = await client.listResourceTemplates();
    expect(resourceTemplates.map((t) => t.uriTemplate)).toEqual(['troupe://sessions/{id}/trace']);
  });

  it('runs a session: start, poll until it waits for input, send a message, read the trace, close', async () => {
    const agent = await stack.agent('mcp-notes', 'note-then-answer');
    const agents = await call('list_agents');
    expect(agents.isError).toBeFalsy();
    expect(JSON.parse(text(agents))).toEqual(expect.arrayContaining([expect.objectContaining({ id: agent })]));

    const started = await call('start_session', { goal: 'remember the plan', agent, metadata: { via: 'mcp' } });
    expect(started.isError).toBeFalsy();
    const session = started.structuredContent as Session;
    expect(session).toMatchObject({ goal: 'remember the plan', agentId: agent, metadata: { via: 'mcp' } });
    expect(session.id).toMatch(/^ses_/);

    const poll = async (until: (s: Session) => boolean) => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const got = await call('get_session', { id: session.id });
        expect(got.isError).toBeFalsy();
        const s = JSON.parse(text(got)) as Session;
        if (until(s)) return s;
        if (Date.now() > deadline) throw new Error(`session stuck at ${s.status}/${s.statusReason}`);
        await new Promise((r) => setTimeout(r, 150));
      }
    };
    const waiting = await poll((s) => s.status === 'blocked' && s.statusReason === 'awaiting_input');
    expect(waiting.finalAnswer).toBe('Done: remember the plan');

    const listed = await call('list_sessions', { limit: 5 });
    expect((listed.structuredContent as { data: Session[] }).data.map((s) => s.id)).toContain(session.id);

    const sent = await call('send_message', { id: session.id, content: 'and now the next step' });
    expect(sent.isError).toBeFalsy();
    const second = await poll((s) => s.status === 'blocked' && s.finalAnswer === 'Second answer: and now the next step');
    expect(second.statusReason).toBe('awaiting_input');

    const uri = `troupe://sessions/${session.id}/trace`;
    const read = await client.readResource({ uri });
    const content = read.contents[0]!;
    expect(content).toMatchObject({ uri, mimeType: 'application/json' });
    const trace = JSON.parse(String((content as { text: string }).text)) as { sessionId: string; events: TraceEvent[] };
    expect(trace.sessionId).toBe(session.id);
    expect(trace.events.map((e) => e.seq)).toEqual(trace.events.map((_, i) => i + 1));
    const types = trace.events.map((e) => e.type);
    expect(types[0]).toBe('session.started');
    expect(types).toContain('blackboard.written');
    expect(types.filter((t) => t === 'message.user')).toHaveLength(2);
    const { resources } = await client.listResources();
    expect(resources.map((r) => r.uri)).toContain(uri);

    const approvals = await call('list_approvals', { sessionId: session.id });
    expect(approvals.structuredContent).toEqual({ data: [] });

    const closed = await call('close_session', { id: session.id });
    expect(closed.isError).toBeFalsy();
    await stack.waitForStatus(session.id, (s) => s.status === 'done');
    const again = await call('send_message', { id: session.id, content: 'too late' });
    expect(again.isError).toBe(true);
    expect(text(again)).toMatch(/^conflict: cannot send a message/);
  });

  it('answers service errors as isError tool results, and bad arguments with an error naming the field', async () => {
    const missing = await call('get_session', { id: 'ses_nope' });
    expect(missing).toMatchObject({ isError: true, structuredContent: { error: { code: 'not_found' } } });
    expect(text(missing)).toBe('not_found: session ses_nope not found');

    const approval = await call('decide_approval', { id: 'apr_nope', decision: 'approve' });
    expect(approval.isError).toBe(true);
    expect(text(approval)).toMatch(/^not_found: approval apr_nope not found/);
    expect((await call('cancel_session', { id: 'ses_nope' })).isError).toBe(true);
    expect((await call('list_approvals', { sessionId: 'ses_nope' })).isError).toBe(true);

    const noGoal = await call('start_session', { agent: 'assistant' });
    expect(noGoal.isError).toBe(true);
    expect(text(noGoal)).toMatch(/Input validation error/);
    expect(text(noGoal)).toMatch(/goal/);
    const badDecision = await call('decide_approval', { id: 'apr_x', decision: 'maybe' });
    expect(badDecision.isError).toBe(true);
    expect(text(badDecision)).toMatch(/decision/);
    const unknownAgent = await call('start_session', { goal: 'x', agent: 'no-such-agent' });
    expect(text(unknownAgent)).toBe('bad_request: unknown agent "no-such-agent"');
    // An oversized prompt (over the schema's 200,000 characters, under the 1 MiB body limit) is a validation error too.
    const huge = await call('start_session', { goal: 'x'.repeat(200_001) });
    expect(huge.isError).toBe(true);
    expect(text(huge)).toMatch(/goal/);

    await expect(client.readResource({ uri: 'troupe://sessions/ses_nope/trace' })).rejects.toMatchObject({ code: -32002 });
  });

  it('gives protocol errors for unauthenticated calls, malformed JSON-RPC, unknown methods and oversized bodies', async () => {
    await expect(connect(undefined)).rejects.toMatchObject({ code: 401 });
    await expect(connect('wrong-token')).rejects.toMatchObject({ code: 401 });
    const unauth = await rawPost('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', {});
    expect(unauth.status).toBe(401);
    expect(unauth.body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32000, message: expect.stringMatching(/Authorization/) } });

    const notJson = await rawPost('{"jsonrpc": "2.0", "id": 1, "method": ');
    expect(notJson.status).toBe(400);
    expect(notJson.body).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
    const notRpc = await rawPost('{"hello":"world"}');
    expect(notRpc.status).toBe(400);
    expect(notRpc.body.error?.code).toBe(-32700);

    const unknown = await rawPost(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'sessions/teleport', params: {} }));
    expect(unknown.body).toMatchObject({ jsonrpc: '2.0', id: 7, error: { code: -32601 } });
    await expect(client.request({ method: 'sessions/teleport', params: {} }, z.object({}))).rejects.toMatchObject({ code: -32601 });

    const tooBig = await rawPost(JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'start_session', arguments: { goal: 'x'.repeat(1_100_000) } } }));
    expect(tooBig.status).toBe(413);
    expect(tooBig.body).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });

    const get = await fetch(`${stack.baseUrl}/mcp`, { headers: { authorization: `Bearer ${stack.token}`, accept: 'text/event-stream' } });
    expect(get.status).toBe(405);
    expect(await get.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });

    // The client still works after all that.
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
  });
});
