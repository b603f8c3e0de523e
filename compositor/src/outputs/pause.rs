//! Pausing a recording: the MP4 output leaves out what happens while it is paused, and goes on
//! seamlessly (the file's timeline has no gap) from the first keyframe after the resume.
//!
//! A gate of two pad probes, on the MP4 branch's video and audio queues' outputs, in front of
//! splitmuxsink:
//!
//! - **passing**: buffers go through, shifted back by the time paused so far (`offset`);
//! - **paused**: every buffer is dropped;
//! - **resuming**: video is dropped until a keyframe (a part must not continue on a frame that
//!   needs ones it never got); that keyframe's PTS less the last PTS passed before the pause
//!   (less one frame) is added to `offset`, and audio from before that keyframe is dropped.
//!
//! Decisions are taken in running time (the encoders' PTS live in different segments: x264's
//! start 1000 h in, AAC's at zero), and the shift is a timestamp rewrite on the buffers by the
//! running time paused, so splitmuxsink and mp4mux see one continuous stream. The main encoder is asked for a keyframe at the resume, so the wait is
//! about a frame rather than up to a GOP.

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Passing,
    Paused,
    Resuming,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Subtracted from every PTS and DTS that passes (nanoseconds).
    offset: u64,
    /// The running time of the last video frame passed (unshifted), and its duration.
    last_video: Option<(u64, u64)>,
    /// Once video passed again after a pause: audio before this running time is dropped.
    resumed_at: Option<u64>,
}

/// The MP4 output's pause switch. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PauseGate {
    state: Arc<Mutex<State>>,
    video_pad: gst::Pad,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A buffer's running time on `pad` (its PTS in the pad's current segment).
fn running_time(pad: &gst::Pad, buffer: &gst::Buffer) -> Option<u64> {
    let pts = buffer.pts()?;
    let event = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = event.segment().downcast_ref::<gst::ClockTime>()?.clone();
    segment.to_running_time(pts).map(|t| t.nseconds())
}

fn shift(buffer: &mut gst::Buffer, offset: u64) {
    let b = buffer.make_mut();
    if let Some(pts) = b.pts() {
        b.set_pts(gst::ClockTime::from_nseconds(pts.nseconds().saturating_sub(offset)));
    }
    if let Some(dts) = b.dts() {
        b.set_dts(gst::ClockTime::from_nseconds(dts.nseconds().saturating_sub(offset)));
    }
}

impl PauseGate {
    /// Installs the gate on the MP4 branch's video and audio pads (their outputs, before the
    /// muxer).
    pub fn install(video: &gst::Pad, audio: &gst::Pad) -> PauseGate {
        let state =
            Arc::new(Mutex::new(State { phase: Phase::Passing, offset: 0, last_video: None, resumed_at: None }));
        let s = state.clone();
        video.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else { return gst::PadProbeReturn::Ok };
            let Some(rt) = running_time(pad, buffer) else { return gst::PadProbeReturn::Ok };
            let mut st = lock(&s);
            match st.phase {
                Phase::Paused => return gst::PadProbeReturn::Drop,
                Phase::Resuming => {
                    if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                        return gst::PadProbeReturn::Drop;
                    }
                    if let Some((last, frame)) = st.last_video {
                        st.offset += rt.saturating_sub(last + frame);
                    }
                    st.resumed_at = Some(rt);
                    st.phase = Phase::Passing;
                }
                Phase::Passing => {}
            }
            let frame = buffer.duration().map_or(33_333_333, |d| d.nseconds());
            st.last_video = Some((rt, frame));
            let offset = st.offset;
            drop(st);
            shift(buffer, offset);
            gst::PadProbeReturn::Ok
        });
        let s = state.clone();
        audio.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else { return gst::PadProbeReturn::Ok };
            let rt = running_time(pad, buffer);
            let st = lock(&s);
            let drop_it = match st.phase {
                Phase::Paused | Phase::Resuming => true,
                Phase::Passing => st.resumed_at.zip(rt).is_some_and(|(at, rt)| rt < at),
            };
            if drop_it {
                return gst::PadProbeReturn::Drop;
            }
            let offset = st.offset;
            drop(st);
            shift(buffer, offset);
            gst::PadProbeReturn::Ok
        });
        PauseGate { state, video_pad: video.clone() }
    }

    /// The time left out of the output by the pauses that ended.
    pub fn paused_for(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(lock(&self.state).offset)
    }

    pub fn is_paused(&self) -> bool {
        lock(&self.state).phase != Phase::Passing
    }

    /// Pauses (`true`) or resumes the output; the same state again changes nothing.
    pub fn set_paused(&self, paused: bool) {
        let mut st = lock(&self.state);
        match (paused, st.phase) {
            (true, Phase::Passing) => {
                st.phase = Phase::Paused;
                st.resumed_at = None;
            }
            (false, Phase::Paused) => {
                st.phase = Phase::Resuming;
                drop(st);
                // A keyframe now rather than at the end of the GOP.
                let event = gstreamer_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
                self.video_pad.send_event(event);
            }
            _ => {}
        }
    }
}
