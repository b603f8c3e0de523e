//! The link to the router: its commands, their replies and its events.
//!
//! A [`RouterCommand`] is one call of the direct API (see [`crate::api`]). It travels inside a
//! [`RouterRequest`] that carries the caller's request id; the router answers each request
//! with one [`RouterReply`] echoing that id, and pushes every shard event as a
//! [`RouterEvent`]. The three are variants of [`crate::Message`] when they cross a process
//! boundary, and the bodies of the router's JSON-lines control socket
//! (`{"method": "...", "params": {...}}`) today.
//!
//! A reply's success is a [`RouterResponse`], one variant per result shape. Adding a command
//! touches this file (its variant, [`RouterCommand::target`], [`RouterCommand::method`], and a
//! response variant if its result has a new shape) and the shard that runs it; the router's
//! routing, its control socket and signaling's link follow from the types.
//!
//! ```
//! use schema::ids::TransportId;
//! use schema::router::RouterCommand;
//! let cmd: RouterCommand =
//!     serde_json::from_str(r#"{"method": "close_transport", "params": {"transport": 33554433}}"#).unwrap();
//! assert_eq!(cmd, RouterCommand::CloseTransport { transport: TransportId(0x0200_0001) });
//! assert_eq!(cmd.shard(), Some(2)); // the id's top byte
//! ```

use serde::{Deserialize, Serialize};

use crate::api::{
    ApiError, ConnectParams, ConsumeParams, ConsumerInfo, ConsumerLayers, Event, LinkStats, ProduceParams, StreamStats,
    TransportInfo,
};
use crate::ids::{ConsumerId, ProducerId, TransportId};

/// A command of the router's direct API.
///
/// On the wire: `{"method": "<snake_case name>", "params": {...}}`; the params of
/// `connect_transport`, `produce` and `consume` are the id plus the fields of their params
/// struct, flattened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum RouterCommand {
    CreateTransport {
        /// The shard to create it on; round robin when absent.
        #[serde(default)]
        shard: Option<u8>,
    },
    ConnectTransport {
        transport: TransportId,
        #[serde(flatten)]
        params: ConnectParams,
    },
    Produce {
        transport: TransportId,
        #[serde(flatten)]
        params: ProduceParams,
    },
    Consume {
        transport: TransportId,
        #[serde(flatten)]
        params: ConsumeParams,
    },
    PauseProducer {
        producer: ProducerId,
        paused: bool,
    },
    PauseConsumer {
        consumer: ConsumerId,
        paused: bool,
    },
    CloseTransport {
        transport: TransportId,
    },
    CloseProducer {
        producer: ProducerId,
    },
    CloseConsumer {
        consumer: ConsumerId,
    },
    ProducerStats {
        producer: ProducerId,
    },
    ConsumerStats {
        consumer: ConsumerId,
    },
    /// Opens a data channel (DCEP, ordered and reliable) from the router on a transport, as soon
    /// as its SCTP association is up (queued until then). Idempotent per label: a channel with
    /// this label, opened by either side, satisfies it. Reply `null`; the channel is usable at
    /// [`Event::DataChannelOpened`].
    OpenDataChannel {
        transport: TransportId,
        label: String,
    },
    /// Sends one text message (PPID 51, or 56 when empty) on an open data channel. Reply
    /// `null`, or [`ApiError::DataChannelNotOpen`] / [`ApiError::MessageTooLarge`].
    SendData {
        transport: TransportId,
        label: String,
        text: String,
    },
    /// The highest simulcast layer a video consumer's subscriber wants (0 lowest; a value
    /// above the producer's top layer means the top). Reply `null`.
    SetPreferredLayer {
        consumer: ConsumerId,
        layer: u8,
    },
    /// A producer's bandwidth allocation priority (see [`ProduceParams::priority`]).
    SetProducerPriority {
        producer: ProducerId,
        priority: u8,
    },
    /// Caps what a subscriber transport is sent (the role's `maxSubsBitRate`), bits per
    /// second; `null` removes the cap. Reply `null`.
    SetTransportMaxBitrate {
        transport: TransportId,
        #[serde(default)]
        max_bitrate_bps: Option<u64>,
    },
    /// A consumer's layers and its transport's estimate: a [`crate::api::ConsumerLayers`].
    ConsumerLayers {
        consumer: ConsumerId,
    },
    /// A transport's link toward its peer (estimate, loss, round trip): a
    /// [`crate::api::LinkStats`].
    TransportLinkStats {
        transport: TransportId,
    },
    /// Copies every RTP packet (and sender report) of a producer into the shard's ring of the
    /// `reader`'s tap segment, tagged with `tap` and preceded by a
    /// [`crate::tap::TapRecord::Start`] carrying `meta` (JSON the reader reads: job, track,
    /// peer). A producer may carry several taps (a track recording and a composite job); the
    /// same `tap` number again updates that tap and asks the publisher for a keyframe.
    /// Reply `null`.
    StartTap {
        producer: ProducerId,
        tap: u32,
        #[serde(default)]
        meta: String,
        #[serde(default)]
        reader: crate::tap::TapReader,
    },
    /// Ends one of a producer's taps (`tap`), or all of them (`null`); a
    /// [`crate::tap::TapRecord::Stop`] follows each. Reply `null`.
    StopTap {
        producer: ProducerId,
        #[serde(default)]
        tap: Option<u32>,
    },
    /// The shard's packet counters (drops by reason among them).
    Counters {
        #[serde(default)]
        shard: Option<u8>,
    },
}

impl RouterCommand {
    /// The shard this command belongs to: the explicit `shard` parameter, or the top byte of
    /// the id it carries. `None` means any shard will do (the router picks round robin).
    pub fn shard(&self) -> Option<u8> {
        self.target().shard()
    }

    /// What this command acts on: the one place that knows which id each command carries.
    pub fn target(&self) -> CommandTarget {
        match *self {
            RouterCommand::CreateTransport { shard } | RouterCommand::Counters { shard } => CommandTarget::Shard(shard),
            RouterCommand::ConnectTransport { transport, .. }
            | RouterCommand::Produce { transport, .. }
            | RouterCommand::Consume { transport, .. }
            | RouterCommand::CloseTransport { transport }
            | RouterCommand::SetTransportMaxBitrate { transport, .. }
            | RouterCommand::TransportLinkStats { transport }
            | RouterCommand::OpenDataChannel { transport, .. }
            | RouterCommand::SendData { transport, .. } => CommandTarget::Transport(transport),
            RouterCommand::PauseProducer { producer, .. }
            | RouterCommand::CloseProducer { producer }
            | RouterCommand::SetProducerPriority { producer, .. }
            | RouterCommand::ProducerStats { producer }
            | RouterCommand::StartTap { producer, .. }
            | RouterCommand::StopTap { producer, .. } => CommandTarget::Producer(producer),
            RouterCommand::PauseConsumer { consumer, .. }
            | RouterCommand::CloseConsumer { consumer }
            | RouterCommand::SetPreferredLayer { consumer, .. }
            | RouterCommand::ConsumerLayers { consumer }
            | RouterCommand::ConsumerStats { consumer } => CommandTarget::Consumer(consumer),
        }
    }

    /// The method name as it appears on the wire (`"create_transport"`, ...), for logs.
    pub fn method(&self) -> &'static str {
        match self {
            RouterCommand::CreateTransport { .. } => "create_transport",
            RouterCommand::ConnectTransport { .. } => "connect_transport",
            RouterCommand::Produce { .. } => "produce",
            RouterCommand::Consume { .. } => "consume",
            RouterCommand::PauseProducer { .. } => "pause_producer",
            RouterCommand::PauseConsumer { .. } => "pause_consumer",
            RouterCommand::CloseTransport { .. } => "close_transport",
            RouterCommand::CloseProducer { .. } => "close_producer",
            RouterCommand::CloseConsumer { .. } => "close_consumer",
            RouterCommand::ProducerStats { .. } => "producer_stats",
            RouterCommand::ConsumerStats { .. } => "consumer_stats",
            RouterCommand::OpenDataChannel { .. } => "open_data_channel",
            RouterCommand::SendData { .. } => "send_data",
            RouterCommand::SetPreferredLayer { .. } => "set_preferred_layer",
            RouterCommand::SetProducerPriority { .. } => "set_producer_priority",
            RouterCommand::SetTransportMaxBitrate { .. } => "set_transport_max_bitrate",
            RouterCommand::ConsumerLayers { .. } => "consumer_layers",
            RouterCommand::TransportLinkStats { .. } => "transport_link_stats",
            RouterCommand::StartTap { .. } => "start_tap",
            RouterCommand::StopTap { .. } => "stop_tap",
            RouterCommand::Counters { .. } => "counters",
        }
    }
}

/// What a [`RouterCommand`] acts on ([`RouterCommand::target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandTarget {
    /// A shard named by the command's `shard` parameter (`create_transport`, `counters`);
    /// `None` for any.
    Shard(Option<u8>),
    Transport(TransportId),
    Producer(ProducerId),
    Consumer(ConsumerId),
}

impl CommandTarget {
    /// The shard: the explicit one, or the top byte of the id.
    pub fn shard(self) -> Option<u8> {
        match self {
            CommandTarget::Shard(shard) => shard,
            CommandTarget::Transport(id) => Some(id.shard()),
            CommandTarget::Producer(id) => Some(id.shard()),
            CommandTarget::Consumer(id) => Some(id.shard()),
        }
    }

    /// The "unknown ..." error for the object this names, when it does not exist (say its id
    /// names a shard the router does not have); `None` for an explicit shard, which is a
    /// parameter, not an object.
    pub fn unknown(self) -> Option<ApiError> {
        match self {
            CommandTarget::Shard(_) => None,
            CommandTarget::Transport(id) => Some(ApiError::UnknownTransport(id)),
            CommandTarget::Producer(id) => Some(ApiError::UnknownProducer(id)),
            CommandTarget::Consumer(id) => Some(ApiError::UnknownConsumer(id)),
        }
    }
}

/// What a command returns.
pub type RouterResult = Result<RouterResponse, ApiError>;

/// The success value of a command: one variant per result shape.
///
/// On the router link the variant is tagged, `{"transport": {...}}`, except [`RouterResponse::Done`],
/// which is `null`. The control socket writes the payload alone
/// ([`RouterResponse::into_plain_json`]), the JSON its clients have always read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterResponse {
    /// `create_transport`.
    Transport(TransportInfo),
    /// `produce`: the new producer's id.
    Producer(ProducerId),
    /// `consume`.
    Consumer(ConsumerInfo),
    /// `producer_stats`, `consumer_stats`.
    Stats(StreamStats),
    /// `consumer_layers`.
    ConsumerLayers(ConsumerLayers),
    /// `transport_link_stats`.
    LinkStats(LinkStats),
    /// `counters`: a JSON object, not a struct, because its fields are the engine's packet
    /// counters (which grow with the engine and which this crate must not depend on) plus what
    /// the router adds: `transports`, `simulcast_tracks_by_live_layers` and `shell` (the shard's
    /// I/O figures). docs/router.md lists them.
    Counters(serde_json::Map<String, serde_json::Value>),
    /// Every other command: it succeeded and has nothing to report.
    #[serde(untagged)]
    Done,
}

impl RouterResponse {
    /// The variant's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            RouterResponse::Transport(_) => "transport",
            RouterResponse::Producer(_) => "producer",
            RouterResponse::Consumer(_) => "consumer",
            RouterResponse::Stats(_) => "stats",
            RouterResponse::ConsumerLayers(_) => "consumer_layers",
            RouterResponse::LinkStats(_) => "link_stats",
            RouterResponse::Counters(_) => "counters",
            RouterResponse::Done => "done",
        }
    }

    /// The payload as untagged JSON (`null` for [`RouterResponse::Done`]), as the control socket
    /// answers: the shapes docs/router.md documents per method.
    pub fn into_plain_json(self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            RouterResponse::Transport(v) => serde_json::to_value(v),
            RouterResponse::Producer(v) => serde_json::to_value(v),
            RouterResponse::Consumer(v) => serde_json::to_value(v),
            RouterResponse::Stats(v) => serde_json::to_value(v),
            RouterResponse::ConsumerLayers(v) => serde_json::to_value(v),
            RouterResponse::LinkStats(v) => serde_json::to_value(v),
            RouterResponse::Counters(v) => Ok(serde_json::Value::Object(v)),
            RouterResponse::Done => Ok(serde_json::Value::Null),
        }
    }
}

/// A reply of another shape than the command's: only a router and a caller built from different
/// sources could disagree so, the schema version being equal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a {expected} reply, got {got}")]
pub struct UnexpectedResponse {
    pub expected: &'static str,
    pub got: &'static str,
}

/// `From<payload> for RouterResponse` and `TryFrom<RouterResponse> for payload`, so the shard
/// writes `engine.produce(..)?.into()` and a caller asks for the type it expects.
macro_rules! response_payloads {
    ($($variant:ident($ty:ty) = $name:literal),* $(,)?) => {$(
        impl From<$ty> for RouterResponse {
            fn from(v: $ty) -> Self {
                RouterResponse::$variant(v)
            }
        }

        impl TryFrom<RouterResponse> for $ty {
            type Error = UnexpectedResponse;

            fn try_from(r: RouterResponse) -> Result<$ty, UnexpectedResponse> {
                match r {
                    RouterResponse::$variant(v) => Ok(v),
                    other => Err(UnexpectedResponse { expected: $name, got: other.name() }),
                }
            }
        }
    )*};
}

response_payloads! {
    Transport(TransportInfo) = "transport",
    Producer(ProducerId) = "producer",
    Consumer(ConsumerInfo) = "consumer",
    Stats(StreamStats) = "stats",
    ConsumerLayers(ConsumerLayers) = "consumer_layers",
    LinkStats(LinkStats) = "link_stats",
}

impl From<()> for RouterResponse {
    fn from((): ()) -> Self {
        RouterResponse::Done
    }
}

impl TryFrom<RouterResponse> for () {
    type Error = UnexpectedResponse;

    fn try_from(r: RouterResponse) -> Result<(), UnexpectedResponse> {
        match r {
            RouterResponse::Done => Ok(()),
            other => Err(UnexpectedResponse { expected: "done", got: other.name() }),
        }
    }
}

/// A command with the caller's request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterRequest {
    /// Chosen by the caller, echoed in the reply; unique among the caller's pending requests.
    pub id: u64,
    pub command: RouterCommand,
}

/// The reply to one [`RouterRequest`].
///
/// On the wire the result is `{"ok": <value>}` or `{"err": <ApiError>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterReply {
    /// The request's id.
    pub id: u64,
    #[serde(with = "result_repr")]
    pub result: RouterResult,
}

/// An event of one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterEvent {
    pub shard: u8,
    pub event: Event,
}

/// `Result` as `{"ok": v}` / `{"err": e}`: serde's default spells the tags `Ok`/`Err`, which
/// reads oddly among snake_case names.
mod result_repr {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{RouterResponse, RouterResult};
    use crate::api::ApiError;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Repr<T, E> {
        Ok(T),
        Err(E),
    }

    pub fn serialize<S: Serializer>(r: &RouterResult, s: S) -> Result<S::Ok, S::Error> {
        match r {
            Ok(v) => Repr::<&RouterResponse, &ApiError>::Ok(v).serialize(s),
            Err(e) => Repr::<&RouterResponse, &ApiError>::Err(e).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RouterResult, D::Error> {
        Ok(match Repr::<RouterResponse, ApiError>::deserialize(d)? {
            Repr::Ok(v) => Ok(v),
            Repr::Err(e) => Err(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_channel_commands_have_the_documented_wire_form() {
        let open: RouterCommand = serde_json::from_str(
            r#"{"method": "open_data_channel", "params": {"transport": 16777217, "label": "ion-sfu"}}"#,
        )
        .expect("parses");
        assert_eq!(
            open,
            RouterCommand::OpenDataChannel { transport: TransportId(0x0100_0001), label: "ion-sfu".into() }
        );
        let send =
            RouterCommand::SendData { transport: TransportId(1), label: "ion-sfu".into(), text: "{\"id\":1}".into() };
        assert_eq!(
            serde_json::to_string(&send).expect("serializes"),
            r#"{"method":"send_data","params":{"transport":1,"label":"ion-sfu","text":"{\"id\":1}"}}"#
        );
    }

    #[test]
    fn shard_comes_from_the_parameter_or_the_ids_top_byte() {
        assert_eq!(RouterCommand::CreateTransport { shard: None }.shard(), None);
        assert_eq!(RouterCommand::Counters { shard: Some(3) }.shard(), Some(3));
        assert_eq!(RouterCommand::CloseTransport { transport: TransportId(0x0500_0001) }.shard(), Some(5));
        assert_eq!(RouterCommand::ProducerStats { producer: ProducerId(0xff00_0000) }.shard(), Some(255));
        assert_eq!(RouterCommand::PauseConsumer { consumer: ConsumerId(0x00ff_ffff), paused: true }.shard(), Some(0));
        let send = RouterCommand::SendData { transport: TransportId(0x0400_0001), label: "l".into(), text: "t".into() };
        assert_eq!(send.shard(), Some(4));
    }

    #[test]
    fn method_names_match_the_serde_tags() {
        let cmds = [
            RouterCommand::CreateTransport { shard: Some(1) },
            RouterCommand::PauseProducer { producer: ProducerId(1), paused: false },
            RouterCommand::CloseConsumer { consumer: ConsumerId(1) },
            RouterCommand::OpenDataChannel { transport: TransportId(1), label: "ion-sfu".into() },
            RouterCommand::SendData { transport: TransportId(1), label: "ion-sfu".into(), text: "{}".into() },
            RouterCommand::Counters { shard: None },
            RouterCommand::StartTap {
                producer: ProducerId(1),
                tap: 2,
                meta: "{}".into(),
                reader: crate::tap::TapReader::Compositor,
            },
            RouterCommand::StopTap { producer: ProducerId(1), tap: Some(2) },
        ];
        for cmd in cmds {
            let v = serde_json::to_value(&cmd).expect("commands serialize");
            assert_eq!(v["method"], cmd.method(), "{v}");
        }
    }

    #[test]
    fn reply_result_is_spelled_ok_or_err() {
        let ok = RouterReply { id: 1, result: Ok(RouterResponse::Done) };
        assert_eq!(serde_json::to_string(&ok).expect("serializes"), r#"{"id":1,"result":{"ok":null}}"#);
        let err = RouterReply { id: 2, result: Err(ApiError::UnknownProducer(ProducerId(9))) };
        assert_eq!(
            serde_json::to_string(&err).expect("serializes"),
            r#"{"id":2,"result":{"err":{"UnknownProducer":9}}}"#
        );
    }

    #[test]
    fn responses_are_tagged_on_the_link_and_plain_on_the_control_socket() {
        let ok = RouterReply { id: 3, result: Ok(RouterResponse::Producer(ProducerId(5))) };
        let wire = serde_json::to_string(&ok).expect("serializes");
        assert_eq!(wire, r#"{"id":3,"result":{"ok":{"producer":5}}}"#);
        assert_eq!(serde_json::from_str::<RouterReply>(&wire).expect("parses"), ok);
        let done: RouterReply = serde_json::from_str(r#"{"id":1,"result":{"ok":null}}"#).expect("parses");
        assert_eq!(done.result, Ok(RouterResponse::Done));
        let mut fields = serde_json::Map::new();
        fields.insert("transports".into(), 2.into());
        let counters = RouterResponse::Counters(fields);
        let wire = serde_json::to_string(&counters).expect("serializes");
        assert_eq!(serde_json::from_str::<RouterResponse>(&wire).expect("parses"), counters);

        assert_eq!(RouterResponse::Producer(ProducerId(5)).into_plain_json().expect("plain"), serde_json::json!(5));
        assert_eq!(RouterResponse::Done.into_plain_json().expect("plain"), serde_json::Value::Null);
        assert_eq!(counters.into_plain_json().expect("plain"), serde_json::json!({ "transports": 2 }));
    }

    #[test]
    fn a_caller_takes_the_payload_it_expects_or_an_error_naming_both() {
        let stats = StreamStats { packets: 1, ..StreamStats::default() };
        assert_eq!(StreamStats::try_from(RouterResponse::from(stats.clone())), Ok(stats));
        assert_eq!(<()>::try_from(RouterResponse::Done), Ok(()));
        let err = ProducerId::try_from(RouterResponse::Done).expect_err("a done is no producer");
        assert_eq!(err, UnexpectedResponse { expected: "producer", got: "done" });
    }

    #[test]
    fn the_target_names_the_unknown_object() {
        let close = RouterCommand::CloseConsumer { consumer: ConsumerId(0x0300_0001) };
        assert_eq!(close.target(), CommandTarget::Consumer(ConsumerId(0x0300_0001)));
        assert_eq!(close.target().unknown(), Some(ApiError::UnknownConsumer(ConsumerId(0x0300_0001))));
        assert_eq!(RouterCommand::Counters { shard: Some(1) }.target().unknown(), None);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [
            r#"{"id":1,"result":{"ok":5}}"#,
            r#"{"id":1,"result":{"ok":{"nope":1}}}"#,
            r#"{"id":1,"result":{"ok":{"producer":"five"}}}"#,
            r#"{"id":1,"result":{"ok":{"counters":[1]}}}"#,
            r#"{"id":1,"result":{"ok":{"producer":5,"stats":{}}}}"#,
            r#"{"id":1,"result":{"ok":"done"}}"#,
        ] {
            assert!(serde_json::from_str::<RouterReply>(bad).is_err(), "{bad}");
        }
    }
}
