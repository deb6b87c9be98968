import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ConfigError } from '../lib/kit.js';
import { OffPeak } from '../lib/off-peak.js';
import { leader } from './facts.mjs';

const at = (iso) => BigInt(Date.parse(iso));

test('incrementals at peak, full snapshots off-peak', () => {
  const p = new OffPeak('off_peak = "02:00-05:00"\nutc_offset = "+02:00"\nsnapshot_every = 100');
  const [log, snap] = leader(5000n, 150n);
  log.nowMs = at('2026-12-01T12:00:00Z'); // 14:00 local
  assert.equal(p.decide(log, snap).snapshot, 'incremental');
  log.nowMs = at('2026-12-01T01:30:00Z'); // 03:30 local
  const d = p.decide(log, snap);
  assert.equal(d.snapshot, 'full');
  assert.match(d.reason, /03:30/);
});

test('off-peak folds a chain once, even with few entries', () => {
  const p = new OffPeak('off_peak = "23:00-01:00"\nsnapshot_every = 1000');
  const [log, snap] = leader(5000n, 3n);
  snap.chainLength = 5;
  log.nowMs = at('2026-12-01T23:30:00Z'); // the window wraps midnight
  assert.equal(p.decide(log, snap).snapshot, 'full');
  snap.chainLength = 1;
  assert.equal(p.decide(log, snap).snapshot, undefined);
  snap.chainLength = 5;
  log.nowMs = at('2026-12-01T12:00:00Z');
  assert.equal(p.decide(log, snap).snapshot, undefined);
});

test('config errors name the key', () => {
  for (const [text, key] of [
    ['off_peak = "2am-5am"', 'off_peak'],
    ['off_peak = "02:00"', 'off_peak'],
    ['utc_offset = "CET"', 'utc_offset'],
    ['snapshot_every = 0', 'snapshot_every'],
    ['window = "x"', 'window'],
  ]) {
    assert.throws(() => new OffPeak(text), (e) => e instanceof ConfigError && e.message.includes(key), text);
  }
});
