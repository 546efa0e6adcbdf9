//! One client connection: framing, pipelining and the per-connection session.
//!
//! Up to [`MAX_IN_FLIGHT`] requests of a connection are handled at once and their
//! responses written in request order, as Kafka requires. [`dispatch::start`] does
//! each request's synchronous part (a produce's proposals) before the next frame is
//! read, so batches one connection sends to a partition are appended in the order
//! it sent them.

use std::net::SocketAddr;

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use super::dispatch::{self, Pending};
use super::{Context, ListenerStats, codec};

/// Requests of one connection handled at once (clients pipeline produce requests:
/// the Java client keeps up to 5 in flight, librdkafka more).
pub const MAX_IN_FLIGHT: usize = 8;

/// What a connection knows about its client. Authentication state (principal, SASL)
/// will live here.
#[derive(Clone, Debug)]
pub struct Session {
    /// The client's address.
    pub peer: SocketAddr,
    /// The client id of the latest request, if it sent one.
    pub client_id: Option<String>,
}

impl Session {
    /// A session for a client connecting from `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        Session {
            peer,
            client_id: None,
        }
    }
}

/// Serves one client connection until the client closes it, a frame or request is
/// malformed (an `Err`), it has been idle for [`Context::connections_max_idle`], a
/// request frame stays incomplete for [`Context::request_read_timeout`] (an `Err`),
/// or `shutdown` is cancelled — then requests already read are answered before it
/// returns.
///
/// # Errors
/// A frame that cannot be read, a request that cannot be decoded or answered, or a
/// failed write; the caller closes the connection.
pub async fn serve_connection<S>(
    io: S,
    mut session: Session,
    ctx: &Context,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Send,
{
    let _open = ListenerStats::enter(&ctx.stats.connections);
    ctx.stats
        .opened
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (rd, wr) = tokio::io::split(io);
    let mut frames = codec::FrameReader::new(rd, ctx.max_request_bytes, &ctx.request_memory);
    let mut out = FramedWrite::new(wr, codec::frame_codec(usize::MAX));
    let mut in_flight: FuturesOrdered<Pending<'_>> = FuturesOrdered::new();
    let mut reading = true;
    // When the connection last did something: read a request or wrote an answer.
    let mut active = Instant::now();
    let check_every = ctx.connections_max_idle.min(ctx.request_read_timeout);
    let mut next_check = active + check_every;
    loop {
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(response) = done? {
                    out.send(response).await?;
                }
                active = Instant::now();
                next_check = active + check_every;
            }
            () = shutdown.cancelled(), if reading => reading = false,
            () = tokio::time::sleep_until(next_check), if reading && in_flight.is_empty() => {
                next_check = Instant::now() + check_every;
                let quiet = active.elapsed();
                if frames.partial() && quiet >= ctx.request_read_timeout {
                    anyhow::bail!(
                        "a request frame was still incomplete after {quiet:?} (request_read_timeout_ms)"
                    );
                }
                if quiet >= ctx.connections_max_idle {
                    tracing::debug!(peer = %session.peer, "closing an idle Kafka connection");
                    return Ok(());
                }
            }
            frame = frames.next(), if reading && in_flight.len() < MAX_IN_FLIGHT => match frame {
                Some(frame) => {
                    active = Instant::now();
                    next_check = active + check_every;
                    let (frame, reservation) = frame?;
                    let counted = ListenerStats::enter(&ctx.stats.in_flight);
                    // A produce may wait here for room in the node's produce budget:
                    // this connection reads nothing more meanwhile.
                    let pending = dispatch::start(frame, ctx, &mut session).await?;
                    in_flight.push_back(Box::pin(async move {
                        let answer = pending.await;
                        // The request's bytes count until it is answered.
                        drop((counted, reservation));
                        answer
                    }));
                }
                // The client closed its side: answer what is in flight, then stop.
                None => reading = false,
            },
            else => break,
        }
    }
    Ok(())
}
