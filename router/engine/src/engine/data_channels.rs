//! Data channels: the SCTP association over DTLS, driven and flushed by the engine.

use std::time::Instant;

use schema::api::{ApiError, Event};
use schema::ids::TransportId;
use tracing::debug;

use super::objects::Transport;
use super::{Engine, Transmit};
use crate::sctp::{MAX_EARLY_PACKETS, SctpDrop, SctpError, SctpEvent};

impl Engine {
    /// Opens a data channel (ordered, reliable) with this label on a transport, as soon as its
    /// SCTP association is up. Idempotent per label: a channel with this label, opened by
    /// either side, satisfies it. [`Event::DataChannelOpened`] says when it is usable.
    pub fn open_data_channel(&mut self, now: Instant, transport: TransportId, label: &str) -> Result<(), ApiError> {
        let t = self.transports.get_mut(&transport).ok_or(ApiError::UnknownTransport(transport))?;
        t.sctp.open_channel(label).map_err(|e| sctp_api_error(e, label))?;
        self.mark_sctp_dirty(now, transport);
        Ok(())
    }

    /// Sends one text message on the data channel with this label.
    pub fn send_data(&mut self, now: Instant, transport: TransportId, label: &str, text: &str) -> Result<(), ApiError> {
        let t = self.transports.get_mut(&transport).ok_or(ApiError::UnknownTransport(transport))?;
        t.sctp.send_text(label, text).map_err(|e| sctp_api_error(e, label))?;
        self.counters.data_channel_messages_out += 1;
        self.mark_sctp_dirty(now, transport);
        Ok(())
    }

    /// Whether the data channel with this label can carry messages now.
    pub fn data_channel_open(&self, transport: TransportId, label: &str) -> bool {
        self.transports.get(&transport).is_some_and(|t| t.sctp.is_open(label))
    }

    pub(super) fn mark_sctp_dirty(&mut self, now: Instant, id: TransportId) {
        if !self.sctp_dirty.contains(&id) {
            self.sctp_dirty.push(id);
        }
        self.sctp_wake = Some(self.sctp_wake.map_or(now, |w| w.min(now)));
    }

    /// Hands the DTLS application data of a transport to its SCTP association, then sends
    /// what that produced.
    pub(super) fn sctp_input(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
        let Some(t) = self.transports.get_mut(&id) else { return };
        let mut any = false;
        while let Some(data) = t.dtls.poll_application_data() {
            any = true;
            if t.connected {
                t.sctp.handle_packet(now, &data);
            } else if t.sctp_early.len() < MAX_EARLY_PACKETS {
                // The peer's certificate is not verified yet (signaling has not delivered the
                // fingerprint): keep the INIT for when it is, rather than wait for a resend.
                t.sctp_early.push(data);
            } else {
                self.counters.sctp_dropped += 1;
            }
        }
        if any {
            self.drive_sctp(now, id, out);
        }
    }

    /// Feeds early packets, runs SCTP timers, sends SCTP output as DTLS records and turns
    /// SCTP events into engine events and counters.
    pub(super) fn drive_sctp(&mut self, now: Instant, id: TransportId, out: &mut dyn Transmit) {
        let Engine { transports, dtls_scratch, counters, events, .. } = self;
        let Some(t) = transports.get_mut(&id) else { return };
        if !t.connected {
            return;
        }
        for data in std::mem::take(&mut t.sctp_early) {
            t.sctp.handle_packet(now, &data);
        }
        t.sctp.handle_timeout(now);
        if let Some(dst) = t.remote().or(t.remote_addrs.first().copied()) {
            let Transport { sctp, dtls, .. } = t;
            let (mut sent, mut too_large, mut failed) = (0u64, 0u64, 0u64);
            sctp.poll_transmit(now, &mut |packet: &[u8]| {
                let r = dtls.send_application_data(packet, dtls_scratch, &mut |record: &[u8]| {
                    let slot = out.buffer();
                    if record.len() <= slot.len() {
                        slot[..record.len()].copy_from_slice(record);
                        out.commit(dst, record.len());
                        sent += 1;
                    } else {
                        too_large += 1;
                    }
                });
                if r.is_err() {
                    failed += 1;
                }
            });
            counters.datagrams_out += sent;
            counters.transmit_too_large += too_large;
            counters.sctp_send_failed += failed;
        }
        while let Some(ev) = t.sctp.poll_event() {
            match ev {
                SctpEvent::ChannelOpened { label } => {
                    debug!(transport = %id, label, "data channel opened");
                    events.push_back(Event::DataChannelOpened { transport: id, label });
                }
                SctpEvent::Text { label, text } => {
                    counters.data_channel_messages_in += 1;
                    events.push_back(Event::DataChannelMessage { transport: id, label, text });
                }
                SctpEvent::Dropped(SctpDrop::Packet) => counters.sctp_dropped += 1,
                SctpEvent::Dropped(SctpDrop::Dcep) => counters.dcep_malformed += 1,
                SctpEvent::Dropped(SctpDrop::Binary) => counters.data_channel_binary_dropped += 1,
                SctpEvent::Dropped(SctpDrop::Message | SctpDrop::TooManyChannels) => counters.data_channel_dropped += 1,
            }
        }
    }
}

/// The API error for a data channel command that failed.
pub(super) fn sctp_api_error(e: SctpError, label: &str) -> ApiError {
    match e {
        SctpError::NotOpen(_) => ApiError::DataChannelNotOpen(label.to_owned()),
        SctpError::TooLarge { len, max } => ApiError::MessageTooLarge { len: len as u64, max: max as u64 },
        other => ApiError::InvalidParams(other.to_string()),
    }
}
