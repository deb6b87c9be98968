/* `entries` in C: snapshot every N applied entries, keep M entries behind
 * the snapshot. Decides exactly as ramrod's built-in `entries`. */
#include "ramrod_policy.h"

static struct {
    uint64_t snapshot_every, keep_entries;
    enum rp_kind kind;
    uint32_t check_ms;
    int has_retain;
    uint32_t retain_snapshots;
} cfg = {10000, 5000, RP_FULL, 1000, 0, 0};

const char *policy_name(void) { return "c-entries"; }

static const char *want_u32(const struct rp_toml_value *v, uint32_t *out) {
    if (v->type != RP_TOML_INT || v->integer > UINT32_MAX) {
        return "expected an integer from 0 to 4294967295";
    }
    *out = (uint32_t)v->integer;
    return 0;
}

static const char *on_key(void *ctx, const char *k, size_t n, const struct rp_toml_value *v) {
    (void)ctx;
    if (rp_eq(k, n, "snapshot_every") || rp_eq(k, n, "keep_entries")) {
        if (v->type != RP_TOML_INT) {
            return "expected an integer";
        }
        *(rp_eq(k, n, "snapshot_every") ? &cfg.snapshot_every : &cfg.keep_entries) = v->integer;
        return 0;
    }
    if (rp_eq(k, n, "kind")) {
        if (v->type == RP_TOML_STRING && rp_eq(v->str, v->str_len, "full")) {
            cfg.kind = RP_FULL;
        } else if (v->type == RP_TOML_STRING && rp_eq(v->str, v->str_len, "incremental")) {
            cfg.kind = RP_INCREMENTAL;
        } else {
            return "expected \"full\" or \"incremental\"";
        }
        return 0;
    }
    if (rp_eq(k, n, "check_ms")) {
        return want_u32(v, &cfg.check_ms);
    }
    if (rp_eq(k, n, "retain_snapshots")) {
        cfg.has_retain = 1;
        return want_u32(v, &cfg.retain_snapshots);
    }
    return "unknown key (expected one of snapshot_every, keep_entries, kind, check_ms, "
           "retain_snapshots)";
}

const char *policy_configure(const char *config, size_t len) {
    const char *err = rp_toml_each(config, len, on_key, 0);
    if (err != 0) {
        return err;
    }
    if (cfg.snapshot_every == 0) {
        return "`snapshot_every` must be at least 1";
    }
    if (cfg.check_ms == 0) {
        return "`check_ms` must be at least 1";
    }
    return 0;
}

static char reason[160];

void policy_decide(const struct rp_log_facts *log, const struct rp_snapshot_facts *snap,
                   struct rp_decision *d) {
    d->purge_up_to = rp_purge_keeping(log, snap, cfg.keep_entries);
    d->has_retain = cfg.has_retain;
    d->retain_snapshots = cfg.retain_snapshots;
    d->next_check_ms = cfg.check_ms;
    struct rp_buf b = {reason, sizeof reason, 0};
    rp_put_u64(&b, snap->entries_since);
    if (snap->entries_since >= cfg.snapshot_every && !snap->in_progress) {
        d->snapshot = 1;
        d->kind = snap->last_index.has ? cfg.kind : RP_FULL;
        rp_put(&b, " entries since the last snapshot >= ");
    } else {
        rp_put(&b, " of ");
    }
    rp_put_u64(&b, cfg.snapshot_every);
    if (!d->snapshot) {
        rp_put(&b, " entries");
    }
    d->reason = rp_done(&b);
}
