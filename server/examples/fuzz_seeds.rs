//! Writes the seed corpora of the fuzz targets in `fuzz/` (valid inputs the fuzzer
//! mutates from), into `fuzz/corpus/<target>/seed-*`:
//!
//! ```text
//! cargo run -p weir-server --features transport-tcp --example fuzz_seeds
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use weir_core::batch::BatchBuilder;
use weir_core::eraftpb::{Entry, HardState, Message, MessageType};
use weir_core::{GroupId, GroupMessage, PartitionStore, RaftLogStore};

fn frame(key: ApiKey, version: i16, req: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("seed")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

fn kafka_seeds() -> Vec<Vec<u8>> {
    let batch = Bytes::from(
        BatchBuilder::new(1_700_000_000_000)
            .record(Some(b"k"), Some(b"hello"))
            .record(None, Some(b"world"))
            .build(),
    );
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(100)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(topic("f"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch)),
                ]),
        ]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic("f"))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic("f"))),
    ]));
    let list = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic("f"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ]),
    ]);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(100)
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic("g"))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]);
    vec![
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        frame(ApiKey::Metadata, 12, &metadata),
        frame(ApiKey::Metadata, 1, &metadata),
        frame(ApiKey::Produce, 9, &produce),
        frame(ApiKey::Produce, 3, &produce),
        frame(ApiKey::Fetch, 12, &fetch),
        frame(ApiKey::Fetch, 4, &fetch),
        frame(ApiKey::ListOffsets, 7, &list),
        frame(ApiKey::CreateTopics, 7, &create),
        frame(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default(),
        ),
    ]
}

fn raft_message(i: u64, size: usize) -> GroupMessage {
    GroupMessage {
        group: GroupId(i % 3),
        msg: Message {
            msg_type: MessageType::MsgAppend,
            to: 2,
            from: 1,
            term: 3,
            index: i,
            entries: vec![Entry {
                index: i + 1,
                term: 3,
                data: Bytes::from(vec![7u8; size]),
                ..Entry::default()
            }]
            .into(),
            ..Message::default()
        },
    }
}

fn tcp_seeds() -> Vec<Vec<u8>> {
    let one = weir_transport_tcp::encode_frame(&[raft_message(1, 16)], 1 << 20).unwrap();
    let many: Vec<GroupMessage> = (0..5).map(|i| raft_message(i, 100)).collect();
    let mut two = weir_transport_tcp::encode_frame(&many, 1 << 20).unwrap();
    two.extend_from_slice(&one);
    vec![one, two]
}

fn wal_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for round in 0..2u64 {
        let dir = tempfile::tempdir().unwrap();
        let e = weir_engine_segment::SegmentEngine::open(
            dir.path(),
            weir_engine_segment::Config::default(),
        )
        .unwrap();
        let g = GroupId(1);
        let entries: Vec<Entry> = (1..=6)
            .map(|i| Entry {
                index: i,
                term: 1,
                data: Bytes::from(vec![i as u8; 40]),
                ..Entry::default()
            })
            .collect();
        e.raft_append(g, &entries).unwrap();
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 4,
            ..HardState::default()
        };
        e.raft_set_hard_state(g, &hs).unwrap();
        e.raft_sync().unwrap();
        if round == 1 {
            // A suffix overwrite and a compaction, then a sync mark.
            let over: Vec<Entry> = (5..=7)
                .map(|i| Entry {
                    index: i,
                    term: 2,
                    data: Bytes::from(vec![9u8; 20]),
                    ..Entry::default()
                })
                .collect();
            e.raft_append(g, &over).unwrap();
            e.raft_compact(g, 3).unwrap();
            e.raft_sync().unwrap();
            let batch = BatchBuilder::new(0).record(None, Some(b"v")).build();
            e.log_append(GroupId(2), 1, 1, &batch).unwrap();
        }
        if round == 1 {
            e.log_flush(GroupId(2)).unwrap();
        }
        drop(e);
        let mut wal = vec![0u8];
        wal.extend(std::fs::read(dir.path().join("wal").join(format!("{:020}.wal", 1))).unwrap());
        out.push(wal);
        if round == 1 {
            // The partition's files, each as the input that replaces it.
            let seg = dir.path().join("partitions").join(format!("{:020}", 2));
            for (which, ext) in weir_engine_segment::fuzzing::FILES
                .iter()
                .enumerate()
                .skip(1)
            {
                let mut f = vec![which as u8];
                let bytes = std::fs::read(seg.join(format!("{:020}.{ext}", 0))).unwrap();
                // The files are preallocated; what follows the first 8 KiB is zeros.
                f.extend(&bytes[..bytes.len().min(8192)]);
                out.push(f);
            }
        }
    }
    out
}

fn write(target: &str, seeds: Vec<Vec<u8>>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
    }
    println!("{target}: {} seeds in {}", seeds.len(), dir.display());
}

fn main() {
    write("kafka_request", kafka_seeds());
    write("tcp_frame", tcp_seeds());
    write("segment_recovery", wal_seeds());
}
