//! Time with no forwarded video, per subscriber: the figure that shows a router
//! forwarding nothing to a subscriber whose layer stopped carrying frames (`--drop-layers`).
//!
//! Only **media** counts: a packet with a non-empty payload. A publisher that stopped encoding
//! a layer still sends padding on its SSRC (empty once the router has stripped it), and a router
//! that forwards that padding has still forwarded no video.
//!
//! For each video track a subscriber should see (every received video with `--layout all`;
//! with a layout, the ones it asked for with a layer other than `none` and the server
//! accepted), from its **subscription** (the subscribe offer's m-line, or the accepted request
//! if later):
//!
//! - each interval between two media arrivals longer than [`GAP_US`] counts **fully** (a
//!   600 ms gap is 600 ms, not 100 ms): so a steady 30 fps stream is 0, and any real stall is
//!   visible at its whole length;
//! - the interval from the last media arrival to the end of the run, likewise;
//! - a first media packet later than [`FIRST_MEDIA_GRACE_US`] after the subscription counts
//!   the time from subscription + that grace to it; one that never comes counts from then to
//!   the end of the run.
//!
//! Sans-IO, like the rest of the accounting: every input carries its time (µs on the run's
//! clock), so [`no_video_us`] is a pure function of the arrival times.

use std::collections::HashMap;

use serde::Serialize;

/// A pause in the media longer than this is no video (a 30 fps stream has 33 ms between
/// frames; a keyframe wait after a layer switch is well under it).
pub const GAP_US: u64 = 500_000;

/// How long a new subscription may take to deliver its first media packet (join, ICE, DTLS,
/// the router's keyframe request) before the wait counts as no video.
pub const FIRST_MEDIA_GRACE_US: u64 = 3_000_000;

/// The intervals a track keeps for the report (start and length): enough to line them up
/// with a publisher's stops, bounded for a long run.
pub const MAX_INTERVALS: usize = 64;

/// The gap accounting of one received video track.
#[derive(Debug, Clone, Default)]
pub struct VideoGaps {
    first_media_us: Option<u64>,
    last_media_us: Option<u64>,
    gaps_us: u64,
    gaps: u64,
    /// The first [`MAX_INTERVALS`] gaps: (start, length), µs.
    intervals: Vec<(u64, u64)>,
    padding: u64,
}

/// One track's no-video time up to the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoVideo {
    pub us: u64,
    /// Intervals that counted (gaps, a late or missing start, the tail).
    pub gaps: u64,
    /// The first [`MAX_INTERVALS`] of them, in time order: (start, length), µs.
    pub intervals: Vec<(u64, u64)>,
}

impl NoVideo {
    fn add(&mut self, from_us: u64, len_us: u64) {
        self.us += len_us;
        self.gaps += 1;
        if self.intervals.len() < MAX_INTERVALS {
            self.intervals.push((from_us, len_us));
        }
    }
}

impl VideoGaps {
    /// One packet of the track, arriving at `at_us` (arrival times do not go backwards).
    pub fn on_packet(&mut self, at_us: u64, payload_len: usize) {
        if payload_len == 0 {
            self.padding += 1;
            return;
        }
        if let Some(last) = self.last_media_us
            && at_us.saturating_sub(last) > GAP_US
        {
            self.gaps_us += at_us - last;
            self.gaps += 1;
            if self.intervals.len() < MAX_INTERVALS {
                self.intervals.push((last, at_us - last));
            }
        }
        self.first_media_us.get_or_insert(at_us);
        self.last_media_us = Some(self.last_media_us.map_or(at_us, |l| l.max(at_us)));
    }

    /// The no-video time of a track subscribed at `subscribed_us` (`None`: not known, only
    /// the time after its first media counts), for a run that ended at `end_us`.
    pub fn no_video(&self, subscribed_us: Option<u64>, end_us: u64) -> NoVideo {
        let grace_end = subscribed_us.map(|s| s + FIRST_MEDIA_GRACE_US);
        let mut nv = NoVideo::default();
        let (Some(first), Some(last)) = (self.first_media_us, self.last_media_us) else {
            if let Some(g) = grace_end
                && end_us > g
            {
                nv.add(g, end_us - g);
            }
            return nv;
        };
        if let Some(g) = grace_end
            && first > g
        {
            nv.add(g, first - g);
        }
        nv.us += self.gaps_us;
        nv.gaps += self.gaps;
        let room = MAX_INTERVALS.saturating_sub(nv.intervals.len());
        nv.intervals.extend(self.intervals.iter().take(room));
        if end_us.saturating_sub(last) > GAP_US {
            nv.add(last, end_us - last);
        }
        nv
    }

    pub fn first_media_us(&self) -> Option<u64> {
        self.first_media_us
    }

    /// Packets with an empty payload (padding) that arrived.
    pub fn padding(&self) -> u64 {
        self.padding
    }
}

/// The no-video time of one track from its arrival times and payload sizes, in µs: the pure
/// form of [`VideoGaps`], for tests and for reading the rule.
pub fn no_video_us(subscribed_us: Option<u64>, arrivals: &[(u64, usize)], end_us: u64) -> u64 {
    let mut g = VideoGaps::default();
    for &(at, len) in arrivals {
        g.on_packet(at, len);
    }
    g.no_video(subscribed_us, end_us).us
}

/// What one subscriber saw of one video track it should see.
#[derive(Debug, Clone, Serialize)]
pub struct VideoWatch {
    /// The publisher's track id (the subscribe offer's `msid`).
    pub track_id: String,
    pub mid: String,
    /// The SSRC it arrived on (the router's, for this subscription); `None` if nothing did.
    pub ssrc: Option<u32>,
    pub subscribed_us: Option<u64>,
    pub first_media_us: Option<u64>,
    pub no_video_ms: u64,
    /// How many intervals made up `no_video_ms`, and the first [`MAX_INTERVALS`] of them as
    /// [start on the run's clock, length], ms: to line up with the publishers' stops.
    pub no_video_gaps: u64,
    pub no_video_intervals_ms: Vec<[u64; 2]>,
    /// Empty-payload packets that arrived (forwarded padding: no video).
    pub padding_packets: u64,
}

/// One received video m-line.
#[derive(Debug)]
struct Line {
    mid: String,
    track_id: String,
    added_us: u64,
    ssrc: Option<u32>,
    gaps: VideoGaps,
}

/// One subscriber's video tracks: the subscribe connection's video m-lines, what its layout
/// showed, and the media that arrived on each.
#[derive(Debug, Default)]
pub struct Watch {
    /// The layout asks for each video (`disableVidAutoSub`): only the ones shown count.
    asks: bool,
    lines: Vec<Line>,
    /// Track id → when the request to show it (a layer other than `none`) was accepted.
    shown: HashMap<String, u64>,
    /// SSRC → the m-line it belongs to (`None`: not a video m-line we know).
    by_ssrc: HashMap<u32, Option<usize>>,
}

impl Watch {
    pub fn new(asks_for_video: bool) -> Watch {
        Watch { asks: asks_for_video, ..Watch::default() }
    }

    /// Whether the subscribe connection has a video m-line of `track_id`.
    pub fn has_line(&self, track_id: &str) -> bool {
        self.lines.iter().any(|l| l.track_id == track_id)
    }

    /// The subscribe connection got a video m-line (a new subscription).
    pub fn on_video_line(&mut self, mid: &str, track_id: &str, at_us: u64) {
        if self.lines.iter().any(|l| l.mid == mid) {
            return;
        }
        let line = Line {
            mid: mid.to_owned(),
            track_id: track_id.to_owned(),
            added_us: at_us,
            ssrc: None,
            gaps: VideoGaps::default(),
        };
        self.lines.push(line);
    }

    /// The layout's request to show `track_id` was accepted.
    pub fn on_shown(&mut self, track_id: &str, at_us: u64) {
        self.shown.entry(track_id.to_owned()).or_insert(at_us);
    }

    /// A video packet on `ssrc`; `mid_of` names its m-line, asked once per SSRC.
    pub fn on_packet(&mut self, ssrc: u32, at_us: u64, payload_len: usize, mid_of: impl FnOnce() -> Option<String>) {
        let lines = &self.lines;
        let line = *self.by_ssrc.entry(ssrc).or_insert_with(|| {
            let mid = mid_of()?;
            lines.iter().position(|l| l.mid == mid)
        });
        let Some(line) = line.and_then(|i| self.lines.get_mut(i)) else { return };
        line.ssrc.get_or_insert(ssrc);
        line.gaps.on_packet(at_us, payload_len);
    }

    /// Every track the subscriber should have seen, with its no-video time up to `end_us`,
    /// and their sum in ms.
    pub fn finish(&self, end_us: u64) -> (u64, Vec<VideoWatch>) {
        let mut total_us = 0;
        let mut videos = Vec::new();
        for l in &self.lines {
            let subscribed = if self.asks {
                // A video the layout hides (or whose request was refused) is not expected.
                let Some(&shown) = self.shown.get(&l.track_id) else { continue };
                shown.max(l.added_us)
            } else {
                l.added_us
            };
            let nv = l.gaps.no_video(Some(subscribed), end_us);
            total_us += nv.us;
            videos.push(VideoWatch {
                track_id: l.track_id.clone(),
                mid: l.mid.clone(),
                ssrc: l.ssrc,
                subscribed_us: Some(subscribed),
                first_media_us: l.gaps.first_media_us(),
                no_video_ms: nv.us / 1000,
                no_video_gaps: nv.gaps,
                no_video_intervals_ms: nv.intervals.iter().map(|&(from, len)| [from / 1000, len / 1000]).collect(),
                padding_packets: l.gaps.padding(),
            });
        }
        (total_us / 1000, videos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Media every 33 ms from `from` to `to` (µs), as (arrival, payload size).
    fn steady(from: u64, to: u64) -> Vec<(u64, usize)> {
        (from..to).step_by(33_333).map(|t| (t, 1000)).collect()
    }

    #[test]
    fn a_steady_stream_is_no_gap() {
        assert_eq!(no_video_us(Some(0), &steady(200_000, 10_000_000), 10_000_000), 0);
        // Without a known subscription only the time after the first media counts.
        assert_eq!(no_video_us(None, &steady(5_000_000, 10_000_000), 10_000_000), 0);
    }

    #[test]
    fn a_gap_over_500_ms_counts_fully_and_a_shorter_one_not_at_all() {
        let mut a = steady(0, 2_000_000);
        // The last frame before the pause is at 1 999 980 µs, the next at 2 480 000: 480 ms.
        a.extend(steady(2_480_000, 4_000_000));
        assert_eq!(no_video_us(Some(0), &a, 4_000_000), 0);
        let mut b = steady(0, 2_000_000);
        b.extend(steady(2_600_000, 4_000_000));
        let last_before = steady(0, 2_000_000).last().unwrap().0;
        assert_eq!(no_video_us(Some(0), &b, 4_000_000), 2_600_000 - last_before, "the whole gap, not the excess");
    }

    #[test]
    fn padding_is_not_video() {
        // Video, then 3 s of padding only, then video again: the padding does not fill the gap.
        let mut a = steady(0, 2_000_000);
        let last_before = a.last().unwrap().0;
        a.extend((2_000_000..5_000_000).step_by(200_000).map(|t| (t, 0)));
        a.extend(steady(5_000_000, 8_000_000));
        assert_eq!(no_video_us(Some(0), &a, 8_000_000), 5_000_000 - last_before);
        let mut g = VideoGaps::default();
        for &(t, n) in &a {
            g.on_packet(t, n);
        }
        assert_eq!(g.padding(), 15);
        let nv = g.no_video(Some(0), 8_000_000);
        assert_eq!((nv.gaps, nv.intervals), (1, vec![(last_before, 5_000_000 - last_before)]));
    }

    #[test]
    fn the_tail_counts_when_video_stops_before_the_end() {
        let a = steady(0, 4_000_000);
        let last = a.last().unwrap().0;
        assert_eq!(no_video_us(Some(0), &a, 10_000_000), 10_000_000 - last);
        // Ending within 500 ms of the last frame is no gap.
        assert_eq!(no_video_us(Some(0), &a, last + 400_000), 0);
    }

    #[test]
    fn intervals_come_in_time_order_and_are_bounded() {
        // A late start (subscribed at 0, media from 4 s), a 1 s gap, a tail of 2 s.
        let mut g = VideoGaps::default();
        for (t, n) in [(4_000_000, 1000), (5_000_000, 1000), (6_000_000, 1000)] {
            g.on_packet(t, n);
        }
        let nv = g.no_video(Some(0), 8_000_000);
        assert_eq!(
            nv.intervals,
            [(3_000_000, 1_000_000), (4_000_000, 1_000_000), (5_000_000, 1_000_000), (6_000_000, 2_000_000)]
        );
        assert_eq!((nv.us, nv.gaps), (5_000_000, 4));
        // A hundred gaps: all counted, the first 64 listed.
        let mut g = VideoGaps::default();
        for i in 0..=100 {
            g.on_packet(i * 1_000_000, 1000);
        }
        let nv = g.no_video(None, 100_000_000);
        assert_eq!((nv.gaps, nv.us, nv.intervals.len()), (100, 100_000_000, MAX_INTERVALS));
    }

    #[test]
    fn a_late_first_packet_counts_past_the_grace_and_a_missing_one_to_the_end() {
        // Subscribed at 1 s: media from 3.5 s is within the grace (4 s).
        assert_eq!(no_video_us(Some(1_000_000), &steady(3_500_000, 9_000_000), 9_000_000), 0);
        // From 6 s: the 2 s past the grace count.
        assert_eq!(no_video_us(Some(1_000_000), &steady(6_000_000, 9_000_000), 9_000_000), 2_000_000);
        // Never: from the end of the grace to the end of the run.
        assert_eq!(no_video_us(Some(1_000_000), &[], 9_000_000), 5_000_000);
        let never = VideoGaps::default().no_video(Some(1_000_000), 9_000_000);
        assert_eq!(never.intervals, [(4_000_000, 5_000_000)]);
        // Padding only is never.
        assert_eq!(no_video_us(Some(1_000_000), &[(1_500_000, 0), (2_000_000, 0)], 9_000_000), 5_000_000);
        // Subscribed too close to the end for the grace to run out: nothing.
        assert_eq!(no_video_us(Some(8_000_000), &[], 9_000_000), 0);
    }

    #[test]
    fn watch_counts_shown_tracks_only_and_finds_lines_by_ssrc() {
        let end = 10_000_000;
        // `--layout all`: every video m-line counts from when it was added.
        let mut all = Watch::new(false);
        all.on_video_line("1", "v-a", 0);
        all.on_video_line("2", "v-b", 0);
        for (t, n) in steady(100_000, end) {
            all.on_packet(111, t, n, || Some("1".into()));
        }
        // An SSRC whose m-line is unknown is ignored, and asked for once only.
        let mut asked = 0;
        for t in [1_000, 2_000] {
            all.on_packet(999, t, 1000, || {
                asked += 1;
                None
            });
        }
        assert_eq!(asked, 1);
        let (total_ms, videos) = all.finish(end);
        assert_eq!(videos.len(), 2);
        assert_eq!((videos[0].ssrc, videos[0].no_video_ms), (Some(111), 0));
        // The second never delivered: from the end of its grace (3 s) to the end.
        assert_eq!((videos[1].ssrc, videos[1].no_video_ms), (None, 7_000));
        assert_eq!(total_ms, 7_000);

        // A layout: only what was shown counts, from the later of the m-line and the request.
        let mut layout = Watch::new(true);
        layout.on_video_line("1", "v-a", 0);
        layout.on_video_line("2", "v-hidden", 0);
        layout.on_shown("v-a", 2_000_000);
        let (total_ms, videos) = layout.finish(end);
        assert_eq!(videos.len(), 1);
        assert_eq!(videos[0].subscribed_us, Some(2_000_000));
        assert_eq!(total_ms, 5_000);
    }
}
