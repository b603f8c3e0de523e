//! What a room needs from the router, as a trait ([`RouterApi`]), and its implementation by
//! the shared-memory link ([`RouterLink`]).
//!
//! Rooms hold an `Arc<dyn RouterApi>` (in their [`crate::room::RoomEnv`]) rather than the link
//! itself, so a room can run against an in-memory router in a unit test: no router process,
//! no shared memory. The futures are boxed and `Send` because each room is a tokio task that
//! awaits them; the calls cross a process boundary, so one allocation each costs nothing.

use std::future::Future;
use std::pin::Pin;

use schema::RouterCommand;
use schema::api::{ConnectParams, ConsumeParams, ConsumerInfo, LinkStats, ProduceParams, TransportInfo};
use schema::ids::{ConsumerId, ProducerId, TransportId};
use schema::tap::TapReader;

use crate::router_link::{CallError, RouterLink};

/// A router call in flight.
pub type RouterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CallError>> + Send + 'a>>;

/// The router's direct API as rooms use it (see `router_link.rs` for what each call does).
pub trait RouterApi: Send + Sync {
    fn create_transport(&self, shard: Option<u8>) -> RouterFuture<'_, TransportInfo>;
    fn connect_transport(&self, transport: TransportId, params: ConnectParams) -> RouterFuture<'_, ()>;
    fn produce(&self, transport: TransportId, params: ProduceParams) -> RouterFuture<'_, ProducerId>;
    fn consume(&self, transport: TransportId, params: ConsumeParams) -> RouterFuture<'_, ConsumerInfo>;
    fn pause_consumer(&self, consumer: ConsumerId, paused: bool) -> RouterFuture<'_, ()>;
    fn set_preferred_layer(&self, consumer: ConsumerId, layer: u8) -> RouterFuture<'_, ()>;
    fn set_producer_priority(&self, producer: ProducerId, priority: u8) -> RouterFuture<'_, ()>;
    fn set_transport_max_bitrate(&self, transport: TransportId, max_bitrate_bps: Option<u64>) -> RouterFuture<'_, ()>;
    /// A subscriber transport's link (estimate, loss, round trip), for connection quality.
    fn transport_link_stats(&self, transport: TransportId) -> RouterFuture<'_, LinkStats>;
    fn close_consumer(&self, consumer: ConsumerId) -> RouterFuture<'_, ()>;
    fn close_producer(&self, producer: ProducerId) -> RouterFuture<'_, ()>;
    fn close_transport(&self, transport: TransportId) -> RouterFuture<'_, ()>;
    fn open_data_channel<'a>(&'a self, transport: TransportId, label: &'a str) -> RouterFuture<'a, ()>;
    fn send_data<'a>(&'a self, transport: TransportId, label: &'a str, text: &'a str) -> RouterFuture<'a, ()>;
    /// Copies a producer's packets to the recorder, tagged `tap`; again for the same tap asks
    /// the publisher for a keyframe (`room/recording.rs`).
    fn start_tap(&self, producer: ProducerId, tap: u32, meta: String, reader: TapReader) -> RouterFuture<'_, ()>;
    fn stop_tap(&self, producer: ProducerId, tap: Option<u32>) -> RouterFuture<'_, ()>;
}

impl RouterApi for RouterLink {
    fn create_transport(&self, shard: Option<u8>) -> RouterFuture<'_, TransportInfo> {
        Box::pin(RouterLink::create_transport(self, shard))
    }

    fn connect_transport(&self, transport: TransportId, params: ConnectParams) -> RouterFuture<'_, ()> {
        Box::pin(RouterLink::connect_transport(self, transport, params))
    }

    fn produce(&self, transport: TransportId, params: ProduceParams) -> RouterFuture<'_, ProducerId> {
        Box::pin(RouterLink::produce(self, transport, params))
    }

    fn consume(&self, transport: TransportId, params: ConsumeParams) -> RouterFuture<'_, ConsumerInfo> {
        Box::pin(RouterLink::consume(self, transport, params))
    }

    fn pause_consumer(&self, consumer: ConsumerId, paused: bool) -> RouterFuture<'_, ()> {
        Box::pin(RouterLink::pause_consumer(self, consumer, paused))
    }

    fn set_preferred_layer(&self, consumer: ConsumerId, layer: u8) -> RouterFuture<'_, ()> {
        Box::pin(RouterLink::set_preferred_layer(self, consumer, layer))
    }

    fn set_producer_priority(&self, producer: ProducerId, priority: u8) -> RouterFuture<'_, ()> {
        Box::pin(RouterLink::set_producer_priority(self, producer, priority))
    }

    fn set_transport_max_bitrate(&self, transport: TransportId, max_bitrate_bps: Option<u64>) -> RouterFuture<'_, ()> {
        Box::pin(RouterLink::set_transport_max_bitrate(self, transport, max_bitrate_bps))
    }

    fn transport_link_stats(&self, transport: TransportId) -> RouterFuture<'_, LinkStats> {
        Box::pin(RouterLink::transport_link_stats(self, transport))
    }

    fn close_consumer(&self, consumer: ConsumerId) -> RouterFuture<'_, ()> {
        Box::pin(RouterLink::close_consumer(self, consumer))
    }

    fn close_producer(&self, producer: ProducerId) -> RouterFuture<'_, ()> {
        Box::pin(RouterLink::close_producer(self, producer))
    }

    fn close_transport(&self, transport: TransportId) -> RouterFuture<'_, ()> {
        Box::pin(RouterLink::close_transport(self, transport))
    }

    fn open_data_channel<'a>(&'a self, transport: TransportId, label: &'a str) -> RouterFuture<'a, ()> {
        Box::pin(RouterLink::open_data_channel(self, transport, label))
    }

    fn send_data<'a>(&'a self, transport: TransportId, label: &'a str, text: &'a str) -> RouterFuture<'a, ()> {
        Box::pin(RouterLink::send_data(self, transport, label, text))
    }

    fn start_tap(&self, producer: ProducerId, tap: u32, meta: String, reader: TapReader) -> RouterFuture<'_, ()> {
        Box::pin(async move { self.call(RouterCommand::StartTap { producer, tap, meta, reader }).await.map(drop) })
    }

    fn stop_tap(&self, producer: ProducerId, tap: Option<u32>) -> RouterFuture<'_, ()> {
        Box::pin(async move { self.call(RouterCommand::StopTap { producer, tap }).await.map(drop) })
    }
}
