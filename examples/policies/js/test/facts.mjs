// Facts shaped as jco's bindings give them (BigInt u64s, undefined for none).
export function leader(snapshot, since, first = 1n) {
  const last = (snapshot ?? 0n) + since;
  return [
    {
      nowMs: 1_700_000_000_000n, role: 'leader', firstIndex: first, lastIndex: last,
      committed: last, applied: last, entries: last - first + 1n, bytes: 0n,
      appendRate: 0, byteRate: 0, followers: [], diskFreeBytes: 100n << 30n,
    },
    {
      lastIndex: snapshot, ageMs: 0n, entriesSince: since, bytesSince: 0n,
      chainLength: snapshot === undefined ? 0 : 1, chainBytes: 0n, baseBytes: 0n,
      stateKeys: 0n, stateBytes: 0n, dirtyKeys: 0n, lastBuildMs: 0n, inProgress: false,
    },
  ];
}
