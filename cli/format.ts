/** Human-readable lines for trace events, task trees and tables (the CLI's non-JSON output). */
import type { TaskNode, TraceEvent } from '../core/schemas';

type Payload = Record<string, unknown>;

export function short(value: unknown, max = 80): string {
  const s = typeof value === 'string' ? value : JSON.stringify(value) ?? '';
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

function str(v: unknown): string {
  return v === undefined || v === null ? '' : String(v);
}

/** One line for an event worth showing in `troupe run`, or undefined for the noise (deltas, node enter/exit, …). */
export function describeEvent(e: TraceEvent): string | undefined {
  const p = (e.payload ?? {}) as Payload;
  const who = e.taskId && e.actor ? `[${e.actor}] ` : '';
  switch (e.type) {
    case 'session.started':
      return undefined;
    case 'plan.accepted': {
      const tasks = (p.tasks as { planKey?: string; goal?: string; agent?: string; dependsOn?: string[] }[] | undefined) ?? [];
      return [`plan accepted: ${tasks.length} task(s)`, ...tasks.map((t) => `  • ${str(t.planKey)}${t.dependsOn?.length ? ` (after ${t.dependsOn.join(', ')})` : ''}${t.goal ? ` — ${short(t.goal, 70)}` : ''}`)].join('\n');
    }
    case 'plan.rejected':
      return `plan rejected: ${short(p.reason ?? p.errors ?? p, 120)}`;
    case 'plan.replanning':
      return `replanning${p.reason ? `: ${short(p.reason, 100)}` : ''}`;
    case 'task.routed':
      return `task ${str(p.planKey)} → ${str(p.agent)}${p.version ? ` v${str(p.version)}` : ''}`;
    case 'task.dispatched':
      return `▶ task ${str(p.planKey)} started${p.agent ? ` (${str(p.agent)})` : ''}`;
    case 'task.completed':
      return `✔ task ${str(p.planKey)} done`;
    case 'task.failed':
      return `✘ task ${str(p.planKey)} failed${p.reason ? `: ${short(p.reason, 120)}` : ''}`;
    case 'task.retrying':
      return `↻ task ${str(p.planKey)} retrying${p.reason ? `: ${short(p.reason, 120)}` : ''}`;
    case 'task.cancelled':
      return `■ task ${str(p.planKey)} cancelled`;
    case 'handoff':
      return `⇄ ${str(p.planKey)}: ${str(p.from)} hands off to ${str(p.to)}${p.reason ? ` (${short(p.reason, 80)})` : ''}`;
    case 'tool.called':
      return `${who}→ ${str(p.name)} ${short(p.input, 100)}`;
    case 'tool.result':
      return `${who}  ${p.isError ? `✘ error: ${short(p.content, 120)}` : `✔ ok${p.content ? `: ${short(p.content, 80)}` : ''}`}`;
    case 'guardrail.decision':
      return p.effect === 'allow' ? undefined : `${who}guardrail ${str(p.effect)} ${str(p.tool)}: ${short(p.reason, 100)}`;
    case 'approval.requested':
      return `? approval needed for ${str(p.tool)} ${short(p.input, 100)} (approval ${str(p.approvalId)})`;
    case 'approval.decided':
      return `  approval ${str(p.approvalId)} ${str(p.status)}${p.by ? ` by ${str(p.by)}` : ''}${p.reason ? ` (${short(p.reason, 80)})` : ''}`;
    case 'workspace.ready':
      return `workspace ready${p.root ? `: ${str(p.root)}` : ''}`;
    case 'session.ended':
      return `session ${str(p.status)}${p.reason ? ` (${short(p.reason, 120)})` : ''}`;
    default:
      return undefined;
  }
}

/** Every event for `troupe logs`: seq, type, and a short summary. */
export function logLine(e: TraceEvent): string {
  const summary = describeEvent(e) ?? short(e.payload, 120);
  return `${String(e.seq).padStart(5)} ${e.timestamp.slice(11, 19)} ${e.type.padEnd(20)} ${summary.split('\n')[0] ?? ''}`;
}

export function taskTree(nodes: readonly TaskNode[], indent = ''): string[] {
  const lines: string[] = [];
  for (const t of nodes) {
    const label = t.planKey === 'root' || t.planKey === null ? `round ${t.round}` : t.planKey;
    lines.push(`${indent}${label} [${t.status}] ${t.assignedAgent ?? ''} — ${short(t.goal.split('\n')[0] ?? '', 70)}`);
    lines.push(...taskTree(t.children, `${indent}  `));
  }
  return lines;
}

export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}
