//! The raster plot of a run, as PNG: spikes by neuron and time (populations in
//! colour, top to bottom in the order of the experiment), population activity
//! below it, and each population's per-neuron rate histogram beside it.

use crate::draw::{self, colour, drawing, FONT};
use crate::summary::Summary;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// Read `summary.json` and `spikes.parquet` from `dir` and render `png`.
pub fn render_dir(dir: &Path, png: &Path) -> Result<()> {
    let text = std::fs::read_to_string(dir.join("summary.json")).with_context(|| {
        format!("{}: no summary.json; is it the output directory of `neuropil run`?", dir.display())
    })?;
    let summary: Summary = serde_json::from_str(&text).context("summary.json is not a neuropil summary")?;
    let spikes = crate::columnar::read_spikes(&dir.join("spikes.parquet"))?;
    render(&summary, &spikes, png)
}

/// Render the raster of `spikes` (neuron id, time ms) described by `s` into `png`.
pub fn render(s: &Summary, spikes: &[(u32, f64)], png: &Path) -> Result<()> {
    // Raster window: at most 2 s, starting after the transient.
    let t0 = s.start_ms + s.transient_ms.min(s.duration_ms);
    let t1 = (s.start_ms + s.duration_ms).min(t0 + 2000.0).max(t0 + s.dt_ms.max(1e-3));
    let n = s.neurons.max(1) as f64;
    anyhow::ensure!(
        t0.is_finite() && t1.is_finite() && s.dt_ms.is_finite(),
        "summary: start_ms, transient_ms, duration_ms and dt_ms must be finite to draw the raster"
    );
    let mut bounds = Vec::with_capacity(s.populations.len());
    let mut first = 0u64;
    for p in &s.populations {
        bounds.push((first, first + p.size as u64));
        first += p.size as u64;
    }
    let pop_of = |g: u32| bounds.partition_point(|b| b.1 <= g as u64).min(s.populations.len().saturating_sub(1));
    // Neuron g is drawn at height n - g - 0.5: the first population on top.
    let row = |g: f64| n - g - 0.5;
    let title = format!(
        "{}: {} neurons, {:.0} ms, dt {} ms, seed {}, spike hash {}",
        s.experiment, s.neurons, s.duration_ms, s.dt_ms, s.seed, s.spike_hash
    );
    draw::png(png, |root| {
        let root = root.titled(&title, (FONT, 22)).map_err(drawing)?;
        let (left, right) = root.split_horizontally(1030);
        let (upper, lower) = left.split_vertically(590);

        // The raster, populations named at their middles.
        let mut raster = ChartBuilder::on(&upper)
            .margin(10)
            .margin_bottom(0)
            .y_label_area_size(90)
            .x_label_area_size(20)
            .build_cartesian_2d(t0..t1, 0.0..n)
            .map_err(drawing)?;
        raster
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&|_| String::new())
            .y_labels(0)
            .draw()
            .map_err(drawing)?;
        let base = upper.get_base_pixel();
        let right_middle = plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Right,
            plotters::style::text_anchor::VPos::Center,
        );
        for (i, (&(a, b), p)) in bounds.iter().zip(&s.populations).enumerate() {
            let (x, y) = raster.backend_coord(&(t0, n - (a + b) as f64 / 2.0));
            let c = colour(i);
            let style = TextStyle::from((FONT, 14)).color(&c).pos(right_middle);
            upper.draw(&Text::new(p.name.clone(), (x - base.0 - 8, y - base.1), style)).map_err(drawing)?;
        }
        for &(a, _) in bounds.iter().skip(1) {
            let y = n - a as f64;
            raster.draw_series(LineSeries::new([(t0, y), (t1, y)], RGBColor(200, 200, 200))).map_err(drawing)?;
        }
        let shown = spikes.iter().filter(|&&(_, t)| t >= t0 && t <= t1);
        raster.draw_series(shown.map(|&(g, t)| Pixel::new((t, row(g as f64)), colour(pop_of(g))))).map_err(drawing)?;

        // Population activity: rate in 5 ms bins (10 ms beyond 1 s).
        let bin = if t1 - t0 > 1000.0 { 10.0 } else { 5.0 };
        let nb = ((t1 - t0) / bin).ceil().max(1.0) as usize;
        let mut act = vec![vec![0f64; nb]; s.populations.len()];
        for &(g, t) in spikes {
            if t > t0 && t <= t1 && !act.is_empty() {
                let b = (((t - t0) / bin).ceil() as usize).saturating_sub(1).min(nb - 1);
                act[pop_of(g)][b] += 1.0;
            }
        }
        let mut ymax: f64 = 1.0;
        for (row, p) in act.iter_mut().zip(&s.populations) {
            for v in row.iter_mut() {
                *v /= p.size.max(1) as f64 * bin * 1e-3;
                ymax = ymax.max(*v);
            }
        }
        let mut activity = ChartBuilder::on(&lower)
            .margin(10)
            .margin_top(4)
            .y_label_area_size(90)
            .x_label_area_size(45)
            .build_cartesian_2d(t0..t1, 0.0..ymax * 1.05)
            .map_err(drawing)?;
        activity
            .configure_mesh()
            .x_desc("time (ms)")
            .y_desc(format!("rate (Hz, {bin} ms bins)"))
            .y_labels(5)
            .x_label_formatter(&|v| draw::fmt_num(*v))
            .y_label_formatter(&|v| draw::fmt_num(*v))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(drawing)?;
        for (i, row) in act.iter().enumerate() {
            let points = row.iter().enumerate().map(|(b, &v)| (t0 + (b as f64 + 0.5) * bin, v));
            activity.draw_series(LineSeries::new(points, colour(i).stroke_width(1))).map_err(drawing)?;
        }

        // Per-neuron rate histograms, one panel per population.
        let measured_s = ((s.duration_ms - s.transient_ms) * 1e-3).max(1e-9);
        let mut counts = vec![0u32; s.neurons as usize];
        for &(g, t) in spikes {
            if t > s.start_ms + s.transient_ms && (g as usize) < counts.len() {
                counts[g as usize] += 1;
            }
        }
        let right = right.titled("per-neuron rates", (FONT, 16)).map_err(drawing)?;
        let panels = right.split_evenly((s.populations.len().max(1), 1));
        for (i, (p, panel)) in s.populations.iter().zip(&panels).enumerate() {
            let (a, b) = bounds[i];
            let rates: Vec<f64> = counts[a as usize..b as usize].iter().map(|&k| k as f64 / measured_s).collect();
            let rmax = rates.iter().copied().fold(0.0, f64::max).max(1.0);
            // Rates come in steps of 1/measured_s: no more bins than distinct values.
            let nbins = ((rmax * measured_s).ceil() as usize + 1).clamp(2, 30);
            let mut h = vec![0u32; nbins];
            for r in &rates {
                h[((r / rmax * nbins as f64) as usize).min(nbins - 1)] += 1;
            }
            let hmax = h.iter().copied().max().unwrap_or(1).max(1) as f64;
            let mut chart = ChartBuilder::on(panel)
                .margin(4)
                .margin_right(14)
                .caption(format!("{}  {:.2} Hz", p.name, p.rate_hz), (FONT, 13))
                .x_label_area_size(16)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..rmax, 0.0..hmax * 1.05)
                .map_err(drawing)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(4)
                .y_labels(2)
                .x_label_formatter(&|v| format!("{} Hz", draw::fmt_num((v * 10.0).round() / 10.0)))
                .y_label_formatter(&|v| draw::fmt_num(v.round()))
                .label_style((FONT, 11))
                .draw()
                .map_err(drawing)?;
            let width = rmax / nbins as f64;
            let bars = h.iter().enumerate().map(|(k, &v)| {
                let x = k as f64 * width;
                Rectangle::new([(x + width * 0.05, 0.0), (x + width * 0.95, v as f64)], colour(i).filled())
            });
            chart.draw_series(bars).map_err(drawing)?;
        }
        Ok(())
    })
}
