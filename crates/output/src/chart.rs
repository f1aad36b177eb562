//! Line charts and heatmaps as PNG, on the raster plot's canvas.

use crate::plot::{fmt_num, nice_step, Canvas, H, PALETTE, W};
use anyhow::Result;
use std::path::Path;

/// One line of a chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points (x, y); NaN y values are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A line chart with optional vertical markers ((x, label)); `log_y` plots log10(y).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    markers: &[(f64, String)],
    log_y: bool,
    png: &Path,
) -> Result<()> {
    let mut c = Canvas::new();
    let (x0, y0, x1, y1) = (110i64, 70i64, W as i64 - 60, H as i64 - 90);
    c.text(x0, 24, title, 2, [0, 0, 0]);
    let ty = |y: f64| if log_y { y.max(1e-300).log10() } else { y };
    let pts = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.1.is_finite() && p.0.is_finite());
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(ty(y));
        ymax = ymax.max(ty(y));
    }
    for (x, _) in markers {
        xmin = xmin.min(*x);
        xmax = xmax.max(*x);
    }
    if xmin > xmax {
        (xmin, xmax, ymin, ymax) = (0.0, 1.0, 0.0, 1.0);
    }
    if !log_y {
        ymin = ymin.min(0.0);
    } else {
        ymin = ymin.floor();
        ymax = ymax.ceil();
    }
    if ymax <= ymin {
        ymax = ymin + 1.0;
    }
    xmin = xmin.min(0.0);
    let sx = |x: f64| x0 as f64 + (x - xmin) / (xmax - xmin) * (x1 - x0) as f64;
    let sy = |y: f64| y1 as f64 - (y - ymin) / (ymax - ymin) * (y1 - y0) as f64;
    c.frame(x0, y0, x1, y1);
    let step = nice_step(xmax - xmin, 8.0);
    let mut t = (xmin / step).ceil() * step;
    while t <= xmax + 1e-12 {
        let px = sx(t) as i64;
        c.rect(px, y1, px, y1 + 5, [0, 0, 0]);
        let label = fmt_num((t * 1000.0).round() / 1000.0);
        c.text(px - 4 * label.len() as i64, y1 + 10, &label, 1, [0, 0, 0]);
        t += step;
    }
    let ystep = if log_y { 1.0 } else { nice_step(ymax - ymin, 6.0) };
    let mut t = (ymin / ystep).ceil() * ystep;
    while t <= ymax + 1e-12 {
        let py = sy(t) as i64;
        c.rect(x0 - 5, py, x0, py, [0, 0, 0]);
        let label = if log_y { format!("1e{}", t as i64) } else { fmt_num(t) };
        c.text_right(x0 - 8, py - 4, &label, [0, 0, 0]);
        t += ystep;
    }
    c.text((x0 + x1) / 2 - 4 * x_label.len() as i64, y1 + 30, x_label, 1, [0, 0, 0]);
    c.text(10, y0 - 20, y_label, 1, [0, 0, 0]);
    for (x, label) in markers {
        let px = sx(*x);
        let mut y = y0 as f64;
        while y < y1 as f64 {
            c.line((px, y), (px, (y + 6.0).min(y1 as f64)), [120, 120, 120]);
            y += 12.0;
        }
        c.text(px as i64 + 4, y0 + 6, label, 1, [80, 80, 80]);
    }
    for (k, s) in series.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in &s.points {
            if !y.is_finite() {
                prev = None;
                continue;
            }
            let p = (sx(x), sy(ty(y)));
            if let Some(q) = prev {
                c.line(q, p, col);
            }
            c.rect(p.0 as i64 - 2, p.1 as i64 - 2, p.0 as i64 + 2, p.1 as i64 + 2, col);
            prev = Some(p);
        }
        let ly = y0 + 30 + 16 * k as i64;
        c.rect(x1 - 260, ly, x1 - 240, ly + 6, col);
        c.text(x1 - 232, ly - 1, &s.name, 1, [0, 0, 0]);
    }
    c.save(png)
}

/// A number in at most ~8 characters.
fn short(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// A `width × height` grid of values in [0, 1] (row 0 at the bottom), white to
/// dark red, with the value printed in each cell when the grid is small.
pub fn heatmap(title: &str, values: &[f64], width: usize, height: usize, png: &Path) -> Result<()> {
    let mut c = Canvas::new();
    c.text(40, 24, title, 2, [0, 0, 0]);
    let (x0, y0, x1, y1) = (60i64, 70i64, W as i64 - 200, H as i64 - 40);
    let cell = ((x1 - x0) / width.max(1) as i64).min((y1 - y0) / height.max(1) as i64).max(1);
    let vmax = values.iter().copied().fold(0.0, f64::max).max(1e-12);
    let colour = |v: f64| {
        let f = (v / vmax).clamp(0.0, 1.0);
        [255, (255.0 * (1.0 - f)) as u8, (255.0 * (1.0 - f)) as u8]
    };
    for y in 0..height {
        for x in 0..width {
            let v = values.get(y * width + x).copied().unwrap_or(0.0);
            let (px, py) = (x0 + x as i64 * cell, y0 + (height - 1 - y) as i64 * cell);
            c.rect(px, py, px + cell - 1, py + cell - 1, colour(v));
            if cell >= 48 {
                c.text(px + 4, py + cell / 2 - 4, &short(v), 1, [0, 0, 0]);
            }
        }
    }
    c.frame(x0 - 1, y0 - 1, x0 + width as i64 * cell, y0 + height as i64 * cell);
    // Colour bar.
    let (bx, by0, by1) = (W as i64 - 150, y0, y0 + 300);
    for i in 0..=100 {
        let v = vmax * (1.0 - i as f64 / 100.0);
        let py = by0 + (by1 - by0) * i / 100;
        c.rect(bx, py, bx + 20, py + 3, colour(v));
    }
    c.text(bx + 26, by0, &short(vmax), 1, [0, 0, 0]);
    c.text(bx + 26, by1, "0", 1, [0, 0, 0]);
    c.text(bx - 20, by1 + 16, "busiest link", 1, [0, 0, 0]);
    c.text(bx - 20, by1 + 28, "utilisation", 1, [0, 0, 0]);
    c.save(png)
}

/// With `neuropil run --plot`: per cerebellar module, `cerebellum-NAME.png` — the
/// task's target and output, and the true and predicted feedback, over the run.
pub fn plot_modules(
    net: &neuropil_sim::Network,
    samples: &[neuropil_sim::cerebellum::runtime::ModuleSample],
    dir: &std::path::Path,
) -> Result<()> {
    for (i, module) in net.cerebella.iter().enumerate() {
        let rows: Vec<_> = samples.iter().filter(|s| s.module as usize == i).collect();
        // At most ~4000 points per line.
        let stride = rows.len().div_ceil(4000).max(1);
        let line = |name: &str, f: &dyn Fn(&neuropil_sim::cerebellum::runtime::ModuleSample) -> f64| Series {
            name: name.into(),
            points: rows.iter().step_by(stride).map(|s| (s.step as f64 * net.dt_ms, f(s))).collect(),
        };
        let name: String = module.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        line_chart(
            &format!("cerebellar module {}: task and feedback", module.name),
            "time (ms)",
            "value",
            &[
                line("target", &|s| s.target),
                line("output", &|s| s.output),
                line("true feedback (arrives later)", &|s| s.error),
                line("predicted feedback", &|s| s.predicted),
            ],
            &[],
            false,
            &dir.join(format!("cerebellum-{name}.png")),
        )?;
    }
    Ok(())
}
