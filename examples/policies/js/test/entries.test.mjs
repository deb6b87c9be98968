import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ConfigError } from '../lib/kit.js';
import { Entries } from '../lib/entries.js';
import { leader } from './facts.mjs';

const p = new Entries('snapshot_every = 1_000\nkeep_entries = 100\nkind = "incremental"\ncheck_ms = 250');

test('short of the threshold', () => {
  const d = p.decide(...leader(5000n, 999n));
  assert.equal(d.snapshot, undefined);
  assert.equal(d.purgeUpTo, 4900n);
  assert.equal(d.nextCheckMs, 250);
  assert.equal(d.reason, '999 of 1000 entries');
});

test('at the threshold, and the first snapshot is full', () => {
  const d = p.decide(...leader(5000n, 1000n));
  assert.equal(d.snapshot, 'incremental');
  assert.equal(d.reason, '1000 entries since the last snapshot >= 1000');
  const first = p.decide(...leader(undefined, 5000n));
  assert.equal(first.snapshot, 'full');
  assert.equal(first.purgeUpTo, undefined);
});

test('no second build; a snapshot in flight holds the purge', () => {
  const [log, snap] = leader(5000n, 2000n);
  snap.inProgress = true;
  assert.equal(p.decide(log, snap).snapshot, undefined);
  const [log2, snap2] = leader(5000n, 10n);
  log2.followers = [{ id: 2n, matched: undefined, lagEntries: 0n, snapshotInFlight: 3000n }];
  assert.equal(p.decide(log2, snap2).purgeUpTo, 3000n);
});

test('config errors name the key', () => {
  for (const [text, key] of [
    ['snapshot_evry = 3', 'snapshot_evry'],
    ['snapshot_every = 0', 'snapshot_every'],
    ['kind = "huge"', 'kind'],
    ['check_ms = 99999999999', 'check_ms'],
    ['keep_entries = "many"', 'keep_entries'],
    ['retain_snapshots = -1', 'retain_snapshots'],
  ]) {
    assert.throws(() => new Entries(text), (e) => e instanceof ConfigError && e.message.includes(key), text);
  }
});
