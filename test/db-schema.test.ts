import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MIGRATIONS_DIR, dropDatabase, ensureDatabase, migrate } from '../lib/db/migrate';

/**
 * Proves the database produced by prisma/migrations matches prisma/schema.prisma. `prisma migrate diff` cannot run
 * offline (it needs a schema-engine binary download), so the data model is read from schema.prisma with the Prisma
 * schema WASM module that the `prisma` CLI package ships (prisma/build/prisma_schema_build_bg.wasm, the same
 * `get_dmmf` the CLI's getDMMF uses) and compared with the catalog of a freshly migrated database.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCHEMA_PATH = path.join(ROOT, 'prisma', 'schema.prisma');
const SERVER_URL = process.env.TROUPE_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

// ---------------------------------------------------------------------------------------------------------------
// Reading the data model: a minimal wasm-bindgen host for prisma-schema-wasm's `get_dmmf`.

type DmmfField = {
  name: string;
  dbName?: string | null;
  kind: 'scalar' | 'object' | 'enum' | 'unsupported';
  isList: boolean;
  isRequired: boolean;
  isId: boolean;
  isUpdatedAt: boolean;
  hasDefaultValue: boolean;
  default?: unknown;
  type: string;
  nativeType?: [string, string[]] | null;
  relationFromFields?: string[];
  relationToFields?: string[];
  relationOnDelete?: string;
  relationOnUpdate?: string;
};
type DmmfModel = { name: string; dbName: string | null; fields: DmmfField[] };
type DmmfIndex = {
  model: string;
  type: 'id' | 'unique' | 'normal' | 'fulltext';
  dbName?: string | null;
  fields: { name: string; sortOrder?: 'asc' | 'desc' }[];
};
type Datamodel = { models: DmmfModel[]; enums: unknown[]; indexes: DmmfIndex[] };

/** The few WebAssembly JS API members used here (the project's lib settings carry no WebAssembly value types). */
type WasmMemory = { buffer: ArrayBuffer };
type WasmTable = { grow(delta: number): number; get(i: number): unknown; set(i: number, v: unknown): void };
type WasmApi = {
  compile(bytes: Uint8Array): Promise<object>;
  instantiate(module: object, imports: Record<string, Record<string, unknown>>): Promise<{ exports: unknown }>;
  Module: { imports(module: object): { module: string; name: string; kind: string }[] };
};
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

async function getDatamodel(schemaText: string): Promise<Datamodel> {
  const require = createRequire(import.meta.url);
  const prismaPkg = require.resolve('prisma/package.json');
  const bytes = await readFile(path.join(path.dirname(prismaPkg), 'build', 'prisma_schema_build_bg.wasm'));
  const module = await Wasm.compile(bytes);

  type Exports = {
    memory: WasmMemory;
    __wbindgen_externrefs: WasmTable;
    __wbindgen_malloc(size: number, align: number): number;
    __wbindgen_free(ptr: number, size: number, align: number): void;
    __externref_table_dealloc(idx: number): void;
    __wbindgen_start(): void;
    get_dmmf(ptr: number, len: number): [number, number, number, number];
  };
  // eslint-disable-next-line prefer-const -- assigned once the module is instantiated; the import functions above it close over it
  let ex: Exports | undefined;
  let panicMessage = '';
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const text = (ptr: number, len: number) => decoder.decode(new Uint8Array(ex!.memory.buffer, ptr, len));
  // wasm-bindgen imports are named `__wbg_<name>_<hash>`; match by name so a patch release's new hashes still work.
  const host: Record<string, (...args: number[]) => unknown> = {};
  for (const imp of Wasm.Module.imports(module)) {
    const n = imp.name;
    if (n.startsWith('__wbg_set_message_')) host[n] = (p, l) => void (panicMessage = text(p!, l!));
    else if (n.startsWith('__wbg_Error_')) host[n] = (p, l) => new Error(text(p!, l!));
    else if (n.startsWith('__wbg___wbindgen_throw_')) host[n] = (p, l) => { throw new Error(text(p!, l!)); };
    else if (n === '__wbindgen_init_externref_table') {
      host[n] = () => {
        const t = ex!.__wbindgen_externrefs;
        const offset = t.grow(4);
        t.set(0, undefined);
        t.set(offset + 0, undefined);
        t.set(offset + 1, null);
        t.set(offset + 2, true);
        t.set(offset + 3, false);
      };
    } else throw new Error(`prisma_schema_build_bg.wasm needs an unknown import ${imp.module}.${n}; update getDatamodel`);
  }
  const instance = await Wasm.instantiate(module, { __wbindgen_placeholder__: host });
  ex = instance.exports as unknown as Exports;
  ex.__wbindgen_start();

  const input = new TextEncoder().encode(JSON.stringify({ prismaSchema: schemaText, noColor: true }));
  const ptr = ex.__wbindgen_malloc(input.length, 1);
  new Uint8Array(ex.memory.buffer, ptr, input.length).set(input);
  let result: [number, number, number, number];
  try {
    result = ex.get_dmmf(ptr, input.length);
  } catch (err) {
    throw new Error(`prisma schema wasm panicked: ${panicMessage || (err as Error).message}`);
  }
  const [outPtr, outLen, errIdx, isErr] = result;
  if (isErr) {
    const err = ex.__wbindgen_externrefs.get(errIdx);
    ex.__externref_table_dealloc(errIdx);
    throw err instanceof Error ? err : new Error(String(err));
  }
  const json = text(outPtr, outLen);
  ex.__wbindgen_free(outPtr, outLen, 1);
  return (JSON.parse(json) as { datamodel: Datamodel }).datamodel;
}

// ---------------------------------------------------------------------------------------------------------------
// The expected shape (from the data model) and the actual shape (from the catalog), in one comparable form.

type ColumnShape = { type: string; nullable: boolean; hasDefault: boolean; default?: string };
type DbShape = {
  tables: Record<string, Record<string, ColumnShape>>;
  primaryKeys: Record<string, string>; // "<table>" -> "<name>(<cols>)"
  uniqueIndexes: string[]; // "<table>.<name>(<cols>)"
  indexes: string[]; // "<table>.<name>(<col> [DESC], ...)"
  foreignKeys: string[]; // "<table>.<name>(<cols>) -> <table>(<cols>) ON DELETE x ON UPDATE y"
};

const PG_MAX_IDENT = 63;
/** Prisma's default constraint/index names, truncated the way Prisma does to fit Postgres identifiers. */
function prismaName(table: string, columns: string[], suffix: string): string {
  const base = [table, ...columns].join('_');
  const full = `${base}_${suffix}`;
  return full.length <= PG_MAX_IDENT ? full : `${base.slice(0, PG_MAX_IDENT - suffix.length - 1)}_${suffix}`;
}

const SCALAR_TYPES: Record<string, { udt: string; precision?: number }> = {
  String: { udt: 'text' },
  Int: { udt: 'int4' },
  BigInt: { udt: 'int8' },
  Float: { udt: 'float8' },
  Decimal: { udt: 'numeric' },
  Boolean: { udt: 'bool' },
  DateTime: { udt: 'timestamp', precision: 3 },
  Json: { udt: 'jsonb' },
  Bytes: { udt: 'bytea' },
};
const NATIVE_TYPES: Record<string, (args: string[]) => { udt: string; precision?: number }> = {
  Text: () => ({ udt: 'text' }),
  VarChar: () => ({ udt: 'varchar' }),
  Uuid: () => ({ udt: 'uuid' }),
  Integer: () => ({ udt: 'int4' }),
  SmallInt: () => ({ udt: 'int2' }),
  BigInt: () => ({ udt: 'int8' }),
  DoublePrecision: () => ({ udt: 'float8' }),
  Real: () => ({ udt: 'float4' }),
  Boolean: () => ({ udt: 'bool' }),
  Json: () => ({ udt: 'json' }),
  JsonB: () => ({ udt: 'jsonb' }),
  Date: () => ({ udt: 'date' }),
  Timestamptz: (a) => ({ udt: 'timestamptz', precision: a[0] === undefined ? 6 : Number(a[0]) }),
  Timestamp: (a) => ({ udt: 'timestamp', precision: a[0] === undefined ? 6 : Number(a[0]) }),
};

function columnType(f: DmmfField, enums: Set<string>): string {
  let t: { udt: string; precision?: number };
  if (f.kind === 'enum' || enums.has(f.type)) t = { udt: f.type };
  else if (f.nativeType) {
    const native = NATIVE_TYPES[f.nativeType[0]];
    if (!native) throw new Error(`db-schema test does not know native type @db.${f.nativeType[0]}; teach it`);
    t = native(f.nativeType[1]);
  } else {
    const scalar = SCALAR_TYPES[f.type];
    if (!scalar) throw new Error(`db-schema test does not know scalar type ${f.type}; teach it`);
    t = scalar;
  }
  const udt = f.isList ? `_${t.udt}` : t.udt;
  return t.precision === undefined ? udt : `${udt}(${t.precision})`;
}

/** The database default Prisma migrate would write, or undefined for "a default exists, value not checked". */
function expectedDefault(f: DmmfField): string | undefined {
  const d = f.default;
  if (d && typeof d === 'object' && 'name' in d) return (d as { name: string }).name === 'now' ? 'CURRENT_TIMESTAMP' : undefined;
  if (typeof d === 'number' || typeof d === 'boolean') return String(d);
  // `@default([])` on a scalar list: Prisma migrate writes `DEFAULT ARRAY[]::<type>[]`.
  if (Array.isArray(d) && d.length === 0 && f.isList && f.type === 'String') return 'ARRAY[]::text[]';
  if (typeof d === 'string') {
    if (f.type === 'Json') return `'${d}'::jsonb`;
    if (f.type === 'String') return `'${d}'::text`;
  }
  return undefined;
}

/** Defaults Prisma computes in the client; they leave no DEFAULT in the database. */
const CLIENT_SIDE_DEFAULTS = new Set(['uuid', 'cuid', 'nanoid', 'ulid']);

const ON_ACTION: Record<string, string> = {
  Cascade: 'CASCADE',
  Restrict: 'RESTRICT',
  NoAction: 'NO ACTION',
  SetNull: 'SET NULL',
  SetDefault: 'SET DEFAULT',
};

function expectedShape(dm: Datamodel): DbShape {
  const enums = new Set((dm.enums as { name: string }[]).map((e) => e.name));
  const shape: DbShape = { tables: {}, primaryKeys: {}, uniqueIndexes: [], indexes: [], foreignKeys: [] };
  const tableOf = new Map(dm.models.map((m) => [m.name, m.dbName ?? m.name]));
  const columnOf = (model: string, field: string) => {
    const f = dm.models.find((m) => m.name === model)?.fields.find((x) => x.name === field);
    if (!f) throw new Error(`unknown field ${model}.${field}`);
    return f.dbName ?? f.name;
  };

  for (const m of dm.models) {
    const table = tableOf.get(m.name)!;
    const columns: Record<string, ColumnShape> = {};
    for (const f of m.fields) {
      if (f.kind === 'object') {
        if (!f.relationFromFields?.length) continue;
        const cols = f.relationFromFields.map((x) => columnOf(m.name, x));
        const target = tableOf.get(f.type)!;
        const targetCols = (f.relationToFields ?? []).map((x) => columnOf(f.type, x));
        const onDelete = f.relationOnDelete ?? (f.isRequired ? 'Restrict' : 'SetNull');
        const onUpdate = f.relationOnUpdate ?? 'Cascade';
        shape.foreignKeys.push(
          `${table}.${prismaName(table, cols, 'fkey')}(${cols.join(',')}) -> ${target}(${targetCols.join(',')}) ` +
            `ON DELETE ${ON_ACTION[onDelete]} ON UPDATE ${ON_ACTION[onUpdate]}`,
        );
        continue;
      }
      const d = f.default;
      const clientSide = !!d && typeof d === 'object' && CLIENT_SIDE_DEFAULTS.has((d as { name: string }).name);
      const col: ColumnShape = {
        type: columnType(f, enums),
        // Prisma writes scalar lists as nullable arrays (`TEXT[]`), whatever the `?`.
        nullable: f.isList || !f.isRequired,
        hasDefault: f.hasDefaultValue && !clientSide,
      };
      const dv = col.hasDefault ? expectedDefault(f) : undefined;
      if (dv !== undefined) col.default = dv;
      columns[f.dbName ?? f.name] = col;
    }
    shape.tables[table] = columns;
  }

  for (const idx of dm.indexes) {
    const table = tableOf.get(idx.model)!;
    const cols = idx.fields.map((x) => columnOf(idx.model, x.name));
    if (idx.type === 'id') {
      shape.primaryKeys[table] = `${idx.dbName ?? `${table}_pkey`}(${cols.join(',')})`;
    } else if (idx.type === 'unique') {
      shape.uniqueIndexes.push(`${table}.${idx.dbName ?? prismaName(table, cols, 'key')}(${cols.join(',')})`);
    } else if (idx.type === 'normal') {
      const parts = idx.fields.map((x, i) => (x.sortOrder === 'desc' ? `${cols[i]} DESC` : cols[i]));
      shape.indexes.push(`${table}.${idx.dbName ?? prismaName(table, cols, 'idx')}(${parts.join(', ')})`);
    } else {
      throw new Error(`db-schema test does not handle ${idx.type} indexes; teach it`);
    }
  }
  shape.uniqueIndexes.sort();
  shape.indexes.sort();
  shape.foreignKeys.sort();
  return shape;
}

const IGNORED_TABLES = new Set(['_troupe_migrations']);
const FK_ACTION: Record<string, string> = { a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE', n: 'SET NULL', d: 'SET DEFAULT' };

async function actualShape(client: pg.Client): Promise<DbShape> {
  const shape: DbShape = { tables: {}, primaryKeys: {}, uniqueIndexes: [], indexes: [], foreignKeys: [] };

  const tables = await client.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
  );
  for (const t of tables.rows) if (!IGNORED_TABLES.has(t.table_name)) shape.tables[t.table_name] = {};

  const columns = await client.query<{
    table_name: string;
    column_name: string;
    udt_name: string;
    datetime_precision: number | null;
    is_nullable: 'YES' | 'NO';
    column_default: string | null;
  }>(
    `SELECT table_name, column_name, udt_name, datetime_precision, is_nullable, column_default
       FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`,
  );
  for (const c of columns.rows) {
    const table = shape.tables[c.table_name];
    if (!table) continue;
    // Array columns report no precision in information_schema; pg_attribute has it, but lists of timestamps are
    // rare enough that element precision is only checked for scalar columns.
    const isTime = c.udt_name === 'timestamp' || c.udt_name === 'timestamptz';
    const col: ColumnShape = {
      type: isTime ? `${c.udt_name}(${c.datetime_precision})` : c.udt_name,
      nullable: c.is_nullable === 'YES',
      hasDefault: c.column_default !== null,
    };
    if (c.column_default !== null) col.default = c.column_default;
    table[c.column_name] = col;
  }

  const constraints = await client.query<{
    table_name: string;
    conname: string;
    contype: 'p' | 'f' | 'u';
    cols: string[];
    ref_table: string | null;
    ref_cols: string[] | null;
    confdeltype: string;
    confupdtype: string;
  }>(
    `SELECT c.conrelid::regclass::text AS table_name, c.conname, c.contype,
            ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS cols,
            c.confrelid::regclass::text AS ref_table,
            ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                    JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS ref_cols,
            c.confdeltype, c.confupdtype
       FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
      WHERE n.nspname = 'public' AND c.contype IN ('p', 'f', 'u')`,
  );
  for (const c of constraints.rows) {
    if (IGNORED_TABLES.has(c.table_name)) continue;
    if (c.contype === 'p') shape.primaryKeys[c.table_name] = `${c.conname}(${c.cols.join(',')})`;
    else if (c.contype === 'u') shape.uniqueIndexes.push(`${c.table_name}.${c.conname}(${c.cols.join(',')}) [constraint]`);
    else
      shape.foreignKeys.push(
        `${c.table_name}.${c.conname}(${c.cols.join(',')}) -> ${c.ref_table}(${(c.ref_cols ?? []).join(',')}) ` +
          `ON DELETE ${FK_ACTION[c.confdeltype]} ON UPDATE ${FK_ACTION[c.confupdtype]}`,
      );
  }

  const indexes = await client.query<{ table_name: string; index_name: string; unique: boolean; cols: string[] }>(
    `SELECT t.relname AS table_name, i.relname AS index_name, x.indisunique AS unique,
            ARRAY(SELECT a.attname || CASE WHEN (x.indoption[k.i - 1] & 1) = 1 THEN ' DESC' ELSE '' END
                    FROM unnest(x.indkey) WITH ORDINALITY k(n, i)
                    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS cols
       FROM pg_index x
       JOIN pg_class i ON i.oid = x.indexrelid
       JOIN pg_class t ON t.oid = x.indrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = 'public' AND NOT x.indisprimary
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.contype = 'u')`,
  );
  for (const ix of indexes.rows) {
    if (IGNORED_TABLES.has(ix.table_name)) continue;
    if (ix.unique) shape.uniqueIndexes.push(`${ix.table_name}.${ix.index_name}(${ix.cols.join(',')})`);
    else shape.indexes.push(`${ix.table_name}.${ix.index_name}(${ix.cols.join(', ')})`);
  }
  shape.uniqueIndexes.sort();
  shape.indexes.sort();
  shape.foreignKeys.sort();
  return shape;
}

/** Human-readable differences between the data model and the database (empty when they match). */
function diffShapes(expected: DbShape, actual: DbShape): string[] {
  const out: string[] = [];
  for (const [table, cols] of Object.entries(expected.tables)) {
    const got = actual.tables[table];
    if (!got) {
      out.push(`table ${table} is in schema.prisma but not in the database`);
      continue;
    }
    for (const [name, want] of Object.entries(cols)) {
      const have = got[name];
      if (!have) {
        out.push(`column ${table}.${name} is in schema.prisma but not in the database`);
        continue;
      }
      if (have.type !== want.type) out.push(`column ${table}.${name}: type ${have.type}, schema.prisma says ${want.type}`);
      if (have.nullable !== want.nullable)
        out.push(`column ${table}.${name}: ${have.nullable ? 'nullable' : 'NOT NULL'}, schema.prisma says ${want.nullable ? 'nullable' : 'NOT NULL'}`);
      if (have.hasDefault !== want.hasDefault)
        out.push(`column ${table}.${name}: ${have.hasDefault ? `default ${have.default}` : 'no default'}, schema.prisma says ${want.hasDefault ? 'a default' : 'no default'}`);
      else if (want.default !== undefined && have.default !== want.default)
        out.push(`column ${table}.${name}: default ${have.default}, schema.prisma says ${want.default}`);
    }
    for (const name of Object.keys(got)) if (!(name in cols)) out.push(`column ${table}.${name} is in the database but not in schema.prisma`);
  }
  for (const table of Object.keys(actual.tables))
    if (!(table in expected.tables)) out.push(`table ${table} is in the database but not in schema.prisma`);

  const tables = new Set([...Object.keys(expected.primaryKeys), ...Object.keys(actual.primaryKeys)]);
  for (const t of tables)
    if (expected.primaryKeys[t] !== actual.primaryKeys[t])
      out.push(`primary key of ${t}: database ${actual.primaryKeys[t] ?? 'none'}, schema.prisma ${expected.primaryKeys[t] ?? 'none'}`);
  const compareList = (what: string, want: string[], have: string[]) => {
    for (const x of want) if (!have.includes(x)) out.push(`${what} ${x} is in schema.prisma but not in the database`);
    for (const x of have) if (!want.includes(x)) out.push(`${what} ${x} is in the database but not in schema.prisma`);
  };
  compareList('unique index', expected.uniqueIndexes, actual.uniqueIndexes);
  compareList('index', expected.indexes, actual.indexes);
  compareList('foreign key', expected.foreignKeys, actual.foreignKeys);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

function dbUrl(name: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

const dbName = `troupe_test_${randomBytes(6).toString('hex')}`;
const url = dbUrl(dbName);
let client: pg.Client;
let concurrentRuns: { applied: string[] }[] = [];
let migrationNames: string[] = [];
const tmpDirs: string[] = [];
const extraDbs: string[] = [];

beforeAll(async () => {
  // Two creators and three migrators at once, as when the API, the worker and a test start together.
  await Promise.all([ensureDatabase(url), ensureDatabase(url)]);
  concurrentRuns = await Promise.all([migrate(url), migrate(url), migrate(url)]);
  const { readdir } = await import('node:fs/promises');
  migrationNames = (await readdir(DEFAULT_MIGRATIONS_DIR, { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  client = new pg.Client({ connectionString: url });
  await client.connect();
}, 60_000);

afterAll(async () => {
  await client?.end();
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
  for (const name of [dbName, ...extraDbs]) await dropDatabase(dbUrl(name));
}, 60_000);

async function copyMigrations(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'troupe-migrations-'));
  tmpDirs.push(dir);
  await cp(DEFAULT_MIGRATIONS_DIR, dir, { recursive: true });
  return dir;
}

describe('migrations vs schema.prisma', () => {
  it('reads the data model from schema.prisma', async () => {
    const dm = await getDatamodel(await readFile(SCHEMA_PATH, 'utf8'));
    expect(dm.models.map((m) => m.name)).toContain('TraceEvent');
  });

  it('the migrated database matches schema.prisma (tables, columns, types, nullability, defaults, keys, indexes, FKs)', async () => {
    const expected = expectedShape(await getDatamodel(await readFile(SCHEMA_PATH, 'utf8')));
    const actual = await actualShape(client);
    expect(diffShapes(expected, actual)).toEqual([]);
    // Belt and braces: the comparable forms are equal too (catches anything diffShapes forgot to describe).
    expect(actual).toEqual(expected);
  });

  it('would catch a field added to schema.prisma without a migration', async () => {
    const schema = await readFile(SCHEMA_PATH, 'utf8');
    const edited = schema
      .replace(/(model TraceEvent \{\n)/, '$1  extraFlag Boolean @default(false) @map("extra_flag")\n')
      .replace(/(model Task \{\n)/, '$1  priority Int?\n  @@index([priority])\n');
    expect(edited).not.toBe(schema);
    const diff = diffShapes(expectedShape(await getDatamodel(edited)), await actualShape(client));
    expect(diff).toEqual(
      expect.arrayContaining([
        'column trace_events.extra_flag is in schema.prisma but not in the database',
        'column tasks.priority is in schema.prisma but not in the database',
        expect.stringMatching(/^index tasks\.tasks_priority_idx\(priority\) is in schema\.prisma/),
      ]),
    );
  });

  it('would catch a changed type, nullability or default', async () => {
    const schema = await readFile(SCHEMA_PATH, 'utf8');
    const edited = schema
      .replace(/(\n\s+goal\s+)String\n/, '$1String?\n')
      .replace('@default(0) @map("last_seq")', '@default(7) @map("last_seq")');
    expect(edited).not.toBe(schema);
    const diff = diffShapes(expectedShape(await getDatamodel(edited)), await actualShape(client));
    expect(diff).toEqual(
      expect.arrayContaining([
        'column sessions.goal: NOT NULL, schema.prisma says nullable',
        'column sessions.last_seq: default 0, schema.prisma says 7',
      ]),
    );
  });
});

describe('migrate()', () => {
  it('concurrent migrators apply each migration exactly once', () => {
    const all = concurrentRuns.flatMap((r) => r.applied).sort();
    expect(all).toEqual(migrationNames);
  });

  it('records every migration with its sha256 checksum', async () => {
    const { createHash } = await import('node:crypto');
    const rows = await client.query<{ name: string; checksum: string; applied_at: Date }>(
      'SELECT name, checksum, applied_at FROM _troupe_migrations ORDER BY name',
    );
    expect(rows.rows.map((r) => r.name)).toEqual(migrationNames);
    for (const r of rows.rows) {
      const sql = await readFile(path.join(DEFAULT_MIGRATIONS_DIR, r.name, 'migration.sql'), 'utf8');
      expect(r.checksum).toBe(createHash('sha256').update(sql).digest('hex'));
      expect(r.applied_at).toBeInstanceOf(Date);
    }
  });

  it('is idempotent: a second run applies nothing', async () => {
    const logs: string[] = [];
    expect(await migrate(url, { log: (m) => logs.push(m) })).toEqual({ applied: [] });
    expect(logs).toContain('database is up to date');
  });

  it('refuses when an applied migration was edited', async () => {
    const dir = await copyMigrations();
    const first = migrationNames[0]!;
    const file = path.join(dir, first, 'migration.sql');
    await writeFile(file, `${await readFile(file, 'utf8')}\n-- edited after it was applied\n`);
    await expect(migrate(url, { migrationsDir: dir })).rejects.toThrow(
      new RegExp(`migration ${first} was already applied but its migration.sql changed`),
    );
  });

  it('applies only new migrations, in name order, and rolls back a failing one', async () => {
    const name = `troupe_test_${randomBytes(6).toString('hex')}`;
    extraDbs.push(name);
    const otherUrl = dbUrl(name);
    await ensureDatabase(otherUrl);
    await ensureDatabase(otherUrl); // already there: no error
    const dir = await copyMigrations();
    expect((await migrate(otherUrl, { migrationsDir: dir })).applied).toEqual(migrationNames);

    await mkdir(path.join(dir, '99990101000001_second'));
    await writeFile(path.join(dir, '99990101000001_second', 'migration.sql'), 'CREATE TABLE "zz_second" ("id" INTEGER);\n');
    await mkdir(path.join(dir, '99990101000000_first'));
    await writeFile(path.join(dir, '99990101000000_first', 'migration.sql'), 'CREATE TABLE "zz_first" ("id" INTEGER);\n');
    expect((await migrate(otherUrl, { migrationsDir: dir })).applied).toEqual(['99990101000000_first', '99990101000001_second']);

    await mkdir(path.join(dir, '99990101000002_broken'));
    await writeFile(
      path.join(dir, '99990101000002_broken', 'migration.sql'),
      'CREATE TABLE "zz_broken" ("id" INTEGER);\nSELECT 1 / 0;\n',
    );
    await expect(migrate(otherUrl, { migrationsDir: dir })).rejects.toThrow(/migration 99990101000002_broken failed: division by zero/);

    const other = new pg.Client({ connectionString: otherUrl });
    await other.connect();
    try {
      const t = await other.query(`SELECT to_regclass('zz_broken') AS broken, to_regclass('zz_first') AS first`);
      expect(t.rows[0]).toEqual({ broken: null, first: 'zz_first' });
      const rec = await other.query(`SELECT name FROM _troupe_migrations WHERE name LIKE '9999%' ORDER BY name`);
      expect(rec.rows.map((r: { name: string }) => r.name)).toEqual(['99990101000000_first', '99990101000001_second']);
    } finally {
      await other.end();
    }
  }, 30_000);
});
