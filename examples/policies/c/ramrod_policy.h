/*
 * ramrod compaction policies in C: the facts a policy gets, the decision it
 * gives, and the three functions it implements. `abi.c` turns these into
 * the component exports of `wit/policy.wit` (the canonical ABI, by hand:
 * there is no wit-bindgen for C in the package registries); `support.c`
 * has what a freestanding policy needs (a TOML reader for its config,
 * number formatting, memcpy).
 *
 * A policy is pure: it sees only what it is given. It never allocates in
 * `policy_decide` beyond its own static buffers.
 */
#ifndef RAMROD_POLICY_H
#define RAMROD_POLICY_H

#include <stddef.h>
#include <stdint.h>

enum rp_role { RP_LEADER = 0, RP_FOLLOWER = 1, RP_CANDIDATE = 2, RP_LEARNER = 3 };
enum rp_kind { RP_INCREMENTAL = 0, RP_FULL = 1 };

/* An optional u64: `has` is 0 or 1. */
struct rp_opt_u64 {
    int has;
    uint64_t value;
};

struct rp_follower {
    uint64_t id;
    struct rp_opt_u64 matched;
    uint64_t lag_entries;
    struct rp_opt_u64 snapshot_in_flight;
};

struct rp_log_facts {
    uint64_t now_ms;
    enum rp_role role;
    uint64_t first_index, last_index, committed, applied;
    uint64_t entries, bytes;
    double append_rate, byte_rate;
    const struct rp_follower *followers;
    size_t followers_len;
    uint64_t disk_free_bytes;
};

struct rp_snapshot_facts {
    struct rp_opt_u64 last_index;
    uint64_t age_ms, entries_since, bytes_since;
    uint32_t chain_length;
    uint64_t chain_bytes, base_bytes, state_keys, state_bytes, dirty_keys;
    uint64_t last_build_ms;
    int in_progress;
};

struct rp_decision {
    int snapshot; /* 0: none, 1: build `kind` */
    enum rp_kind kind;
    struct rp_opt_u64 purge_up_to;
    int has_retain;
    uint32_t retain_snapshots;
    uint32_t next_check_ms;
    /* NUL-terminated; the policy's own buffer, valid until the next call. */
    const char *reason;
};

/* What a policy implements. */
const char *policy_name(void);
/* Returns NULL when `config` (TOML text, not NUL-terminated) is accepted,
 * else a message naming the key or value at fault (a static buffer). */
const char *policy_configure(const char *config, size_t len);
void policy_decide(const struct rp_log_facts *log, const struct rp_snapshot_facts *snap,
                   struct rp_decision *out);

/* --- support.c ---------------------------------------------------------- */

/* Freestanding: no libc, so support.c defines these for wasm. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

/* The index to purge up to so that `keep` entries stay behind the newest
 * snapshot, within what the host allows (the SDK's `purge_keeping`). */
struct rp_opt_u64 rp_purge_keeping(const struct rp_log_facts *log,
                                   const struct rp_snapshot_facts *snap, uint64_t keep);

/* A TOML value as the config reader sees it. */
enum rp_toml_type { RP_TOML_INT, RP_TOML_STRING, RP_TOML_BOOL };
struct rp_toml_value {
    enum rp_toml_type type;
    uint64_t integer; /* RP_TOML_INT (non-negative), RP_TOML_BOOL (0/1) */
    const char *str;  /* RP_TOML_STRING: not NUL-terminated */
    size_t str_len;
};

/* Calls `on_key` for each `key = value` line of a flat TOML document
 * (comments, blank lines, non-negative integers with `_`, "strings",
 * booleans). `on_key` returns NULL to go on, or an error message. Returns
 * NULL, or the first error (a static buffer naming the line). */
const char *rp_toml_each(const char *text, size_t len,
                         const char *(*on_key)(void *ctx, const char *key, size_t key_len,
                                               const struct rp_toml_value *value),
                         void *ctx);

/* Whether the `len` bytes at `s` equal the C string `lit`. */
int rp_eq(const char *s, size_t len, const char *lit);

/* A small string builder over a caller's buffer; never overflows. */
struct rp_buf {
    char *data;
    size_t cap, len;
};
void rp_put(struct rp_buf *b, const char *s);
void rp_put_n(struct rp_buf *b, const char *s, size_t n);
void rp_put_u64(struct rp_buf *b, uint64_t v);
/* NUL-terminates and returns the text. */
const char *rp_done(struct rp_buf *b);

#endif
