//! The CLI's log: `tracing` events (the library's, the providers' and the CLI's own, and the
//! `log` records of dependencies) on standard error, one line each, written through the
//! progress bars' [`MultiProgress`] so a line never lands inside a bar.
//!
//! What shows: `-q` only errors; by default warnings (retries, slow calls); `-v` info,
//! `-vv` debug, `-vvv` trace from `docstore` and `docstore_providers` (other crates stay at
//! warnings). Without `-q` or `-v`, `RUST_LOG` (an `EnvFilter` spec) decides when set.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use indicatif::MultiProgress;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter spec for `-q` / `-v` (counted) / `RUST_LOG`: the flags when given, else
/// `RUST_LOG` when set and not blank, else warnings.
pub fn filter_spec(quiet: bool, verbose: u8, rust_log: Option<&str>) -> String {
    let ours = |level: &str| format!("warn,docstore={level},docstore_providers={level}");
    match (quiet, verbose) {
        (true, _) => "error".into(),
        (false, 1) => ours("info"),
        (false, 2) => ours("debug"),
        (false, 3..) => ours("trace"),
        (false, 0) => match rust_log.map(str::trim) {
            Some(spec) if !spec.is_empty() => spec.to_owned(),
            _ => "warn".into(),
        },
    }
}

/// Installs the global subscriber: events that `filter_spec` lets through, written to
/// standard error above `multi`'s bars, coloured on a terminal, with the seconds since start.
pub fn init(quiet: bool, verbose: u8, multi: &MultiProgress) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let spec = filter_spec(quiet, verbose, rust_log.as_deref());
    // Invalid directives are skipped (and named on standard error), not fatal.
    let filter = EnvFilter::builder().parse_lossy(spec);
    let multi = multi.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || AboveBars(multi.clone()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_timer(SinceStart(Instant::now()))
        .finish();
    // Also routes `log` records; fails only if a subscriber is already installed.
    let _ = subscriber.try_init();
}

/// Standard error above the bars: while they show, each event goes through
/// [`MultiProgress::println`], which draws it above them in the same redraw (the formatter
/// writes each event whole, in one `write_all`); otherwise straight to standard error.
struct AboveBars(MultiProgress);

impl Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.is_hidden() {
            std::io::stderr().lock().write_all(buf)?;
        } else {
            let text = String::from_utf8_lossy(buf);
            self.0.println(text.trim_end_matches('\n'))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Seconds since the command started, as `  1.234s`.
struct SinceStart(Instant);

impl FormatTime for SinceStart {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write!(w, "{:7.3}s", self.0.elapsed().as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::filter_spec;

    #[test]
    fn flags_win_over_rust_log_and_warnings_are_the_default() {
        assert_eq!(filter_spec(false, 0, None), "warn");
        assert_eq!(filter_spec(false, 0, Some("  ")), "warn");
        assert_eq!(filter_spec(false, 0, Some("debug")), "debug");
        assert_eq!(filter_spec(true, 0, Some("debug")), "error");
        assert_eq!(
            filter_spec(false, 1, Some("trace")),
            "warn,docstore=info,docstore_providers=info"
        );
        assert!(filter_spec(false, 2, None).ends_with("docstore_providers=debug"));
        assert!(filter_spec(false, 7, None).ends_with("docstore_providers=trace"));
    }
}
