/**
 * Coding agents that act safely, end to end on real services: a real git repository, the real bubblewrap sandbox, the
 * real Temporal dev server and Postgres. The agents are scripted; everything else is what production runs.
 */
import { mkdtempSync, readFileSync, realpathSync, existsSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { putAgent } from '../service/agents';
import { scriptedPlanner } from './support/orchestration-agents';
import { git, makeRepo } from './support/repo';
import { startStack, type Stack } from './support/stack';

const CODING = ['read_file', 'write_file', 'edit_file', 'list_dir', 'search', 'run_command', 'git_diff', 'git_status'];
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ config: { workspacesDir: mkdtempSync(path.join(os.tmpdir(), 'troupe-ws-')) } });
});
afterAll(async () => {
  await stack?.stop();
});

async function coder(id: string, scenario: string, permissions = ['read', 'write', 'exec']) {
  return stack.agent(id, scenario, { role: 'test-coder', tools: CODING, permissions, memoryScope: 'none' });
}
async function start(body: Record<string, unknown>): Promise<string> {
  const res = await stack.api('POST', '/v1/sessions', body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}
const payload = (r: { payload: unknown }) => r.payload as Record<string, any>;
const waiting = (id: string, reason: string) => stack.waitForStatus(id, (s) => s.statusReason === reason || s.status === 'failed' || s.status === 'done', 60_000);

describe('a coding session on a repository', () => {
  it('edits a file in its own worktree, runs the tests in the sandbox, snapshots the change; rollback restores it; the checkout is untouched', async () => {
    const repo = makeRepo();
    const userHead = git(repo, 'rev-parse', 'HEAD');
    const id = await start({ goal: 'fix add()', agent: await coder('c-fixer', 'coder-fix'), repo });
    const s = await waiting(id, 'awaiting_input');
    expect(s).toMatchObject({ status: 'blocked', finalAnswer: 'Fixed add() and the tests pass.', repo });
    const ws = s.workspace!;
    expect(ws.branch).toBe(`troupe/${id}`);
    expect(ws.root.startsWith(repo)).toBe(false);

    // The worktree has the fix; the user's checkout, branch and HEAD do not move.
    expect(readFileSync(path.join(ws.root, 'src/add.js'), 'utf8')).toContain('return a + b;');
    expect(readFileSync(path.join(repo, 'src/add.js'), 'utf8')).toContain('return a - b;');
    expect(git(repo, 'rev-parse', 'HEAD')).toBe(userHead);
    expect(git(repo, 'rev-parse', '--abbrev-ref', 'HEAD')).toBe('main');
    expect(git(repo, 'status', '--porcelain')).toBe('');

    const rows = await stack.traceRows(id);
    const decisions = rows.filter((r) => r.type === 'guardrail.decision').map(payload);
    expect(decisions.map((d) => [d.tool, d.effect])).toEqual([
      ['edit_file', 'allow'],
      ['run_command', 'allow'],
    ]);
    // The tests ran inside the sandbox, on the edited file.
    const testRun = rows.filter((r) => r.type === 'tool.result').map(payload)[1]!;
    expect(testRun.content).toContain('ok: add(2, 3) = 5');
    expect(testRun.isError).toBe(false);
    // The edit is a snapshot: a commit on the session branch, recorded with its sha and step.
    const snaps = rows.filter((r) => r.type === 'workspace.snapshot').map(payload);
    expect(snaps).toHaveLength(1);
    expect(snaps[0]).toMatchObject({ tool: 'edit_file', branch: ws.branch });
    expect(git(repo, 'show', `${snaps[0]!.sha}:src/add.js`)).toContain('return a + b;');

    // Rollback to the base restores the file; a sha that is not one of the session's snapshots is refused.
    const bad = await stack.api('POST', `/v1/sessions/${id}/rollback`, { snapshot: userHead.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')) });
    expect(bad.status, JSON.stringify(bad.body)).toBe(400);
    const rolled = await stack.api('POST', `/v1/sessions/${id}/rollback`, { snapshot: ws.baseSha });
    expect(rolled.status, JSON.stringify(rolled.body)).toBe(200);
    expect(readFileSync(path.join(ws.root, 'src/add.js'), 'utf8')).toContain('return a - b;');
    expect((await stack.traceRows(id)).some((r) => r.type === 'workspace.rollback' && payload(r).sha === ws.baseSha)).toBe(true);
    expect((await stack.api('POST', `/v1/sessions/${id}/rollback`, { snapshot: 'not-a-sha' })).status).toBe(400);
  });

  it('denies rm -rf /, asks before git push, and gives the denial back to the agent; deciding twice is a 409', async () => {
    const repo = makeRepo();
    const id = await start({ goal: 'clean up and publish', agent: await coder('c-pusher', 'guarded-commands', ['read', 'write', 'exec', 'git']), repo });
    await waiting(id, 'awaiting_approval');
    const list = await stack.api('GET', `/v1/sessions/${id}/approvals`);
    expect(list.status).toBe(200);
    expect(list.body.data).toHaveLength(1);
    const approval = list.body.data[0];
    expect(approval).toMatchObject({ status: 'pending', tool: 'run_command', input: { argv: ['git', 'push', 'origin', 'main'] }, decision: { effect: 'ask', ruleId: 'ask-git-push' } });
    // It is in the stream too.
    const streamed = await stack.events(id, { until: (e) => e.type === 'approval.requested' });
    expect(payload(streamed.at(-1)!.data)).toMatchObject({ approvalId: approval.id, tool: 'run_command' });

    const denied = await stack.api('POST', `/v1/approvals/${approval.id}`, { decision: 'deny', reason: 'not today', by: 'alice' });
    expect(denied.status, JSON.stringify(denied.body)).toBe(200);
    expect(denied.body).toMatchObject({ status: 'denied', decidedBy: 'alice' });
    const again = await stack.api('POST', `/v1/approvals/${approval.id}`, { decision: 'approve' });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('conflict');

    await waiting(id, 'awaiting_input');
    const rows = await stack.traceRows(id);
    const decisions = rows.filter((r) => r.type === 'guardrail.decision').map(payload);
    expect(decisions.map((d) => [d.effect, d.stage, d.ruleId])).toEqual([
      ['deny', 'deny_rule', 'deny-destroy-everything'],
      ['ask', 'ask_rule', 'ask-git-push'],
    ]);
    const results = rows.filter((r) => r.type === 'tool.result').map(payload);
    expect(results[0]).toMatchObject({ isError: true });
    expect(results[0]!.content).toContain('deny');
    expect(results[1]!.content).toContain('was not run: denied by alice: not today');
    expect(rows.find((r) => r.type === 'approval.decided')).toMatchObject({ actor: 'user:alice', payload: { status: 'denied', by: 'alice', reason: 'not today' } });
    expect((await stack.api('GET', `/v1/approvals/${approval.id}`)).body).toMatchObject({ status: 'denied', decidedBy: 'alice', reason: 'not today' });
  });

  it('keeps waiting for an approval across a worker restart, then runs the approved call', async () => {
    const repo = makeRepo();
    const id = await start({ goal: 'add a .env', agent: await coder('c-env', 'write-env'), repo });
    await waiting(id, 'awaiting_approval');
    await stack.stopWorker();
    await stack.startWorker();
    const [approval] = (await stack.api('GET', `/v1/sessions/${id}/approvals?status=pending`)).body.data;
    const approved = await stack.api('POST', `/v1/approvals/${approval.id}`, { decision: 'approve', by: 'bob' });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    const s = await waiting(id, 'awaiting_input');
    expect(readFileSync(path.join(s.workspace!.root, '.env'), 'utf8')).toBe('DEBUG=1\n');
    const decisions = (await stack.traceRows(id)).filter((r) => r.type === 'guardrail.decision').map(payload);
    expect(decisions.map((d) => [d.effect, d.approvedBy ?? null])).toEqual([
      ['ask', null],
      ['allow', 'bob'],
    ]);
  }, 120_000);

  it('turns an approval nobody decides into a denial when it times out; deciding it afterwards is a 409', async () => {
    const short = await startStack({ approvalTimeoutMs: 1_500, config: { workspacesDir: mkdtempSync(path.join(os.tmpdir(), 'troupe-ws-')) } });
    try {
      await short.agent('c-env-timeout', 'write-env', { role: 'test-coder', tools: CODING, permissions: ['read', 'write'], memoryScope: 'none' });
      const repo = makeRepo();
      const created = await short.api('POST', '/v1/sessions', { goal: 'add a .env', agent: 'c-env-timeout', repo });
      const id = created.body.id as string;
      const s = await short.waitForStatus(id, (x) => x.statusReason === 'awaiting_input' || x.status === 'failed', 60_000);
      const result = (await short.traceRows(id)).find((r) => r.type === 'tool.result')!;
      expect(payload(result).content).toContain('the approval request timed out');
      expect(existsSync(path.join(s.workspace!.root, '.env'))).toBe(false);
      const [approval] = (await short.api('GET', `/v1/sessions/${id}/approvals`)).body.data;
      expect(approval.status).toBe('expired');
      const late = await short.api('POST', `/v1/approvals/${approval.id}`, { decision: 'approve' });
      expect(late.status).toBe(409);
    } finally {
      await short.stop();
    }
  });

  it('refuses path traversal, absolute paths, symlink escapes and .git writes', async () => {
    const outside = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'troupe-outside-')));
    writeFileSync(path.join(outside, 'secret.txt'), 'TOP-SECRET-OUTSIDE');
    const repo = makeRepo();
    symlinkSync(outside, path.join(repo, 'escape'));
    git(repo, 'add', '-A');
    git(repo, 'commit', '-q', '-m', 'a symlink out');
    const id = await start({ goal: 'look around', agent: await coder('c-explorer', 'path-escapes'), repo });
    await waiting(id, 'awaiting_input');
    const rows = await stack.traceRows(id);
    const results = rows.filter((r) => r.type === 'tool.result').map(payload);
    expect(results).toHaveLength(4);
    for (const r of results) expect(r.isError).toBe(true);
    expect(JSON.stringify(rows)).not.toContain('TOP-SECRET-OUTSIDE');
    expect(JSON.stringify(rows)).not.toContain('root:x:0:0');
  });

  it('never lets a secret from a file reach the trace or the model', async () => {
    const secret = 'sk-ant-api03-' + 'Zx9'.repeat(30);
    const repo = makeRepo({ 'config.txt': `ANTHROPIC_API_KEY=${secret}\nregion=eu\n` });
    const id = await start({ goal: 'read the config', agent: await coder('c-reader', 'read-secret'), repo });
    const s = await waiting(id, 'awaiting_input');
    const rows = await stack.traceRows(id);
    expect(JSON.stringify(rows)).not.toContain(secret);
    expect(JSON.stringify(rows)).not.toContain('Zx9Zx9Zx9');
    // The model read the file (region is there), with the key redacted before it saw it.
    const result = payload(rows.find((r) => r.type === 'tool.result')!);
    expect(result.content).toContain('region=eu');
    expect(s.finalAnswer).not.toContain('Zx9Zx9');
  });

  it('brings an approval raised inside a task of a planner session to the session: listed there, task and session blocked until decided', async () => {
    const repo = makeRepo();
    await coder('c-env-task', 'write-env');
    await putAgent(stack.db, scriptedPlanner('c-planner-env', 'plan-env-task'));
    const id = await start({ goal: 'add configuration', agent: 'c-planner-env', repo });
    const blocked = await waiting(id, 'awaiting_approval');
    expect(blocked.status).toBe('blocked');
    const [task] = (await stack.api('GET', `/v1/sessions/${id}/tasks`)).body.data[0].children;
    expect(task).toMatchObject({ status: 'blocked', statusReason: 'awaiting_approval', assignedAgent: 'c-env-task' });
    const [approval] = (await stack.api('GET', `/v1/sessions/${id}/approvals`)).body.data;
    expect(approval).toMatchObject({ status: 'pending', taskId: task.id, tool: 'write_file' });

    const ok = await stack.api('POST', `/v1/approvals/${approval.id}`, { decision: 'approve', by: 'carol' });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    const s = await waiting(id, 'awaiting_input');
    expect(s.finalAnswer).toBe('The .env file is in place.');
    const [done] = (await stack.api('GET', `/v1/sessions/${id}/tasks`)).body.data[0].children;
    expect(done).toMatchObject({ status: 'done' });
    expect(readFileSync(path.join(s.workspace!.root, '.env'), 'utf8')).toBe('DEBUG=1\n');
    const types = (await stack.traceRows(id)).map((r) => r.type);
    expect(types).toEqual(expect.arrayContaining(['approval.requested', 'task.blocked', 'approval.decided', 'task.resumed', 'workspace.snapshot']));
  });

  it('runs the writes of one turn one after another, so each snapshot holds exactly its own change', async () => {
    const repo = makeRepo();
    const id = await start({ goal: 'write two files', agent: await coder('c-two', 'two-writes'), repo });
    await waiting(id, 'awaiting_input');
    const snaps = (await stack.traceRows(id)).filter((r) => r.type === 'workspace.snapshot').map(payload);
    expect(snaps).toHaveLength(2);
    const changed = (sha: string) => git(repo, 'diff-tree', '--no-commit-id', '--name-only', '-r', sha).split('\n').filter(Boolean);
    expect(changed(snaps[0]!.sha)).toEqual(['one.txt']);
    expect(changed(snaps[1]!.sha)).toEqual(['two.txt']);
  });
});
