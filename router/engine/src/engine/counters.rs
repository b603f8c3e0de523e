//! The engine's counters: what it did, and every packet it dropped, by reason.

/// Packets the engine dropped, by reason. Bad input is counted, never fatal.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub unknown_kind: u64,
    pub stun_malformed: u64,
    pub stun_unknown_ufrag: u64,
    pub stun_rejected: u64,
    pub dtls_unknown_address: u64,
    pub dtls_failed: u64,
    pub srtp_unknown_address: u64,
    pub srtp_not_ready: u64,
    pub srtp_auth_failed: u64,
    pub srtp_replayed: u64,
    pub srtp_other: u64,
    pub rtp_malformed: u64,
    pub rtp_unknown_ssrc: u64,
    /// RTP whose rid names no layer of the producer its mid names.
    pub rtp_unknown_rid: u64,
    /// RTP packets (usually RTX) whose sequence number the producer's layer already had:
    /// a publisher's redundant padding or a late retransmission, not forwarded.
    pub rtp_duplicates: u64,
    pub rtcp_malformed: u64,
    /// PLI, FIR, NACK or REMB about an SSRC this transport does not send.
    pub feedback_unknown_ssrc: u64,
    /// Simulcast layer switches of all consumers (each on a keyframe of the new layer).
    pub layer_switches: u64,
    /// Switches given up because the target layer's keyframe never came.
    pub layer_switch_timeouts: u64,
    /// Simulcast layers that started carrying frames, and that stopped (padding, or nothing,
    /// for longer than a few of their frame intervals: `liveness`).
    pub simulcast_layers_started: u64,
    pub simulcast_layers_stopped: u64,
    /// Video consumers that fell back to a layer other than the one they want because it is not
    /// live at the publisher (counted once per fallback, not per packet).
    pub simulcast_fallbacks: u64,
    /// Milliseconds, summed over video consumers, with no media forwarded (padding does not
    /// count) for over [`crate::liveness::UNSERVED_AFTER`] although the subscriber wants video, its bandwidth
    /// allows it and the publisher sends some: the time a subscriber's tile is frozen by the
    /// router. 0 is the target.
    pub video_unserved_ms: u64,
    /// Transport-cc feedback packets received from subscribers, and those that were malformed
    /// or named only packets the estimator never sent (or forgot).
    pub twcc_feedback_received: u64,
    pub twcc_feedback_unknown: u64,
    pub remb_received: u64,
    /// REMBs sent to publishers to stop (or resume) simulcast layers nobody needs (`uplink`).
    pub uplink_remb_sent: u64,
    /// Padding packets sent to probe a subscriber's bandwidth.
    pub probe_packets: u64,
    pub forwarded: u64,
    pub nacks_received: u64,
    pub nacks_sent: u64,
    pub retransmitted: u64,
    /// NACKs not answered because the subscriber's link had no room for the resend.
    pub retransmits_over_budget: u64,
    pub plis_received: u64,
    pub plis_sent: u64,
    pub plis_throttled: u64,
    pub transmit_too_large: u64,
    /// Application data that was not an SCTP packet of the transport's association.
    pub sctp_dropped: u64,
    /// Malformed or unexpected DCEP messages (RFC 8832).
    pub dcep_malformed: u64,
    /// Binary data channel messages: the router's channels carry text only.
    pub data_channel_binary_dropped: u64,
    /// Other data channel messages dropped: not UTF-8, unknown PPID, no channel, too many channels.
    pub data_channel_dropped: u64,
    pub data_channel_messages_in: u64,
    pub data_channel_messages_out: u64,
    /// SCTP packets DTLS refused to send.
    pub sctp_send_failed: u64,
    /// Media tap records handed to the recorder's ring, and those dropped because it was full.
    pub tap_records: u64,
    pub tap_dropped: u64,
}
