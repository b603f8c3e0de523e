//! An SVG chart of the run over time: throughput, latency and CPU, one panel each. Plain SVG
//! text (polylines on a grid), so any browser shows it and no plotting stack is built.

use std::fmt::Write as _;

use crate::report::TimePoint;

const W: f64 = 900.0;
const PANEL: f64 = 200.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 30.0;

/// One panel: its title, unit and series (label, colour, value per point).
struct Panel<'a> {
    title: &'a str,
    series: Vec<(&'a str, &'a str, Vec<f64>)>,
}

/// The chart as an SVG document.
pub fn svg(points: &[TimePoint], title: &str) -> String {
    let t: Vec<f64> = points.iter().map(|p| p.t_s).collect();
    let panels = [
        Panel {
            title: "throughput (packets/s)",
            series: vec![
                ("sent", "#1f77b4", points.iter().map(|p| p.sent_pps).collect()),
                ("received", "#2ca02c", points.iter().map(|p| p.recv_pps).collect()),
            ],
        },
        Panel {
            title: "one-way latency, mean (ms)",
            series: vec![("latency", "#d62728", points.iter().map(|p| p.latency_ms).collect())],
        },
        Panel {
            title: "CPU (cores)",
            series: vec![
                ("server", "#9467bd", points.iter().map(|p| p.server_cpu).collect()),
                ("generator", "#ff7f0e", points.iter().map(|p| p.generator_cpu).collect()),
            ],
        },
    ];
    let h = TOP + panels.len() as f64 * (PANEL + 50.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="14">{}</text>"#,
        escape(title)
    );
    let t_max = t.iter().copied().fold(1.0, f64::max);
    for (i, panel) in panels.iter().enumerate() {
        let y0 = TOP + i as f64 * (PANEL + 50.0) + 20.0;
        let v_max = panel.series.iter().flat_map(|(_, _, v)| v.iter().copied()).fold(0.0, f64::max).max(1e-9) * 1.1;
        let pw = W - LEFT - 20.0;
        let _ = writeln!(s, r#"<text x="{LEFT}" y="{}">{}</text>"#, y0 - 6.0, escape(panel.title));
        let _ = writeln!(s, r##"<rect x="{LEFT}" y="{y0}" width="{pw}" height="{PANEL}" fill="none" stroke="#999"/>"##);
        for k in 0..=4 {
            let v = v_max * f64::from(k) / 4.0;
            let y = y0 + PANEL - PANEL * f64::from(k) / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 4.0,
                y + 4.0,
                fmt(v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{:.0} s</text>"#,
            LEFT + pw,
            y0 + PANEL + 14.0,
            t_max
        );
        for (j, (label, colour, v)) in panel.series.iter().enumerate() {
            let pts: Vec<String> = t
                .iter()
                .zip(v)
                .map(|(t, v)| format!("{:.1},{:.1}", LEFT + pw * t / t_max, y0 + PANEL - PANEL * v / v_max))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                pts.join(" ")
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{label}</text>"#,
                LEFT + 10.0 + 90.0 * j as f64,
                y0 + 14.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn fmt(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_line_per_series_and_scales_to_the_data() {
        let points: Vec<TimePoint> = (0..10)
            .map(|i| TimePoint {
                t_s: f64::from(i),
                sent_pps: 100.0,
                recv_pps: 1000.0 * f64::from(i),
                ..Default::default()
            })
            .collect();
        let s = svg(&points, "a <test>");
        assert_eq!(s.matches("<polyline").count(), 5);
        assert!(s.contains("a &lt;test&gt;"));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        // No point above the panel's top (the y axis scales to the largest value).
        assert!(!s.contains(",-"));
    }
}
