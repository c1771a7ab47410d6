/**
 * A tiny stdio MCP server for the MCP client tests: `echo {text}` returns the text, `add {a, b}` the sum, `boom` an
 * error result. Run: `node --import tsx test/support/mcp-stdio-server.ts`.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'troupe-fixture', version: '1.0.0' });

server.registerTool('echo', { description: 'Echo the text back.', inputSchema: { text: z.string() } }, ({ text }) => ({
  content: [{ type: 'text', text }],
}));
server.registerTool('add', { description: 'Add two numbers.', inputSchema: { a: z.number(), b: z.number() } }, ({ a, b }) => ({
  content: [{ type: 'text', text: String(a + b) }],
}));
server.registerTool('boom', { description: 'Always fails.', inputSchema: {} }, () => ({
  content: [{ type: 'text', text: 'boom: something broke' }],
  isError: true,
}));

await server.connect(new StdioServerTransport());
