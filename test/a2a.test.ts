import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Role, TaskState, type Message, type StreamResponse, type Task } from '@a2a-js/sdk';
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory, type Client } from '@a2a-js/sdk/client';
import { isJsonRpcError } from '@a2a-js/sdk/errors';
import { startStack, type Stack } from './support/stack';

let stack: Stack;
let client: Client;

function userMessage(text: string, opts: { taskId?: string; agent?: string } = {}): Message {
  return {
    messageId: randomUUID(),
    contextId: '',
    taskId: opts.taskId ?? '',
    role: Role.ROLE_USER,
    parts: [{ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: 'text/plain' }],
    metadata: opts.agent ? { agent: opts.agent } : undefined,
    extensions: [],
    referenceTaskIds: [],
  };
}

const send = (message: Message, returnImmediately = false) =>
  client.sendMessage({ tenant: '', message, configuration: { acceptedOutputModes: ['text/plain'], taskPushNotificationConfig: undefined, returnImmediately }, metadata: undefined });

function asTask(result: Message | Task): Task {
  if (!('status' in result)) throw new Error(`expected a task, got a message: ${JSON.stringify(result)}`);
  return result;
}

const statusText = (task: Task) => {
  const part = task.status?.message?.parts[0]?.content;
  return part?.$case === 'text' ? part.value : undefined;
};

/** A raw JSON-RPC POST to /a2a, as a misbehaving client would send it. */
async function rawPost(body: string, headers: Record<string, string> = { authorization: `Bearer ${stack.token}` }) {
  const res = await fetch(`${stack.baseUrl}/a2a`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as { jsonrpc?: string; error?: { code: number; message: string }; id?: unknown } };
}

beforeAll(async () => {
  stack = await startStack();
  const authFetch: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${stack.token}`);
    return fetch(input, { ...init, headers });
  };
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, { transports: [new JsonRpcTransportFactory({ fetchImpl: authFetch })] }));
  client = await factory.createFromUrl(stack.baseUrl);
});
afterAll(async () => {
  await stack?.stop();
});

describe('the A2A server', () => {
  it('serves a public agent card at the well-known paths', async () => {
    const card = await client.getAgentCard();
    expect(card.name).toBe('Troupe');
    expect(card.capabilities?.streaming).toBe(true);
    expect(card.supportedInterfaces[0]).toMatchObject({ url: `${stack.baseUrl}/a2a`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' });
    expect(card.skills.map((s) => s.id)).toEqual(['session', 'coding']);
    const raw = await fetch(`${stack.baseUrl}/.well-known/agent-card.json`);
    expect(raw.status).toBe(200);
    const json = (await raw.json()) as { securitySchemes: Record<string, unknown> };
    expect(Object.keys(json.securitySchemes)).toEqual(['bearer']);
    expect((await fetch(`${stack.baseUrl}/.well-known/agent.json`)).status).toBe(200);
  });

  it('message/send starts a session and answers input-required; tasks/get returns it; a follow-up gets the second answer', async () => {
    const agent = await stack.agent('a2a-notes', 'note-then-answer');
    const task = asTask(await send(userMessage('remember the plan', { agent })));
    expect(task.id).toMatch(/^ses_/);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    expect(statusText(task)).toBe('Done: remember the plan');
    expect(task.artifacts[0]?.name).toBe('answer');

    const got = await client.getTask({ tenant: '', id: task.id });
    expect(got).toMatchObject({ id: task.id, status: { state: TaskState.TASK_STATE_INPUT_REQUIRED } });
    expect(statusText(got)).toBe('Done: remember the plan');
    const session = await stack.sessions.get(task.id);
    expect(session).toMatchObject({ status: 'blocked', statusReason: 'awaiting_input', agentId: agent, goal: 'remember the plan' });

    const second = asTask(await send(userMessage('and then?', { taskId: task.id })));
    expect(second.id).toBe(task.id);
    expect(second.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    expect(statusText(second)).toBe('Second answer: and then?');
  });

  it('message/stream yields the task, status updates and the answer, ending in input-required', async () => {
    const agent = await stack.agent('a2a-stream', 'note-then-answer');
    const events: StreamResponse[] = [];
    for await (const event of client.sendMessageStream({
      tenant: '',
      message: userMessage('stream it', { agent }),
      configuration: undefined,
      metadata: undefined,
    })) {
      events.push(event);
    }
    const kinds = events.map((e) => e.payload?.$case);
    expect(kinds[0]).toBe('task');
    expect(kinds).toContain('statusUpdate');
    expect(kinds).toContain('artifactUpdate');
    const states = events.flatMap((e) => (e.payload?.$case === 'statusUpdate' ? [e.payload.value.status?.state] : []));
    expect(states).toContain(TaskState.TASK_STATE_WORKING);
    expect(states.at(-1)).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    // The agent's interim text (before its tool call) streams as a working update.
    const interim = events.flatMap((e) => (e.payload?.$case === 'statusUpdate' && e.payload.value.status?.state === TaskState.TASK_STATE_WORKING ? [e.payload.value.status.message?.parts[0]?.content] : []));
    expect(interim).toContainEqual({ $case: 'text', value: 'Let me note that.' });
    const last = events.at(-1)?.payload;
    expect(last?.$case === 'statusUpdate' && last.value.status?.message?.parts[0]?.content).toEqual({ $case: 'text', value: 'Done: stream it' });
  });

  it('tasks/cancel cancels a slow session', async () => {
    const agent = await stack.agent('a2a-slow', 'slow');
    const task = asTask(await send(userMessage('take your time', { agent }), true));
    expect([TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING]).toContain(task.status?.state);
    await stack.waitForStatus(task.id, (s) => s.status === 'running');
    const canceled = await client.cancelTask({ tenant: '', id: task.id, metadata: undefined });
    expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    expect((await client.getTask({ tenant: '', id: task.id })).status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    // An ended task takes no more messages and cannot be canceled again.
    await expect(send(userMessage('still there?', { taskId: task.id }))).rejects.toSatisfy((e) => isJsonRpcError(e) && e.envelopeCode === -32004);
    await expect(client.cancelTask({ tenant: '', id: task.id, metadata: undefined })).rejects.toSatisfy((e) => isJsonRpcError(e) && e.envelopeCode === -32002);
  });

  it('answers protocol errors in the protocol shape', async () => {
    await expect(client.getTask({ tenant: '', id: 'ses_doesnotexist' })).rejects.toSatisfy((e) => isJsonRpcError(e) && e.envelopeCode === -32001);

    // v0.3 method names (no A2A-Version header) go through the SDK's compatibility layer.
    const unknownTask = await rawPost(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tasks/get', params: { id: 'ses_nope' } }));
    expect(unknownTask).toMatchObject({ status: 200, body: { jsonrpc: '2.0', id: 1, error: { code: -32001 } } });

    const malformed = await rawPost('{"jsonrpc": "2.0", "id": 1, "method": ');
    expect(malformed).toMatchObject({ status: 200, body: { jsonrpc: '2.0', id: null, error: { code: -32700 } } });

    const unknownV03 = await rawPost(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tasks/frobnicate', params: {} }));
    expect(unknownV03.body).toMatchObject({ jsonrpc: '2.0', id: 2, error: { code: -32601 } });
    const unknownV1 = await rawPost(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'Frobnicate', params: {} }), { authorization: `Bearer ${stack.token}`, 'A2A-Version': '1.0' });
    expect(unknownV1.body).toMatchObject({ jsonrpc: '2.0', id: 3, error: { code: -32601 } });

    const noToken = await rawPost(JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tasks/get', params: { id: 'x' } }), {});
    expect(noToken.status).toBe(401);
    expect(noToken.body).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });
    const badToken = await rawPost(JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tasks/get', params: { id: 'x' } }), { authorization: 'Bearer wrong' });
    expect(badToken.status).toBe(401);
  });
});
