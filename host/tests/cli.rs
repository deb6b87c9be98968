//! The `ramrod` command line, run as a user would.

use std::process::{Command, Output};

use ramrod::internals::harness::{ClusterSpec, ProcessCluster};

fn ramrod(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ramrod"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("running ramrod")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    format!(
        "{}/../policies/fixtures/dist/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn config(dir: &tempfile::TempDir, body: &str) -> String {
    let p = dir.path().join("config.toml");
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn check_a_builtin_shows_every_scenario() {
    let o = ramrod(&["policy", "check", "adaptive", "--calls", "3"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for s in [
        "fresh",
        "idle",
        "steady",
        "burst",
        "lagging-follower",
        "snapshot-in-flight",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(s)),
            "no line for {s}:\n{out}"
        );
    }
    assert!(
        out.contains("imports nothing") && out.contains("nothing clamped"),
        "{out}"
    );
}

#[test]
fn check_rejects_a_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let o = ramrod(&[
        "policy",
        "check",
        "entries",
        "--config",
        &config(&dir, "snapshot_every = 10\nkeep_entires = 5\n"),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("keep_entires") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn check_rejects_what_is_not_a_policy() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = config(&dir, "hello");
    for (file, says) in [
        (not_wasm.as_str(), "not WebAssembly"),
        (&fixture("wrong-version.wasm"), "policy@0.2.0"),
        (
            &fixture("wrong-world.wasm"),
            "does not implement `ramrod:policy/policy@0.1.0`",
        ),
        ("no-such-file.wasm", "no-such-file.wasm"),
    ] {
        let o = ramrod(&["policy", "check", file]);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{file}");
        assert!(err.contains(says), "{file}: {err}");
    }
}

#[test]
fn check_fails_on_a_policy_that_traps_or_needs_clamping() {
    let dir = tempfile::tempdir().unwrap();
    let o = ramrod(&[
        "policy",
        "check",
        &fixture("hostile.wasm"),
        "--config",
        &config(&dir, "behavior = \"panic\""),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("failed on the `fresh` scenario") && err.contains("trap"),
        "{err}"
    );

    let o = ramrod(&[
        "policy",
        "check",
        &fixture("hostile.wasm"),
        "--config",
        &config(&dir, "behavior = \"purge-past\""),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(
        err.contains("purge-up-to 18446744073709551615 lowered to 1010000"),
        "{err}"
    );
}

/// `policy check` shows each scenario's peak fuel and memory and the
/// limits the policy needs, and a second run loads the compiled component
/// from its cache.
#[test]
fn check_reports_peaks_and_reuses_its_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache").display().to_string();
    let run = || {
        let o = ramrod(&[
            "policy",
            "check",
            "entries",
            "--calls",
            "3",
            "--cache-dir",
            &cache,
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        out
    };
    let first = run();
    assert!(
        first.contains("peak fuel") && first.contains("peak KiB"),
        "{first}"
    );
    assert!(first.contains("needs: fuel-per-call >= "), "{first}");
    assert!(first.contains("(Compiled)"), "{first}");
    let second = run();
    assert!(
        second.contains("(Disk)"),
        "the second run compiled again: {second}"
    );
}

#[test]
fn check_runs_a_wasi_guest_without_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, "behavior = \"probe-wasi\"");
    let o = ramrod(&[
        "policy",
        "check",
        &fixture("hostile-wasi.wasm"),
        "--config",
        &cfg,
        "--calls",
        "1",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("linked with no capabilities") && out.contains("env=0 read=denied"),
        "{out}"
    );
}

/// A log store in `dir` with a vote of `term` (node 2), entries 1..=`n` and
/// entries up to `purge` purged (none if 0).
fn log_store_in(dir: &std::path::Path, term: u64, n: u64, purge: u64) {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use ramrod::internals::log_store::{Durability, LogStore};
    use ramrod::internals::raft::{Entry, LogId, Request, Vote};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store = LogStore::open(dir, Durability::Durable).unwrap();
        store.save_vote(&Vote::new(term, 2)).await.unwrap();
        let id = |i| LogId::new(openraft::CommittedLeaderId::new(term, 2), i);
        let entries: Vec<Entry> = (1..=n)
            .map(|i| Entry {
                log_id: id(i),
                payload: openraft::EntryPayload::Normal(Request::put(vec![i as u8], vec![0; 10])),
            })
            .collect();
        store.blocking_append(entries).await.unwrap();
        if purge > 0 {
            store.purge(id(purge)).await.unwrap();
        }
    });
}

#[test]
fn log_inspect_reports_the_store() {
    let dir = tempfile::tempdir().unwrap();
    log_store_in(dir.path(), 4, 10, 3);

    let d = dir.path().display().to_string();
    let o = ramrod(&["log", "inspect", "--data-dir", &d]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("first index   4") && out.contains("entries       7"),
        "{out}"
    );
    let o = ramrod(&["log", "inspect", "--data-dir", &d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"], 7);
    assert_eq!(v["last_log_id"]["index"], 10);
    assert!(v["disk_bytes"].as_u64().unwrap() > 0);

    let o = ramrod(&["log", "inspect", "--data-dir", "no/such/dir"]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("no/such/dir does not exist"),
        "{err}"
    );
    // A damaged index: rebuilt from the segments, and said so.
    std::fs::write(dir.path().join("raft-log.redb"), b"not a database").unwrap();
    let o = ramrod(&["log", "inspect", "--data-dir", &d]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        err.contains("rebuilt it from the segments") && err.contains("raft-log.redb.damaged-"),
        "{err}"
    );
    assert!(
        out.contains("first index   4") && out.contains("entries       7"),
        "{out}"
    );
    // Nothing to rebuild from: an error naming the file.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("raft-log.redb"), b"not a database").unwrap();
    let o = ramrod(&[
        "log",
        "inspect",
        "--data-dir",
        &empty.path().display().to_string(),
    ]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("raft-log.redb"),
        "{err}"
    );
}

/// `ramrod log discard` moves a log store aside and keeps its vote in a
/// fresh one; a directory without a log store is refused.
#[test]
fn log_discard_keeps_the_vote() {
    let dir = tempfile::tempdir().unwrap();
    log_store_in(dir.path(), 6, 5, 0);
    let d = dir.path().display().to_string();
    let o = ramrod(&["log", "discard", "--data-dir", &d]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("kept the vote") && out.contains("index 5"),
        "{out}"
    );
    assert_eq!(ramrod::internals::log_store::discards(dir.path()), 1);
    let o = ramrod(&["log", "inspect", "--data-dir", &d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"], 0);
    assert_eq!(v["vote"]["leader_id"]["term"], 6, "{v}");
    let empty = tempfile::tempdir().unwrap();
    let o = ramrod(&[
        "log",
        "discard",
        "--data-dir",
        &empty.path().display().to_string(),
    ]);
    assert!(!o.status.success() && text(&o).1.contains("holds no log store"));
}

/// `ramrod snapshot list|verify|restore` on a store with a chain of three
/// snapshots, then with its newest delta damaged.
#[test]
fn snapshot_list_verify_restore() {
    use openraft::storage::RaftStateMachine;
    use ramrod::internals::raft::{Entry, LogId, Request};
    use ramrod::internals::snapshot::{SnapshotConfig, SnapshotKind};

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (hash, newest_delta) = rt.block_on(async {
        let (mut sm, _) = ramrod::internals::state_machine::open_in_dir(
            dir.path(),
            "node-1",
            SnapshotConfig::default(),
        )
        .await
        .unwrap();
        let mut last = None;
        for (i, kind) in [
            SnapshotKind::Full,
            SnapshotKind::Incremental,
            SnapshotKind::Incremental,
        ]
        .into_iter()
        .enumerate()
        {
            let entries: Vec<Entry> = (0..10u64)
                .map(|j| {
                    let index = i as u64 * 10 + j + 1;
                    Entry {
                        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
                        payload: openraft::EntryPayload::Normal(Request::put(
                            format!("vm/{index:03}"),
                            format!("spec {index}"),
                        )),
                    }
                })
                .collect();
            sm.apply(entries).await.unwrap();
            last = Some(sm.build(Some(kind)).await.unwrap());
        }
        let m = last.unwrap();
        (
            sm.state_hash(),
            m.deltas.last().unwrap().segments[0].name.clone(),
        )
    });
    let d = dir.path().display().to_string();

    let o = ramrod(&["snapshot", "list", "--store", &d]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("group node-1") && out.matches("incremental").count() == 2,
        "{out}"
    );

    let o = ramrod(&["snapshot", "verify", "--store", &d]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("3 snapshots, 0 damaged"), "{out}");

    let restored = dir.path().join("restored");
    let r = restored.display().to_string();
    let o = ramrod(&["snapshot", "restore", "--store", &d, "--out", &r]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("keys       30") && out.contains(&hash),
        "{out}"
    );
    let lines = std::fs::read_to_string(restored.join("state.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 30);
    let line: serde_json::Value = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["key"] == "vm/030")
        .unwrap_or_else(|| panic!("{lines}"));
    assert_eq!(line["value"], "spec 30", "{line}");
    assert_eq!(line["version"], 1, "{line}");
    assert!(line["mod_revision"].as_u64().unwrap() > 0, "{line}");

    // Damage the newest delta: verify fails, restore falls back (exit 2).
    let seg = dir.path().join("segments").join(&newest_delta);
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let o = ramrod(&["snapshot", "verify", "--store", &d]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("DAMAGED") && out.contains("1 damaged"),
        "{out}"
    );
    let o = ramrod(&["snapshot", "restore", "--store", &d]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(
        out.contains("keys       20") && err.contains("skipped"),
        "{out}\n{err}"
    );

    let missing = dir.path().join("no-such-store").display().to_string();
    let o = ramrod(&["snapshot", "list", "--store", &missing]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("no-such-store") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        !dir.path().join("no-such-store").exists(),
        "a missing store is not created"
    );
}

/// Starts `ramrod serve` for a one-node cluster with `token` and `extra`
/// config (tables); returns the cluster (stopped on drop) and the node's URL.
fn serve_one(dir: &tempfile::TempDir, token: &str, extra: &str) -> (ProcessCluster, String) {
    let spec = ClusterSpec {
        nodes: 1,
        token: token.into(),
        extra_toml: extra.into(),
        rust_log: "info".into(),
        log_files: true,
        ..ClusterSpec::default()
    };
    let mut c =
        ProcessCluster::new(env!("CARGO_BIN_EXE_ramrod").as_ref(), dir.path(), spec).unwrap();
    c.start(1).unwrap();
    let url = c.url(1);
    (c, url)
}

/// `ramrod serve` runs a single-node cluster; `ramrod status` and `ramrod
/// members` read it with the right token, and are refused without it.
#[test]
fn serve_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve_one(&dir, "test-token-123", "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let o = ramrod(&[
            "status",
            "--node",
            &url,
            "--token",
            "test-token-123",
            "--json",
        ]);
        if o.status.success() {
            // `status --json` prints the node's `Status`, whole.
            let v: ramrod::Status = serde_json::from_slice(&o.stdout).unwrap();
            if v.is_leader() {
                break v;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node never led: {}",
            text(&o).1
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(out.id, 1);
    assert!(dir.path().join("node-1").join("raft-log.redb").exists());
    // Its log, written to a file, is plain text: no colour escapes.
    let log = std::fs::read_to_string(dir.path().join("node-1.log")).unwrap();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour escapes in a log file: {log:?}"
    );

    // `ramrod members`: list, and changes refused with what is wrong.
    let o = ramrod(&[
        "members",
        "list",
        "--node",
        &url,
        "--token",
        "test-token-123",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("leader   1") && out.contains("voter    1 127.0.0.1:"),
        "{out}"
    );
    let o = ramrod(&[
        "members",
        "remove",
        "--node",
        &url,
        "--token",
        "test-token-123",
        "--id",
        "1",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("last voter"), "{err}");
    let o = ramrod(&[
        "members",
        "add",
        "--node",
        &url,
        "--token",
        "test-token-123",
        "--id",
        "2",
        "--addr",
        "nowhere",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("addr"), "{err}");

    let o = ramrod(&["status", "--node", &url, "--token", "wrong-token-999"]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("401"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_ramrod"))
        .args(["status", "--node", &url])
        .env_remove("RAMROD_TOKEN")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("no token"), "{err}");
}

/// `ramrod policy swap` changes a running node's policy (locally, and
/// cluster-wide through the log), refuses what does not load, and
/// `ramrod policy decisions` shows the audit log.
#[test]
fn policy_swap_and_decisions_on_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve_one(
        &dir,
        "t0k-t0k-t0k",
        "\n[policy]\nname = \"entries\"\nmax-upload-bytes = 1048576\n",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let policy_of = || {
        let o = ramrod(&["status", "--node", &url, "--token", "t0k-t0k-t0k", "--json"]);
        o.status
            .success()
            .then(|| serde_json::from_slice::<ramrod::Status>(&o.stdout).unwrap())
    };
    while policy_of().is_none_or(|v| !v.is_leader()) {
        assert!(std::time::Instant::now() < deadline, "the node never led");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(policy_of().unwrap().policy.name, "entries");
    // `ramrod policy VERB --node URL --token T ARGS...`
    let policy = |verb: &str, args: &[&str]| {
        let mut all = vec!["policy", verb, "--node", &url, "--token", "t0k-t0k-t0k"];
        all.extend_from_slice(args);
        ramrod(&all)
    };

    let o = policy("swap", &["adaptive"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("this node only"), "{out}");
    let v = policy_of().unwrap();
    assert_eq!(v.policy.name, "adaptive");
    assert_eq!(v.policy.origin, "local");

    // Over the node's limit: refused before any upload, with the limit
    // (not a broken pipe mid-upload).
    let big = dir.path().join("big.wasm");
    std::fs::write(&big, vec![0u8; (1 << 20) + 1]).unwrap();
    let o = policy("swap", &["--cluster", &big.display().to_string()]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        err.contains("accepts policies of at most 1048576 bytes") && err.contains("not uploaded"),
        "{err}"
    );

    let o = policy("swap", &["--cluster", &fixture("wrong-world.wasm")]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(err.contains("refused"), "{err}");

    let o = policy("swap", &["--cluster", "bytes-or-age"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("at log index"), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while policy_of().unwrap().policy.origin != "rollout" {
        assert!(
            std::time::Instant::now() < deadline,
            "the rollout never applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(policy_of().unwrap().policy.name, "bytes-or-age");

    let o = policy("decisions", &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("entries") || out.contains("adaptive"), "{out}");
}

/// `ramrod demo` runs a short cluster session end to end: hot swap, kill -9
/// and restart, and the final check of every acknowledged write.
#[test]
fn the_demo_runs_and_verifies_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let o = ramrod(&["demo", "--seconds", "16", "--dir", data.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for needle in [
        ">>> hot swap: rolled out bytes-or-age",
        ">>> kill -9 node",
        ">>> restarting node",
        "recovered",
        "every acknowledged write is on every node",
        "policy bytes-or-age from rollout",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from\n{out}");
    }
    // The log was compacted: the nodes that ran throughout purged entries.
    let purging = out
        .lines()
        .filter(|l| l.trim_start().starts_with("node ") && l.contains(" entries purged"))
        .filter_map(|l| {
            let before = l.split(" entries purged").next()?;
            before.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .filter(|&n| n > 0)
        .count();
    assert!(purging >= 2, "fewer than two nodes purged:\n{out}");
}

/// `ramrod trace record` writes a trace of a running node that `ramrod
/// policy simulate` replays into a table and an HTML report; bad input is
/// refused with what is wrong.
#[test]
fn trace_record_then_simulate() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve_one(&dir, "tr4ce-t0ken", "\n[policy]\nname = \"entries\"\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ramrod(&["status", "--node", &url, "--token", "tr4ce-t0ken"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let trace = dir.path().join("trace.jsonl");
    let o = ramrod(&[
        "trace",
        "record",
        "--node",
        &url,
        "--token",
        "tr4ce-t0ken",
        "--seconds",
        "2",
        "--interval-ms",
        "200",
        "--out",
        &trace.display().to_string(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(err.contains("recorded"), "{err}");
    let lines = std::fs::read_to_string(&trace).unwrap();
    assert!(lines.lines().count() >= 8, "{lines}");

    let report = dir.path().join("report.html");
    let o = ramrod(&[
        "policy",
        "simulate",
        "--trace",
        &trace.display().to_string(),
        "--out",
        &report.display().to_string(),
        "entries",
        "adaptive",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("| entries |") && out.contains("| adaptive |"),
        "{out}"
    );
    assert!(out.contains("the recorded node (entries)"), "{out}");
    let page = std::fs::read_to_string(&report).unwrap();
    assert_eq!(page.matches("<svg").count(), 4);

    // More configs than policies; a trace that is not one.
    let o = ramrod(&[
        "policy",
        "simulate",
        "--trace",
        &trace.display().to_string(),
        "--config",
        "-",
        "--config",
        "-",
        "entries",
    ]);
    assert!(
        text(&o).1.contains("2 configs for 1 policies"),
        "{}",
        text(&o).1
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"ramrod_trace\": 2}\n").unwrap();
    let o = ramrod(&[
        "policy",
        "simulate",
        "--trace",
        &bad.display().to_string(),
        "entries",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("line 1"), "{err}");
}

/// `ramrod certs init|node` make a CA and node certificates (keys 0600,
/// nothing replaced); a node serves HTTPS with them, and `ramrod status`
/// reaches it with `RAMROD_CA`, not without.
#[test]
fn certs_then_a_tls_node() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_arg = certs.display().to_string();
    let o = ramrod(&["certs", "init", "--dir", &certs_arg, "--name", "test"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = ramrod(&["certs", "init", "--dir", &certs_arg]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("exists"), "{:?}", text(&o));
    let o = ramrod(&["certs", "node", "--dir", &certs_arg, "--id", "1"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("node-1.ramrod"), "{:?}", text(&o));
    for key in ["ca.key", "node-1.key"] {
        let mode = std::fs::metadata(certs.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let o = ramrod(&["certs", "node", "--dir", &certs_arg, "--id", "1"]);
    assert!(text(&o).1.contains("exists"), "{:?}", text(&o));
    let o = ramrod(&[
        "certs", "node", "--dir", &certs_arg, "--id", "2", "--host", "bad host",
    ]);
    assert!(
        !o.status.success() && text(&o).1.contains("host"),
        "{:?}",
        text(&o)
    );
    let empty = dir.path().join("empty");
    let o = ramrod(&[
        "certs",
        "node",
        "--dir",
        &empty.display().to_string(),
        "--id",
        "2",
    ]);
    assert!(text(&o).1.contains("certs init"), "{:?}", text(&o));

    let extra = format!(
        "\n[tls]\nca-file = \"{0}/ca.pem\"\ncert-file = \"{0}/node-1.pem\"\nkey-file = \"{0}/node-1.key\"\n",
        certs.display()
    );
    let (_server, url) = serve_one(&dir, "tls-t0ken-123", &extra);
    let https = url.replace("http://", "https://");
    let ca = certs.join("ca.pem");
    let status = |with_ca: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ramrod"));
        c.args(["status", "--node", &https, "--token", "tls-t0ken-123"])
            .env("RUST_LOG", "off");
        if with_ca {
            c.env("RAMROD_CA", &ca);
        }
        c.output().unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !status(true).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never answered over HTTPS: {:?}",
            text(&status(true))
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let o = status(false);
    assert!(!o.status.success(), "the system's roots do not know the CA");
    let o = ramrod(&["status", "--node", &url, "--token", "tls-t0ken-123"]);
    assert!(!o.status.success(), "plain HTTP to a TLS port");
}

/// A real storage fault, no failpoint: the node's segment directory is
/// replaced by a file while it runs, so the next segment cannot be made.
/// `ramrod serve` does not stay up with a dead core: it exits with code 3
/// and its log names the cause; started again on a sound directory, it has
/// every acknowledged write.
#[test]
fn serve_exits_3_when_its_storage_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = serve_one(&dir, "f4ult-t0ken", "\n[log]\nsegment-bytes = 65536\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = server.client(1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while client.put("first", b"1".to_vec()).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the node never took a write at {url}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let data = server.dir().join("node-1");
        std::fs::rename(data.join("raft-log"), data.join("raft-log.moved")).unwrap();
        std::fs::write(data.join("raft-log"), b"not a directory").unwrap();
        let mut acked = Vec::new();
        for i in 0..2_000 {
            match client.put(&format!("k/{i:05}"), vec![b'v'; 500]).await {
                Ok(_) => acked.push(i),
                Err(_) => break,
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while server.running(1) {
            assert!(
                std::time::Instant::now() < deadline,
                "the node kept running with a dead core"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(server.exit_status(1).and_then(|s| s.code()), Some(3));
        let log = std::fs::read_to_string(server.dir().join("node-1.log")).unwrap();
        assert!(log.contains("raft-log"), "the cause is named: {log}");

        // The disk is sound again: everything acknowledged is there.
        std::fs::remove_file(data.join("raft-log")).unwrap();
        std::fs::rename(data.join("raft-log.moved"), data.join("raft-log")).unwrap();
        server.start(1).unwrap();
        let client = server.client(1);
        let last = *acked.last().expect("writes before the fault");
        let key = format!("k/{last:05}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(v)) = client.get(&key).await {
                assert_eq!(v.len(), 500);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{key} is lost");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
}
