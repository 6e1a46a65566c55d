// SIGTERM and SIGINT: close (finish the work in hand, write what must be written), then exit 0.
// `log`: where to say so (a service's structured logger); default the console.
export function closeOnSignals(what: string, close: () => Promise<void>, log?: { info(msg: string): void; error(obj: object, msg: string): void }): void {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    if (log) log.info(`${what}: ${signal}: finishing the work in hand…`);
    else console.log(`${what}: ${signal}: finishing the work in hand…`);
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        if (log) log.error({ err }, `${what}: could not close cleanly`);
        else console.error(err);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
