//! Test support: an independent WebRTC client (str0m, in RTP mode) wired to the router's direct
//! API, a seeded simulated network that drives the sans-IO engine and its clients on virtual
//! time, and synthetic Opus/VP8 streams whose packets say which frame they belong to.
//!
//! The scenarios themselves are in `tests/`, one behaviour per file.

pub mod client;
// Moved to synth-media so the compositor's tests use the same ffmpeg media and packetizers.
pub use synth_media::encoded;
pub mod media;
pub mod room;
pub mod sim;
pub mod simulcast;
pub mod turn;
pub mod wire;
