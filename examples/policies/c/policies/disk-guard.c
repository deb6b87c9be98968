/* `disk-guard` in C: what C makes easy, a policy with fixed-size state and
 * integer arithmetic only. It snapshots every N entries like `entries`,
 * but watches the volume the log is on. Under `low_free_bytes` free it
 * snapshots as soon as anything changed, keeps only a tenth of the usual
 * log tail behind the snapshot and two snapshots, and asks again quickly.
 * Under `critical_free_bytes` it keeps no tail at all (a follower that is
 * behind catches up from the snapshot instead of the log) and a single
 * snapshot. */
#include "ramrod_policy.h"

static struct {
    uint64_t snapshot_every, keep_entries, low_free_bytes, critical_free_bytes;
    uint32_t check_ms, urgent_check_ms;
} cfg = {10000, 5000, 1ull << 30, 256ull << 20, 1000, 100};

const char *policy_name(void) { return "c-disk-guard"; }

static const char *on_key(void *ctx, const char *k, size_t n, const struct rp_toml_value *v) {
    (void)ctx;
    uint64_t *u64 = rp_eq(k, n, "snapshot_every")        ? &cfg.snapshot_every
                    : rp_eq(k, n, "keep_entries")        ? &cfg.keep_entries
                    : rp_eq(k, n, "low_free_bytes")      ? &cfg.low_free_bytes
                    : rp_eq(k, n, "critical_free_bytes") ? &cfg.critical_free_bytes
                                                         : 0;
    uint32_t *u32 = rp_eq(k, n, "check_ms")          ? &cfg.check_ms
                    : rp_eq(k, n, "urgent_check_ms") ? &cfg.urgent_check_ms
                                                     : 0;
    if (u64 == 0 && u32 == 0) {
        return "unknown key (expected one of snapshot_every, keep_entries, low_free_bytes, "
               "critical_free_bytes, check_ms, urgent_check_ms)";
    }
    if (v->type != RP_TOML_INT || (u32 != 0 && v->integer > UINT32_MAX)) {
        return "expected a non-negative integer";
    }
    if (u64 != 0) {
        *u64 = v->integer;
    } else {
        *u32 = (uint32_t)v->integer;
    }
    return 0;
}

const char *policy_configure(const char *config, size_t len) {
    const char *err = rp_toml_each(config, len, on_key, 0);
    if (err != 0) {
        return err;
    }
    if (cfg.snapshot_every == 0 || cfg.check_ms == 0 || cfg.urgent_check_ms == 0) {
        return "`snapshot_every`, `check_ms` and `urgent_check_ms` must be at least 1";
    }
    if (cfg.critical_free_bytes > cfg.low_free_bytes) {
        return "`critical_free_bytes` must not be above `low_free_bytes`";
    }
    return 0;
}

static char reason[160];

void policy_decide(const struct rp_log_facts *log, const struct rp_snapshot_facts *snap,
                   struct rp_decision *d) {
    struct rp_buf b = {reason, sizeof reason, 0};
    int low = log->disk_free_bytes < cfg.low_free_bytes;
    int critical = log->disk_free_bytes < cfg.critical_free_bytes;
    uint64_t due = low ? 1 : cfg.snapshot_every;
    d->next_check_ms = low ? cfg.urgent_check_ms : cfg.check_ms;
    if (snap->entries_since >= due && !snap->in_progress) {
        d->snapshot = 1;
        d->kind = RP_FULL;
    }
    if (critical) {
        d->purge_up_to = rp_purge_keeping(log, snap, 0);
        d->has_retain = 1;
        d->retain_snapshots = 1;
        rp_put(&b, "critical: ");
    } else if (low) {
        d->purge_up_to = rp_purge_keeping(log, snap, cfg.keep_entries / 10);
        d->has_retain = 1;
        d->retain_snapshots = 2;
        rp_put(&b, "low disk: ");
    } else {
        d->purge_up_to = rp_purge_keeping(log, snap, cfg.keep_entries);
    }
    rp_put_u64(&b, log->disk_free_bytes >> 20);
    rp_put(&b, " MiB free, ");
    rp_put_u64(&b, snap->entries_since);
    rp_put(&b, " entries since the last snapshot");
    d->reason = rp_done(&b);
}
