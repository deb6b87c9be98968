/* Native tests of policies/disk-guard.c. */
#include "check.h"

int main(void) {
    struct rp_log_facts log;
    struct rp_snapshot_facts snap;
    struct rp_decision d;

    const char *e = configure("low_free_bytes = 10\ncritical_free_bytes = 20");
    CHECK(e != NULL && strstr(e, "critical_free_bytes") != NULL);
    e = configure("urgent = 1");
    CHECK(e != NULL && strstr(e, "urgent") != NULL);
    CHECK(configure("snapshot_every = 1000\nkeep_entries = 500\nlow_free_bytes = 1_000_000\n"
                    "critical_free_bytes = 100_000\n") == NULL);

    /* Plenty of room: like `entries`. */
    facts(&log, &snap, 1, 5000, 10);
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(!d.snapshot && !d.has_retain && d.next_check_ms == 1000);
    CHECK(d.purge_up_to.has && d.purge_up_to.value == 4500);

    /* Low: snapshot now, a short tail, two snapshots, ask again soon. */
    log.disk_free_bytes = 500000;
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(d.snapshot && d.kind == RP_FULL);
    CHECK(d.purge_up_to.has && d.purge_up_to.value == 4950);
    CHECK(d.has_retain && d.retain_snapshots == 2 && d.next_check_ms == 100);
    CHECK(strncmp(d.reason, "low disk: ", 10) == 0);

    /* Critical: no tail, one snapshot. */
    log.disk_free_bytes = 50000;
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(d.purge_up_to.has && d.purge_up_to.value == 5000);
    CHECK(d.has_retain && d.retain_snapshots == 1);

    /* Nothing changed since the snapshot: nothing to build, even when low. */
    facts(&log, &snap, 1, 5000, 0);
    log.disk_free_bytes = 50000;
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(!d.snapshot);

    return finish("disk-guard");
}
