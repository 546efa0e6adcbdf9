//! A small Kafka client for the `weir topics|produce|consume` commands. It speaks
//! the Kafka protocol (through `kafka-protocol`) to any broker, weir or not, and
//! routes partition requests to the leader named by metadata.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{BufMut as _, Bytes};
use futures_util::{SinkExt, StreamExt as _};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::kafka::frame_codec;

pub mod cluster;
mod consume;
pub mod groups;
pub mod member;
mod produce;
pub mod producers;

pub use produce::Idempotence;

/// Largest response this client reads.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Versions this client sends (all within what weir and Kafka 2.1+ accept).
const METADATA_V: i16 = 9;
const PRODUCE_V: i16 = 8;
const FETCH_V: i16 = 11;
const LIST_OFFSETS_V: i16 = 5;
const CREATE_V: i16 = 5;
const DELETE_V: i16 = 4;
const DELETE_RECORDS_V: i16 = 2;

struct Conn {
    stream: Framed<TcpStream, LengthDelimitedCodec>,
    next_id: i32,
    client_id: &'static str,
}

impl Conn {
    async fn connect(addr: &str, client_id: &'static str) -> anyhow::Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: Framed::new(stream, frame_codec(MAX_RESPONSE_BYTES)),
            next_id: 1,
            client_id,
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
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        // Encoded straight into the connection's write buffer behind the size
        // prefix the codec would write: a request is copied once, into a buffer that
        // is reused, not grown from nothing and copied again per request (for
        // megabyte produce requests that was most of `weir bench`'s CPU).
        let buf = self.stream.write_buffer_mut();
        let start = buf.len();
        buf.put_u32(0);
        header.encode(buf, key.request_header_version(version))?;
        req.encode(buf, version)?;
        let size = u32::try_from(buf.len() - start - 4).context("a request over 4 GiB")?;
        buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
        SinkExt::<Bytes>::flush(&mut self.stream).await?;
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
    /// Group coordinators found, by group (forgotten when one answers
    /// NOT_COORDINATOR or cannot be reached).
    coordinators: HashMap<String, String>,
    /// The client id requests carry.
    client_id: &'static str,
}

/// The client id of requests one broker forwards to another (ElectLeaders to
/// a partition's leader), which the receiver does not forward again.
pub const FORWARDED_CLIENT_ID: &str = "weir-forward";

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
            coordinators: HashMap::new(),
            client_id: "weir-cli",
        }
    }

    /// A client for a broker forwarding a request to another (its requests
    /// carry [`FORWARDED_CLIENT_ID`]).
    pub fn forwarding(bootstrap: &str) -> Client {
        Client {
            client_id: FORWARDED_CLIENT_ID,
            ..Client::new(bootstrap)
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
            let c = Conn::connect(addr, self.client_id).await?;
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
}
