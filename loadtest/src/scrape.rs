//! The router's own counters, read over its control socket (JSON lines, the same commands as
//! the link to signaling): the server's side of the run. The tool reads them at the start and
//! the end of the steady window (every peer started, media flowing) and reports the
//! difference: forwarded packets, datagrams, NACKs, PLIs, layer switches and drops by reason.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// Counter name → value, summed over the shards.
pub type Counters = BTreeMap<String, u64>;

/// Counters that are drops (a packet that came in or should have gone out and did not).
pub const DROPS: &[&str] = &[
    "unknown_kind",
    "stun_malformed",
    "stun_unknown_ufrag",
    "stun_rejected",
    "dtls_unknown_address",
    "srtp_unknown_address",
    "srtp_not_ready",
    "srtp_auth_failed",
    "srtp_replayed",
    "srtp_other",
    "rtp_malformed",
    "rtp_unknown_ssrc",
    "rtp_unknown_rid",
    "rtcp_malformed",
    "retransmits_over_budget",
    "transmit_too_large",
];

/// Reads every shard's counters (shard 0, 1, … until the router says there is no such shard)
/// and sums them. `None` if the socket cannot be used at all.
pub fn read(socket: &Path) -> Option<Counters> {
    let stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut writer = stream.try_clone().ok()?;
    let mut reader = BufReader::new(stream);
    let mut total = Counters::new();
    for shard in 0..=u8::MAX {
        let req = json!({"id": shard, "method": "counters", "params": {"shard": shard}});
        writer.write_all(format!("{req}\n").as_bytes()).ok()?;
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let v: Value = serde_json::from_str(&line).ok()?;
        let Some(result) = v.get("result").and_then(Value::as_object) else { break };
        for (k, v) in result {
            if let Some(n) = v.as_u64() {
                *total.entry(k.clone()).or_default() += n;
            }
        }
    }
    (!total.is_empty()).then_some(total)
}

/// `after - before`, counter by counter (gauges such as `transports` keep the later value).
pub fn delta(before: &Counters, after: &Counters) -> Counters {
    after
        .iter()
        .map(|(k, a)| {
            let d = if k == "transports" { *a } else { a.saturating_sub(before.get(k).copied().unwrap_or(0)) };
            (k.clone(), d)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_subtracts_counters_and_keeps_gauges() {
        let before: Counters = [("forwarded".to_string(), 10), ("transports".to_string(), 3)].into();
        let after: Counters =
            [("forwarded".to_string(), 25), ("transports".to_string(), 5), ("plis_sent".to_string(), 2)].into();
        let d = delta(&before, &after);
        assert_eq!((d["forwarded"], d["transports"], d["plis_sent"]), (15, 5, 2));
    }

    #[test]
    fn a_missing_socket_is_none() {
        assert_eq!(read(Path::new("/nonexistent/router.sock")), None);
    }
}
