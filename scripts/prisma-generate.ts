/**
 * Runs the local `prisma generate` (npm postinstall and before tests). The Prisma 7 CLI insists on a schema-engine
 * binary it cannot download offline; generate does not use it, so PRISMA_SCHEMA_ENGINE_BINARY is pointed at any
 * existing file when unset. Skips when generated/prisma/client.ts is newer than prisma/schema.prisma (`--force` to
 * regenerate anyway).
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const schema = path.join(root, 'prisma', 'schema.prisma');
const generatedClient = path.join(root, 'generated', 'prisma', 'client.ts');
const prismaBin = path.join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'prisma.cmd' : 'prisma');

function mtime(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

const force = process.argv.includes('--force');
const clientTime = mtime(generatedClient);
const schemaTime = mtime(schema);

if (!force && clientTime !== undefined && schemaTime !== undefined && clientTime > schemaTime) {
  console.log('prisma client is up to date (generated/prisma/client.ts is newer than prisma/schema.prisma), skipping generate');
  process.exit(0);
}

if (!existsSync(prismaBin)) {
  if (clientTime !== undefined) {
    console.log(`prisma CLI not installed (${prismaBin}); keeping the existing generated client`);
    process.exit(0);
  }
  console.error(`prisma CLI not installed (${prismaBin}) and no generated client: install dev dependencies`);
  process.exit(1);
}

const env = { ...process.env };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY) env.PRISMA_SCHEMA_ENGINE_BINARY = process.execPath;

const child = spawn(prismaBin, ['generate'], {
  cwd: root,
  env,
  stdio: 'inherit',
  shell: process.platform === 'win32',
});
child.on('error', (err) => {
  console.error(`cannot run ${prismaBin}: ${err.message}`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  if (signal) {
    console.error(`prisma generate killed by ${signal}`);
    process.exit(1);
  }
  process.exit(code ?? 1);
});
