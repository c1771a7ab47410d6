/**
 * Coding tools: read, write, edit, list and search files in the session's worktree, run commands in the sandbox, and
 * look at what changed. Every path goes through lib/paths (inside the worktree, never `.git`, no symlink escapes);
 * every git call through lib/workspace (argv only, hooks off). Snapshots around mutating steps are the caller's job
 * (`beginStep`/`endStep` in lib/workspace); `CODING_TOOL_META` says which tools mutate and what a policy may look at.
 */
import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { TroupeError } from '../../core/errors';
import { lexicalRelPath, resolveInside } from '../../lib/paths';
import type { CommandResult, RunCommandOptions } from '../../lib/sandbox';
import { attachWorkspace, diff, grep, listSnapshots, status } from '../../lib/workspace';
import type { ToolContext, ToolDefinition } from './index';

/**
 * What run_command hands the command runner: lib/sandbox's runCommand options without `sandbox` (the worker binds
 * its sandbox status, limits and network policy when it builds the context).
 */
export type WorkspaceCommandOptions = Omit<RunCommandOptions, 'sandbox'>;
export type { CommandResult };

export type WorkspaceContext = {
  /** realpath of the session's (or task's) worktree. */
  root: string;
  /** The repository's shared git directory. */
  gitCommonDir: string;
  /** Runs a command in the sandbox; absent when commands are disabled. */
  runCommand?: (opts: WorkspaceCommandOptions) => Promise<CommandResult>;
};

export const NO_WORKSPACE = 'this session has no repository; start it with `repo`';

const MAX_READ_BYTES = 4 * 1024 * 1024;
const MAX_OUTPUT_CHARS = 100_000;
const MAX_LINE_CHARS = 2_000;
const MAX_DIR_ENTRIES = 500;
const MAX_SEARCH_LINES = 300;
const MAX_COMMAND_STREAM_CHARS = 20_000;

function workspaceOf(ctx: ToolContext): WorkspaceContext {
  const ws = (ctx as ToolContext & { workspace?: WorkspaceContext }).workspace;
  if (!ws) throw new TroupeError('bad_request', NO_WORKSPACE);
  return ws;
}

function defineTool<S extends z.ZodType>(tool: ToolDefinition<S>): ToolDefinition {
  return tool as unknown as ToolDefinition;
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

function lineCount(text: string): number {
  if (text === '') return 0;
  const newlines = text.split('\n').length - 1;
  return text.endsWith('\n') ? newlines : newlines + 1;
}

function isBinary(buf: Buffer): boolean {
  return buf.subarray(0, 8000).includes(0);
}

/** Keeps the head and the tail of a long text (the end of a build log is where the error is). */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = Math.floor(max * 0.4);
  const tail = max - head;
  return `${text.slice(0, head)}\n… [${text.length - max} characters omitted] …\n${text.slice(text.length - tail)}`;
}

async function readTextFile(abs: string, rel: string): Promise<string> {
  let st;
  try {
    st = await stat(abs);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) throw new TroupeError('bad_request', `path "${rel}": no such file`);
    throw err;
  }
  if (st.isDirectory()) throw new TroupeError('bad_request', `path "${rel}": is a directory; use list_dir`);
  if (!st.isFile()) throw new TroupeError('bad_request', `path "${rel}": is not a regular file`);
  if (st.size > MAX_READ_BYTES) {
    throw new TroupeError('bad_request', `path "${rel}": ${st.size} bytes is more than ${MAX_READ_BYTES} bytes; use search, or run_command (e.g. head, sed -n)`);
  }
  const buf = await readFile(abs);
  if (isBinary(buf)) throw new TroupeError('bad_request', `path "${rel}": is a binary file (${buf.length} bytes)`);
  return buf.toString('utf8');
}

const RelPath = z.string().min(1).max(4096);

const ReadFileInput = z
  .object({
    path: RelPath,
    offset: z.number().int().min(1).optional(),
    limit: z.number().int().min(1).max(10_000).optional(),
  })
  .strict();
const WriteFileInput = z.object({ path: RelPath, content: z.string().max(1_000_000) }).strict();
const EditFileInput = z
  .object({
    path: RelPath,
    old: z.string().min(1).max(200_000),
    new: z.string().max(1_000_000),
    replaceAll: z.boolean().optional(),
  })
  .strict();
const ListDirInput = z.object({ path: RelPath.optional() }).strict();
const SearchInput = z
  .object({
    pattern: z.string().min(1).max(1_000),
    path: RelPath.optional(),
    regex: z.boolean().optional(),
    ignoreCase: z.boolean().optional(),
  })
  .strict();
const RunCommandInput = z
  .object({
    argv: z
      .array(z.string().max(16_000))
      .min(1)
      .max(64)
      .refine((a) => (a[0] ?? '').length > 0, 'argv[0] (the program) must not be empty'),
    cwd: RelPath.optional(),
  })
  .strict();
const NoInput = z.object({}).strict();

export const CODING_TOOLS: readonly ToolDefinition[] = [
  defineTool({
    name: 'read_file',
    description:
      'Read a text file of the repository. Lines come numbered ("<number>\\t<line>"; the number and the tab are not part ' +
      'of the file). offset: first line (1-based, default 1); limit: number of lines (default 2000). Paths are relative ' +
      'to the repository root.',
    input: ReadFileInput,
    async run(ctx, input) {
      const ws = workspaceOf(ctx);
      const { abs, rel } = await resolveInside(ws.root, input.path, { forWrite: false });
      const text = await readTextFile(abs, rel || '.');
      if (text === '') return `${rel}: (empty file)`;
      const lines = text.split('\n');
      if (text.endsWith('\n')) lines.pop();
      const total = lines.length;
      const first = input.offset ?? 1;
      if (first > total) throw new TroupeError('bad_request', `offset ${first} is past the end of ${rel} (${total} lines)`);
      const last = Math.min(total, first - 1 + (input.limit ?? 2000));
      const out: string[] = [];
      let size = 0;
      let shownLast = first - 1;
      for (let n = first; n <= last; n++) {
        let line = lines[n - 1] ?? '';
        if (line.length > MAX_LINE_CHARS) line = `${line.slice(0, MAX_LINE_CHARS)}… [line cut at ${MAX_LINE_CHARS} characters]`;
        const entry = `${String(n).padStart(6)}\t${line}`;
        if (size + entry.length > MAX_OUTPUT_CHARS && out.length > 0) break;
        out.push(entry);
        size += entry.length + 1;
        shownLast = n;
      }
      const more = shownLast < total ? `; more: offset=${shownLast + 1}` : '';
      return `${rel}: lines ${first}-${shownLast} of ${total}${more}\n${out.join('\n')}`;
    },
  }),
  defineTool({
    name: 'write_file',
    description: 'Create or overwrite a file with the given content (parent directories are created). Paths are relative to the repository root.',
    input: WriteFileInput,
    async run(ctx, input) {
      const ws = workspaceOf(ctx);
      const { abs, rel } = await resolveInside(ws.root, input.path, { forWrite: true });
      const existing = await lstat(abs).catch(() => null);
      if (existing?.isDirectory()) throw new TroupeError('bad_request', `path "${rel}": is a directory`);
      try {
        await mkdir(path.dirname(abs), { recursive: true });
        await writeFile(abs, input.content);
      } catch (err) {
        if (isErrno(err, 'ENOTDIR') || isErrno(err, 'EEXIST')) throw new TroupeError('bad_request', `path "${rel}": a parent is a file, not a directory`);
        throw err;
      }
      const bytes = Buffer.byteLength(input.content);
      return `${existing ? 'overwrote' : 'created'} ${rel} (${bytes} bytes, ${lineCount(input.content)} lines)`;
    },
  }),
  defineTool({
    name: 'edit_file',
    description:
      'Replace exact text in a file: `old` must occur exactly once (include enough surrounding lines to make it unique), ' +
      'or set replaceAll to replace every occurrence. Whitespace and indentation must match exactly; do not include the ' +
      'line numbers read_file shows.',
    input: EditFileInput,
    async run(ctx, input) {
      const ws = workspaceOf(ctx);
      const { abs, rel } = await resolveInside(ws.root, input.path, { forWrite: true });
      if (input.old === input.new) throw new TroupeError('bad_request', 'edit_file: old and new are identical; nothing to change');
      const text = await readTextFile(abs, rel).catch((err: unknown) => {
        if (err instanceof TroupeError && err.message.endsWith('no such file')) {
          throw new TroupeError('bad_request', `path "${rel}": no such file; use write_file to create it`);
        }
        throw err;
      });
      const parts = text.split(input.old);
      const count = parts.length - 1;
      if (count === 0) throw new TroupeError('bad_request', `edit_file: old text not found in ${rel} (it must match exactly, whitespace included)`);
      if (count > 1 && !input.replaceAll) {
        throw new TroupeError('bad_request', `edit_file: old text occurs ${count} times in ${rel}; add surrounding context to make it unique, or set replaceAll`);
      }
      // split/join: `new` is inserted literally (String.replace would interpret `$&`, `$1`, …).
      await writeFile(abs, parts.join(input.new));
      return `edited ${rel}: replaced ${count} occurrence${count === 1 ? '' : 's'}`;
    },
  }),
  defineTool({
    name: 'list_dir',
    description: 'List a directory of the repository (default: the root). Directories end with "/", symlinks show their target; .git is left out.',
    input: ListDirInput,
    async run(ctx, input) {
      const ws = workspaceOf(ctx);
      const { abs, rel } = await resolveInside(ws.root, input.path ?? '.', { forWrite: false });
      let entries;
      try {
        entries = await readdir(abs, { withFileTypes: true });
      } catch (err) {
        if (isErrno(err, 'ENOENT')) throw new TroupeError('bad_request', `path "${rel}": no such directory`);
        if (isErrno(err, 'ENOTDIR')) throw new TroupeError('bad_request', `path "${rel}": is a file; use read_file`);
        throw err;
      }
      const visible = entries.filter((e) => e.name.toLowerCase() !== '.git').sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const lines: string[] = [];
      for (const e of visible.slice(0, MAX_DIR_ENTRIES)) {
        if (e.isDirectory()) lines.push(`${e.name}/`);
        else if (e.isSymbolicLink()) lines.push(`${e.name} -> ${await readlink(path.join(abs, e.name)).catch(() => '?')}`);
        else lines.push(e.name);
      }
      if (visible.length > MAX_DIR_ENTRIES) lines.push(`… and ${visible.length - MAX_DIR_ENTRIES} more entries`);
      const header = `${rel || '.'}/ (${visible.length} entr${visible.length === 1 ? 'y' : 'ies'})`;
      return visible.length === 0 ? `${header}: empty` : `${header}\n${lines.join('\n')}`;
    },
  }),
  defineTool({
    name: 'search',
    description:
      'Search the text files of the repository (tracked and untracked, not ignored ones or binaries) for a fixed string, ' +
      'or an extended regular expression with regex: true. path: a file or directory to search in. Answers ' +
      '"path:line:text" lines.',
    input: SearchInput,
    async run(ctx, input) {
      const wc = workspaceOf(ctx);
      const { rel } = await resolveInside(wc.root, input.path ?? '.', { forWrite: false });
      const ws = await attachWorkspace(wc);
      const r = await grep(ws, {
        pattern: input.pattern,
        ...(rel ? { path: rel } : {}),
        regex: input.regex ?? false,
        ignoreCase: input.ignoreCase ?? false,
        maxBytes: 512 * 1024,
        signal: ctx.signal,
      });
      if (!r.matched) return `no matches for ${input.regex ? 'regex' : 'text'} ${JSON.stringify(input.pattern)}${rel ? ` in ${rel}` : ''}`;
      const all = r.text.split('\n').filter((l) => l !== '');
      if (r.truncated) all.pop(); // the last line may be cut mid-way
      const shown = all.slice(0, MAX_SEARCH_LINES).map((l) => (l.length > 500 ? `${l.slice(0, 500)}…` : l));
      const more = all.length > MAX_SEARCH_LINES || r.truncated ? `\n… more matches not shown; narrow the search (path, a longer pattern)` : '';
      return clip(shown.join('\n'), MAX_OUTPUT_CHARS) + more;
    },
  }),
  defineTool({
    name: 'run_command',
    description:
      'Run a program in the repository, in a sandbox: argv is the program and its arguments, passed as they are (no ' +
      'shell: no pipes, globs, redirections or $variables; run ["sh", "-c", "..."] if you need a shell and the sandbox ' +
      'allows it). cwd: directory relative to the repository root. Answers the exit code and the output.',
    input: RunCommandInput,
    async run(ctx, input) {
      const ws = workspaceOf(ctx);
      if (!ws.runCommand) throw new TroupeError('bad_request', 'commands are disabled for this session');
      // cwd is checked here too (the runner checks it again): the model gets the same path errors as everywhere.
      const { abs, rel } = await resolveInside(ws.root, input.cwd ?? '.', { forWrite: false });
      const st = await stat(abs).catch(() => null);
      if (!st?.isDirectory()) throw new TroupeError('bad_request', `cwd "${rel}": no such directory`);
      let result: CommandResult;
      try {
        result = await ws.runCommand({ argv: input.argv, root: ws.root, ...(rel ? { cwd: rel } : {}), readOnlyPaths: [ws.gitCommonDir], signal: ctx.signal });
      } catch (err) {
        // No working sandbox is a fact of this worker, not something a retry fixes: the model is told, and goes on.
        if (err instanceof TroupeError && err.code === 'unavailable') throw new TroupeError('bad_request', err.message);
        throw err;
      }
      if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error('cancelled');
      return formatCommandResult(input.argv, result);
    },
  }),
  defineTool({
    name: 'git_diff',
    description: 'Show everything changed in the repository since this session started (a unified diff, new files included).',
    input: NoInput,
    async run(ctx) {
      const ws = await attachWorkspace(workspaceOf(ctx));
      const d = await diff(ws, { maxBytes: 1024 * 1024 });
      if (d.text.trim() === '') return `no changes since the session started (base ${ws.baseSha.slice(0, 12)})`;
      return clip(d.text, MAX_OUTPUT_CHARS) + (d.truncated ? '\n… [diff cut; read the files for the rest]' : '');
    },
  }),
  defineTool({
    name: 'git_status',
    description: 'List the files changed since this session started (A added, M modified, D deleted, R renamed), and the branch.',
    input: NoInput,
    async run(ctx) {
      const ws = await attachWorkspace(workspaceOf(ctx));
      const [changed, snapshots, pending] = await Promise.all([diff(ws, { nameStatus: true, maxBytes: 256 * 1024 }), listSnapshots(ws), status(ws)]);
      const header = `branch ${ws.branch} (from ${ws.baseSha.slice(0, 12)}, ${snapshots.length} snapshot${snapshots.length === 1 ? '' : 's'})`;
      const files = changed.text.trim() === '' ? 'no changes since the session started' : `changed since the session started:\n${changed.text.trimEnd()}`;
      const uncommitted = pending.trim() === '' ? '' : `\nnot yet snapshotted (git status --porcelain):\n${pending.trimEnd()}`;
      return clip(`${header}\n${files}${uncommitted}`, MAX_OUTPUT_CHARS);
    },
  }),
];

export function formatCommandResult(argv: readonly string[], r: CommandResult): string {
  const how = r.cancelled
    ? 'cancelled'
    : r.timedOut
      ? `timed out after ${r.durationMs} ms`
      : r.signal
        ? `killed by ${r.signal}`
        : `exit code ${r.exitCode ?? 'unknown'}`;
  const lines = [`$ ${argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}`, `${how} (${r.durationMs} ms${r.sandboxed ? '' : ', NOT sandboxed'})`];
  const stream = (name: string, text: string, truncated: boolean) => {
    if (text === '' && !truncated) return;
    lines.push(`--- ${name}${truncated ? ' (truncated by the runner)' : ''} ---`, clip(text, MAX_COMMAND_STREAM_CHARS).trimEnd());
  };
  stream('stdout', r.stdout, r.stdoutTruncated);
  stream('stderr', r.stderr, r.stderrTruncated);
  if (r.stdout === '' && r.stderr === '') lines.push('(no output)');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// metadata for guardrails

export type ToolFacts = {
  /** Worktree-relative paths the call touches (normalised lexically: symlinks are not resolved here). */
  paths: string[];
  /** run_command: the argv. */
  command?: string[];
  /** edit_file: lines removed net (lines of `old` minus lines of `new`, at least 0; per occurrence). */
  deletedLines?: number;
  /** write_file: the content; edit_file: the new text. */
  content?: string;
};
export type CodingToolMeta = { mutates: boolean; facts(input: unknown): ToolFacts };

function factsFrom<S extends z.ZodType>(schema: S, pick: (input: z.infer<S>) => ToolFacts): (input: unknown) => ToolFacts {
  return (input) => {
    const parsed = schema.safeParse(input);
    return parsed.success ? pick(parsed.data) : { paths: [] };
  };
}

const rel = (p: string | undefined): string => lexicalRelPath(p ?? '.') || '.';

export const CODING_TOOL_META: Record<string, CodingToolMeta> = {
  read_file: { mutates: false, facts: factsFrom(ReadFileInput, (i) => ({ paths: [rel(i.path)] })) },
  write_file: { mutates: true, facts: factsFrom(WriteFileInput, (i) => ({ paths: [rel(i.path)], content: i.content })) },
  edit_file: {
    mutates: true,
    facts: factsFrom(EditFileInput, (i) => ({
      paths: [rel(i.path)],
      content: i.new,
      deletedLines: Math.max(0, lineCount(i.old) - lineCount(i.new)),
    })),
  },
  list_dir: { mutates: false, facts: factsFrom(ListDirInput, (i) => ({ paths: [rel(i.path)] })) },
  search: { mutates: false, facts: factsFrom(SearchInput, (i) => ({ paths: [rel(i.path)] })) },
  run_command: { mutates: true, facts: factsFrom(RunCommandInput, (i) => ({ paths: [rel(i.cwd)], command: [...i.argv] })) },
  git_diff: { mutates: false, facts: () => ({ paths: [] }) },
  git_status: { mutates: false, facts: () => ({ paths: [] }) },
};

/**
 * `CODING_TOOL_META[tool].facts(input)` completed with what only the workspace knows: paths resolved through symlinks
 * (a `docs -> secrets/` link cannot hide where a write lands), and the lines a write_file overwrite or a replaceAll
 * edit deletes. A path the tool will refuse anyway keeps its lexical form; without a workspace, the plain facts.
 */
export async function resolveToolFacts(workspace: WorkspaceContext | undefined, tool: string, input: unknown): Promise<ToolFacts> {
  const meta = CODING_TOOL_META[tool];
  if (!meta) return { paths: [] };
  const facts = meta.facts(input);
  if (!workspace) return facts;
  const real = async (p: string): Promise<string> => {
    try {
      return (await resolveInside(workspace.root, p, { forWrite: false })).rel || '.';
    } catch {
      return p;
    }
  };
  const resolved: ToolFacts = { ...facts, paths: await Promise.all(facts.paths.map(real)) };
  const target = resolved.paths[0];
  if ((tool === 'write_file' || tool === 'edit_file') && target !== undefined) {
    const text = await resolveInside(workspace.root, target, { forWrite: true })
      .then(({ abs, rel }) => readTextFile(abs, rel))
      .catch(() => null);
    if (text !== null && tool === 'write_file') {
      const parsed = WriteFileInput.safeParse(input);
      if (parsed.success) resolved.deletedLines = Math.max(0, lineCount(text) - lineCount(parsed.data.content));
    }
    if (text !== null && tool === 'edit_file') {
      const parsed = EditFileInput.safeParse(input);
      if (parsed.success) {
        const occurrences = parsed.data.replaceAll ? text.split(parsed.data.old).length - 1 : 1;
        resolved.deletedLines = (facts.deletedLines ?? 0) * Math.max(1, occurrences);
      }
    }
  }
  return resolved;
}
