//! `report.html`: the placement policies of a run compared, on one self-contained page with
//! inline SVG charts drawn by hand (no scripts, no dependencies; deterministic like the JSON).

use std::fmt::Write as _;

use super::{Bucket, PolicySummary, Report};

const W: f64 = 720.0;
const H: f64 = 260.0;
/// Margins: left, right, top, bottom.
const M: (f64, f64, f64, f64) = (64.0, 110.0, 28.0, 36.0);

fn color(policy: &str) -> &'static str {
    match policy {
        "cloud" => "#1f77b4",
        "pinned" => "#7f7f7f",
        _ => "#d62728",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|k| k * p).find(|v| *v >= max).unwrap_or(10.0 * p)
}

struct Series<'a> {
    name: &'a str,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, Option<f64>)>,
}

/// A line chart; a `None` breaks the line.
fn line_chart(title: &str, x_label: &str, y_label: &str, x_max: f64, series: &[Series<'_>]) -> String {
    let y_max = nice(series.iter().flat_map(|s| s.points.iter().filter_map(|p| p.1)).fold(0.0, f64::max));
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let (pw, ph) = (W - M.0 - M.1, H - M.2 - M.3);
    let x = |v: f64| M.0 + v / x_max * pw;
    let y = |v: f64| M.2 + ph - v / y_max * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<text x="{}" y="16" font-size="13" font-weight="bold">{}</text>"#, M.0, esc(title));
    // Axes and grid.
    for k in 0..=4 {
        let v = y_max * f64::from(k) / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            M.0,
            y(v),
            M.0 + pw,
            y(v),
            M.0 - 6.0,
            y(v) + 4.0,
            fmt_num(v)
        );
    }
    for k in 0..=6 {
        let v = x_max * f64::from(k) / 6.0;
        let _ =
            write!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, x(v), M.2 + ph + 16.0, fmt_num(v));
    }
    let _ = write!(
        s,
        r#"<line x1="{0}" y1="{1}" x2="{0}" y2="{2:.1}" stroke="black"/><line x1="{0}" y1="{2:.1}" x2="{3:.1}" y2="{2:.1}" stroke="black"/>"#,
        M.0,
        M.2,
        M.2 + ph,
        M.0 + pw
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"#,
        M.0 + pw / 2.0,
        H - 4.0,
        esc(x_label),
        M.2 + ph / 2.0,
        M.2 + ph / 2.0,
        esc(y_label)
    );
    for (k, se) in series.iter().enumerate() {
        let dash = if se.dashed { r#" stroke-dasharray="5 3""# } else { "" };
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for &(px, py) in &se.points {
            match py {
                Some(v) => runs.last_mut().map_or((), |r| r.push((x(px), y(v.min(y_max))))),
                None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                None => {}
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let pts: Vec<String> = run.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
                se.color,
                pts.join(" ")
            );
        }
        let ly = M.2 + 12.0 + 16.0 * k as f64;
        let _ = write!(
            s,
            r#"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="{3}" stroke-width="2"{dash}/><text x="{4:.1}" y="{5:.1}">{6}</text>"#,
            M.0 + pw + 10.0,
            ly,
            M.0 + pw + 30.0,
            se.color,
            M.0 + pw + 34.0,
            ly + 4.0,
            esc(se.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: (label, colour, total, part drawn darker).
fn bar_chart(title: &str, unit: &str, bars: &[(&str, &'static str, f64, f64)]) -> String {
    let h = M.2 + 30.0 * bars.len() as f64 + 30.0;
    let max = nice(bars.iter().map(|b| b.2).fold(0.0, f64::max));
    let pw = W - M.0 - M.1;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<text x="{}" y="16" font-size="13" font-weight="bold">{}</text>"#, M.0, esc(title));
    for (k, (label, color, total, part)) in bars.iter().enumerate() {
        let y0 = M.2 + 30.0 * k as f64;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{}" y="{:.1}" width="{:.1}" height="20" fill="{}" fill-opacity="0.45"/><rect x="{}" y="{:.1}" width="{:.1}" height="20" fill="{}"/><text x="{:.1}" y="{:.1}">{} {} ({} by functions)</text>"#,
            M.0 - 6.0,
            y0 + 14.0,
            esc(label),
            M.0,
            y0,
            total / max * pw,
            color,
            M.0,
            y0,
            part / max * pw,
            color,
            M.0 + total / max * pw + 6.0,
            y0 + 14.0,
            fmt_num(*total),
            unit,
            fmt_num(*part)
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"))
}

/// The page.
pub(super) fn page(r: &Report) -> String {
    let ps: &[PolicySummary] = &r.policies;
    let mut s = String::new();
    let title = format!("{} — seed {} — placement policies", r.scenario, r.seed);
    let _ = write!(
        s,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let _ = writeln!(
        s,
        "<p>{} nodes, {} virtual s. Same scenario, same seed, one run per policy. The final check: <b>{}</b>{}.</p>",
        r.nodes.total,
        r.duration_s,
        if r.final_check.ok { "ok" } else { "FAILED" },
        if r.final_check.detail.is_empty() { String::new() } else { format!(" ({})", esc(&r.final_check.detail)) }
    );
    s.push_str("<table><tr><th>policy</th><th>calls</th><th>ok</th><th>failed</th><th>p50 ms</th><th>p99 ms</th><th>mean ms</th><th>WAN bytes</th><th>by functions</th><th>migrations</th><th>rolled back</th><th>fencing violations</th><th>invariants</th></tr>\n");
    for p in ps {
        let _ = writeln!(
            s,
            "<tr><td style=\"text-align:left;color:{}\"><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            color(p.policy),
            p.policy,
            p.calls,
            p.ok,
            p.failed_invocations,
            opt(p.p50_ms),
            opt(p.p99_ms),
            opt(p.mean_ms),
            p.wan_bytes,
            p.wan_bytes_functions,
            p.migrations,
            p.rolled_back,
            p.fencing_violations,
            if p.invariants_ok { "ok" } else { "FAILED" }
        );
    }
    s.push_str("</table>\n");
    let x_max = r.duration_s;
    let at = |p: &PolicySummary, f: &dyn Fn(&Bucket) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
        let half = p.timeline.get(1).map_or(0.0, |b| b.start_s / 2.0);
        p.timeline.iter().map(|b| (b.start_s + half, f(b))).collect()
    };
    for (title, pick) in [
        ("Median call latency over time (by when the call was made)", 0),
        ("99th percentile call latency over time", 1),
    ] {
        let series: Vec<Series<'_>> = ps
            .iter()
            .map(|p| Series {
                name: p.policy,
                color: color(p.policy),
                dashed: false,
                points: at(p, &|b| if pick == 0 { b.p50_ms } else { b.p99_ms }),
            })
            .collect();
        let _ = writeln!(s, "<p>{}</p>", line_chart(title, "virtual time, s", "ms", x_max, &series));
    }
    let series: Vec<Series<'_>> = ps
        .iter()
        .map(|p| {
            let mut total = 0u64;
            let mut points = vec![(0.0, Some(0.0))];
            for b in &p.timeline {
                total += b.migrations;
                let end = b.start_s + p.timeline.get(1).map_or(x_max, |b1| b1.start_s);
                points.push((end.min(x_max), Some(total as f64)));
            }
            Series { name: p.policy, color: color(p.policy), dashed: p.policy == "pinned", points }
        })
        .collect();
    let _ = writeln!(
        s,
        "<p>{}</p>",
        line_chart("Migrations completed (cumulative)", "virtual time, s", "migrations", x_max, &series)
    );
    let bars: Vec<(&str, &'static str, f64, f64)> =
        ps.iter().map(|p| (p.policy, color(p.policy), p.wan_bytes as f64, p.wan_bytes_functions as f64)).collect();
    let _ = writeln!(s, "<p>{}</p>", bar_chart("Bytes between sites (WAN), whole run", "bytes", &bars));
    // Per-site latency table.
    s.push_str("<h2>Median / 99th percentile latency by caller site, ms</h2>\n<table><tr><th>site</th>");
    for p in ps {
        let _ = write!(s, "<th>{}</th>", p.policy);
    }
    s.push_str("</tr>\n");
    if let Some(first) = ps.first() {
        for site in &first.latency_by_site {
            let _ = write!(s, "<tr><td style=\"text-align:left\">{}</td>", esc(&site.site));
            for p in ps {
                let l = p.latency_by_site.iter().find(|l| l.site == site.site).and_then(|l| l.latency_ms);
                let _ = write!(s, "<td>{} / {}</td>", opt(l.map(|l| l.p50)), opt(l.map(|l| l.p99)));
            }
            s.push_str("</tr>\n");
        }
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.2), 5.0);
        assert_eq!(nice(120.0), 200.0);
        assert_eq!(nice(1000.0), 1000.0);
        assert_eq!(fmt_num(1_500_000.0), "1.5M");
    }
}
