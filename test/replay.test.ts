/**
 * Replay test: every history recorded in test/histories/ (by scripts/record-histories.ts) must replay against the
 * current workflow code. A change to workflows/ that would break running sessions (a command added, removed or
 * reordered, a different activity or timer) fails here. Needs no Temporal server and no Postgres.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { historyFromJSON, type History } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../lib/logger';
import { installTemporalLogging, workflowBundle } from '../worker/build';

// The replay workers' own logs (bundling, state changes) go through our logger, quiet unless TEST_LOG_LEVEL says so.
installTemporalLogging(createLogger({ name: 'test', level: process.env.TEST_LOG_LEVEL ?? 'warn' }));

const HISTORIES_DIR = fileURLToPath(new URL('./histories/', import.meta.url));
const NONDETERMINISTIC_WORKFLOWS = fileURLToPath(new URL('./support/nondeterministic-workflows.ts', import.meta.url));

/** One per scenario of scripts/record-histories.ts; continue-as-new also has one file per run of its chain. */
const EXPECTED = [
  'happy-path',
  'cancel-during-model',
  'scenario-exhausted',
  'bad-tool-args',
  'flaky-retry',
  'idle-timeout',
  'continue-as-new',
  // Orchestrated sessions (orchestratedSessionWorkflow); their task runs (taskWorkflow) are <name>.task<N>.json.
  'orchestrated-fanout',
  'orchestrated-retry',
  'orchestrated-timeout-replan',
  'orchestrated-handoff',
  'orchestrated-invalid-plan',
  'orchestrated-cancel',
  'orchestrated-task-approval',
  // Coding sessions on a repository: worktree, snapshots, rollback, guardrail deny/ask, approvals, approval timeout.
  'coding-edit-test-rollback',
  'coding-deny-and-ask',
  'coding-approval-timeout',
];

function loadHistory(file: string): History {
  return historyFromJSON(JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8')));
}

const files = readdirSync(HISTORIES_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort();

describe('workflow replay', () => {
  it('has the recorded histories (an emptied folder must not pass)', () => {
    expect(files.length).toBeGreaterThanOrEqual(EXPECTED.length);
    expect(files).toEqual(expect.arrayContaining(EXPECTED.map((name) => `${name}.json`)));
    expect(files.filter((f) => /^continue-as-new-run\d+\.json$/.test(f)).length).toBeGreaterThanOrEqual(2);
    // Task runs: a fan-out of three, a cancelled and a completed run, a handoff pair.
    expect(files.filter((f) => /^orchestrated-fanout\.task\d+\.json$/.test(f))).toHaveLength(3);
    expect(files).toEqual(expect.arrayContaining(['orchestrated-timeout-replan.task1.json', 'orchestrated-cancel.task3.json', 'orchestrated-handoff.task2.json']));
  });

  it('replays every recorded history with the workflow code the worker runs', async () => {
    // The file name is the workflow id, so a failure names its file. The workflow never reads its id (it uses sessionId).
    const histories = files.map((file) => ({ workflowId: file, history: loadHistory(file) }));
    const replayed: string[] = [];
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) {
      replayed.push(result.workflowId);
      if (result.error) failures.push(`${result.workflowId}: ${result.error.name}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
    expect(replayed.sort()).toEqual(files);
  });

  it('fails with a DeterminismViolationError when the workflow code changed incompatibly (the guard works)', async () => {
    const replay = Worker.runReplayHistory({ workflowsPath: NONDETERMINISTIC_WORKFLOWS }, loadHistory('happy-path.json'), 'happy-path.json');
    await expect(replay).rejects.toBeInstanceOf(DeterminismViolationError);
    await expect(replay).rejects.toThrow(/nondeterminism/);
  });
});
