/**
 * `troupe acp` end to end: the SDK's client side drives the ACP agent as a child process over its stdio, against a real
 * Troupe stack (API, worker, Temporal, Postgres) with scripted agents.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as acp from '@agentclientprotocol/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitRoot, MAX_PROMPT_CHARS, promptText } from '../cli/acp';
import { makeRepo } from './support/repo';
import { startStack, type Stack } from './support/stack';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let stack: Stack;
const children: ChildProcessWithoutNullStreams[] = [];

beforeAll(async () => {
  stack = await startStack({ config: { workspacesDir: mkdtempSync(path.join(os.tmpdir(), 'troupe-ws-')) } });
  await stack.agent('acp-note', 'note-then-answer');
  await stack.agent('acp-slow', 'slow');
  await stack.agent('acp-env', 'write-env', { role: 'test-coder', tools: ['write_file'], permissions: ['read', 'write'], memoryScope: 'none' });
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill();
  await stack?.stop();
});

/** `troupe acp` as a child process with its agent from TROUPE_ACP_AGENT. */
function spawnAgent(agent: string) {
  // The real binary, as an editor would start it: `troupe acp --url … --token …`.
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'troupe'), 'acp', '--url', stack.baseUrl, '--token', stack.token], {
    cwd: ROOT,
    env: { ...process.env, TROUPE_ACP_AGENT: agent },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, stderr: () => stderr };
}

/** The SDK's client app connected to a child agent; records updates and answers permission requests. */
function connectClient(agent: string, permission: (req: acp.RequestPermissionRequest) => acp.RequestPermissionResponse = () => ({ outcome: { outcome: 'cancelled' } })) {
  const proc = spawnAgent(agent);
  const updates: acp.SessionNotification[] = [];
  const permissions: acp.RequestPermissionRequest[] = [];
  const app = acp
    .client({ name: 'acp-test' })
    .onNotification(acp.methods.client.session.update, ({ params }) => {
      updates.push(params);
    })
    .onRequest(acp.methods.client.session.requestPermission, ({ params }) => {
      permissions.push(params);
      return permission(params);
    });
  const stream = acp.ndJsonStream(Writable.toWeb(proc.child.stdin), Readable.toWeb(proc.child.stdout) as unknown as ReadableStream<Uint8Array>);
  const conn = app.connect(stream);
  return { ...proc, conn, agent: conn.agent, updates, permissions };
}

async function initialize(agent: acp.ClientContext) {
  return agent.request(acp.methods.agent.initialize, { protocolVersion: acp.PROTOCOL_VERSION, clientCapabilities: {} });
}

const of = <K extends acp.SessionUpdate['sessionUpdate']>(updates: acp.SessionNotification[], kind: K) =>
  updates.map((u) => u.update).filter((u): u is Extract<acp.SessionUpdate, { sessionUpdate: K }> => u.sessionUpdate === kind);
const text = (updates: acp.SessionNotification[]) =>
  of(updates, 'agent_message_chunk')
    .map((u) => (u.content.type === 'text' ? u.content.text : ''))
    .join('');

describe('troupe acp', () => {
  it('reads prompts and finds the repository of the editor cwd', () => {
    expect(promptText([{ type: 'text', text: 'fix it' }, { type: 'resource_link', name: 'a.ts', uri: 'file:///r/a.ts' }])).toBe('fix it\n\n[a.ts](file:///r/a.ts)');
    const repo = makeRepo();
    expect(gitRoot(path.join(repo, 'src'))).toBe(repo);
    expect(gitRoot(mkdtempSync(path.join(os.tmpdir(), 'troupe-norepo-')))).toBeUndefined();
    expect(gitRoot('relative/path')).toBeUndefined();
  });

  it('initializes, streams a turn with a tool call and the answer, and answers follow-up prompts in the same session', async () => {
    const c = connectClient('acp-note');
    try {
      const init = await initialize(c.agent);
      expect(init.protocolVersion).toBe(acp.PROTOCOL_VERSION);
      expect(init.agentInfo?.name).toBe('troupe');

      const { sessionId } = await c.agent.request(acp.methods.agent.session.new, { cwd: os.tmpdir(), mcpServers: [] });
      const first = await c.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: 'text', text: 'plan the trip' }] });
      expect(first.stopReason, c.stderr()).toBe('end_turn');
      expect(text(c.updates).split('Done: plan the trip')).toHaveLength(2); // streamed once, not again from message.assistant
      const [call] = of(c.updates, 'tool_call');
      expect(call).toMatchObject({ title: 'blackboard_write goal', kind: 'edit', rawInput: { key: 'goal', value: 'remember this' } });
      const results = of(c.updates, 'tool_call_update').filter((u) => u.toolCallId === call!.toolCallId);
      expect(results.at(-1)).toMatchObject({ status: 'completed' });
      expect(c.updates.every((u) => u.sessionId === sessionId)).toBe(true);

      const troupeId = first._meta?.['troupe/sessionId'] as string;
      expect((await stack.api('GET', `/v1/sessions/${troupeId}`)).body).toMatchObject({ goal: 'plan the trip', agentId: 'acp-note', repo: null, status: 'blocked' });

      c.updates.length = 0;
      const second = await c.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: 'text', text: 'and then?' }] });
      expect(second.stopReason).toBe('end_turn');
      expect(second._meta?.['troupe/sessionId']).toBe(troupeId);
      expect(text(c.updates)).toContain('Second answer: and then?');
      expect(text(c.updates)).not.toContain('Done:');
    } finally {
      c.conn.close();
    }
  });

  it('asks the editor for permission when the guardrails ask, approves through the API, and the tool call completes', async () => {
    const repo = makeRepo();
    const c = connectClient('acp-env', () => ({ outcome: { outcome: 'selected', optionId: 'allow' } }));
    try {
      await initialize(c.agent);
      const { sessionId } = await c.agent.request(acp.methods.agent.session.new, { cwd: path.join(repo, 'src'), mcpServers: [] });
      const res = await c.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: 'text', text: 'add a .env' }] });
      expect(res.stopReason, c.stderr()).toBe('end_turn');

      expect(c.permissions).toHaveLength(1);
      const asked = c.permissions[0]!;
      expect(asked.sessionId).toBe(sessionId);
      expect(asked.options.map((o) => o.optionId)).toEqual(['allow', 'reject']);
      const [call] = of(c.updates, 'tool_call');
      expect(call).toMatchObject({ title: 'write_file .env', kind: 'edit', status: 'pending' });
      expect(asked.toolCall.toolCallId).toBe(call!.toolCallId);
      const statuses = of(c.updates, 'tool_call_update').filter((u) => u.toolCallId === call!.toolCallId).map((u) => u.status);
      expect(statuses.at(-1)).toBe('completed');
      expect(text(c.updates)).toContain('Result: add a .env');

      const troupeId = res._meta?.['troupe/sessionId'] as string;
      expect((await stack.api('GET', `/v1/sessions/${troupeId}`)).body.repo).toBe(repo);
      const approvals = (await stack.api('GET', `/v1/sessions/${troupeId}/approvals`)).body.data;
      expect(approvals).toMatchObject([{ status: 'approved', decidedBy: 'acp' }]);
    } finally {
      c.conn.close();
    }
  });

  it('denies through the API when the editor rejects: the tool call fails and the agent carries on', async () => {
    const repo = makeRepo();
    const c = connectClient('acp-env', () => ({ outcome: { outcome: 'selected', optionId: 'reject' } }));
    try {
      await initialize(c.agent);
      const { sessionId } = await c.agent.request(acp.methods.agent.session.new, { cwd: repo, mcpServers: [] });
      const res = await c.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: 'text', text: 'add a .env' }] });
      expect(res.stopReason, c.stderr()).toBe('end_turn');
      expect(c.permissions).toHaveLength(1);
      const [call] = of(c.updates, 'tool_call');
      expect(of(c.updates, 'tool_call_update').filter((u) => u.toolCallId === call!.toolCallId).at(-1)).toMatchObject({ status: 'failed' });
      const troupeId = res._meta?.['troupe/sessionId'] as string;
      expect((await stack.api('GET', `/v1/sessions/${troupeId}/approvals`)).body.data).toMatchObject([{ status: 'denied', decidedBy: 'acp' }]);
    } finally {
      c.conn.close();
    }
  });

  it('cancels the Troupe session on session/cancel and ends the prompt with stopReason cancelled', async () => {
    const c = connectClient('acp-slow');
    try {
      await initialize(c.agent);
      const { sessionId } = await c.agent.request(acp.methods.agent.session.new, { cwd: os.tmpdir(), mcpServers: [] });
      const prompt = c.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: 'text', text: 'take your time' }] });
      await new Promise((r) => setTimeout(r, 1_500));
      await c.agent.notify(acp.methods.agent.session.cancel, { sessionId });
      const res = await prompt;
      expect(res.stopReason, c.stderr()).toBe('cancelled');
      const troupeId = res._meta?.['troupe/sessionId'] as string;
      await stack.waitForStatus(troupeId, (s) => s.status === 'cancelled', 20_000);
    } finally {
      c.conn.close();
    }
  });

  it('answers unknown sessions and oversized prompts with JSON-RPC errors and keeps serving', async () => {
    const c = connectClient('acp-note');
    try {
      await initialize(c.agent);
      const unknown = await c.agent.request(acp.methods.agent.session.prompt, { sessionId: 'nope', prompt: [{ type: 'text', text: 'hi' }] }).catch((e: unknown) => e);
      expect(unknown).toMatchObject({ code: -32002, data: { sessionId: 'nope' } });

      const { sessionId } = await c.agent.request(acp.methods.agent.session.new, { cwd: os.tmpdir(), mcpServers: [] });
      const big = await c.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: 'text', text: 'x'.repeat(MAX_PROMPT_CHARS + 1) }] }).catch((e: unknown) => e);
      expect(big).toMatchObject({ code: -32602 });
      const empty = await c.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [] }).catch((e: unknown) => e);
      expect(empty).toMatchObject({ code: -32602 });

      const ok = await c.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: 'text', text: 'still here' }] });
      expect(ok.stopReason).toBe('end_turn');
      expect(text(c.updates)).toContain('Done: still here');
    } finally {
      c.conn.close();
    }
  });

  it('survives malformed lines and unknown methods on stdin: protocol errors, then the next request is answered', async () => {
    const { child, stderr } = spawnAgent('acp-note');
    const lines: Record<string, unknown>[] = [];
    let buffer = '';
    child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      }
    });
    const waitFor = async (pred: (m: Record<string, unknown>) => boolean) => {
      const deadline = Date.now() + 20_000;
      while (!lines.some(pred)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no such message; got ${JSON.stringify(lines)}; stderr ${stderr()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return lines.find(pred)!;
    };
    const send = (s: string) => child.stdin.write(s + '\n');

    send('this is not json {');
    send('[1, 2]');
    send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: acp.PROTOCOL_VERSION, clientCapabilities: {} } }));
    expect(await waitFor((m) => (m.error as { code?: number } | undefined)?.code === -32700)).toMatchObject({ id: null });
    expect(await waitFor((m) => (m.error as { code?: number } | undefined)?.code === -32600)).toMatchObject({ id: null });
    expect(await waitFor((m) => m.id === 1)).toMatchObject({ result: { protocolVersion: acp.PROTOCOL_VERSION } });

    send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'no/such_method', params: {} }));
    send(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'session/new', params: { cwd: 42 } }));
    send('{"jsonrpc": "2.0", "id": 5, "method": "session/prompt", "params": {"sessionId": "ghost", "prompt": [{"type": "text"');
    send(JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'session/prompt', params: { sessionId: 'ghost', prompt: [{ type: 'text', text: 'hi' }] } }));
    send(JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'session/new', params: { cwd: os.tmpdir(), mcpServers: [] } }));

    expect(await waitFor((m) => m.id === 2)).toMatchObject({ error: { code: -32601 } });
    expect(await waitFor((m) => m.id === 3)).toMatchObject({ error: { code: -32602 } });
    expect(await waitFor((m) => m.id === 6)).toMatchObject({ error: { code: -32002, data: { sessionId: 'ghost' } } });
    expect(await waitFor((m) => m.id === 4)).toMatchObject({ result: { sessionId: expect.any(String) } });
    expect(lines.filter((m) => (m.error as { code?: number } | undefined)?.code === -32700)).toHaveLength(2); // the garbage and the cut-off line
    expect(child.exitCode).toBeNull();

    child.stdin.end();
    const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
    expect(code, stderr()).toBe(0);
  });
});
