/**
 * The `troupe` CLI, run as a real binary (bin/troupe) against a real stack: run with live progress and the answer,
 * --json, failures, approvals (automatic, interactive under a pseudo-terminal, and from a second process), Ctrl-C,
 * sessions, logs, agents, and usage errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { git, makeRepo } from './support/repo';
import { startStack, type Stack } from './support/stack';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const BIN = path.join(ROOT, 'bin', 'troupe');

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ config: { workspacesDir: mkdtempSync(path.join(os.tmpdir(), 'troupe-cli-ws-')) } });
  await stack.agent('cli-note', 'note-then-answer');
  await stack.agent('cli-exhausted', 'exhausted');
  await stack.agent('cli-slow', 'slow');
  await stack.agent('cli-env', 'write-env', { role: 'test-coder', tools: ['write_file'], permissions: ['read', 'write'], memoryScope: 'none' });
});
afterAll(async () => {
  await stack?.stop();
});

type Result = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };
type Running = { child: ChildProcess; out: () => string; err: () => string; done: Promise<Result>; waitFor: (re: RegExp, timeoutMs?: number) => Promise<string> };

/** Env without the developer's own Troupe settings, so only the flags count. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['TROUPE_API_URL', 'TROUPE_API_TOKEN', 'TROUPE_API_TOKENS']) delete env[k];
  return env;
}

function spawnCli(cmd: string, args: string[], opts: { withConnection?: boolean } = {}): Running {
  const conn = opts.withConnection === false ? [] : ['--url', stack.baseUrl, '--token', stack.token];
  const child = spawn(cmd, cmd === BIN ? [...args, ...conn] : args, { env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Result>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const waitFor = async (re: RegExp, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(stdout) ?? re.exec(stderr);
      if (m) return m[1] ?? m[0];
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no ${re} in output:\n${stdout}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { child, out: () => stdout, err: () => stderr, done, waitFor };
}

function troupe(...args: string[]): Promise<Result> {
  const r = spawnCli(BIN, args);
  r.child.stdin!.end();
  return r.done;
}

const sessionIdOf = (stdout: string) => /session (\S+) started/.exec(stdout)?.[1];

describe('troupe run', () => {
  it('starts a session, prints progress and the answer, closes the session and exits 0', async () => {
    const r = await troupe('run', 'remember the plan', '--agent', 'cli-note');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/session \S+ started with agent cli-note/);
    expect(r.stdout).toContain('→ blackboard_write');
    expect(r.stdout).toContain('✔ ok');
    expect(r.stdout).toContain('Done: remember the plan');
    const id = sessionIdOf(r.stdout)!;
    expect(await stack.waitForStatus(id, (s) => s.status === 'done')).toMatchObject({ statusReason: 'closed' });
  });

  it('--json prints every event as a JSON line and the final session last', async () => {
    const r = await troupe('run', 'json please', '--agent', 'cli-note', '--json');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: 'session.started', seq: 1 });
    expect(lines.some((l) => l.type === 'tool.called')).toBe(true);
    expect(lines.at(-2)).toMatchObject({ type: 'session.ended' });
    expect(lines.at(-1)).toMatchObject({ status: 'done', statusReason: 'closed', finalAnswer: 'Done: json please' });
  });

  it('exits 1 with the reason when the session fails', async () => {
    const r = await troupe('run', 'this will run out of script', '--agent', 'cli-exhausted');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/session \S+ failed: .+/);
  });

  it('--approve-all approves the guarded write and the file is written', async () => {
    const repo = makeRepo();
    const r = await troupe('run', 'add a .env', '--agent', 'cli-env', '--repo', path.relative(process.cwd(), repo), '--approve-all');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('? approval needed for write_file');
    expect(r.stdout).toMatch(/approved \S+/);
    const id = sessionIdOf(r.stdout)!;
    const [approval] = (await stack.api('GET', `/v1/sessions/${id}/approvals`)).body.data;
    expect(approval).toMatchObject({ status: 'approved', tool: 'write_file' });
    const snap = (await stack.traceRows(id)).find((e) => e.type === 'workspace.snapshot')?.payload as { sha: string } | undefined;
    expect(git(repo, 'show', `${snap!.sha}:.env`)).toBe('DEBUG=1');
  });

  it('asks interactively on a terminal (under script(1)) and decides by the answer', async () => {
    const repo = makeRepo();
    const cmd = [BIN, 'run', 'add a .env', '--agent', 'cli-env', '--repo', repo, '--url', stack.baseUrl, '--token', stack.token].map((a) => `'${a}'`).join(' ');
    const r = spawnCli('script', ['-qfec', cmd, '/dev/null'], { withConnection: false });
    await r.waitFor(/Approve write_file .*\[y\/N\]/);
    r.child.stdin!.write('y\n');
    const res = await r.done;
    r.child.stdin!.end();
    expect(res.code, res.stdout).toBe(0);
    expect(res.stdout).toMatch(/approved \S+/);
    expect(res.stdout).toContain('Result:');
    const id = sessionIdOf(res.stdout)!;
    const [approval] = (await stack.api('GET', `/v1/sessions/${id}/approvals`)).body.data;
    expect(approval).toMatchObject({ status: 'approved' });
  });

  it('without a terminal waits and says how to decide; `troupe approve` from another process lets it finish', async () => {
    const repo = makeRepo();
    const r = spawnCli(BIN, ['run', 'add a .env', '--agent', 'cli-env', '--repo', repo]);
    r.child.stdin!.end();
    const approvalId = await r.waitFor(/run `troupe approve (\S+)`/);
    const decided = await troupe('approve', approvalId, '--by', 'carol');
    expect(decided.code, decided.stderr).toBe(0);
    expect(decided.stdout).toContain(`approval ${approvalId} approved`);
    const res = await r.done;
    expect(res.code, res.stderr).toBe(0);
    expect((await stack.api('GET', `/v1/approvals/${approvalId}`)).body).toMatchObject({ status: 'approved', decidedBy: 'carol' });
  });

  it('Ctrl-C cancels the session and exits 130', async () => {
    const r = spawnCli(BIN, ['run', 'take your time', '--agent', 'cli-slow']);
    r.child.stdin!.end();
    const id = await r.waitFor(/session (\S+) started/);
    await new Promise((res) => setTimeout(res, 500));
    r.child.kill('SIGINT');
    const res = await r.done;
    expect(res.code, res.stderr).toBe(130);
    expect(res.stderr).toContain(`cancelling session ${id}`);
    expect(await stack.waitForStatus(id, (s) => s.status === 'cancelled')).toMatchObject({ status: 'cancelled' });
  });
});

describe('the other commands', () => {
  it('troupe deny denies a pending approval', async () => {
    const repo = makeRepo();
    const res = await stack.api('POST', '/v1/sessions', { goal: 'add a .env', agent: 'cli-env', repo });
    const id = res.body.id as string;
    await stack.waitForStatus(id, (s) => s.statusReason === 'awaiting_approval');
    const [approval] = (await stack.api('GET', `/v1/sessions/${id}/approvals?status=pending`)).body.data;
    const r = await troupe('deny', approval.id, '--reason', 'not today', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: approval.id, status: 'denied', reason: 'not today' });
    const again = await troupe('approve', approval.id);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('409');
    await stack.api('POST', `/v1/sessions/${id}/cancel`);
  });

  it('troupe sessions and troupe logs', async () => {
    const run = await troupe('run', 'for the logs', '--agent', 'cli-note');
    const id = sessionIdOf(run.stdout)!;
    const list = await troupe('sessions', '--json', '--limit', '50');
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { data: { id: string }[] }).data.map((s) => s.id)).toContain(id);
    const table = await troupe('sessions');
    expect(table.stdout).toMatch(new RegExp(`${id}\\s+done \\(closed\\)\\s+cli-note`));
    const logs = await troupe('logs', id);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/^\s+1 \S+ session.started/);
    expect(logs.stdout).toContain('session.ended');
    const follow = await troupe('logs', id, '--follow', '--json');
    expect(follow.stdout.trim().split('\n').map((l) => JSON.parse(l).type).at(-1)).toBe('session.ended');
    expect((await troupe('logs', 'no-such-session')).code).toBe(1);
  });

  it('troupe agents list and apply -f', async () => {
    const list = await troupe('agents', 'list');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/cli-note\s+\d+\s+assistant\s+scripted:note-then-answer/);
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'troupe-cli-')), 'agents.yaml');
    writeFileSync(file, 'id: cli-applied\nname: Applied\nrole: assistant\nmodel: scripted:note-then-answer\ninstructions: hi\ntools: []\npermissions: []\nmemoryScope: none\n');
    const applied = await troupe('agents', 'apply', '-f', file);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain('cli-applied: created (v1)');
    expect((await troupe('agents', 'apply', '-f', file)).stdout).toContain('cli-applied: unchanged (v1)');
  });

  it('usage errors exit 2', async () => {
    for (const args of [[], ['bogus'], ['run'], ['run', 'x', '--nope'], ['agents', 'apply'], ['run', 'x', '--approve-all', '--deny-all'], ['sessions', '--status', 'weird']]) {
      const r = await troupe(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
    }
    expect((await troupe('--help')).stdout).toContain('Usage: troupe');
  });
});
