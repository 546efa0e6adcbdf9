//! DescribeConfigs (issue 16 item 4): every topic config with its value, its
//! source and synonyms, whether it is a default; broker configs for this
//! broker's resource; the right errors for unknown topics, other brokers and
//! unknown resource types.

#![allow(clippy::unwrap_used)]

mod inproc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources (Kafka's `ConfigSource`).
const DYNAMIC_TOPIC: i8 = 1;
const STATIC_BROKER: i8 = 4;
const DEFAULT: i8 = 5;

async fn describe(
    ctx: &weir_server::kafka::Context,
    resources: Vec<(i8, &str, Option<Vec<&str>>)>,
) -> Vec<describe_configs_response::DescribeConfigsResult> {
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_include_documentation(true)
        .with_resources(
            resources
                .into_iter()
                .map(|(t, name, keys)| {
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(t)
                        .with_resource_name(StrBytes::from_string(name.to_string()))
                        .with_configuration_keys(keys.map(|ks| {
                            ks.into_iter()
                                .map(|k| StrBytes::from_string(k.to_string()))
                                .collect()
                        }))
                })
                .collect(),
        );
    let ResponseKind::DescribeConfigs(r) = inproc::call(
        ctx,
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(req),
    )
    .await
    else {
        panic!("not a DescribeConfigs response");
    };
    r.results
}

fn entry<'a>(
    r: &'a describe_configs_response::DescribeConfigsResult,
    name: &str,
) -> &'a describe_configs_response::DescribeConfigsResourceResult {
    r.configs
        .iter()
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} is not described: {:?}", r.configs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_config_is_described_with_its_source() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    let configs = [(
        "message.timestamp.type".to_string(),
        "LogAppendTime".to_string(),
    )];
    ctx.node
        .create_topic(
            "c",
            1,
            1,
            configs.into_iter().collect(),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    let got = describe(ctx, vec![(TOPIC, "c", None)]).await;
    let r = &got[0];
    assert_eq!(r.error_code, 0);
    // Set on the topic: its value, source and the default beneath it.
    let ts = entry(r, "message.timestamp.type");
    assert_eq!(ts.value.as_deref(), Some("LogAppendTime"));
    assert_eq!(ts.config_source, DYNAMIC_TOPIC);
    let synonyms: Vec<(&str, Option<&str>, i8)> = ts
        .synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_deref(), s.source))
        .collect();
    assert_eq!(
        synonyms,
        vec![
            (
                "message.timestamp.type",
                Some("LogAppendTime"),
                DYNAMIC_TOPIC
            ),
            ("log.message.timestamp.type", Some("CreateTime"), DEFAULT),
        ]
    );
    // Not set: the default, said so.
    let cleanup = entry(r, "cleanup.policy");
    assert_eq!(
        (cleanup.value.as_deref(), cleanup.config_source),
        (Some("delete"), DEFAULT)
    );
    // From the broker's own config.
    let max = entry(r, "max.message.bytes");
    assert_eq!(max.config_source, STATIC_BROKER);
    assert_eq!(max.value.as_deref(), Some("1048576"));
    for c in &r.configs {
        assert!(c.value.is_some(), "{} has a value", c.name.as_str());
        assert!(
            c.documentation.is_some(),
            "{} is documented",
            c.name.as_str()
        );
        assert_ne!(c.config_type, 0, "{} has a type", c.name.as_str());
    }
    // Keys asked for: only those.
    let some = describe(ctx, vec![(TOPIC, "c", Some(vec!["cleanup.policy"]))]).await;
    let names: Vec<&str> = some[0].configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["cleanup.policy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_and_errors() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    let got = describe(
        ctx,
        vec![
            (BROKER, "1", None),
            (BROKER, "7", None),
            (TOPIC, "nope", None),
            (99, "x", None),
        ],
    )
    .await;
    let codes: Vec<i16> = got.iter().map(|r| r.error_code).collect();
    // This broker; another broker (ask that one: INVALID_REQUEST); an unknown
    // topic (UNKNOWN_TOPIC_OR_PARTITION); an unknown resource type.
    assert_eq!(codes, vec![0, 42, 3, 42]);
    let broker = &got[0];
    assert_eq!(entry(broker, "broker.id").value.as_deref(), Some("1"));
    assert_eq!(entry(broker, "num.partitions").value.as_deref(), Some("1"));
    assert_eq!(
        entry(broker, "auto.create.topics.enable").value.as_deref(),
        Some("true")
    );
    assert!(broker.configs.iter().all(|c| c.read_only));
}
