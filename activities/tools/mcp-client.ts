/**
 * MCP client: the tools of an agent's external MCP servers (AgentDefinition.mcpServers), namespaced as
 * `mcp__<server>__<tool>`. One manager per worker: it connects lazily, once per (agent, server configuration), over
 * stdio (`command`, spawned with a minimal environment plus the server's `env`) or Streamable HTTP (`url`), caches the
 * connection and the server's tool list, and closes everything on `close()` (worker shutdown).
 *
 * The tools it returns are ordinary ToolDefinitions: runTool validates their arguments (the server's JSON Schema,
 * converted to zod), evaluates the guardrails (they need the `mcp` permission) and traces them like built-in tools.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { TroupeError } from '../../core/errors';
import type { ToolSpec } from '../../core/model';
import { MCP_TOOL_PREFIX, parseMcpToolName, type AgentDefinition, type McpServerConfig } from '../../core/schemas';
import type { Logger } from '../../lib/logger';
import type { ToolDefinition } from './index';

/** Tool names a model API accepts (Anthropic: 1–128 of these characters). */
const MODEL_TOOL_NAME = /^[A-Za-z0-9_-]{1,128}$/;

type Connection = { client: Client; tools: Tool[] };
type McpTool = { name: string; server: McpServerConfig; remote: Tool; definition: ToolDefinition; spec: ToolSpec };

export type McpClientOptions = {
  logger?: Logger;
  /** Deadline of one tool call (default 120 s). */
  callTimeoutMs?: number;
  /** Deadline of connecting and listing tools (default 30 s). */
  connectTimeoutMs?: number;
};

/** The text of a tool result: text blocks as they are, anything else as a short JSON note. */
function resultText(result: CallToolResult): string {
  const parts = result.content.map((c) => (c.type === 'text' ? c.text : JSON.stringify(c.type === 'image' || c.type === 'audio' ? { type: c.type, mimeType: c.mimeType } : c)));
  if (parts.length === 0 && result.structuredContent !== undefined) return JSON.stringify(result.structuredContent);
  return parts.join('\n');
}

/** The server's input schema as zod; a schema zod cannot read is checked only as an object. */
function inputSchemaOf(schema: Tool['inputSchema']): z.ZodType {
  try {
    return z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
  } catch {
    return z.record(z.string(), z.unknown());
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createMcpClientManager(opts: McpClientOptions = {}) {
  const callTimeoutMs = opts.callTimeoutMs ?? 120_000;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 30_000;
  const connections = new Map<string, Promise<Connection>>();
  const tools = new Map<string, McpTool[]>();
  let closed = false;

  const keyOf = (agent: AgentDefinition, server: McpServerConfig) =>
    `${agent.id}@${(agent as { version?: number }).version ?? ''}/${server.name}#${JSON.stringify(server)}`;

  async function connect(server: McpServerConfig): Promise<Connection> {
    const client = new Client({ name: 'troupe', version: '0.1.0' });
    const transport = server.command
      ? new StdioClientTransport({ command: server.command[0]!, args: server.command.slice(1), env: { ...getDefaultEnvironment(), ...server.env }, stderr: 'inherit' })
      : new StreamableHTTPClientTransport(new URL(server.url!));
    await client.connect(transport, { timeout: connectTimeoutMs });
    try {
      const list: Tool[] = [];
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor ? { cursor } : undefined, { timeout: connectTimeoutMs });
        list.push(...page.tools);
        cursor = page.nextCursor;
      } while (cursor && list.length < 1000);
      return { client, tools: list };
    } catch (err) {
      await client.close().catch(() => undefined);
      throw err;
    }
  }

  /** The cached connection of an agent's server; a failed or closed one is dropped so the next use reconnects. */
  function connection(agent: AgentDefinition, server: McpServerConfig): Promise<Connection> {
    if (closed) return Promise.reject(new Error('the MCP client is closed'));
    const key = keyOf(agent, server);
    let pending = connections.get(key);
    if (!pending) {
      pending = connect(server).then((conn) => {
        conn.client.onclose = () => {
          if (connections.get(key) === pending) connections.delete(key);
          tools.delete(key);
        };
        return conn;
      });
      const mine = pending;
      connections.set(key, mine);
      mine.catch((err: unknown) => {
        if (connections.get(key) === mine) connections.delete(key);
        opts.logger?.warn({ agent: agent.id, server: server.name, err: message(err) }, 'MCP server connection failed');
      });
    }
    return pending;
  }

  async function serverTools(agent: AgentDefinition, server: McpServerConfig): Promise<McpTool[]> {
    const key = keyOf(agent, server);
    const cached = tools.get(key);
    if (cached) return cached;
    const conn = await connection(agent, server);
    const out: McpTool[] = [];
    for (const remote of conn.tools) {
      const name = `${MCP_TOOL_PREFIX}${server.name}__${remote.name}`;
      if (server.tools && !server.tools.includes(remote.name)) continue;
      if (!MODEL_TOOL_NAME.test(name)) continue;
      const description = remote.description ?? remote.title ?? `${remote.name} (MCP server ${server.name})`;
      const { $schema: _schema, ...inputSchema } = remote.inputSchema as Record<string, unknown>;
      const definition: ToolDefinition = {
        name,
        description,
        input: inputSchemaOf(remote.inputSchema),
        run: (ctx, input) => call(conn, remote.name, input, ctx.signal),
      };
      out.push({ name, server, remote, definition, spec: { name, description, inputSchema } });
    }
    tools.set(key, out);
    return out;
  }

  async function call(conn: Connection, name: string, input: unknown, signal: AbortSignal): Promise<string> {
    let result: CallToolResult;
    try {
      result = (await conn.client.callTool({ name, arguments: (input ?? {}) as Record<string, unknown> }, undefined, { signal, timeout: callTimeoutMs })) as CallToolResult;
    } catch (err) {
      if (signal.aborted) throw signal.reason ?? err;
      // Not retried: the server may have done part of the work. The model reads the error and decides.
      throw new TroupeError('bad_request', `MCP tool ${name} failed: ${message(err)}`);
    }
    const text = resultText(result);
    if (result.isError === true) throw new TroupeError('bad_request', text || `MCP tool ${name} reported an error`);
    return text;
  }

  /** Whether the agent's tool list offers this namespaced tool (by name or by `mcp__<server>__*`). */
  const listed = (names: readonly string[], server: string, tool: string) =>
    names.includes(`${MCP_TOOL_PREFIX}${server}__${tool}`) || names.includes(`${MCP_TOOL_PREFIX}${server}__*`);

  return {
    /**
     * Specs (for the model) of the agent's MCP tools that `names` select. A server that cannot be reached is left out
     * (logged); a call to one of its tools then fails as a tool error.
     */
    async specs(agent: AgentDefinition, names: readonly string[]): Promise<ToolSpec[]> {
      const out: ToolSpec[] = [];
      for (const server of agent.mcpServers ?? []) {
        if (!names.some((n) => parseMcpToolName(n)?.server === server.name)) continue;
        try {
          out.push(...(await serverTools(agent, server)).filter((t) => listed(names, server.name, t.remote.name)).map((t) => t.spec));
        } catch {
          // logged by connection()
        }
      }
      return out;
    },

    /**
     * The ToolDefinition of a namespaced tool the agent declares, or undefined. When its server cannot be reached the
     * definition's run fails with a tool error, so the call is still judged and traced.
     */
    async tool(agent: AgentDefinition, name: string): Promise<ToolDefinition | undefined> {
      const parsed = parseMcpToolName(name);
      const server = parsed ? agent.mcpServers?.find((s) => s.name === parsed.server) : undefined;
      if (!parsed || !server || !listed(agent.tools, server.name, parsed.tool)) return undefined;
      if (server.tools && !server.tools.includes(parsed.tool)) return undefined;
      try {
        return (await serverTools(agent, server)).find((t) => t.remote.name === parsed.tool)?.definition;
      } catch (err) {
        return {
          name,
          description: '',
          input: z.unknown(),
          run: () => Promise.reject(new TroupeError('bad_request', `MCP server "${server.name}" is unavailable: ${message(err)}`)),
        };
      }
    },

    /** Closes every connection (stdio servers exit). Later uses fail. */
    async close(): Promise<void> {
      closed = true;
      const all = [...connections.values()];
      connections.clear();
      tools.clear();
      await Promise.all(all.map((p) => p.then((c) => c.client.close()).catch(() => undefined)));
    },
  };
}
export type McpClientManager = ReturnType<typeof createMcpClientManager>;
