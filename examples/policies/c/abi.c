/*
 * The component exports of `wit/policy.wit`, by hand: the canonical ABI's
 * memory layouts for the records `decide` takes and the values every
 * export returns, a `cabi_realloc` over a static arena, and post-return
 * functions that free the arena after each call.
 *
 * Layouts (offsets in bytes; a record is aligned to its widest field):
 *   decide's parameters do not fit in 16 flat values, so the host stores
 *   the tuple (log-facts, snapshot-facts) in guest memory and passes its
 *   address:
 *     log-facts (size 96):  now-ms 0, role 8 (u8), first-index 16,
 *       last-index 24, committed 32, applied 40, entries 48, bytes 56,
 *       append-rate 64 (f64), byte-rate 72 (f64), followers 80 (ptr, len),
 *       disk-free-bytes 88
 *     snapshot-facts (at 96, size 104): last-index 0 (option<u64>: tag 0,
 *       value 8), age-ms 16, entries-since 24, bytes-since 32,
 *       chain-length 40 (u32), chain-bytes 48, base-bytes 56,
 *       state-keys 64, state-bytes 72, dirty-keys 80, last-build-ms 88,
 *       in-progress 96 (u8)
 *     follower (size 48): id 0, matched 8 (option<u64>), lag-entries 24,
 *       snapshot-in-flight 32 (option<u64>)
 *   decision, returned by address (size 48): snapshot 0 (option<enum>:
 *     tag 0, kind 1), purge-up-to 8 (option<u64>), retain-snapshots 24
 *     (option<u32>: tag 24, value 28), next-check-ms 32, reason 36 (ptr,
 *     len)
 *   name: a string by address (ptr 0, len 4); configure: result<_, string>
 *   by address (tag 0, ptr 4, len 8).
 */
#include "ramrod_policy.h"

#define EXPORT(name) __attribute__((export_name("ramrod:policy/policy@0.1.0#" name)))
#define POST(name) __attribute__((export_name("cabi_post_ramrod:policy/policy@0.1.0#" name)))

/* The arena the host's arguments are copied into: reset after each call. */
static _Alignas(16) unsigned char arena[256 << 10];
static size_t arena_used;

static void *bump(size_t align, size_t size) {
    size_t at = (arena_used + align - 1) & ~(align - 1);
    if (at > sizeof arena || size > sizeof arena - at) {
        __builtin_trap(); /* more than the arena: the call fails cleanly */
    }
    arena_used = at + size;
    return arena + at;
}

__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *old, size_t old_size,
                                                                  size_t align, size_t new_size) {
    if (new_size == 0) {
        return (void *)align;
    }
    void *p = bump(align, new_size);
    if (old != 0) {
        memcpy(p, old, old_size < new_size ? old_size : new_size);
    }
    return p;
}

static uint64_t u64_at(const unsigned char *p, size_t off) {
    uint64_t v;
    memcpy(&v, p + off, 8);
    return v;
}
static uint32_t u32_at(const unsigned char *p, size_t off) {
    uint32_t v;
    memcpy(&v, p + off, 4);
    return v;
}
static double f64_at(const unsigned char *p, size_t off) {
    double v;
    memcpy(&v, p + off, 8);
    return v;
}
static struct rp_opt_u64 opt_at(const unsigned char *p, size_t off) {
    struct rp_opt_u64 o = {p[off] != 0, 0};
    if (o.has) {
        o.value = u64_at(p, off + 8);
    }
    return o;
}
static void put_u32(unsigned char *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }
static void put_u64(unsigned char *p, size_t off, uint64_t v) { memcpy(p + off, &v, 8); }

static size_t length(const char *s) {
    size_t n = 0;
    while (s[n] != 0) {
        n++;
    }
    return n;
}

/* Return areas: valid until the next call. */
static _Alignas(8) unsigned char ret[48];

EXPORT("name") unsigned char *export_name_(void) {
    const char *n = policy_name();
    put_u32(ret, 0, (uint32_t)(uintptr_t)n);
    put_u32(ret, 4, (uint32_t)length(n));
    return ret;
}

EXPORT("configure") unsigned char *export_configure(const char *config, size_t len) {
    const char *err = policy_configure(config, len);
    ret[0] = err != 0;
    if (err != 0) {
        put_u32(ret, 4, (uint32_t)(uintptr_t)err);
        put_u32(ret, 8, (uint32_t)length(err));
    }
    return ret;
}

/* Followers read out of the arena (the list lives there until post-return). */
static struct rp_follower followers[1024];

EXPORT("decide") unsigned char *export_decide(const unsigned char *args) {
    const unsigned char *l = args, *s = args + 96;
    struct rp_log_facts log = {
        .now_ms = u64_at(l, 0),
        .role = (enum rp_role)l[8],
        .first_index = u64_at(l, 16),
        .last_index = u64_at(l, 24),
        .committed = u64_at(l, 32),
        .applied = u64_at(l, 40),
        .entries = u64_at(l, 48),
        .bytes = u64_at(l, 56),
        .append_rate = f64_at(l, 64),
        .byte_rate = f64_at(l, 72),
        .disk_free_bytes = u64_at(l, 88),
    };
    const unsigned char *list = (const unsigned char *)(uintptr_t)u32_at(l, 80);
    size_t n = u32_at(l, 84);
    if (n > sizeof followers / sizeof followers[0]) {
        __builtin_trap();
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *f = list + 48 * i;
        followers[i].id = u64_at(f, 0);
        followers[i].matched = opt_at(f, 8);
        followers[i].lag_entries = u64_at(f, 24);
        followers[i].snapshot_in_flight = opt_at(f, 32);
    }
    log.followers = followers;
    log.followers_len = n;
    struct rp_snapshot_facts snap = {
        .last_index = opt_at(s, 0),
        .age_ms = u64_at(s, 16),
        .entries_since = u64_at(s, 24),
        .bytes_since = u64_at(s, 32),
        .chain_length = u32_at(s, 40),
        .chain_bytes = u64_at(s, 48),
        .base_bytes = u64_at(s, 56),
        .state_keys = u64_at(s, 64),
        .state_bytes = u64_at(s, 72),
        .dirty_keys = u64_at(s, 80),
        .last_build_ms = u64_at(s, 88),
        .in_progress = s[96] != 0,
    };
    struct rp_decision d = {0};
    policy_decide(&log, &snap, &d);
    memset(ret, 0, sizeof ret);
    ret[0] = d.snapshot != 0;
    ret[1] = (unsigned char)d.kind;
    ret[8] = d.purge_up_to.has != 0;
    put_u64(ret, 16, d.purge_up_to.value);
    ret[24] = d.has_retain != 0;
    put_u32(ret, 28, d.retain_snapshots);
    put_u32(ret, 32, d.next_check_ms);
    const char *reason = d.reason != 0 ? d.reason : "";
    put_u32(ret, 36, (uint32_t)(uintptr_t)reason);
    put_u32(ret, 40, (uint32_t)length(reason));
    return ret;
}

/* After the host has read a result: the arena is free again. */
POST("name") void post_name(unsigned char *r) { (void)r; arena_used = 0; }
POST("configure") void post_configure(unsigned char *r) { (void)r; arena_used = 0; }
POST("decide") void post_decide(unsigned char *r) { (void)r; arena_used = 0; }
