//! The JSON report every run can save, the host facts it records, latency summaries, and a
//! hand-written SVG latency-by-percentile plot (no plotting crate: one chart does not pay for one).

use crate::cli::CommonArgs;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::process::Command;

/// Latency histograms record microseconds from 1 µs to 1 hour at 3 significant digits.
pub const LATENCY_MICROS_MAX: u64 = 3_600_000_000;

pub fn latency_histogram() -> Histogram<u64> {
    // 3 significant figures over this range is a fixed-size allocation (~200 KiB): cannot fail.
    Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, 3).expect("valid histogram bounds")
}

/// Percentiles of a microsecond histogram, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummaryMs {
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl LatencySummaryMs {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            mean: histogram.mean() / 1000.0,
            min: ms(histogram.min()),
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            p9999: ms(histogram.value_at_quantile(0.9999)),
            max: ms(histogram.max()),
        }
    }
}

/// Facts about where and on what a run happened; missing facts are `null`, never guessed.
pub fn host_facts() -> Value {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let cpu_model = read("/proc/cpuinfo").and_then(|text| {
        text.lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
    });
    let git_sha = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    let git_dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| !output.stdout.is_empty());
    json!({
        "hostname": read("/proc/sys/kernel/hostname"),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpu_model": cpu_model,
        "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "git_sha": git_sha,
        "git_dirty": git_dirty,
    })
}

/// Writes the JSON report if `--report` was given.
pub fn write_report(
    common: &CommonArgs,
    kind: &str,
    parameters: Value,
    figures: Value,
) -> Result<()> {
    let Some(path) = &common.report else {
        return Ok(());
    };
    let broker_config: serde_json::Map<String, Value> =
        crate::props::parse_pairs(&common.broker_config)?
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect();
    let unix_seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let report = json!({
        "tool": "sluice-bench",
        "tool_version": env!("CARGO_PKG_VERSION"),
        "kind": kind,
        "label": common.label,
        "finished_at_unix": unix_seconds,
        "client_cpu_seconds": own_cpu_seconds(),
        "host": host_facts(),
        "broker_config": broker_config,
        "parameters": parameters,
        "figures": figures,
    });
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing report {}", path.display()))
}

/// This process's utime+stime so far, from `/proc/self/stat` (in USER_HZ, 100 per second on
/// Linux); lets a script tell the client's CPU from other work on a shared machine.
fn own_cpu_seconds() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall: 12 and 13 after "pid (comm)", 0-based 11, 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Writes a latency-by-percentile SVG if `--plot` was given. Each series is a microsecond
/// histogram; the x axis is HdrHistogram's usual 1/(1-p) log scale (50%, 90%, 99%, ...).
pub fn write_plot(
    common: &CommonArgs,
    title: &str,
    series: &[(&str, &Histogram<u64>)],
) -> Result<()> {
    let Some(path) = &common.plot else {
        return Ok(());
    };
    std::fs::write(path, latency_svg(title, series))
        .with_context(|| format!("writing plot {}", path.display()))
}

const PLOT_WIDTH: f64 = 800.0;
const PLOT_HEIGHT: f64 = 480.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 160.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;
/// Rightmost tick: 99.9999%, i.e. log10(1/(1-p)) = 6.
const X_DECADES_MAX: f64 = 6.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn latency_svg(title: &str, series: &[(&str, &Histogram<u64>)]) -> String {
    let inner_width = PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let inner_height = PLOT_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let y_max_ms = series
        .iter()
        .map(|(_, h)| h.max())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1000.0
        * 1.05;
    let x_of = |quantile: f64| {
        let decades = (1.0 / (1.0 - quantile).max(1e-6))
            .log10()
            .min(X_DECADES_MAX);
        MARGIN_LEFT + decades / X_DECADES_MAX * inner_width
    };
    let y_of = |ms: f64| MARGIN_TOP + inner_height * (1.0 - ms / y_max_ms);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        PLOT_WIDTH / 2.0,
        escape(title)
    );
    for (index, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = MARGIN_LEFT + index as f64 / X_DECADES_MAX * inner_width;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{MARGIN_TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            MARGIN_TOP + inner_height
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            MARGIN_TOP + inner_height + 18.0
        );
    }
    for step in 0..=5 {
        let ms = y_max_ms * step as f64 / 5.0;
        let y = y_of(ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            MARGIN_LEFT + inner_width
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{ms:.2}</text>"#,
            MARGIN_LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        MARGIN_LEFT + inner_width / 2.0,
        PLOT_HEIGHT - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        MARGIN_TOP + inner_height / 2.0,
        MARGIN_TOP + inner_height / 2.0
    );
    for (index, (name, histogram)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let mut points = String::new();
        if !histogram.is_empty() {
            for value in histogram.iter_quantiles(1) {
                let quantile = value.quantile_iterated_to();
                let ms = histogram.highest_equivalent(value.value_iterated_to()) as f64 / 1000.0;
                let _ = write!(
                    points,
                    "{:.1},{:.1} ",
                    x_of(quantile),
                    y_of(ms.min(y_max_ms))
                );
            }
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>"#
        );
        let legend_y = MARGIN_TOP + 16.0 * index as f64 + 8.0;
        let legend_x = MARGIN_LEFT + inner_width + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{color}" stroke-width="2"/>"#,
            legend_x + 20.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 26.0,
            legend_y + 4.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_well_formed_enough() {
        let mut histogram = latency_histogram();
        for micros in 1..10_000 {
            histogram.record(micros).unwrap();
        }
        let svg = latency_svg("t <1>", &[("a&b", &histogram)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("t &lt;1&gt;") && svg.contains("a&amp;b"));
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn own_cpu_seconds_reads_proc() {
        assert!(own_cpu_seconds().is_some_and(|seconds| seconds >= 0.0));
    }

    #[test]
    fn summary_is_in_milliseconds() {
        let mut histogram = latency_histogram();
        histogram.record(2_000).unwrap();
        let summary = LatencySummaryMs::of(&histogram);
        assert!((summary.p50 - 2.0).abs() < 0.01);
        assert_eq!(summary.count, 1);
    }
}
