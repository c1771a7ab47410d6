import { describe, expect, it } from 'vitest';
import { isSecretKey, redactSecrets, redactString, REDACTED } from '../core/redact';

const R = REDACTED;

describe('redactString: credential formats', () => {
  it.each([
    ['Anthropic key', 'sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEf'],
    ['OpenAI key', 'sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34'],
    ['OpenAI legacy key', 'sk-AbCdEfGhIjKlMnOpQrSt1234567890AbCdEfGhIjKlMn'],
    ['AWS access key id', 'AKIAIOSFODNN7EXAMPLE'],
    ['AWS temporary key id', 'ASIAY34FZKBOKMUTVV7A'],
    ['GitHub classic token', 'ghp_16C7e42F292c6912E7710c838347Ae178B4a'],
    ['GitHub OAuth token', 'gho_16C7e42F292c6912E7710c838347Ae178B4a'],
    ['GitHub server token', 'ghs_16C7e42F292c6912E7710c838347Ae178B4a'],
    ['GitHub refresh token', 'ghr_16C7e42F292c6912E7710c838347Ae178B4a'],
    ['GitHub user token', 'ghu_16C7e42F292c6912E7710c838347Ae178B4a'],
    ['GitHub fine-grained token', 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH'],
    ['Slack bot token', 'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx'],
    ['Slack user token', 'xoxp-123456789012-123456789012-123456789012-abcdef0123456789abcdef0123456789'],
    ['Google API key', 'AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe'],
    ['JWT', 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c'],
  ])('%s', (_name, secret) => {
    expect(redactString(`before ${secret} after`)).toBe(`before ${R} after`);
    expect(redactString(`"${secret}"`)).toBe(`"${R}"`);
    expect(redactString(secret)).toBe(R);
  });

  it('PEM private key blocks, whole (and a block cut off before its END line)', () => {
    const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HecX\nabc=\n-----END RSA PRIVATE KEY-----';
    expect(redactString(`key:\n${pem}\ndone`)).toBe(`key:\n${R}\ndone`);
    expect(redactString('-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC')).toBe(R);
    expect(redactString('-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----')).toBe(R);
    // A public key or certificate is not a secret.
    const cert = '-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----';
    expect(redactString(cert)).toBe(cert);
  });

  it('Bearer and Basic credentials keep the scheme', () => {
    expect(redactString('Authorization: Bearer 0123456789abcdef0123456789abcdef')).toBe(`Authorization: Bearer ${R}`);
    expect(redactString('curl -H "authorization: bearer abc.def-123_ghi"')).toBe(`curl -H "authorization: bearer ${R}"`);
    expect(redactString('Authorization: Basic dXNlcjpwYXNzd29yZA==')).toBe(`Authorization: Basic ${R}`);
  });

  it('passwords inside URLs (the user stays)', () => {
    expect(redactString('DATABASE_URL is postgresql://app:s3cr3t-pw@db.internal:5432/troupe')).toBe(
      `DATABASE_URL is postgresql://app:${R}@db.internal:5432/troupe`,
    );
  });

  it('name = value / name: value assignments keep the name', () => {
    expect(redactString('DB_PASSWORD=hunter2')).toBe(`DB_PASSWORD=${R}`);
    expect(redactString('export GITHUB_TOKEN=abcdef')).toBe(`export GITHUB_TOKEN=${R}`);
    expect(redactString('aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY')).toBe(`aws_secret_access_key = ${R}`);
    expect(redactString('password: correcthorsebattery')).toBe(`password: ${R}`);
    expect(redactString('db:\n  user: app\n  password: letmein\n')).toBe(`db:\n  user: app\n  password: ${R}\n`);
    expect(redactString('{"api_key": "xyz123", "user": "bob"}')).toBe(`{"api_key": "${R}", "user": "bob"}`);
    expect(redactString("const apiKey = 'abcd1234';")).toBe(`const apiKey = '${R}';`);
    expect(redactString('https://example.com/cb?access_key=AbC123xyz&page=2')).toBe(`https://example.com/cb?access_key=${R}&page=2`);
    expect(redactString('the secret: p4ssw0rd! is in the vault')).toBe(`the secret: ${R} is in the vault`);
    expect(redactString('apikey=plainwords')).toBe(`apikey=${R}`);
  });

  it('every extra secret of 6+ characters, verbatim, wherever it appears', () => {
    const extra = ['Tr0ub4dor&3', 'project-gamma-key', 'short'];
    expect(redactString('use Tr0ub4dor&3 and project-gamma-key-2 please', extra)).toBe(`use ${R} and ${R}-2 please`);
    expect(redactString('short stays: too short to be matched safely', extra)).toBe('short stays: too short to be matched safely');
    // Characters that mean something in a regular expression are matched literally.
    expect(redactString('a.b*c+d?(x) then a-b-c', ['a.b*c+d?(x)'])).toBe(`${R} then a-b-c`);
  });
});

describe('redactString: ordinary text stays as it is', () => {
  it.each([
    ['prose', 'The quick brown fox jumps over the lazy dog. Your password: click the link below to reset it.'],
    ['prose about tokens', 'The model used 1200 input tokens and 350 output tokens; max_tokens=4096 was the limit.'],
    ['prose about auth', 'Bearer authentication sends a token in a header; Basic auth sends a user and a password.'],
    ['a commit sha', 'fixed in 3f786850e387550fdab836ed7e6dc881de23001b (see also 9fceb02)'],
    ['a UUID', 'session 123e4567-e89b-12d3-a456-426614174000 started'],
    ['a sha-256', 'sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['a URL without credentials', 'see https://example.com:8080/docs?page=2&token_type=bearer#top'],
    ['words starting with sk-', 'use sk-learn-compatible estimators and a risk-assessment-report-for-2024'],
    [
      'TypeScript',
      [
        'export function login(password: string, token?: string): Promise<Session> {',
        '  const apiKey = config.anthropic.apiKey;',
        '  const secret = await vault.read(name);',
        '  if (token == null || password === "") throw new Error("no credentials");',
        '  const headers = { authorization: `Bearer ${token}` };',
        '  return client.post({ apiKey: apiKey, password, headers });',
        '}',
        'interface Creds {',
        '  password: string;',
        '  token: Token;',
        '}',
        'const tokens = tokenize(text); let maxTokens = 8192;',
      ].join('\n'),
    ],
    ['Python', 'password = os.environ["DB_PASSWORD"]\ntoken = get_token()\nsecret_key = settings.SECRET_KEY\n'],
    ['shell', 'export API_KEY=$API_KEY\ncurl -H "Authorization: Bearer ${TOKEN}" https://api.example.com'],
    ['JSON without secrets', '{"inputTokens": 12, "outputTokens": 40, "stopReason": "end_turn"}'],
    ['a YAML type', 'token: string\npassword: null\n'],
  ])('%s', (_name, text) => {
    expect(redactString(text)).toBe(text);
  });
});

describe('redactSecrets', () => {
  it('deep-copies, redacting inside strings at any depth and leaving other values alone', () => {
    const input = {
      text: 'key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789',
      n: 42,
      ok: true,
      none: null,
      list: ['plain', 'AKIAIOSFODNN7EXAMPLE', { deep: ['ghp_16C7e42F292c6912E7710c838347Ae178B4a'] }],
    };
    const out = redactSecrets(input);
    expect(out).toEqual({ text: `key ${R}`, n: 42, ok: true, none: null, list: ['plain', R, { deep: [R] }] });
    expect(out).not.toBe(input);
    expect(input.list[1]).toBe('AKIAIOSFODNN7EXAMPLE'); // the input is not modified
  });

  it('replaces string values under secret-named keys, whatever they look like', () => {
    const out = redactSecrets({
      password: 'x',
      apiKey: 'abc',
      api_key: 'abc',
      Authorization: 'anything at all',
      headers: { 'x-api-key': 'k1', cookie: 'a=b' },
      GITHUB_TOKEN: 'whatever',
      clientSecret: 'cs',
      accessKey: 'ak',
      privateKey: 'pk',
      // counts and neighbours are not secrets
      maxTokens: 8192,
      usage: { inputTokens: 5, outputTokens: 7 },
      tokenizer: 'cl100k',
      idempotencyKey: 'c1:0',
      token: '',
    });
    expect(out).toEqual({
      password: R,
      apiKey: R,
      api_key: R,
      Authorization: R,
      headers: { 'x-api-key': R, cookie: R },
      GITHUB_TOKEN: R,
      clientSecret: R,
      accessKey: R,
      privateKey: R,
      maxTokens: 8192,
      usage: { inputTokens: 5, outputTokens: 7 },
      tokenizer: 'cl100k',
      idempotencyKey: 'c1:0',
      token: '',
    });
  });

  it('applies extra secrets everywhere, including object values and array items', () => {
    expect(redactSecrets({ a: ['my-deploy-key-77 in a list'], b: { c: 'my-deploy-key-77' } }, ['my-deploy-key-77'])).toEqual({
      a: [`${R} in a list`],
      b: { c: R },
    });
  });

  it('copies Dates as their JSON form and survives cycles', () => {
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    expect(redactSecrets({ at: new Date(0), cyclic })).toEqual({ at: '1970-01-01T00:00:00.000Z', cyclic: { name: 'loop', self: '[circular]' } });
    // The same object twice (not a cycle) is copied twice.
    const shared = { v: 1 };
    expect(redactSecrets([shared, shared])).toEqual([{ v: 1 }, { v: 1 }]);
  });

  it('leaves primitives and undefined as they are', () => {
    expect(redactSecrets(undefined)).toBeUndefined();
    expect(redactSecrets(null)).toBeNull();
    expect(redactSecrets(3)).toBe(3);
    expect(redactSecrets('hello')).toBe('hello');
  });
});

describe('isSecretKey', () => {
  it('knows secret names and leaves look-alikes', () => {
    for (const k of ['password', 'PASSWORD', 'db_password', 'secret', 'token', 'accessToken', 'apiKey', 'api-key', 'authorization', 'AWS_SECRET_ACCESS_KEY']) {
      expect(isSecretKey(k), k).toBe(true);
    }
    for (const k of ['maxTokens', 'inputTokens', 'tokenizer', 'key', 'idempotencyKey', 'author', 'secretary', 'passage']) {
      expect(isSecretKey(k), k).toBe(false);
    }
  });
});
