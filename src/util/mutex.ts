// One cache's lock. hnswlib-node has no locking and the key log must be applied in order, so
// every change to a cache's index is exclusive (`run`). Reading it — a search, a snapshot being
// written — only excludes changes (`read`): searches go on while a snapshot is written, which for
// a large cache takes many seconds.
//
// Order: first come, first served, with one exception. While a long reader (a snapshot) holds the
// lock, a waiting change could not start anyway, so later readers (searches) pass it; once no long
// reader holds it, new readers queue behind the waiting change, which so never starves.
type Waiter = { exclusive: boolean; long: boolean; start: () => void };

export class Mutex {
  private readers = 0;
  private longReaders = 0;
  private writing = false;
  private readonly queue: Waiter[] = [];

  /** An exclusive section: no other section runs meanwhile. */
  run<T>(section: () => Promise<T>): Promise<T> {
    return this.hold({ exclusive: true, long: false }, section);
  }

  /** A section that only reads: runs beside other readers, never beside `run`. `long`: a snapshot. */
  read<T>(section: () => Promise<T>, opts: { long?: boolean } = {}): Promise<T> {
    return this.hold({ exclusive: false, long: Boolean(opts.long) }, section);
  }

  private async hold<T>(kind: { exclusive: boolean; long: boolean }, section: () => Promise<T>): Promise<T> {
    await new Promise<void>((start) => {
      this.queue.push({ ...kind, start });
      this.pump();
    });
    try {
      return await section();
    } finally {
      if (kind.exclusive) this.writing = false;
      else {
        this.readers--;
        if (kind.long) this.longReaders--;
      }
      this.pump();
    }
  }

  private pump(): void {
    let changeAhead = false;
    for (let i = 0; i < this.queue.length;) {
      const w = this.queue[i];
      const startable = w.exclusive ? !this.writing && this.readers === 0 && i === 0 : !this.writing && (!changeAhead || this.longReaders > 0);
      if (!startable) {
        changeAhead ||= w.exclusive;
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      if (w.exclusive) this.writing = true;
      else {
        this.readers++;
        if (w.long) this.longReaders++;
      }
      w.start();
      if (w.exclusive) return;
    }
  }
}
