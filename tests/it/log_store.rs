//! The redb log store: openraft's storage Suite, crash safety, purge under
//! load, damaged files.

use openraft::testing::{StoreBuilder, Suite};
use ramrod::log_store::{Durability, LogStore};
use ramrod::raft::{StorageError, TypeConfig};
use ramrod::state_machine::MemStateMachine;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, MemStateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, MemStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LogStore::open(dir.path(), Durability::Durable).expect("open log store");
        Ok((dir, store, MemStateMachine::new()))
    }
}

/// openraft's own storage test suite, against our log store and state machine.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
