// `dtx relay`: the transactional outbox's relay as its own process. It
// publishes committed outbox rows to NATS JetStream until stopped.

import { type Command, Option } from 'commander';
import { int } from '../options.ts';
import type { RelayFlags } from '../relay.ts';

export function registerRelayCommand(program: Command): void {
  program
    .command('relay')
    .description('publish committed outbox rows to NATS JetStream, exactly once per stream (docs/outbox.md)')
    .requiredOption('--db <url>', 'the database holding the outbox: postgres://, mysql:// or sqlite:PATH')
    .requiredOption('--nats <url>', 'the NATS server, e.g. nats://127.0.0.1:4222')
    .option(
      '--stream <name>',
      'require every message to land in this stream; warn if its duplicate window is short',
    )
    .option('--table <name>', 'the outbox table (default dtx_outbox)')
    .option('--batch <n>', 'rows per round', int('--batch', 1, 10_000))
    .option('--lease-ms <ms>', 'how long a claim on a row lasts', int('--lease-ms', 100, 3_600_000))
    .option('--relay-id <id>', "this relay's name in the rows it claims (default: host and pid)")
    .addOption(
      new Option(
        '--crash-after-acks <n>',
        'crash tests: SIGKILL itself after the n-th ack, before marking the row sent',
      )
        .argParser(int('--crash-after-acks', 1))
        .hideHelp(),
    )
    .option('--init', 'create the outbox table (and a SQLite file) if missing')
    .action(async (flags: RelayFlags) => {
      const { runRelay } = await import('../relay.ts');
      await runRelay(flags);
    });
}
