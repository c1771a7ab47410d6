/**
 * Secret redaction for anything that is stored or shown (trace payloads, logs). Pure: no Node APIs, so workflow code
 * may import it. Heuristic by design: it recognises well-known credential formats and `name = value` assignments whose
 * name says "secret", and leaves ordinary prose, code, commit shas and UUIDs alone.
 */

export const REDACTED = '[redacted]';

/** Extra secrets shorter than this are ignored: replacing short strings verbatim would mangle ordinary text. */
export const MIN_EXTRA_SECRET_LENGTH = 6;

const MAX_DEPTH = 64;

/** Credential formats that are recognisable on their own, wherever they appear. The whole match is replaced. */
const TOKEN_PATTERNS: readonly RegExp[] = [
  // Anthropic (sk-ant-...) and OpenAI (sk-..., sk-proj-...) keys; a digit is required so words like "sk-learn" stay.
  /\bsk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}/g,
  // AWS access key ids.
  /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g,
  // GitHub tokens: classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained (github_pat_).
  /\bgh[pousr]_[A-Za-z0-9]{20,}\b/g,
  /\bgithub_pat_[A-Za-z0-9_]{20,}/g,
  // Slack tokens.
  /\bxox[abprs]-[A-Za-z0-9-]{10,}/g,
  // Google API keys.
  /\bAIza[0-9A-Za-z_-]{35}/g,
  // JWTs: base64url header and payload that both start with `{"`, and an optional signature.
  /\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g,
];

/** PEM private keys, including one cut off before its END line. */
const PEM_PRIVATE_KEY = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|$)/g;

/**
 * `Bearer <token>` / `Basic <token>`: the scheme stays, the token goes. A token must contain a digit or be long, so
 * prose such as "Bearer authentication" is left alone.
 */
const AUTH_SCHEME = /\b(Bearer|Basic)(\s+)((?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{8,}=*|[A-Za-z0-9._~+/-]{24,}=*)/gi;

/** Credentials inside a URL: `scheme://user:password@host` keeps the user, loses the password. */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)([^\s@/]+)(@)/gi;

/**
 * `<name> = value` / `<name>: value` where the name ends in password, passwd, passphrase, secret, token, api_key/apikey,
 * access_key, secret_key or private_key (DB_PASSWORD=..., "apiKey": "...", github_token: ...; not max_tokens=...).
 * `==`, `=>`, `::` are code, not assignments. Groups: 1 the name with its quotes and the separator, 2 and 4 the spaces
 * around the separator 3, 5 the value's opening quote, 6 a quoted value, 7 an unquoted one.
 */
const ASSIGNMENT =
  /((?:^|(?<=[^A-Za-z0-9_]))["']?[A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key)["']?(\s*)([:=])(?![=>:])(\s*))(?:(["'`])([^"'`\n]*)\5|([^\s"'`,;&)}\]<>]+))/gim;

/** Unquoted values that are clearly not secrets: type names and literals (`password: string`, `token = null`). */
const NOT_SECRET_WORDS = new Set([
  'string', 'number', 'boolean', 'bigint', 'any', 'unknown', 'never', 'object', 'null', 'undefined', 'true', 'false',
  'none', 'nil', 'str', 'int', 'bool', 'optional', 'required', 'redacted', 'yes', 'no', 'on', 'off', 'env',
]);

function isSecretValue(value: string, separator: string, spaced: boolean, aloneOnLine: boolean): boolean {
  if (value.length === 0 || value === REDACTED || value.includes(REDACTED)) return false;
  if (NOT_SECRET_WORDS.has(value.toLowerCase())) return false;
  // Code, not a literal: calls, indexing, object literals, property paths (input.password, process.env.TOKEN).
  if (/[([{]/.test(value)) return false;
  if (/^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/.test(value)) return false;
  if (/^\$\{?[A-Za-z_]\w*\}?$/.test(value)) return false; // a shell/template variable reference
  const plainWord = /^[A-Za-z_$][A-Za-z_$]*$/.test(value);
  if (!plainWord) return true; // has digits or symbols: hunter2, s3cr3t, abc-123
  // A plain word: a secret in `NAME=word` (env files, query strings) and in a `name: word` line of its own (YAML,
  // headers); in prose or code (`token = nextToken`, `apiKey: apiKey,`, "your password: click here") it is a word.
  if (separator === '=') return !spaced;
  return aloneOnLine;
}

function redactAssignments(text: string): string {
  return text.replace(
    ASSIGNMENT,
    (match: string, head: string, before: string, sep: string, after: string, quote: string | undefined, quoted: string | undefined, bare: string | undefined, offset: number, whole: string) => {
      if (quote !== undefined && quoted !== undefined) {
        if (quoted.length === 0 || quoted === REDACTED || /^\$\{?[A-Za-z_]\w*\}?$/.test(quoted)) return match;
        return `${head}${quote}${REDACTED}${quote}`;
      }
      if (bare === undefined) return match;
      const aloneOnLine =
        /(?:^|\n)[ \t-]*$/.test(whole.slice(Math.max(0, offset - 200), offset)) &&
        /^[ \t]*(?:\r?\n|$)/.test(whole.slice(offset + match.length, offset + match.length + 200));
      if (!isSecretValue(bare, sep, before.length > 0 || after.length > 0, aloneOnLine)) return match;
      return `${head}${REDACTED}`;
    },
  );
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Compiled extra-secret matcher, cached per list (the trace store passes the same array on every call). */
let cachedExtras: readonly string[] | undefined;
let cachedExtraPattern: RegExp | null = null;
function extraPattern(extra: readonly string[] | undefined): RegExp | null {
  if (!extra || extra.length === 0) return null;
  if (extra === cachedExtras) return cachedExtraPattern;
  const usable = [...new Set(extra.filter((s) => typeof s === 'string' && s.length >= MIN_EXTRA_SECRET_LENGTH))].sort((a, b) => b.length - a.length);
  cachedExtras = extra;
  cachedExtraPattern = usable.length === 0 ? null : new RegExp(usable.map(escapeRegExp).join('|'), 'g');
  return cachedExtraPattern;
}

/** Redacts credentials inside one string (see redactSecrets). */
export function redactString(text: string, extraSecrets?: readonly string[]): string {
  if (text.length < 6) return text;
  let out = text;
  const extra = extraPattern(extraSecrets);
  if (extra) out = out.replace(extra, REDACTED);
  out = out.replace(PEM_PRIVATE_KEY, REDACTED);
  for (const p of TOKEN_PATTERNS) out = out.replace(p, REDACTED);
  out = out.replace(AUTH_SCHEME, (_m, scheme: string, space: string) => `${scheme}${space}${REDACTED}`);
  out = out.replace(URL_CREDENTIALS, (_m, head: string, _pw: string, at: string) => `${head}${REDACTED}${at}`);
  return redactAssignments(out);
}

/** Object keys whose string values are secrets whatever they look like (compared lower-case without `_` and `-`). */
const SECRET_KEYS = new Set([
  'password', 'passwd', 'pwd', 'passphrase', 'secret', 'token', 'apikey', 'authorization', 'proxyauthorization',
  'accesskey', 'accesskeyid', 'secretkey', 'privatekey', 'clientsecret', 'accesstoken', 'refreshtoken', 'idtoken',
  'authtoken', 'sessiontoken', 'bearertoken', 'credentials', 'credential', 'cookie', 'setcookie', 'xapikey',
]);
const SECRET_KEY_SUFFIX = /(?:password|passwd|passphrase|secret|token|apikey|accesskey|secretkey|privatekey)$/;

/** Whether an object key names a secret (`password`, `apiKey`, `GITHUB_TOKEN`, `x-api-key`; not `maxTokens`). */
export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[_-]/g, '');
  return SECRET_KEYS.has(k) || SECRET_KEY_SUFFIX.test(k);
}

/**
 * Deep-copies a JSON-like value, replacing credentials inside strings with `[redacted]`: API keys (Anthropic, OpenAI,
 * Google), AWS access key ids, GitHub and Slack tokens, JWTs, PEM private keys, `Bearer <token>`, passwords in URLs,
 * `password=`/`token:`/`api_key=`... assignments (the name stays), and every string of `extraSecrets` of at least
 * 6 characters, verbatim. String values under secret-named keys (`password`, `apiKey`, `authorization`...) are replaced
 * whole. Objects with `toJSON` (Dates) are copied as their JSON form; cycles become `[circular]`.
 */
export function redactSecrets(value: unknown, extraSecrets?: readonly string[]): unknown {
  const seen = new Set<object>();
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') return redactString(v, extraSecrets);
    if (typeof v !== 'object' || v === null) return v;
    if (depth > MAX_DEPTH) return '[too deep]';
    if (seen.has(v)) return '[circular]';
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return walk((toJSON as () => unknown).call(v), depth + 1);
    seen.add(v);
    try {
      if (Array.isArray(v)) return v.map((item) => walk(item, depth + 1));
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) {
        out[k] = isSecretKey(k) && typeof item === 'string' && item.length > 0 ? REDACTED : walk(item, depth + 1);
      }
      return out;
    } finally {
      seen.delete(v);
    }
  };
  return walk(value, 0);
}
