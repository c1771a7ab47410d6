/**
 * The A2A front door (official @a2a-js/sdk, protocol v1.0 with the v0.3 compatibility layer): the agent card at
 * `/.well-known/agent-card.json` (and the v0.3 alias `/.well-known/agent.json`), public; JSON-RPC at `/a2a` behind the
 * same bearer tokens as the HTTP API. An A2A task is a Troupe session: the SDK's JSON-RPC transport parses requests and
 * shapes errors, and this module's request handler maps every call onto the session service (never Temporal or
 * Prisma). A session that waits for input or for an approval is `input-required`.
 */
import express, { type ErrorRequestHandler, type Request, type Router } from 'express';
import { ZodError } from 'zod';
import {
  AgentCard as AgentCardJson,
  Role,
  TaskState,
  type AgentCard,
  type Artifact,
  type CancelTaskRequest,
  type GetTaskRequest,
  type ListTasksResponse,
  type Message,
  type SendMessageRequest,
  type StreamResponse,
  type SubscribeToTaskRequest,
  type Task,
  type TaskPushNotificationConfig,
  type ListTaskPushNotificationConfigsResponse,
} from '@a2a-js/sdk';
import type { A2ARequestHandler } from '@a2a-js/sdk/server';
import { jsonRpcHandler } from '@a2a-js/sdk/server/express';
import {
  ExtendedAgentCardNotConfiguredError,
  PushNotificationNotSupportedError,
  RequestMalformedError,
  TaskNotCancelableError,
  TaskNotFoundError,
  UnsupportedOperationError,
} from '@a2a-js/sdk/errors';
import { TroupeError } from '../core/errors';
import { textOf, type ContentBlock } from '../core/model';
import { CreateSessionBody, isTerminal, type Session, type SessionStatus, type TraceEvent } from '../core/schemas';
import { requireToken } from '../api/auth';
import type { Logger } from '../lib/logger';
import type { SessionService } from '../service/sessions';

export type A2ADeps = {
  sessions: SessionService;
  apiTokens: readonly string[];
  logger: Logger;
  /** How long a blocking message/send (or one stream) follows a session before answering with its current state. */
  maxWaitMs?: number;
};

export const A2A_PATH = '/a2a';
const DEFAULT_MAX_WAIT_MS = 10 * 60_000;
/** Statuses at which a turn is over: the session waits for the client, or has ended. */
const SETTLED: ReadonlySet<string> = new Set(['blocked', 'done', 'failed', 'cancelled']);
const CONTEXT_KEY = 'a2aContextId';

const STATE: Record<SessionStatus, TaskState> = {
  pending: TaskState.TASK_STATE_SUBMITTED,
  running: TaskState.TASK_STATE_WORKING,
  blocked: TaskState.TASK_STATE_INPUT_REQUIRED,
  done: TaskState.TASK_STATE_COMPLETED,
  failed: TaskState.TASK_STATE_FAILED,
  cancelled: TaskState.TASK_STATE_CANCELED,
};

/** The agent card; `baseUrl` is where the client reached us (the card is served per request). */
export function troupeAgentCard(baseUrl: string): AgentCard {
  const url = `${baseUrl}${A2A_PATH}`;
  return {
    name: 'Troupe',
    description:
      'Durable multi-agent runtime: each A2A task is a Troupe session (Temporal + Postgres) run by one agent or a planner that ' +
      'dispatches tasks to other agents. A task is input-required when the agent finished its turn or a tool call waits for approval.',
    supportedInterfaces: [
      { url, protocolBinding: 'JSONRPC', protocolVersion: '1.0', tenant: '' },
      { url, protocolBinding: 'JSONRPC', protocolVersion: '0.3', tenant: '' },
    ],
    provider: undefined,
    version: '0.1.0',
    capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: {
      bearer: { scheme: { $case: 'httpAuthSecurityScheme', value: { description: 'A Troupe API token (TROUPE_API_TOKENS)', scheme: 'Bearer', bearerFormat: 'opaque' } } },
    },
    securityRequirements: [{ schemes: { bearer: { list: [] } } }],
    defaultInputModes: ['text/plain'],
    defaultOutputModes: ['text/plain'],
    skills: [
      {
        id: 'session',
        name: 'Run an agent session',
        description:
          'Starts a durable session whose goal is the message text (message metadata `agent` picks a registered agent); follow-up messages on the ' +
          'same task continue the conversation. The answer comes back as the task status message and an `answer` artifact.',
        tags: ['agent', 'session', 'durable'],
        examples: ['Summarise the open TODOs in this project', 'Explain what the retry policy does'],
        inputModes: ['text/plain'],
        outputModes: ['text/plain'],
        securityRequirements: [],
      },
      {
        id: 'coding',
        name: 'Coding and multi-agent work',
        description:
          'With a planner agent (metadata `agent`), the goal is planned into tasks routed to coder/reviewer agents that work in a git worktree ' +
          'under guardrails; tool calls that need a person make the task input-required until approved over the HTTP API.',
        tags: ['coding', 'multi-agent', 'orchestration'],
        examples: ['Fix the failing test in the parser module and add a regression test'],
        inputModes: ['text/plain'],
        outputModes: ['text/plain'],
        securityRequirements: [],
      },
    ],
    signatures: [],
  };
}

const textPart = (text: string) => ({ content: { $case: 'text' as const, value: text }, metadata: undefined, filename: '', mediaType: 'text/plain' });

function agentMessage(session: Session, text: string, messageId: string): Message {
  return {
    messageId,
    contextId: contextOf(session),
    taskId: session.id,
    role: Role.ROLE_AGENT,
    parts: [textPart(text)],
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  };
}

function contextOf(session: Session): string {
  const ctx = session.metadata[CONTEXT_KEY];
  return typeof ctx === 'string' && ctx ? ctx : session.id;
}

/** What the session says to the client in its current state: the answer, or why it stopped. */
function statusText(session: Session): string | null {
  if (session.status === 'failed' || session.status === 'cancelled') return session.statusReason ?? session.status;
  if (session.status === 'blocked' || session.status === 'done') return session.finalAnswer;
  return null;
}

function answerArtifact(session: Session): Artifact | null {
  if (!session.finalAnswer || !(session.status === 'blocked' || session.status === 'done')) return null;
  return { artifactId: `answer-${session.lastSeq}`, name: 'answer', description: 'The agent answer of the last turn', parts: [textPart(session.finalAnswer)], metadata: undefined, extensions: [] };
}

export function toTask(session: Session): Task {
  const text = statusText(session);
  const artifact = answerArtifact(session);
  return {
    id: session.id,
    contextId: contextOf(session),
    status: {
      state: STATE[session.status],
      message: text ? agentMessage(session, text, `status-${session.id}-${session.lastSeq}`) : undefined,
      timestamp: session.updatedAt,
    },
    artifacts: artifact ? [artifact] : [],
    history: [],
    metadata: { troupe: { sessionId: session.id, agentId: session.agentId, status: session.status, statusReason: session.statusReason } },
  };
}

function messageText(params: SendMessageRequest): { text: string; message: Message } {
  const message = params.message;
  if (!message) throw new RequestMalformedError('params.message is required');
  const text = message.parts
    .map((p) => (p.content?.$case === 'text' ? p.content.value : ''))
    .filter((t) => t.trim() !== '')
    .join('\n');
  if (!text.trim()) throw new RequestMalformedError('the message needs at least one non-empty text part');
  return { text, message };
}

const toStatusEvent = (session: Session): StreamResponse => {
  const task = toTask(session);
  return { payload: { $case: 'statusUpdate', value: { taskId: task.id, contextId: task.contextId, status: task.status, metadata: task.metadata } } };
};

/** The session service's errors in the protocol's vocabulary; anything else is an internal error without details. */
function protocolError(err: unknown, logger: Logger, taskId?: string): Error {
  if (err instanceof TroupeError) {
    switch (err.code) {
      case 'not_found':
        return new TaskNotFoundError(taskId ? `task ${taskId} not found` : err.message);
      case 'bad_request':
        return new RequestMalformedError(err.message);
      case 'conflict':
        return new UnsupportedOperationError(err.message);
      default:
        break;
    }
  }
  if (err instanceof ZodError) return new RequestMalformedError(err.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`).join('; '));
  if (err instanceof Error && 'reason' in err) return err; // already an A2A error
  logger.error({ err, taskId }, 'a2a request failed');
  return new Error('internal error');
}

/** A2A calls mapped onto the session service. */
export function createA2AHandler(deps: A2ADeps): A2ARequestHandler {
  const { sessions, logger } = deps;
  const maxWaitMs = deps.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;

  const guard = async <T>(fn: () => Promise<T>, taskId?: string): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw protocolError(err, logger, taskId);
    }
  };

  /**
   * Follows the session's trace after `after`, calling `onEvent` for each event, until the turn settles (or the wait
   * runs out). Returns the session as it is then.
   */
  async function* follow(id: string, after: number): AsyncGenerator<TraceEvent, Session> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), maxWaitMs);
    timer.unref();
    try {
      for await (const event of sessions.events(id, after, abort.signal)) {
        yield event;
        if (event.type === 'session.ended') break;
        if (event.type === 'state.mutated') {
          const to = (event.payload as { status?: { to?: string } } | undefined)?.status?.to;
          if (to !== undefined && SETTLED.has(to)) break;
        }
      }
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    return sessions.get(id);
  }

  async function settle(id: string, after: number): Promise<Session> {
    const it = follow(id, after);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }

  /** Starts a session (no task id) or sends a follow-up; returns the session and the seq to follow from. */
  async function submit(params: SendMessageRequest): Promise<{ session: Session; after: number }> {
    const { text, message } = messageText(params);
    if (message.taskId) {
      const id = message.taskId;
      return guard(async () => {
        const before = await sessions.get(id);
        if (isTerminal(before.status)) throw new UnsupportedOperationError(`task ${id} is ${STATE[before.status] === TaskState.TASK_STATE_CANCELED ? 'canceled' : before.status}: it accepts no more messages`);
        const session = await sessions.sendMessage(id, text);
        return { session, after: before.lastSeq };
      }, id);
    }
    const agent = message.metadata?.agent ?? params.metadata?.agent;
    const body = CreateSessionBody.parse({
      goal: text,
      ...(typeof agent === 'string' ? { agent } : {}),
      metadata: { via: 'a2a', ...(message.contextId ? { [CONTEXT_KEY]: message.contextId } : {}) },
    });
    return guard(async () => ({ session: await sessions.start(body), after: 0 }));
  }

  /** The task, `working` (when a message was just submitted), the agent's interim text, then the settled state with the answer. */
  async function* stream(session: Session, after: number, submitted: boolean): AsyncGenerator<StreamResponse, void, undefined> {
    yield { payload: { $case: 'task', value: toTask(session) } };
    let lastState = STATE[session.status];
    const working = (seq: number, at: string, text?: string): StreamResponse => {
      const update = toStatusEvent({ ...session, status: 'running', statusReason: null, finalAnswer: null, lastSeq: seq, updatedAt: at });
      if (text && update.payload?.$case === 'statusUpdate' && update.payload.value.status) {
        update.payload.value.status.message = agentMessage(session, text, `assistant-${session.id}-${seq}`);
      }
      return update;
    };
    if (submitted && lastState !== TaskState.TASK_STATE_WORKING) {
      lastState = TaskState.TASK_STATE_WORKING;
      yield working(after, new Date().toISOString());
    }
    const it = follow(session.id, after);
    for (;;) {
      const r = await guard(() => it.next(), session.id);
      if (r.done) {
        const final = r.value;
        const artifact = answerArtifact(final);
        if (artifact) yield { payload: { $case: 'artifactUpdate', value: { taskId: final.id, contextId: contextOf(final), artifact, append: false, lastChunk: true, metadata: undefined } } };
        yield toStatusEvent(final);
        return;
      }
      const event = r.value;
      if (event.type === 'message.assistant') {
        const content = (event.payload as { content?: unknown } | undefined)?.content;
        const blocks = Array.isArray(content) ? (content as ContentBlock[]) : [];
        const text = textOf(blocks);
        // Interim text only (the agent goes on with tool calls): the turn's final text arrives as the answer once it settles.
        if (text.trim() && blocks.some((b) => b.type === 'tool_use')) yield working(event.seq, event.timestamp, text);
      } else if (event.type === 'state.mutated') {
        const to = (event.payload as { status?: { to?: string } } | undefined)?.status?.to as SessionStatus | undefined;
        // Settled states are reported once, with the answer, after the loop.
        if (to && !SETTLED.has(to) && STATE[to] !== lastState) {
          lastState = STATE[to];
          yield toStatusEvent({ ...session, status: to, statusReason: null, finalAnswer: null, lastSeq: event.seq, updatedAt: event.timestamp });
        }
      }
    }
  }

  return {
    async getAgentCard() {
      return troupeAgentCard('');
    },
    async getAuthenticatedExtendedAgentCard() {
      throw new ExtendedAgentCardNotConfiguredError();
    },

    async sendMessage(params: SendMessageRequest) {
      const { session, after } = await submit(params);
      if (params.configuration?.returnImmediately) return toTask(session);
      return toTask(await guard(() => settle(session.id, after), session.id));
    },

    async *sendMessageStream(params: SendMessageRequest) {
      const { session, after } = await submit(params);
      yield* stream(session, after, true);
    },

    async *resubscribe(params: SubscribeToTaskRequest) {
      const session = await guard(() => sessions.get(params.id), params.id);
      if (isTerminal(session.status)) throw new UnsupportedOperationError(`task ${params.id} has ended`);
      yield* stream(session, session.lastSeq, false);
    },

    async getTask(params: GetTaskRequest) {
      return toTask(await guard(() => sessions.get(params.id), params.id));
    },

    async cancelTask(params: CancelTaskRequest) {
      const session = await guard(() => sessions.get(params.id), params.id);
      if (isTerminal(session.status)) throw new TaskNotCancelableError(`task ${params.id} has already ended (${session.status})`);
      try {
        return toTask(await sessions.cancel(params.id));
      } catch (err) {
        if (err instanceof TroupeError && err.code === 'conflict') throw new TaskNotCancelableError(err.message);
        throw protocolError(err, logger, params.id);
      }
    },

    async listTasks(): Promise<ListTasksResponse> {
      throw new UnsupportedOperationError('ListTasks is not supported: list sessions with GET /v1/sessions');
    },
    async createTaskPushNotificationConfig(): Promise<TaskPushNotificationConfig> {
      throw new PushNotificationNotSupportedError();
    },
    async getTaskPushNotificationConfig(): Promise<TaskPushNotificationConfig> {
      throw new PushNotificationNotSupportedError();
    },
    async listTaskPushNotificationConfigs(): Promise<ListTaskPushNotificationConfigsResponse> {
      throw new PushNotificationNotSupportedError();
    },
    async deleteTaskPushNotificationConfig(): Promise<void> {
      throw new PushNotificationNotSupportedError();
    },
  };
}

function jsonRpcError(code: number, message: string) {
  return { jsonrpc: '2.0' as const, id: null, error: { code, message } };
}

/** The agent card routes (public) and the JSON-RPC endpoint at /a2a (bearer token). */
export function a2aRouter(deps: A2ADeps): Router {
  const { logger } = deps;
  const handler = createA2AHandler(deps);
  const router = express.Router();

  const card: express.RequestHandler = (req: Request, res) => {
    res.set('Cache-Control', 'public, max-age=300').json(AgentCardJson.toJSON(troupeAgentCard(`${req.protocol}://${req.get('host') ?? 'localhost'}`)));
  };
  router.get('/.well-known/agent-card.json', card);
  router.get('/.well-known/agent.json', card);

  router.use(A2A_PATH, requireToken(deps.apiTokens));
  router.use(
    A2A_PATH,
    jsonRpcHandler({
      requestHandler: handler,
      userBuilder: async () => ({ isAuthenticated: true, userName: 'api-token' }),
      legacyCompat: { enabled: true },
    }),
  );

  const errors: ErrorRequestHandler = (err: unknown, _req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    if (err instanceof TroupeError && err.code === 'unauthorized') {
      res.status(401).set('WWW-Authenticate', 'Bearer').json(jsonRpcError(-32000, `Unauthorized: ${err.message}`));
      return;
    }
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      res.status(status).json(jsonRpcError(-32600, `Invalid Request: ${(err as Error).message}`));
      return;
    }
    logger.error({ err }, 'a2a request failed');
    res.status(500).json(jsonRpcError(-32603, 'internal error'));
  };
  router.use(A2A_PATH, errors);
  return router;
}
