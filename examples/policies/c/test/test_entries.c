/* Native tests of policies/entries.c. */
#include "check.h"

int main(void) {
    struct rp_log_facts log;
    struct rp_snapshot_facts snap;
    struct rp_decision d;

    /* Bad configs name the key. */
    const char *e = configure("snapshot_evry = 3");
    CHECK(e != NULL && strstr(e, "snapshot_evry") != NULL);
    e = configure("kind = \"huge\"");
    CHECK(e != NULL && strstr(e, "kind") != NULL);
    e = configure("check_ms = 99999999999");
    CHECK(e != NULL && strstr(e, "check_ms") != NULL);
    e = configure("snapshot_every = 0");
    CHECK(e != NULL && strstr(e, "snapshot_every") != NULL);

    CHECK(configure("# a comment\nsnapshot_every = 1_000\nkeep_entries = 100\n"
                    "kind = \"incremental\"\ncheck_ms = 250\n") == NULL);

    /* Short of the threshold: nothing built, the tail kept. */
    facts(&log, &snap, 1, 5000, 999);
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(!d.snapshot);
    CHECK(d.purge_up_to.has && d.purge_up_to.value == 4900);
    CHECK(d.next_check_ms == 250);
    CHECK(strcmp(d.reason, "999 of 1000 entries") == 0);

    /* At the threshold: an incremental on top of the chain. */
    facts(&log, &snap, 1, 5000, 1000);
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(d.snapshot && d.kind == RP_INCREMENTAL);
    CHECK(strcmp(d.reason, "1000 entries since the last snapshot >= 1000") == 0);

    /* No snapshot yet: the first is full, and nothing can be purged. */
    facts(&log, &snap, 1, 0, 5000);
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(d.snapshot && d.kind == RP_FULL);
    CHECK(!d.purge_up_to.has);

    /* A build in progress: no second one. */
    facts(&log, &snap, 1, 5000, 2000);
    snap.in_progress = 1;
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(!d.snapshot);

    /* A follower receiving a snapshot holds the purge back. */
    struct rp_follower f = {2, {1, 10}, 7000, {1, 3000}};
    facts(&log, &snap, 1, 5000, 10);
    log.followers = &f;
    log.followers_len = 1;
    memset(&d, 0, sizeof d);
    policy_decide(&log, &snap, &d);
    CHECK(d.purge_up_to.has && d.purge_up_to.value == 3000);

    return finish("entries");
}
