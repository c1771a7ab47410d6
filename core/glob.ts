/**
 * Path globs and command patterns for the guardrails. Pure (no Node APIs): workflow code may import it.
 *
 * Path globs (policy `paths`, narrowed permissions such as `write:src/**`) match worktree-relative paths, whole:
 *   `*`        any characters except `/` (so `*.ts` matches `a.ts`, not `src/a.ts`)
 *   `?`        one character except `/`
 *   `**`       as a whole segment: any number of segments, zero included (`src/**` matches `src` and `src/a/b.ts`,
 *              `**\/*.pem` matches `k.pem` and `a/b/k.pem`, `a/**\/b` matches `a/b` and `a/x/y/b`); `**` inside a
 *              segment (`a**`) is a plain `*`
 *   `[abc]`, `[a-z]`, `[!a]` / `[^a]`   one character of (or not of) a set; never `/`
 *   `{a,b}`    alternatives, nestable (`{src,test}/**`, `*.{ts,tsx}`)
 *   `\x`       the character x itself
 * Dot-files are not special (`src/**` matches `src/.env`), matching is case-sensitive, a leading `./` and a trailing
 * `/` are ignored, and a glob may not be absolute or climb out with `..` (globs are relative to the worktree root).
 *
 * Command patterns (policy `commands`, narrowed `exec:`/`network:`/`git:` permissions) match a command line, i.e. the
 * argv joined by single spaces: either a glob whose only wildcard is `*` (any characters, spaces and `/` included;
 * `\*` is a literal star) matched against the whole line (`git push*` matches `git push --force origin main`), or
 * `re:<regex>`, a JavaScript regular expression searched anywhere in the line (anchor it with `^`/`$`).
 */

export class PatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PatternError';
  }
}

const MAX_BRACE_EXPANSIONS = 256;
const REGEX_SPECIAL = /[.*+?^${}()|[\]\\/]/g;

function escapeRegExp(text: string): string {
  return text.replace(REGEX_SPECIAL, '\\$&');
}

/**
 * A path made comparable: `\` becomes `/`, `.` segments and repeated or trailing slashes go, `a/../b` becomes `b`.
 * A leading `/` (absolute) and leading `..` segments (outside the worktree) are kept; `''` becomes `.`.
 */
export function normalizePath(path: string): string {
  const p = path.replace(/\\/g, '/');
  const absolute = p.startsWith('/');
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!absolute) out.push('..');
      continue;
    }
    out.push(seg);
  }
  const joined = out.join('/');
  if (absolute) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

/** `{a,b}` alternatives expanded into separate globs (nested braces too). A `{` without `,` stays literal. */
function expandBraces(glob: string): string[] {
  let depth = 0;
  let open = -1;
  const commas: number[] = [];
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '[') {
      // Braces inside a character class are literal: skip to its end.
      const end = classEnd(glob, i);
      if (end > 0) i = end;
      continue;
    }
    if (c === '{') {
      if (depth === 0) {
        open = i;
        commas.length = 0;
      }
      depth++;
    } else if (c === '}' && depth > 0) {
      depth--;
      if (depth === 0) {
        if (commas.length === 0) {
          // `{x}`: not an alternation; keep it literal and look further.
          const rest = expandBraces(glob.slice(i + 1));
          return rest.map((r) => `${glob.slice(0, i + 1)}${r}`);
        }
        const head = glob.slice(0, open);
        const tail = glob.slice(i + 1);
        const bounds = [open, ...commas, i];
        const results: string[] = [];
        for (let k = 0; k + 1 < bounds.length; k++) {
          const alt = glob.slice(bounds[k]! + 1, bounds[k + 1]);
          for (const e of expandBraces(`${head}${alt}${tail}`)) {
            results.push(e);
            if (results.length > MAX_BRACE_EXPANSIONS) throw new PatternError(`too many {…} alternatives (more than ${MAX_BRACE_EXPANSIONS})`);
          }
        }
        return results;
      }
    } else if (c === ',' && depth === 1) {
      commas.push(i);
    }
  }
  if (depth > 0) throw new PatternError('unclosed "{"');
  return [glob];
}

/** Index of the `]` closing the class that opens at `start`, or -1. A `]` first in the class is literal. */
function classEnd(glob: string, start: number): number {
  let i = start + 1;
  if (glob[i] === '!' || glob[i] === '^') i++;
  if (glob[i] === ']') i++;
  for (; i < glob.length; i++) {
    if (glob[i] === '\\') {
      i++;
      continue;
    }
    if (glob[i] === ']') return i;
  }
  return -1;
}

/** One segment (no `/`, no braces) as a regex source. */
function segmentSource(seg: string): string {
  let out = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === '\\') {
      const next = seg[i + 1];
      if (next === undefined) throw new PatternError('ends with a lone "\\"');
      out += escapeRegExp(next);
      i++;
    } else if (c === '*') {
      while (seg[i + 1] === '*') i++;
      out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const end = classEnd(seg, i);
      if (end < 0) throw new PatternError('unclosed "["');
      let body = seg.slice(i + 1, end);
      let negated = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negated = true;
        body = body.slice(1);
      }
      const escaped = body.replace(/\\(.)/g, '$1').replace(/[\\\]^[]/g, '\\$&');
      out += negated ? `[^/${escaped}]` : `(?![/])[${escaped}]`;
      i = end;
    } else {
      out += escapeRegExp(c);
    }
  }
  return out;
}

function braceFreeSource(glob: string): string {
  const segs = glob.split('/');
  let out = '';
  let needSep = false;
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '**') {
      if (last) out += needSep ? '(?:/.*)?' : '.*';
      else out += needSep ? '/(?:[^/]+/)*' : '(?:[^/]+/)*';
      needSep = false;
      return;
    }
    out += (needSep ? '/' : '') + segmentSource(seg);
    needSep = true;
  });
  return out;
}

/** Checks a path glob and strips what does not change its meaning (`./`, trailing `/`). Throws PatternError. */
function cleanGlob(glob: string): string {
  if (glob.trim() === '') throw new PatternError('empty glob');
  let g = glob;
  if (g.startsWith('/')) throw new PatternError('globs are relative to the worktree root: no leading "/"');
  while (g.startsWith('./')) g = g.slice(2);
  g = g.replace(/\/{2,}/g, '/').replace(/\/+$/, '');
  if (g === '' || g === '.') throw new PatternError('empty glob');
  if (g.split('/').some((s) => s === '..' || s === '.')) throw new PatternError('"." and ".." segments are not allowed in a glob');
  return g;
}

const globCache = new Map<string, RegExp>();

/** A path glob compiled to an anchored RegExp (cached). Throws PatternError for a malformed glob. */
export function compileGlob(glob: string): RegExp {
  const cached = globCache.get(glob);
  if (cached) return cached;
  const alternatives = expandBraces(cleanGlob(glob)).map((g) => braceFreeSource(cleanGlob(g)));
  const re = new RegExp(`^(?:${alternatives.join('|')})$`);
  if (globCache.size > 5000) globCache.clear();
  globCache.set(glob, re);
  return re;
}

/** Whether a path (normalised first, see normalizePath) matches a path glob. */
export function matchGlob(glob: string, path: string): boolean {
  return compileGlob(glob).test(normalizePath(path));
}

/** The problem with a path glob, or null when it is fine. */
export function globProblem(glob: string): string | null {
  try {
    compileGlob(glob);
    return null;
  } catch (err) {
    return err instanceof PatternError ? err.message : String(err);
  }
}

// ---- command patterns ----

export const REGEX_PREFIX = 're:';

const commandCache = new Map<string, RegExp>();

/**
 * A command pattern compiled to a RegExp (cached): `re:<regex>` searched anywhere, else a `*`-glob anchored at both
 * ends. Throws PatternError for an empty pattern or an invalid regex.
 */
export function compileCommandPattern(pattern: string): RegExp {
  const cached = commandCache.get(pattern);
  if (cached) return cached;
  let re: RegExp;
  if (pattern.startsWith(REGEX_PREFIX)) {
    const source = pattern.slice(REGEX_PREFIX.length);
    if (source === '') throw new PatternError('empty regular expression after "re:"');
    try {
      re = new RegExp(source);
    } catch (err) {
      throw new PatternError(`not a valid regular expression: ${err instanceof Error ? err.message : String(err)}`);
    }
  } else {
    if (pattern.trim() === '') throw new PatternError('empty command pattern');
    let source = '';
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i]!;
      if (c === '\\' && pattern[i + 1] === '*') {
        source += '\\*';
        i++;
      } else if (c === '*') {
        source += '.*';
      } else {
        source += escapeRegExp(c);
      }
    }
    re = new RegExp(`^${source}$`, 's');
  }
  if (commandCache.size > 5000) commandCache.clear();
  commandCache.set(pattern, re);
  return re;
}

/** Whether a command line (argv joined by single spaces) matches a command pattern. */
export function matchCommand(pattern: string, line: string): boolean {
  return compileCommandPattern(pattern).test(line);
}

/** The problem with a command pattern, or null when it is fine. */
export function commandPatternProblem(pattern: string): string | null {
  try {
    compileCommandPattern(pattern);
    return null;
  } catch (err) {
    return err instanceof PatternError ? err.message : String(err);
  }
}
