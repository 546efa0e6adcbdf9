//! DescribeConfigs.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::kafka::Context;

/// Topic configs as stored in metadata (resource type 2); brokers (type 4) have
/// none that clients can set yet.
pub fn describe(req: DescribeConfigsRequest, ctx: &Context) -> DescribeConfigsResponse {
    const TOPIC: i8 = 2;
    const BROKER: i8 = 4;
    const TOPIC_CONFIG_SOURCE: i8 = 1;
    let meta = ctx.node.metadata();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let res = describe_configs_response::DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match r.resource_type {
                TOPIC => match meta.topics.get(r.resource_name.as_str()) {
                    None => res
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(&format!(
                            "unknown topic {}",
                            r.resource_name.as_str()
                        )))),
                    Some(t) => {
                        let wanted = |k: &str| {
                            r.configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
                        };
                        let configs = t
                            .configs
                            .iter()
                            .filter(|(k, _)| wanted(k))
                            .map(|(k, v)| {
                                describe_configs_response::DescribeConfigsResourceResult::default()
                                    .with_name(str_bytes(k))
                                    .with_value(Some(str_bytes(v)))
                                    .with_config_source(TOPIC_CONFIG_SOURCE)
                            })
                            .collect();
                        res.with_configs(configs)
                    }
                },
                BROKER => res,
                other => res
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
