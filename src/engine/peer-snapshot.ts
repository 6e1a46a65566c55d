// A replica that is new, or whose snapshot is below the point the key log was trimmed to, starts
// from a peer's snapshot (as Kafka consumers start from a snapshot and an offset, and Qdrant peers
// transfer snapshots): the newest snapshot a live replica published, fetched over HTTP as the export
// archive (cache/archive.ts), every file checked against its sha256 as it arrives, and installed
// in place of the local copy only once all of it checks out. Then the log is replayed from there.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { unpackArchive } from '../cache/archive.js';
import { manifestOf } from '../index/snapshot.js';
import type { RedisKeyLog, ReplicaEntry } from '../keylog/redis-log.js';
import { installImport } from './cache-export.js';

export interface PeerFetch {
  /** this replica's id: never its own peer */
  self: string;
  /** an admin API key, when the peers ask for one */
  key?: string;
  /** a new, empty directory to unpack into */
  staging: () => Promise<string>;
  /** the bytes received so far (for /readyz) */
  onBytes?: (received: number) => void;
}

/** Largest snapshot taken from a peer (the import limit's default). */
const MAX_PEER_SNAPSHOT_BYTES = 64 * 2 ** 30;

/**
 * Replace the cache directory `dir` with the newest snapshot a live peer has that covers the log's
 * base. Returns the snapshot's log position and the peer it came from; throws, naming every peer
 * tried and why, when none could give one.
 */
export async function fetchFromPeer(name: string, dir: string, log: RedisKeyLog, how: PeerFetch): Promise<{ position: number; peer: string }> {
  const base = log.base();
  const known = await log.replicas();
  const peers = known.filter((r) => r.id !== how.self && r.url && r.position >= base).sort((a, b) => b.position - a.position);
  const tried: string[] = [];
  for (const peer of peers) {
    try {
      return { position: await download(name, dir, peer, base, how), peer: peer.url };
    } catch (err) {
      tried.push(`${peer.url} (${peer.id}, position ${peer.position}): ${(err as Error).message}`);
    }
  }
  const others = known.filter((r) => r.id !== how.self);
  throw new Error(
    `its key log starts at position ${base} (earlier records were trimmed once every live replica's snapshot covered them) and this replica's snapshot does not reach it; ` +
      (tried.length
        ? `no peer could give a snapshot: ${tried.join('; ')}`
        : `no live replica has published a snapshot to fetch (${others.length ? others.map((r) => `${r.id} at position ${r.position}${r.url ? '' : ', no URL'}`).join('; ') : 'none is registered'})`) +
      '. Start it again once a replica that holds the cache is up, or restore the cache from an export',
  );
}

async function download(name: string, dir: string, peer: ReplicaEntry, base: number, how: PeerFetch): Promise<number> {
  const staging = await how.staging();
  try {
    const url = `${peer.url.replace(/\/+$/, '')}/v1/caches/${encodeURIComponent(name)}/snapshot?stored=true`;
    const res = await fetch(url, { headers: how.key ? { authorization: `Bearer ${how.key}` } : {} });
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${(await res.text().catch(() => '')).slice(0, 300)}`);
    let received = 0;
    const counting = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        how.onBytes?.(received);
        done(null, chunk);
      },
    });
    const header = await unpackArchive(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream).pipe(counting), staging, MAX_PEER_SNAPSHOT_BYTES);
    if (header.definition.name !== name) throw new Error(`it sent cache "${header.definition.name}"`);
    const { logPosition } = await manifestOf(path.join(staging, 'snapshot'));
    if (logPosition < base) throw new Error(`its snapshot covers position ${logPosition}, below the log's base ${base}`);
    // every file checked: now it replaces the local copy (the log, in Redis, is untouched)
    await fs.rm(dir, { recursive: true, force: true });
    return (await installImport(staging, dir)).logPosition;
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}
