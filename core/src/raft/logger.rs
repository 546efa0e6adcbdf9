//! Bridges raft-rs's slog output into `tracing` (target `raft`).

use std::fmt::Write as _;

use slog::{Drain, Level, OwnedKVList, Record};

use crate::ids::{GroupId, NodeId};

struct TracingDrain;

struct Kv(String);

impl slog::Serializer for Kv {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        use slog::KV as _;
        let mut kv = Kv(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = record.msg();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{}", kv.0),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{}", kv.0),
            Level::Info => tracing::info!(target: "raft", "{msg}{}", kv.0),
            Level::Debug => tracing::debug!(target: "raft", "{msg}{}", kv.0),
            Level::Trace => tracing::trace!(target: "raft", "{msg}{}", kv.0),
        }
        Ok(())
    }
}

/// A raft-rs logger that writes through `tracing`, tagged with node and group.
pub(crate) fn logger(node: NodeId, group: GroupId) -> slog::Logger {
    slog::Logger::root(
        TracingDrain.fuse(),
        slog::o!("node" => node, "group" => group.0),
    )
}
