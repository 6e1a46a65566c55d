// A real redis-server for the tests: its own port and directory, AOF on (appendfsync
// always, so a restart loses nothing), noeviction, as docker-compose.yml runs it.
import { spawn, ChildProcess } from 'node:child_process';
import net from 'node:net';
import { rmSync } from 'node:fs';
import { Redis } from 'ioredis';
import { tempDir } from './harness.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  url: string;
  port: number;
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** start it again after stop(), on the same port and data */
  start(): Promise<void>;
  /** stop it and delete its data */
  destroy(): Promise<void>;
  restart(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  const dir = tempDir('cachet-redis-');
  let proc: ChildProcess | null = null;
  const launch = async () => {
    proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 100; i++) {
      if (await canConnect(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not start on port ${port}`);
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill(signal);
    });
  };
  await launch();
  // restart = kill -9 and start again: with appendfsync always, AOF must lose nothing
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    start: launch,
    restart: async () => (await stop('SIGKILL'), await launch()),
    destroy: async () => (await stop(), rmSync(dir, { recursive: true, force: true })),
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.end(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

export interface TestRedisCluster {
  /** redis-cluster://… listing every master */
  url: string;
  ports: number[];
  /** freeze every node (SIGSTOP): Redis stops answering without closing a connection, as a hung server */
  pause(): void;
  resume(): void;
  /** stop every node and delete their data */
  destroy(): Promise<void>;
}

/**
 * A real Redis Cluster of `masters` nodes (no replicas), each with its own port, cluster-bus port and
 * directory: the 16,384 slots split evenly, the nodes introduced with CLUSTER MEET, ready once every
 * node says cluster_state:ok (what `redis-cli --cluster create` does, without needing redis-cli).
 */
export async function startRedisCluster(masters = 3): Promise<TestRedisCluster> {
  const nodes: { port: number; busPort: number; proc: ChildProcess; dir: string }[] = [];
  for (let i = 0; i < masters; i++) {
    const [port, busPort] = [await freePort(), await freePort()];
    const dir = tempDir('cachet-redis-cluster-');
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--cluster-port', String(busPort), '--bind', '127.0.0.1', '--dir', dir, '--cluster-enabled', 'yes'].concat([
        '--cluster-config-file',
        'nodes.conf',
        '--appendonly',
        'yes',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
      ]),
      { stdio: 'ignore' },
    );
    nodes.push({ port, busPort, proc, dir });
  }
  const destroy = async () => {
    for (const n of nodes) {
      if (n.proc.exitCode === null && n.proc.signalCode === null) await new Promise((r) => (n.proc.once('exit', r), n.proc.kill()));
      rmSync(n.dir, { recursive: true, force: true });
    }
  };
  try {
    for (const n of nodes) {
      for (let i = 0; i < 100 && !(await canConnect(n.port)); i++) await new Promise((r) => setTimeout(r, 50));
    }
    const clients = nodes.map((n) => new Redis({ port: n.port, host: '127.0.0.1', lazyConnect: false }));
    try {
      const per = Math.ceil(16384 / masters);
      for (let i = 0; i < masters; i++) {
        await clients[i].call('CLUSTER', 'ADDSLOTSRANGE', String(i * per), String(Math.min(16383, (i + 1) * per - 1)));
        if (i > 0) await clients[0].call('CLUSTER', 'MEET', '127.0.0.1', String(nodes[i].port), String(nodes[i].busPort));
      }
      for (let tries = 0; ; tries++) {
        const states = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>));
        if (states.every((s) => /cluster_state:ok/.test(s) && /cluster_known_nodes:(\d+)/.exec(s)?.[1] === String(masters))) break;
        if (tries > 300) throw new Error(`the Redis Cluster did not form: ${states.join(' | ')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      clients.forEach((c) => c.disconnect());
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  const ports = nodes.map((n) => n.port);
  return {
    url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    ports,
    pause: () => nodes.forEach((n) => n.proc.kill('SIGSTOP')),
    resume: () => nodes.forEach((n) => n.proc.kill('SIGCONT')),
    destroy: async () => {
      nodes.forEach((n) => n.proc.kill('SIGCONT')); // a stopped process does not handle SIGTERM
      await destroy();
    },
  };
}
