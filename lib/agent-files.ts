/**
 * Agent definitions as YAML files: one agent per file, or a YAML list of agents (several `---` documents work too).
 * The built-in set lives in `agents/` at the repository root; teams add their own with TROUPE_AGENTS_DIR or
 * `npm run agents -- apply -f <file or folder>`.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { TroupeError } from '../core/errors';
import type { AgentDefinition } from '../core/schemas';
import type { Db } from './db/client';
import { applyAgents, checkAgent, describeProblems, type ApplyResult, type Problem } from '../service/agent-store';

export type AgentFileEntry = {
  definition: AgentDefinition;
  /** `yaml:<file name relative to the folder loaded>`. */
  source: string;
  file: string;
};

const YAML_FILE = /\.ya?ml$/i;

/**
 * The agents in one YAML text, unvalidated. `items[i].prefix` is how problems of that item are named: empty for a
 * text holding a single agent, `<index>.` when it holds a list or several documents. Bad YAML is a bad_request that
 * names `name` and the line.
 */
export function parseAgentYaml(text: string, name: string): { value: unknown; prefix: string }[] {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) return []; // an empty stream
  const values: unknown[] = [];
  let listed = docs.length > 1;
  for (const doc of docs) {
    const err = doc.errors[0];
    if (err) {
      throw new TroupeError('bad_request', `${name}: not valid YAML: ${err.message.split('\n')[0]}`, [{ path: name, message: err.message }]);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (Array.isArray(value)) {
      listed = true;
      values.push(...(value as unknown[]));
    } else {
      values.push(value);
    }
  }
  return values.map((value, i) => ({ value, prefix: listed ? `${i}.` : '' }));
}

async function yamlFiles(dirOrFile: string): Promise<{ base: string; files: string[] }> {
  let info;
  try {
    info = await stat(dirOrFile);
  } catch {
    throw new TroupeError('bad_request', `agent files: "${dirOrFile}" does not exist`);
  }
  if (!info.isDirectory()) return { base: path.dirname(dirOrFile), files: [dirOrFile] };
  const names = (await readdir(dirOrFile, { withFileTypes: true }))
    .filter((e) => e.isFile() && YAML_FILE.test(e.name))
    .map((e) => e.name)
    .sort();
  return { base: dirOrFile, files: names.map((n) => path.join(dirOrFile, n)) };
}

/**
 * Parses and validates every `*.yaml` / `*.yml` file of a folder (not its subfolders), or one file. Throws a
 * bad_request naming each bad file and field (`coder.yaml: tools.1: unknown tool "shell" …`), and agents defined in
 * two places. Nothing is returned unless every file is good.
 */
export async function loadAgentFiles(dirOrFile: string): Promise<AgentFileEntry[]> {
  const { base, files } = await yamlFiles(dirOrFile);
  const entries: AgentFileEntry[] = [];
  const problems: Problem[] = [];
  const where = new Map<string, string>();
  for (const file of files) {
    const rel = path.relative(base, file) || path.basename(file);
    let items: { value: unknown; prefix: string }[];
    try {
      items = parseAgentYaml(await readFile(file, 'utf8'), rel);
    } catch (err) {
      if (!(err instanceof TroupeError)) throw err;
      problems.push({ path: rel, message: err.message });
      continue;
    }
    if (items.length === 0) problems.push({ path: rel, message: 'no agent definition in this file' });
    for (const { value, prefix } of items) {
      const { definition, problems: found } = checkAgent(value);
      problems.push(...found.map((p) => ({ path: `${rel}: ${prefix}${p.path}`, message: p.message })));
      if (!definition) continue;
      const other = where.get(definition.id);
      if (other !== undefined) {
        problems.push({ path: `${rel}: ${prefix}id`, message: `agent "${definition.id}" is also defined in ${other}` });
        continue;
      }
      where.set(definition.id, rel);
      entries.push({ definition, source: `yaml:${rel}`, file: rel });
    }
  }
  if (problems.length) {
    throw new TroupeError('bad_request', `invalid agent file(s) in ${dirOrFile}: ${describeProblems(problems)}`, problems);
  }
  return entries;
}

/**
 * Loads a folder (or file) of agents and applies them all in one transaction: new agents are created, changed ones
 * get a new version, identical ones are left alone. `source` overrides the per-file `yaml:<file>` source.
 */
export async function applyAgentFiles(db: Db, dirOrFile: string, opts: { source?: string } = {}): Promise<(ApplyResult & { file: string })[]> {
  const entries = await loadAgentFiles(dirOrFile);
  const results = await applyAgents(
    db,
    entries.map((e) => e.definition),
    opts.source ?? entries.map((e) => e.source),
  );
  return results.map((r, i) => ({ ...r, file: entries[i]!.file }));
}
