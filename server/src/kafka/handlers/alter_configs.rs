//! AlterConfigs and IncrementalAlterConfigs for topics (what `kafka-configs
//! --alter` and `AdminClient.incremental_alter_configs` send). The new set of a
//! topic's configs is computed here from the current one and replicated whole
//! through the metadata group; broker configs are static (weir's config file).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::kafka::Context;
use crate::kafka::errors::response_error;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// How long a metadata change may take before the answer is REQUEST_TIMED_OUT.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Topic configs whose values are lists (the only ones APPEND and SUBTRACT may
/// change), with their defaults.
const LISTS: &[(&str, &str)] = &[("cleanup.policy", "delete")];

type Outcome = Result<(), (ResponseError, String)>;

/// One resource's answer, as both APIs shape it.
fn answer(outcome: Outcome) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((e, msg)) => (e.code(), Some(str_bytes(&msg))),
    }
}

/// Checks the resource type; `Ok(())` for a topic.
fn topics_only(resource_type: i8) -> Outcome {
    match resource_type {
        TOPIC => Ok(()),
        BROKER => Err((
            ResponseError::InvalidRequest,
            "broker configs are static in weir: set them in its config file and restart".into(),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("resource type {other} has no configs in weir (2 topic)"),
        )),
    }
}

/// Replaces topic `name`'s configs with `configs`.
async fn replace(
    ctx: &Context,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Outcome {
    ctx.node
        .alter_topic_configs(name, configs, validate_only, TIMEOUT)
        .await
        .map_err(|e| (response_error(&e), e.to_string()))
}

fn current(ctx: &Context, name: &str) -> Result<BTreeMap<String, String>, (ResponseError, String)> {
    ctx.node
        .metadata()
        .topics
        .get(name)
        .map(|t| t.configs.clone())
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("unknown topic {name}"),
            )
        })
}

/// AlterConfigs: each topic's configs become exactly those given (the others
/// return to their defaults), as Kafka's non-incremental API does.
pub async fn alter(req: AlterConfigsRequest, ctx: &Context) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.as_str();
        let outcome = match topics_only(r.resource_type) {
            Ok(()) => match current(ctx, name) {
                Ok(_) => {
                    let configs = r
                        .configs
                        .iter()
                        .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                        .collect();
                    replace(ctx, name, configs, req.validate_only).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (code, msg) = answer(outcome);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Applies IncrementalAlterConfigs operations to `configs`: SET (0), DELETE (1,
/// back to the default), APPEND (2) and SUBTRACT (3) on list configs.
fn apply_ops(
    configs: &mut BTreeMap<String, String>,
    ops: &[incremental_alter_configs_request::AlterableConfig],
) -> Outcome {
    for op in ops {
        let name = op.name.to_string();
        let value = op.value.as_ref().map(|v| v.to_string());
        match (op.config_operation, value) {
            (0, Some(v)) => {
                configs.insert(name, v);
            }
            (1, _) => {
                configs.remove(&name);
            }
            (2 | 3, Some(v)) => {
                let Some((_, default)) = LISTS.iter().find(|(k, _)| *k == name) else {
                    return Err((
                        ResponseError::InvalidConfig,
                        format!("{name} is not a list: APPEND and SUBTRACT do not apply"),
                    ));
                };
                let old = configs.get(&name).map_or(*default, String::as_str);
                let mut items: Vec<&str> = old
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                let given: Vec<&str> = v.split(',').map(str::trim).collect();
                if op.config_operation == 2 {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                configs.insert(name, items.join(","));
            }
            (0 | 2 | 3, None) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("{name}: the operation needs a value"),
                ));
            }
            (other, _) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("{name}: unknown config operation {other}"),
                ));
            }
        }
    }
    Ok(())
}

/// IncrementalAlterConfigs: each topic's configs change by the operations given.
pub async fn incremental(
    req: IncrementalAlterConfigsRequest,
    ctx: &Context,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.as_str();
        let outcome = async {
            topics_only(r.resource_type)?;
            let mut configs = current(ctx, name)?;
            apply_ops(&mut configs, &r.configs)?;
            replace(ctx, name, configs, req.validate_only).await
        }
        .await;
        let (code, msg) = answer(outcome);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone()),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use incremental_alter_configs_request::AlterableConfig;

    fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(str_bytes(name))
            .with_config_operation(operation)
            .with_value(value.map(str_bytes))
    }

    #[test]
    fn operations_change_the_set() {
        let mut c = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        apply_ops(
            &mut c,
            &[
                op("retention.bytes", 0, Some("5")),
                op("retention.ms", 1, None),
                op("cleanup.policy", 2, Some("compact")),
            ],
        )
        .unwrap();
        assert_eq!(c.get("retention.bytes").map(String::as_str), Some("5"));
        assert!(!c.contains_key("retention.ms"));
        assert_eq!(
            c.get("cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        apply_ops(&mut c, &[op("cleanup.policy", 3, Some("delete"))]).unwrap();
        assert_eq!(c.get("cleanup.policy").map(String::as_str), Some("compact"));
        let e = apply_ops(&mut c, &[op("retention.ms", 2, Some("1"))]).unwrap_err();
        assert_eq!(e.0, ResponseError::InvalidConfig);
        let e = apply_ops(&mut c, &[op("retention.ms", 9, Some("1"))]).unwrap_err();
        assert_eq!(e.0, ResponseError::InvalidRequest);
    }
}
