//! Producing: one batch with retries on leader changes, many at once, pipelined.

use super::*;

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

/// An idempotent producer's numbering: its id and epoch, and the next
/// sequence of each partition.
#[derive(Clone, Debug)]
pub struct Idempotence {
    producer_id: i64,
    epoch: i16,
    next: std::collections::HashMap<i32, i32>,
}

impl Idempotence {
    /// Numbering for producer `producer_id` at `epoch`, every partition from 0.
    pub fn new(producer_id: i64, epoch: i16) -> Idempotence {
        Idempotence {
            producer_id,
            epoch,
            next: std::collections::HashMap::new(),
        }
    }

    /// No producer: [`Idempotence::stamp`] copies batches and writes them as
    /// plain ones (producer id, epoch and sequence -1, the CRC again), so that
    /// a benchmark's client does the same work per request with idempotence
    /// and without.
    pub fn plain() -> Idempotence {
        Idempotence::new(-1, -1)
    }

    /// Copies of `parts`' batches numbered as this producer's next ones.
    pub fn stamp(&mut self, parts: &[(i32, Bytes)]) -> Vec<(i32, Bytes)> {
        parts
            .iter()
            .map(|(p, b)| {
                let mut copy = b.to_vec();
                let count = copy
                    .get(57..61)
                    .and_then(|c| c.try_into().ok())
                    .map_or(1, i32::from_be_bytes);
                if self.producer_id < 0 {
                    weir_core::batch::set_producer(&mut copy, -1, -1, -1);
                    return (*p, Bytes::from(copy));
                }
                let seq = self.next.entry(*p).or_insert(0);
                weir_core::batch::set_producer(&mut copy, self.producer_id, self.epoch, *seq);
                *seq = seq.wrapping_add(count);
                (*p, Bytes::from(copy))
            })
            .collect()
    }
}

impl Client {
    /// A producer id and epoch for an idempotent producer (InitProducerId v4);
    /// with `current`, the next epoch of that id (KIP-360).
    ///
    /// # Errors
    /// Connection or protocol errors, or the broker's error code.
    pub async fn init_producer_id(
        &mut self,
        current: Option<(i64, i16)>,
    ) -> anyhow::Result<(i64, i16)> {
        let (id, epoch) = current.unwrap_or((-1, -1));
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        let ResponseKind::InitProducerId(r) = self
            .call_any(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(req))
            .await?
        else {
            bail!("unexpected response to InitProducerId");
        };
        if r.error_code != 0 {
            bail!("InitProducerId failed with error {}", r.error_code);
        }
        Ok((r.producer_id.0, r.producer_epoch))
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
    /// With `idempotence`, each request's batches are numbered as that
    /// producer's next ones. Returns how many requests were acknowledged.
    ///
    /// # Errors
    /// When the partitions have different leaders, on connection and protocol errors,
    /// and when a partition answers with an error (no retries: for steady-state load).
    #[allow(clippy::too_many_arguments)] // the load's knobs, each used once
    pub async fn produce_pipelined(
        &mut self,
        topic: &str,
        parts: &[(i32, Bytes)],
        acks: i16,
        in_flight: usize,
        mut idempotence: Option<&mut Idempotence>,
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
                let req = match idempotence.as_deref_mut() {
                    Some(i) => produce_request(topic, &i.stamp(parts), acks),
                    None => req.clone(),
                };
                let id = conn
                    .send(ApiKey::Produce, PRODUCE_V, RequestKind::Produce(req))
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
}
