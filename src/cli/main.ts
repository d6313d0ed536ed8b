// The `dtx` command. Its flags and JSON shapes are a contract other tools rely
// on: with --json, stdout carries exactly one JSON object and everything else
// (progress, logs) goes to stderr. Exit codes: 0 the run completed (for swarm:
// and found nothing), 1 a check or the run failed, 2 the command line was wrong.
// A failure prints `error: CODE: message` (and `fix: ...` when there is one)
// on stderr, never a stack unless --verbose or DEBUG=dtx (./errors.ts).

import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { registerAcceptorCommand } from './commands/acceptor.ts';
import { registerBenchCommand } from './commands/bench.ts';
import { registerCheckHistoryCommand } from './commands/check-history.ts';
import { registerCompareCommand } from './commands/compare.ts';
import { registerDemoCommand } from './commands/demo.ts';
import { registerRecoverCommand } from './commands/recover.ts';
import { registerRelayCommand } from './commands/relay.ts';
import { registerServeCommand } from './commands/serve.ts';
import { registerSimCommand } from './commands/sim.ts';
import { registerSwarmCommand } from './commands/swarm.ts';
import { registerTxnCommand } from './commands/txn.ts';
import { registerVerifyCommand } from './commands/verify.ts';
import {
  debugEnabled,
  describeFailure,
  formatFailure,
  formatStack,
  redactStream,
  secretsIn,
} from './errors.ts';

// Each command lives in ./commands/<name>.ts and registers itself; the ones
// on real databases load their modules when they run, so that `dtx --help`
// and the simulator do not pay for the database drivers and adapters.
export function buildProgram(): Command {
  const program = new Command('dtx')
    .description('distributed transactions for TypeScript: protocols, a deterministic simulator, and tools')
    .version('0.1.0')
    .option('--verbose', 'print the stack trace with an error (also DEBUG=dtx)')
    .exitOverride()
    // Parse errors are printed by main(), in the same shape as every other failure.
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: () => undefined });

  registerSimCommand(program);
  registerSwarmCommand(program);
  registerDemoCommand(program);
  registerCompareCommand(program);
  registerBenchCommand(program);
  registerVerifyCommand(program);
  registerRecoverCommand(program);
  registerTxnCommand(program);
  registerCheckHistoryCommand(program);
  registerRelayCommand(program);
  registerServeCommand(program);
  registerAcceptorCommand(program);
  return program;
}

/** True when the command line or DEBUG asks for stack traces with errors. */
function verboseErrors(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--verbose') || debugEnabled();
}

/**
 * Runs the command in `argv` and returns its exit status. Every failure ends
 * here, whatever threw it and wherever (a flag check, an action, a driver, a
 * stray rejection): one `error: CODE: message` line on stderr, a `fix:` line
 * when there is one, the stack only with --verbose or DEBUG=dtx, and status 2
 * for a usage error, 1 otherwise (./errors.ts).
 */
export async function main(argv: string[]): Promise<number> {
  const secrets = secretsIn(argv);
  redactStream(process.stdout, secrets);
  redactStream(process.stderr, secrets);
  const verbose = verboseErrors(argv);
  const report = (err: unknown): number => {
    const failure = describeFailure(err, secrets);
    process.stderr.write(formatFailure(failure));
    if (verbose) process.stderr.write(formatStack(err, secrets));
    return failure.exitCode;
  };
  // A rejection nobody awaited (a pool's background error, a timer's callback)
  // would otherwise print Node's own multi-line dump with the stack.
  const onStray = (err: unknown) => {
    // A reader that went away (`dtx sim ... | head`) is not a failure to report.
    const closedPipe = (err as { code?: unknown; syscall?: unknown }).code === 'EPIPE';
    process.exitCode = closedPipe ? (process.exitCode ?? 0) : report(err);
    process.exit();
  };
  process.on('uncaughtException', onStray);
  process.on('unhandledRejection', onStray);
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
        return 0;
      // `dtx` alone: commander printed the help on stderr; say why it failed.
      if (err.code === 'commander.help') {
        return report(new InvalidArgumentError('give a command (see the list above)'));
      }
    }
    return report(err);
  }
}
