/**
 * The `troupe` command line: a client of the HTTP API (plus `troupe start`, which runs the local stack).
 * Exit codes: 0 ok, 1 failure (API error, failed session), 2 usage error, 130 cancelled session / Ctrl-C.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ApiError, createApiClient, PROJECT_ROOT, resolveConnection, type ApiClient } from '../lib/api-client';
import { TASK_STATUSES, type TaskStatus } from '../core/schemas';
import { logLine, table, taskTree } from './format';
import { runCommand } from './run';

const USAGE = `Usage: troupe <command> [options]

Commands:
  start                          run the local stack (Temporal dev server, worker, API) in the foreground
  run "<goal>"                   start a session, show its progress, answer approvals; ends after the first answer
      --agent NAME --repo PATH --project NAME --approve-all --deny-all --keep-open
  sessions                       list sessions (--limit N, --status STATUS)
  logs <sessionId>               print a session's events (--follow to keep following, --after SEQ)
  tasks <sessionId>              print a session's task tree
  approve <approvalId>           approve a pending tool call (--reason TEXT, --by NAME)
  deny <approvalId>              deny a pending tool call (--reason TEXT, --by NAME)
  agents list                    list agents
  agents apply -f FILE           create or update agents from a YAML file ("-" reads stdin)
  acp                            speak the Agent Client Protocol on stdio

Global options:
  --url URL       API address (env TROUPE_API_URL, default http://127.0.0.1:8080)
  --token TOKEN   API token (env TROUPE_API_TOKEN, else the first of TROUPE_API_TOKENS, else .data/api-token)
  --json          machine-readable output (one JSON document per line)
  -h, --help      this help

Exit codes: 0 ok, 1 failed, 2 usage error, 130 cancelled (Ctrl-C cancels the session of \`troupe run\`).`;

type Options = NonNullable<ParseArgsConfig['options']>;

const GLOBAL: Options = {
  url: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const COMMANDS: Record<string, Options> = {
  start: {},
  run: {
    agent: { type: 'string' },
    repo: { type: 'string' },
    project: { type: 'string' },
    'approve-all': { type: 'boolean' },
    'deny-all': { type: 'boolean' },
    'keep-open': { type: 'boolean' },
  },
  sessions: { limit: { type: 'string' }, status: { type: 'string' } },
  logs: { follow: { type: 'boolean', short: 'f' }, after: { type: 'string' } },
  tasks: {},
  approve: { reason: { type: 'string' }, by: { type: 'string' } },
  deny: { reason: { type: 'string' }, by: { type: 'string' } },
  agents: { file: { type: 'string', short: 'f' } },
  acp: {},
};

export class UsageError extends Error {}

/** The command is the first argument that is neither an option nor the value of --url/--token. */
function findCommand(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') return argv[i + 1];
    if (a === '--url' || a === '--token') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function int(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value)) throw new UsageError(`--${name} must be a non-negative integer`);
  return Number(value);
}

export async function main(argv: readonly string[]): Promise<number> {
  const command = findCommand(argv);
  const specific = command ? COMMANDS[command] : undefined;
  if (command && !specific) throw new UsageError(`unknown command "${command}"`);
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...GLOBAL, ...specific }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message.split('\n')[0] ?? e.message : String(e));
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const args = parsed.positionals.slice(1);
  if (v.help || !command) {
    (v.help ? process.stdout : process.stderr).write(`${USAGE}\n`);
    return v.help ? 0 : 2;
  }
  const json = Boolean(v.json);
  const arity = (n: number, what: string) => {
    if (args.length !== n) throw new UsageError(`troupe ${command} takes ${what}`);
  };

  if (command === 'start') {
    arity(0, 'no arguments');
    return startStack();
  }
  const conn = resolveConnection({
    ...(typeof v.url === 'string' ? { url: v.url } : {}),
    ...(typeof v.token === 'string' ? { token: v.token } : {}),
  });
  if (command === 'acp') {
    arity(0, 'no arguments');
    let mod: { runAcp?: (opts: { url?: string; token?: string }) => Promise<void> };
    try {
      const spec = './acp';
      mod = (await import(spec)) as typeof mod;
    } catch (e) {
      process.stderr.write(`troupe acp is not available: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    }
    if (typeof mod.runAcp !== 'function') {
      process.stderr.write('troupe acp is not available: cli/acp.ts exports no runAcp()\n');
      return 1;
    }
    await mod.runAcp({ url: conn.baseUrl, ...(conn.token ? { token: conn.token } : {}) });
    return 0;
  }
  if (!conn.token) {
    process.stderr.write('No API token: pass --token, set TROUPE_API_TOKEN, or start the stack with `troupe start` (it saves its token in .data/api-token).\n');
    return 2;
  }
  const client = createApiClient({ baseUrl: conn.baseUrl, token: conn.token });

  switch (command) {
    case 'run': {
      arity(1, 'one goal: troupe run "<goal>"');
      if (v['approve-all'] && v['deny-all']) throw new UsageError('--approve-all and --deny-all exclude each other');
      return runCommand(client, {
        goal: args[0] ?? '',
        ...(typeof v.agent === 'string' ? { agent: v.agent } : {}),
        ...(typeof v.repo === 'string' ? { repo: v.repo } : {}),
        ...(typeof v.project === 'string' ? { project: v.project } : {}),
        approveAll: Boolean(v['approve-all']),
        denyAll: Boolean(v['deny-all']),
        keepOpen: Boolean(v['keep-open']),
        json,
      });
    }
    case 'sessions': {
      arity(0, 'no arguments');
      const status = v.status;
      if (status !== undefined && !(TASK_STATUSES as readonly unknown[]).includes(status)) {
        throw new UsageError(`--status must be one of ${TASK_STATUSES.join(', ')}`);
      }
      const page = await client.listSessions({ limit: int(v.limit, 'limit') ?? 20, ...(status ? { status: status as TaskStatus } : {}) });
      if (json) {
        out(JSON.stringify(page));
        return 0;
      }
      if (page.data.length === 0) {
        out('no sessions');
        return 0;
      }
      out(
        table([
          ['ID', 'STATUS', 'AGENT', 'CREATED', 'GOAL'],
          ...page.data.map((s) => [s.id, `${s.status}${s.statusReason ? ` (${s.statusReason})` : ''}`, s.agentId, s.createdAt.slice(0, 19).replace('T', ' '), s.goal.replace(/\s+/g, ' ').slice(0, 60)]),
        ]),
      );
      return 0;
    }
    case 'logs': {
      arity(1, 'one session id');
      return logs(client, args[0] ?? '', { follow: Boolean(v.follow), after: int(v.after, 'after') ?? 0, json });
    }
    case 'tasks': {
      arity(1, 'one session id');
      const tree = await client.tasks(args[0] ?? '');
      out(json ? JSON.stringify({ data: tree }) : taskTree(tree).join('\n') || 'no tasks');
      return 0;
    }
    case 'approve':
    case 'deny': {
      arity(1, 'one approval id (see `troupe run` output or GET /v1/sessions/:id/approvals)');
      const view = await client.decideApproval(args[0] ?? '', {
        decision: command,
        ...(typeof v.reason === 'string' ? { reason: v.reason } : {}),
        by: typeof v.by === 'string' ? v.by : 'cli',
      });
      out(json ? JSON.stringify(view) : `approval ${view.id} ${view.status} (${view.tool} for session ${view.sessionId})`);
      return 0;
    }
    case 'agents': {
      const sub = args[0];
      if (sub === 'list') {
        arity(1, '"list" or "apply -f FILE"');
        const agents = await client.listAgents();
        if (json) out(JSON.stringify({ data: agents }));
        else out(table([['ID', 'VERSION', 'ROLE', 'MODEL', 'SOURCE'], ...agents.map((a) => [a.id, String(a.version), a.role, a.model, a.source ?? ''])]));
        return 0;
      }
      if (sub === 'apply') {
        arity(1, '"apply -f FILE"');
        if (typeof v.file !== 'string') throw new UsageError('troupe agents apply needs -f FILE');
        const text = v.file === '-' ? readFileSync(0, 'utf8') : readFileSync(path.resolve(v.file), 'utf8');
        const results = await client.applyAgentsYaml(text);
        if (json) out(JSON.stringify({ data: results }));
        else for (const r of results) out(`${r.agent.id}: ${r.change} (v${r.agent.version})`);
        return 0;
      }
      throw new UsageError('troupe agents takes "list" or "apply -f FILE"');
    }
  }
  throw new UsageError(`unknown command "${command}"`);
}

async function logs(client: ApiClient, id: string, opts: { follow: boolean; after: number; json: boolean }): Promise<number> {
  const session = await client.getSession(id);
  if (!opts.follow && session.lastSeq <= opts.after) return 0;
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  for await (const e of client.events(id, { after: opts.after, signal: abort.signal })) {
    out(opts.json ? JSON.stringify(e) : logLine(e));
    if (!opts.follow && e.seq >= session.lastSeq) break;
  }
  abort.abort();
  return 0;
}

function startStack(): Promise<number> {
  const tsx = path.join(PROJECT_ROOT, 'node_modules', '.bin', 'tsx');
  const child = spawn(tsx, ['scripts/start.ts'], { cwd: PROJECT_ROOT, stdio: 'inherit' });
  // Ctrl-C reaches the whole foreground process group; the stack stops itself in order, so only wait for it.
  const ignore = () => {};
  process.on('SIGINT', ignore);
  const forward = () => child.kill('SIGTERM');
  process.on('SIGTERM', forward);
  return new Promise((resolve) => {
    child.on('error', (e) => {
      process.stderr.write(`cannot run ${tsx}: ${e.message}\n`);
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
      resolve(code ?? (signal === 'SIGINT' ? 130 : 1));
    });
  });
}


main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`troupe: ${e.message}\n\nRun \`troupe --help\` for usage.\n`);
      process.exitCode = 2;
    } else if (e instanceof ApiError) {
      process.stderr.write(`troupe: ${e.message}${e.status ? ` (${e.status} ${e.code})` : ''}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`troupe: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    }
  },
);
