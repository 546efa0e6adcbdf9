//! DescribeConfigs: every topic config weir knows with its value, where the
//! value comes from (the topic, the broker's config, a default) and what lies
//! beneath it (synonyms), and this broker's own settings.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::kafka::Context;

use describe_configs_response::{
    DescribeConfigsResourceResult as Entry, DescribeConfigsResult, DescribeConfigsSynonym,
};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Kafka's `ConfigSource`.
mod source {
    pub(super) const DYNAMIC_TOPIC: i8 = 1;
    pub(super) const STATIC_BROKER: i8 = 4;
    pub(super) const DEFAULT: i8 = 5;
}

/// Kafka's `ConfigType`.
mod kind {
    pub(super) const BOOLEAN: i8 = 1;
    pub(super) const STRING: i8 = 2;
    pub(super) const INT: i8 = 3;
    pub(super) const LONG: i8 = 5;
    pub(super) const DOUBLE: i8 = 6;
    pub(super) const LIST: i8 = 7;
}

/// A topic config weir knows: its name, the broker config beneath it, its type,
/// and what it means here.
struct Known {
    name: &'static str,
    broker: &'static str,
    kind: i8,
    doc: &'static str,
}

const KNOWN: &[Known] = &[
    Known {
        name: "cleanup.policy",
        broker: "log.cleanup.policy",
        kind: kind::LIST,
        doc: "delete: old records go by retention.ms and retention.bytes; compact: the cleaner keeps the latest record of each key (docs/compaction.md); both may be listed",
    },
    Known {
        name: "compression.type",
        broker: "compression.type",
        kind: kind::STRING,
        doc: "producer: batches are stored as the producer compressed them",
    },
    Known {
        name: "delete.retention.ms",
        broker: "log.cleaner.delete.retention.ms",
        kind: kind::LONG,
        doc: "compacted topics: tombstones (null values) older than this many milliseconds, by their timestamps, are removed by the cleaner",
    },
    Known {
        name: "max.message.bytes",
        broker: "message.max.bytes",
        kind: kind::INT,
        doc: "the largest record batch accepted (weir's max_batch_bytes)",
    },
    Known {
        name: "message.timestamp.after.max.ms",
        broker: "log.message.timestamp.after.max.ms",
        kind: kind::LONG,
        doc: "how far after the broker's time a record's timestamp may be (CreateTime topics); later ones are refused with INVALID_TIMESTAMP",
    },
    Known {
        name: "message.timestamp.before.max.ms",
        broker: "log.message.timestamp.before.max.ms",
        kind: kind::LONG,
        doc: "how far before the broker's time a record's timestamp may be (CreateTime topics); older ones are refused with INVALID_TIMESTAMP",
    },
    Known {
        name: "message.timestamp.type",
        broker: "log.message.timestamp.type",
        kind: kind::STRING,
        doc: "CreateTime (the producer's) or LogAppendTime (the broker stamps its own time on each batch)",
    },
    Known {
        name: "min.cleanable.dirty.ratio",
        broker: "log.cleaner.min.cleanable.ratio",
        kind: kind::DOUBLE,
        doc: "compacted topics: a partition is cleaned once what was appended since its last cleaning is this share of its cleanable bytes",
    },
    Known {
        name: "min.compaction.lag.ms",
        broker: "log.cleaner.min.compaction.lag.ms",
        kind: kind::LONG,
        doc: "compacted topics: records younger than this many milliseconds are not cleaned",
    },
    Known {
        name: "retention.bytes",
        broker: "log.retention.bytes",
        kind: kind::LONG,
        doc: "a partition's oldest segments are deleted while it holds more than this many bytes (the segment being written stays); -1 keeps any size",
    },
    Known {
        name: "retention.ms",
        broker: "log.retention.ms",
        kind: kind::LONG,
        doc: "records older than this many milliseconds (by their timestamps) are deleted, whole segments at a time; -1 keeps them",
    },
    Known {
        name: "segment.ms",
        broker: "log.roll.ms",
        kind: kind::LONG,
        doc: "the segment being written is rolled once it took its first batch this many milliseconds ago, so that time-based retention can release it (engines that keep segments)",
    },
    Known {
        name: "unclean.leader.election.enable",
        broker: "unclean.leader.election.enable",
        kind: kind::BOOLEAN,
        doc: "false: a partition's leader is elected by Raft and always holds every committed record",
    },
];

/// A broker setting in milliseconds as Kafka shows it: -1 for none.
fn ms_or_none(d: Option<std::time::Duration>) -> i64 {
    d.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The broker's default `retention.ms`, -1 for none.
fn retention_ms(cfg: &weir_core::NodeConfig) -> i64 {
    ms_or_none(cfg.retention)
}

/// The broker's default `retention.bytes`, -1 for none.
fn retention_bytes(cfg: &weir_core::NodeConfig) -> i64 {
    cfg.retention_bytes
        .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))
}

/// A topic config's value when the topic does not set it, and its source.
fn default_of(name: &str, ctx: &Context) -> (String, i8) {
    match name {
        "cleanup.policy" => ("delete".into(), source::DEFAULT),
        "compression.type" => ("producer".into(), source::DEFAULT),
        "max.message.bytes" => (
            ctx.node.max_batch_bytes().to_string(),
            source::STATIC_BROKER,
        ),
        "message.timestamp.type" => ("CreateTime".into(), source::DEFAULT),
        "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => {
            (i64::MAX.to_string(), source::DEFAULT)
        }
        "retention.ms" => (
            retention_ms(ctx.node.config()).to_string(),
            source::STATIC_BROKER,
        ),
        "segment.ms" => (
            ms_or_none(ctx.node.config().segment_ms).to_string(),
            source::STATIC_BROKER,
        ),
        "retention.bytes" => (
            retention_bytes(ctx.node.config()).to_string(),
            source::STATIC_BROKER,
        ),
        "delete.retention.ms" => (
            ms_or_none(Some(ctx.node.config().delete_retention)).to_string(),
            source::STATIC_BROKER,
        ),
        "min.cleanable.dirty.ratio" => (
            ctx.node.config().min_cleanable_dirty_ratio.to_string(),
            source::STATIC_BROKER,
        ),
        "min.compaction.lag.ms" => (
            ms_or_none(Some(ctx.node.config().min_compaction_lag)).to_string(),
            source::STATIC_BROKER,
        ),
        _ => ("false".into(), source::DEFAULT),
    }
}

/// Describes topics (resource type 2) and this broker (type 4).
pub fn describe(req: DescribeConfigsRequest, ctx: &Context) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let res = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let wanted = |k: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
            };
            let described = match r.resource_type {
                TOPIC => topic(r.resource_name.as_str(), &req, ctx),
                BROKER => broker(r.resource_name.as_str(), &req, ctx),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported (2 topic, 4 broker)"),
                )),
            };
            match described {
                Ok(entries) => res.with_configs(
                    entries
                        .into_iter()
                        .filter(|e| wanted(e.name.as_str()))
                        .collect(),
                ),
                Err((e, msg)) => res
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(&msg))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Described = Result<Vec<Entry>, (ResponseError, String)>;

fn entry(name: &str, value: &str, kind: i8, doc: &str, req: &DescribeConfigsRequest) -> Entry {
    Entry::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_config_type(kind)
        .with_documentation(req.include_documentation.then(|| str_bytes(doc)))
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source)
}

fn topic(name: &str, req: &DescribeConfigsRequest, ctx: &Context) -> Described {
    let meta = ctx.node.metadata();
    let Some(t) = meta.topics.get(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("unknown topic {name}"),
        ));
    };
    let mut out = Vec::new();
    for k in KNOWN {
        let (default, default_source) = default_of(k.name, ctx);
        let set = t.configs.get(k.name);
        let (value, source) = match set {
            Some(v) => (v.as_str(), source::DYNAMIC_TOPIC),
            None => (default.as_str(), default_source),
        };
        let mut e = entry(k.name, value, k.kind, k.doc, req).with_config_source(source);
        if req.include_synonyms {
            // In order of precedence: the topic's own value, then the broker's.
            let mut synonyms = Vec::new();
            if let Some(v) = set {
                synonyms.push(synonym(k.name, v, source::DYNAMIC_TOPIC));
            }
            synonyms.push(synonym(k.broker, &default, default_source));
            e = e.with_synonyms(synonyms);
        }
        out.push(e);
    }
    // Configs set on the topic that weir stores but does not act on.
    for (k, v) in &t.configs {
        if KNOWN.iter().all(|known| known.name != k) {
            let doc = match k.as_str() {
                // No broker-wide value: the engine's own segment size applies.
                "segment.bytes" => {
                    "a new segment of this topic's partitions starts when a batch no longer fits in this many bytes (engines that keep segments)"
                }
                _ => "stored with the topic; weir does not act on it",
            };
            let mut e =
                entry(k, v, kind::STRING, doc, req).with_config_source(source::DYNAMIC_TOPIC);
            if req.include_synonyms {
                e = e.with_synonyms(vec![synonym(k, v, source::DYNAMIC_TOPIC)]);
            }
            out.push(e);
        }
    }
    Ok(out)
}

fn broker(name: &str, req: &DescribeConfigsRequest, ctx: &Context) -> Described {
    let id = ctx.node.id().to_string();
    if name.is_empty() {
        // The cluster-wide dynamic defaults: weir has none.
        return Ok(Vec::new());
    }
    if name != id {
        return Err((
            ResponseError::InvalidRequest,
            format!("this is broker {id}: ask broker {name} for its own configs"),
        ));
    }
    let cfg = ctx.node.config();
    let mut settings: Vec<(&str, String, i8, &str)> = vec![
        (
            "broker.id",
            id.clone(),
            kind::INT,
            "this node's id (node_id)",
        ),
        (
            "num.partitions",
            ctx.default_partitions.to_string(),
            kind::INT,
            "partitions of an auto-created topic (default_partitions)",
        ),
        (
            "default.replication.factor",
            ctx.default_replication.to_string(),
            kind::INT,
            "replicas of an auto-created topic (default_replication)",
        ),
        (
            "auto.create.topics.enable",
            ctx.auto_create.to_string(),
            kind::BOOLEAN,
            "whether Metadata and Produce create unknown topics (auto_create_topics)",
        ),
        (
            "message.max.bytes",
            ctx.node.max_batch_bytes().to_string(),
            kind::INT,
            "the largest record batch accepted (max_batch_bytes)",
        ),
        (
            "socket.request.max.bytes",
            ctx.max_request_bytes.to_string(),
            kind::INT,
            "the largest request accepted (max_request_bytes)",
        ),
        (
            "log.retention.ms",
            retention_ms(cfg).to_string(),
            kind::LONG,
            "retention.ms of topics that do not set it (retention_ms)",
        ),
        (
            "log.retention.bytes",
            retention_bytes(cfg).to_string(),
            kind::LONG,
            "retention.bytes of topics that do not set it (retention_bytes)",
        ),
        (
            "log.retention.check.interval.ms",
            cfg.retention_check_interval.as_millis().to_string(),
            kind::LONG,
            "how often partition leaders apply retention (retention_check_interval_ms)",
        ),
        (
            "log.cleaner.io.max.bytes.per.second",
            cfg.cleaner_io_bytes_per_sec
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))
                .to_string(),
            kind::LONG,
            "bytes per second the cleaner of compacted topics reads and writes; -1 unlimited (cleaner_io_bytes_per_sec)",
        ),
        (
            "log.message.timestamp.type",
            "CreateTime".into(),
            kind::STRING,
            "the timestamp type of topics that do not set message.timestamp.type",
        ),
        (
            "leader.replication.throttled.rate",
            cfg.reassignment_bytes_per_sec
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))
                .to_string(),
            kind::LONG,
            "bytes per second of partition snapshots sent to replicas a reassignment adds; -1 unlimited (reassignment_bytes_per_sec)",
        ),
    ];
    if let Some(rack) = &cfg.rack {
        settings.push((
            "broker.rack",
            rack.clone(),
            kind::STRING,
            "this node's rack (rack)",
        ));
    }
    Ok(settings
        .iter()
        .map(|(k, v, ty, doc)| {
            let mut e = entry(k, v, *ty, doc, req)
                .with_config_source(source::STATIC_BROKER)
                .with_read_only(true);
            if req.include_synonyms {
                e = e.with_synonyms(vec![synonym(k, v, source::STATIC_BROKER)]);
            }
            e
        })
        .collect())
}
