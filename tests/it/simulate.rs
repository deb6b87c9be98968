//! The simulator agrees with reality: a trace recorded from a real node
//! running a policy under writes, replayed with the same policy, gives the
//! snapshot count and log size the node had, within a stated tolerance;
//! the report has its table and charts; bad traces are refused by line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use ramrod::internals::raft::Request;
use ramrod::sdk::Bounds;
use ramrod::sim::{Recorded, SimConfig, Trace, TraceError, report, simulate};
use ramrod::{PolicyHost, PolicySource};

use crate::cluster::{TOKEN, leader};
use crate::compaction::start_with;
use crate::support::runtime;

const CONFIG: &str = "snapshot_every = 400\nkeep_entries = 100\ncheck_ms = 200";

#[test]
fn a_simulation_of_a_recorded_run_matches_what_the_node_did() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, _ports) = start_with(dir.path(), "entries", CONFIG).await;
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        // A steady workload: 4 writers over 2,000 keys, for the whole
        // recording.
        let stop = Arc::new(AtomicBool::new(false));
        let raft = lead.internals().raft.clone();
        let writes = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    futures_util::stream::iter(i..i + 4)
                        .map(|k| {
                            let raft = raft.clone();
                            async move {
                                raft.client_write(Request::put(
                                    format!("k/{:04}", k % 2000),
                                    vec![b'v'; 300],
                                ))
                                .await
                                .expect("write acknowledged")
                            }
                        })
                        .buffer_unordered(4)
                        .for_each(|_| async {})
                        .await;
                    i += 4;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let client = ramrod::client::Client::new(&format!("http://{}", lead.addr().unwrap()))
            .unwrap()
            .with_token(TOKEN);
        let mut out = Vec::new();
        let n = ramrod::sim::record(
            &client,
            Duration::from_millis(250),
            Duration::from_secs(12),
            &mut out,
        )
        .await
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        writes.await.unwrap();
        for node in nodes {
            node.shutdown().await;
        }
        assert!(n >= 40, "{n} samples");
        let trace = Trace::read(&out[..]).unwrap();
        assert_eq!(trace.samples.len(), n);
        assert_eq!(trace.header.policy, "entries");
        let real = Recorded::of(&trace);
        let real_snapshots = real.snapshots_full + real.snapshots_incremental;
        assert!(
            real_snapshots >= 4,
            "the node made {real_snapshots} snapshots"
        );

        // The same policy, on the node's bounds.
        let host = PolicyHost::new(runtime(), Bounds::default(), "").unwrap();
        host.swap(&PolicySource::Builtin("entries".into()), CONFIG)
            .unwrap();
        let cfg = SimConfig::default();
        let sim = simulate(&trace, &host, &cfg);
        assert_eq!(sim.fallbacks, 0);
        assert!(sim.decisions > 0);
        let sim_snapshots = sim.snapshots_full + sim.snapshots_incremental;
        // Tolerances. Snapshots: 25% (at least 2). The node decides every
        // `check_ms` on live facts, the model on 50 ms steps of 250 ms
        // samples whose appends it spreads evenly, so a threshold is
        // crossed up to a step apart, and the first and last snapshots of
        // the window can fall on either side of its ends. Log size: 35%
        // plus 100 entries. The node purges only once openraft has taken
        // the snapshot and its index commit has caught up, the model at
        // once, so the real log runs a little longer.
        let slack = (real_snapshots as f64 * 0.25).max(2.0);
        assert!(
            (sim_snapshots as f64 - real_snapshots as f64).abs() <= slack,
            "snapshots: simulated {sim_snapshots}, real {real_snapshots}"
        );
        let (_, sim_mean) = sim.log_entries();
        let real_mean = real.log_entries.1;
        eprintln!(
            "snapshots: simulated {sim_snapshots}, real {real_snapshots}; mean log entries: \
             simulated {sim_mean:.0}, real {real_mean:.0}"
        );
        assert!(
            (sim_mean - real_mean).abs() <= real_mean * 0.35 + 100.0,
            "mean log entries: simulated {sim_mean:.0}, real {real_mean:.0}"
        );

        // The report: the table names each policy and the node; the page
        // has its four charts.
        let table = report::table(&trace, std::slice::from_ref(&sim), cfg.away_ms);
        assert!(table.contains("| entries |"), "{table}");
        assert!(table.contains("the recorded node (entries)"), "{table}");
        let cal = ramrod::sim::Calibration::of(&trace, &cfg);
        let page = report::html(&trace, std::slice::from_ref(&sim), &cal, cfg.away_ms);
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(
            page.contains("Log size") && page.contains("polyline"),
            "no lines drawn"
        );
    });
}

#[test]
fn a_bad_trace_is_refused_naming_the_line() {
    let header = r#"{"ramrod_trace":1,"node":"n","node_id":1,"interval_ms":1000,"started_unix_ms":0,"policy":"entries","policy_config":"","restore_bytes_per_s":null,"replay_entries_per_s":null}"#;
    let sample = |t: u64| {
        format!(
            r#"{{"t_ms":{t},"appended_entries":1,"appended_bytes":1,"keys_changed":1,"state_keys":1,"state_bytes":1,"followers":[],"disk_free_bytes":1,"build_ms":0,"snapshot_bytes":0,"snapshots_full":0,"snapshots_incremental":0,"log_entries":1,"log_bytes":1,"chain_length":0}}"#
        )
    };
    let read = |text: String| Trace::read(text.as_bytes());
    let good = read(format!("{header}\n{}\n{}\n", sample(1000), sample(2000))).unwrap();
    assert_eq!(good.samples.len(), 2);
    for (text, line, want) in [
        (String::new(), 1, "empty"),
        ("{}".to_string(), 1, "header"),
        (header.replace(":1,\"node\"", ":7,\"node\""), 1, "format 7"),
        (
            format!("{header}\n{}\nnot json", sample(1000)),
            3,
            "not a sample",
        ),
        (
            format!("{header}\n{}\n{}", sample(2000), sample(1000)),
            3,
            "does not follow",
        ),
        (
            format!("{header}\n{}", sample(1000).replace("\"t_ms\"", "\"tms\"")),
            2,
            "tms",
        ),
    ] {
        match read(text) {
            Err(TraceError::Format { line: l, reason }) => {
                assert_eq!(l, line, "{reason}");
                assert!(reason.contains(want), "{reason}");
            }
            other => panic!("{want}: {other:?}"),
        }
    }
}
