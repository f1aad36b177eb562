//! A progress bar on stderr: biological time, real-time factor, spikes.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

/// Draws at most ten times a second on a terminal, every 10 % otherwise.
pub struct ProgressBar {
    dt_ms: f64,
    start: Instant,
    state: Mutex<(Instant, u32)>,
    tty: bool,
    enabled: bool,
}

impl ProgressBar {
    /// A bar for a run with time step `dt_ms`; silent when `enabled` is false.
    pub fn new(dt_ms: f64, enabled: bool) -> Self {
        let now = Instant::now();
        ProgressBar { dt_ms, start: now, state: Mutex::new((now, 0)), tty: std::io::stderr().is_terminal(), enabled }
    }

    /// Report progress.
    pub fn update(&self, done: u64, total: u64, spikes: u64) {
        if !self.enabled {
            return;
        }
        let Ok(mut st) = self.state.lock() else { return };
        let frac = done as f64 / total.max(1) as f64;
        let now = Instant::now();
        let decile = (frac * 10.0).floor() as u32;
        let finished = done >= total;
        if self.tty {
            if now.duration_since(st.0).as_millis() < 100 && !finished {
                return;
            }
        } else if decile <= st.1 && !finished {
            return;
        }
        st.0 = now;
        st.1 = decile;
        let bio_ms = done as f64 * self.dt_ms;
        let wall = now.duration_since(self.start).as_secs_f64();
        let rtf = if bio_ms > 0.0 { wall / (bio_ms * 1e-3) } else { 0.0 };
        let width = 30;
        let filled = ((frac * width as f64) as usize).min(width);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(width - filled));
        let line = format!(
            "[{bar}] {:5.1}%  {:.1}/{:.1} ms  RTF {rtf:.2}  spikes {spikes}",
            frac * 100.0,
            bio_ms,
            total as f64 * self.dt_ms
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}
