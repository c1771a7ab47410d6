import { describe, expect, it } from 'vitest';
import { commandPatternProblem, globProblem, matchCommand, matchGlob, normalizePath } from '../core/glob';
import {
  checkPolicy,
  EVALUATION_ORDER,
  evaluate,
  Policy,
  requiredPermissions,
  type PolicyRule,
  TOOL_PERMISSIONS,
  type PolicyInput,
  type ToolCallFacts,
} from '../core/policy';

const agent = (permissions: string[], id = 'coder', role = 'coder'): ToolCallFacts['agent'] => ({ id, role, permissions });
const ALL = ['read', 'write', 'exec', 'network', 'git'];

function policy(input: Partial<PolicyInput> = {}): Policy {
  return Policy.parse({ version: 1, default: 'allow', ...input });
}
function run(argv: string[], permissions = ALL, extra: Partial<ToolCallFacts> = {}): ToolCallFacts {
  return { tool: 'run_command', agent: agent(permissions), paths: [], command: argv, ...extra };
}
function write(path: string, permissions = ALL, extra: Partial<ToolCallFacts> = {}): ToolCallFacts {
  return { tool: 'write_file', agent: agent(permissions), paths: [path], content: 'x', ...extra };
}
function read(path: string, permissions = ALL): ToolCallFacts {
  return { tool: 'read_file', agent: agent(permissions), paths: [path] };
}

describe('globs', () => {
  it.each([
    ['src/**', 'src/a/b.ts', true],
    ['src/**', 'src', true],
    ['src/**', 'src/.env', true],
    ['src/**', 'srcx/a.ts', false],
    ['src/**', 'lib/src/a.ts', false],
    ['*.ts', 'a.ts', true],
    ['*.ts', 'src/a.ts', false],
    ['**/*.pem', 'key.pem', true],
    ['**/*.pem', 'a/b/key.pem', true],
    ['**/*.pem', 'a/b/key.pem.bak', false],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['a/**/b', 'a/x/y/c', false],
    ['src/*.ts', 'src/a.ts', true],
    ['src/*.ts', 'src/x/a.ts', false],
    ['?.md', 'a.md', true],
    ['?.md', 'ab.md', false],
    ['[ab].ts', 'b.ts', true],
    ['[!ab].ts', 'b.ts', false],
    ['[!ab].ts', 'c.ts', true],
    ['{src,test}/**', 'test/x.ts', true],
    ['*.{ts,tsx}', 'a.tsx', true],
    ['*.{ts,tsx}', 'a.js', false],
    ['.github/workflows/**', '.github/workflows/ci.yml', true],
    ['./src/**', 'src/a.ts', true],
    ['src/', 'src', true],
    ['**', 'anything/at/all', true],
  ])('%s vs %s → %s', (glob, path, expected) => {
    expect(matchGlob(glob, path)).toBe(expected);
  });

  it('paths are normalised before matching', () => {
    expect(normalizePath('./src//a/../b.ts')).toBe('src/b.ts');
    expect(normalizePath('src/../../x')).toBe('../x');
    expect(normalizePath('/etc/../etc/passwd')).toBe('/etc/passwd');
    expect(normalizePath('')).toBe('.');
    expect(matchGlob('.git/**', 'src/../.git/config')).toBe(true);
    expect(matchGlob('src/**', '../src/a.ts')).toBe(false);
  });

  it('bad globs are named', () => {
    expect(globProblem('src/[ab')).toMatch(/unclosed "\["/);
    expect(globProblem('{a,b')).toMatch(/unclosed "\{"/);
    expect(globProblem('/etc/**')).toMatch(/relative to the worktree root/);
    expect(globProblem('../x')).toMatch(/"\.\." segments/);
    expect(globProblem('src/**')).toBeNull();
  });

  it('command patterns: * globs over the whole line, re: searches', () => {
    expect(matchCommand('git push*', 'git push --force origin main')).toBe(true);
    expect(matchCommand('git push*', 'git pull')).toBe(false);
    expect(matchCommand('git push*', 'echo git push')).toBe(false);
    expect(matchCommand('npm test', 'npm test --watch')).toBe(false);
    expect(matchCommand('rm -rf /*', 'rm -rf /tmp/x')).toBe(true);
    expect(matchCommand('a.b', 'axb')).toBe(false);
    expect(matchCommand('re:^npm (test|ci)$', 'npm ci')).toBe(true);
    expect(matchCommand('re:--force', 'git push --force')).toBe(true);
    expect(commandPatternProblem('re:(')).toMatch(/not a valid regular expression/);
    expect(commandPatternProblem('re:')).toMatch(/empty/);
  });
});

describe('permissions come first', () => {
  it('the tool table', () => {
    expect(TOOL_PERMISSIONS).toMatchObject({
      read_file: 'read', list_dir: 'read', search: 'read', git_diff: 'read', git_status: 'read',
      write_file: 'write', edit_file: 'write', run_command: 'exec',
      blackboard_read: 'none', blackboard_write: 'none', handoff: 'none',
    });
    expect(requiredPermissions(run(['npm', 'test']))).toEqual(['exec']);
    expect(requiredPermissions(run(['npm', 'install'], ALL, { network: true }))).toEqual(['exec', 'network']);
    for (const sub of ['push', 'fetch', 'pull', 'clone', 'remote']) {
      expect(requiredPermissions(run(['git', sub, 'origin']))).toEqual(['exec', 'git']);
    }
    expect(requiredPermissions(run(['git', '-C', 'sub', 'push']))).toEqual(['exec', 'git']);
    expect(requiredPermissions(run(['bash', '-c', 'git fetch && git rebase']))).toEqual(['exec', 'git']);
    expect(requiredPermissions(run(['git', 'commit', '-m', 'push it']))).toEqual(['exec']);
    expect(requiredPermissions({ tool: 'handoff', agent: agent([]), paths: [] })).toEqual([]);
  });

  it('no exec → deny, even with an allow rule for run_command and a default of allow', () => {
    const p = policy({ rules: [{ id: 'allow-all-commands', effect: 'allow', tools: ['run_command'] }] });
    const d = evaluate(run(['ls'], ['read', 'write']), p);
    expect(d).toMatchObject({ effect: 'deny', stage: 'permission', requiredPermissions: ['exec'] });
    expect(d.reason).toMatch(/lacks the "exec" permission/);
    expect(d.ruleId).toBeUndefined();
  });

  it('network and git permissions', () => {
    const p = policy();
    expect(evaluate(run(['curl', 'x'], ['exec'], { network: true }), p)).toMatchObject({ effect: 'deny', stage: 'permission' });
    expect(evaluate(run(['curl', 'x'], ['exec'], { network: true }), p).reason).toMatch(/"network"/);
    const push = evaluate(run(['git', 'push', 'origin', 'main'], ['exec']), p);
    expect(push).toMatchObject({ effect: 'deny', stage: 'permission', requiredPermissions: ['exec', 'git'] });
    expect(push.reason).toMatch(/lacks the "git" permission .*git push origin main/);
    expect(evaluate(run(['git', 'status'], ['exec']), p).stage).not.toBe('permission');
  });

  it('write:src/** allows src/a.ts but not README.md', () => {
    const p = policy();
    expect(evaluate(write('src/a.ts', ['write:src/**']), p)).toMatchObject({ effect: 'allow', stage: 'default' });
    const d = evaluate(write('README.md', ['write:src/**']), p);
    expect(d).toMatchObject({ effect: 'deny', stage: 'permission' });
    expect(d.reason).toMatch(/may write only "src\/\*\*", not "README.md"/);
    // Several narrowed permissions add up; every path must be covered.
    expect(evaluate({ ...write('src/a.ts', ['write:src/**', 'write:test/**']), paths: ['src/a.ts', 'test/a.ts'] }, p).effect).toBe('allow');
    expect(evaluate({ ...write('src/a.ts', ['write:src/**']), paths: ['src/a.ts', 'README.md'] }, p).stage).toBe('permission');
    // A narrowed write does not grant read, and read does not grant write.
    expect(evaluate(read('src/a.ts', ['write:src/**']), p).stage).toBe('permission');
    expect(evaluate(write('src/a.ts', ['read']), p).stage).toBe('permission');
    // A path climbing out of the narrowed folder is outside it.
    expect(evaluate(write('src/../README.md', ['write:src/**']), p).stage).toBe('permission');
  });

  it('exec:<pattern> allows only matching command lines (the pattern may be followed by more arguments)', () => {
    const p = policy();
    expect(evaluate(run(['npm', 'test'], ['exec:npm']), p).effect).toBe('allow');
    expect(evaluate(run(['npm'], ['exec:npm']), p).effect).toBe('allow');
    expect(evaluate(run(['npx', 'x'], ['exec:npm']), p).stage).toBe('permission');
    expect(evaluate(run(['bash', '-c', 'npm test'], ['exec:npm']), p).stage).toBe('permission');
    expect(evaluate(run(['npm', 'ci'], ['exec:re:^npm\\s(test|ci)$']), p).effect).toBe('allow');
    expect(evaluate(run(['npm', 'publish'], ['exec:re:^npm\\s(test|ci)$']), p).stage).toBe('permission');
    expect(evaluate(run(['npm', 'test'], ['exec:npm *']), p).effect).toBe('allow');
    expect(evaluate(run(['git', 'fetch', 'origin'], ['exec', 'git:fetch']), p).effect).toBe('allow');
    expect(evaluate(run(['git', 'push', 'origin'], ['exec', 'git:fetch']), p).reason).toMatch(/git operations "fetch", not "git push origin"/);
  });

  it('a tool outside the table is denied', () => {
    const d = evaluate({ tool: 'format_disk', agent: agent(ALL), paths: [] }, policy({ rules: [{ id: 'a', effect: 'allow', tools: ['*'] }] }));
    expect(d).toMatchObject({ effect: 'deny', stage: 'permission' });
    expect(d.reason).toMatch(/unknown tool "format_disk"/);
    expect(evaluate({ tool: 'constructor', agent: agent(ALL), paths: [] }, policy()).stage).toBe('permission');
  });
});

describe('evaluation order', () => {
  const deny: PolicyRule = { id: 'no-env', effect: 'deny', paths: ['**/.env'] };
  const ask: PolicyRule = { id: 'ask-env', effect: 'ask', paths: ['**/.env*'] };
  const allow: PolicyRule = { id: 'allow-writes', effect: 'allow', tools: ['write_file'] };

  it('is documented and exported', () => {
    expect(EVALUATION_ORDER).toEqual(['permission', 'deny_rule', 'ask_rule', 'risk', 'allow_rule', 'default']);
  });

  it('deny wins over ask and allow, whatever their order in the file', () => {
    const p = policy({ rules: [allow, ask, deny] });
    expect(evaluate(write('.env'), p)).toMatchObject({ effect: 'deny', stage: 'deny_rule', ruleId: 'no-env' });
    expect(evaluate(write('.env'), p).reason).toMatch(/denied by rule "no-env"/);
  });

  it('an ask rule asks, before the risk check and allow rules', () => {
    const p = policy({ rules: [allow, ask, deny] });
    expect(evaluate(write('.env.local'), p)).toMatchObject({ effect: 'ask', stage: 'ask_rule', ruleId: 'ask-env' });
  });

  it('a risk score at or above askAboveRisk asks, before allow rules', () => {
    const p = policy({ askAboveRisk: 40, rules: [{ id: 'allow-cmds', effect: 'allow', tools: ['run_command'] }] });
    const d = evaluate(run(['rm', '-rf', 'build']), p); // 45
    expect(d).toMatchObject({ effect: 'ask', stage: 'risk' });
    expect(d.ruleId).toBeUndefined();
    expect(d.reason).toMatch(/risk score 45 is at or above 40 \(destructive_command 45\)/);
    expect(evaluate(run(['rm', '-rf', 'build']), { ...p, askAboveRisk: 46 })).toMatchObject({ effect: 'allow', stage: 'allow_rule', ruleId: 'allow-cmds' });
  });

  it('an allow rule allows; the default decides the rest', () => {
    const p = policy({ default: 'ask', rules: [allow] });
    expect(evaluate(write('src/a.ts'), p)).toMatchObject({ effect: 'allow', stage: 'allow_rule', ruleId: 'allow-writes' });
    const d = evaluate(read('src/a.ts'), p);
    expect(d).toMatchObject({ effect: 'ask', stage: 'default' });
    expect(d.reason).toMatch(/default is ask/);
    expect(evaluate(read('src/a.ts'), { ...p, default: 'deny' })).toMatchObject({ effect: 'deny', stage: 'default' });
  });

  it('each stage in turn, peeling one off at a time', () => {
    const rules: PolicyRule[] = [
      { id: 'd', effect: 'deny', commands: ['rm *'] },
      { id: 'q', effect: 'ask', commands: ['rm -rf *'] },
      { id: 'a', effect: 'allow', commands: ['rm *'] },
    ];
    const facts = run(['rm', '-rf', 'dist']);
    const p = policy({ default: 'deny', askAboveRisk: 40, rules });
    expect(evaluate({ ...facts, agent: agent(['read']) }, p).stage).toBe('permission');
    expect(evaluate(facts, p).stage).toBe('deny_rule');
    expect(evaluate(facts, { ...p, rules: p.rules.slice(1) }).stage).toBe('ask_rule');
    expect(evaluate(facts, { ...p, rules: p.rules.slice(2) }).stage).toBe('risk');
    expect(evaluate(facts, { ...p, askAboveRisk: 100, rules: p.rules.slice(2) }).stage).toBe('allow_rule');
    expect(evaluate(facts, { ...p, askAboveRisk: 100, rules: [] })).toMatchObject({ stage: 'default', effect: 'deny' });
  });

  it('every decision carries the risk and the required permissions', () => {
    const d = evaluate(run(['curl', 'https://example.com'], ALL, { network: true }), policy());
    expect(d.requiredPermissions).toEqual(['exec', 'network']);
    expect(d.risk.reasons.map((r) => r.code)).toEqual(['network']);
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
  });
});

describe('rule matchers', () => {
  it('tools by name and glob', () => {
    const p = policy({ default: 'deny', rules: [{ id: 'git-tools', effect: 'allow', tools: ['git_*'] }] });
    expect(evaluate({ tool: 'git_diff', agent: agent(ALL), paths: [] }, p).effect).toBe('allow');
    expect(evaluate(read('a.ts'), p).effect).toBe('deny');
  });

  it('agents by id and by role', () => {
    const p = policy({
      rules: [
        { id: 'no-reviewer-writes', effect: 'deny', agents: ['role:reviewer'], tools: ['write_file', 'edit_file'] },
        { id: 'ask-intern', effect: 'ask', agents: ['intern-*'] },
      ],
    });
    const as = (id: string, role: string): ToolCallFacts => ({ ...write('src/a.ts'), agent: agent(ALL, id, role) });
    expect(evaluate(as('rita', 'reviewer'), p)).toMatchObject({ effect: 'deny', ruleId: 'no-reviewer-writes' });
    expect(evaluate(as('intern-1', 'coder'), p)).toMatchObject({ effect: 'ask', ruleId: 'ask-intern' });
    expect(evaluate(as('coder', 'coder'), p)).toMatchObject({ effect: 'allow', stage: 'default' });
  });

  it('paths: deny and ask match when any path does; allow only when every path does', () => {
    const p = policy({
      default: 'deny',
      rules: [
        { id: 'ask-ci', effect: 'ask', paths: ['.github/workflows/**'] },
        { id: 'allow-src', effect: 'allow', paths: ['src/**'] },
      ],
    });
    const two = (a: string, b: string): ToolCallFacts => ({ ...write(a), paths: [a, b] });
    expect(evaluate(two('src/a.ts', '.github/workflows/ci.yml'), p).ruleId).toBe('ask-ci');
    expect(evaluate(two('src/a.ts', 'src/b.ts'), p).ruleId).toBe('allow-src');
    expect(evaluate(two('src/a.ts', 'README.md'), p)).toMatchObject({ effect: 'deny', stage: 'default' });
    expect(evaluate({ tool: 'git_status', agent: agent(ALL), paths: [] }, p).stage).toBe('default'); // no paths, no match
  });

  it('commands: deny rules see commands inside shells and behind sudo; allow rules only the whole line', () => {
    const p = policy({
      default: 'ask',
      askAboveRisk: 100,
      rules: [
        { id: 'no-rm-root', effect: 'deny', commands: ['rm -rf /'] },
        { id: 'ask-push', effect: 'ask', commands: ['git push*'] },
        { id: 'allow-test', effect: 'allow', commands: ['npm test*'] },
      ],
    });
    expect(evaluate(run(['bash', '-c', 'cd x && sudo rm -rf /']), p).ruleId).toBe('no-rm-root');
    expect(evaluate(run(['sudo', 'rm', '-rf', '/']), p).ruleId).toBe('no-rm-root');
    expect(evaluate(run(['git', 'push', '--force', 'origin', 'main']), p).ruleId).toBe('ask-push');
    expect(evaluate(run(['sh', '-c', 'git add . ; git push']), p).ruleId).toBe('ask-push');
    expect(evaluate(run(['npm', 'test', '--', '--watch=false']), p).ruleId).toBe('allow-test');
    expect(evaluate(run(['bash', '-c', 'npm test; curl x']), p)).toMatchObject({ effect: 'ask', stage: 'default' });
    expect(evaluate(read('src/a.ts'), p).stage).toBe('default'); // no command, no match
  });

  it('re: command patterns', () => {
    const p = policy({ rules: [{ id: 'no-force', effect: 'deny', commands: ['re:^git .*(--force|-f)( |$)'] }] });
    expect(evaluate(run(['git', 'push', '-f']), p).ruleId).toBe('no-force');
    expect(evaluate(run(['git', 'push']), p).ruleId).toBeUndefined();
  });
});

describe('policy schema', () => {
  const problems = (input: unknown): string[] => checkPolicy(input).problems.map((p) => `${p.path}: ${p.message}`);

  it('defaults: ask, 60, no rules', () => {
    expect(Policy.parse({ version: 1 })).toEqual({ version: 1, default: 'ask', askAboveRisk: 60, rules: [] });
  });

  it('names the field of every problem', () => {
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'deny', tools: ['run_command'], command: ['x'] }] })).toEqual(['rules.0.command: unknown field']);
    expect(problems({ version: 1, extra: true })).toEqual(['extra: unknown field']);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'deny', commands: ['ok', 're:(unclosed'] }] })[0]).toMatch(/^rules\.0\.commands\.1: not a valid regular expression/);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'deny' }] })).toEqual(['rules.0: a rule needs at least one matcher: tools, paths, commands or agents']);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'block', tools: ['read_file'] }] })[0]).toMatch(/^rules\.0\.effect: /);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'ask', paths: ['src/[x'] }] })).toEqual(['rules.0.paths.0: not a valid glob: unclosed "["']);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'ask', tools: ['run_commnd'] }] })[0]).toMatch(/^rules\.0\.tools\.0: unknown tool "run_commnd"/);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'ask', tools: ['toString'] }] })[0]).toMatch(/unknown tool "toString"/);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'ask', agents: ['role:'] }] })[0]).toMatch(/^rules\.0\.agents\.0: /);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'ask', tools: [] }] })[0]).toMatch(/^rules\.0\.tools: /);
    expect(problems({ version: 1, rules: [{ id: 'a', effect: 'ask', tools: ['*'] }, { id: 'a', effect: 'deny', tools: ['*'] }] })).toEqual([
      'rules.1.id: duplicate rule id "a" (also rules.0.id)',
    ]);
    expect(problems({ version: 2 })[0]).toMatch(/^version: /);
    expect(problems({ version: 1, askAboveRisk: 101 })[0]).toMatch(/^askAboveRisk: /);
    expect(problems({ version: 1, default: 'maybe' })[0]).toMatch(/^default: /);
  });
});
