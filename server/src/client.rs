//! A small Kafka client for the `weir topics|produce|consume` commands. It speaks
//! the Kafka protocol (through `kafka-protocol`) to any broker, weir or not, and
//! routes partition requests to the leader named by metadata.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::kafka::frame_codec;

/// Largest response this client reads.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Versions this client sends (all within what weir and Kafka 2.1+ accept).
const METADATA_V: i16 = 9;
const PRODUCE_V: i16 = 8;
const FETCH_V: i16 = 11;
const LIST_OFFSETS_V: i16 = 5;
const CREATE_V: i16 = 5;
const DELETE_V: i16 = 4;

struct Conn {
    stream: Framed<TcpStream, LengthDelimitedCodec>,
    next_id: i32,
}

impl Conn {
    async fn connect(addr: &str) -> anyhow::Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: Framed::new(stream, frame_codec(MAX_RESPONSE_BYTES)),
            next_id: 1,
        })
    }

    async fn call(
        &mut self,
        key: ApiKey,
        version: i16,
        req: RequestKind,
    ) -> anyhow::Result<ResponseKind> {
        let id = self.send(key, version, req).await?;
        self.recv(key, version, id).await
    }

    /// Writes a request; returns its correlation id.
    async fn send(&mut self, key: ApiKey, version: i16, req: RequestKind) -> anyhow::Result<i32> {
        let id = self.next_id;
        self.next_id += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("weir-cli")))
            .encode(&mut buf, key.request_header_version(version))?;
        req.encode(&mut buf, version)?;
        self.stream.send(buf.freeze()).await?;
        Ok(id)
    }

    /// Reads the response to request `id`, the oldest one unanswered.
    async fn recv(&mut self, key: ApiKey, version: i16, id: i32) -> anyhow::Result<ResponseKind> {
        let mut body: Bytes = self
            .stream
            .next()
            .await
            .context("the broker closed the connection")?
            .context("reading a response")?
            .freeze();
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))?;
        anyhow::ensure!(header.correlation_id == id, "response out of order");
        ResponseKind::decode(key, &mut body, version)
    }
}

/// A connection to a cluster through its bootstrap brokers.
pub struct Client {
    bootstrap: Vec<String>,
    conns: HashMap<String, Conn>,
}

/// A topic as metadata describes it.
#[derive(Debug)]
pub struct TopicInfo {
    /// The name.
    pub name: String,
    /// Error code for the topic (0 when fine).
    pub error: i16,
    /// (partition, leader, replicas, isr)
    pub partitions: Vec<(i32, i32, Vec<i32>, Vec<i32>)>,
}

/// A Produce request carrying one batch for each (partition, batch) to `topic`.
fn produce_request<'a>(
    topic: &str,
    parts: impl IntoIterator<Item = &'a (i32, Bytes)>,
    acks: i16,
) -> ProduceRequest {
    let data = parts
        .into_iter()
        .map(|(p, b)| {
            produce_request::PartitionProduceData::default()
                .with_index(*p)
                .with_records(Some(b.clone()))
        })
        .collect();
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(data),
        ])
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn name(v: &str) -> TopicName {
    TopicName(s(v))
}

impl Client {
    /// A client that starts from `bootstrap`: "host:port", or several separated by
    /// commas (each is tried in turn).
    pub fn new(bootstrap: &str) -> Client {
        let bootstrap = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        Client {
            bootstrap,
            conns: HashMap::new(),
        }
    }

    /// Sends an admin or metadata request to the first bootstrap broker that answers.
    async fn call_any(
        &mut self,
        key: ApiKey,
        version: i16,
        req: RequestKind,
    ) -> anyhow::Result<ResponseKind> {
        let mut last = anyhow::anyhow!("no bootstrap broker given");
        for addr in self.bootstrap.clone() {
            match self.call(&addr, key, version, req.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn conn(&mut self, addr: &str) -> anyhow::Result<&mut Conn> {
        if !self.conns.contains_key(addr) {
            let c = Conn::connect(addr).await?;
            self.conns.insert(addr.to_string(), c);
        }
        self.conns.get_mut(addr).context("connection")
    }

    async fn call(
        &mut self,
        addr: &str,
        key: ApiKey,
        version: i16,
        req: RequestKind,
    ) -> anyhow::Result<ResponseKind> {
        let r = self.conn(addr).await?.call(key, version, req).await;
        if r.is_err() {
            self.conns.remove(addr);
        }
        r
    }

    /// Brokers (id → address) and topics (all when `topics` is `None`).
    ///
    /// # Errors
    /// Connection or protocol errors.
    pub async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
    ) -> anyhow::Result<(BTreeMap<i32, String>, Vec<TopicInfo>)> {
        self.metadata_inner(topics, false).await
    }

    async fn metadata_inner(
        &mut self,
        topics: Option<&[&str]>,
        create: bool,
    ) -> anyhow::Result<(BTreeMap<i32, String>, Vec<TopicInfo>)> {
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(create)
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        metadata_request::MetadataRequestTopic::default().with_name(Some(name(t)))
                    })
                    .collect()
            }));
        let ResponseKind::Metadata(m) = self
            .call_any(ApiKey::Metadata, METADATA_V, RequestKind::Metadata(req))
            .await?
        else {
            bail!("unexpected response to Metadata");
        };
        let brokers = m
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let topics = m
            .topics
            .iter()
            .map(|t| TopicInfo {
                name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                error: t.error_code,
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            p.leader_id.0,
                            p.replica_nodes.iter().map(|r| r.0).collect(),
                            p.isr_nodes.iter().map(|r| r.0).collect(),
                        )
                    })
                    .collect(),
            })
            .collect();
        Ok((brokers, topics))
    }

    /// The address of the leader of a partition, waiting up to 10 s for one. Asks the
    /// broker to create the topic if it may (as producers do).
    async fn leader(&mut self, topic: &str, partition: i32) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (brokers, topics) = self.metadata_inner(Some(&[topic]), true).await?;
            if let Some(addr) = topics
                .iter()
                .find(|t| t.name == topic && t.error == 0)
                .and_then(|t| t.partitions.iter().find(|p| p.0 == partition))
                .and_then(|p| brokers.get(&p.1))
            {
                return Ok(addr.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no leader for {topic}-{partition}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates a topic; returns the broker's error message on failure.
    ///
    /// # Errors
    /// Kafka errors with their message.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication: i16,
        configs: &[(String, String)],
    ) -> anyhow::Result<()> {
        let t = create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(30_000);
        let ResponseKind::CreateTopics(r) = self
            .call_any(
                ApiKey::CreateTopics,
                CREATE_V,
                RequestKind::CreateTopics(req),
            )
            .await?
        else {
            bail!("unexpected response to CreateTopics");
        };
        let res = r.topics.first().context("empty CreateTopics response")?;
        if res.error_code != 0 {
            bail!(
                "error {}: {}",
                res.error_code,
                res.error_message.as_ref().map_or("", |m| m.as_str())
            );
        }
        Ok(())
    }

    /// Deletes a topic.
    ///
    /// # Errors
    /// Kafka errors with their message.
    pub async fn delete_topic(&mut self, topic: &str) -> anyhow::Result<()> {
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![name(topic)])
            .with_timeout_ms(30_000);
        let ResponseKind::DeleteTopics(r) = self
            .call_any(
                ApiKey::DeleteTopics,
                DELETE_V,
                RequestKind::DeleteTopics(req),
            )
            .await?
        else {
            bail!("unexpected response to DeleteTopics");
        };
        let res = r.responses.first().context("empty DeleteTopics response")?;
        if res.error_code != 0 {
            bail!("error {}", res.error_code);
        }
        Ok(())
    }

    /// Produces one record batch with acks=all to the partition's leader; returns
    /// its base offset. Retries leader changes for up to 30 s.
    ///
    /// # Errors
    /// Kafka errors that persist.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> anyhow::Result<i64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let leader = self.leader(topic, partition).await?;
            let code = match self
                .produce_to(&leader, topic, partition, batch.clone())
                .await
            {
                Ok(Ok(offset)) => return Ok(offset),
                Ok(Err(code)) => code,
                Err(_) => -1,
            };
            // Retry what a leader change explains: unknown topic (being created),
            // no leader, not the leader, timeouts, lost connections.
            if ![-1, 3, 5, 6, 7].contains(&code) || tokio::time::Instant::now() >= deadline {
                bail!("produce to {topic}-{partition} failed with error {code}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Produces one batch to each of `parts` (partition, batch) in as few requests as
    /// the leaders allow (one per leader), with `acks` (-1 all, 1 leader); returns the
    /// base offsets in the order of `parts`. Retries leader changes for up to 30 s.
    ///
    /// # Errors
    /// Kafka errors that persist; `acks = 0` (no answer to wait for) is refused.
    pub async fn produce_many(
        &mut self,
        topic: &str,
        parts: &[(i32, Bytes)],
        acks: i16,
    ) -> anyhow::Result<Vec<i64>> {
        anyhow::ensure!(acks != 0, "acks=0 gets no answer to measure");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut offsets = vec![None; parts.len()];
        loop {
            let mut by_leader: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (i, (p, _)) in parts.iter().enumerate() {
                if offsets[i].is_none() {
                    by_leader
                        .entry(self.leader(topic, *p).await?)
                        .or_default()
                        .push(i);
                }
            }
            if by_leader.is_empty() {
                return Ok(offsets.into_iter().map(|o| o.unwrap_or(-1)).collect());
            }
            let mut failed = None;
            for (leader, idx) in by_leader {
                let req = produce_request(topic, idx.iter().map(|&i| &parts[i]), acks);
                let answer = self
                    .call(
                        &leader,
                        ApiKey::Produce,
                        PRODUCE_V,
                        RequestKind::Produce(req),
                    )
                    .await;
                let Ok(ResponseKind::Produce(r)) = answer else {
                    failed = Some(-1);
                    continue;
                };
                for pr in r.responses.iter().flat_map(|t| &t.partition_responses) {
                    let Some(&i) = idx.iter().find(|&&i| parts[i].0 == pr.index) else {
                        continue;
                    };
                    if pr.error_code == 0 {
                        offsets[i] = Some(pr.base_offset);
                    } else {
                        failed = Some(pr.error_code);
                    }
                }
            }
            if let Some(code) = failed {
                if ![-1, 3, 5, 6, 7].contains(&code) || tokio::time::Instant::now() >= deadline {
                    bail!("produce to {topic} failed with error {code}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Sends the same batches (one per partition, all led by one broker) again and
    /// again over one connection, keeping up to `in_flight` requests unanswered, for
    /// as long as `more()` says so; `done` gets each request's latency. This is how
    /// Kafka producers send (the Java client keeps up to 5 requests in flight).
    /// Returns how many requests were acknowledged.
    ///
    /// # Errors
    /// When the partitions have different leaders, on connection and protocol errors,
    /// and when a partition answers with an error (no retries: for steady-state load).
    pub async fn produce_pipelined(
        &mut self,
        topic: &str,
        parts: &[(i32, Bytes)],
        acks: i16,
        in_flight: usize,
        mut more: impl FnMut() -> bool,
        mut done: impl FnMut(Duration),
    ) -> anyhow::Result<u64> {
        anyhow::ensure!(acks != 0, "acks=0 gets no answer to measure");
        let mut leader: Option<String> = None;
        for (p, _) in parts {
            let l = self.leader(topic, *p).await?;
            if *leader.get_or_insert_with(|| l.clone()) != l {
                bail!("pipelined produce needs one leader for a producer's partitions");
            }
        }
        let Some(leader) = leader else {
            return Ok(0);
        };
        let req = produce_request(topic, parts, acks);
        let conn = self.conn(&leader).await?;
        let mut outstanding = std::collections::VecDeque::new();
        let mut acked = 0;
        loop {
            while outstanding.len() < in_flight.max(1) && more() {
                let id = conn
                    .send(
                        ApiKey::Produce,
                        PRODUCE_V,
                        RequestKind::Produce(req.clone()),
                    )
                    .await?;
                outstanding.push_back((id, std::time::Instant::now()));
            }
            let Some((id, sent)) = outstanding.pop_front() else {
                return Ok(acked);
            };
            let ResponseKind::Produce(r) = conn.recv(ApiKey::Produce, PRODUCE_V, id).await? else {
                bail!("unexpected response to Produce");
            };
            for pr in r.responses.iter().flat_map(|t| &t.partition_responses) {
                anyhow::ensure!(
                    pr.error_code == 0,
                    "produce to {topic}-{} failed with error {}",
                    pr.index,
                    pr.error_code
                );
            }
            done(sent.elapsed());
            acked += 1;
        }
    }

    /// Produces one batch with acks=all to the broker at `addr`, whoever leads: for
    /// tests that need to reach a particular broker. Returns the base offset or the
    /// Kafka error code.
    ///
    /// # Errors
    /// Connection and protocol errors.
    pub async fn produce_to(
        &mut self,
        addr: &str,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> anyhow::Result<Result<i64, i16>> {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch)),
                    ]),
            ]);
        let ResponseKind::Produce(r) = self
            .call(addr, ApiKey::Produce, PRODUCE_V, RequestKind::Produce(req))
            .await?
        else {
            bail!("unexpected response to Produce");
        };
        let p = r
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .context("empty Produce response")?;
        Ok(if p.error_code == 0 {
            Ok(p.base_offset)
        } else {
            Err(p.error_code)
        })
    }

    /// The earliest (`-2`) or latest (`-1`) offset of a partition.
    ///
    /// # Errors
    /// Kafka errors.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        which: i64,
    ) -> anyhow::Result<i64> {
        let leader = self.leader(topic, partition).await?;
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(which),
                    ]),
            ]);
        let ResponseKind::ListOffsets(r) = self
            .call(
                &leader,
                ApiKey::ListOffsets,
                LIST_OFFSETS_V,
                RequestKind::ListOffsets(req),
            )
            .await?
        else {
            bail!("unexpected response to ListOffsets");
        };
        let p = r
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("empty ListOffsets response")?;
        anyhow::ensure!(
            p.error_code == 0,
            "list offsets failed with error {}",
            p.error_code
        );
        Ok(p.offset)
    }

    /// Fetches record batches from `offset`, waiting up to `wait` for data.
    /// Returns the raw batches and the high watermark.
    ///
    /// # Errors
    /// Kafka errors.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        wait: Duration,
    ) -> anyhow::Result<(Bytes, i64)> {
        let leader = self.leader(topic, partition).await?;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(4 << 20),
                    ]),
            ]);
        let ResponseKind::Fetch(r) = self
            .call(&leader, ApiKey::Fetch, FETCH_V, RequestKind::Fetch(req))
            .await?
        else {
            bail!("unexpected response to Fetch");
        };
        let p = r
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .context("empty Fetch response")?;
        anyhow::ensure!(
            p.error_code == 0,
            "fetch failed with error {}",
            p.error_code
        );
        Ok((p.records.clone().unwrap_or_default(), p.high_watermark))
    }
}
