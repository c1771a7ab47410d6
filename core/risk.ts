/**
 * Risk scoring of one tool call, and the command analysis the guardrails share. Pure (no Node APIs, no I/O): workflow
 * code may import it.
 *
 * `scoreRisk(facts)` gives every call a score from 0 to 100 and the reasons behind it. Each reason has a stable
 * `code`; a code appears at most once (its points are the highest of its findings, its detail lists them), and the
 * score is the sum of the reasons' points, capped at 100. Codes and typical points:
 *
 *   destructive_command  rm -r of / ~ .. * .git (90), other rm -r (45), rm (10), mkfs/wipefs (90), dd of=/dev/… (90),
 *                        dd of= (60), `> /dev/sd…` (90), shutdown/reboot/halt/poweroff (90), kill -9 -1 (80),
 *                        git push --force (70), git reset --hard / git clean -f (50), chmod -R 777 (60),
 *                        chown -R (50), truncate (40), shred (60), find -delete (40), fork bombs (90)
 *   shell_eval           a download piped or substituted into a shell or interpreter (70); `sh -c`, `bash -c`,
 *                        `eval` (10)
 *   network              network commands (curl, wget, ssh, scp, rsync, nc, git fetch/pull/clone, package installs)
 *                        (30), pushing or publishing (git push, npm publish, docker push) (40), `network: true` (30)
 *   privileged           sudo, su, doas (30)
 *   sensitive_path       writes outside the worktree (60), under .git/ (60), CI configuration (40), .env files (40),
 *                        git hooks (.husky/) (30), other dot-files (20), lockfiles (15), outside the usual source,
 *                        test and docs folders (10)
 *   secret               text written or a command line that holds a credential (core/redact.ts recognises it) (50 /
 *                        40); reading (30) or writing (40) a credentials file (.env, id_rsa, *.pem, credentials…)
 *   large_deletion       deletedLines ≥ 100 (15), ≥ 500 (35), ≥ 2000 (60); rm of ≥ 10 paths (20), ≥ 50 (35)
 *
 * Read-only calls score 0 unless they touch a credentials file.
 *
 * Commands are argv arrays (no shell runs them), so `curl x | sh` as argv is not a pipe; but the script of
 * `sh -c`/`bash -c`/`su -c`/`eval` is parsed as a shell would (quotes, `;` `&&` `||` `|` `&`, `$(…)`, backticks,
 * `<(…)`, redirections, here-documents), and wrappers (sudo, env, nice, timeout, xargs, nohup…) are looked through.
 */
import { normalizePath } from './glob';
import { redactString } from './redact';

/** What the guardrails know about one tool call. Paths are worktree-relative, normalised by the caller. */
export type ToolCallFacts = {
  tool: string;
  agent: { id: string; role: string; permissions: string[] };
  paths: string[];
  /** run_command's argv. */
  command?: string[];
  /** The call asks for network access. */
  network?: boolean;
  /** Text being written (write_file content, edit_file's new text): checked for credentials. */
  content?: string;
  /** Lines the call deletes (the caller computes it, e.g. a write_file replacing a big file with little). */
  deletedLines?: number;
};

export const PERMISSION_NONE = 'none' as const;
export type ToolVerb = 'read' | 'write' | 'exec' | 'mcp' | typeof PERMISSION_NONE;

/**
 * The permission verb each tool needs (re-exported by core/policy.ts, which documents it). run_command also needs
 * `network` when the call asks for network, and `git` for remote git operations (GIT_REMOTE_SUBCOMMANDS). A tool
 * missing from this table is denied, except the tools of an agent's MCP servers (`mcp__<server>__<tool>`): they need
 * `mcp`.
 */
export const TOOL_PERMISSIONS: Readonly<Record<string, ToolVerb>> = {
  read_file: 'read',
  list_dir: 'read',
  search: 'read',
  git_diff: 'read',
  git_status: 'read',
  write_file: 'write',
  edit_file: 'write',
  run_command: 'exec',
  blackboard_read: PERMISSION_NONE,
  blackboard_write: PERMISSION_NONE,
  handoff: PERMISSION_NONE,
  submit_plan: PERMISSION_NONE,
};

/** The verb a tool needs, or undefined for a tool outside TOOL_PERMISSIONS (own keys only: not `constructor`). */
export function toolVerb(tool: string): ToolVerb | undefined {
  if (MCP_TOOL.test(tool)) return 'mcp';
  return Object.hasOwn(TOOL_PERMISSIONS, tool) ? TOOL_PERMISSIONS[tool] : undefined;
}

/** An MCP server's tool, namespaced (core/schemas.ts parseMcpToolName). */
const MCP_TOOL = /^mcp__[a-z][a-z0-9-]{0,31}__./;

/** git subcommands that talk to a remote: they need the `git` permission. */
export const GIT_REMOTE_SUBCOMMANDS: readonly string[] = ['push', 'fetch', 'pull', 'clone', 'remote', 'ls-remote'];

export const RISK_CODES = [
  'destructive_command',
  'shell_eval',
  'network',
  'privileged',
  'sensitive_path',
  'secret',
  'large_deletion',
] as const;
export type RiskCode = (typeof RISK_CODES)[number];
export type RiskReason = { code: RiskCode; points: number; detail: string };
export type RiskScore = { score: number; reasons: RiskReason[] };

// ---- shell parsing ----

/** One simple command of a script: its words (quotes removed, `$(…)` kept as written) and redirection targets. */
export type SimpleCommand = { argv: string[]; redirects: { op: string; target: string }[] };
type Script = { pipelines: SimpleCommand[][] };

const SHELLS = new Set(['sh', 'bash', 'zsh', 'dash', 'ksh', 'ash', 'mksh', 'fish', 'csh', 'tcsh']);
const INTERPRETERS = new Set(['python', 'python2', 'python3', 'perl', 'ruby', 'node', 'php', 'deno', 'bun', 'lua']);
const DOWNLOADERS = new Set(['curl', 'wget', 'fetch', 'aria2c', 'http', 'https']);
const KEYWORDS = new Set(['if', 'then', 'else', 'elif', 'do', 'while', 'until', '!', '{', 'time', 'fi', 'done', '}', 'esac']);
const MAX_DEPTH = 4;

function basename(word: string): string {
  const i = word.lastIndexOf('/');
  return i >= 0 ? word.slice(i + 1) : word;
}

/** Index just after the `)` closing the `(` at `open` (quotes respected), or the text's length. */
function closeParen(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') i++;
    else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      i = end < 0 ? text.length : end;
    } else if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '(') depth++;
    else if (c === ')') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return text.length;
}

/**
 * Parses a shell script into pipelines of simple commands. Heuristic, not a full shell grammar: enough to see which
 * programs a script runs, what it pipes into what, and where it redirects output. `$(…)`, backticks and `<(…)` stay
 * in their word as written and are also parsed as scripts of their own (their commands run too).
 */
export function parseScript(script: string, depth = 0): Script {
  const pipelines: SimpleCommand[][] = [];
  let pipeline: SimpleCommand[] = [];
  let cmd: SimpleCommand = { argv: [], redirects: [] };
  let word = '';
  let inWord = false;
  let pendingRedirect: string | null = null;
  const heredocs: { delim: string; strip: boolean }[] = [];
  let pendingHeredoc: boolean | null = null; // strip tabs?
  const nested: string[] = [];

  const endWord = (): void => {
    if (!inWord) return;
    if (pendingHeredoc !== null) {
      heredocs.push({ delim: word, strip: pendingHeredoc });
      pendingHeredoc = null;
    } else if (pendingRedirect !== null) {
      cmd.redirects.push({ op: pendingRedirect, target: word });
      pendingRedirect = null;
    } else {
      cmd.argv.push(word);
    }
    word = '';
    inWord = false;
  };
  const endCommand = (): void => {
    endWord();
    while (cmd.argv.length > 0 && KEYWORDS.has(cmd.argv[0]!)) cmd.argv.shift();
    if (cmd.argv.length > 0 || cmd.redirects.length > 0) pipeline.push(cmd);
    cmd = { argv: [], redirects: [] };
  };
  const endPipeline = (): void => {
    endCommand();
    if (pipeline.length > 0) pipelines.push(pipeline);
    pipeline = [];
  };

  let i = 0;
  const n = script.length;
  while (i < n) {
    const c = script[i]!;
    if (c === '\n') {
      endPipeline();
      i++;
      // Here-document bodies are data, not commands: skip them.
      while (heredocs.length > 0) {
        const { delim, strip } = heredocs.shift()!;
        while (i < n) {
          const eol = script.indexOf('\n', i);
          const line = script.slice(i, eol < 0 ? n : eol);
          i = eol < 0 ? n : eol + 1;
          if ((strip ? line.replace(/^\t+/, '') : line) === delim) break;
        }
      }
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r') {
      endWord();
      i++;
      continue;
    }
    if (c === '#' && !inWord) {
      while (i < n && script[i] !== '\n') i++;
      continue;
    }
    if (c === '\\') {
      if (script[i + 1] !== '\n') {
        word += script[i + 1] ?? '';
        inWord = true;
      }
      i += 2;
      continue;
    }
    if (c === "'") {
      const end = script.indexOf("'", i + 1);
      word += script.slice(i + 1, end < 0 ? n : end);
      inWord = true;
      i = end < 0 ? n : end + 1;
      continue;
    }
    if (c === '"') {
      inWord = true;
      i++;
      while (i < n && script[i] !== '"') {
        const d = script[i]!;
        if (d === '\\' && i + 1 < n && '"\\$`\n'.includes(script[i + 1]!)) {
          if (script[i + 1] !== '\n') word += script[i + 1];
          i += 2;
        } else if (d === '$' && script[i + 1] === '(') {
          const end = closeParen(script, i + 1);
          nested.push(script.slice(i + 2, end - 1));
          word += script.slice(i, end);
          i = end;
        } else if (d === '`') {
          const end = script.indexOf('`', i + 1);
          nested.push(script.slice(i + 1, end < 0 ? n : end));
          word += script.slice(i, end < 0 ? n : end + 1);
          i = end < 0 ? n : end + 1;
        } else {
          word += d;
          i++;
        }
      }
      i++;
      continue;
    }
    if (c === '$' && script[i + 1] === '(') {
      const end = closeParen(script, i + 1);
      nested.push(script.slice(i + 2, end - 1));
      word += script.slice(i, end);
      inWord = true;
      i = end;
      continue;
    }
    if (c === '`') {
      const end = script.indexOf('`', i + 1);
      nested.push(script.slice(i + 1, end < 0 ? n : end));
      word += script.slice(i, end < 0 ? n : end + 1);
      inWord = true;
      i = end < 0 ? n : end + 1;
      continue;
    }
    if ((c === '<' || c === '>') && script[i + 1] === '(') {
      const end = closeParen(script, i + 1);
      nested.push(script.slice(i + 2, end - 1));
      word += script.slice(i, end);
      inWord = true;
      i = end;
      continue;
    }
    // Redirections: > >> >| >& < <> <& <<< << <<- &> &>>, optionally after a file descriptor number (2>).
    const redirect = c === '<' || c === '>' || (c === '&' && script[i + 1] === '>') ? /^(?:&>>?|>>|>\||>&|>|<<<|<<-?|<&|<>|<)/.exec(script.slice(i, i + 3)) : null;
    if (redirect) {
      if (inWord && /^\d+$/.test(word)) {
        word = '';
        inWord = false;
      } else {
        endWord();
      }
      const op = redirect[0];
      i += op.length;
      if (op.includes('<<') && !op.includes('<<<')) {
        pendingHeredoc = op.endsWith('-');
      } else if (op.endsWith('&') && /^\s*(?:\d+|-)(?=\s|$|[;&|])/.test(script.slice(i))) {
        // fd duplication (2>&1, >&2): no file involved.
        const m = /^\s*(?:\d+|-)/.exec(script.slice(i))!;
        i += m[0].length;
      } else {
        pendingRedirect = op;
      }
      continue;
    }
    if (c === ';' || c === '&' || c === '|' || c === '(' || c === ')') {
      const two = script.slice(i, i + 2);
      if (two === '||' || two === '&&' || two === ';;') {
        endPipeline();
        i += 2;
      } else if (two === '|&' || c === '|') {
        endCommand();
        i += two === '|&' ? 2 : 1;
      } else {
        endPipeline();
        i++;
      }
      continue;
    }
    word += c;
    inWord = true;
    i++;
  }
  endPipeline();
  if (depth < MAX_DEPTH) {
    for (const inner of nested) pipelines.push(...parseScript(inner, depth + 1).pipelines);
  }
  return { pipelines };
}

/** Options of wrappers that take a value (`sudo -u root`, `timeout -s KILL 5`). */
const WRAPPER_VALUE_OPTIONS: Record<string, Set<string>> = {
  sudo: new Set(['-u', '-g', '-h', '-p', '-C', '-D', '-r', '-t', '-U', '-T', '--user', '--group', '--host', '--prompt', '--chdir']),
  doas: new Set(['-u', '-C']),
  env: new Set(['-u', '-C', '-S', '--unset', '--chdir', '--split-string']),
  nice: new Set(['-n', '--adjustment']),
  ionice: new Set(['-c', '-n', '-p', '-P', '-u']),
  timeout: new Set(['-s', '-k', '--signal', '--kill-after']),
  stdbuf: new Set(['-i', '-o', '-e']),
  xargs: new Set(['-a', '-d', '-E', '-e', '-I', '-i', '-L', '-l', '-n', '-P', '-s', '--max-args', '--max-procs', '--delimiter', '--replace', '--arg-file']),
  chrt: new Set([]),
  taskset: new Set([]),
  nohup: new Set([]),
  time: new Set(['-f', '-o', '--format', '--output']),
  command: new Set([]),
  exec: new Set(['-a']),
  builtin: new Set([]),
  setsid: new Set([]),
  unbuffer: new Set([]),
  caffeinate: new Set([]),
  watch: new Set(['-n', '-d', '--interval']),
};
const PRIVILEGE_WRAPPERS = new Set(['sudo', 'doas']);

/** Leading wrappers and `VAR=value` assignments removed: `sudo -u x env A=1 nice rm -rf /` → `rm -rf /`. */
export function unwrapCommand(argv: readonly string[]): { core: string[]; wrappers: string[] } {
  let rest = [...argv];
  const wrappers: string[] = [];
  for (let guard = 0; guard < 16 && rest.length > 0; guard++) {
    const first = rest[0]!;
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(first)) {
      rest = rest.slice(1);
      continue;
    }
    const name = basename(first);
    const valueOptions = WRAPPER_VALUE_OPTIONS[name];
    if (!valueOptions) break;
    if (name === 'command' && (rest[1] === '-v' || rest[1] === '-V')) return { core: [], wrappers };
    wrappers.push(name);
    let j = 1;
    while (j < rest.length) {
      const a = rest[j]!;
      if (a === '--') {
        j++;
        break;
      }
      if (name === 'env' && /^[A-Za-z_][A-Za-z0-9_]*=/.test(a)) {
        j++;
        continue;
      }
      if (!a.startsWith('-') || a === '-') break;
      j += valueOptions.has(a) ? 2 : 1;
    }
    // timeout and chrt/taskset take a positional value before the command.
    if ((name === 'timeout' || name === 'chrt' || name === 'taskset') && j < rest.length) j++;
    rest = rest.slice(j);
  }
  return { core: rest, wrappers };
}

/** The script a shell runs with `-c` (`bash -c 'x'`, `sh -ec 'x'`, `su -c 'x'`), or null. */
function shellScriptOf(core: readonly string[]): string | null {
  const name = basename(core[0] ?? '');
  if (!SHELLS.has(name) && name !== 'su') return null;
  for (let j = 1; j < core.length; j++) {
    const a = core[j]!;
    if (a === '--command' || (/^-[A-Za-z]*c[A-Za-z]*$/.test(a) && !a.startsWith('--'))) return core[j + 1] ?? '';
    if (name === 'su' && (a === '-' || a === '-l' || a === '--login' || !a.startsWith('-'))) continue;
    if (a === '-o' || a === '+o' || a === '-O' || a === '+O' || a === '--rcfile' || a === '--init-file') {
      j++;
      continue;
    }
    if (!a.startsWith('-') && !a.startsWith('+')) return null;
  }
  return null;
}

/** Everything a command line runs, looked through shells, eval and wrappers. */
export type CommandAnalysis = {
  /** argv joined by single spaces. */
  line: string;
  /** Every simple command run, at any depth, as written (wrappers included) and with its wrappers removed. */
  commands: { argv: string[]; core: string[]; wrappers: string[]; redirects: SimpleCommand['redirects']; depth: number }[];
  /** Pipelines of scripts (run by `sh -c` and friends), as lists of unwrapped argv. */
  pipelines: string[][][];
  /** Scripts run through a shell or eval. */
  scripts: string[];
};

export function analyzeCommand(argv: readonly string[]): CommandAnalysis {
  const out: CommandAnalysis = { line: argv.join(' '), commands: [], pipelines: [], scripts: [] };
  const visit = (words: readonly string[], redirects: SimpleCommand['redirects'], depth: number): void => {
    const { core, wrappers } = unwrapCommand(words);
    out.commands.push({ argv: [...words], core, wrappers, redirects, depth });
    if (depth >= MAX_DEPTH || core.length === 0) return;
    const program = basename(core[0]!);
    let script = shellScriptOf(core);
    if (script === null && program === 'eval') script = core.slice(1).join(' ');
    if (script === null) return;
    out.scripts.push(script);
    for (const pipeline of parseScript(script).pipelines) {
      out.pipelines.push(pipeline.map((c) => unwrapCommand(c.argv).core));
      for (const c of pipeline) visit(c.argv, c.redirects, depth + 1);
    }
  };
  visit(argv, [], 0);
  return out;
}

/**
 * The command lines a policy rule's `commands` are matched against: the whole line first, then every command run
 * inside it (scripts of `sh -c`/`eval`, each as written and with wrappers such as sudo removed). Deny and ask rules
 * match on any of them; allow rules and narrowed `exec:` permissions only on the whole line.
 */
export function commandLines(argv: readonly string[]): string[] {
  const a = analyzeCommand(argv);
  const lines = [a.line];
  for (const c of a.commands) {
    const redirects = c.redirects.map((r) => `${r.op} ${r.target}`);
    lines.push([...c.argv, ...redirects].join(' '), [...c.core, ...redirects].join(' '));
  }
  return [...new Set(lines.filter((l) => l.length > 0))];
}

/** The git subcommand and the words from it on (`git -C x push -f` → `push -f`), or null when not a git command. */
export function gitSubcommand(core: readonly string[]): string[] | null {
  if (basename(core[0] ?? '') !== 'git') return null;
  for (let j = 1; j < core.length; j++) {
    const a = core[j]!;
    if (a === '-C' || a === '-c' || a === '--git-dir' || a === '--work-tree' || a === '--namespace' || a === '--exec-path') {
      j++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return core.slice(j);
  }
  return null;
}

// ---- scoring ----

type Finding = { code: RiskCode; points: number; detail: string };

function isOption(a: string): boolean {
  return a.startsWith('-') && a !== '-';
}

function shortFlags(args: readonly string[]): string {
  return args
    .filter((a) => /^-[A-Za-z]/.test(a) && !a.startsWith('--'))
    .map((a) => a.slice(1))
    .join('');
}

const HOME = /^(?:~|\$HOME|\$\{HOME\})(?=\/|$)/;

/**
 * rm targets that mean "everything": the root or a top-level system folder, home or a folder right under it, the
 * parent, the whole worktree, its history.
 */
function isCriticalTarget(t: string): boolean {
  const s = t.replace(/\/+$/, '') || '/';
  if (/^(?:\/|\/\*|\.\.|\.\.\/\*|\.|\.\/\*|\*|\.\*|\.git|\.\/\.git)$/.test(s)) return true;
  if (/^\/[^/]+(?:\/\*)?$/.test(s)) return true; // /etc, /usr, /home/*
  if (HOME.test(s)) return /^[^/]+(?:\/[^/]*)?$/.test(s); // ~, ~/*, ~/projects
  return false;
}

/** rm targets outside the worktree (temporary folders excepted). */
function isOutsideTarget(t: string): boolean {
  if (HOME.test(t)) return true;
  const p = normalizePath(t);
  if (p.startsWith('/')) return !/^\/(?:tmp|var\/tmp|private\/tmp)(?:\/|$)/.test(p);
  return p === '..' || p.startsWith('../');
}

function scoreRm(core: readonly string[], findings: Finding[]): void {
  const args = core.slice(1);
  const endOfOptions = args.indexOf('--');
  const options = endOfOptions >= 0 ? args.slice(0, endOfOptions) : args.filter(isOption);
  const targets = endOfOptions >= 0 ? args.slice(endOfOptions + 1) : args.filter((a) => !isOption(a));
  const flags = shortFlags(options);
  const recursive = /[rR]/.test(flags) || options.includes('--recursive');
  const critical = targets.filter(isCriticalTarget);
  const outside = targets.filter((t) => !isCriticalTarget(t) && isOutsideTarget(t));
  const line = core.join(' ');
  if (recursive && critical.length > 0) {
    findings.push({ code: 'destructive_command', points: 90, detail: `${line}: recursive delete of ${critical.join(', ')}` });
  } else if (recursive && outside.length > 0) {
    findings.push({ code: 'destructive_command', points: 70, detail: `${line}: recursive delete outside the worktree (${outside.join(', ')})` });
  } else if (recursive) {
    findings.push({ code: 'destructive_command', points: 45, detail: `${line}: recursive delete` });
  } else if (critical.length > 0 || outside.length > 0) {
    findings.push({ code: 'destructive_command', points: 30, detail: `${line}: deletes ${[...critical, ...outside].join(', ')}` });
  } else {
    findings.push({ code: 'destructive_command', points: 10, detail: `${line}: deletes files` });
  }
  if (targets.length >= 50) findings.push({ code: 'large_deletion', points: 35, detail: `rm of ${targets.length} paths` });
  else if (targets.length >= 10) findings.push({ code: 'large_deletion', points: 20, detail: `rm of ${targets.length} paths` });
}

function scoreGit(sub: readonly string[], line: string, findings: Finding[]): void {
  const [name, ...args] = sub;
  const flags = shortFlags(args);
  switch (name) {
    case 'push': {
      findings.push({ code: 'network', points: 40, detail: `${line}: pushes to a remote` });
      if (args.some((a) => a === '--force' || a === '--mirror' || (a.startsWith('+') && a.length > 1)) || /f/.test(flags)) {
        findings.push({ code: 'destructive_command', points: 70, detail: `${line}: force push rewrites the remote's history` });
      } else if (args.some((a) => a.startsWith('--force-with-lease') || a === '--force-if-includes')) {
        findings.push({ code: 'destructive_command', points: 50, detail: `${line}: force push (with lease) rewrites the remote's history` });
      } else if (args.includes('--delete') || /d/.test(flags) || args.some((a) => /^:[^:]/.test(a))) {
        findings.push({ code: 'destructive_command', points: 50, detail: `${line}: deletes a remote branch or tag` });
      }
      return;
    }
    case 'fetch':
    case 'pull':
    case 'clone':
    case 'ls-remote':
      findings.push({ code: 'network', points: 30, detail: `${line}: talks to a remote` });
      return;
    case 'remote':
      if (['update', 'prune', 'show'].includes(args[0] ?? '')) findings.push({ code: 'network', points: 30, detail: `${line}: talks to a remote` });
      return;
    case 'submodule':
      if (args.includes('update') || args.includes('add')) findings.push({ code: 'network', points: 30, detail: `${line}: fetches submodules` });
      return;
    case 'reset':
      if (args.includes('--hard') || args.includes('--merge') || args.includes('--keep')) {
        findings.push({ code: 'destructive_command', points: 50, detail: `${line}: discards uncommitted work` });
      }
      return;
    case 'clean':
      if (/f/.test(flags) || args.includes('--force')) findings.push({ code: 'destructive_command', points: 50, detail: `${line}: deletes untracked files` });
      return;
    case 'checkout':
    case 'restore':
      if (args.includes('.') || args.includes(':/') || (name === 'checkout' && /f/.test(flags)) || args.includes('--force')) {
        findings.push({ code: 'destructive_command', points: 30, detail: `${line}: discards uncommitted changes` });
      }
      return;
    case 'branch':
      if (/D/.test(flags) || (args.includes('--delete') && args.includes('--force'))) {
        findings.push({ code: 'destructive_command', points: 25, detail: `${line}: force-deletes a branch` });
      }
      return;
    case 'stash':
      if (args[0] === 'clear' || args[0] === 'drop') findings.push({ code: 'destructive_command', points: 25, detail: `${line}: drops stashed work` });
      return;
    case 'filter-branch':
    case 'filter-repo':
      findings.push({ code: 'destructive_command', points: 50, detail: `${line}: rewrites history` });
      return;
    case 'update-ref':
    case 'reflog':
    case 'gc':
      if (args.includes('-d') || args.includes('expire') || args.some((a) => a.startsWith('--prune'))) {
        findings.push({ code: 'destructive_command', points: 40, detail: `${line}: removes history` });
      }
      return;
    default:
      return;
  }
}

const PACKAGE_INSTALL: Record<string, RegExp> = {
  npm: /^(install|i|in|ci|add|update|up|upgrade|create)$/,
  pnpm: /^(install|i|add|update|up|upgrade|dlx|create|exec)$/,
  yarn: /^(install|add|upgrade|up|dlx|create)$/,
  bun: /^(install|i|add|update|x|create)$/,
  pip: /^(install|download|wheel)$/,
  pip3: /^(install|download|wheel)$/,
  pipx: /^(install|run|inject)$/,
  uv: /^(add|sync|pip|tool)$/,
  poetry: /^(add|install|update|lock)$/,
  cargo: /^(install|add|fetch|update|search)$/,
  go: /^(get|install|mod)$/,
  gem: /^(install|update|fetch)$/,
  bundle: /^(install|update)$/,
  composer: /^(install|require|update)$/,
  apt: /^(install|update|upgrade|full-upgrade|dist-upgrade)$/,
  'apt-get': /^(install|update|upgrade|dist-upgrade)$/,
  yum: /^(install|update|upgrade)$/,
  dnf: /^(install|update|upgrade)$/,
  apk: /^(add|update|upgrade)$/,
  brew: /^(install|upgrade|update|tap)$/,
  docker: /^(pull|run|build|login|search)$/,
  podman: /^(pull|run|build|login)$/,
};
const PUBLISH: Record<string, RegExp> = {
  npm: /^publish$/,
  pnpm: /^publish$/,
  yarn: /^(publish|npm)$/,
  cargo: /^publish$/,
  docker: /^push$/,
  podman: /^push$/,
  twine: /^upload$/,
  gh: /^(release|pr|repo|gist|api)$/,
  poetry: /^publish$/,
  gem: /^push$/,
};
const NETWORK_PROGRAMS = new Set([
  'curl', 'wget', 'ssh', 'scp', 'sftp', 'rsync', 'nc', 'ncat', 'netcat', 'telnet', 'ftp', 'socat', 'aria2c', 'http',
  'https', 'ping', 'dig', 'nslookup', 'fetch',
]);
/** Run a package, downloading it when it is not installed. */
const MAYBE_DOWNLOAD = new Set(['npx', 'pnpx', 'bunx']);

/** The first non-option word after the program (`npm --silent install x` → `install`). */
function firstVerb(core: readonly string[]): string {
  return core.slice(1).find((a) => !a.startsWith('-')) ?? (basename(core[0] ?? '') === 'yarn' ? 'install' : '');
}

function scoreNetwork(core: readonly string[], line: string, findings: Finding[]): void {
  const program = basename(core[0] ?? '');
  const verb = firstVerb(core);
  if (PUBLISH[program]?.test(verb)) {
    findings.push({ code: 'network', points: 40, detail: `${line}: publishes` });
    return;
  }
  if (NETWORK_PROGRAMS.has(program)) {
    findings.push({ code: 'network', points: 30, detail: `${line}: network command` });
    return;
  }
  if (MAYBE_DOWNLOAD.has(program) || (program === 'npm' && (verb === 'exec' || verb === 'x'))) {
    findings.push({ code: 'network', points: 10, detail: `${line}: may download the package it runs` });
    return;
  }
  if (PACKAGE_INSTALL[program]?.test(verb)) {
    findings.push({ code: 'network', points: 30, detail: `${line}: downloads packages` });
    return;
  }
  if (/^python[0-9.]*$/.test(program) && core[1] === '-m' && /^pip$/.test(core[2] ?? '') && core.includes('install')) {
    findings.push({ code: 'network', points: 30, detail: `${line}: downloads packages` });
  }
}

function scoreOther(core: readonly string[], line: string, findings: Finding[]): void {
  const program = basename(core[0] ?? '');
  const args = core.slice(1);
  const flags = shortFlags(args);
  const destructive = (points: number, why: string): void => {
    findings.push({ code: 'destructive_command', points, detail: `${line}: ${why}` });
  };
  if (/^mkfs(\..+)?$/.test(program) || program === 'mke2fs' || program === 'wipefs') destructive(90, 'formats a disk');
  else if (program === 'fdisk' || program === 'parted' || program === 'sfdisk') destructive(80, 'repartitions a disk');
  else if (program === 'dd') {
    const of = args.find((a) => a.startsWith('of='));
    if (of && /^of=\/dev\/(?!null$|zero$|stdout$|stderr$)/.test(of)) destructive(90, 'writes raw data to a device');
    else if (of) destructive(60, 'overwrites a file with raw data');
  } else if (['shutdown', 'reboot', 'halt', 'poweroff'].includes(program)) destructive(90, 'shuts the machine down');
  else if (program === 'init' && /^[06]$/.test(args[0] ?? '')) destructive(90, 'shuts the machine down');
  else if (program === 'systemctl' && /^(reboot|poweroff|halt|kexec|emergency|rescue)$/.test(args[0] ?? '')) destructive(90, 'shuts the machine down');
  else if (program === 'kill' && args.includes('-1') && args.some((a) => /^-(9|KILL|SIGKILL)$/.test(a) || a === '-s')) destructive(80, 'kills every process');
  else if (program === 'kill' && args[args.length - 1] === '-1') destructive(60, 'signals every process');
  else if (program === 'killall' || program === 'pkill') destructive(30, 'kills processes by name');
  else if (program === 'chmod') {
    const recursive = /R/.test(flags) || args.includes('--recursive');
    const open = args.some((a) => /^0?777$/.test(a) || /^(a|ugo)?\+rwx$/.test(a) || a === 'o+w');
    if (recursive && open) destructive(60, 'makes a tree world-writable');
    else if (open) destructive(20, 'makes a file world-writable');
  } else if ((program === 'chown' || program === 'chgrp') && (/R/.test(flags) || args.includes('--recursive'))) {
    destructive(program === 'chown' ? 50 : 40, 'changes the owner of a tree');
  } else if (program === 'truncate') destructive(40, 'truncates files');
  else if (program === 'shred') destructive(60, 'destroys file contents');
  else if (program === 'find' && (args.includes('-delete') || args.some((a, k) => a === '-exec' && /^(rm|shred)$/.test(basename(args[k + 1] ?? ''))))) {
    destructive(40, 'deletes what it finds');
  } else if (program === 'rmdir' && args.some(isCriticalTarget)) destructive(30, 'removes a top-level folder');
}

function isShellLike(core: readonly string[]): boolean {
  const p = basename(core[0] ?? '');
  return SHELLS.has(p) || /^python[0-9.]*$/.test(p) || INTERPRETERS.has(p) || p === 'source' || p === '.';
}

const DOWNLOAD_SUBSTITUTION = /(?:\$\(|`|<\()\s*(?:(?:sudo|command|env)\s+)*(?:\S*\/)?(?:curl|wget|fetch|aria2c)\b/;

/** A download piped or substituted into a shell or interpreter. */
function scoreDownloadExec(a: CommandAnalysis, findings: Finding[]): void {
  for (const pipeline of a.pipelines) {
    const first = pipeline.findIndex((c) => DOWNLOADERS.has(basename(c[0] ?? '')));
    if (first < 0) continue;
    const sink = pipeline.slice(first + 1).find(isShellLike);
    if (sink) {
      findings.push({ code: 'shell_eval', points: 70, detail: `pipes a download (${basename(pipeline[first]![0]!)}) into ${basename(sink[0]!)}` });
      return;
    }
  }
  for (const c of a.commands) {
    const program = c.core[0] ?? '';
    if (DOWNLOAD_SUBSTITUTION.test(program)) {
      findings.push({ code: 'shell_eval', points: 70, detail: 'runs the output of a download as a command' });
      return;
    }
    const name = basename(program);
    if ((name === 'eval' || isShellLike(c.core)) && c.core.slice(1).some((w) => DOWNLOAD_SUBSTITUTION.test(w))) {
      if (name !== 'eval' && shellScriptOf(c.core) !== null) continue; // `bash -c "$(curl …)"`: seen as the script's command
      findings.push({ code: 'shell_eval', points: 70, detail: `${name} runs a download` });
      return;
    }
  }
}

const FORK_BOMB = /:\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:/;
const RAW_DEVICE = /^\/dev\/(?:sd|hd|vd|xvd|nvme|mmcblk|disk|rdisk|mapper\/|md)\w*/;

function scoreCommand(argv: readonly string[], findings: Finding[], writes: string[]): void {
  const a = analyzeCommand(argv);
  for (const c of a.commands) {
    const line = c.core.join(' ');
    if (c.wrappers.some((w) => PRIVILEGE_WRAPPERS.has(w)) || basename(c.core[0] ?? '') === 'su') {
      findings.push({ code: 'privileged', points: 30, detail: `${c.argv.join(' ')}: runs with elevated privileges` });
    }
    for (const r of c.redirects) {
      if (RAW_DEVICE.test(r.target)) findings.push({ code: 'destructive_command', points: 90, detail: `${r.op} ${r.target}: writes raw data to a device` });
      else if (r.op.includes('>') && !/^\/dev\/(null|stdout|stderr|tty|fd\/\d+)$/.test(r.target)) writes.push(r.target);
    }
    if (c.core.length === 0) continue;
    const program = basename(c.core[0]!);
    if (shellScriptOf(c.core) !== null || program === 'eval') {
      findings.push({ code: 'shell_eval', points: 10, detail: `${program} runs a script` });
    }
    if (program === 'rm') scoreRm(c.core, findings);
    const git = gitSubcommand(c.core);
    if (git) scoreGit(git, line, findings);
    scoreNetwork(c.core, line, findings);
    scoreOther(c.core, line, findings);
    if (program === 'tee') writes.push(...c.core.slice(1).filter((x) => !isOption(x)));
    if (['cp', 'mv', 'ln', 'install'].includes(program)) {
      const operands = c.core.slice(1).filter((x) => !isOption(x));
      if (operands.length >= 2) writes.push(operands[operands.length - 1]!);
    }
    if (program === 'tee' && c.core.slice(1).some((x) => RAW_DEVICE.test(x))) {
      findings.push({ code: 'destructive_command', points: 90, detail: `${line}: writes raw data to a device` });
    }
  }
  for (const script of a.scripts) {
    if (FORK_BOMB.test(script)) findings.push({ code: 'destructive_command', points: 90, detail: 'fork bomb' });
  }
  scoreDownloadExec(a, findings);
  if (redactString(a.line) !== a.line) findings.push({ code: 'secret', points: 40, detail: 'the command line holds what looks like a credential' });
}

// ---- paths ----

const CI_PATHS: readonly RegExp[] = [
  /^\.github\/workflows\//,
  /^\.github\/actions\//,
  /^\.gitlab-ci\.ya?ml$/,
  /^\.gitlab\//,
  /^\.circleci\//,
  /^\.buildkite\//,
  /^\.travis\.ya?ml$/,
  /^azure-pipelines\.ya?ml$/,
  /^bitbucket-pipelines\.ya?ml$/,
  /^\.drone\.ya?ml$/,
  /^\.woodpecker(\.ya?ml|\/)/,
  /(^|\/)Jenkinsfile$/,
];
const LOCKFILES = new Set([
  'package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml', 'bun.lockb', 'bun.lock', 'Cargo.lock',
  'poetry.lock', 'Pipfile.lock', 'uv.lock', 'Gemfile.lock', 'composer.lock', 'go.sum', 'flake.lock', 'mix.lock',
]);
/** Top-level folders where a coding agent usually works. */
const USUAL_DIRS = new Set([
  'src', 'source', 'lib', 'libs', 'app', 'apps', 'packages', 'pkg', 'cmd', 'internal', 'core', 'components', 'pages',
  'public', 'static', 'assets', 'styles', 'test', 'tests', '__tests__', 'spec', 'specs', 'e2e', 'fixtures', 'docs',
  'doc', 'examples', 'example', 'scripts', 'tools', 'bin', 'api', 'server', 'client', 'web', 'services', 'service',
  'modules', 'crates', 'include', 'benches', 'bench', 'benchmarks', 'migrations', 'prisma', 'schemas', 'config',
  'resources', 'templates', 'views', 'workflows', 'activities', 'worker', 'agents', 'scenarios', 'policies',
]);
const ROOT_DOC = /^[^/]+\.(md|mdx|txt|rst|adoc)$/i;
const ENV_FILE = /^\.env(?:\.(?!example$|sample$|template$|dist$|defaults?$|schema$)[^/]+)?$/i;

function isOutsideWorktree(p: string): boolean {
  return p.startsWith('/') || p === '..' || p.startsWith('../') || p.startsWith('~') || /^\$\{?HOME\b/.test(p);
}

/** Why writing this path is unusual, or null. */
function sensitiveWrite(raw: string): { points: number; why: string } | null {
  const p = normalizePath(raw);
  if (isOutsideWorktree(p)) return { points: 60, why: 'outside the worktree' };
  const segs = p.split('/');
  const name = segs[segs.length - 1] ?? p;
  if (segs.includes('.git')) return { points: 60, why: 'inside .git (history, config, hooks)' };
  if (CI_PATHS.some((re) => re.test(p))) return { points: 40, why: 'CI configuration' };
  if (ENV_FILE.test(name)) return { points: 40, why: 'environment file' };
  if (segs[0] === '.husky' || segs.includes('.githooks')) return { points: 30, why: 'git hooks' };
  if (segs.some((s) => s.startsWith('.') && s !== '.')) return { points: 20, why: 'dot-file (tool or editor configuration)' };
  if (LOCKFILES.has(name)) return { points: 15, why: 'lockfile' };
  if (segs.length === 1 ? !ROOT_DOC.test(p) : !USUAL_DIRS.has(segs[0]!)) {
    return { points: 10, why: 'outside the usual source, test and docs folders' };
  }
  return null;
}

const SECRET_NAMES = new Set([
  'id_rsa', 'id_dsa', 'id_ecdsa', 'id_ed25519', 'id_ecdsa_sk', 'id_ed25519_sk', 'credentials', 'credentials.json',
  'credentials.yml', 'credentials.yaml', '.netrc', '_netrc', '.npmrc', '.pypirc', '.git-credentials', '.htpasswd',
  '.pgpass', 'kubeconfig', 'secrets.yml', 'secrets.yaml', 'secrets.json', 'secrets.toml', 'master.key', 'shadow',
  'sudoers', 'authorized_keys', 'known_hosts', '.vault-token', 'token.json', 'client_secret.json',
]);
const SECRET_EXT = /\.(pem|key|p12|pfx|jks|keystore|kdbx|ppk|gpg|age|secret|secrets|tfvars|tfstate)$/i;
const SECRET_DIRS = new Set(['.ssh', '.aws', '.gnupg', '.kube', '.docker', '.azure', '.gcloud', 'gcloud']);

/** Whether a path looks like it holds credentials (.env, id_rsa, *.pem, credentials, ~/.aws/…). */
export function isSecretPath(raw: string): boolean {
  const p = normalizePath(raw);
  const segs = p.split('/');
  const name = (segs[segs.length - 1] ?? p).toLowerCase();
  if (ENV_FILE.test(name)) return true;
  if (SECRET_NAMES.has(name) || SECRET_EXT.test(name)) return true;
  if (/^service[-_]?account.*\.json$/.test(name)) return true;
  return segs.slice(0, -1).some((s) => SECRET_DIRS.has(s.toLowerCase()));
}

// ---- the score ----

function combine(findings: readonly Finding[]): RiskScore {
  const byCode = new Map<RiskCode, { points: number; details: string[] }>();
  for (const f of findings) {
    const entry = byCode.get(f.code) ?? { points: 0, details: [] };
    entry.points = Math.max(entry.points, f.points);
    if (!entry.details.includes(f.detail)) entry.details.push(f.detail);
    byCode.set(f.code, entry);
  }
  const reasons: RiskReason[] = [];
  for (const code of RISK_CODES) {
    const entry = byCode.get(code);
    if (!entry || entry.points <= 0) continue;
    let detail = entry.details.join('; ');
    if (detail.length > 400) detail = `${detail.slice(0, 397)}...`;
    reasons.push({ code, points: entry.points, detail });
  }
  reasons.sort((x, y) => y.points - x.points || RISK_CODES.indexOf(x.code) - RISK_CODES.indexOf(y.code));
  const score = Math.min(100, reasons.reduce((sum, r) => sum + r.points, 0));
  return { score, reasons };
}

function listPaths(paths: readonly string[]): string {
  return paths.length <= 3 ? paths.join(', ') : `${paths.slice(0, 3).join(', ')} and ${paths.length - 3} more`;
}

/** The risk of one tool call: a score from 0 to 100 and the reasons (see the file header). */
export function scoreRisk(facts: ToolCallFacts): RiskScore {
  const findings: Finding[] = [];
  const verb = toolVerb(facts.tool);
  const writes: string[] = [];

  if (verb === 'write' || verb === undefined) writes.push(...facts.paths);
  if (facts.command && facts.command.length > 0) scoreCommand(facts.command, findings, writes);

  if (verb === 'exec') {
    const outside = facts.paths.filter((p) => isOutsideWorktree(normalizePath(p)));
    if (outside.length) findings.push({ code: 'sensitive_path', points: 30, detail: `runs outside the worktree (${listPaths(outside)})` });
  }

  const byWhy = new Map<string, { points: number; paths: string[] }>();
  for (const p of writes) {
    const s = sensitiveWrite(p);
    if (!s) continue;
    const entry = byWhy.get(s.why) ?? { points: s.points, paths: [] };
    entry.paths.push(p);
    byWhy.set(s.why, entry);
  }
  for (const [why, { points, paths }] of byWhy) {
    findings.push({ code: 'sensitive_path', points, detail: `writes ${why}: ${listPaths(paths)}` });
  }

  const secretReads = verb === 'read' ? facts.paths.filter(isSecretPath) : [];
  const secretWrites = writes.filter(isSecretPath);
  if (secretWrites.length) findings.push({ code: 'secret', points: 40, detail: `writes a credentials file: ${listPaths(secretWrites)}` });
  if (secretReads.length) findings.push({ code: 'secret', points: 30, detail: `reads a credentials file: ${listPaths(secretReads)}` });
  if (facts.content !== undefined && facts.content.length > 0 && redactString(facts.content) !== facts.content) {
    findings.push({ code: 'secret', points: 50, detail: 'the text written holds what looks like a credential (key, token, password or private key)' });
  }

  if (facts.network === true) findings.push({ code: 'network', points: 30, detail: 'the call asks for network access' });

  const deleted = facts.deletedLines ?? 0;
  if (deleted >= 2000) findings.push({ code: 'large_deletion', points: 60, detail: `deletes ${deleted} lines` });
  else if (deleted >= 500) findings.push({ code: 'large_deletion', points: 35, detail: `deletes ${deleted} lines` });
  else if (deleted >= 100) findings.push({ code: 'large_deletion', points: 15, detail: `deletes ${deleted} lines` });

  return combine(findings);
}
