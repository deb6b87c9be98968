/* A tiny test harness for the C policies' native tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ramrod_policy.h"

static int failures;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                            \
        }                                                                          \
    } while (0)

static const char *configure(const char *toml) { return policy_configure(toml, strlen(toml)); }

/* A leader with a snapshot at `snapshot` and `since` entries after it. */
static void facts(struct rp_log_facts *log, struct rp_snapshot_facts *snap, uint64_t first,
                  uint64_t snapshot, uint64_t since) {
    memset(log, 0, sizeof *log);
    memset(snap, 0, sizeof *snap);
    log->role = RP_LEADER;
    log->first_index = first;
    log->last_index = log->committed = log->applied = snapshot + since;
    log->entries = log->last_index - first + 1;
    log->disk_free_bytes = 100ull << 30;
    snap->last_index.has = snapshot > 0;
    snap->last_index.value = snapshot;
    snap->entries_since = since;
    snap->chain_length = snapshot > 0;
}

static int finish(const char *name) {
    if (failures != 0) {
        fprintf(stderr, "%s: %d checks failed\n", name, failures);
        return EXIT_FAILURE;
    }
    printf("%s: ok\n", name);
    return EXIT_SUCCESS;
}
