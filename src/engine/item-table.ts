// A cache's items by position: id, label and image source, which ids are live, which positions are
// deleted. Positions are the index's (the order of insertion) and never move: a deleted item keeps
// its row here, so a snapshot can record it and replay stays in step with the index.
import type { KeyRecord } from '../keylog/types.js';

export class ItemTable {
  /** by position; a deleted item keeps its id and label here */
  readonly ids: string[] = [];
  /** by position */
  labels = new Uint16Array(1024);
  /** by position: where the item's image came from, when known (thumbnails) */
  readonly sources: (string | undefined)[] = [];
  /** the live items' positions by id (a deleted id is not here) */
  private readonly positionOf = new Map<string, number>();
  /** positions of deleted items */
  readonly deleted = new Set<number>();

  /** live items */
  get size(): number {
    return this.ids.length - this.deleted.size;
  }

  /** positions used, deleted items included */
  get positions(): number {
    return this.ids.length;
  }

  has(id: string): boolean {
    return this.positionOf.has(id);
  }

  positionOfId(id: string): number | undefined {
    return this.positionOf.get(id);
  }

  /** The labels of every position used. */
  allLabels(): Uint16Array {
    return this.labels.subarray(0, this.positions);
  }

  /** The records whose ids the table does not hold yet, each id once. */
  unknown<R extends KeyRecord>(records: R[]): R[] {
    const seen = new Set<string>();
    return records.filter((r) => !this.positionOf.has(r.id) && !seen.has(r.id) && seen.add(r.id));
  }

  /** A new item at the next position. */
  add(id: string, label: number, source: string | undefined): number {
    const position = this.ids.length;
    if (position >= this.labels.length) {
      const grown = new Uint16Array(this.labels.length * 2);
      grown.set(this.labels);
      this.labels = grown;
    }
    this.ids.push(id);
    this.sources.push(source);
    this.labels[position] = label;
    this.positionOf.set(id, position);
    return position;
  }

  /** Mark a position deleted; false if it already was. Its id may be added again later, as a new item. */
  delete(position: number): boolean {
    if (this.deleted.has(position)) return false;
    this.deleted.add(position);
    const id = this.ids[position];
    if (this.positionOf.get(id) === position) this.positionOf.delete(id);
    return true;
  }

  /** The image source of a live item: undefined when the table does not hold the id, null when no source was recorded. */
  sourceOf(id: string): string | null | undefined {
    const position = this.positionOf.get(id);
    return position === undefined ? undefined : (this.sources[position] ?? null);
  }
}
