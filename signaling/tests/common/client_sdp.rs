//! What the WSS client tests share: the SDK's Chrome publish offer and the SDP a browser would
//! answer a subscribe offer with.
#![allow(dead_code)] // each test file uses its own part

pub const CHROME_OFFER: &str = include_str!("../data/chrome-publish-offer.sdp");
pub const AUDIO_TRACK: &str = "a1b2c3d4-0000-4000-8000-aaaaaaaaaaaa";
pub const VIDEO_TRACK: &str = "b1b2c3d4-0000-4000-8000-bbbbbbbbbbbb";
pub const STREAM: &str = "5f3c1d2e-8a7b-4c6d-9e0f-112233445566";

/// The SDK's first publish offer: only the data channel.
pub fn data_channel_offer() -> String {
    let head: String =
        CHROME_OFFER.split("m=audio").next().unwrap().replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0");
    let app = CHROME_OFFER.split("m=application").nth(1).unwrap();
    format!("{head}m=application{}", app.replace("a=mid:2", "a=mid:0"))
}

/// A browser-like answer to a subscribe offer: every m-line received, DTLS client.
pub fn answer_for(offer: &str) -> String {
    let mut out = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    for line in offer.lines().filter(|l| l.starts_with("a=group:")) {
        out += &format!("{line}\r\n");
    }
    for section in offer.split("\r\nm=").skip(1) {
        let mut lines = section.lines();
        let mline = lines.next().unwrap();
        out += &format!("m={}\r\nc=IN IP4 0.0.0.0\r\n", mline.replacen(mline.split(' ').nth(1).unwrap(), "9", 1));
        out += "a=ice-ufrag:Sub1\r\na=ice-pwd:subscriberpasswordsubscr\r\na=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:active\r\n";
        for l in lines {
            if l.starts_with("a=mid:")
                || l.starts_with("a=rtpmap:")
                || l.starts_with("a=sctp-port")
                || l == "a=rtcp-mux"
            {
                out += &format!("{l}\r\n");
            }
        }
        if !mline.starts_with("application") {
            out += if section.contains("a=inactive") { "a=inactive\r\n" } else { "a=recvonly\r\n" };
        }
    }
    out
}
