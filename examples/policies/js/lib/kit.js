// ramrod compaction policies in JavaScript: the logic side.
//
// A policy is a class whose constructor takes its TOML config (text) and
// throws a ConfigError naming the key at fault, with
// `decide(log, snapshot)` returning a decision. The facts are what jco's
// bindings give: lowerCamelCase fields of wit/policy.wit's records, u64s
// as BigInt, options as `undefined`, enums as strings ('leader', 'full').
// A decision uses the same shapes: { snapshot: 'full' | 'incremental' |
// undefined, purgeUpTo: BigInt | undefined, retainSnapshots: number |
// undefined, nextCheckMs: number, reason: string }.
import { parse } from 'smol-toml';

export class ConfigError extends Error {}

// A policy's TOML config: typed getters; done() refuses keys nothing read.
export class Config {
  constructor(text) {
    try {
      this.values = parse(text);
    } catch (e) {
      throw new ConfigError(`the config is not TOML: ${e.message}`);
    }
    this.used = new Set();
  }

  #get(key, fallback) {
    this.used.add(key);
    return Object.hasOwn(this.values, key) ? this.values[key] : fallback;
  }

  // A non-negative integer (a BigInt) of at most `bits` bits.
  uint(key, fallback, { atLeast = 0n, bits = 64 } = {}) {
    const v = this.#get(key, fallback);
    const n = typeof v === 'bigint' ? v : Number.isInteger(v) ? BigInt(v) : undefined;
    if (n === undefined || n < atLeast || n >= 1n << BigInt(bits)) {
      throw new ConfigError(`\`${key}\`: expected an integer from ${atLeast} to ${(1n << BigInt(bits)) - 1n}, not ${v}`);
    }
    return n;
  }

  // uint within 32 bits, as a Number (what u32 fields take).
  u32(key, fallback, opts = {}) {
    return Number(this.uint(key, fallback, { ...opts, bits: 32 }));
  }

  string(key, fallback, choices) {
    const v = this.#get(key, fallback);
    if (typeof v !== 'string' || (choices && !choices.includes(v))) {
      const want = choices ? `one of ${choices.map((c) => `"${c}"`).join(', ')}` : 'a string';
      throw new ConfigError(`\`${key}\`: expected ${want}, not ${JSON.stringify(v)}`);
    }
    return v;
  }

  done() {
    const unknown = Object.keys(this.values).filter((k) => !this.used.has(k)).sort();
    if (unknown.length > 0) {
      throw new ConfigError(`unknown key \`${unknown[0]}\` (known: ${[...this.used].sort().join(', ')})`);
    }
  }
}

const min = (a, b) => (a < b ? a : b);

// The index to purge up to so that `keep` entries stay behind the newest
// snapshot, within what the host allows (the snapshot, the applied index,
// a follower's snapshot in flight); undefined when that purges nothing.
// (The Rust SDK's purge_keeping.)
export function purgeKeeping(log, snap, keep) {
  if (snap.lastIndex === undefined) return undefined;
  let limit = min(snap.lastIndex, log.applied);
  for (const f of log.followers) {
    if (f.snapshotInFlight !== undefined) limit = min(limit, f.snapshotInFlight);
  }
  if (snap.lastIndex < keep) return undefined;
  const target = min(snap.lastIndex - keep, limit);
  return target >= log.firstIndex ? target : undefined;
}

// The component's `policy` export for the policy class `Policy`.
export function exportPolicy(name, Policy) {
  let policy;
  return {
    name: () => name,
    configure(config) {
      try {
        policy = new Policy(config);
      } catch (e) {
        // The error string the host shows; anything else is a bug, and
        // traps (the host shows its stderr).
        if (e instanceof ConfigError) throw e.message;
        throw e;
      }
    },
    decide: (log, snapshot) => policy.decide(log, snapshot),
  };
}
