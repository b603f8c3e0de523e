//! Per-stream meters: a layer's bit rate over the last second, and a speaker's smoothed audio
//! level. Time is an argument.

use std::time::{Duration, Instant};

/// A stream's bit rate over the last second, in four 250 ms buckets: smooth enough for the
/// allocation (a keyframe does not make a layer look three times its size) and quick enough
/// that a layer that stops is seen within a second.
#[derive(Debug, Clone)]
pub struct RateMeter {
    buckets: [u64; 4],
    bucket: usize,
    bucket_start: Option<Instant>,
    last_packet: Option<Instant>,
}

const BUCKET: Duration = Duration::from_millis(250);
/// A layer with no packet for this long is not flowing (stopped by the publisher, or never
/// started): the allocation will not pick it.
pub const LAYER_IDLE: Duration = Duration::from_millis(1500);

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateMeter {
    pub fn new() -> Self {
        RateMeter { buckets: [0; 4], bucket: 0, bucket_start: None, last_packet: None }
    }

    fn advance(&mut self, now: Instant) {
        let start = *self.bucket_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        let steps = (elapsed.as_millis() / BUCKET.as_millis()) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(4) {
            self.bucket = (self.bucket + 1) % 4;
            self.buckets[self.bucket] = 0;
        }
        self.bucket_start = Some(start + BUCKET * steps as u32);
    }

    pub fn on_packet(&mut self, now: Instant, bytes: usize) {
        self.advance(now);
        self.buckets[self.bucket] += bytes as u64;
        self.last_packet = Some(now);
    }

    /// Bits per second over the last second, or `None` when the stream is not flowing.
    pub fn rate_bps(&mut self, now: Instant) -> Option<u64> {
        self.advance(now);
        let last = self.last_packet?;
        if now.saturating_duration_since(last) > LAYER_IDLE {
            return None;
        }
        // The current bucket is partly filled: count the three full ones and the part.
        let full: u64 = (0..4).filter(|&i| i != self.bucket).map(|i| self.buckets[i]).sum();
        let part = self.buckets[self.bucket];
        let part_ms = self
            .bucket_start
            .map_or(0, |s| now.saturating_duration_since(s).as_millis() as u64)
            .min(BUCKET.as_millis() as u64);
        let span_ms = 750 + part_ms.max(1);
        Some((full + part) * 8 * 1000 / span_ms)
    }
}

/// A speaker's level from the ssrc-audio-level extension (RFC 6464: 0 is 0 dBov, the loudest,
/// 127 is -127 dBov, silence), smoothed so one loud packet does not make a speaker and a
/// pause between words does not unmake one.
#[derive(Debug, Clone, Default)]
pub struct AudioLevelMeter {
    /// Smoothed loudness, 0 (silence) to 127 (0 dBov).
    smoothed: f32,
    last: Option<Instant>,
}

/// Below this loudness (-70 dBov) a producer is silent.
const SILENCE: f32 = 127.0 - 70.0;

impl AudioLevelMeter {
    /// One packet's level: the extension's byte (V bit and the 7-bit level).
    pub fn on_level(&mut self, now: Instant, ext_byte: u8) {
        let loudness = 127.0 - f32::from(ext_byte & 0x7f);
        if self.last.is_none() {
            self.smoothed = loudness;
        }
        // Rise fast (a new speaker is heard at once), fall slowly (over about a second).
        let alpha = if loudness > self.smoothed { 0.3 } else { 0.02 };
        self.smoothed += alpha * (loudness - self.smoothed);
        self.last = Some(now);
    }

    /// The level for the SDK (`active-speakers` `level`, 0–100), or `None` when silent or when
    /// no packet came for a second (DTX, muted).
    pub fn level(&self, now: Instant) -> Option<u8> {
        let last = self.last?;
        if now.saturating_duration_since(last) > Duration::from_secs(1) || self.smoothed < SILENCE {
            return None;
        }
        Some((((self.smoothed - SILENCE) / (127.0 - SILENCE)) * 100.0).clamp(1.0, 100.0) as u8)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rate_meter_measures_and_sees_a_stopped_stream() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        assert_eq!(m.rate_bps(t0), None);
        // 100 packets of 1000 bytes a second: 800 kbit/s.
        for i in 0..300u32 {
            m.on_packet(t0 + Duration::from_millis(10 * u64::from(i)), 1000);
        }
        let at = t0 + Duration::from_millis(2995);
        let r = m.rate_bps(at).unwrap();
        assert!((720_000..=880_000).contains(&r), "{r}");
        assert_eq!(m.rate_bps(at + LAYER_IDLE + Duration::from_millis(10)), None);
        // Restarting counts only the new packets.
        let later = at + Duration::from_secs(5);
        m.on_packet(later, 1000);
        assert!(m.rate_bps(later).unwrap() < 20_000);
    }

    #[test]
    fn audio_level_rises_fast_falls_slowly_and_silence_is_none() {
        let t0 = Instant::now();
        let mut m = AudioLevelMeter::default();
        assert_eq!(m.level(t0), None);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // -20 dBov speech for 200 ms (packets every 20 ms).
        for i in 0..10 {
            m.on_level(ms(20 * i), 20);
        }
        let speaking = m.level(ms(200)).unwrap();
        assert!(speaking > 60, "{speaking}");
        // Then silence (-127 dBov): still a speaker 200 ms later, not after 3 s.
        for i in 10..20 {
            m.on_level(ms(20 * i), 127);
        }
        assert!(m.level(ms(400)).is_some());
        for i in 20..170 {
            m.on_level(ms(20 * i), 127);
        }
        assert_eq!(m.level(ms(3400)), None);
        // No packets for over a second (muted or DTX): not speaking.
        let mut n = AudioLevelMeter::default();
        n.on_level(t0, 10);
        assert!(n.level(t0).is_some());
        assert_eq!(n.level(ms(1500)), None);
    }
}
