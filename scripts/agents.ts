/**
 * `npm run agents -- <command>`: manage the agent registry straight in the database (DATABASE_URL), through the same
 * service the API uses.
 *
 *   apply -f <file or folder> [-f …]   create or update the agents in YAML files (identical ones are left alone)
 *   validate -f <file or folder>       check the files without touching the database
 *   list                               the current agents with their version and source
 */
import { parseArgs } from 'node:util';
import { TroupeError } from '../core/errors';
import { applyAgentFiles, loadAgentFiles } from '../lib/agent-files';
import { loadConfig } from '../lib/config';
import { createPrisma } from '../lib/db/client';
import { listAgents } from '../service/agents';

const USAGE = `usage: npm run agents -- apply -f <file or folder> [-f …]
       npm run agents -- validate -f <file or folder> [-f …]
       npm run agents -- list`;

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { file: { type: 'string', short: 'f', multiple: true }, help: { type: 'boolean', short: 'h' } },
  });
  const command = positionals[0];
  const files = values.file ?? [];
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if ((command === 'apply' || command === 'validate') && files.length === 0) {
    console.error(`${command} needs -f <file or folder>\n${USAGE}`);
    return 2;
  }

  if (command === 'validate') {
    for (const f of files) {
      const entries = await loadAgentFiles(f);
      for (const e of entries) console.log(`ok  ${e.definition.id}  (${e.file})`);
    }
    return 0;
  }
  if (command !== 'apply' && command !== 'list') {
    console.error(`unknown command "${command}"\n${USAGE}`);
    return 2;
  }

  const db = createPrisma(loadConfig().databaseUrl);
  try {
    if (command === 'list') {
      const agents = await listAgents(db);
      if (agents.length === 0) console.log('no agents');
      for (const a of agents) console.log(`${a.id.padEnd(24)} v${String(a.version).padEnd(4)} ${a.role.padEnd(12)} ${a.model.padEnd(28)} ${a.source}`);
      return 0;
    }
    for (const f of files) {
      for (const r of await applyAgentFiles(db, f)) console.log(`${r.change.padEnd(9)} ${r.agent.id}@${r.agent.version}  (${r.file})`);
    }
    return 0;
  } finally {
    await db.$disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof TroupeError && err.code === 'bad_request' && Array.isArray(err.details)) {
      console.error('agents: invalid input');
      for (const d of err.details as { path: string; message: string }[]) console.error(`  ${d.path}: ${d.message}`);
    } else {
      console.error(`agents failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    process.exit(1);
  },
);
