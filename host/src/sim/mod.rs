//! What would this policy have done? Record a workload trace from a node
//! ([`trace::record`]), replay it against a model of the log, the snapshot
//! chain and snapshot builds calibrated from the same trace, with real
//! policy components deciding ([`model::simulate`]), and compare them in a
//! report ([`report`]). `ramrod trace record` and `ramrod policy simulate`
//! are the command-line side.
//!
//! The model is the controller's loop without Raft: appends from the trace,
//! spread over each interval; a decision when the policy's next check comes
//! round or a build finishes, clamped by the same [`PolicyHost`] a node
//! runs (so the same safety rules and fallbacks apply); a build takes the
//! bytes it would write (the state's, or the changed keys', times the
//! compression the trace shows) at the node's measured build rate; purges
//! drop the log's head. What it leaves out: Raft's own timing, real I/O
//! contention, installs on followers.
//!
//! [`PolicyHost`]: crate::policy::PolicyHost

pub mod model;
pub mod report;
pub mod trace;

pub use model::{Calibration, Point, SimConfig, SimResult, simulate};
pub use report::Recorded;
pub use trace::{Sample, Trace, TraceError, TraceHeader, record};
