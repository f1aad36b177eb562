//! What every picture shares: a `plotters` bitmap drawn in memory and written as
//! PNG by the `png` crate, text in DejaVu Sans (bundled: `fonts/`, with its
//! licence; no system fonts needed), one palette.

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Picture size, pixels.
pub(crate) const W: u32 = 1400;
pub(crate) const H: u32 = 900;

/// Colours of series and populations, in order (matplotlib's tab10).
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `i`th colour of the palette (it repeats).
pub(crate) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The one font family the pictures use.
pub(crate) const FONT: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = DONE.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok());
    anyhow::ensure!(*ok, "the bundled font (DejaVu Sans) cannot be read");
    Ok(())
}

/// A plotters error as ours.
pub(crate) fn drawing<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e:?}")
}

/// Draw a `W × H` picture with `f` on a white ground and write it to `path`.
pub(crate) fn png(path: &Path, f: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>) -> Result<()> {
    register_font()?;
    let mut px = vec![255u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut px, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        f(&root)?;
        root.present().map_err(drawing)?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W, H);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(&px)?;
    w.finish()?;
    Ok(())
}

/// A number for an axis label: no decimals when whole.
pub(crate) fn fmt_num(v: f64) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
