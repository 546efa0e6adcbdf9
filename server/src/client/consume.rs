//! Consuming: offset lookups and fetches from the partition leader.

use super::*;

impl Client {
    /// The earliest (`-2`) or latest (`-1`) offset of a partition. A leader just
    /// elected answers OFFSET_NOT_AVAILABLE until it has caught up (KIP-207):
    /// asked again every 20 ms, for up to 5 s.
    ///
    /// # Errors
    /// Kafka errors.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        which: i64,
    ) -> anyhow::Result<i64> {
        const OFFSET_NOT_AVAILABLE: i16 = 78;
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
        for _ in 0..250 {
            let ResponseKind::ListOffsets(r) = self
                .call(
                    &leader,
                    ApiKey::ListOffsets,
                    LIST_OFFSETS_V,
                    RequestKind::ListOffsets(req.clone()),
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
            match p.error_code {
                0 => return Ok(p.offset),
                OFFSET_NOT_AVAILABLE => tokio::time::sleep(Duration::from_millis(20)).await,
                code => bail!("list offsets failed with error {code}"),
            }
        }
        bail!("list offsets: the leader of {topic}-{partition} did not catch up within 5 s")
    }

    /// Deletes a partition's records below `before` (-1: all of them, up to the
    /// high watermark) through its leader (DeleteRecords); returns the new log
    /// start offset.
    ///
    /// # Errors
    /// Kafka errors, named.
    pub async fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> anyhow::Result<i64> {
        let leader = self.leader(topic, partition).await?;
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(partition)
                            .with_offset(before),
                    ]),
            ]);
        let ResponseKind::DeleteRecords(r) = self
            .call(
                &leader,
                ApiKey::DeleteRecords,
                DELETE_RECORDS_V,
                RequestKind::DeleteRecords(req),
            )
            .await?
        else {
            bail!("unexpected response to DeleteRecords");
        };
        let p = r
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("empty DeleteRecords response")?;
        if p.error_code != 0 {
            let what = kafka_protocol::error::ResponseError::try_from_code(p.error_code)
                .map_or_else(|| format!("error {}", p.error_code), |e| format!("{e:?}"));
            bail!("deleting records of {topic}-{partition} below {before}: {what}");
        }
        Ok(p.low_watermark)
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
