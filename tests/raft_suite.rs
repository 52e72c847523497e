//! openraft's storage test suite against Roster's RocksDB stores and state machine.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use roster::machine::RosterMachine;
use roster_raft::TypeConfig;
use roster_storage::{LogStore, StateMachineStore};
use tempfile::TempDir;

struct Builder;

type Ls = LogStore<TypeConfig>;
type Sm = StateMachineStore<TypeConfig, RosterMachine>;

impl StoreBuilder<TypeConfig, Ls, Sm, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, Ls, Sm), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = roster_storage::open(&dir.path().join("db")).expect("open rocksdb");
        let (machine, _handle) = RosterMachine::new();
        let sm = StateMachineStore::open(db.clone(), machine, dir.path().join("snapshots")).expect("open state machine");
        Ok((dir, LogStore::new_unguarded_for_tests(db), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
