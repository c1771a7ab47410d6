-- MCP client: external MCP servers an agent may use (stdio command or Streamable HTTP URL).

-- AlterTable
ALTER TABLE "agent_definitions" ADD COLUMN "mcp_servers" JSONB;
