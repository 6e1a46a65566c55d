// Runs async critical sections one at a time, in arrival order.
// hnswlib-node has no locking and the key log must be applied in order, so every
// change to (or search of) one cache's index goes through its mutex.
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(section: () => Promise<T>): Promise<T> {
    const result = this.tail.then(section, section);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
