//! Raster plot with population activity and per-population rate histograms, as PNG.
//! Drawn with a small software rasteriser and an 8×8 bitmap font, so it needs no
//! system fonts or graphics libraries.

use crate::summary::Summary;
use anyhow::{Context, Result};
use std::path::Path;

pub(crate) const W: usize = 1400;
pub(crate) const H: usize = 900;
pub(crate) const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

pub(crate) struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    pub(crate) fn new() -> Self {
        Canvas { px: vec![255; W * H * 3] }
    }

    pub(crate) fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    pub(crate) fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, c);
            }
        }
    }

    pub(crate) fn frame(&mut self, x0: i64, y0: i64, x1: i64, y1: i64) {
        let k = [0, 0, 0];
        self.rect(x0, y0, x1, y0, k);
        self.rect(x0, y1, x1, y1, k);
        self.rect(x0, y0, x0, y1, k);
        self.rect(x1, y0, x1, y1, k);
    }

    pub(crate) fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            self.set((x0 + t * (x1 - x0)).round() as i64, (y0 + t * (y1 - y0)).round() as i64, c);
        }
    }

    /// Text with its top-left corner at (x, y); `scale` 1 or 2.
    pub(crate) fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let code = ch as usize;
            let glyph = if code < 128 {
                font8x8::legacy::BASIC_LEGACY[code]
            } else {
                font8x8::legacy::BASIC_LEGACY[b'?' as usize]
            };
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        let px = x + (k as i64 * 8 + col) * scale;
                        let py = y + row as i64 * scale;
                        self.rect(px, py, px + scale - 1, py + scale - 1, c);
                    }
                }
            }
        }
    }

    pub(crate) fn text_right(&mut self, x: i64, y: i64, s: &str, c: [u8; 3]) {
        self.text(x - 8 * s.len() as i64, y, s, 1, c);
    }

    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&self.px)?;
        Ok(())
    }
}

pub(crate) fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = range / ticks;
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    mag * if r < 1.5 {
        1.0
    } else if r < 3.5 {
        2.0
    } else if r < 7.5 {
        5.0
    } else {
        10.0
    }
}

pub(crate) fn fmt_num(v: f64) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

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
    let mut c = Canvas::new();
    let black = [0, 0, 0];
    let grey = [200, 200, 200];
    let title = format!(
        "{}  -  {} neurons, {:.0} ms, dt {} ms, seed {}, hash {}",
        s.experiment, s.neurons, s.duration_ms, s.dt_ms, s.seed, s.spike_hash
    );
    c.text(20, 12, &title, 2, black);

    // Raster window: at most 2 s, starting after the transient.
    let t0 = s.start_ms + s.transient_ms.min(s.duration_ms);
    let t1 = (s.start_ms + s.duration_ms).min(t0 + 2000.0);
    let n = s.neurons.max(1) as f64;
    let (rx0, ry0, rx1, ry1) = (110i64, 50i64, 1000i64, 620i64);
    let sx = |t: f64| rx0 as f64 + (t - t0) / (t1 - t0).max(1e-9) * (rx1 - rx0) as f64;
    let sy = |g: f64| ry0 as f64 + g / n * (ry1 - ry0) as f64;
    // Population boundaries and labels.
    let mut first = 0u64;
    let mut bounds = Vec::new();
    for (i, p) in s.populations.iter().enumerate() {
        let (a, b) = (first as f64, (first + p.size as u64) as f64);
        bounds.push((first, first + p.size as u64));
        if i > 0 {
            c.rect(rx0, sy(a) as i64, rx1, sy(a) as i64, grey);
        }
        let mid = (sy(a) + sy(b)) / 2.0;
        c.text_right(rx0 - 6, mid as i64 - 4, &p.name, PALETTE[i % PALETTE.len()]);
        first += p.size as u64;
    }
    let pop_of = |g: u32| bounds.partition_point(|b| b.1 <= g as u64);
    for &(g, t) in spikes {
        if t < t0 || t > t1 {
            continue;
        }
        let color = PALETTE[pop_of(g) % PALETTE.len()];
        c.set(sx(t).round() as i64, sy(g as f64 + 0.5).round() as i64, color);
    }
    c.frame(rx0, ry0, rx1, ry1);
    c.text(rx0, ry1 + 4, "", 1, black);

    // Population activity below the raster: rate in 1 ms bins (5 ms if long).
    let (ax0, ay0, ax1, ay1) = (rx0, 660i64, rx1, 850i64);
    let bin = if t1 - t0 > 1000.0 { 10.0 } else { 5.0 };
    let nb = ((t1 - t0) / bin).ceil().max(1.0) as usize;
    let mut act = vec![vec![0f64; nb]; s.populations.len()];
    for &(g, t) in spikes {
        if t <= t0 || t > t1 {
            continue;
        }
        let b = (((t - t0) / bin).ceil() as usize).saturating_sub(1).min(nb - 1);
        act[pop_of(g).min(s.populations.len() - 1)][b] += 1.0;
    }
    let mut ymax: f64 = 1.0;
    for (i, p) in s.populations.iter().enumerate() {
        for v in act[i].iter_mut() {
            *v /= p.size.max(1) as f64 * bin * 1e-3;
            ymax = ymax.max(*v);
        }
    }
    for (i, row) in act.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = row
            .iter()
            .enumerate()
            .map(|(b, v)| (sx(t0 + (b as f64 + 0.5) * bin), ay1 as f64 - v / ymax * (ay1 - ay0) as f64))
            .collect();
        for w in pts.windows(2) {
            c.line(w[0], w[1], color);
        }
    }
    c.frame(ax0, ay0, ax1, ay1);
    c.text_right(ax0 - 6, ay0, &format!("{:.0} Hz", ymax), black);
    c.text_right(ax0 - 6, ay1 - 8, "0", black);
    c.text(ax0 - 100, (ay0 + ay1) / 2 - 4, "activity", 1, black);
    // Time axis.
    let step = nice_step(t1 - t0, 8.0);
    let mut t = (t0 / step).ceil() * step;
    while t <= t1 + 1e-9 {
        let x = sx(t) as i64;
        c.rect(x, ay1, x, ay1 + 4, black);
        let label = fmt_num(t);
        c.text(x - 4 * label.len() as i64, ay1 + 8, &label, 1, black);
        t += step;
    }
    c.text((ax0 + ax1) / 2 - 40, ay1 + 24, "time (ms)", 1, black);

    // Per-neuron rate histograms, one panel per population.
    let measured_s = ((s.duration_ms - s.transient_ms) * 1e-3).max(1e-9);
    let mut counts = vec![0u32; s.neurons as usize];
    for &(g, t) in spikes {
        if t > s.start_ms + s.transient_ms && (g as usize) < counts.len() {
            counts[g as usize] += 1;
        }
    }
    let np = s.populations.len().max(1) as i64;
    let (hx0, hx1, htop, hbot) = (1060i64, 1380i64, 50i64, 850i64);
    let ph = (hbot - htop) / np;
    c.text(hx0, htop - 14, "per-neuron rate histograms", 1, black);
    for (i, p) in s.populations.iter().enumerate() {
        let (a, b) = bounds[i];
        let rates: Vec<f64> = counts[a as usize..b as usize].iter().map(|&k| k as f64 / measured_s).collect();
        let rmax = rates.iter().cloned().fold(0.0, f64::max).max(1.0);
        // Rates come in steps of 1/measured_s: no more bins than distinct values.
        let nbins = ((rmax * measured_s).ceil() as usize + 1).clamp(2, 30);
        let mut h = vec![0u32; nbins];
        for r in &rates {
            h[((r / rmax * nbins as f64) as usize).min(nbins - 1)] += 1;
        }
        let hmax = *h.iter().max().unwrap_or(&1).max(&1) as f64;
        let y0 = htop + i as i64 * ph + 4;
        let y1 = y0 + ph - 18;
        let color = PALETTE[i % PALETTE.len()];
        let bw = (hx1 - hx0) as f64 / nbins as f64;
        for (k, &v) in h.iter().enumerate() {
            let top = y1 as f64 - v as f64 / hmax * (y1 - y0) as f64;
            c.rect(
                (hx0 as f64 + k as f64 * bw) as i64 + 1,
                top as i64,
                (hx0 as f64 + (k + 1) as f64 * bw) as i64 - 1,
                y1,
                color,
            );
        }
        c.rect(hx0, y1, hx1, y1, black);
        c.text(hx0 + 4, y0, &format!("{} {:.2} Hz", p.name, p.rate_hz), 1, black);
        c.text_right(hx1, y1 + 3, &format!("{} Hz", fmt_num((rmax * 10.0).round() / 10.0)), black);
    }
    c.save(png)
}
