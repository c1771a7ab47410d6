/**
 * `troupe acp`: Troupe as an Agent Client Protocol agent over stdio, for editors such as Zed.
 *
 * One ACP session is one Troupe session, started lazily by the first prompt (its goal); later prompts are follow-up
 * messages. A prompt follows the session's trace events and turns them into `session/update` notifications (text,
 * tool calls with status, the plan of planner sessions), surfaces guardrail approvals as `session/request_permission`
 * and ends when the agent waits for input (`end_turn`), the session is cancelled (`cancelled`) or fails (a JSON-RPC
 * error). stdout carries the protocol only; diagnostics go to stderr.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import * as acp from '@agentclientprotocol/sdk';
import { ApiError, createApiClient, resolveConnection, type ApiClient } from '../lib/api-client';
import type { TraceEvent } from '../core/schemas';

/** The API refuses longer goals and messages (core/schemas.ts), so refuse them here with the protocol's own error. */
export const MAX_PROMPT_CHARS = 200_000;
/** How long a cancelled turn waits for the session to report `cancelled` before it answers anyway. */
const CANCEL_GRACE_MS = 5_000;
const PERMISSION_OPTIONS: acp.PermissionOption[] = [
  { optionId: 'allow', name: 'Allow', kind: 'allow_once' },
  { optionId: 'reject', name: 'Reject', kind: 'reject_once' },
];

type PlanItem = { taskId: string; content: string; status: acp.PlanEntryStatus };

type AcpSession = {
  id: string;
  cwd: string;
  repo: string | undefined;
  agent: string;
  troupeId: string | undefined;
  /** The last trace event seen: the next turn follows the stream after it. */
  lastSeq: number;
  turn: { abort: AbortController; cancelled: boolean } | undefined;
  /** Tool calls by toolUseId (name, input) for titles and to match approvals to their call. */
  toolCalls: Map<string, { name: string; input: unknown }>;
  plan: PlanItem[];
};

function log(...parts: unknown[]): void {
  process.stderr.write(`[troupe acp] ${parts.map((p) => (p instanceof Error ? p.message : typeof p === 'string' ? p : JSON.stringify(p))).join(' ')}\n`);
}

/** The git work tree `cwd` belongs to, or undefined when it is not in one. */
export function gitRoot(cwd: string): string | undefined {
  try {
    if (!path.isAbsolute(cwd) || !existsSync(cwd) || !statSync(cwd).isDirectory()) return undefined;
    const root = execFileSync('git', ['rev-parse', '--show-toplevel'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return root || undefined;
  } catch {
    return undefined;
  }
}

/** The prompt's text: text blocks, embedded text resources, and links as their URI. */
export function promptText(blocks: acp.ContentBlock[]): string {
  const parts: string[] = [];
  for (const b of blocks) {
    if (b.type === 'text') parts.push(b.text);
    else if (b.type === 'resource_link') parts.push(`[${b.name}](${b.uri})`);
    else if (b.type === 'resource' && 'text' in b.resource) parts.push(`${b.resource.uri}:\n${b.resource.text}`);
  }
  return parts.join('\n\n').trim();
}

function record(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return content === undefined || content === null ? '' : JSON.stringify(content);
  return content
    .map((c) => record(c))
    .filter((c) => c.type === 'text' && typeof c.text === 'string')
    .map((c) => c.text as string)
    .join('');
}

function toolKind(name: string): acp.ToolKind {
  if (/^(read_file|list_dir|git_diff|git_status|blackboard_read)$/.test(name)) return 'read';
  if (/^(write_file|edit_file|apply_patch|blackboard_write)$/.test(name)) return 'edit';
  if (name === 'search') return 'search';
  if (name === 'run_command') return 'execute';
  return 'other';
}

function toolTitle(name: string, input: unknown): string {
  const i = record(input);
  const detail = str(i.path) ?? str(i.key) ?? (Array.isArray(i.argv) ? i.argv.join(' ') : undefined) ?? str(i.query);
  return detail ? `${name} ${detail}`.slice(0, 200) : name;
}

export function createAcpAgent(api: ApiClient, opts: { defaultAgent?: string } = {}): acp.AgentApp {
  const sessions = new Map<string, AcpSession>();
  let counter = 0;

  function session(sessionId: string): AcpSession {
    const s = sessions.get(sessionId);
    if (!s) throw acp.RequestError.sessionNotFound(sessionId);
    return s;
  }

  /** Maps an API failure to a JSON-RPC error the editor can show (never a crash). */
  function rpcError(err: unknown): acp.RequestError {
    if (err instanceof acp.RequestError) return err;
    if (err instanceof ApiError) {
      if (err.status === 400) return acp.RequestError.invalidParams(err.details, err.message);
      return acp.RequestError.internalError({ status: err.status, code: err.code }, err.message);
    }
    return acp.RequestError.internalError(undefined, err instanceof Error ? err.message : String(err));
  }

  async function runTurn(s: AcpSession, text: string, client: acp.AgentContext, signal: AbortSignal): Promise<acp.StopReason> {
    const turn = { abort: new AbortController(), cancelled: false };
    const onAbort = () => turn.abort.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    s.turn = turn;
    const update = (u: acp.SessionUpdate) => client.notify(acp.methods.client.session.update, { sessionId: s.id, update: u });
    const sendPlan = () =>
      update({ sessionUpdate: 'plan', entries: s.plan.map((p) => ({ content: p.content, priority: 'medium', status: p.status })) });
    try {
      // Start the Troupe session (its goal is this prompt), or send the prompt as its next message.
      let fresh = s.troupeId === undefined;
      if (!fresh) {
        try {
          await api.sendMessage(s.troupeId!, text);
        } catch (err) {
          if (!(err instanceof ApiError && err.status === 409)) throw err;
          fresh = true; // the session ended (cancelled, failed, closed): carry on in a new one
        }
      }
      if (fresh) {
        const created = await api.startSession({ goal: text, agent: s.agent, ...(s.repo ? { repo: s.repo } : {}) });
        s.troupeId = created.id;
        s.lastSeq = 0;
        s.toolCalls.clear();
        s.plan = [];
      }
      const troupeId = s.troupeId!;
      if (turn.cancelled) await api.cancel(troupeId).catch((err: unknown) => log('cancel failed:', err));

      let streamed = false; // model.delta text sent since the last message.assistant
      const pendingAsk = new Map<string, string>(); // tool name → toolUseId of a call the guardrails asked about
      for (let reconnects = 0; ; ) {
        let progressed = false;
        for await (const e of api.events(troupeId, { after: s.lastSeq, signal: turn.abort.signal })) {
          progressed = true;
          s.lastSeq = Math.max(s.lastSeq, e.seq);
          const stop = await onEvent(e);
          if (stop) return stop;
        }
        if (turn.abort.signal.aborted) return 'cancelled';
        // The stream ended without the turn ending (a dropped connection): ask the session, then follow on.
        const now = await api.getSession(troupeId);
        if (now.status === 'blocked' && now.statusReason === 'awaiting_input') return 'end_turn';
        if (now.status === 'cancelled') return 'cancelled';
        if (now.status === 'failed') throw acp.RequestError.internalError({ sessionId: troupeId, reason: now.statusReason }, `the Troupe session failed: ${now.statusReason ?? 'unknown reason'}`);
        if (now.status === 'done') return 'end_turn';
        reconnects = progressed ? 0 : reconnects + 1;
        if (reconnects > 5) throw acp.RequestError.internalError({ sessionId: troupeId }, 'the Troupe event stream keeps ending');
        await new Promise((r) => setTimeout(r, 200 * reconnects));
      }

      async function onEvent(e: TraceEvent): Promise<acp.StopReason | undefined> {
        const p = record(e.payload);
        switch (e.type) {
          case 'model.delta': {
            const t = str(p.text);
            if (!e.taskId && t) {
              streamed = true;
              await update({ sessionUpdate: 'agent_message_chunk', content: { type: 'text', text: t } });
            }
            return undefined;
          }
          case 'message.assistant': {
            const t = textOf(p.content);
            if (!e.taskId && !streamed && t) await update({ sessionUpdate: 'agent_message_chunk', content: { type: 'text', text: t } });
            streamed = false;
            return undefined;
          }
          case 'tool.called': {
            const id = str(p.toolUseId) ?? `${e.seq}`;
            const name = str(p.name) ?? 'tool';
            s.toolCalls.set(id, { name, input: p.input });
            await update({ sessionUpdate: 'tool_call', toolCallId: id, title: toolTitle(name, p.input), kind: toolKind(name), status: 'pending', rawInput: p.input });
            return undefined;
          }
          case 'guardrail.decision': {
            const id = str(p.toolUseId);
            if (!id) return undefined;
            if (p.effect === 'ask') pendingAsk.set(str(p.tool) ?? '', id);
            else if (p.effect === 'allow') await update({ sessionUpdate: 'tool_call_update', toolCallId: id, status: 'in_progress' });
            return undefined;
          }
          case 'tool.result': {
            const id = str(p.toolUseId) ?? `${e.seq}`;
            const content = textOf(p.content);
            await update({
              sessionUpdate: 'tool_call_update',
              toolCallId: id,
              status: p.isError === true ? 'failed' : 'completed',
              ...(content ? { content: [{ type: 'content', content: { type: 'text', text: content } }] } : {}),
              rawOutput: p.content,
            });
            return undefined;
          }
          case 'approval.requested':
            await askPermission(p);
            return undefined;
          case 'plan.accepted': {
            const tasks = Array.isArray(p.tasks) ? p.tasks.map(record) : [];
            s.plan = [...s.plan.filter((t) => t.status !== 'pending'), ...tasks.map((t) => ({ taskId: str(t.taskId) ?? '', content: str(t.goal) ?? '', status: 'pending' as const }))];
            await sendPlan();
            return undefined;
          }
          case 'task.dispatched':
          case 'task.completed':
          case 'task.failed':
          case 'task.cancelled': {
            const item = s.plan.find((t) => t.taskId === str(p.taskId));
            if (!item) return undefined;
            item.status = e.type === 'task.dispatched' ? 'in_progress' : 'completed';
            if (e.type === 'task.failed' || e.type === 'task.cancelled') item.content = `${item.content} (${e.type === 'task.failed' ? 'failed' : 'cancelled'})`;
            await sendPlan();
            return undefined;
          }
          case 'state.mutated': {
            const to = record(p.status).to;
            const reason = record(p.statusReason).to;
            if (to === 'blocked' && reason === 'awaiting_input') return turn.cancelled ? 'cancelled' : 'end_turn';
            return undefined;
          }
          case 'session.ended': {
            if (p.status === 'cancelled' || turn.cancelled) return 'cancelled';
            if (p.status === 'failed') {
              throw acp.RequestError.internalError({ sessionId: troupeId, reason: p.reason }, `the Troupe session failed: ${str(p.reason) ?? 'unknown reason'}`);
            }
            return 'end_turn';
          }
          default:
            return undefined;
        }
      }

      async function askPermission(p: Record<string, unknown>): Promise<void> {
        const approvalId = str(p.approvalId);
        if (!approvalId) return;
        const tool = str(p.tool) ?? 'tool';
        const toolCallId = pendingAsk.get(tool) ?? `approval-${approvalId}`;
        pendingAsk.delete(tool);
        const decision = record(p.decision);
        const reason = str(decision.reason);
        const res = await client.request(
          acp.methods.client.session.requestPermission,
          {
            sessionId: s.id,
            toolCall: {
              toolCallId,
              title: toolTitle(tool, p.input),
              kind: toolKind(tool),
              status: 'pending',
              rawInput: p.input,
              ...(reason ? { content: [{ type: 'content', content: { type: 'text', text: `Guardrails ask: ${reason}` } }] } : {}),
            },
            options: PERMISSION_OPTIONS,
          },
          { cancellationSignal: turn.abort.signal },
        );
        if (turn.cancelled || res.outcome.outcome === 'cancelled') return; // the session is being cancelled
        const approve = res.outcome.optionId === 'allow';
        await api
          .decideApproval(approvalId, { decision: approve ? 'approve' : 'deny', by: 'acp', ...(approve ? {} : { reason: 'rejected in the editor' }) })
          .catch((err: unknown) => log(`deciding approval ${approvalId} failed:`, err));
      }
    } catch (err) {
      if (turn.abort.signal.aborted) return 'cancelled';
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (s.turn === turn) s.turn = undefined;
    }
  }

  return acp
    .agent({ name: 'troupe' })
    .onRequest(acp.methods.agent.initialize, () => ({
      protocolVersion: acp.PROTOCOL_VERSION,
      agentCapabilities: { loadSession: false, promptCapabilities: { image: false, audio: false, embeddedContext: true } },
      agentInfo: { name: 'troupe', title: 'Troupe', version: '0.1.0' },
      authMethods: [],
    }))
    .onRequest(acp.methods.agent.session.new, ({ params }) => {
      const id = `acp-${process.pid}-${++counter}`;
      const repo = gitRoot(params.cwd);
      sessions.set(id, {
        id,
        cwd: params.cwd,
        repo,
        agent: opts.defaultAgent ?? process.env.TROUPE_ACP_AGENT ?? 'assistant',
        troupeId: undefined,
        lastSeq: 0,
        turn: undefined,
        toolCalls: new Map(),
        plan: [],
      });
      log(`session ${id} in ${params.cwd}${repo ? ` (repository ${repo})` : ''}`);
      return { sessionId: id };
    })
    .onRequest(acp.methods.agent.session.prompt, async ({ params, client, signal }) => {
      const s = session(params.sessionId);
      if (s.turn) throw acp.RequestError.invalidRequest({ sessionId: s.id }, 'a prompt is already running in this session');
      const text = promptText(params.prompt);
      if (!text) throw acp.RequestError.invalidParams({ sessionId: s.id }, 'the prompt has no text');
      if (text.length > MAX_PROMPT_CHARS) throw acp.RequestError.invalidParams({ sessionId: s.id, maxChars: MAX_PROMPT_CHARS, chars: text.length }, `the prompt is longer than ${MAX_PROMPT_CHARS} characters`);
      try {
        const stopReason = await runTurn(s, text, client, signal);
        return { stopReason, _meta: { 'troupe/sessionId': s.troupeId ?? null } };
      } catch (err) {
        log(`prompt in ${s.id} failed:`, err);
        throw rpcError(err);
      }
    })
    .onNotification(acp.methods.agent.session.cancel, async ({ params }) => {
      const s = sessions.get(params.sessionId);
      const turn = s?.turn;
      if (!s || !turn) return;
      turn.cancelled = true;
      // The turn ends when the session reports `cancelled`; if it never does, stop following it anyway.
      setTimeout(() => turn.abort.abort(), CANCEL_GRACE_MS).unref();
      if (s.troupeId) await api.cancel(s.troupeId).catch((err: unknown) => log(`cancelling ${s.troupeId} failed:`, err));
    });
}

/** Serves ACP on stdin/stdout until the editor closes the connection. */
export async function runAcp(opts: { url?: string; token?: string } = {}): Promise<void> {
  const conn = resolveConnection(opts);
  if (!conn.token) log('no API token found (TROUPE_API_TOKEN or .data/api-token): requests will be refused');
  const api = createApiClient({ baseUrl: conn.baseUrl, ...(conn.token ? { token: conn.token } : {}) });
  const stream = acp.ndJsonStream(
    Writable.toWeb(process.stdout) as WritableStream<Uint8Array>,
    Readable.toWeb(process.stdin) as unknown as ReadableStream<Uint8Array>,
  );
  const connection = createAcpAgent(api).connect(stream);
  log(`serving ACP on stdio against ${conn.baseUrl}`);
  await connection.closed;
}
