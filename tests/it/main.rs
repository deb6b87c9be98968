//! ramrod's integration tests: one binary, one module per feature.

mod policy;
mod support;
