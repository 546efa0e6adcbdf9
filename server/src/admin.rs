//! The admin listener (`admin_listen`, default 127.0.0.1:9644; README
//! "Metrics and health"): an HTTP server on the broker's runtime (axum) with
//!
//! * `GET /metrics` — Prometheus text (`crate::metrics`);
//! * `GET /health/live` — 200 while the process serves;
//! * `GET /health/ready` — 200 when the metadata group has a leader, this
//!   node is registered, every partition assigned here is hosted, the node has
//!   no fatal error and the engine's disk has room; 503 with the reason
//!   otherwise (what a Kubernetes probe or a load balancer asks);
//! * `GET /v1/cluster` — JSON: brokers, topics, partitions, leaders,
//!   replicas, and for the groups hosted here their Raft term, commit and
//!   applied index and (on their leader) each replica's lag;
//! * `POST /v1/nodes`, `DELETE /v1/nodes/{id}` — add and remove nodes
//!   (`crate::membership`).

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use weir_core::{GroupId, Node, Role};

/// What the handlers share.
#[derive(Clone)]
struct Admin {
    node: Node,
    kafka: Arc<crate::kafka::Context>,
    max_partitions: usize,
}

/// Serves the admin endpoints on `listener` until `stop` resolves.
///
/// # Errors
/// When the metrics recorder cannot be installed or the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Node,
    kafka: Arc<crate::kafka::Context>,
    max_partitions: usize,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::metrics::handle()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/v1/cluster", get(cluster))
        .route("/v1/nodes", post(add_node))
        .route("/v1/nodes/{id}", delete(remove_node))
        .route("/v1/nodes/{id}/drain", post(drain_node))
        .with_state(Admin {
            node,
            kafka,
            max_partitions,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

async fn metrics(State(a): State<Admin>) -> Response {
    crate::metrics::observe(&a.node, a.max_partitions);
    crate::metrics::listener(&a.kafka.stats);
    match crate::metrics::handle() {
        Ok(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Why this node is not ready, if it is not.
pub fn not_ready(node: &Node) -> Option<String> {
    if let Some(why) = node.fatal_error() {
        return Some(format!("fatal error: {why}"));
    }
    let meta = node.metadata();
    match node.group_status(GroupId::METADATA) {
        Some(st) if st.leader != 0 => {}
        _ => return Some("the metadata group has no leader known here".into()),
    }
    if !meta.brokers.contains_key(&node.id()) {
        return Some("this node is not registered in the metadata yet".into());
    }
    let hosted = node.hosted_groups();
    let missing = meta
        .hosted_by(node.id())
        .filter(|(_, p)| !hosted.contains(&p.group))
        .count();
    if missing > 0 {
        return Some(format!(
            "{missing} partition(s) assigned here are not started yet"
        ));
    }
    if node.free_bytes() == Some(0) {
        return Some("the data directory's disk is full".into());
    }
    None
}

async fn ready(State(a): State<Admin>) -> Response {
    match not_ready(&a.node) {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn add_node(
    State(a): State<Admin>,
    axum::Json(body): axum::Json<crate::membership::AddNode>,
) -> Response {
    crate::membership::add(a.node, body).await
}

async fn remove_node(State(a): State<Admin>, Path(id): Path<u64>) -> Response {
    crate::membership::remove(a.node, id).await
}

async fn drain_node(State(a): State<Admin>, Path(id): Path<u64>) -> Response {
    crate::membership::drain(a.node, id).await
}

async fn cluster(State(a): State<Admin>) -> Response {
    axum::Json(cluster_view(&a.node)).into_response()
}

/// The cluster as this node sees it (the body of `GET /v1/cluster`).
pub fn cluster_view(node: &Node) -> Value {
    let meta = node.metadata();
    let group0 = node.group_status(GroupId::METADATA);
    // Replicas the metadata leader heard from recently (known on the leader).
    let active: Option<Vec<u64>> = group0
        .as_ref()
        .filter(|s| s.role == Role::Leader)
        .map(|s| s.progress.iter().map(|(id, _)| *id).collect());
    let brokers: Vec<Value> = meta
        .brokers
        .iter()
        .map(|(id, b)| {
            json!({
                "id": id,
                "kafka": b.kafka_addr,
                "peer": meta.peers.get(id),
                "reachable": if *id == node.id() {
                    Some(true)
                } else {
                    active.as_ref().map(|a| a.contains(id))
                },
            })
        })
        .collect();
    let raft = |g: GroupId| {
        node.group_status(g).map(|st| {
            let lag: serde_json::Map<String, Value> = st
                .progress
                .iter()
                .map(|(r, m)| (r.to_string(), json!(st.commit.saturating_sub(*m))))
                .collect();
            json!({
                "role": format!("{:?}", st.role),
                "leader": st.leader,
                "term": st.term,
                "commit": st.commit,
                "applied": st.applied,
                "high_watermark": st.log.map(|l| l.next_offset),
                "log_start_offset": st.log.map(|l| l.start_offset),
                "lag": if st.role == Role::Leader { Some(lag) } else { None },
                "in_sync": if st.role == Role::Leader { Some(&st.in_sync) } else { None },
                "voters": st.voters,
                "learners": st.learners,
            })
        })
    };
    let topics: Vec<Value> = meta
        .topics
        .iter()
        .map(|(name, t)| {
            let partitions: Vec<Value> = t
                .partitions
                .iter()
                .map(|p| {
                    json!({
                        "partition": p.index,
                        "group": p.group.0,
                        "leader": p.leader.map(|(n, _)| n),
                        "leader_epoch": p.leader.map(|(_, e)| e),
                        "replicas": p.replicas,
                        "raft": raft(p.group),
                    })
                })
                .collect();
            json!({
                "name": name,
                "kind": format!("{:?}", t.kind),
                "configs": t.configs,
                "partitions": partitions,
            })
        })
        .collect();
    json!({
        "node": node.id(),
        "brokers": brokers,
        "metadata": raft(GroupId::METADATA),
        "ready": not_ready(node).is_none(),
        "topics": topics,
    })
}
