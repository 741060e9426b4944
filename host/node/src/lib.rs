//! What a coda node runs with: the applets it serves the flow engine (built-in, an
//! operator's directory, each tenant's uploads from the store), the capabilities each
//! tenant's applets get (its grants and secrets, or a settings file's), its ceilings' bounds
//! on the scheduler and the runtime, and the operator's secrets key and seed. The `coda`
//! binary assembles a node from these; it parses arguments and prints, and decides nothing
//! here. Every "may this tenant's applet do this" is `coda_capabilities::grants`'.

pub mod applets;
pub mod bootstrap;
pub mod ceilings;
pub mod grants;

pub use applets::{DirApplets, ServiceApplets};
pub use bootstrap::{SECRETS_KEY_FILE, secrets_key, seed};
pub use ceilings::CeilingLimits;
pub use grants::StoreGrants;

/// Why a node could not be put together, each with the kind the `coda` binary reports it
/// under ([`SetupError::kind`]); the text names the file or the setting that was wrong.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A settings file (`--grants FILE`) that does not read or is not valid.
    #[error("{0}")]
    InvalidGrants(String),
    /// A secrets key given that is not one.
    #[error("{0}")]
    Usage(String),
    /// A file or the store could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The host itself failed (no randomness for a new key).
    #[error("{0}")]
    Internal(String),
}

impl SetupError {
    pub fn kind(&self) -> &'static str {
        match self {
            SetupError::InvalidGrants(_) => "invalid-grants",
            SetupError::Usage(_) => "usage",
            SetupError::Io(_) => "io",
            SetupError::Internal(_) => "internal",
        }
    }
}
