//! The segment engine's private error type.

use weir_core::Error;

/// What can go wrong inside the segment engine; converted into [`weir_core::Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum SegError {
    #[error("I/O error while {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
    /// Our own state could not be encoded (a bug, never written as empty bytes).
    #[error("{0}")]
    Encode(String),
    /// The file system is full; the partial write was undone, so nothing changed
    /// and the engine stays usable (never poisons).
    #[error("{0}")]
    Full(String),
}

/// An I/O error while `what`: [`SegError::Full`] when it says the disk is full
/// (call it only where the partial write is undone), else [`SegError::Io`].
pub(crate) fn full_or_io(what: String, e: std::io::Error) -> SegError {
    if weir_core::error::is_out_of_space(&e) {
        SegError::Full(format!("{what}: {e}"))
    } else {
        SegError::Io(what, e)
    }
}

impl From<SegError> for Error {
    fn from(e: SegError) -> Self {
        match e {
            SegError::Io(ctx, source) => Error::io(ctx, source),
            SegError::Corrupt(m) => Error::Corrupt(m),
            SegError::Config(m) => Error::Config(m),
            SegError::Encode(m) => Error::Invalid(m),
            SegError::Full(m) => Error::StorageFull(m),
        }
    }
}

/// Adds "while …" context to an I/O result.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SegError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SegError> {
        self.map_err(|e| SegError::Io(what(), e))
    }
}
