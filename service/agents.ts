/**
 * The agent registry service: versioned agent definitions with idempotent apply, soft delete, validation against the
 * tool and model registries, and the built-in set shipped as YAML in `agents/`. Every front door uses this module.
 */
import { fileURLToPath } from 'node:url';
import type { VersionedAgent } from '../core/schemas';
import { loadAgentFiles } from '../lib/agent-files';
import type { Db } from '../lib/db/client';
import {
  agentCatalogue,
  applyAgents,
  createAgent,
  deleteAgent,
  getAgent,
  getAgentVersion,
  getAgentVersionView,
  getAgentView,
  listAgents,
  listAgentVersions,
  updateAgent,
  validateAgents,
  type AgentView,
  type ApplyResult,
} from './agent-store';
import { TroupeError } from '../core/errors';

export {
  agentCatalogue,
  applyAgent,
  applyAgents,
  checkAgent,
  createAgent,
  deleteAgent,
  getAgent,
  getAgentVersion,
  getAgentVersionView,
  getAgentView,
  listAgents,
  listAgentVersions,
  putAgent,
  updateAgent,
  validateAgent,
  validateAgents,
  type AgentChange,
  type AgentVersionView,
  type AgentView,
  type ApplyResult,
  type Problem,
} from './agent-store';

export const DEFAULT_AGENT_ID = 'assistant';

/** The built-in agents' folder, next to this module's (not the working directory). */
export const BUILTIN_AGENTS_DIR = fileURLToPath(new URL('../agents/', import.meta.url));

/**
 * Applies the built-in agents from `agents/*.yaml` (source `builtin`) and, when given, a team folder of agent files
 * (TROUPE_AGENTS_DIR, source `yaml:<file>`) whose agents replace built-ins of the same id. One transaction; idempotent
 * and safe when several processes start at once: unchanged definitions make no new version. Files win at start-up: an
 * agent they define that was edited or deleted through the API is set back to the file's definition (a new version).
 */
export async function ensureBuiltinAgents(db: Db, opts: { teamDir?: string } = {}): Promise<(ApplyResult & { file: string })[]> {
  const builtin = await loadAgentFiles(BUILTIN_AGENTS_DIR);
  const team = opts.teamDir ? await loadAgentFiles(opts.teamDir) : [];
  const teamIds = new Set(team.map((e) => e.definition.id));
  const entries = [...builtin.filter((e) => !teamIds.has(e.definition.id)).map((e) => ({ ...e, source: 'builtin' })), ...team];
  const results = await applyAgents(
    db,
    entries.map((e) => e.definition),
    entries.map((e) => e.source),
  );
  return results.map((r, i) => ({ ...r, file: entries[i]!.file }));
}

/** The registry as an object, for the HTTP router (and other front doors). */
export function createAgentService(db: Db) {
  return {
    list: (): Promise<AgentView[]> => listAgents(db),
    async get(id: string): Promise<AgentView> {
      const agent = await getAgentView(db, id);
      if (!agent) throw new TroupeError('not_found', `agent "${id}" not found`);
      return agent;
    },
    async getVersion(id: string, version: number) {
      const agent = await getAgentVersionView(db, id, version);
      if (!agent) throw new TroupeError('not_found', `agent "${id}" has no version ${version}`);
      return agent;
    },
    async versions(id: string) {
      const versions = await listAgentVersions(db, id);
      if (versions.length === 0) throw new TroupeError('not_found', `agent "${id}" not found`);
      return versions;
    },
    create: (input: unknown, source = 'api'): Promise<AgentView> => createAgent(db, input, source),
    update: (id: string, input: unknown, source = 'api'): Promise<ApplyResult> => updateAgent(db, id, input, source),
    /** Validates every definition first, then applies them all in one transaction. */
    apply: (inputs: readonly unknown[], source = 'api'): Promise<ApplyResult[]> => applyAgents(db, validateAgents(inputs), source),
    remove: (id: string): Promise<void> => deleteAgent(db, id),
    catalogue: (): Promise<VersionedAgent[]> => agentCatalogue(db),
    getCurrent: (id: string): Promise<VersionedAgent | null> => getAgent(db, id),
    getVersionOf: (id: string, version: number): Promise<VersionedAgent | null> => getAgentVersion(db, id, version),
  };
}
export type AgentService = ReturnType<typeof createAgentService>;
