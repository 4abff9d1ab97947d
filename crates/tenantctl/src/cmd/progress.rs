//! The progress of a deploy or a rollback being followed (`--wait`, `--follow`), on stderr:
//! an `indicatif` bar redrawn in place on a terminal; off a terminal (CI logs), a plain line
//! every few seconds and one at the end.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tenantctl::follow::Tally;

/// The tally in words.
fn words(tally: &Tally) -> String {
    format!(
        "{} ok, {} failed, {} pending",
        tally.succeeded, tally.failed, tally.unfinished
    )
}

/// A plain line at most this often off a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    started: Instant,
    bar: Option<ProgressBar>,
    /// When the last plain line was printed, and what it said.
    last_line: Option<(Instant, Tally)>,
    last: Tally,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:30.green/blue} {pos}/{len} done: {msg} | {elapsed} | ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>.");
            bar.set_style(style);
            bar
        });
        Progress {
            started: Instant::now(),
            bar,
            last_line: None,
            last: Tally::default(),
        }
    }

    pub fn show(&mut self, tally: &Tally) {
        self.last = *tally;
        if let Some(bar) = &self.bar {
            bar.set_message(words(tally));
            bar.set_length(tally.total);
            bar.set_position(tally.done());
            return;
        }
        let recent = self
            .last_line
            .is_some_and(|(at, _)| at.elapsed() < PLAIN_EVERY);
        if !recent || tally.unfinished == 0 {
            self.plain_line();
        }
    }

    /// Ends the bar (left on screen), or prints the last plain line.
    pub fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.abandon(),
            None => {
                if self.last_line.is_none_or(|(_, said)| said != self.last) {
                    self.plain_line();
                }
            }
        }
    }

    fn plain_line(&mut self) {
        let tally = self.last;
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = tally.done() as f64 / elapsed;
        let eta = if rate > 0.0 && tally.unfinished > 0 {
            format!("{:.0}s", tally.unfinished as f64 / rate)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            std::io::stderr(),
            "{}/{} done: {} | {rate:.0}/s | ETA {eta}",
            tally.done(),
            tally.total,
            words(&tally)
        );
        self.last_line = Some((Instant::now(), tally));
    }
}
