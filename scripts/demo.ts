/**
 * `npm run demo`: runs a sample session through the HTTP API of a running stack (`npm start` in another terminal)
 * and prints its streamed events. TROUPE_API_URL (default http://127.0.0.1:8080) and TROUPE_API_TOKEN (default: the
 * first of TROUPE_API_TOKENS, else the token `npm start` generated and saved in .data/api-token).
 * `npm run demo -- --agent planner` runs a multi-agent session instead and prints its task tree.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readSse } from '../lib/sse-client';
import type { TraceEvent } from '../core/schemas';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const baseUrl = (process.env.TROUPE_API_URL ?? `http://127.0.0.1:${process.env.PORT ?? 8080}`).replace(/\/$/, '');
const tokenFile = path.join(ROOT, '.data', 'api-token');
const token =
  process.env.TROUPE_API_TOKEN ??
  process.env.TROUPE_API_TOKENS?.split(',')[0]?.trim() ??
  (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined);
if (!token) {
  console.error('No API token: set TROUPE_API_TOKEN, or start the stack with `npm start` (it saves its token in .data/api-token).');
  process.exit(2);
}
const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

async function call(method: string, route: string, body?: unknown) {
  const res = await fetch(baseUrl + route, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = (await res.json()) as any;
  if (!res.ok) throw new Error(`${method} ${route} -> ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

function describe(e: TraceEvent): string {
  const p = e.payload as any;
  switch (e.type) {
    case 'model.delta':
      return `  … ${JSON.stringify(p.text)}`;
    case 'message.user':
      return `user: ${p.content}`;
    case 'message.assistant':
      return `assistant (${p.model}, ${p.usage.inputTokens}+${p.usage.outputTokens} tokens, ${p.stopReason})`;
    case 'tool.called':
      return `tool call ${p.name} ${JSON.stringify(p.input)}`;
    case 'tool.result':
      return `tool result${p.isError ? ' (error)' : ''}: ${p.content}`;
    case 'workflow.node.enter':
      return `→ ${p.kind}`;
    case 'workflow.node.exit':
      return `← ${p.kind} (${p.result})`;
    case 'plan.accepted':
      return `plan: ${p.tasks.map((t: any) => `${t.planKey}${t.dependsOn.length ? ` (after ${t.dependsOn.length})` : ''}`).join(', ')}`;
    case 'task.routed':
      return `${p.planKey} → ${p.agent} v${p.version} (by ${p.by})`;
    case 'task.dispatched':
    case 'task.completed':
    case 'task.failed':
    case 'task.retrying':
    case 'task.cancelled':
      return `${p.planKey} ${p.status}${p.agent ? ` (${p.agent})` : ''}${p.reason ? `: ${p.reason}` : ''}`;
    case 'message.task':
      return `${p.agent} v${p.version} gets task ${p.taskId} (attempt ${p.attempt})`;
    case 'handoff':
      return `${p.planKey}: ${p.from} → ${p.to} (${p.reason})`;
    case 'model.context':
      return `${e.actor} is sent ${p.messages.length} new message(s), ${p.blackboard.length} blackboard entr${p.blackboard.length === 1 ? 'y' : 'ies'}`;
    case 'state.mutated':
      return `status ${p.status.from} → ${p.status.to}${p.statusReason.to ? ` (${p.statusReason.to})` : ''}`;
    default:
      return JSON.stringify(p);
  }
}

/** Prints events from `after` until the session waits for input or ends; returns the last seq. */
async function follow(id: string, after: number): Promise<number> {
  const abort = new AbortController();
  let last = after;
  for await (const msg of readSse(`${baseUrl}/v1/sessions/${id}/events?after=${after}`, { headers, signal: abort.signal })) {
    const e = JSON.parse(msg.data) as TraceEvent;
    last = e.seq;
    console.log(`${String(e.seq).padStart(4)} ${e.type.padEnd(20)} ${describe(e)}`);
    const p = e.payload as any;
    if (e.type === 'session.ended' || (e.type === 'state.mutated' && p.statusReason.to === 'awaiting_input')) break;
  }
  abort.abort();
  return last;
}

function printTree(nodes: any[], indent = ''): void {
  for (const t of nodes) {
    console.log(`${indent}${t.planKey === 'root' ? 'round ' + t.round : t.planKey} [${t.status}] ${t.assignedAgent ?? ''} — ${t.goal.split('\n')[0]}`);
    printTree(t.children, indent + '  ');
  }
}

async function main() {
  console.log(`Troupe demo against ${baseUrl}\n`);
  const agentFlag = process.argv.indexOf('--agent');
  const agent = agentFlag > 0 ? process.argv[agentFlag + 1] : process.env.DEMO_AGENT;
  if (agent) {
    const session = await call('POST', '/v1/sessions', { goal: 'Add a --verbose flag to the CLI and review the change.', agent, metadata: { source: 'demo' } });
    console.log(`session ${session.id} started with agent ${session.agentId}\n`);
    const seq = await follow(session.id, 0);
    console.log('\ntask tree:');
    printTree((await call('GET', `/v1/sessions/${session.id}/tasks`)).data);
    await call('POST', `/v1/sessions/${session.id}/close`);
    await follow(session.id, seq);
    const final = await call('GET', `/v1/sessions/${session.id}`);
    console.log(`\nsession ${final.id}: ${final.status} (${final.statusReason}); answer: ${final.finalAnswer}`);
    return;
  }
  const session = await call('POST', '/v1/sessions', { goal: 'Note that this project is written in TypeScript.', metadata: { source: 'demo' } });
  console.log(`session ${session.id} started with agent ${session.agentId}\n`);
  let seq = await follow(session.id, 0);
  console.log('\nsending a second message…\n');
  await call('POST', `/v1/sessions/${session.id}/messages`, { content: 'Which notes are on the blackboard?' });
  seq = await follow(session.id, seq);
  await call('POST', `/v1/sessions/${session.id}/close`);
  await follow(session.id, seq);
  const final = await call('GET', `/v1/sessions/${session.id}`);
  console.log(`\nsession ${final.id}: ${final.status} (${final.statusReason}); answer: ${final.finalAnswer}`);
  console.log(`events: ${baseUrl}/v1/sessions/${final.id}/events — Temporal UI: http://127.0.0.1:8233/namespaces/default/workflows/${final.id}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
