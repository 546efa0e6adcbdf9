//! The produce, fetch, offset and admin pipelines a [`Node`](crate::Node) offers
//! (DESIGN.md §6). They know engines and transports only through their traits, and
//! the Kafka protocol not at all: the server's handlers translate.
//!
//! * [`produce`] — validate, check leadership, propose (a synchronous step that
//!   returns a [`ProduceTicket`]), then await the ticket.
//! * [`fetch`] — read partition logs up to the high watermark, long-polling on one
//!   signal for any number of partitions.
//! * [`offsets`] — offset lookups (earliest, latest, by timestamp).
//! * [`topics`] — create and delete topics through the metadata group; the leader,
//!   in-sync replicas and controller as clients are told of them.
//! * [`partitions`] — add partitions to a topic.
//! * [`reassign`] — move a partition's replicas to other nodes.
//! * [`trim`] — delete a partition's oldest records (DeleteRecords, retention).
//! * [`leaders`] — hand leadership over before a graceful stop, and back to
//!   preferred replicas.

pub(crate) mod budget;
pub mod clean;
pub mod fetch;
pub mod leaders;
pub mod offsets;
pub mod partitions;
pub mod produce;
pub mod reassign;
pub mod topics;
pub mod trim;

pub use budget::ProduceCredit;
pub use fetch::{FetchPartition, Fetched};
pub use offsets::{EpochEnd, OffsetSpec};
pub use produce::{Acks, ProduceTicket};
pub use topics::{validate_topic_configs, validate_topic_name};
