/**
 * The MCP front door: a Streamable HTTP endpoint at `/mcp` (stateless: a fresh server and transport per request),
 * behind the same bearer tokens as the HTTP API. Its tools and resources call the service layer, exactly like the
 * HTTP routes, and validate their inputs with the same zod schemas; it never talks to Temporal or Prisma itself.
 */
import express, { type ErrorRequestHandler, type Router } from 'express';
import { z } from 'zod';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ErrorCode, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { TroupeError } from '../core/errors';
import { CreateSessionBody, DecideApprovalBody, ListApprovalsQuery, ListSessionsQuery, SendMessageBody } from '../core/schemas';
import { requireToken } from '../api/auth';
import type { Logger } from '../lib/logger';
import type { AgentService } from '../service/agents';
import type { ApprovalService } from '../service/approvals';
import type { SessionService } from '../service/sessions';

export type McpDeps = {
  sessions: SessionService;
  approvals: ApprovalService;
  agents: AgentService;
  apiTokens: readonly string[];
  logger: Logger;
};

/** The largest JSON-RPC request body accepted; larger ones get HTTP 413 with a JSON-RPC error, before any parsing. */
export const MCP_MAX_BODY_BYTES = 1024 * 1024;
/** How many trace events one read of a trace resource returns. */
const TRACE_PAGE = 1000;
/** MCP's "resource not found" error code. */
const RESOURCE_NOT_FOUND = -32002;

const SessionRef = z.object({ id: z.string().min(1).max(200).describe('session id (ses_...)') }).strict();

/** A tool's answer: the value as JSON text, and as structured content (arrays wrapped in `{ data }`). */
function ok(value: unknown): CallToolResult {
  const structured = Array.isArray(value) ? { data: value } : (value as Record<string, unknown>);
  return { content: [{ type: 'text', text: JSON.stringify(value, null, 2) }], structuredContent: structured };
}

/** A service error becomes a tool result with `isError` (the MCP convention), never a protocol failure. */
function toolError(err: unknown, logger: Logger, tool: string): CallToolResult {
  if (err instanceof TroupeError) {
    const details = err.details !== undefined ? { details: err.details } : {};
    return {
      isError: true,
      content: [{ type: 'text', text: `${err.code}: ${err.message}` }],
      structuredContent: { error: { code: err.code, message: err.message, ...details } },
    };
  }
  logger.error({ err, tool }, 'mcp tool failed');
  return { isError: true, content: [{ type: 'text', text: 'internal: internal error' }], structuredContent: { error: { code: 'internal', message: 'internal error' } } };
}

function jsonRpcError(code: number, message: string) {
  return { jsonrpc: '2.0' as const, error: { code, message }, id: null };
}

/** One MCP server over the service layer (cheap to build: one per request in stateless mode). */
export function buildMcpServer(deps: McpDeps): McpServer {
  const { sessions, approvals, agents, logger } = deps;
  const server = new McpServer({ name: 'troupe', version: '0.1.0' }, { capabilities: { logging: {} } });

  function tool<S extends z.ZodType>(name: string, description: string, inputSchema: S, run: (args: z.output<S>) => Promise<unknown>) {
    server.registerTool(name, { description, inputSchema }, (async (args: z.output<S>) => {
      try {
        return ok(await run(args));
      } catch (err) {
        return toolError(err, logger, name);
      }
    }) as never);
  }

  tool('list_agents', 'List the registered agents (id, role, model, tools, version).', z.object({}).strict(), () => agents.list());
  tool('start_session', 'Start a session: an agent (default "assistant") works on the goal. Returns the session.', CreateSessionBody, (body) => sessions.start(body));
  tool('get_session', 'Get a session: status, status reason, final answer, usage.', SessionRef, ({ id }) => sessions.get(id));
  tool('list_sessions', 'List sessions, newest first (cursor-paged).', ListSessionsQuery, (query) => sessions.list(query));
  tool('send_message', 'Send the next user message to a session that waits for input.', SessionRef.extend(SendMessageBody.shape).strict(), ({ id, content }) =>
    sessions.sendMessage(id, content),
  );
  tool('cancel_session', 'Cancel a running session.', SessionRef, ({ id }) => sessions.cancel(id));
  tool('close_session', 'Close a session that waits for input (it ends as done).', SessionRef, ({ id }) => sessions.close(id));
  tool(
    'list_approvals',
    "List a session's guardrail approvals (optionally by status).",
    ListApprovalsQuery.extend({ sessionId: z.string().min(1).max(200) }).strict(),
    ({ sessionId, status }) => approvals.list(sessionId, status),
  );
  tool(
    'decide_approval',
    'Approve or deny a pending guardrail approval.',
    DecideApprovalBody.extend({ id: z.string().min(1).max(200) }).strict(),
    ({ id, ...body }) => approvals.decide(id, body),
  );

  server.registerResource(
    'session-trace',
    new ResourceTemplate('troupe://sessions/{id}/trace', {
      list: async () => {
        const page = await sessions.list({ limit: 50 });
        return {
          resources: page.data.map((s) => ({ uri: `troupe://sessions/${s.id}/trace`, name: `trace of ${s.id}`, description: s.goal.slice(0, 200), mimeType: 'application/json' })),
        };
      },
    }),
    { title: 'Session trace', description: `The session's trace events (first ${TRACE_PAGE}), as JSON.`, mimeType: 'application/json' },
    async (uri, variables) => {
      const id = String(variables.id ?? '');
      try {
        const events = await sessions.trace(id, 0, TRACE_PAGE);
        return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ sessionId: id, events }) }] };
      } catch (err) {
        if (err instanceof TroupeError && err.code === 'not_found') throw new McpError(RESOURCE_NOT_FOUND, err.message, { uri: uri.href });
        if (err instanceof TroupeError) throw new McpError(ErrorCode.InvalidParams, err.message);
        logger.error({ err, uri: uri.href }, 'mcp resource read failed');
        throw new McpError(ErrorCode.InternalError, 'internal error');
      }
    },
  );
  return server;
}

/**
 * `POST /mcp` (JSON-RPC over Streamable HTTP, stateless); `GET` and `DELETE` answer 405 since there are no MCP
 * sessions to stream to or end. Every answer, errors included, is a JSON-RPC shape; a bad token is HTTP 401.
 */
export function mcpRouter(deps: McpDeps): Router {
  const { logger } = deps;
  const router = express.Router();
  router.use('/mcp', requireToken(deps.apiTokens));

  router.post('/mcp', async (req, res) => {
    const server = buildMcpServer(deps);
    // No parsedBody: the transport reads the raw body itself, so bad JSON is a -32700 and an oversized one a 413.
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true, maxRequestBodySize: MCP_MAX_BODY_BYTES });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    try {
      await server.connect(transport);
      await transport.handleRequest(req, res);
    } catch (err) {
      logger.error({ err }, 'mcp request failed');
      if (!res.headersSent) res.status(500).json(jsonRpcError(ErrorCode.InternalError, 'internal error'));
      else res.end();
    }
  });

  const notAllowed: express.RequestHandler = (_req, res) => {
    res.status(405).set('Allow', 'POST').json(jsonRpcError(-32000, 'Method not allowed: this MCP server is stateless, use POST'));
  };
  router.get('/mcp', notAllowed);
  router.delete('/mcp', notAllowed);

  const errors: ErrorRequestHandler = (err: unknown, _req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    if (err instanceof TroupeError && err.code === 'unauthorized') {
      res.status(401).set('WWW-Authenticate', 'Bearer').json(jsonRpcError(-32000, `Unauthorized: ${err.message}`));
      return;
    }
    logger.error({ err }, 'mcp request failed');
    res.status(500).json(jsonRpcError(ErrorCode.InternalError, 'internal error'));
  };
  router.use('/mcp', errors);
  return router;
}
