/* What a freestanding C policy needs: the SDK's purge helper, a reader for
 * flat TOML configs, and a string builder. Shared by every C policy. */
#include "ramrod_policy.h"

#ifndef RAMROD_NATIVE
/* No libc in the guest: the compiler's own calls land here. */
void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) {
        *d++ = (unsigned char)c;
    }
    return dst;
}
#endif

struct rp_opt_u64 rp_purge_keeping(const struct rp_log_facts *log,
                                   const struct rp_snapshot_facts *snap, uint64_t keep) {
    struct rp_opt_u64 none = {0, 0};
    if (!snap->last_index.has) {
        return none;
    }
    /* The host's limit: the snapshot, the applied index, and the snapshot
     * index of any follower with a transfer in flight. */
    uint64_t limit = snap->last_index.value;
    if (log->applied < limit) {
        limit = log->applied;
    }
    for (size_t i = 0; i < log->followers_len; i++) {
        const struct rp_opt_u64 *f = &log->followers[i].snapshot_in_flight;
        if (f->has && f->value < limit) {
            limit = f->value;
        }
    }
    if (snap->last_index.value < keep) {
        return none;
    }
    uint64_t target = snap->last_index.value - keep;
    if (target > limit) {
        target = limit;
    }
    if (target < log->first_index) {
        return none;
    }
    struct rp_opt_u64 some = {1, target};
    return some;
}

int rp_eq(const char *s, size_t len, const char *lit) {
    size_t i = 0;
    for (; i < len; i++) {
        if (lit[i] == 0 || lit[i] != s[i]) {
            return 0;
        }
    }
    return lit[i] == 0;
}

void rp_put_n(struct rp_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n && b->len + 1 < b->cap; i++) {
        b->data[b->len++] = s[i];
    }
}

void rp_put(struct rp_buf *b, const char *s) {
    size_t n = 0;
    while (s[n] != 0) {
        n++;
    }
    rp_put_n(b, s, n);
}

void rp_put_u64(struct rp_buf *b, uint64_t v) {
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && b->len + 1 < b->cap) {
        b->data[b->len++] = digits[--n];
    }
}

const char *rp_done(struct rp_buf *b) {
    b->data[b->len < b->cap ? b->len : b->cap - 1] = 0;
    return b->data;
}

static char toml_error[256];

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }
static int is_bare(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

static const char *line_error(uint64_t line, const char *what, const char *key, size_t key_len) {
    struct rp_buf b = {toml_error, sizeof toml_error, 0};
    rp_put(&b, "line ");
    rp_put_u64(&b, line);
    if (key != 0) {
        rp_put(&b, " (`");
        rp_put_n(&b, key, key_len);
        rp_put(&b, "`)");
    }
    rp_put(&b, ": ");
    rp_put(&b, what);
    return rp_done(&b);
}

const char *rp_toml_each(const char *text, size_t len,
                         const char *(*on_key)(void *ctx, const char *key, size_t key_len,
                                               const struct rp_toml_value *value),
                         void *ctx) {
    size_t i = 0;
    uint64_t line = 0;
    while (i < len) {
        line++;
        size_t end = i;
        while (end < len && text[end] != '\n') {
            end++;
        }
        size_t p = i;
        i = end + 1;
        while (p < end && is_space(text[p])) {
            p++;
        }
        if (p == end || text[p] == '#') {
            continue;
        }
        if (text[p] == '[') {
            return line_error(line, "tables are not part of a policy config", 0, 0);
        }
        size_t key = p;
        while (p < end && is_bare(text[p])) {
            p++;
        }
        size_t key_len = p - key;
        if (key_len == 0) {
            return line_error(line, "expected a key", 0, 0);
        }
        while (p < end && is_space(text[p])) {
            p++;
        }
        if (p == end || text[p] != '=') {
            return line_error(line, "expected `=` after the key", text + key, key_len);
        }
        p++;
        while (p < end && is_space(text[p])) {
            p++;
        }
        struct rp_toml_value v = {RP_TOML_INT, 0, 0, 0};
        if (p < end && text[p] == '"') {
            size_t s = ++p;
            while (p < end && text[p] != '"' && text[p] != '\\') {
                p++;
            }
            if (p == end || text[p] != '"') {
                return line_error(line, "an unterminated (or escaped) string", text + key, key_len);
            }
            v.type = RP_TOML_STRING;
            v.str = text + s;
            v.str_len = p - s;
            p++;
        } else if (end - p >= 4 && rp_eq(text + p, 4, "true")) {
            v.type = RP_TOML_BOOL;
            v.integer = 1;
            p += 4;
        } else if (end - p >= 5 && rp_eq(text + p, 5, "false")) {
            v.type = RP_TOML_BOOL;
            p += 5;
        } else if (p < end && text[p] >= '0' && text[p] <= '9') {
            uint64_t n = 0;
            while (p < end && ((text[p] >= '0' && text[p] <= '9') || text[p] == '_')) {
                if (text[p] != '_') {
                    uint64_t d = (uint64_t)(text[p] - '0');
                    if (n > (UINT64_MAX - d) / 10) {
                        return line_error(line, "the number is too large", text + key, key_len);
                    }
                    n = n * 10 + d;
                }
                p++;
            }
            v.integer = n;
        } else {
            return line_error(line, "expected a non-negative integer, a \"string\" or a boolean",
                              text + key, key_len);
        }
        while (p < end && is_space(text[p])) {
            p++;
        }
        if (p < end && text[p] != '#') {
            return line_error(line, "unexpected text after the value", text + key, key_len);
        }
        const char *err = on_key(ctx, text + key, key_len, &v);
        if (err != 0) {
            return line_error(line, err, text + key, key_len);
        }
    }
    return 0;
}
