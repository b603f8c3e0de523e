//! The platform's `GET /metrics` (Prometheus text format), read the way a Prometheus server
//! would: the tool scrapes it at the start and the end of the steady window and reports the
//! in-router latency (receive batch → its sends submitted) from the difference of the
//! `router_latency_seconds` histogram, summed over the shards, with `histogram_quantile`'s
//! linear interpolation inside a bucket.

/// Cumulative bucket counts by upper bound (seconds; `f64::INFINITY` for `+Inf`), summed over
/// every series of the histogram `name`.
pub type Buckets = Vec<(f64, f64)>;

/// The buckets of histogram `name` in an exposition, summed over its label sets.
pub fn histogram(text: &str, name: &str) -> Buckets {
    let prefix = format!("{name}_bucket{{");
    let mut out: Buckets = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let Some(le) = series.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else if let Ok(v) = le.parse() {
            v
        } else {
            continue;
        };
        match out.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += value,
            None => out.push((le, value)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// `after - before`, bucket by bucket (a bucket missing before counts from zero).
pub fn delta(before: &Buckets, after: &Buckets) -> Buckets {
    after.iter().map(|&(le, c)| (le, c - before.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, c)| *c))).collect()
}

/// The `q` quantile in seconds; `None` without samples. In the `+Inf` bucket, the highest
/// finite bound (the histogram knows no more).
pub fn quantile(buckets: &Buckets, q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, cum) in buckets {
        if cum >= rank && cum > below {
            if le.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (le - lower) * (rank - below) / (cum - below));
        }
        (lower, below) = (le, cum);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE router_latency_seconds histogram
router_latency_seconds_bucket{shard=\"0\",le=\"0.00002\"} 0
router_latency_seconds_bucket{shard=\"0\",le=\"0.00005\"} 60
router_latency_seconds_bucket{shard=\"0\",le=\"0.001\"} 60
router_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 60
router_latency_seconds_bucket{shard=\"1\",le=\"0.00002\"} 0
router_latency_seconds_bucket{shard=\"1\",le=\"0.00005\"} 30
router_latency_seconds_bucket{shard=\"1\",le=\"0.001\"} 40
router_latency_seconds_bucket{shard=\"1\",le=\"+Inf\"} 40
router_latency_seconds_sum{shard=\"1\"} 0.1
";

    #[test]
    fn quantiles_of_the_summed_shards() {
        let h = histogram(TEXT, "router_latency_seconds");
        assert_eq!(h.len(), 4);
        assert_eq!(h[3], (f64::INFINITY, 100.0));
        // 90 samples in (20, 50] µs, 10 in (50, 1000] µs.
        let p50 = quantile(&h, 0.5).unwrap();
        assert!((p50 - (20e-6 + 30e-6 * 50.0 / 90.0)).abs() < 1e-12, "{p50}");
        let p99 = quantile(&h, 0.99).unwrap();
        assert!((p99 - (50e-6 + 950e-6 * 0.9)).abs() < 1e-12, "{p99}");
    }

    #[test]
    fn the_window_is_the_difference() {
        let before = histogram(TEXT, "router_latency_seconds");
        assert_eq!(quantile(&delta(&before, &before), 0.5), None);
        let mut after = before.clone();
        for b in after.iter_mut().skip(1) {
            b.1 += 10.0; // 10 more samples in (20, 50] µs
        }
        let p99 = quantile(&delta(&before, &after), 0.99).unwrap();
        assert!((20e-6..=50e-6).contains(&p99), "{p99}");
    }

    #[test]
    fn garbage_is_no_histogram() {
        assert!(
            histogram("not metrics\nrouter_latency_seconds_bucket{le=\"x\"} 1", "router_latency_seconds").is_empty()
        );
        assert_eq!(quantile(&Vec::new(), 0.5), None);
    }
}
