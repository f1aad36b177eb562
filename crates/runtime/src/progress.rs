//! Progress on stderr: biological time, real-time factor, spikes. On a terminal an
//! `indicatif` bar (redrawn at most ten times a second, with the time left); in a
//! log (stderr not a terminal: CI, `kubectl logs`) one line every 10 %.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

/// Progress of one run.
pub struct ProgressBar {
    dt_ms: f64,
    start: Instant,
    /// On a terminal.
    bar: Option<indicatif::ProgressBar>,
    /// Not on a terminal: the last tenth written (the first line is at 10 %).
    logged: Mutex<u32>,
    enabled: bool,
}

impl ProgressBar {
    /// Progress of a run with time step `dt_ms`; silent when `enabled` is false.
    pub fn new(dt_ms: f64, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let target = indicatif::ProgressDrawTarget::stderr_with_hz(10);
            let style = indicatif::ProgressStyle::with_template("[{bar:24}] {percent:>3}% {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("#>.");
            indicatif::ProgressBar::with_draw_target(None, target).with_style(style)
        });
        ProgressBar { dt_ms, start: Instant::now(), bar, logged: Mutex::new(0), enabled }
    }

    /// Report progress: `done` of `total` steps, `spikes` so far.
    pub fn update(&self, done: u64, total: u64, spikes: u64) {
        if !self.enabled {
            return;
        }
        let bio_ms = done as f64 * self.dt_ms;
        let wall = self.start.elapsed().as_secs_f64();
        let rtf = if bio_ms > 0.0 { wall / (bio_ms * 1e-3) } else { 0.0 };
        let what = format!("{bio_ms:.1}/{:.1} ms  RTF {rtf:.2}  spikes {spikes}", total as f64 * self.dt_ms);
        // (An 80-column terminal holds the bar's line: 24 + 6 + about 45.)
        let finished = done >= total;
        if let Some(bar) = &self.bar {
            if bar.length() != Some(total) {
                bar.set_length(total);
            }
            bar.set_position(done.min(total));
            bar.set_message(what);
            if finished && !bar.is_finished() {
                bar.finish();
                // The bar stays, with what follows on the lines below it.
                let _ = writeln!(std::io::stderr().lock());
            }
            return;
        }
        let frac = (done as f64 / total.max(1) as f64).min(1.0);
        let tenth = (frac * 10.0).floor() as u32;
        let Ok(mut last) = self.logged.lock() else { return };
        if tenth <= *last {
            return;
        }
        *last = tenth;
        let _ = writeln!(std::io::stderr().lock(), "{:5.1}%  {what}", frac * 100.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gets_a_line_per_tenth_and_one_at_the_end() {
        // Tests run with stderr captured, not a terminal: the log lines.
        let p = ProgressBar::new(0.1, true);
        assert!(p.bar.is_none());
        let mut tenths = Vec::new();
        for done in (0..=1000).step_by(7).chain([1000, 1000]) {
            let before = *p.logged.lock().unwrap();
            p.update(done, 1000, 0);
            let after = *p.logged.lock().unwrap();
            if after != before {
                tenths.push(after);
            }
        }
        assert_eq!(tenths, (1..=10).collect::<Vec<_>>());
    }
}
