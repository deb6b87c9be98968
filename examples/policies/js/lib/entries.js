// `entries` in JavaScript: snapshot every N applied entries, keep M entries
// behind the snapshot. Decides exactly as ramrod's built-in `entries`.
import { Config, ConfigError, purgeKeeping } from './kit.js';

export class Entries {
  constructor(text) {
    const c = new Config(text);
    this.snapshotEvery = c.uint('snapshot_every', 10_000);
    this.keepEntries = c.uint('keep_entries', 5_000);
    this.kind = c.string('kind', 'full', ['full', 'incremental']);
    this.checkMs = c.u32('check_ms', 1_000);
    this.retainSnapshots = Object.hasOwn(c.values, 'retain_snapshots') ? c.u32('retain_snapshots', 0) : undefined;
    c.used.add('retain_snapshots');
    c.done();
    if (this.snapshotEvery === 0n) throw new ConfigError('`snapshot_every` must be at least 1');
    if (this.checkMs === 0) throw new ConfigError('`check_ms` must be at least 1');
  }

  decide(log, snap) {
    const d = {
      snapshot: undefined,
      purgeUpTo: purgeKeeping(log, snap, this.keepEntries),
      retainSnapshots: this.retainSnapshots,
      nextCheckMs: this.checkMs,
      reason: '',
    };
    if (snap.entriesSince >= this.snapshotEvery && !snap.inProgress) {
      d.snapshot = snap.lastIndex === undefined ? 'full' : this.kind;
      d.reason = `${snap.entriesSince} entries since the last snapshot >= ${this.snapshotEvery}`;
    } else {
      d.reason = `${snap.entriesSince} of ${this.snapshotEvery} entries`;
    }
    return d;
  }
}
