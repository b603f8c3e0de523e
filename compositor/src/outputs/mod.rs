//! The job's outputs, each a branch off the main pipeline's tees: MP4 parts (here), HLS
//! renditions ([`hls`]) and RTMP destinations ([`rtmp`]).
//!
//! ```text
//! composited picture → tee "raw"  → main x264enc → h264parse (byte-stream, SPS/PPS at every IDR)
//!                                                → tee "h264" ─┬→ queue → h264parse → splitmuxsink (MP4)
//!                                                              ├→ queue → hlssink2 rendition 0
//!                                                              └→ queue → appsink → RTMP pipelines
//!                                 → queue → videoscale → x264enc → hlssink2 rendition 1, 2
//! mixed sound → avenc_aac → aacparse → tee "aac" → each of the above
//! ```

pub(crate) mod hls;
pub(crate) mod pause;
pub(crate) mod playlist;
pub(crate) mod rtmp;

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::config::{Config, Mp4Output};
use crate::pipeline::{Error, build_err, make};

/// The main pipeline's tees the outputs hang off.
#[derive(Debug)]
pub(crate) struct Taps {
    /// The composited picture, raw: the lower HLS renditions scale and encode it.
    pub raw: gst::Element,
    /// The main encode: H.264 byte-stream access units, SPS and PPS before every IDR.
    pub h264: gst::Element,
    /// The AAC encode (raw, with codec_data).
    pub aac: gst::Element,
}

/// Links a new src pad of `tee` to `sink`.
pub(crate) fn link_tee(tee: &gst::Element, sink: &gst::Pad) -> Result<(), Error> {
    let src = tee.request_pad_simple("src_%u").ok_or_else(|| Error::Build("tee src pad".into()))?;
    src.link(sink).map_err(|e| Error::Build(format!("link a tee branch: {e:?}")))?;
    Ok(())
}

pub(crate) fn static_pad(element: &gst::Element, name: &str) -> Result<gst::Pad, Error> {
    element.static_pad(name).ok_or_else(|| Error::Build(format!("{} has no {name} pad", element.name())))
}

/// `x264enc → h264parse` as every encode of the job is set: no B-frames (the PTS is the
/// DTS, and RTMP and HLS players want it so), a keyframe every `gop`, SPS and PPS before
/// every IDR so that a segment or a newly connected RTMP destination starts decodable.
pub(crate) fn h264_encoder(config: &Config, kbps: u32) -> Result<[gst::Element; 2], Error> {
    let x264 = make("x264enc")?;
    x264.set_property_from_str("tune", "zerolatency");
    x264.set_property_from_str("speed-preset", "veryfast");
    x264.set_property("bframes", 0u32);
    let gop = config.gop().as_millis() * u128::from(config.fps) / 1000;
    x264.set_property("key-int-max", u32::try_from(gop).unwrap_or(u32::MAX));
    x264.set_property("bitrate", kbps);
    let h264parse = make("h264parse")?;
    h264parse.set_property("config-interval", -1i32);
    fill_missing_pts(&h264parse);
    Ok([x264, h264parse])
}

/// Seen in about one run in three of the MP4 test on a loaded machine, right after the start
/// (cause not found yet): one encoded frame reaches the muxer with a DTS and no PTS, which is
/// a fatal "Buffer has no PTS" in mp4mux. Without B-frames presentation order is decode
/// order, so the PTS is the DTS.
fn fill_missing_pts(h264parse: &gst::Element) {
    if let Some(src) = h264parse.static_pad("src") {
        src.add_probe(gst::PadProbeType::BUFFER, |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data
                && buffer.pts().is_none()
                && let Some(dts) = buffer.dts()
            {
                tracing::debug!(%dts, "encoded frame without a PTS: PTS set to its DTS");
                buffer.make_mut().set_pts(dts);
            }
            gst::PadProbeReturn::Ok
        });
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Crash-safe MP4: mp4mux writes a fragmented MP4 (`fragment-duration`), a `moov` without
/// samples and then self-contained `moof`+`mdat` fragments, so a killed process leaves a
/// file that plays up to its last whole fragment. splitmuxsink starts a new part every
/// `part_duration`, on a keyframe it asks the encoder for.
pub(crate) fn build_mp4(pipeline: &gst::Pipeline, taps: &Taps, mp4: &Mp4Output) -> Result<pause::PauseGate, Error> {
    std::fs::create_dir_all(&mp4.dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", mp4.dir.display())))?;
    let video_queue = make("queue")?;
    // mp4mux takes AVC (length-prefixed, codec_data); the tee carries byte-stream for hlssink2.
    let h264parse = make("h264parse")?;
    fill_missing_pts(&h264parse);
    let audio_queue = make("queue")?;
    let mux = make("mp4mux")?;
    mux.set_property("fragment-duration", u32::try_from(mp4.fragment_duration.as_millis()).unwrap_or(u32::MAX));
    let sink = make("splitmuxsink")?;
    let location = mp4.dir.join(format!("{}.%d.mp4", mp4.prefix));
    sink.set_property("location", location.to_string_lossy().as_ref());
    // Checked by Config::check to fit.
    sink.set_property("start-index", i32::try_from(mp4.start_index).unwrap_or(i32::MAX));
    sink.set_property("max-size-time", nanos(mp4.part_duration));
    sink.set_property("send-keyframe-requests", true);
    sink.set_property("muxer", &mux);
    // filesink's default is a 64 KiB stdio buffer: a killed process would lose it and leave
    // a fragment's header pointing past the end of the file. Unbuffered, every fragment
    // mp4mux finishes is in the kernel's hands at once.
    let file = make("filesink")?;
    file.set_property_from_str("buffer-mode", "unbuffered");
    sink.set_property("sink", &file);

    pipeline.add_many([&video_queue, &h264parse, &audio_queue, &sink]).map_err(build_err("add the MP4 output"))?;
    video_queue.link(&h264parse).map_err(build_err("link the MP4 video"))?;
    let sink_video = sink.request_pad_simple("video").ok_or_else(|| Error::Build("splitmuxsink video pad".into()))?;
    let sink_audio =
        sink.request_pad_simple("audio_%u").ok_or_else(|| Error::Build("splitmuxsink audio pad".into()))?;
    static_pad(&h264parse, "src")?
        .link(&sink_video)
        .map_err(|e| Error::Build(format!("link h264parse to splitmuxsink: {e:?}")))?;
    static_pad(&audio_queue, "src")?
        .link(&sink_audio)
        .map_err(|e| Error::Build(format!("link the AAC to splitmuxsink: {e:?}")))?;
    let gate = pause::PauseGate::install(&static_pad(&h264parse, "src")?, &static_pad(&audio_queue, "src")?);
    link_tee(&taps.h264, &static_pad(&video_queue, "sink")?)?;
    link_tee(&taps.aac, &static_pad(&audio_queue, "sink")?)?;
    Ok(gate)
}
