//! The progress of a deploy or a rollback being followed (`--wait`, `--follow`), on stderr:
//! an `indicatif` bar redrawn in place on a terminal; off a terminal (CI logs), a plain line
//! every few seconds and one at the end. Over several tenant servers, each server's count
//! follows, so a server that lags or fails shows while it happens.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tenantctl::follow::{Standing, Tally};

/// The tally in words.
fn words(tally: &Tally) -> String {
    format!(
        "{} ok, {} failed, {} pending",
        tally.succeeded, tally.failed, tally.unfinished
    )
}

/// Each server's count (`pg-b 120/300, 2 failed`), when the tenants live on more than one.
fn per_server(standing: &Standing) -> Option<String> {
    (standing.servers.len() > 1).then(|| {
        standing
            .servers
            .iter()
            .map(|(server, tally)| {
                let failed = if tally.failed > 0 {
                    format!(" ({} failed)", tally.failed)
                } else {
                    String::new()
                };
                format!("{server} {}/{}{failed}", tally.done(), tally.total)
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The whole in words, then each server's count.
fn message(standing: &Standing) -> String {
    let whole = words(&standing.all);
    match per_server(standing) {
        Some(servers) => format!("{whole} | {servers}"),
        None => whole,
    }
}

/// A plain progress line, for `elapsed` since the start.
fn plain(standing: &Standing, elapsed: Duration) -> String {
    let tally = &standing.all;
    let rate = tally.done() as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 && tally.unfinished > 0 {
        format!("{:.0}s", tally.unfinished as f64 / rate)
    } else {
        "-".to_owned()
    };
    let mut line = format!(
        "{}/{} done: {} | {rate:.0}/s | ETA {eta}",
        tally.done(),
        tally.total,
        words(tally)
    );
    if let Some(servers) = per_server(standing) {
        line.push_str(" | ");
        line.push_str(&servers);
    }
    line
}

/// A plain line at most this often off a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    started: Instant,
    bar: Option<ProgressBar>,
    /// When the last plain line was printed, and what it said.
    last_line: Option<(Instant, Standing)>,
    last: Standing,
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
            last: Standing::default(),
        }
    }

    pub fn show(&mut self, standing: &Standing) {
        self.last = standing.clone();
        if let Some(bar) = &self.bar {
            bar.set_message(message(standing));
            bar.set_length(standing.all.total);
            bar.set_position(standing.all.done());
            return;
        }
        let recent = self
            .last_line
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < PLAIN_EVERY);
        if !recent || standing.all.unfinished == 0 {
            self.plain_line();
        }
    }

    /// Ends the bar (left on screen), or prints the last plain line.
    pub fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.abandon(),
            None => {
                if self
                    .last_line
                    .as_ref()
                    .is_none_or(|(_, said)| *said != self.last)
                {
                    self.plain_line();
                }
            }
        }
    }

    fn plain_line(&mut self) {
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            plain(&self.last, self.started.elapsed())
        );
        self.last_line = Some((Instant::now(), self.last.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tenantctl::follow::{Mark, Standing};

    use super::plain;

    #[test]
    fn one_server_shows_the_whole_only() {
        let mut standing = Standing::default();
        standing.add("default", Mark::Succeeded, 30);
        standing.add("default", Mark::Unfinished, 70);
        assert_eq!(
            plain(&standing, Duration::from_secs(3)),
            "30/100 done: 30 ok, 0 failed, 70 pending | 10/s | ETA 7s"
        );
    }

    #[test]
    fn several_servers_show_each_count_and_its_failures() {
        let mut standing = Standing::default();
        standing.add("default", Mark::Succeeded, 40);
        standing.add("pg-b", Mark::Succeeded, 10);
        standing.add("pg-b", Mark::Failed, 2);
        standing.add("pg-b", Mark::Unfinished, 28);
        assert_eq!(
            plain(&standing, Duration::from_secs(4)),
            "52/80 done: 50 ok, 2 failed, 28 pending | 13/s | ETA 2s \
             | default 40/40, pg-b 12/40 (2 failed)"
        );
    }
}
