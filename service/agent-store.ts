/**
 * The agent registry's store: validation beyond zod, versioned writes and reads. Every agent edit makes an immutable
 * row in `agent_versions`; `agent_definitions` holds the current version's columns. Saving an identical definition
 * again changes nothing (idempotent apply). Deleting is soft: the versions stay readable for the sessions that use
 * them, and re-creating the agent continues its version numbering.
 *
 * `service/agents.ts` is the module the rest of the code imports; this one exists so that `lib/agent-files.ts` can
 * use the store while `service/agents.ts` uses the file loader (no import cycle).
 */
import { TroupeError } from '../core/errors';
import { AgentDefinition, parseMcpToolName, type VersionedAgent } from '../core/schemas';
import { KNOWN_PROVIDERS } from '../activities/models/registry';
import { createToolRegistry } from '../activities/tools/index';
import { Prisma } from '../generated/prisma/client';
import type { Db } from '../lib/db/client';

type Tx = Prisma.TransactionClient;
type AgentRow = NonNullable<Awaited<ReturnType<Db['agentDefinition']['findUnique']>>>;
type VersionRow = NonNullable<Awaited<ReturnType<Db['agentVersion']['findUnique']>>>;

/** The current version of an agent as the API shows it. */
export type AgentView = VersionedAgent & { source: string; createdAt: string; updatedAt: string };
/** One stored version of an agent. */
export type AgentVersionView = VersionedAgent & { source: string; createdAt: string };
/** What an apply did: `unchanged` means the stored definition was identical (no new version). */
export type AgentChange = 'created' | 'updated' | 'unchanged';
export type ApplyResult = { change: AgentChange; agent: AgentView };
export type Problem = { path: string; message: string };

/** Tools that read or write the blackboard: useless to an agent without memory. */
const BLACKBOARD_TOOLS = new Set(['blackboard_read', 'blackboard_write']);
const TX_OPTIONS = { maxWait: 10_000, timeout: 30_000 };

let knownTools: readonly string[] | undefined;
function toolNames(): readonly string[] {
  knownTools ??= createToolRegistry().names().sort();
  return knownTools;
}

// ---- validation ----

function pathOf(path: readonly PropertyKey[]): string {
  return path.map(String).join('.') || '(agent)';
}

/**
 * Every problem of an agent definition: zod's (strict: unknown fields too), then the registry's (tools, model
 * provider, memory). Returns the parsed definition when there are none.
 */
export function checkAgent(input: unknown): { definition?: AgentDefinition; problems: Problem[] } {
  const parsed = AgentDefinition.safeParse(input);
  if (!parsed.success) {
    return { problems: parsed.error.issues.map((i) => ({ path: pathOf(i.path), message: i.message })) };
  }
  const def = parsed.data;
  const problems: Problem[] = [];
  const known = toolNames();
  const seen = new Set<string>();
  const servers = new Map<string, NonNullable<AgentDefinition['mcpServers']>[number]>();
  def.mcpServers?.forEach((server, i) => {
    if (servers.has(server.name)) problems.push({ path: `mcpServers.${i}.name`, message: `duplicate MCP server "${server.name}"` });
    servers.set(server.name, server);
  });
  def.tools.forEach((tool, i) => {
    const path = `tools.${i}`;
    if (seen.has(tool)) problems.push({ path, message: `duplicate tool "${tool}"` });
    seen.add(tool);
    const mcp = parseMcpToolName(tool);
    if (mcp) {
      const server = servers.get(mcp.server);
      if (!server) {
        problems.push({ path, message: `tool "${tool}" names MCP server "${mcp.server}", which the agent does not declare in mcpServers` });
      } else if (mcp.tool !== '*' && server.tools && !server.tools.includes(mcp.tool)) {
        problems.push({ path, message: `tool "${mcp.tool}" is not in MCP server "${mcp.server}"'s tools allow-list (${server.tools.join(', ')})` });
      }
    } else if (!known.includes(tool)) {
      problems.push({ path, message: `unknown tool "${tool}" (known tools: ${known.join(', ')})` });
    } else if (BLACKBOARD_TOOLS.has(tool) && def.memoryScope === 'none') {
      problems.push({
        path,
        message: `tool "${tool}" needs memory, but memoryScope is "none": the agent could never use it (drop the tool or pick a memoryScope)`,
      });
    }
  });
  const perms = new Set<string>();
  def.permissions.forEach((p, i) => {
    if (perms.has(p)) problems.push({ path: `permissions.${i}`, message: `duplicate permission "${p}"` });
    perms.add(p);
  });
  if (def.model !== 'default') {
    const colon = def.model.indexOf(':');
    const provider = colon > 0 ? def.model.slice(0, colon) : '';
    const providers = KNOWN_PROVIDERS.join(', ');
    if (colon <= 0 || colon === def.model.length - 1) {
      problems.push({ path: 'model', message: `model "${def.model}" must be "default" or "<provider>:<model>" with provider one of ${providers}` });
    } else if (!(KNOWN_PROVIDERS as readonly string[]).includes(provider)) {
      problems.push({ path: 'model', message: `unknown model provider "${provider}" (known providers: ${providers}; or use "default")` });
    }
  }
  return problems.length ? { problems } : { definition: def, problems };
}

export function describeProblems(problems: readonly Problem[]): string {
  return problems.map((p) => `${p.path}: ${p.message}`).join('; ');
}

function agentLabel(input: unknown): string {
  const id = typeof input === 'object' && input !== null ? (input as { id?: unknown }).id : undefined;
  return typeof id === 'string' ? `agent "${id}"` : 'agent';
}

/** zod + registry checks. Returns the parsed definition or throws a bad_request whose details name each bad field. */
export function validateAgent(input: unknown): AgentDefinition {
  const { definition, problems } = checkAgent(input);
  if (!definition) throw new TroupeError('bad_request', `invalid ${agentLabel(input)}: ${describeProblems(problems)}`, problems);
  return definition;
}

/** Validates a batch; problems are prefixed with the item's index. Duplicate ids in one batch are an error. */
export function validateAgents(inputs: readonly unknown[]): AgentDefinition[] {
  const problems: Problem[] = [];
  const defs: AgentDefinition[] = [];
  const ids = new Map<string, number>();
  inputs.forEach((input, i) => {
    const r = checkAgent(input);
    problems.push(...r.problems.map((p) => ({ path: `${i}.${p.path}`, message: p.message })));
    if (!r.definition) return;
    const first = ids.get(r.definition.id);
    if (first !== undefined) problems.push({ path: `${i}.id`, message: `agent "${r.definition.id}" is defined twice (also at ${first})` });
    ids.set(r.definition.id, i);
    defs.push(r.definition);
  });
  if (problems.length) throw new TroupeError('bad_request', `invalid agents: ${describeProblems(problems)}`, problems);
  return defs;
}

// ---- row <-> definition ----

/** A stable serialization: key order fixed, absent optional fields left out. Equal strings mean equal definitions. */
function canonical(def: AgentDefinition): string {
  return JSON.stringify({
    id: def.id,
    name: def.name,
    role: def.role,
    model: def.model,
    instructions: def.instructions,
    tools: def.tools,
    permissions: def.permissions,
    memoryScope: def.memoryScope,
    description: def.description,
    retry: def.retry ? { maxAttempts: def.retry.maxAttempts, backoffSeconds: def.retry.backoffSeconds } : undefined,
    timeoutSeconds: def.timeoutSeconds,
    mcpServers: def.mcpServers?.map((m) => ({ name: m.name, command: m.command, url: m.url, env: m.env, tools: m.tools })),
  });
}

function storedDefinition(raw: unknown, what: string): AgentDefinition {
  const parsed = AgentDefinition.safeParse(raw);
  if (!parsed.success) throw new TroupeError('internal', `stored ${what} is invalid: ${parsed.error.message}`);
  return parsed.data;
}

function definitionOfRow(row: AgentRow): AgentDefinition {
  return storedDefinition(
    {
      id: row.id,
      name: row.name,
      role: row.role,
      model: row.model,
      instructions: row.instructions,
      tools: row.tools,
      permissions: row.permissions,
      memoryScope: row.memoryScope,
      ...(row.description !== null ? { description: row.description } : {}),
      ...(row.retry !== null ? { retry: row.retry } : {}),
      ...(row.timeoutSeconds !== null ? { timeoutSeconds: row.timeoutSeconds } : {}),
      ...(row.mcpServers !== null ? { mcpServers: row.mcpServers } : {}),
    },
    `agent "${row.id}"`,
  );
}

function toVersioned(def: AgentDefinition, version: number): VersionedAgent {
  // Canonical key order, no undefined fields: what a session freezes and what the API shows look the same.
  return { ...(JSON.parse(canonical(def)) as AgentDefinition), version };
}

function viewOfRow(row: AgentRow): AgentView {
  return { ...toVersioned(definitionOfRow(row), row.version), source: row.source, createdAt: row.createdAt.toISOString(), updatedAt: row.updatedAt.toISOString() };
}

function viewOfVersion(row: VersionRow): AgentVersionView {
  const def = storedDefinition(row.definition, `agent "${row.agentId}" version ${row.version}`);
  return { ...toVersioned(def, row.version), source: row.source, createdAt: row.createdAt.toISOString() };
}

function columns(def: AgentDefinition) {
  return {
    name: def.name,
    role: def.role,
    model: def.model,
    instructions: def.instructions,
    tools: def.tools,
    permissions: def.permissions,
    memoryScope: def.memoryScope,
    description: def.description ?? null,
    retry: def.retry ?? Prisma.DbNull,
    timeoutSeconds: def.timeoutSeconds ?? null,
    mcpServers: def.mcpServers ? (def.mcpServers as object[]) : Prisma.DbNull,
  };
}

// ---- writes ----

/**
 * Creates or updates one agent inside a transaction. Safe under concurrency: the insert-if-missing waits for any
 * concurrent insert of the same id, and the `FOR UPDATE` lock serializes every later step, so two processes applying
 * the same definition at once make one version between them and neither fails.
 */
async function applyInTx(tx: Tx, def: AgentDefinition, source: string, mode: 'create' | 'apply'): Promise<ApplyResult> {
  const maxStored = (await tx.agentVersion.aggregate({ where: { agentId: def.id }, _max: { version: true } }))._max.version ?? 0;
  const fresh = maxStored + 1;
  const inserted = await tx.agentDefinition.createMany({
    data: [{ id: def.id, ...columns(def), retry: def.retry ?? undefined, mcpServers: def.mcpServers ? (def.mcpServers as object[]) : undefined, version: fresh, source }],
    skipDuplicates: true,
  });
  if (inserted.count === 1) {
    await tx.agentVersion.create({ data: { agentId: def.id, version: fresh, definition: JSON.parse(canonical(def)) as object, source } });
    const row = await tx.agentDefinition.findUniqueOrThrow({ where: { id: def.id } });
    return { change: 'created', agent: viewOfRow(row) };
  }

  await tx.$queryRaw`SELECT 1 FROM "agent_definitions" WHERE "id" = ${def.id} FOR UPDATE`;
  const row = await tx.agentDefinition.findUniqueOrThrow({ where: { id: def.id } });
  const deleted = row.deletedAt !== null;
  if (!deleted && mode === 'create') {
    throw new TroupeError('conflict', `agent "${def.id}" already exists (version ${row.version}); use PUT /v1/agents/${def.id} to change it`);
  }
  if (!deleted && canonical(definitionOfRow(row)) === canonical(def)) return { change: 'unchanged', agent: viewOfRow(row) };

  // Read again under the lock: versions another transaction added before we got it count too.
  const maxNow = (await tx.agentVersion.aggregate({ where: { agentId: def.id }, _max: { version: true } }))._max.version ?? 0;
  const version = Math.max(row.version, maxNow) + 1;
  await tx.agentVersion.create({ data: { agentId: def.id, version, definition: JSON.parse(canonical(def)) as object, source } });
  const updated = await tx.agentDefinition.update({
    where: { id: def.id },
    data: { ...columns(def), version, source, deletedAt: null },
  });
  return { change: deleted ? 'created' : 'updated', agent: viewOfRow(updated) };
}

/** Applies validated definitions in one transaction, locking rows in id order (no deadlock between two appliers). */
async function applyAll(db: Db, defs: readonly AgentDefinition[], source: string | readonly string[], mode: 'create' | 'apply'): Promise<ApplyResult[]> {
  const order = defs.map((_, i) => i).sort((a, b) => (defs[a]!.id < defs[b]!.id ? -1 : defs[a]!.id > defs[b]!.id ? 1 : 0));
  const results = await db.$transaction(async (tx) => {
    const out = new Map<number, ApplyResult>();
    for (const i of order) out.set(i, await applyInTx(tx, defs[i]!, typeof source === 'string' ? source : source[i] ?? 'api', mode));
    return out;
  }, TX_OPTIONS);
  return defs.map((_, i) => results.get(i)!);
}

/**
 * Applies (creates or updates) already validated definitions, all or nothing. Identical definitions make no new
 * version. `source` is one for all, or one per definition.
 */
export async function applyAgents(db: Db, defs: readonly AgentDefinition[], source: string | readonly string[] = 'api'): Promise<ApplyResult[]> {
  return applyAll(db, defs, source, 'apply');
}

/** Validates and applies one definition (create or update; identical → unchanged). */
export async function applyAgent(db: Db, input: unknown, source = 'api'): Promise<ApplyResult> {
  const [result] = await applyAll(db, [validateAgent(input)], source, 'apply');
  return result!;
}

/** Saves an agent definition (validated); makes a new version when it changed. Returns the current version. */
export async function putAgent(db: Db, def: AgentDefinition, source = 'api'): Promise<VersionedAgent> {
  const { agent } = await applyAgent(db, def, source);
  return toVersioned(agent, agent.version);
}

/** Creates an agent; 409 when one with that id exists (a deleted one is re-created with its next version). */
export async function createAgent(db: Db, input: unknown, source = 'api'): Promise<AgentView> {
  const [result] = await applyAll(db, [validateAgent(input)], source, 'create');
  return result!.agent;
}

/** PUT: the body's id must match `id` or be left out. Creates the agent when missing (upsert). */
export async function updateAgent(db: Db, id: string, input: unknown, source = 'api'): Promise<ApplyResult> {
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const bodyId = (input as { id?: unknown }).id;
    if (bodyId !== undefined && bodyId !== id) {
      throw new TroupeError('bad_request', `invalid agent: id: the body says "${String(bodyId)}" but the path says "${id}"`, [
        { path: 'id', message: `must be "${id}" (the id in the path) or left out` },
      ]);
    }
    input = { ...input, id };
  }
  const [result] = await applyAll(db, [validateAgent(input)], source, 'apply');
  return result!;
}

/** Soft delete: the agent disappears from GET and the list; its versions stay. */
export async function deleteAgent(db: Db, id: string): Promise<void> {
  const { count } = await db.agentDefinition.updateMany({ where: { id, deletedAt: null }, data: { deletedAt: new Date() } });
  if (count === 0) throw new TroupeError('not_found', `agent "${id}" not found`);
}

// ---- reads ----

/** The current version of an agent, or null when it does not exist or was deleted. */
export async function getAgent(db: Db, id: string): Promise<VersionedAgent | null> {
  const row = await db.agentDefinition.findFirst({ where: { id, deletedAt: null } });
  return row ? toVersioned(definitionOfRow(row), row.version) : null;
}

/** The current version with its metadata, or null. */
export async function getAgentView(db: Db, id: string): Promise<AgentView | null> {
  const row = await db.agentDefinition.findFirst({ where: { id, deletedAt: null } });
  return row ? viewOfRow(row) : null;
}

/** All current agents (deleted ones left out), by id. */
export async function listAgents(db: Db): Promise<AgentView[]> {
  const rows = await db.agentDefinition.findMany({ where: { deletedAt: null }, orderBy: { id: 'asc' } });
  return rows.map(viewOfRow);
}

/** All current agents as sessions freeze them at start. */
export async function agentCatalogue(db: Db): Promise<VersionedAgent[]> {
  const rows = await db.agentDefinition.findMany({ where: { deletedAt: null }, orderBy: { id: 'asc' } });
  return rows.map((row) => toVersioned(definitionOfRow(row), row.version));
}

/**
 * One version with its metadata, deleted agents included (running sessions may use them). A row written before
 * versions were kept (no agent_versions row) is served from the current columns when it is the current version.
 */
export async function getAgentVersionView(db: Db, id: string, version: number): Promise<AgentVersionView | null> {
  const row = await db.agentVersion.findUnique({ where: { agentId_version: { agentId: id, version } } });
  if (row) return viewOfVersion(row);
  const current = await db.agentDefinition.findUnique({ where: { id } });
  if (current && current.version === version) {
    const { updatedAt: _updatedAt, ...view } = viewOfRow(current);
    return { ...view, createdAt: current.updatedAt.toISOString() };
  }
  return null;
}

/** One version of an agent (deleted agents included), or null. */
export async function getAgentVersion(db: Db, id: string, version: number): Promise<VersionedAgent | null> {
  const view = await getAgentVersionView(db, id, version);
  if (!view) return null;
  const { source: _source, createdAt: _createdAt, ...agent } = view;
  return agent;
}

/** Every stored version of an agent, newest first (deleted agents included); empty when the id was never used. */
export async function listAgentVersions(db: Db, id: string): Promise<AgentVersionView[]> {
  const rows = await db.agentVersion.findMany({ where: { agentId: id }, orderBy: { version: 'desc' } });
  const views = rows.map(viewOfVersion);
  const current = await db.agentDefinition.findUnique({ where: { id }, select: { version: true } });
  if (current && !views.some((v) => v.version === current.version)) {
    const legacy = await getAgentVersionView(db, id, current.version);
    if (legacy) views.unshift(legacy);
  }
  return views;
}
