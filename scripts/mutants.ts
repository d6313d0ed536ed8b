// `npm run mutants [-- --jobs N] [--only id,id] [--quick]`: mutation testing
// of the checkers. Every mutant of ./mutant-catalogue.ts is applied to a
// fresh copy of the repository (src/, test/, bin/, testdata/ and the package
// files; node_modules is linked), and its detector runs in that copy: a
// `dtx swarm` from the TypeScript sources, or a test file. Each detector also
// runs once on an unmutated copy first, so that a detector that fails by
// itself cannot pass a mutant off as caught. Prints one row per mutant and
// exits 1 when any mutant is missed or could not be run.

import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { type Detector, type Mutant, mutants } from './mutant-catalogue.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** What a copy holds besides node_modules: everything a detector reads (scripts/pg-cluster.sh: the throwaway PostgreSQL clusters some tests start). */
const copiedDirs = ['src', 'test', 'bin', 'testdata', 'scripts'];
const copiedFiles = ['package.json', 'tsconfig.json'];
/** A detector that runs longer than this is stopped and its mutant reported as not run. */
const detectorTimeoutMs = 15 * 60_000;

export type Outcome = 'caught' | 'missed' | 'error';

export interface MutantResult {
  id: string;
  detector: string;
  outcome: Outcome;
  /** The swarm's first failing seed; null for a test file, or when nothing failed. */
  firstFailingSeed: number | null;
  /** The failing test, the assertion, or why the mutant could not be run. */
  detail: string;
  wallMs: number;
}

export function describeDetector(d: Detector): string {
  if (d.kind === 'test') return d.name === undefined ? d.file : `${d.file} (tests matching /${d.name}/)`;
  return [
    'dtx swarm --protocol',
    d.protocol,
    '--seeds',
    d.seeds,
    '--from',
    d.from ?? 1,
    ...(d.flags ?? []),
  ].join(' ');
}

/** How often `search` occurs in `text` (non-overlapping). */
function occurrences(text: string, search: string): number {
  if (search.length === 0) return 0;
  return text.split(search).length - 1;
}

/** Why `m` cannot be applied to the current sources, or null when its search text occurs exactly once. */
export function checkEdit(m: Mutant, sources = root): string | null {
  let text: string;
  try {
    text = readFileSync(join(sources, m.file), 'utf8');
  } catch {
    return `${m.file} does not exist`;
  }
  const n = occurrences(text, m.search);
  return n === 1 ? null : `the search text occurs ${n} times in ${m.file}, not once: update the catalogue`;
}

function makeCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dtx-mutant-'));
  for (const d of copiedDirs) cpSync(join(root, d), join(dir, d), { recursive: true });
  for (const f of copiedFiles) cpSync(join(root, f), join(dir, f));
  symlinkSync(realpathSync(join(root, 'node_modules')), join(dir, 'node_modules'), 'dir');
  return dir;
}

/** The mutated text of `m.file`. */
function mutatedText(m: Mutant, sources = root): string {
  return readFileSync(join(sources, m.file), 'utf8').replace(m.search, () => m.replace);
}

/**
 * Why the mutated file does not parse, or null. A mutant that breaks the
 * syntax would make every detector fail, and count as caught for nothing.
 */
export function syntaxProblem(m: Mutant, sources = root): string | null {
  const out = ts.transpileModule(mutatedText(m, sources), {
    fileName: m.file,
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  });
  const first = out.diagnostics?.[0];
  return first === undefined
    ? null
    : `the mutated ${m.file} does not parse: ${ts.flattenDiagnosticMessageText(first.messageText, ' ')}`;
}

function applyEdit(dir: string, m: Mutant): void {
  writeFileSync(join(dir, m.file), mutatedText(m));
}

/** A fresh copy of the repository with `m` applied, for tests that need a broken core by name; remove it after. */
export function mutatedCopy(m: Mutant): string {
  const dir = makeCopy();
  applyEdit(dir, m);
  return dir;
}

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function run(cwd: string, args: string[]): Promise<Exit> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { ...process.env, DTX_FROM_SOURCE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, detectorTimeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, timedOut });
    });
  });
}

type Verdict = Pick<MutantResult, 'outcome' | 'firstFailingSeed' | 'detail'>;

function firstLine(s: string): string {
  return (
    s
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? ''
  ).slice(0, 160);
}

/** Runs `d` in `dir`: `caught` when it reports a failure, `missed` when it passes. */
async function detect(dir: string, d: Detector): Promise<Verdict> {
  if (d.kind === 'swarm') {
    const args = ['bin/dtx.js', 'swarm', '--protocol', d.protocol, '--seeds', String(d.seeds)];
    args.push('--from', String(d.from ?? 1), ...(d.flags ?? []), '--json');
    const r = await run(dir, args);
    if (r.timedOut) return { outcome: 'error', firstFailingSeed: null, detail: 'timed out' };
    let summary: {
      failingSeed?: number | null;
      violations?: number;
      firstViolations?: Array<{ checker: string }>;
    } | null = null;
    try {
      summary = JSON.parse(r.stdout);
    } catch {
      summary = null;
    }
    if (summary !== null && r.code === 1 && typeof summary.failingSeed === 'number') {
      const checkers = [...new Set((summary.firstViolations ?? []).map((v) => v.checker))];
      // The saga swarm's JSON names no checker, only counts.
      const by =
        checkers.length > 0
          ? `checker ${checkers.join(', ')}`
          : (summary.violations ?? 0) > 0
            ? `${summary.violations} violation(s)`
            : 'unfinished after heal';
      return { outcome: 'caught', firstFailingSeed: summary.failingSeed, detail: by };
    }
    if (summary !== null && r.code === 0) return { outcome: 'missed', firstFailingSeed: null, detail: '' };
    // A core's own assertion stopping the run is a catch too: assertions stay on in production.
    const assertion = /AssertionError|assertion/i.test(r.stderr);
    return {
      outcome: assertion ? 'caught' : 'error',
      firstFailingSeed: null,
      detail: `${assertion ? 'assertion: ' : `exit ${r.code}: `}${firstLine(r.stderr)}`,
    };
  }
  const only = d.name === undefined ? [] : [`--test-name-pattern=${d.name}`];
  const r = await run(dir, ['--import', 'tsx', '--test', '--test-reporter=tap', ...only, d.file]);
  if (r.timedOut) return { outcome: 'error', firstFailingSeed: null, detail: 'timed out' };
  if (r.code === 0) return { outcome: 'missed', firstFailingSeed: null, detail: '' };
  const failed = /^\s*not ok \d+ - (.*)$/m.exec(r.stdout);
  return {
    outcome: 'caught',
    firstFailingSeed: null,
    detail: failed === null ? `exit ${r.code}: ${firstLine(r.stderr)}` : `test: ${failed[1]!.slice(0, 140)}`,
  };
}

/** Runs `work` over `items`, at most `jobs` at a time, keeping the order of `items` in the result. */
async function pooled<T, R>(items: readonly T[], jobs: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, lane));
  return out;
}

export interface MutantsOptions {
  only?: readonly string[];
  quick?: boolean;
  jobs?: number;
  /** Called as each mutant's result comes in (any order). */
  onResult?: (r: MutantResult) => void;
}

export function selectMutants(options: Pick<MutantsOptions, 'only' | 'quick'>): Mutant[] {
  const unknown = (options.only ?? []).filter((id) => !mutants.some((m) => m.id === id));
  if (unknown.length > 0) throw new RangeError(`unknown mutant id(s): ${unknown.join(', ')}`);
  return mutants.filter(
    (m) =>
      (options.only === undefined || options.only.includes(m.id)) && (!options.quick || m.quick === true),
  );
}

async function inCopy<R>(work: (dir: string) => Promise<R>): Promise<R> {
  const dir = makeCopy();
  try {
    return await work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runMutants(options: MutantsOptions = {}): Promise<MutantResult[]> {
  const jobs = options.jobs ?? 2;
  const selected = selectMutants(options);
  // Every distinct detector first runs on the unmutated sources: it must pass there.
  const detectors = [...new Map(selected.map((m) => [describeDetector(m.detector), m.detector])).entries()];
  const baseline = new Map(
    await pooled(
      detectors,
      jobs,
      async ([name, d]) => [name, await inCopy((dir) => detect(dir, d))] as const,
    ),
  );
  return pooled(selected, jobs, async (m) => {
    const started = performance.now();
    const detector = describeDetector(m.detector);
    const clean = baseline.get(detector)!;
    const editProblem = checkEdit(m) ?? syntaxProblem(m);
    let verdict: Verdict;
    if (editProblem !== null) verdict = { outcome: 'error', firstFailingSeed: null, detail: editProblem };
    else if (clean.outcome !== 'missed')
      verdict = {
        outcome: 'error',
        firstFailingSeed: null,
        detail: `the detector fails without the mutant too (${clean.detail})`,
      };
    else
      verdict = await inCopy(async (dir) => {
        applyEdit(dir, m);
        return detect(dir, m.detector);
      });
    const result: MutantResult = {
      id: m.id,
      detector,
      ...verdict,
      wallMs: Math.round(performance.now() - started),
    };
    options.onResult?.(result);
    return result;
  });
}

export function formatTable(results: readonly MutantResult[]): string {
  const rows = [
    ['mutant', 'outcome', 'first failing seed', 'detector', 'detail', 'wall s'],
    ...results.map((r) => [
      r.id,
      r.outcome,
      r.firstFailingSeed === null ? '-' : String(r.firstFailingSeed),
      r.detector,
      r.detail,
      (r.wallMs / 1000).toFixed(1),
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: string[]) =>
    row
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd();
  const caught = results.filter((r) => r.outcome === 'caught').length;
  return [
    line(rows[0]!),
    ...rows.slice(1).map(line),
    '',
    `${caught} of ${results.length} mutants caught, ${results.filter((r) => r.outcome === 'missed').length} missed, ` +
      `${results.filter((r) => r.outcome === 'error').length} not run`,
  ].join('\n');
}

function parseArgs(argv: string[]): MutantsOptions {
  const options: { only?: string[]; quick?: boolean; jobs?: number } = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new RangeError(`${arg} needs a value`);
      return v;
    };
    if (arg === '--quick') options.quick = true;
    else if (arg === '--only')
      options.only = value()
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    else if (arg === '--jobs') {
      const jobs = Number(value());
      if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64)
        throw new RangeError('--jobs must be an integer from 1 to 64');
      options.jobs = jobs;
    } else throw new RangeError(`unknown argument ${arg} (use --jobs N, --only id,id, --quick)`);
  }
  return options;
}

async function main(): Promise<number> {
  let options: MutantsOptions;
  try {
    options = parseArgs(process.argv.slice(2));
    selectMutants(options);
  } catch (err) {
    process.stderr.write(`mutants: ${(err as Error).message}\n`);
    return 2;
  }
  const started = performance.now();
  const results = await runMutants({
    ...options,
    onResult: (r) =>
      process.stderr.write(`${r.outcome.padEnd(6)} ${r.id} (${(r.wallMs / 1000).toFixed(1)} s)\n`),
  });
  process.stdout.write(`${formatTable(results)}\n`);
  process.stdout.write(
    `total ${((performance.now() - started) / 1000).toFixed(0)} s, ${options.jobs ?? 2} job(s)\n`,
  );
  for (const r of results) {
    const why = mutants.find((m) => m.id === r.id)?.expectMissBecause;
    if (r.outcome === 'missed' && why !== undefined)
      process.stdout.write(`note: ${r.id} is expected to be missed: ${why}\n`);
  }
  return results.every((r) => r.outcome === 'caught') ? 0 : 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then((code) => {
    process.exitCode = code;
  });
}
