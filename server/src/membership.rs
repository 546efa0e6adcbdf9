//! Joining and leaving a running cluster (issue 22; README "Growing and
//! shrinking a cluster"): the admin endpoints that add and remove nodes, the
//! `--join` start of a new node, and the address book a node's transport
//! follows from metadata.
//!
//! * `POST /v1/nodes` with `{"id": N, "peer_addr": "host:port"}` adds node N
//!   (its peer address into metadata, then a learner of the metadata group,
//!   promoted to voter once caught up);
//! * `DELETE /v1/nodes/N` removes it (refused while it holds replicas).
//!
//! Both must reach the metadata group's leader; another node answers 421
//! with the leader's id, and the callers here try each address they have.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_core::{Error, Node, NodeId};

/// Gives the transport a peer's address ([`weir_core::PeerTransport::add_peer`]).
pub type AddPeer = Arc<dyn Fn(NodeId, &str) + Send + Sync>;

/// How long an add or a removal may take before the endpoint answers 504.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The body of `POST /v1/nodes`.
#[derive(Debug, Deserialize)]
pub struct AddNode {
    /// The new node's id.
    pub id: NodeId,
    /// Where peers reach it.
    pub peer_addr: String,
}

/// `POST /v1/nodes`: on success the body also lists every member's peer
/// address (`peers`), so that the new node can answer the leader at once.
pub async fn add(node: Node, body: AddNode) -> Response {
    match node
        .add_node(body.id, &body.peer_addr, CHANGE_TIMEOUT)
        .await
    {
        Ok(()) => {
            let peers: serde_json::Map<String, serde_json::Value> = node
                .metadata()
                .peers
                .iter()
                .map(|(id, a)| (id.to_string(), json!(a)))
                .collect();
            (
                StatusCode::OK,
                axum::Json(json!({"ok": true, "peers": peers})),
            )
                .into_response()
        }
        Err(e) => answer(Err(e)),
    }
}

/// `DELETE /v1/nodes/{id}`.
pub async fn remove(node: Node, id: NodeId) -> Response {
    answer(node.remove_node(id, CHANGE_TIMEOUT).await)
}

/// `POST /v1/nodes/{id}/drain`: starts moving every replica off the node;
/// answers how many partitions still have one there (`held`; 0: it can be
/// removed).
pub async fn drain(node: Node, id: NodeId) -> Response {
    match node.drain_node(id, CHANGE_TIMEOUT).await {
        Ok(held) => (
            StatusCode::OK,
            axum::Json(json!({"ok": true, "held": held})),
        )
            .into_response(),
        Err(e) => answer(Err(e)),
    }
}

fn answer(r: weir_core::Result<()>) -> Response {
    let (status, body) = match r {
        Ok(()) => (StatusCode::OK, json!({"ok": true})),
        Err(Error::NotLeader { hint, .. }) => (
            StatusCode::MISDIRECTED_REQUEST,
            json!({"error": "not the metadata group's leader", "leader": hint.map(|h| h.node)}),
        ),
        Err(e @ Error::NotFound(_)) => (StatusCode::NOT_FOUND, json!({"error": e.to_string()})),
        Err(e @ (Error::Invalid(_) | Error::Config(_))) => {
            (StatusCode::BAD_REQUEST, json!({"error": e.to_string()}))
        }
        Err(e @ Error::Timeout(_)) => {
            (StatusCode::GATEWAY_TIMEOUT, json!({"error": e.to_string()}))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    };
    (status, axum::Json(body)).into_response()
}

/// One HTTP/1.0 request to `addr` (an admin listener): the status and body.
///
/// # Errors
/// When the address cannot be reached or answers no HTTP.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {addr} timed out"))??;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(
        CHANGE_TIMEOUT + Duration::from_secs(5),
        s.read_to_end(&mut out),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{addr} did not answer"))??;
    let out = String::from_utf8_lossy(&out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{addr} answered no HTTP status"))?;
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// Sends a membership request to each admin address in turn until one (the
/// metadata group's leader) answers other than 421 (not the leader).
///
/// # Errors
/// The leader's refusal (its status and body), or, when no node was the
/// leader, the last answer or connection error.
pub async fn ask_members(
    addrs: &[String],
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<String> {
    let mut last = anyhow::anyhow!("no admin address given");
    for addr in addrs {
        match http(addr, method, path, body).await {
            Ok((200, body)) => return Ok(body),
            Ok((421, body)) => last = anyhow::anyhow!("{addr}: 421 {}", body.trim()),
            Ok((status, body)) => anyhow::bail!("{addr}: {status} {}", body.trim()),
            Err(e) => last = e.context(format!("asking {addr}")),
        }
    }
    Err(last)
}

/// Whether this node has a copy of the metadata group's configuration: a
/// joining node has none until it is added, so it joined before (and may
/// since have been removed, which its configuration then says). Such a node
/// does not ask to join again at a restart, so that a node removed from the
/// cluster stays out; to bring a machine back, start it with a new id and an
/// empty data directory.
pub fn was_member(engine: &dyn weir_core::Engine, id: NodeId) -> bool {
    match engine.raft_state(weir_core::GroupId::METADATA) {
        Ok(st) => {
            let named = !st.conf_state.voters.is_empty() || !st.conf_state.learners.is_empty();
            if named {
                tracing::info!(
                    node = id,
                    "a member of the cluster already (or removed from it): not asking to join again"
                );
            }
            named
        }
        Err(_) => false,
    }
}

/// At the start of a node given `--join`: asks the cluster (through the
/// admin addresses `join`) to add it, again every second until it is added
/// or `node` stops; gives the members' peer addresses it answers with to
/// `add_peer`.
pub async fn join(node: Node, join: Vec<String>, peer_addr: String, add_peer: AddPeer) {
    let body = json!({"id": node.id(), "peer_addr": peer_addr}).to_string();
    loop {
        match ask_members(&join, "POST", "/v1/nodes", &body).await {
            Ok(answer) => {
                let peers = serde_json::from_str::<serde_json::Value>(&answer)
                    .ok()
                    .and_then(|v| v.get("peers").and_then(|p| p.as_object()).cloned())
                    .unwrap_or_default();
                for (id, addr) in peers {
                    if let (Ok(id), Some(addr)) = (id.parse::<NodeId>(), addr.as_str())
                        && id != node.id()
                    {
                        add_peer(id, addr);
                    }
                }
                tracing::info!(via = ?join, "added to the cluster; catching up as a learner");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "asking to join the cluster; trying again"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keeps the transport's address book following metadata: every peer
/// address registered there is given to `add_peer`, until `node` stops.
pub async fn follow_peers(node: Node, add_peer: AddPeer) {
    let mut meta = node.watch_metadata();
    loop {
        let peers: Vec<(NodeId, String)> = meta
            .borrow_and_update()
            .peers
            .iter()
            .filter(|(id, _)| **id != node.id())
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        for (id, addr) in peers {
            add_peer(id, &addr);
        }
        if meta.changed().await.is_err() {
            return;
        }
    }
}
