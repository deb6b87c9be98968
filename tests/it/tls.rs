//! TLS between nodes and to clients: a cluster under one CA replicates over
//! mutual TLS with no cluster secret; clients reach it over HTTPS with the
//! CA; a peer request without a certificate, with one from another CA, or
//! with another node's certificate is refused and changes nothing; a
//! follower back from downtime installs the leader's snapshot, fetching its
//! segments over TLS.

use std::path::Path;
use std::time::Duration;

use ramrod::client::Client;
use ramrod::internals::node::peer_auth::HEADER;
use ramrod::internals::node::raft_rpc::{CONTENT_TYPE, encode};
use ramrod::internals::node::tls::{CaPem, make_ca, make_node_cert};
use ramrod::{Node, NodeError, TlsConfig};
use ramrod_tests::Ports;

use crate::cluster::leader;
use crate::compaction::{eventually, write_keys};
use crate::trust::{a_segment_of, caught_up, hashes_and_terms};

/// Writes the CA and node `id`'s certificate under `dir`; the `[tls]`
/// files of node `id`.
fn node_files(dir: &Path, ca: &CaPem, id: u64) -> TlsConfig {
    let node = make_node_cert(ca, id, &["127.0.0.1".into()], 30).unwrap();
    let put = |name: String, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    TlsConfig {
        ca_file: put("ca.pem".into(), &ca.cert),
        cert_file: put(format!("node-{id}.pem"), &node.cert),
        key_file: put(format!("node-{id}.key"), &node.key),
    }
}

/// An HTTPS client trusting `ca`, presenting `identity` (a certificate and
/// key, PEM) if given.
fn https(ca: &CaPem, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert.as_bytes()).unwrap()])
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[test]
fn a_tls_cluster_replicates_and_refuses_other_certificates() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        let ca = make_ca("test", 30).unwrap();
        let ports = Ports::bind(3);
        let mut files = std::collections::BTreeMap::new();
        let config = |id: u64, files: &mut std::collections::BTreeMap<u64, TlsConfig>| {
            let mut c = crate::compaction::policy_config(
                id,
                &ports,
                dir.path(),
                "entries",
                "snapshot_every = 500\nkeep_entries = 50\ncheck_ms = 100",
            );
            // TLS only: no cluster secret.
            c.cluster_secret = None;
            c.tls = Some(
                files
                    .entry(id)
                    .or_insert_with(|| node_files(&certs, &ca, id))
                    .clone(),
            );
            c
        };
        let mut nodes: Vec<Node> = Vec::new();
        for id in 1..=3 {
            let c = config(id, &mut files);
            nodes.push(ramrod_tests::start(&ports, c).await.unwrap());
        }
        nodes[0].initialize().await.unwrap();
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
        write_keys(lead, "k/", 100, 4).await;
        let applied = |n: &Node| n.internals().sm.last_applied().map_or(0, |l| l.index);
        let target = applied(lead);
        eventually(Duration::from_secs(10), "replicated over TLS", || {
            nodes.iter().all(|n| applied(n) >= target)
        })
        .await;
        // A snapshot, so a segment is there to ask for.
        lead.snapshot_now(None).await.unwrap();

        // A client with the CA, over HTTPS, sent from a follower to the
        // leader; without the CA, or over plain HTTP, nothing.
        let https_url = |n: &Node, path: &str| format!("https://{}{path}", n.addr().unwrap());
        let client = Client::new(&https_url(follower, ""))
            .unwrap()
            .with_ca_pem(ca.cert.as_bytes())
            .unwrap();
        client.put("over/tls", b"yes".to_vec()).await.unwrap();
        assert_eq!(
            client.get("over/tls").await.unwrap().as_deref(),
            Some(&b"yes"[..])
        );
        let untrusting = Client::new(&https_url(follower, "")).unwrap();
        assert!(
            untrusting.get("over/tls").await.is_err(),
            "the system's roots do not know the cluster CA"
        );
        let plain = Client::new(&format!("http://{}", follower.addr().unwrap())).unwrap();
        assert!(
            plain.get("over/tls").await.is_err(),
            "the port speaks TLS only"
        );
        assert!(
            Client::new("https://127.0.0.1:1")
                .unwrap()
                .with_ca_pem(b"not a certificate")
                .is_err()
        );

        eventually(
            Duration::from_secs(10),
            "the client's write everywhere",
            || {
                let h = hashes_and_terms(&nodes);
                h.iter().all(|x| x.0 == h[0].0)
            },
        )
        .await;
        let before = hashes_and_terms(&nodes);
        let seg_path = format!("/raft/segment/{}", a_segment_of(lead));

        // A forged append from "the leader": a vote of a later term.
        let vote = openraft::Vote::new_committed(before[0].1 + 5, leader_id);
        let forged = encode(&openraft::raft::AppendEntriesRequest::<
            ramrod::internals::raft::TypeConfig,
        > {
            vote,
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        });
        let send = |c: &reqwest::Client, claim: &str| {
            c.post(https_url(follower, "/raft/append"))
                .header(HEADER, claim.to_string())
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(forged.clone())
                .send()
        };
        // No client certificate: 401.
        let anonymous = https(&ca, None);
        let r = send(&anonymous, &leader_id.to_string()).await.unwrap();
        assert_eq!(r.status(), 401);
        let r = anonymous
            .get(https_url(lead, &seg_path))
            .header(HEADER, "2")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "segments need a node's certificate");
        // A certificate from another CA, naming the leader: the handshake
        // fails.
        let other = make_ca("other", 30).unwrap();
        let impostor = make_node_cert(&other, leader_id, &["127.0.0.1".into()], 30).unwrap();
        let foreign = https(&ca, Some((&impostor.cert, &impostor.key)));
        assert!(
            send(&foreign, &leader_id.to_string()).await.is_err(),
            "another CA's certificate"
        );
        // A certificate of the cluster, of node 9, claiming the leader: 403;
        // claiming itself with the leader's vote in the body: 403 too.
        let nine = make_node_cert(&ca, 9, &["127.0.0.1".into()], 30).unwrap();
        let as_nine = https(&ca, Some((&nine.cert, &nine.key)));
        let r = send(&as_nine, &leader_id.to_string()).await.unwrap();
        assert_eq!(r.status(), 403);
        let text = r.text().await.unwrap();
        assert!(text.contains(&format!("not node {leader_id}'s")), "{text}");
        let r = send(&as_nine, "9").await.unwrap();
        assert_eq!(r.status(), 403);
        let text = r.text().await.unwrap();
        assert!(text.contains(&format!("as node {leader_id}")), "{text}");
        // Its own certificate lets node 9 fetch a segment (it is a node of
        // the CA's: membership is not what TLS checks).
        let r = as_nine
            .get(https_url(lead, &seg_path))
            .header(HEADER, "9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // Nothing changed.
        assert_eq!(
            hashes_and_terms(&nodes),
            before,
            "refused requests changed a state or a term"
        );
        write_keys(lead, "after/", 20, 4).await;

        // A follower down while the leader snapshots and purges: back, it
        // installs the leader's snapshot, fetching segments over TLS.
        let down = follower.id();
        let pos = nodes.iter().position(|n| n.id() == down).unwrap();
        ramrod_tests::stop(&ports, nodes.remove(pos)).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        let down_at = applied(lead);
        write_keys(lead, "while-down/", 2_000, 32).await;
        // Past what the follower has: it cannot catch up from the log.
        eventually(Duration::from_secs(30), "the leader purged", || {
            lead.internals().log.stats().first_index > down_at + 100
        })
        .await;
        let back = ramrod_tests::start(&ports, config(down, &mut files))
            .await
            .unwrap();
        caught_up(&back, lead, Duration::from_secs(60)).await;
        let stats = back.internals().sm.stats();
        assert!(stats.installed >= 1 && stats.bytes_fetched > 0, "{stats:?}");
        nodes.push(back);
        for n in nodes {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_node_with_the_wrong_certificate_does_not_start() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca("test", 30).unwrap();
        let ports = Ports::bind(3);
        let mut c = crate::cluster::config(1, &ports, dir.path());
        c.cluster_secret = None;
        // Node 2's files for node 1.
        c.tls = Some(node_files(dir.path(), &ca, 2));
        let e = ramrod_tests::start(&ports, c.clone()).await.unwrap_err();
        assert!(
            matches!(&e, NodeError::Config { reason } if reason.contains("not a valid certificate of node 1")),
            "{e}"
        );
        // Neither TLS nor a secret: refused, naming both.
        c.tls = None;
        let e = ramrod_tests::start(&ports, c).await.unwrap_err();
        assert!(e.to_string().contains("[tls]") && e.to_string().contains("cluster-secret"), "{e}");
    });
}
