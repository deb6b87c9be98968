//! A simulation's report: a table per policy (text, for the terminal and
//! markdown) and one self-contained HTML page with the table and SVG
//! charts over time, drawn with `plotters`.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::model::{Calibration, SimResult};
use super::trace::Trace;

/// What the recorded node did over the trace, to set beside the
/// simulations.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Recorded {
    /// The policy the node ran.
    pub policy: String,
    /// Full snapshots it wrote.
    pub snapshots_full: u64,
    /// Incremental snapshots it wrote.
    pub snapshots_incremental: u64,
    /// Snapshot bytes it wrote.
    pub snapshot_bytes: u64,
    /// Peak and mean bytes in its log.
    pub log_bytes: (u64, f64),
    /// Peak and mean entries in its log.
    pub log_entries: (u64, f64),
    /// Its longest chain.
    pub max_chain: u32,
}

impl Recorded {
    /// What the trace's samples say the node did.
    pub fn of(trace: &Trace) -> Recorded {
        let s = &trace.samples;
        let peak_mean = |f: &dyn Fn(&super::trace::Sample) -> u64| {
            let peak = s.iter().map(f).max().unwrap_or(0);
            let mean = if s.is_empty() {
                0.0
            } else {
                s.iter().map(f).sum::<u64>() as f64 / s.len() as f64
            };
            (peak, mean)
        };
        Recorded {
            policy: trace.header.policy.clone(),
            snapshots_full: s.iter().map(|s| s.snapshots_full).sum(),
            snapshots_incremental: s.iter().map(|s| s.snapshots_incremental).sum(),
            snapshot_bytes: s.iter().map(|s| s.snapshot_bytes).sum(),
            log_bytes: peak_mean(&|s| s.log_bytes),
            log_entries: peak_mean(&|s| s.log_entries),
            max_chain: s.iter().map(|s| s.chain_length).max().unwrap_or(0),
        }
    }
}

/// Bytes for a person: B, KiB, MiB or GiB.
fn human(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The table: one row per policy, and the recorded node's own row.
pub fn table(trace: &Trace, results: &[SimResult], away_ms: u64) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| policy | log peak | log mean | log entries peak | snapshots full+incr | snapshot bytes written | longest chain | restart s peak | restart s mean | catch-up after {}s away (peak / mean) | decisions | fallbacks | clamped |",
        away_ms / 1000
    );
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let (lb, lbm) = r.log_bytes();
        let (le, _) = r.log_entries();
        let (rs, rsm) = r.restart_ms();
        let (cu, cum) = r.catch_up_bytes();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {}+{} | {} | {} | {:.2} | {:.2} | {} / {} | {} | {} | {} |",
            r.policy,
            human(lb as f64),
            human(lbm),
            le,
            r.snapshots_full,
            r.snapshots_incremental,
            human(r.snapshot_bytes as f64),
            r.max_chain(),
            rs as f64 / 1000.0,
            rsm / 1000.0,
            human(cu as f64),
            human(cum),
            r.decisions,
            r.fallbacks,
            r.clamped
        );
    }
    let n = Recorded::of(trace);
    let _ = writeln!(
        t,
        "| the recorded node ({}) | {} | {} | {} | {}+{} | {} | {} | - | - | - | - | - | - |",
        n.policy,
        human(n.log_bytes.0 as f64),
        human(n.log_bytes.1),
        n.log_entries.0,
        n.snapshots_full,
        n.snapshots_incremental,
        human(n.snapshot_bytes as f64),
        n.max_chain
    );
    t
}

/// One chart: a line per series, over the trace's time in seconds.
fn chart(title: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 300)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let x_max = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
            .fold(1.0f64, f64::max);
        let y_max = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
            .fold(1e-9f64, f64::max)
            * 1.1;
        let built = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max);
        if let Ok(mut c) = built {
            draw(&mut c, y_label, series);
        }
        let _ = root.present();
    }
    svg
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn draw<'a, 'b: 'a>(c: &mut Chart<'a, 'b>, y_label: &str, series: &[(String, Vec<(f64, f64)>)]) {
    {
        let _ = c.configure_mesh().x_desc("seconds").y_desc(y_label).draw();
        for (i, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            if let Ok(a) = c.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            )) {
                a.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
        let _ = c
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw();
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The report as one self-contained HTML page: what was replayed, the
/// calibration, the table, and charts of the log size, the chain, the
/// snapshot bytes written and the restart estimate over time (the recorded
/// node's own log and chain beside the policies').
pub fn html(trace: &Trace, results: &[SimResult], cal: &Calibration, away_ms: u64) -> String {
    let secs = |t: u64| t as f64 / 1000.0;
    let mut log = Vec::new();
    let mut chain = Vec::new();
    let mut written = Vec::new();
    let mut restart = Vec::new();
    for r in results {
        let pts = |f: &dyn Fn(&super::model::Point) -> f64| {
            r.points
                .iter()
                .map(|p| (secs(p.t_ms), f(p)))
                .collect::<Vec<_>>()
        };
        log.push((r.policy.clone(), pts(&|p| p.log_bytes as f64 / 1048576.0)));
        chain.push((r.policy.clone(), pts(&|p| f64::from(p.chain_length))));
        written.push((
            r.policy.clone(),
            pts(&|p| p.snapshot_bytes as f64 / 1048576.0),
        ));
        restart.push((r.policy.clone(), pts(&|p| p.restart_ms as f64 / 1000.0)));
    }
    let node = format!("recorded node ({})", trace.header.policy);
    log.push((
        node.clone(),
        trace
            .samples
            .iter()
            .map(|s| (secs(s.t_ms), s.log_bytes as f64 / 1048576.0))
            .collect(),
    ));
    chain.push((
        node,
        trace
            .samples
            .iter()
            .map(|s| (secs(s.t_ms), f64::from(s.chain_length)))
            .collect(),
    ));
    let h = &trace.header;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ramrod policy simulation</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse;font-size:13px}}\
         td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style>\
         </head><body>\n<h1>What would these policies have done?</h1>\n\
         <p>Trace of {} ({} samples every {} ms, {:.0} s), recorded under <code>{}</code>. \
         Model: builds at {:.1} MB/s writing {:.2} bytes per byte of state; restarts restore {:.0} MB/s and replay {:.0} entries/s; \
         a follower away for {} s.</p>\n",
        escape(&h.node),
        trace.samples.len(),
        h.interval_ms,
        trace.duration_ms() as f64 / 1000.0,
        escape(&h.policy),
        cal.build_bytes_per_ms / 1000.0,
        cal.written_per_state_byte,
        cal.restore_bytes_per_s / 1e6,
        cal.replay_entries_per_s,
        away_ms / 1000
    );
    out.push_str("<table>\n");
    for (i, line) in table(trace, results, away_ms).lines().enumerate() {
        if i == 1 {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let tag = if i == 0 { "th" } else { "td" };
        out.push_str("<tr>");
        for c in cells {
            let _ = write!(out, "<{tag}>{}</{tag}>", escape(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    for (title, y, series) in [
        ("Log size", "MiB", &log),
        ("Snapshot chain length", "layers", &chain),
        ("Snapshot bytes written", "MiB", &written),
        ("Estimated restart to ready", "seconds", &restart),
    ] {
        let _ = writeln!(out, "<h2>{title}</h2>\n{}", chart(title, y, series));
    }
    out.push_str("</body></html>\n");
    out
}
