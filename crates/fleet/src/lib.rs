//! What the coordinator (kura daemon) and its agents share: the protocol's typed
//! messages and version rule (`proto`), the fleet CA and its certificates (`pki`),
//! enrolment tokens (`token`), the mutual-TLS configurations (`tls`) and the roles
//! with what each may do (`role`). Pure, apart from the crypto; no I/O.
//! See docs/FLEET.md.

pub mod pki;
pub mod proto;
pub mod role;
pub mod tls;
pub mod token;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
}

impl Error {
    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Invalid { what: what.into(), why: why.into() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
