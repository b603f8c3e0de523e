#![no_main]
//! Decodes inter-process frames (binary and JSON), as a process does with what arrives on a
//! shared-memory queue or the control socket; whatever decodes must encode again.
use libfuzzer_sys::fuzz_target;
use schema::frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = frame::decode(data) {
        let mut out = Vec::new();
        frame::encode(&msg, &mut out).expect("a decoded message encodes");
    }
    let mut rest = data;
    while let Ok((_, used)) = frame::decode_prefix(rest) {
        if used == 0 {
            break;
        }
        rest = &rest[used..];
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = frame::decode_json(text);
    }
});
