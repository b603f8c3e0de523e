//! Synthetic media lives in `synth-media`, shared with the load-test tool; re-exported here so
//! the scenarios keep their paths.

pub use synth_media::*;
