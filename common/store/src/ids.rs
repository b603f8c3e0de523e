//! Random identifiers: object ids, UUIDs, workspace secrets, all from the system's secure
//! random source.

/// Fills `buf` from the system's secure random source.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    // aws-lc's RNG fails only if the kernel's entropy source is unusable; nothing can run then.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(buf).expect("system random source unavailable");
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A new object id: 24 random hex characters, like 100ms's (Mongo ObjectId-shaped) ids.
pub fn new_id() -> String {
    let mut b = [0u8; 12];
    random_bytes(&mut b);
    hex(&b)
}

/// A random UUID (version 4): event ids and token `jti`s, as 100ms makes them.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A secret (a workspace's, the TURN server's): 32 random bytes as 64 hex characters (the HMAC
/// key is the string's bytes, as with 100ms's app secret).
pub fn random_secret() -> String {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    hex(&b)
}
