/**
 * `troupe run "<goal>"`: starts a session, shows its progress live, answers approval questions, and ends after the
 * first answer. Exit codes: 0 answered (or done), 1 failed (or an API error), 130 cancelled (Ctrl-C or otherwise).
 */
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { ApiError, type ApiClient } from '../lib/api-client';
import type { Session, TraceEvent } from '../core/schemas';
import { describeEvent, short } from './format';

export type RunOptions = {
  goal: string;
  agent?: string;
  repo?: string;
  project?: string;
  approveAll?: boolean;
  denyAll?: boolean;
  keepOpen?: boolean;
  json?: boolean;
};

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_CANCELLED = 130;

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** A spinner on stderr re-drawn with \r while a model call runs; does nothing when stderr is not a terminal. */
class Progress {
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private label = '';
  private started = 0;
  constructor(private readonly stream: NodeJS.WriteStream) {}
  get enabled(): boolean {
    return Boolean(this.stream.isTTY);
  }
  start(label: string): void {
    this.label = label;
    this.started = Date.now();
    if (!this.enabled || this.timer) return;
    this.timer = setInterval(() => this.draw(), 100);
    this.draw();
  }
  private draw(): void {
    const secs = ((Date.now() - this.started) / 1000).toFixed(0);
    this.stream.write(`\r\x1b[K${FRAMES[this.frame++ % FRAMES.length]} ${this.label} (${secs}s)`);
  }
  /** Clears the line so other output can be printed; `resume` redraws it. */
  clear(): void {
    if (this.timer) this.stream.write('\r\x1b[K');
  }
  resume(): void {
    if (this.timer) this.draw();
  }
  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.stream.write('\r\x1b[K');
  }
}

function ask(question: string, output: NodeJS.WriteStream, onInterrupt: () => void): Promise<string | undefined> {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, output, terminal: Boolean(process.stdin.isTTY) });
    let done = false;
    const finish = (answer: string | undefined) => {
      if (done) return;
      done = true;
      rl.close();
      resolve(answer);
    };
    rl.on('SIGINT', () => {
      output.write('\n');
      finish(undefined);
      onInterrupt();
    });
    rl.on('close', () => finish(undefined));
    rl.question(question, (answer) => finish(answer));
  });
}

export async function runCommand(client: ApiClient, opts: RunOptions): Promise<number> {
  const out = (line: string) => {
    if (opts.json) return;
    progress.clear();
    process.stdout.write(`${line}\n`);
    progress.resume();
  };
  const err = (line: string) => {
    progress.clear();
    process.stderr.write(`${line}\n`);
    progress.resume();
  };
  const progress = new Progress(process.stderr);
  if (opts.json) progress.start = () => {}; // JSON output is for scripts: no spinner

  let sessionId: string | undefined;
  let interrupted = false;
  let forceTimer: NodeJS.Timeout | undefined;
  const abort = new AbortController();
  const decided = new Set<string>();

  const cancel = () => {
    if (!sessionId) return;
    client.cancel(sessionId).catch((e: unknown) => {
      err(`could not cancel session ${sessionId}: ${e instanceof Error ? e.message : String(e)}`);
      abort.abort();
    });
  };
  const onSigint = () => {
    if (interrupted) {
      progress.stop();
      process.exit(EXIT_CANCELLED);
    }
    interrupted = true;
    progress.stop();
    err(sessionId ? `cancelling session ${sessionId}… (Ctrl-C again to quit without waiting)` : 'cancelling…');
    cancel();
    forceTimer = setTimeout(() => {
      err('the session did not confirm the cancellation in time');
      process.exit(EXIT_CANCELLED);
    }, 30_000);
    forceTimer.unref();
  };
  process.on('SIGINT', onSigint);

  try {
    const session = await client.startSession({
      goal: opts.goal,
      ...(opts.agent ? { agent: opts.agent } : {}),
      ...(opts.repo ? { repo: path.resolve(opts.repo) } : {}),
      ...(opts.project ? { project: opts.project } : {}),
      metadata: { source: 'cli' },
    });
    sessionId = session.id;
    out(`session ${session.id} started with agent ${session.agentId}`);
    if (interrupted) cancel();
    progress.start(`${session.agentId} is working`);

    let answered = false;
    let ended: { status?: string; reason?: string } | undefined;
    let lastSeq = 0;
    for (let attempt = 0; !ended && attempt < 5; attempt++) {
      try {
        for await (const e of client.events(session.id, { after: lastSeq, signal: abort.signal })) {
          lastSeq = e.seq;
          if (opts.json) process.stdout.write(`${JSON.stringify(e)}\n`);
          else {
            const line = describeEvent(e);
            if (line) out(line);
          }
          track(e, progress);
          if (e.type === 'approval.requested') await onApproval(e);
          if (e.type === 'session.ended') {
            const p = e.payload as { status?: string; reason?: string };
            ended = { ...(p.status ? { status: p.status } : {}), ...(p.reason ? { reason: p.reason } : {}) };
            break;
          }
          if (e.type === 'state.mutated' && !e.taskId && !answered && !interrupted) {
            const p = e.payload as { status?: { to?: string }; statusReason?: { to?: string | null } };
            if (p.status?.to === 'blocked' && p.statusReason?.to === 'awaiting_input') {
              answered = true;
              progress.stop();
              const s = await client.getSession(session.id);
              if (!opts.json) out(`\n${s.finalAnswer ?? '(no answer)'}\n`);
              if (opts.keepOpen) {
                out(`session ${session.id} stays open: troupe logs ${session.id} --follow`);
                break;
              }
              await client.close(session.id);
            }
          }
        }
        if (abort.signal.aborted || answered) break;
      } catch (e) {
        if (e instanceof ApiError && e.status !== 0) throw e;
        if (attempt === 4) throw e;
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
      if (opts.keepOpen && answered) break;
    }
    progress.stop();

    const final: Session = await client.getSession(session.id);
    if (opts.json) process.stdout.write(`${JSON.stringify(final)}\n`);
    if (final.status === 'failed') {
      err(`session ${final.id} failed: ${final.statusReason ?? ended?.reason ?? 'unknown reason'}`);
      return EXIT_FAILED;
    }
    if (final.status === 'cancelled') {
      err(`session ${final.id} cancelled`);
      return EXIT_CANCELLED;
    }
    if (interrupted) return EXIT_CANCELLED;
    if (!answered && final.status !== 'done') {
      err(`session ${final.id} is ${final.status}${final.statusReason ? ` (${final.statusReason})` : ''}`);
      return EXIT_FAILED;
    }
    return EXIT_OK;
  } finally {
    progress.stop();
    if (forceTimer) clearTimeout(forceTimer);
    process.off('SIGINT', onSigint);
  }

  async function onApproval(e: TraceEvent): Promise<void> {
    const p = e.payload as { approvalId: string; tool?: string; input?: unknown };
    if (decided.has(p.approvalId) || interrupted) return;
    // Replayed history: only a pending approval needs a decision.
    const current = await client.getApproval(p.approvalId).catch(() => undefined);
    if (current && current.status !== 'pending') return;
    let decision: 'approve' | 'deny' | undefined;
    let by = os.userInfo().username || 'cli';
    if (opts.approveAll || opts.denyAll) {
      decision = opts.approveAll ? 'approve' : 'deny';
      by = `cli${opts.approveAll ? ' --approve-all' : ' --deny-all'}`;
    } else if (process.stdin.isTTY) {
      progress.stop();
      const answer = await ask(`Approve ${p.tool ?? 'tool call'} ${short(p.input, 120)}? [y/N] `, opts.json ? process.stderr : process.stdout, onSigint);
      if (answer === undefined) return;
      decision = /^y(es)?$/i.test(answer.trim()) ? 'approve' : 'deny';
    } else {
      err(`waiting for approval ${p.approvalId}: run \`troupe approve ${p.approvalId}\` or \`troupe deny ${p.approvalId}\``);
      return;
    }
    decided.add(p.approvalId);
    try {
      await client.decideApproval(p.approvalId, { decision, by });
      out(`  ${decision === 'approve' ? 'approved' : 'denied'} ${p.approvalId}`);
    } catch (x) {
      err(`could not decide approval ${p.approvalId}: ${x instanceof Error ? x.message : String(x)}`);
    }
    progress.start(`${e.actor === 'guardrails' ? 'agent' : e.actor} is working`);
  }
}

/** Keeps the spinner's label on the agent that is working and stops it when a model call returns. */
function track(e: TraceEvent, progress: Progress): void {
  const p = (e.payload ?? {}) as { kind?: string; agent?: string };
  if (e.type === 'model.context' || (e.type === 'workflow.node.enter' && p.kind === 'model_call')) progress.start(`${e.actor} is thinking`);
  else if (e.type === 'message.assistant') progress.stop();
  else if (e.type === 'tool.called') progress.start(`${e.actor} runs tools`);
  else if (e.type === 'approval.requested') progress.stop();
}
