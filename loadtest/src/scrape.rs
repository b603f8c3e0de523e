//! The router's own counters, read over its control socket (JSON lines, the same commands as
//! the link to signaling): the server's side of the run. The tool reads them at the start and
//! the end of the steady window (every peer started, media flowing) and reports the
//! difference: forwarded packets, datagrams, NACKs, PLIs, layer switches, the shards' CPU time
//! and drops by reason (the router's own list of drop counters comes with the reply).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// Counter name → value, summed over the shards.
pub type Counters = BTreeMap<String, u64>;

/// The key under which [`read`] puts the shards' summed thread CPU time, nanoseconds.
pub const SHARD_CPU_NS: &str = "shard_cpu_ns";

/// One reading of the router's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub counters: Counters,
    /// The counters that are drops, as the router names them (its `drop_reasons`), so the list
    /// is the router's own and cannot drift from it.
    pub drop_reasons: Vec<String>,
}

impl Reading {
    /// Sum of the drop counters in `counters` (e.g. a [`delta`]).
    pub fn drops_in(&self, counters: &Counters) -> u64 {
        self.drop_reasons.iter().map(|k| counters.get(k).copied().unwrap_or(0)).sum()
    }
}

/// Reads every shard's counters with one `metrics` request and sums them over the shards;
/// each shard's thread CPU time is summed under [`SHARD_CPU_NS`]. `None` if the socket cannot
/// be used at all.
pub fn read(socket: &Path) -> Option<Reading> {
    let stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut writer = stream.try_clone().ok()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(format!("{}\n", json!({"id": 1, "method": "metrics"})).as_bytes()).ok()?;
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    parse_metrics(&serde_json::from_str(&line).ok()?)
}

/// The `metrics` reply (`{"result": {"drop_reasons": [...], "shards": [{"counters": {...}}]}}`)
/// as a [`Reading`].
pub fn parse_metrics(reply: &Value) -> Option<Reading> {
    let result = reply.get("result")?;
    let drop_reasons =
        result.get("drop_reasons")?.as_array()?.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    let mut counters = Counters::new();
    for shard in result.get("shards")?.as_array()? {
        let Some(c) = shard.get("counters").and_then(Value::as_object) else { continue };
        for (k, v) in c {
            if let Some(n) = v.as_u64() {
                *counters.entry(k.clone()).or_default() += n;
            }
        }
        if let Some(ns) = c.get("shell").and_then(|s| s.get("cpu_ns")).and_then(Value::as_u64) {
            *counters.entry(SHARD_CPU_NS.to_owned()).or_default() += ns;
        }
    }
    Some(Reading { counters, drop_reasons })
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
    fn metrics_replies_sum_shards_and_carry_the_routers_drop_reasons() {
        let reply = json!({"id": 1, "result": {
        "drop_reasons": ["srtp_replayed", "rtp_duplicates"],
        "shards": [
            {"shard": 0, "counters": {"forwarded": 10, "srtp_replayed": 1, "shell": {"cpu_ns": 500}}},
            {"shard": 1, "counters": {"forwarded": 5, "rtp_duplicates": 2, "shell": {"cpu_ns": 300}}},
        ]}});
        let r = parse_metrics(&reply).expect("a metrics reply");
        assert_eq!(r.counters["forwarded"], 15);
        assert_eq!(r.counters[SHARD_CPU_NS], 800);
        assert_eq!(r.drops_in(&r.counters), 3);
        assert_eq!(parse_metrics(&json!({"id": 1, "error": {"code": 1}})), None);
    }

    #[test]
    fn a_missing_socket_is_none() {
        assert_eq!(read(Path::new("/nonexistent/router.sock")), None);
    }
}
