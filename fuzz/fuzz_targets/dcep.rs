#![no_main]
//! DCEP (RFC 8832) messages, then whole SCTP packets into a data channel association.
//!
//! A DATA_CHANNEL_OPEN that parses must write back to the same bytes; any input fed to an
//! association as the plaintext of a DTLS record must be dropped, never panic.
use libfuzzer_sys::fuzz_target;
use router_engine::sctp::{DcepMessage, SctpTransport, parse_dcep};

fuzz_target!(|data: &[u8]| {
    if let Ok(DcepMessage::Open(open)) = parse_dcep(data) {
        let mut out = vec![0u8; open.encoded_len()];
        let n = open.write(&mut out).expect("a parsed OPEN fits its encoded length");
        assert_eq!(&out[..n], data);
    }
    let now = std::time::Instant::now();
    let mut sctp = SctpTransport::new();
    sctp.handle_packet(now, data);
    sctp.handle_timeout(now);
    sctp.poll_transmit(now, &mut |_| {});
    while sctp.poll_event().is_some() {}
});
