//! Progress bars and log lines on one terminal.
//!
//! Stages on the two tracks of [`crate::pipeline::run_all`] run at the same
//! time, each with its own bar. Every bar is added to one
//! [`MultiProgress`], which stacks them instead of letting them overwrite
//! each other's line, and [`LogWriter`] (the log's writer) hides the bars
//! while it writes a line, so log lines never land inside a bar. When
//! stderr is not a terminal indicatif draws no bar and the log lines are
//! written as they are.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::Write;
use std::sync::OnceLock;

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// A bar of `len` units with the given indicatif `template` and prefix,
/// stacked with every other live bar.
pub fn bar(len: u64, template: &'static str, prefix: &str) -> ProgressBar {
    let pb = multi().add(ProgressBar::new(len));
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// Ends a bar from [`bar`]: cleared from the terminal and from the stack.
pub fn finish(pb: &ProgressBar) {
    pb.finish_and_clear();
    multi().remove(pb);
}

/// The log's writer: stderr, with the bars hidden while a line is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The log's filter from `RUST_LOG` (`spec`): comma-separated directives,
/// each a level (`debug`: the default for every target) or `target=level`
/// (`xtask::steer=debug`: that module and those below it); a bare word that
/// is not a level names a target, at every level. Unset or blank means
/// `info`. A spec that does not parse also gives `info`, with the
/// reason as the second value, for a warning (the log is not up yet).
///
/// ```
/// use tracing::level_filters::LevelFilter;
/// let (f, bad) = xtask::progress::log_filter(Some("warn,xtask::steer=debug"));
/// assert!(bad.is_none());
/// assert_eq!(f.default_level(), Some(LevelFilter::WARN));
/// let (f, bad) = xtask::progress::log_filter(Some("xtask=loud"));
/// assert!(bad.is_some());
/// assert_eq!(f.default_level(), Some(LevelFilter::INFO));
/// ```
pub fn log_filter(spec: Option<&str>) -> (tracing_subscriber::filter::Targets, Option<String>) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let info = Targets::new().with_default(LevelFilter::INFO);
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => (info, None),
        Some(s) => match s.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (info, Some(format!("`{s}`: {e}"))),
        },
    }
}
