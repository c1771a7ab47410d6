/**
 * Guardrail policy: declarative rules (YAML or JSON, validated here) and the decision for one tool call. Pure (no Node
 * APIs, no I/O): workflow code may import it. lib/policy-files.ts loads policy files; the caller records every
 * decision as a trace event (and who approved an `ask`).
 *
 * EVALUATION ORDER (fixed; `EVALUATION_ORDER` lists the stages, and the first stage that decides wins):
 *   1. permission  The agent's registry permissions. A tool needs the verb in TOOL_PERMISSIONS (read_file, list_dir,
 *                  search, git_diff, git_status: read; write_file, edit_file: write; run_command: exec; blackboard,
 *                  handoff, submit_plan: none), plus `network` when the call asks for network and `git` when it runs a
 *                  remote git operation (push, fetch, pull, clone, remote, ls-remote; also inside `sh -c`). Missing
 *                  → deny, naming the permission. No policy rule can grant a permission. A tool missing from the table
 *                  is denied here too. Tools of an agent's MCP servers (`mcp__<server>__<tool>`) need `mcp`
 *                  (`mcp:<server glob>` covers only the servers it matches).
 *   2. deny_rule   Any matching deny rule → deny. Deny always wins, whatever ask or allow rules and risk say.
 *   3. ask_rule    Any matching ask rule → ask.
 *   4. risk        Risk score (core/risk.ts) ≥ policy.askAboveRisk → ask.
 *   5. allow_rule  Any matching allow rule → allow.
 *   6. default     policy.default.
 * Within a stage the first matching rule in file order is reported as `ruleId`.
 *
 * Narrowed permissions: `read:<glob>` / `write:<glob>` allow only calls whose every path matches one of the agent's
 * globs for that verb (a call with no path is not covered); `exec:<pattern>` and `network:<pattern>` match the whole
 * command line (argv joined by single spaces), `git:<pattern>` the git subcommand and its arguments (`git:fetch`);
 * a pattern also matches a line that continues with more arguments, so `exec:npm` allows `npm test` but not
 * `npx x`, and `exec:re:^npm\s(test|ci)$` limits the arguments too (permissions cannot contain spaces: use `\s` in a
 * regex). Several narrowed permissions of one verb add up. Glob and pattern syntax: core/glob.ts.
 *
 * A rule matches when every matcher it has matches (at least one is required):
 *   tools     tool names or globs (`git_*`)
 *   agents    agent ids, or `role:<name>` (globs allowed)
 *   paths     path globs relative to the worktree root. Deny and ask rules match when ANY path of the call matches;
 *             allow rules only when EVERY path does (one stray path must not ride along on an allow). A call without
 *             paths never matches a rule with paths.
 *   commands  command patterns. Deny and ask rules are matched against the whole command line and against every
 *             command run inside it (the scripts of `sh -c`/`bash -c`/`eval`, each also with wrappers such as
 *             `sudo`, `env`, `timeout`, `xargs` removed), so `bash -c "sudo rm -rf /"` meets a rule for `rm -rf /*`.
 *             Allow rules are matched against the whole command line only. A call without a command never matches.
 *
 * Policy `default` is `ask` when a policy file leaves it out (a hand-written policy that forgets it fails safe); the
 * shipped policies/default.yaml sets `allow` explicitly, because reading and editing files in the worktree is what a
 * coding agent does all day: permissions, deny rules, ask rules and the risk threshold stop what is dangerous.
 */
import { z } from 'zod';
import { commandPatternProblem, compileGlob, globProblem, matchCommand, matchGlob, REGEX_PREFIX } from './glob';
import {
  analyzeCommand,
  commandLines,
  GIT_REMOTE_SUBCOMMANDS,
  gitSubcommand,
  scoreRisk,
  TOOL_PERMISSIONS,
  toolVerb,
  type RiskScore,
  type ToolCallFacts,
} from './risk';
import { parseMcpToolName, PERMISSION_VERBS } from './schemas';

export { GIT_REMOTE_SUBCOMMANDS, TOOL_PERMISSIONS, toolVerb, type RiskReason, type RiskScore, type ToolCallFacts } from './risk';

export const EVALUATION_ORDER = ['permission', 'deny_rule', 'ask_rule', 'risk', 'allow_rule', 'default'] as const;
export type DecisionStage = (typeof EVALUATION_ORDER)[number];

export const Effect = z.enum(['allow', 'deny', 'ask']);
export type Effect = z.infer<typeof Effect>;

export type GuardrailDecision = {
  effect: Effect;
  stage: DecisionStage;
  /** The rule that decided (stages deny_rule, ask_rule, allow_rule). */
  ruleId?: string;
  reason: string;
  risk: RiskScore;
  /** Permission verbs the call needs (`exec`, `git`, …). */
  requiredPermissions: string[];
};

// ---- schema ----

const GLOB_CHARS = /[*?[{\\]/;

const PathGlob = z
  .string()
  .min(1)
  .max(500)
  .superRefine((glob, ctx) => {
    const problem = globProblem(glob);
    if (problem) ctx.addIssue({ code: 'custom', message: `not a valid glob: ${problem}` });
  });

const ToolMatcher = z
  .string()
  .min(1)
  .max(200)
  .superRefine((name, ctx) => {
    const problem = globProblem(name);
    if (problem) ctx.addIssue({ code: 'custom', message: `not a valid glob: ${problem}` });
    else if (!GLOB_CHARS.test(name) && toolVerb(name) === undefined) {
      ctx.addIssue({ code: 'custom', message: `unknown tool "${name}" (known tools: ${Object.keys(TOOL_PERMISSIONS).join(', ')})` });
    }
  });

const CommandPattern = z
  .string()
  .min(1)
  .max(1000)
  .superRefine((pattern, ctx) => {
    const problem = commandPatternProblem(pattern);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

const AgentMatcher = z
  .string()
  .min(1)
  .max(200)
  .superRefine((value, ctx) => {
    const name = value.startsWith('role:') ? value.slice('role:'.length) : value;
    if (name === '') {
      ctx.addIssue({ code: 'custom', message: '"role:" needs a role name, e.g. "role:coder"' });
      return;
    }
    const problem = globProblem(name);
    if (problem) ctx.addIssue({ code: 'custom', message: `not a valid glob: ${problem}` });
  });

export const PolicyRule = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/, 'letters, digits, ".", "_", ":" and "-" (at most 100)'),
    effect: Effect,
    /** Tool names or globs (`git_*`). */
    tools: z.array(ToolMatcher).min(1).max(100).optional(),
    /** Path globs relative to the worktree root. */
    paths: z.array(PathGlob).min(1).max(200).optional(),
    /** Command patterns: a `*`-glob over the whole command line, or `re:<regex>`. */
    commands: z.array(CommandPattern).min(1).max(200).optional(),
    /** Agent ids or `role:<name>`. */
    agents: z.array(AgentMatcher).min(1).max(100).optional(),
    /** Why the rule exists: shown in the decision. */
    reason: z.string().min(1).max(1000).optional(),
  })
  .strict()
  .refine((r) => r.tools !== undefined || r.paths !== undefined || r.commands !== undefined || r.agents !== undefined, {
    message: 'a rule needs at least one matcher: tools, paths, commands or agents',
  });
export type PolicyRule = z.infer<typeof PolicyRule>;

export const Policy = z
  .object({
    version: z.literal(1),
    /** What happens when no stage before decides. Left out: `ask` (fail safe). */
    default: Effect.default('ask'),
    /** A risk score at or above this asks (stage 4). */
    askAboveRisk: z.number().int().min(0).max(100).default(60),
    rules: z.array(PolicyRule).max(1000).default([]),
  })
  .strict()
  .superRefine((policy, ctx) => {
    const seen = new Map<string, number>();
    policy.rules.forEach((rule, i) => {
      const first = seen.get(rule.id);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id "${rule.id}" (also rules.${first}.id)` });
      else seen.set(rule.id, i);
    });
  });
export type Policy = z.output<typeof Policy>;
export type PolicyInput = z.input<typeof Policy>;

export type PolicyProblem = { path: string; message: string };

/**
 * Validates a policy (already parsed from YAML or JSON). Every problem names its field (`rules.2.commands.0`); an
 * unknown field is named itself (`rules.0.command: unknown field`).
 */
export function checkPolicy(input: unknown): { policy?: Policy; problems: PolicyProblem[] } {
  const parsed = Policy.safeParse(input);
  if (parsed.success) return { policy: parsed.data, problems: [] };
  const problems: PolicyProblem[] = [];
  for (const issue of parsed.error.issues) {
    const base = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.push({ path: [...base, key].join('.'), message: 'unknown field' });
    } else {
      problems.push({ path: base.join('.') || '(policy)', message: issue.message });
    }
  }
  return { problems };
}

// ---- permissions ----

type HeldPermission = { verb: string; narrow: string | null };

function parsePermissions(permissions: readonly string[]): HeldPermission[] {
  return permissions.map((p) => {
    const colon = p.indexOf(':');
    return colon < 0 ? { verb: p, narrow: null } : { verb: p.slice(0, colon), narrow: p.slice(colon + 1) };
  });
}

/** The command pattern of a narrowed exec/network/git permission matches a line, or the line plus more arguments. */
function narrowCommandMatches(pattern: string, line: string): boolean {
  try {
    if (matchCommand(pattern, line)) return true;
    return !pattern.startsWith(REGEX_PREFIX) && matchCommand(`${pattern} *`, line);
  } catch {
    return false; // a malformed permission covers nothing
  }
}

function safeGlob(glob: string, path: string): boolean {
  try {
    return matchGlob(glob, path);
  } catch {
    return false;
  }
}

/** Remote git operations a command runs, as `push origin main` (subcommand and arguments), shells looked through. */
function gitRemoteOperations(argv: readonly string[] | undefined): string[] {
  if (!argv || argv.length === 0) return [];
  const ops: string[] = [];
  for (const c of analyzeCommand(argv).commands) {
    const sub = gitSubcommand(c.core);
    if (sub && GIT_REMOTE_SUBCOMMANDS.includes(sub[0] ?? '')) ops.push(sub.join(' '));
  }
  return [...new Set(ops)];
}

/** The permission verbs a call needs (empty for a tool outside TOOL_PERMISSIONS: it is denied anyway). */
export function requiredPermissions(facts: ToolCallFacts): string[] {
  const verb = toolVerb(facts.tool);
  if (verb === undefined) return [];
  const out: string[] = verb === 'none' ? [] : [verb];
  if (facts.network === true) out.push('network');
  if (verb === 'exec' && gitRemoteOperations(facts.command).length > 0) out.push('git');
  return out;
}

function list(items: readonly string[], max = 3): string {
  const quoted = items.map((i) => `"${i}"`);
  return quoted.length <= max ? quoted.join(', ') : `${quoted.slice(0, max).join(', ')} and ${quoted.length - max} more`;
}

/** Why the agent may not make this call, or null when its permissions cover it. */
export function permissionProblem(facts: ToolCallFacts, required: readonly string[] = requiredPermissions(facts)): string | null {
  const agent = `agent "${facts.agent.id}"`;
  if (toolVerb(facts.tool) === undefined) {
    return `unknown tool "${facts.tool}": it has no entry in the guardrails' permission table, so no agent may call it`;
  }
  const held = parsePermissions(facts.agent.permissions).filter((p) => (PERMISSION_VERBS as readonly string[]).includes(p.verb));
  const line = facts.command?.join(' ') ?? '';
  for (const verb of required) {
    const mine = held.filter((p) => p.verb === verb);
    if (mine.some((p) => p.narrow === null)) continue;
    const why =
      verb === 'network' ? 'the call asks for network access' : verb === 'git' ? `${list(gitRemoteOperations(facts.command).map((o) => `git ${o}`))} is a remote git operation` : `${facts.tool} needs it`;
    if (mine.length === 0) return `${agent} lacks the "${verb}" permission (${why})`;
    const narrows = mine.map((p) => p.narrow!);
    if (verb === 'read' || verb === 'write') {
      if (facts.paths.length === 0) return `${agent} may ${verb} only ${list(narrows)}, and ${facts.tool} names no path`;
      const outside = facts.paths.filter((path) => !narrows.some((g) => safeGlob(g, path)));
      if (outside.length > 0) return `${agent} may ${verb} only ${list(narrows)}, not ${list(outside)}`;
    } else if (verb === 'mcp') {
      const server = parseMcpToolName(facts.tool)?.server ?? '';
      if (!narrows.some((g) => safeGlob(g, server))) return `${agent} may use only the MCP servers ${list(narrows)}, not "${server}"`;
    } else if (verb === 'git') {
      const ops = gitRemoteOperations(facts.command);
      const denied = ops.filter((op) => !narrows.some((n) => narrowCommandMatches(n, op)));
      if (denied.length > 0) return `${agent} may run only the git operations ${list(narrows)}, not ${list(denied.map((o) => `git ${o}`))}`;
    } else {
      if (line === '') return `${agent} holds "${verb}" only for ${list(narrows)}, and ${facts.tool} runs no command`;
      if (!narrows.some((n) => narrowCommandMatches(n, line))) return `${agent} may ${verb} only for commands ${list(narrows)}, not "${line}"`;
    }
  }
  return null;
}

// ---- rules ----

type MatchMode = 'any' | 'every';

function nameMatches(pattern: string, name: string): boolean {
  return compileGlob(pattern).test(name);
}

/** Whether a rule matches. A malformed matcher (only in an unvalidated policy) matches for deny/ask, not for allow. */
export function ruleMatches(rule: PolicyRule, facts: ToolCallFacts, lines: readonly string[] = facts.command?.length ? commandLines(facts.command) : []): boolean {
  const mode: MatchMode = rule.effect === 'allow' ? 'every' : 'any';
  const guard = (test: () => boolean): boolean => {
    try {
      return test();
    } catch {
      return mode === 'any';
    }
  };
  if (rule.tools && !rule.tools.some((t) => guard(() => nameMatches(t, facts.tool)))) return false;
  if (rule.agents) {
    const hit = rule.agents.some((a) =>
      guard(() => (a.startsWith('role:') ? nameMatches(a.slice('role:'.length), facts.agent.role) : nameMatches(a, facts.agent.id))),
    );
    if (!hit) return false;
  }
  if (rule.paths) {
    if (facts.paths.length === 0) return false;
    const pathHit = (path: string): boolean => rule.paths!.some((g) => guard(() => matchGlob(g, path)));
    if (mode === 'any' ? !facts.paths.some(pathHit) : !facts.paths.every(pathHit)) return false;
  }
  if (rule.commands) {
    if (!facts.command || facts.command.length === 0) return false;
    const candidates = mode === 'any' ? lines : [facts.command.join(' ')];
    if (!rule.commands.some((p) => candidates.some((l) => guard(() => matchCommand(p, l))))) return false;
  }
  return true;
}

function ruleReason(verb: string, rule: PolicyRule): string {
  return `${verb} by rule "${rule.id}"${rule.reason ? `: ${rule.reason}` : ''}`;
}

/** The guardrail decision for one tool call (see EVALUATION ORDER in the file header). Never throws. */
export function evaluate(facts: ToolCallFacts, policy: Policy): GuardrailDecision {
  const risk = scoreRisk(facts);
  const required = requiredPermissions(facts);
  const decide = (effect: Effect, stage: DecisionStage, reason: string, rule?: PolicyRule): GuardrailDecision => ({
    effect,
    stage,
    ...(rule ? { ruleId: rule.id } : {}),
    reason,
    risk,
    requiredPermissions: required,
  });

  const missing = permissionProblem(facts, required);
  if (missing !== null) return decide('deny', 'permission', missing);

  const lines = facts.command && facts.command.length > 0 ? commandLines(facts.command) : [];
  const first = (effect: Effect): PolicyRule | undefined => policy.rules.find((r) => r.effect === effect && ruleMatches(r, facts, lines));

  const deny = first('deny');
  if (deny) return decide('deny', 'deny_rule', ruleReason('denied', deny), deny);
  const ask = first('ask');
  if (ask) return decide('ask', 'ask_rule', ruleReason('approval asked', ask), ask);
  if (risk.score >= policy.askAboveRisk) {
    const why = risk.reasons.map((r) => `${r.code} ${r.points}`).join(', ');
    return decide('ask', 'risk', `risk score ${risk.score} is at or above ${policy.askAboveRisk}${why ? ` (${why})` : ''}`);
  }
  const allow = first('allow');
  if (allow) return decide('allow', 'allow_rule', ruleReason('allowed', allow), allow);
  return decide(policy.default, 'default', `no rule matched and the risk score ${risk.score} is below ${policy.askAboveRisk}: the policy default is ${policy.default}`);
}
