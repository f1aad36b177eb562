//! Line charts and heatmaps as PNG.

use crate::draw::{self, colour, drawing, FONT};
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// One line of a chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points (x, y); NaN y values are skipped (the line breaks there).
    pub points: Vec<(f64, f64)>,
}

/// A line chart with optional vertical markers ((x, label)); `log_y` plots y on a
/// logarithmic axis (values ≤ 0 are left out).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    markers: &[(f64, String)],
    log_y: bool,
    png: &Path,
) -> Result<()> {
    // log_y plots log10(y), labelled as powers of ten.
    let ty = |y: f64| {
        if log_y {
            if y > 0.0 {
                y.log10()
            } else {
                f64::NAN
            }
        } else {
            y
        }
    };
    let finite = |p: &&(f64, f64)| p.0.is_finite() && ty(p.1).is_finite();
    let pts = series.iter().flat_map(|s| s.points.iter()).filter(finite);
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        (xmin, xmax) = (xmin.min(x), xmax.max(x));
        (ymin, ymax) = (ymin.min(ty(y)), ymax.max(ty(y)));
    }
    for (x, _) in markers {
        (xmin, xmax) = (xmin.min(*x), xmax.max(*x));
    }
    if xmin > xmax {
        (xmin, xmax) = (0.0, 1.0);
    }
    if ymin > ymax {
        (ymin, ymax) = (0.0, 1.0);
    }
    if log_y {
        (ymin, ymax) = (ymin.floor(), ymax.ceil());
    } else {
        ymin = ymin.min(0.0);
    }
    if ymax <= ymin {
        ymax = ymin + 1.0;
    }
    xmin = xmin.min(0.0);
    if xmax <= xmin {
        xmax = xmin + 1.0;
    }
    let pad = if log_y { 0.0 } else { (ymax - ymin) * 0.04 };
    // (plotters' axis ticks never end on an infinite range.)
    anyhow::ensure!(
        [xmin, xmax, ymin, ymax + pad].iter().all(|v| v.is_finite()),
        "chart {title:?}: values too large to draw"
    );
    draw::png(png, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(xmin..xmax, ymin..ymax + pad)
            .map_err(drawing)?;
        let decades = (ymax - ymin).round() as usize + 1;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(10)
            .y_labels(if log_y { decades.min(12) } else { 8 })
            .y_label_formatter(&|v| {
                if !log_y {
                    draw::fmt_num(*v)
                } else if (v - v.round()).abs() < 1e-9 {
                    format!("1e{}", v.round() as i64)
                } else {
                    format!("{:.1e}", 10f64.powf(*v))
                }
            })
            .x_label_formatter(&|v| draw::fmt_num((v * 1000.0).round() / 1000.0))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(drawing)?;
        let grey = RGBColor(120, 120, 120);
        for (x, label) in markers {
            // Dashed: a 6-unit stroke every 12 of the plot's height (in pixels: ~1/80).
            let dash = (ymax + pad - ymin) / 80.0;
            let pieces = (0..40).map(|k| {
                let y = ymin + 2.0 * k as f64 * dash;
                PathElement::new(vec![(*x, y), (*x, (y + dash).min(ymax + pad))], grey)
            });
            chart.draw_series(pieces).map_err(drawing)?;
            let style = TextStyle::from((FONT, 14)).color(&RGBColor(80, 80, 80));
            chart.draw_series([Text::new(format!(" {label}"), (*x, ymax + pad), style)]).map_err(drawing)?;
        }
        for (k, s) in series.iter().enumerate() {
            let col = colour(k);
            // A line per run of finite points.
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &(x, y) in &s.points {
                match (x.is_finite(), ty(y)) {
                    (true, v) if v.is_finite() => runs.last_mut().map_or((), |r| r.push((x, v))),
                    _ if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                    _ => {}
                }
            }
            let mut labelled = false;
            for r in runs.into_iter().filter(|r| !r.is_empty()) {
                let drawn =
                    chart.draw_series(LineSeries::new(r, col.stroke_width(2)).point_size(2)).map_err(drawing)?;
                if !labelled {
                    drawn
                        .label(s.name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], col.stroke_width(3)));
                    labelled = true;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 15))
            .draw()
            .map_err(drawing)?;
        Ok(())
    })
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
    // Values that are not finite are drawn as 0 (and leave the scale alone).
    let vmax = values.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max).max(1e-12);
    let shade = |v: f64| {
        let f = (v / vmax).clamp(0.0, 1.0);
        RGBColor(255 - (80.0 * f) as u8, (255.0 * (1.0 - f)) as u8, (255.0 * (1.0 - f)) as u8)
    };
    let (w, h) = (width.max(1), height.max(1));
    draw::png(png, |root| {
        let root = root.titled(title, (FONT, 26)).map_err(drawing)?;
        let (grid, bar) = root.split_horizontally(draw::W - 220);
        // Square cells: the grid's area shrunk to the cells' aspect.
        let (gw, gh) = grid.dim_in_pixel();
        let (axes_x, axes_y) = (70u32, 60u32);
        let cell = ((gw.saturating_sub(axes_x + 40)) / w as u32).min(gh.saturating_sub(axes_y + 20) / h as u32).max(1);
        let grid = grid.shrink((20, 10), (cell * w as u32 + axes_x, cell * h as u32 + axes_y));
        let mut chart = ChartBuilder::on(&grid)
            .x_label_area_size(axes_y - 10)
            .y_label_area_size(axes_x - 10)
            .build_cartesian_2d(0.0..w as f64, 0.0..h as f64)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x")
            .y_desc("y")
            .x_labels(w.min(16) + 1)
            .y_labels(h.min(16) + 1)
            .x_label_formatter(&|v| draw::fmt_num(v.floor()))
            .y_label_formatter(&|v| draw::fmt_num(v.floor()))
            .label_style((FONT, 13))
            .draw()
            .map_err(drawing)?;
        let cells = (0..h).flat_map(|y| (0..w).map(move |x| (x, y)));
        let value = |x: usize, y: usize| values.get(y * width + x).copied().filter(|v| v.is_finite()).unwrap_or(0.0);
        chart
            .draw_series(cells.clone().map(|(x, y)| {
                let (x0, y0) = (x as f64, y as f64);
                Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], shade(value(x, y)).filled())
            }))
            .map_err(drawing)?;
        if cell >= 48 {
            let style = TextStyle::from((FONT, 13)).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
            chart
                .draw_series(
                    cells.map(|(x, y)| Text::new(short(value(x, y)), (x as f64 + 0.5, y as f64 + 0.5), style.clone())),
                )
                .map_err(drawing)?;
        }
        // Colour bar.
        let bar = bar.margin(60, 300, 20, 70);
        let mut scale = ChartBuilder::on(&bar)
            .caption("busiest link utilisation", (FONT, 14))
            .y_label_area_size(0)
            .right_y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, 0.0..vmax)
            .map_err(drawing)?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(5)
            .y_label_formatter(&|v| short(*v))
            .label_style((FONT, 13))
            .draw()
            .map_err(drawing)?;
        let steps = (0..100).map(|i| {
            let (a, b) = (vmax * i as f64 / 100.0, vmax * (i + 1) as f64 / 100.0);
            Rectangle::new([(0.0, a), (1.0, b)], shade((a + b) / 2.0).filled())
        });
        scale.draw_series(steps).map_err(drawing)?;
        Ok(())
    })
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
