#![no_main]
//! Media tap records (router shard → recorder, shared memory): a record that decodes encodes
//! back to one that decodes the same; nothing panics.
use libfuzzer_sys::fuzz_target;
use schema::tap::TapRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = TapRecord::decode(data) {
        let mut out = Vec::new();
        rec.encode(&mut out);
        assert!(out.len() <= data.len());
        assert_eq!(TapRecord::decode(&out), Ok(rec));
    }
});
