// `off-peak` in JavaScript: what JavaScript makes easy, dates and times.
// Full snapshots are expensive (the whole state is written), so this policy
// writes them only inside an off-peak window of the day (say "02:00-05:00"
// in the cluster's time zone, given as a UTC offset) and incrementals
// otherwise, every `snapshot_every` entries. Inside the window it also
// folds a chain of deltas into a new base once, even if few entries came in,
// so that each day starts with a short chain. The first snapshot is full
// whenever it comes.
import { Config, ConfigError, purgeKeeping } from './kit.js';

function minutes(hhmm, key) {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(hhmm);
  if (!m) throw new ConfigError(`\`${key}\`: expected a time of day "HH:MM", not "${hhmm}"`);
  return Number(m[1]) * 60 + Number(m[2]);
}

export class OffPeak {
  constructor(text) {
    const c = new Config(text);
    const window = c.string('off_peak', '02:00-05:00');
    const [from, to, extra] = window.split('-');
    if (to === undefined || extra !== undefined) {
      throw new ConfigError(`\`off_peak\`: expected "HH:MM-HH:MM", not "${window}"`);
    }
    this.from = minutes(from, 'off_peak');
    this.to = minutes(to, 'off_peak');
    const offset = c.string('utc_offset', '+00:00');
    const m = /^([+-])(\d\d):(\d\d)$/.exec(offset);
    if (!m) throw new ConfigError(`\`utc_offset\`: expected "+HH:MM" or "-HH:MM", not "${offset}"`);
    this.offsetMin = (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
    this.snapshotEvery = c.uint('snapshot_every', 10_000, { atLeast: 1n });
    this.keepEntries = c.uint('keep_entries', 5_000);
    this.checkMs = c.u32('check_ms', 1_000, { atLeast: 1n });
    c.done();
  }

  // Whether `nowMs` (ms since the Unix epoch) is inside the window.
  offPeak(nowMs) {
    const local = new Date(Number(nowMs) + this.offsetMin * 60_000);
    const t = local.getUTCHours() * 60 + local.getUTCMinutes();
    return this.from <= this.to ? this.from <= t && t < this.to : t >= this.from || t < this.to;
  }

  decide(log, snap) {
    const inWindow = this.offPeak(log.nowMs);
    const d = {
      snapshot: undefined,
      purgeUpTo: purgeKeeping(log, snap, this.keepEntries),
      retainSnapshots: undefined,
      nextCheckMs: this.checkMs,
      reason: '',
    };
    const clock = new Date(Number(log.nowMs) + this.offsetMin * 60_000).toISOString().slice(11, 16);
    if (snap.inProgress) {
      d.reason = 'a snapshot is being built';
    } else if (snap.lastIndex === undefined) {
      if (snap.entriesSince > 0n) [d.snapshot, d.reason] = ['full', 'no snapshot yet'];
      else d.reason = 'nothing to snapshot';
    } else if (inWindow && snap.chainLength > 1 && snap.entriesSince > 0n) {
      [d.snapshot, d.reason] = ['full', `off-peak (${clock}): folding a chain of ${snap.chainLength} into a new base`];
    } else if (snap.entriesSince >= this.snapshotEvery) {
      d.snapshot = inWindow ? 'full' : 'incremental';
      d.reason = `${snap.entriesSince} entries since the last snapshot, ${inWindow ? 'off-peak' : 'peak'} (${clock})`;
    } else {
      d.reason = `${snap.entriesSince} of ${this.snapshotEvery} entries (${clock})`;
    }
    return d;
  }
}
