#![no_main]
//! Walks a compound RTCP packet fully, including every lazy iterator inside the views.
use libfuzzer_sys::fuzz_target;
use router_engine::rtcp::{self, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    for p in rtcp::packets(data) {
        let Ok(p) = p else { break };
        match p {
            RtcpPacket::SenderReport { reports, .. }
            | RtcpPacket::ReceiverReport { reports, .. } => {
                let _ = reports.count();
            }
            RtcpPacket::Sdes { chunks } => {
                for c in chunks {
                    let _ = c.cname();
                    let _ = c.items.count();
                }
            }
            RtcpPacket::Bye { ssrcs, .. } | RtcpPacket::Remb { ssrcs, .. } => {
                let _ = ssrcs.count();
            }
            RtcpPacket::Nack { lost, .. } => {
                let _ = lost.count();
            }
            RtcpPacket::Fir { entries, .. } => {
                let _ = entries.count();
            }
            RtcpPacket::TransportCc(fb) => {
                assert_eq!(fb.packets().count(), fb.status_count as usize);
            }
            RtcpPacket::Pli { .. } | RtcpPacket::Unknown { .. } => {}
        }
    }
});
