//! Driving TiKV's `raft` crate: one task per group, async-ready persistence through a
//! group-commit writer. See [`driver`] for the rules it keeps.

pub mod driver;
pub(crate) mod fatal;
pub(crate) mod logger;
pub(crate) mod storage;
pub(crate) mod writer;
