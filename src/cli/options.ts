// What every command's flags share: the number parsers that turn a bad value
// into a usage error (exit 2, ./errors.ts), the simulator flag table turned
// into commander options, and the one way a command prints its --json object.

import { InvalidArgumentError, Option } from 'commander';
import { type FlagValue, flagName, type SimFamily, type SimFlag, simFlags } from '../sim/sim-flags.ts';

export function int(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError(`${name} must be an integer, got "${value}"`);
    const n = Number(value);
    if (n < min || n > max)
      throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

export function num(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n))
      throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
    if (n < min || n > max)
      throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

export function rates(value: string): number[] {
  const parse = num('each fail rate', 0, 1);
  return value.split(',').map((v) => parse(v.trim()));
}

/** For flags given more than once (`--db A --db B`). */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

export function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function parserFor(name: string, value: FlagValue): ((v: string) => unknown) | undefined {
  switch (value.kind) {
    case 'int':
      return int(name, value.min, value.max);
    case 'num':
      return num(name, value.min, value.max);
    case 'rates':
      return rates;
    default:
      return undefined;
  }
}

/** The commander option for one row of the simulator flag table (../sim/sim-flags.ts). */
export function simOption(flag: SimFlag): Option {
  const option = new Option(flag.flag, flag.help);
  const parse = parserFor(flagName(flag), flag.value);
  if (parse !== undefined) option.argParser(parse);
  if (flag.value.kind === 'choice') option.choices(flag.value.choices);
  if (flag.default !== undefined) option.default(flag.default);
  if (flag.mandatory) option.makeOptionMandatory();
  return option;
}

/** The rows of the table that `family` does not take, for rejecting them by name. */
export function simFlagsNotFor(family: SimFamily): SimFlag[] {
  return simFlags.filter((f) => !f.appliesTo.includes(family));
}
