//! A TLS config rebuilt when the files it was built from change: checked at most once per interval, on
//! use (a handshake, a connection), so nothing runs while nobody connects. A rebuild that fails (a file
//! caught half-written, a key that does not match) keeps the previous config and logs why.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type Build<T> = Box<dyn Fn() -> anyhow::Result<Arc<T>> + Send + Sync>;

pub(crate) struct Reloading<T> {
    what: String,
    build: Build<T>,
    files: Vec<PathBuf>,
    interval: Option<Duration>,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

impl<T> Reloading<T> {
    /// Builds once now (an error stops the start); `files` are watched when `interval` is set.
    pub(crate) fn new(
        what: String,
        files: Vec<PathBuf>,
        interval: Option<Duration>,
        build: impl Fn() -> anyhow::Result<Arc<T>> + Send + Sync + 'static,
    ) -> anyhow::Result<Reloading<T>> {
        let current = build()?;
        let state = Mutex::new(State { current, stamps: stamps(&files), checked: Instant::now() });
        Ok(Reloading { what, build: Box::new(build), files, interval, state })
    }

    /// The config to use now, rebuilt first if a watched file changed since the last check.
    pub(crate) fn current(&self) -> Arc<T> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(every) = self.interval
            && !self.files.is_empty()
            && st.checked.elapsed() >= every
        {
            st.checked = Instant::now();
            let now = stamps(&self.files);
            if now != st.stamps {
                match (self.build)() {
                    Ok(c) => {
                        st.current = c;
                        st.stamps = now;
                        tracing::info!("{}: certificate files changed; TLS settings reloaded", self.what);
                    }
                    Err(e) => tracing::warn!(
                        "{}: certificate files changed but cannot be loaded ({e:#}); the previous ones stay in use",
                        self.what
                    ),
                }
            }
        }
        st.current.clone()
    }
}
