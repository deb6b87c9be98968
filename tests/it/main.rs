//! ramrod's integration tests: one binary, one module per feature.

mod catch_up;
mod cluster;
mod compaction;
mod control_plane;
mod embed;
mod fuzz;
mod kits;
mod log_store;
mod membership;
mod policy;
mod recovery;
mod simulate;
mod snapshot;
mod snapshot_store;
mod support;
mod tls;
mod trust;
