//! kura: deduplicated, encrypted backups and priority-ordered recovery.
//!
//! This root crate is thin: the binary (`src/main.rs`, `src/cli/`) parses, calls the
//! library and prints. The library is three crates whose graph is the architecture
//! (docs/ARCHITECTURE.md):
//! * `kura_store` (crates/store): the repository, its format and its operations;
//! * `kura_recovery` (crates/recovery): config, plans, incidents, the recovery
//!   engine, state, reports; it depends on the store;
//! * `kura_daemon` (crates/daemon): the scheduler, jobs and control API.
//!
//! Their modules are re-exported here under one name, so that the CLI, the tests,
//! the benches and the fuzzers say `kura::repo` or `kura::plan` wherever a module lives.

pub use kura_agent as agent;
pub use kura_daemon as daemon;
pub use kura_fleet as fleet;
pub use kura_recovery::fleet_dir;
pub use kura_recovery::{config, detect, human, incident, notify, orchestrate, plan, report, schedule, standby, state};
pub use kura_store::{
    backend, backup, check, chunk, clock, compress, crypto, diff, dump, find, forget, host_name, mount, pathmatch,
    progress, prune, repair, replicate, repo, restore, signals, sync, types, user_name,
};
pub use kura_store::{error, Error, Result};

#[doc(hidden)]
pub mod fuzzing;
