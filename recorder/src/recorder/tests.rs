use super::manifest::safe_component;
use super::track::ntp_to_unix_ms;

#[test]
fn ntp_converts_to_unix_ms() {
    // 2024-01-01T00:00:00Z is 1704067200 Unix, + 2208988800 in NTP; half a second.
    let ntp = ((1_704_067_200u64 + 2_208_988_800) << 32) | 0x8000_0000;
    assert_eq!(ntp_to_unix_ms(ntp), 1_704_067_200_500);
}

#[test]
fn path_components_are_sanitized() {
    assert_eq!(safe_component("../etc/passwd"), "___etc_passwd");
    assert_eq!(safe_component(""), "_");
    assert_eq!(safe_component("a-b_c9"), "a-b_c9");
}
