//! Progress on stderr: biological time, real-time factor, spikes. On a terminal an
//! `indicatif` bar (redrawn at most ten times a second, with the time left); in a
//! log (stderr not a terminal: CI, `kubectl logs`) one line every 10 %.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a terminal's bar is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

/// Progress of one run.
pub struct ProgressBar {
    dt_ms: f64,
    start: Instant,
    /// On a terminal.
    bar: Option<indicatif::ProgressBar>,
    /// When the bar was last updated; in a log, the last tenth written (the first
    /// line is at 10 %).
    last: Mutex<(Instant, u32)>,
    enabled: bool,
}

impl ProgressBar {
    /// Progress of a run with time step `dt_ms`; silent when `enabled` is false.
    pub fn new(dt_ms: f64, enabled: bool) -> Self {
        Self::on(dt_ms, enabled, std::io::stderr().is_terminal())
    }

    fn on(dt_ms: f64, enabled: bool, terminal: bool) -> Self {
        let bar = (enabled && terminal).then(|| {
            let target = indicatif::ProgressDrawTarget::stderr_with_hz(10);
            let style = indicatif::ProgressStyle::with_template("[{bar:24}] {percent:>3}% {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("#>.");
            indicatif::ProgressBar::with_draw_target(None, target).with_style(style)
        });
        let now = Instant::now();
        ProgressBar { dt_ms, start: now, bar, last: Mutex::new((now, 0)), enabled }
    }

    /// Report progress: `done` of `total` steps, `spikes` so far. Cheap unless
    /// there is something to show (it is called every epoch, between barriers).
    pub fn update(&self, done: u64, total: u64, spikes: u64) {
        if !self.enabled {
            return;
        }
        let finished = done >= total;
        let frac = if total == 0 { 1.0 } else { (done as f64 / total as f64).min(1.0) };
        let tenth = (frac * 10.0).floor() as u32;
        let Ok(mut last) = self.last.lock() else { return };
        let now = Instant::now();
        match &self.bar {
            Some(bar) if bar.is_finished() => return,
            Some(_) if !finished && now.duration_since(last.0) < REDRAW => return,
            None if tenth <= last.1 => return,
            _ => {}
        }
        (last.0, last.1) = (now, tenth);
        let bio_ms = done as f64 * self.dt_ms;
        let wall = now.duration_since(self.start).as_secs_f64();
        let rtf = if bio_ms > 0.0 { wall / (bio_ms * 1e-3) } else { 0.0 };
        // (An 80-column terminal holds the bar's line: 24 + 6 + about 45.)
        let what = format!("{bio_ms:.1}/{:.1} ms  RTF {rtf:.2}  spikes {spikes}", total as f64 * self.dt_ms);
        match &self.bar {
            Some(bar) => {
                if bar.length() != Some(total) {
                    bar.set_length(total);
                }
                bar.set_position(done.min(total));
                bar.set_message(what);
                if finished {
                    bar.finish();
                    // The bar stays, with what follows on the lines below it.
                    let _ = writeln!(std::io::stderr().lock());
                }
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{:5.1}%  {what}", frac * 100.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gets_a_line_per_tenth_and_one_at_the_end() {
        let p = ProgressBar::on(0.1, true, false);
        let mut tenths = Vec::new();
        for done in (0..=1000).step_by(7).chain([1000, 1000]) {
            let before = p.last.lock().unwrap().1;
            p.update(done, 1000, 0);
            let after = p.last.lock().unwrap().1;
            if after != before {
                tenths.push(after);
            }
        }
        assert_eq!(tenths, (1..=10).collect::<Vec<_>>());
        // A run of no steps is finished at once: one line.
        let empty = ProgressBar::on(0.1, true, false);
        empty.update(0, 0, 0);
        empty.update(0, 0, 0);
        assert_eq!(empty.last.lock().unwrap().1, 10);
    }
}
