// A small network of test hosts made of Linux network namespaces, for the
// network-fault tests: each host is a namespace with one interface (`eth0`)
// on a private subnet; the hosts of a region hang off a bridge in that
// region's own namespace, and the two regions' bridges are joined by the "WAN
// link", where delay is added. Faults are made where a real network makes
// them: `iptables` DROP rules inside a host's namespace cut its links, and an
// `iptables` rule dropping a random share of its packets (the `statistic`
// match) makes loss. Nothing is added to the namespace the tests run in:
// every interface is created inside a test namespace (`ip -n NS link add ...
// peer ... netns OTHER`), so the host's own interfaces and routes are never
// touched.
//
// Delay: `tc netem` would be the tool, but kernels built without
// CONFIG_NET_SCH_NETEM (this project's test machine runs one) refuse it. The
// WAN link is therefore two TAP devices, one in each region's namespace,
// joined by fixtures/wan-link.py, which holds every frame for the one-way
// delay before passing it on. The link is the same with or without delay, so
// a measurement with delay 0 is the baseline for one with delay.
//
// Every namespace name starts with `netnsPrefix`; `sweep()` kills what runs in
// any left by a run that was killed and removes them, and `destroy()` does it
// for this run's. Needs root, `ip`, `iptables` and python3
// (`networkFaultsUnsupported()` says what is missing).

import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const wanLinkScript = fileURLToPath(new URL('./fixtures/wan-link.py', import.meta.url));

let python: string | undefined;
/** The python3 interpreter itself, not a version manager's shim (a shell script, slow to start). */
function pythonPath(): string {
  python ??= sh('python3', ['-c', 'import sys; print(sys.executable)']).trim();
  return python;
}

/** Namespaces made by these tests start with this (override with DTX_NETNS_PREFIX). */
export const netnsPrefix = process.env.DTX_NETNS_PREFIX ?? 'dtxnet-';
/** The private /24 the test hosts use; only ever configured inside test namespaces. */
export const subnet = '10.231.0';

export type Region = 'a' | 'b';

export interface HostSpec {
  name: string;
  region: Region;
  /** Last octet of the host's address in `subnet`. */
  octet: number;
}

export interface Host extends HostSpec {
  ns: string;
  ip: string;
}

function sh(cmd: string, args: string[]): string {
  // Generous: on a loaded machine even `ip` can wait seconds for a CPU.
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
}

function ok(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore', timeout: 120_000 }).status === 0;
}

/**
 * Why these tests cannot run here, or null when they can: not root, a tool
 * missing, or namespaces refused (a container without CAP_NET_ADMIN).
 */
export function networkFaultsUnsupported(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces and iptables need root (run as root)';
  for (const [tool, args] of [
    ['ip', ['-V']],
    ['iptables', ['--version']],
    ['python3', ['--version']],
  ] as const) {
    if (spawnSync(tool, [...args], { stdio: 'ignore', timeout: 120_000 }).error?.message.includes('ENOENT'))
      return `${tool} is not installed${tool === 'iptables' ? ' (apt-get install -y iptables)' : ''}`;
  }
  const probe = `${netnsPrefix}probe`;
  ok('ip', ['netns', 'del', probe]);
  if (!ok('ip', ['netns', 'add', probe])) return 'cannot create a network namespace (needs CAP_NET_ADMIN)';
  const iptablesWorks = ok('ip', ['netns', 'exec', probe, 'iptables', '-S']);
  const statisticWorks = ok('ip', [
    'netns',
    'exec',
    probe,
    'iptables',
    '-A',
    'OUTPUT',
    '-m',
    'statistic',
    '--mode',
    'random',
    '--probability',
    '0.05',
    '-j',
    'DROP',
  ]);
  ok('ip', ['netns', 'del', probe]);
  if (!iptablesWorks) return 'iptables does not work inside a network namespace here';
  if (!statisticWorks) return "iptables' statistic match is missing (CONFIG_NETFILTER_XT_MATCH_STATISTIC)";
  return null;
}

/**
 * Kills every process in the namespaces whose name starts with the prefix and
 * removes them: a killed run's leftovers, or this run's.
 */
export function sweep(): void {
  const names = sh('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(netnsPrefix));
  for (const n of names) {
    // A process keeps its namespace alive after the name is gone: kill them first.
    for (const pid of sh('ip', ['netns', 'pids', n]).split(/\s+/).filter(Boolean)) ok('kill', ['-9', pid]);
    // Deleting a namespace deletes the interfaces in it, and so their veth peers.
    ok('ip', ['netns', 'del', n]);
  }
  for (const end of ['a', 'b']) rmSync(wanSocket(end), { force: true });
}

function wanSocket(end: string): string {
  return `/tmp/${netnsPrefix}wan-${end}.sock`;
}

export class TestNet {
  readonly hosts = new Map<string, Host>();
  private readonly hubs: Record<Region, string> = { a: `${netnsPrefix}ra`, b: `${netnsPrefix}rb` };

  private constructor() {}

  /** Builds the two regions, their WAN link and one namespace per host. Sweeps leftovers first. */
  static async create(specs: readonly HostSpec[]): Promise<TestNet> {
    sweep();
    const net = new TestNet();
    try {
      for (const hub of Object.values(net.hubs)) {
        sh('ip', ['netns', 'add', hub]);
        sh('ip', ['-n', hub, 'link', 'set', 'lo', 'up']);
        sh('ip', ['-n', hub, 'link', 'add', 'br0', 'type', 'bridge']);
        sh('ip', ['-n', hub, 'link', 'set', 'br0', 'up']);
      }
      await net.startWanLink();
      for (const spec of specs) net.addHost(spec);
    } catch (error) {
      net.destroy();
      throw error;
    }
    return net;
  }

  private readonly wanLinks: ChildProcess[] = [];

  /** The WAN link: a wan-link.py process per region, each with its TAP device `wan` in that region's bridge. */
  private async startWanLink(): Promise<void> {
    for (const [end, other] of [
      ['a', 'b'],
      ['b', 'a'],
    ] as const) {
      const hub = this.hubs[end];
      const proc = spawn(
        'ip',
        ['netns', 'exec', hub, pythonPath(), wanLinkScript, 'wan', wanSocket(end), wanSocket(other)],
        {
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      );
      this.wanLinks.push(proc);
      let err = '';
      proc.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
      });
      await new Promise<void>((resolve, reject) => {
        proc.stdout!.once('data', () => resolve());
        proc.once('exit', (code) => reject(new Error(`wan-link.py exited ${code}: ${err}`)));
      });
      sh('ip', ['-n', hub, 'link', 'set', 'wan', 'master', 'br0']);
      sh('ip', ['-n', hub, 'link', 'set', 'wan', 'up']);
    }
  }

  private addHost(spec: HostSpec): void {
    if (!/^[a-z0-9]{1,10}$/.test(spec.name))
      throw new Error(`host name ${spec.name}: a-z and 0-9, at most 10`);
    const ns = `${netnsPrefix}${spec.name}`;
    const hub = this.hubs[spec.region];
    const ip = `${subnet}.${spec.octet}`;
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const side = `h-${spec.name}`;
    sh('ip', ['-n', hub, 'link', 'add', side, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    sh('ip', ['-n', hub, 'link', 'set', side, 'master', 'br0']);
    sh('ip', ['-n', hub, 'link', 'set', side, 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    this.hosts.set(spec.name, { ...spec, ns, ip });
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (h === undefined) throw new Error(`no test host ${name}`);
    return h;
  }

  /** The command line that runs `argv` on host `name`. */
  exec(name: string, argv: string[]): [string, string[]] {
    return ['ip', ['netns', 'exec', this.host(name).ns, ...argv]];
  }

  /** Drops every packet between host `name` and the hosts `peers`, both ways, inside `name`'s namespace. */
  cut(name: string, peers: readonly string[]): void {
    const ns = this.host(name).ns;
    for (const p of peers) {
      const ip = this.host(p).ip;
      sh('ip', ['netns', 'exec', ns, 'iptables', '-A', 'OUTPUT', '-d', ip, '-j', 'DROP']);
      sh('ip', ['netns', 'exec', ns, 'iptables', '-A', 'INPUT', '-s', ip, '-j', 'DROP']);
    }
  }

  /** Drops every packet to and from host `name` except on its loopback. */
  isolate(name: string): void {
    const ns = this.host(name).ns;
    for (const chain of ['INPUT', 'OUTPUT']) {
      const dev = chain === 'INPUT' ? '-i' : '-o';
      sh('ip', ['netns', 'exec', ns, 'iptables', '-A', chain, dev, 'lo', '-j', 'ACCEPT']);
      sh('ip', ['netns', 'exec', ns, 'iptables', '-A', chain, '-j', 'DROP']);
    }
  }

  /** Removes the cuts and the loss of host `name` (all its iptables rules). */
  heal(name: string): void {
    sh('ip', ['netns', 'exec', this.host(name).ns, 'iptables', '-F']);
  }

  /** Delays every frame on the WAN link by `oneWayMs` in each direction (RTT between regions 2 × oneWayMs); 0 removes it. */
  wanDelay(oneWayMs: number): void {
    for (const link of this.wanLinks) link.stdin!.write(`${oneWayMs}\n`);
  }

  /** Drops `percent` of the packets host `name` sends and of those it receives, at random; 0 removes it. */
  loss(name: string, percent: number): void {
    const ns = this.host(name).ns;
    for (const chain of ['lossin', 'lossout']) {
      const hook = chain === 'lossin' ? 'INPUT' : 'OUTPUT';
      ok('ip', ['netns', 'exec', ns, 'iptables', '-N', chain]);
      sh('ip', ['netns', 'exec', ns, 'iptables', '-F', chain]);
      ok('ip', ['netns', 'exec', ns, 'iptables', '-D', hook, '-j', chain]);
      sh('ip', ['netns', 'exec', ns, 'iptables', '-I', hook, '-j', chain]);
      if (percent > 0)
        sh('ip', [
          'netns',
          'exec',
          ns,
          'iptables',
          '-A',
          chain,
          '-m',
          'statistic',
          '--mode',
          'random',
          '--probability',
          String(percent / 100),
          '-j',
          'DROP',
        ]);
    }
  }

  /**
   * Round-trip time from host `from` to `port` on host `to`, in ms: the
   * average time of `count` TCP connects (a SYN and its SYN-ACK), measured by
   * a node process on `from` (no ping needed).
   */
  connectRttMs(from: string, to: string, port: number, count = 5): number {
    const script = `
      const net = require('node:net');
      const times = [];
      const once = () => new Promise((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        const s = net.connect(${port}, '${this.host(to).ip}', () => {
          times.push(Number(process.hrtime.bigint() - t0) / 1e6);
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      });
      (async () => {
        for (let i = 0; i < ${count}; i++) await once();
        process.stdout.write(String(times.reduce((a, b) => a + b, 0) / times.length));
      })().catch((e) => { console.error(e.message); process.exit(1); });`;
    return Number(sh('ip', ['netns', 'exec', this.host(from).ns, process.execPath, '-e', script]));
  }

  /** Kills what runs in this net's namespaces and removes them (and with them, their interfaces). Idempotent. */
  destroy(): void {
    for (const link of this.wanLinks) link.kill('SIGKILL');
    this.wanLinks.length = 0;
    sweep();
    this.hosts.clear();
  }
}
