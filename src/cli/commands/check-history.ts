// `dtx check-history`: check a transaction history for isolation anomalies
// (src/history). Exit 0 when none is found, 1 when some are, 2 when the
// history cannot be read or the flags are wrong.

import { type Command, Option } from 'commander';
import { checkTxns } from '../../history/check.ts';
import { formatCheckResult } from '../../history/format.ts';
import { parseHistory } from '../../history/parse.ts';
import { readHistory } from '../../history/read.ts';
import { pairTxns } from '../../history/txns.ts';
import { type Consistency, consistencies, type Model, models } from '../../history/types.ts';
import { writeJson } from '../options.ts';

interface CheckHistoryFlags {
  model: Model;
  consistency: Consistency;
  json?: boolean;
}

export function registerCheckHistoryCommand(program: Command): void {
  program
    .command('check-history')
    .description('check a transaction history (Jepsen JSON or JSONL) for isolation anomalies, as Elle does')
    .argument('<file>', 'the history: a JSON array of ops or one op per line; - reads stdin')
    .addOption(
      new Option('--model <model>', 'what the transactions do').choices(models).default('list-append'),
    )
    .addOption(
      new Option('--consistency <level>', 'the isolation level to check against')
        .choices(consistencies)
        .default('serializable'),
    )
    .option('--json', 'print one JSON object on stdout')
    .action((file: string, flags: CheckHistoryFlags) => {
      const { text, source } = readHistory(file);
      const txns = pairTxns(parseHistory(text, source, flags.model), source);
      const result = checkTxns(txns, source, { model: flags.model, consistency: flags.consistency });
      if (flags.json) writeJson(result);
      else process.stdout.write(formatCheckResult(result, source, txns.length));
      if (!result.valid) process.exitCode = 1;
    });
}
