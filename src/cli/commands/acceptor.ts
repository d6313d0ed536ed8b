// `dtx acceptor`: one Paxos Commit acceptor as its own process
// (src/runtime/paxos-commit/acceptor-server.ts). It runs until SIGTERM or
// SIGINT; SIGKILL loses nothing that was acknowledged (every reply leaves only
// once what it reports is fsync'd).

import type { Command } from 'commander';
import { syncsInFlightMax } from '../../runtime/log/group-commit.ts';
import { int } from '../options.ts';

interface AcceptorFlags {
  listen: string;
  data: string;
  cluster?: string;
  faster?: boolean;
  syncsInFlight?: number;
}

export function registerAcceptorCommand(program: Command): void {
  program
    .command('acceptor')
    .description('run a Paxos Commit acceptor (docs/protocols/paxos-commit.md, "Running it for real")')
    .requiredOption('--listen <host:port>', 'where to listen, e.g. 127.0.0.1:7001 (port 0 picks one)')
    .requiredOption('--data <dir>', 'its data directory (created when missing)')
    .option('--cluster <id>', 'the cluster id leaders must give (default dtx); fixed at creation')
    .option('--faster', 'Faster Paxos Commit: send phase 2b to the RMs too; fixed at creation')
    .option(
      '--syncs-in-flight <n>',
      'fdatasyncs of its log in flight at once, 1 to 16 (default 2; 1: each waits for the one before)',
      int('--syncs-in-flight', 1, syncsInFlightMax),
    )
    .action(async (flags: AcceptorFlags) => {
      const { AcceptorServer } = await import('../../runtime/paxos-commit/acceptor-server.ts');
      const server = await AcceptorServer.start({
        listen: flags.listen,
        dataDir: flags.data,
        ...(flags.cluster === undefined ? {} : { cluster: flags.cluster }),
        faster: flags.faster === true,
        ...(flags.syncsInFlight === undefined ? {} : { syncsInFlight: flags.syncsInFlight }),
      });
      process.stdout.write(
        `acceptor ${server.id} listening on ${server.url} (cluster ${server.meta.cluster}, data ${flags.data})\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      await server.close();
    });
}
