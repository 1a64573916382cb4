//! Progress on standard error while a long command runs, drawn with `indicatif`: one bar per
//! database (changes done, total, rate, ETA) in one [`MultiProgress`], and spinners for work
//! the library gives no measure of. Bars show only on a terminal, and never with `--json` or
//! `-q`. Off a terminal, one plain line per batch stands in for a bar (the tests that kill a
//! migration mid-run wait for it); `--json` and `-q` silence that too.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress shows on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Bars redrawn in place: standard error is a terminal.
    Bars,
    /// One plain line per batch: standard error is a file or a pipe.
    Lines,
    /// Nothing: `--json` or `-q`.
    Nothing,
}

impl Display {
    /// Bars on a terminal, lines elsewhere, nothing with JSON output or when quiet.
    pub fn detect(json: bool, quiet: bool) -> Self {
        if json || quiet {
            Self::Nothing
        } else if std::io::stderr().is_terminal() {
            Self::Bars
        } else {
            Self::Lines
        }
    }
}

/// The bars of one command: one per database, created at its first batch, in one
/// [`MultiProgress`] that log lines are written through (see [`super::logging`]). Clones
/// share the bars.
#[derive(Clone)]
pub struct Bars {
    multi: MultiProgress,
    display: Display,
    /// Each database's bar, in the order they appeared.
    bars: Arc<Mutex<Vec<(String, ProgressBar)>>>,
}

impl Bars {
    /// Bars drawn on standard error with `display`, or hidden.
    pub fn new(display: Display) -> Self {
        let target = match display {
            Display::Bars => ProgressDrawTarget::stderr(),
            Display::Lines | Display::Nothing => ProgressDrawTarget::hidden(),
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            display,
            bars: Arc::default(),
        }
    }

    /// The [`MultiProgress`] holding the bars: output written through it (with
    /// [`MultiProgress::suspend`]) lands above them, not inside one.
    pub fn multi(&self) -> &MultiProgress {
        &self.multi
    }

    /// Runs `f` (which writes to standard output or error) with the bars cleared, then
    /// redraws them.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    /// `db` has read `done` changes with `pending` still ahead; `note` follows the counts.
    /// Also a debug event, so `-vv` logs every batch even where bars are hidden.
    /// With `one_at_a_time` (databases copied one after another), a database at the end of
    /// its feed is finished: its bar stays, frozen at its average rate.
    pub fn changes(&self, db: &str, done: u64, pending: u64, note: &str, one_at_a_time: bool) {
        tracing::debug!(db, done, pending, note, "batch");
        let bar = self.bar(db);
        bar.set_length(done + pending);
        bar.set_position(done);
        if self.display == Display::Lines {
            eprintln!(
                "{db} {done}/{} changes, {:.0}/s, ETA {}s{}",
                done + pending,
                bar.per_sec(),
                bar.eta().as_secs(),
                if note.is_empty() {
                    String::new()
                } else {
                    format!(", {note}")
                }
            );
        }
        if pending == 0 && one_at_a_time {
            bar.abandon_with_message(note.to_owned());
        } else {
            bar.set_message(note.to_owned());
        }
    }

    /// Finishes every bar still running, leaving it as it is with `note` after it, and
    /// lets the bars go: they stay on the screen as last drawn, and what is printed next
    /// goes below them instead of being redrawn around them.
    pub fn finish(&self, note: &str) {
        for (_, bar) in self.lock().iter() {
            if !bar.is_finished() {
                bar.abandon_with_message(note.to_owned());
            }
        }
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
    }

    /// A spinner for `what` (work without a measure of its progress): elapsed time and
    /// `note`. It is the caller's to finish, usually with
    /// [`ProgressBar::finish_and_clear`] before printing the result.
    pub fn spinner(&self, what: &str, note: &str) -> ProgressBar {
        let spinner = self.multi.add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("{spinner:.green} {prefix:.bold} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_prefix(what.to_owned());
        spinner.set_message(note.to_owned());
        if self.display == Display::Bars {
            spinner.enable_steady_tick(Duration::from_millis(120));
        }
        spinner
    }

    /// `db`'s bar, added below the others the first time.
    fn bar(&self, db: &str) -> ProgressBar {
        let mut bars = self.lock();
        if let Some((_, bar)) = bars.iter().find(|(name, _)| name == db) {
            return bar.clone();
        }
        let bar = self.multi.add(ProgressBar::new(0));
        bar.set_style(bar_style());
        bar.set_prefix(db.to_owned());
        bars.push((db.to_owned(), bar.clone()));
        bar
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, ProgressBar)>> {
        self.bars.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A database's line, as wide as the terminal: name, bar, changes done of the total, rate,
/// ETA, a note.
fn bar_style() -> ProgressStyle {
    let template = "{prefix:<16!} [{wide_bar:.cyan/blue}] {human_pos:>7}/{human_len:<7} changes \
                    {rate:>9} ETA {eta:<3} {msg:<18!}";
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", HumanCount(state.per_sec() as u64));
            },
        )
}
