//! Signaling's end (A) of the shared-memory link to the router: typed async calls of the
//! router's direct API, and the router's events as a stream.
//!
//! A blocking thread reads the ring (the queue's futex wait is not async) and hands replies to
//! the waiting calls by request id and events to an async channel. Sends never block: a full
//! ring is retried briefly, then reported as an error.
//!
//! After a restart of signaling, the ring may still hold replies and events meant for the
//! previous process: replies with unknown ids are dropped; events name transports the new
//! process does not know, and the hub ignores them.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use schema::api::{ApiError, ConnectParams, ConsumeParams, ConsumerInfo, LinkStats, ProduceParams, TransportInfo};
use schema::frame;
use schema::ids::{ConsumerId, ProducerId, TransportId};
use schema::router::UnexpectedResponse;
use schema::{Message, RouterCommand, RouterEvent, RouterRequest, RouterResponse};
use shm_queue::{Channel, End, LinkEvent, Producer, Segment, SendError};
use util::LockExt;

/// A router call must be answered within this long; the router answers in microseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a router call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("router refused {method}: {error}")]
    Api { method: &'static str, error: ApiError },
    #[error("router did not answer {0} within 5 s")]
    Timeout(&'static str),
    #[error("router link: {0}")]
    Link(String),
    #[error("router answered {method} with an unexpected value: {error}")]
    BadReply { method: &'static str, error: String },
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<schema::RouterResult>>>>;

/// The client side of the router link.
#[derive(Debug)]
pub struct RouterLink {
    tx: Mutex<Producer>,
    pending: Pending,
    next_id: AtomicU64,
}

impl RouterLink {
    /// Attaches to end A of `segment` and starts the reader thread. Events arrive on the
    /// returned receiver.
    pub fn attach(
        segment: Segment,
    ) -> Result<(Arc<RouterLink>, mpsc::UnboundedReceiver<RouterEvent>), shm_queue::Error> {
        let (tx, mut rx) = Channel::attach(&segment, End::A)?.split();
        let pending: Pending = Arc::default();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let reader_pending = pending.clone();
        std::thread::Builder::new()
            .name("router-link".into())
            .spawn(move || {
                let _segment = segment;
                rx.read_loop(|event| {
                    match event {
                        LinkEvent::Record(record) => return deliver(record, &reader_pending, &ev_tx),
                        LinkEvent::PeerUp => {}
                        LinkEvent::PeerGone { .. } => {
                            warn!("the router left the link; calls fail until control restarts it")
                        }
                        LinkEvent::Corrupt(why) => warn!(why, "router link ring corrupt"),
                    }
                    ControlFlow::Continue(())
                })
            })
            .map_err(|e| shm_queue::Error::Io { op: "spawn router-link thread", source: e })?;
        info!("attached to the router link (shared-memory end A)");
        // Request ids start from the clock, not 1: the ring may still hold replies to a previous
        // signaling process's requests, which must not match ours. Nanoseconds, not
        // `util::unix_ms`: a process issues far fewer ids than the nanoseconds it lives, so two
        // processes' ranges never meet; in milliseconds a busy hour could reach the next start.
        let first_id =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let link = RouterLink { tx: Mutex::new(tx), pending, next_id: AtomicU64::new(first_id) };
        Ok((Arc::new(link), ev_rx))
    }

    /// Runs one command; its result, in the shape the command returns.
    pub async fn call(&self, command: RouterCommand) -> Result<RouterResponse, CallError> {
        let method = command.method();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done_tx, done_rx) = oneshot::channel();
        self.pending.lock_unpoisoned().insert(id, done_tx);
        let mut record = Vec::new();
        frame::encode(&Message::RouterCommand(RouterRequest { id, command }), &mut record)
            .map_err(|e| self.fail(id, CallError::Link(e.to_string())))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let sent = self.tx.lock_unpoisoned().send(&record);
            match sent {
                Ok(()) => break,
                Err(SendError::Full) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(e) => return Err(self.fail(id, CallError::Link(format!("cannot send {method}: {e}")))),
            }
        }
        match tokio::time::timeout(CALL_TIMEOUT, done_rx).await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(error))) => Err(CallError::Api { method, error }),
            Ok(Err(_)) => Err(CallError::Link("reader stopped".into())),
            Err(_) => Err(self.fail(id, CallError::Timeout(method))),
        }
    }

    fn fail(&self, id: u64, e: CallError) -> CallError {
        self.pending.lock_unpoisoned().remove(&id);
        e
    }

    /// Runs one command whose result is a `T` ([`TransportInfo`], [`ProducerId`], ...).
    async fn call_typed<T>(&self, command: RouterCommand) -> Result<T, CallError>
    where
        T: TryFrom<RouterResponse, Error = UnexpectedResponse>,
    {
        let method = command.method();
        let response = self.call(command).await?;
        T::try_from(response).map_err(|e| CallError::BadReply { method, error: e.to_string() })
    }

    pub async fn create_transport(&self, shard: Option<u8>) -> Result<TransportInfo, CallError> {
        self.call_typed(RouterCommand::CreateTransport { shard }).await
    }

    pub async fn connect_transport(&self, transport: TransportId, params: ConnectParams) -> Result<(), CallError> {
        self.call(RouterCommand::ConnectTransport { transport, params }).await.map(drop)
    }

    pub async fn produce(&self, transport: TransportId, params: ProduceParams) -> Result<ProducerId, CallError> {
        self.call_typed(RouterCommand::Produce { transport, params }).await
    }

    pub async fn consume(&self, transport: TransportId, params: ConsumeParams) -> Result<ConsumerInfo, CallError> {
        self.call_typed(RouterCommand::Consume { transport, params }).await
    }

    pub async fn pause_consumer(&self, consumer: ConsumerId, paused: bool) -> Result<(), CallError> {
        self.call(RouterCommand::PauseConsumer { consumer, paused }).await.map(drop)
    }

    pub async fn set_preferred_layer(&self, consumer: ConsumerId, layer: u8) -> Result<(), CallError> {
        self.call(RouterCommand::SetPreferredLayer { consumer, layer }).await.map(drop)
    }

    pub async fn set_producer_priority(&self, producer: ProducerId, priority: u8) -> Result<(), CallError> {
        self.call(RouterCommand::SetProducerPriority { producer, priority }).await.map(drop)
    }

    pub async fn set_transport_max_bitrate(
        &self,
        transport: TransportId,
        max_bitrate_bps: Option<u64>,
    ) -> Result<(), CallError> {
        self.call(RouterCommand::SetTransportMaxBitrate { transport, max_bitrate_bps }).await.map(drop)
    }

    pub async fn transport_link_stats(&self, transport: TransportId) -> Result<LinkStats, CallError> {
        self.call_typed(RouterCommand::TransportLinkStats { transport }).await
    }

    pub async fn close_consumer(&self, consumer: ConsumerId) -> Result<(), CallError> {
        self.call(RouterCommand::CloseConsumer { consumer }).await.map(drop)
    }

    pub async fn close_producer(&self, producer: ProducerId) -> Result<(), CallError> {
        self.call(RouterCommand::CloseProducer { producer }).await.map(drop)
    }

    pub async fn close_transport(&self, transport: TransportId) -> Result<(), CallError> {
        self.call(RouterCommand::CloseTransport { transport }).await.map(drop)
    }
}

impl RouterLink {
    /// Asks the router to open a data channel on the transport once its SCTP association is up.
    pub async fn open_data_channel(&self, transport: TransportId, label: &str) -> Result<(), CallError> {
        self.call(RouterCommand::OpenDataChannel { transport, label: label.to_owned() }).await.map(drop)
    }

    /// Sends a text message on an open data channel.
    pub async fn send_data(&self, transport: TransportId, label: &str, text: &str) -> Result<(), CallError> {
        self.call(RouterCommand::SendData { transport, label: label.to_owned(), text: text.to_owned() }).await.map(drop)
    }
}

/// Hands one record from the router to its reader: a reply to the call waiting for its id, an
/// event to the event channel. Breaks when nobody takes events any more.
fn deliver(record: &[u8], pending: &Pending, events: &mpsc::UnboundedSender<RouterEvent>) -> ControlFlow<()> {
    match frame::decode(record) {
        Ok(Message::RouterReply(reply)) => {
            // Bound first, so the lock is released before the waiter is woken.
            let waiter = pending.lock_unpoisoned().remove(&reply.id);
            match waiter {
                Some(w) => {
                    let _ = w.send(reply.result);
                }
                None => debug!(id = reply.id, "reply to no pending call (a previous process's?)"),
            }
        }
        Ok(Message::RouterEvent(event)) => {
            if events.send(event).is_err() {
                return ControlFlow::Break(());
            }
        }
        Ok(other) => warn!(kind = ?other.kind(), "unexpected message from the router; ignored"),
        Err(e) => warn!(error = %e, "bad frame from the router; dropped"),
    }
    ControlFlow::Continue(())
}
