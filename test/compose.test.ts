// docker-compose.yml cannot run here (no Docker engine): check that it parses and
// describes the distributed set as the README promises.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { REPO } from './harness.js';

interface Service {
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  deploy?: { replicas?: number };
  container_name?: string;
  ports?: string[];
  healthcheck?: { test: string[] };
}

const compose = parse(readFileSync(path.join(REPO, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};

test('docker-compose.yml names redis, api and worker', () => {
  assert.deepEqual(Object.keys(compose.services).sort(), ['api', 'redis', 'worker']);
});

test('redis keeps an AOF, no RDB snapshots on top, and never evicts', () => {
  const args = compose.services.redis.command!;
  const cmd = args.join(' ');
  assert.match(cmd, /--appendonly yes/);
  assert.match(cmd, /--maxmemory-policy noeviction/);
  assert.equal(args[args.indexOf('--save') + 1], '', 'save "" turns RDB snapshots off');
});

test('two api replicas and a worker that scales: all on Redis and one shared volume', () => {
  const { api, worker } = compose.services;
  assert.equal(api.deploy?.replicas, 2);
  assert.match(api.entrypoint!.join(' '), /serve .*--data-dir \/data\/indexes\/\$\$\(hostname\)/);
  // peers fetch a replica's snapshots at its own address (a new replica starts from one)
  assert.match(api.entrypoint!.join(' '), /CACHET_ADVERTISE_URL=http:\/\/\$\$\(hostname -i[^)]*\):8080 exec node/);
  assert.deepEqual(worker.command?.slice(0, 1), ['worker']);
  assert.equal(worker.container_name, undefined, 'a fixed container name would stop --scale worker=N');
  assert.equal(worker.ports, undefined, 'a fixed host port would stop --scale worker=N');
  for (const s of [api, worker]) {
    assert.equal(s.environment?.REDIS_URL, 'redis://redis:6379');
    assert.ok(s.volumes?.includes('cachet-data:/data'));
  }
  assert.ok('cachet-data' in compose.volumes);
});

test('the api listens on 0.0.0.0, so compose refuses to start without API keys', () => {
  const { api, worker } = compose.services;
  assert.match(api.entrypoint!.join(' '), /serve .*--host 0\.0\.0\.0/);
  for (const s of [api, worker]) {
    // ${VAR:?message}: docker compose stops with the message when CACHET_API_KEYS is unset or empty
    assert.match(s.environment?.CACHET_API_KEYS ?? '', /^\$\{CACHET_API_KEYS:\?[^}]*role:key[^}]*\}$/);
  }
  assert.match(api.healthcheck!.test.join(' '), /\/healthz/, 'the health check needs no key');
});

test('the api reads models and images only under the shared volume’s models and images folders, made at start', () => {
  const { api } = compose.services;
  const roots = (api.environment?.CACHET_READ_ROOTS ?? '').split(':');
  assert.deepEqual(roots, ['/data/models', '/data/images']);
  const entry = api.entrypoint!.join(' ');
  for (const root of roots) assert.ok(entry.includes(root), `${root} is created before serve starts`);
  assert.ok(entry.indexOf('mkdir -p') < entry.indexOf('serve'));
});

test('docker-compose.cluster.yml: a 3-master Redis Cluster, api replicas in two shard groups, workers, all on the cluster', () => {
  const cluster = parse(readFileSync(path.join(REPO, 'docker-compose.cluster.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, Service & { depends_on?: Record<string, { condition: string }> }>;
  };
  const s = cluster.services;
  assert.deepEqual(Object.keys(s).sort(), ['api-a', 'api-b', 'redis-1', 'redis-2', 'redis-3', 'redis-cluster-init', 'worker']);
  for (const n of ['redis-1', 'redis-2', 'redis-3']) {
    const cmd = String(s[n].command);
    for (const flag of ['--cluster-enabled yes', '--appendonly yes', '--maxmemory-policy noeviction']) assert.ok(cmd.includes(flag), `${n}: ${flag}`);
  }
  assert.match(String(s['redis-cluster-init'].command), /--cluster create redis-1:6379 redis-2:6379 redis-3:6379 --cluster-yes/);
  assert.equal(s['api-a'].environment?.CACHET_SHARDS, '0,1');
  assert.equal(s['api-b'].environment?.CACHET_SHARDS, '2,3');
  for (const name of ['api-a', 'api-b', 'worker']) {
    assert.equal(s[name].environment?.REDIS_URL, 'redis-cluster://redis-1:6379,redis-2:6379,redis-3:6379');
    assert.equal(s[name].depends_on?.['redis-cluster-init']?.condition, 'service_completed_successfully');
  }
  assert.equal(s['api-a'].deploy?.replicas, 2, 'each shard served twice: one replica can die');
});

test("every way we start node gives it the heap flag (README, Node's heap), and node accepts it", () => {
  const FLAG = '--initial-old-space-size=256';
  const read = (file: string) => readFileSync(path.join(REPO, file), 'utf8');
  const entrypoint = /^ENTRYPOINT (.*)$/m.exec(read('Dockerfile'))?.[1];
  assert.deepEqual(JSON.parse(entrypoint ?? 'null')?.slice(0, 2), ['node', FLAG], 'the image runs serve and worker with it');
  for (const file of ['docker-compose.yml', 'docker-compose.cluster.yml']) {
    const services = (parse(read(file), { merge: true }) as { services: Record<string, Service> }).services;
    for (const [name, s] of Object.entries(services)) {
      const starts = s.entrypoint?.join(' ') ?? '';
      if (starts.includes('main.js')) assert.ok(starts.includes(`exec node ${FLAG} dist/src/cli/main.js`), `${file}: ${name}`);
    }
  }
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
  for (const name of ['start', 'serve']) assert.match(scripts[name], new RegExp(`node ${FLAG} dist/src/cli/main\\.js`), `npm run ${name}`);
  execFileSync(process.execPath, [FLAG, '-e', '0']); // a flag node does not know stops it at once
});
