/** CI step: make sure a Temporal CLI binary is available (building it with `go install` if need be) and say where from. */
import { resolveTemporalCli, TEMPORAL_CLI_VERSION } from '../lib/temporal-cli';

const log = (msg: string): void => {
  process.stderr.write(`${msg}\n`);
};

try {
  const cli = await resolveTemporalCli({ log, allowBuild: true });
  if (cli.path === null) {
    log(
      `no Temporal CLI binary and no \`go\` on PATH: tests will let @temporalio/testing download one (needs internet). ` +
        `Set TEMPORAL_CLI_PATH or install Go to build ${TEMPORAL_CLI_VERSION}.`,
    );
  } else {
    log(`Temporal CLI: ${cli.path} (source: ${cli.source})`);
  }
} catch (err) {
  log(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
