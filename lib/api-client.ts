/**
 * A typed client for Troupe's HTTP API (used by the CLI, the ACP bridge and scripts). Errors of the API
 * (`{ error: { code, message, details? } }`) are thrown as `ApiError`; `events()` follows a session's Server-Sent
 * Events stream as parsed trace events.
 *
 * `resolveConnection()` finds the API: `TROUPE_API_URL` (default http://127.0.0.1:$PORT, PORT default 8080) and
 * `TROUPE_API_TOKEN` (else the first of `TROUPE_API_TOKENS`, else the token `npm start` saved in `.data/api-token`).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  AgentDefinition,
  ApprovalStatus,
  ApprovalView,
  CreateSessionBody,
  Session,
  SessionStatus,
  TaskNode,
  TraceEvent,
  VersionedAgent,
} from '../core/schemas';
import { readSse } from './sse-client';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const TOKEN_FILE = path.join(PROJECT_ROOT, '.data', 'api-token');

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type Connection = { baseUrl: string; token: string | undefined };

/** Flags win over the environment, the environment over `.data/api-token`. `token` is undefined when none is found. */
export function resolveConnection(opts: { url?: string; token?: string; env?: NodeJS.ProcessEnv; tokenFile?: string } = {}): Connection {
  const env = opts.env ?? process.env;
  const baseUrl = (opts.url ?? env.TROUPE_API_URL ?? `http://127.0.0.1:${env.PORT ?? 8080}`).replace(/\/+$/, '');
  const tokenFile = opts.tokenFile ?? TOKEN_FILE;
  const fromList = env.TROUPE_API_TOKENS?.split(',')[0]?.trim();
  const token =
    opts.token ??
    (env.TROUPE_API_TOKEN || undefined) ??
    (fromList || undefined) ??
    (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() || undefined : undefined);
  return { baseUrl, token };
}

export type SessionPage = { data: Session[]; nextCursor: string | null };
export type ListSessionsParams = { limit?: number; cursor?: string; status?: SessionStatus };
export type AgentView = VersionedAgent & { source?: string; createdAt?: string; updatedAt?: string };
export type ApplyAgentResult = { change: 'created' | 'updated' | 'unchanged'; agent: AgentView };
export type DecideBody = { decision: 'approve' | 'deny'; reason?: string; by?: string };

export type ApiClientOptions = { baseUrl: string; token?: string; fetch?: typeof fetch };

export function createApiClient(opts: ApiClientOptions) {
  const baseUrl = opts.baseUrl.replace(/\/+$/, '');
  const doFetch = opts.fetch ?? fetch;
  const auth: Record<string, string> = opts.token ? { authorization: `Bearer ${opts.token}` } : {};
  const enc = encodeURIComponent;

  async function request<T>(method: string, route: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const headers: Record<string, string> = { ...auth, accept: 'application/json' };
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = contentType;
      payload = typeof body === 'string' && contentType !== 'application/json' ? body : JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await doFetch(baseUrl + route, { method, headers, body: payload });
    } catch (err) {
      const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new ApiError(0, 'unreachable', `cannot reach the Troupe API at ${baseUrl}: ${cause}`);
    }
    const text = await res.text();
    let json: unknown = undefined;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string; details?: unknown } } | undefined)?.error;
      throw new ApiError(res.status, e?.code ?? 'http_error', e?.message ?? `${method} ${route} -> ${res.status} ${text.slice(0, 200)}`, e?.details);
    }
    return json as T;
  }

  function query(params: Record<string, string | number | undefined>): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  return {
    baseUrl,
    startSession: (body: CreateSessionBody) => request<Session>('POST', '/v1/sessions', body),
    getSession: (id: string) => request<Session>('GET', `/v1/sessions/${enc(id)}`),
    listSessions: (params: ListSessionsParams = {}) => request<SessionPage>('GET', `/v1/sessions${query(params)}`),
    sendMessage: (id: string, content: string) => request<Session>('POST', `/v1/sessions/${enc(id)}/messages`, { content }),
    cancel: (id: string) => request<Session>('POST', `/v1/sessions/${enc(id)}/cancel`),
    close: (id: string) => request<Session>('POST', `/v1/sessions/${enc(id)}/close`),
    tasks: async (id: string) => (await request<{ data: TaskNode[] }>('GET', `/v1/sessions/${enc(id)}/tasks`)).data,
    listApprovals: async (id: string, status?: ApprovalStatus) =>
      (await request<{ data: ApprovalView[] }>('GET', `/v1/sessions/${enc(id)}/approvals${query({ status })}`)).data,
    getApproval: (id: string) => request<ApprovalView>('GET', `/v1/approvals/${enc(id)}`),
    decideApproval: (id: string, body: DecideBody) => request<ApprovalView>('POST', `/v1/approvals/${enc(id)}`, body),
    listAgents: async () => (await request<{ data: AgentView[] }>('GET', '/v1/agents')).data,
    getAgent: (id: string) => request<AgentView>('GET', `/v1/agents/${enc(id)}`),
    createAgent: (def: AgentDefinition) => request<AgentView>('POST', '/v1/agents', def),
    applyAgentsYaml: async (text: string) => (await request<{ data: ApplyAgentResult[] }>('POST', '/v1/agents', text, 'application/yaml')).data,

    /**
     * The session's trace events after `after` (default 0): history first, then live, until the stream ends (after
     * `session.ended`) or `signal` aborts (the generator then just returns).
     */
    async *events(id: string, opts: { after?: number; signal?: AbortSignal } = {}): AsyncGenerator<TraceEvent> {
      const url = `${baseUrl}/v1/sessions/${enc(id)}/events${query({ after: opts.after })}`;
      try {
        for await (const msg of readSse(url, { headers: { ...auth, accept: 'text/event-stream' }, signal: opts.signal })) {
          if (msg.event === 'error') {
            const e = (JSON.parse(msg.data) as { error?: { code?: string; message?: string } }).error;
            throw new ApiError(500, e?.code ?? 'internal', e?.message ?? 'event stream failed');
          }
          yield JSON.parse(msg.data) as TraceEvent;
        }
      } catch (err) {
        if (opts.signal?.aborted) return;
        if (err instanceof ApiError) throw err;
        const message = err instanceof Error ? err.message : String(err);
        const m = /^SSE request failed: (\d+) ([\s\S]*)$/.exec(message);
        if (m) {
          let e: { code?: string; message?: string; details?: unknown } | undefined;
          try {
            e = (JSON.parse(m[2] ?? '') as { error?: typeof e }).error;
          } catch {
            e = undefined;
          }
          throw new ApiError(Number(m[1]), e?.code ?? 'http_error', e?.message ?? message, e?.details);
        }
        const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
        throw new ApiError(0, 'unreachable', `cannot reach the Troupe API at ${baseUrl}: ${cause}`);
      }
    },
  };
}

export type ApiClient = ReturnType<typeof createApiClient>;
