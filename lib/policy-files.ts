/**
 * Guardrail policy files: YAML or JSON (core/policy.ts validates them). The policy in force is the file named by
 * `TROUPE_POLICY_FILE`, else the shipped `policies/default.yaml` at the repository root.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { TroupeError } from '../core/errors';
import { checkPolicy, type Policy, type PolicyProblem } from '../core/policy';

/** The shipped policy, resolved from this module's location (not the working directory). */
export const DEFAULT_POLICY_FILE = fileURLToPath(new URL('../policies/default.yaml', import.meta.url));

function describe(problems: readonly PolicyProblem[]): string {
  return problems.map((p) => `${p.path}: ${p.message}`).join('; ');
}

function fail(name: string, problems: PolicyProblem[]): never {
  const named = problems.map((p) => ({ path: `${name}: ${p.path}`, message: p.message }));
  throw new TroupeError('bad_request', `invalid policy ${name}: ${describe(problems)}`, named);
}

/**
 * Parses and validates one policy text. `name` (a file name) prefixes every problem; `.json` names are read as JSON,
 * anything else as YAML (which JSON is also). Throws a bad_request naming the file and each bad field
 * (`policy.yaml: rules.2.commands.0: not a valid regular expression: …`).
 */
export function parsePolicy(text: string, name: string): Policy {
  let value: unknown;
  if (/\.json$/i.test(name)) {
    try {
      value = JSON.parse(text) as unknown;
    } catch (err) {
      fail(name, [{ path: '(file)', message: `not valid JSON: ${err instanceof Error ? err.message : String(err)}` }]);
    }
  } else {
    const docs = parseAllDocuments(text);
    const list = Array.isArray(docs) ? docs : [];
    const err = list.flatMap((d) => d.errors)[0];
    if (err) fail(name, [{ path: '(file)', message: `not valid YAML: ${err.message.split('\n')[0]}` }]);
    const values = list.map((d) => d.toJS() as unknown).filter((v) => v !== null && v !== undefined);
    if (values.length > 1) fail(name, [{ path: '(file)', message: 'holds several YAML documents; a policy file holds one policy' }]);
    value = values[0];
  }
  if (value === null || value === undefined) fail(name, [{ path: '(file)', message: 'no policy in this file' }]);
  const { policy, problems } = checkPolicy(value);
  if (!policy) fail(name, problems);
  return policy;
}

/**
 * Loads the policy in force: `file`, else `TROUPE_POLICY_FILE`, else the shipped default. A relative path is taken
 * from the working directory. Throws a bad_request naming the file (and each bad field).
 */
export function loadPolicy(file?: string): Policy {
  const chosen = file ?? (process.env.TROUPE_POLICY_FILE || undefined) ?? DEFAULT_POLICY_FILE;
  const resolved = path.resolve(chosen);
  let text: string;
  try {
    text = readFileSync(resolved, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(err)})`;
    throw new TroupeError('bad_request', `policy file "${chosen}" ${why}`, [{ path: chosen, message: why }]);
  }
  return parsePolicy(text, chosen === DEFAULT_POLICY_FILE ? 'policies/default.yaml' : chosen);
}
