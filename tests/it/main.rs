//! Integration tests: the real `kura` binary against temporary repositories.
//!
//! `util` holds the shared helpers; each other module covers one area.

mod backend;
mod concurrent;
mod corruption;
mod crash;
mod dedup;
mod errors;
mod forget;
mod help;
mod keys;
mod listing;
mod partial;
mod passphrase;
mod prune;
mod repair;
mod rotation;
mod roundtrip;
mod s3;
mod servers;
mod traversal;
mod util;
