//! The sweep's picture: throughput and p99 latency against concurrency, fresh payments and
//! replays, side by side in one PNG (plotters, bitmap backend). Text needs a TrueType font,
//! read from the usual system places, since the bitmap backend carries none.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{BenchError, Result};
use crate::report::{SweepPoint, SweepReport};

/// Fonts tried in order; `IDEM_BENCH_FONT` comes first when set.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

fn load_font() -> std::result::Result<(), String> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let from_env = std::env::var("IDEM_BENCH_FONT").ok();
            let candidates = from_env
                .iter()
                .map(String::as_str)
                .chain(FONT_PATHS.iter().copied());
            for path in candidates {
                if let Ok(bytes) = std::fs::read(path) {
                    // Registered fonts live as long as the process: one leak, once.
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                        return Ok(());
                    }
                }
            }
            Err("no TrueType font found; set IDEM_BENCH_FONT to a .ttf file".to_owned())
        })
        .clone()
}

/// Draws `sweep` into a 1200×500 PNG at `path`: requests/s on the left, p99 on the right,
/// both against clients on a log scale.
///
/// # Errors
/// No font could be loaded, the sweep has no points, or the file could not be written.
pub fn draw(sweep: &SweepReport, path: &Path) -> Result<()> {
    let fail = |reason: String| BenchError::Plot {
        path: PathBuf::from(path),
        reason,
    };
    load_font().map_err(fail)?;
    if sweep.points.is_empty() {
        return Err(fail("the sweep has no points".into()));
    }
    draw_charts(sweep, path).map_err(|e| fail(e.to_string()))
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn draw_charts(
    sweep: &SweepReport,
    path: &Path,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let x_max = sweep
        .points
        .iter()
        .map(|p| p.clients)
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let fresh_color = RGBColor(0x1f, 0x77, 0xb4);
    let replay_color = RGBColor(0xd6, 0x27, 0x28);
    let series = |pick: fn(&SweepPoint) -> f64| -> Vec<(f64, f64)> {
        sweep
            .points
            .iter()
            .map(|p| (p.clients as f64, pick(p)))
            .collect()
    };
    let throughput: Vec<Series> = vec![
        ("fresh payments", fresh_color, series(|p| p.fresh.rps)),
        ("replays", replay_color, series(|p| p.replay.rps)),
    ];
    let p99: Vec<Series> = vec![
        ("fresh payments", fresh_color, series(|p| p.fresh.p99_ms)),
        ("replays", replay_color, series(|p| p.replay.p99_ms)),
    ];
    chart(
        &left,
        "throughput (requests/s)",
        "requests/s",
        x_max,
        &throughput,
    )?;
    chart(&right, "p99 latency (ms)", "ms", x_max, &p99)?;
    root.present()?;
    Ok(())
}

fn chart(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    x_max: f64,
    series: &[Series],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let y_max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        .max(1e-3)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..x_max * 1.2).log_scale(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (name, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(3),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}
