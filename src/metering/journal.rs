//! The settlement journal: where a settlement goes when Redis cannot take it.
//!
//! One JSON line per settlement, appended and `fsync`ed before the append returns, so a
//! settlement survives a crash of this replica as well as an outage of Redis. A replay task
//! retries the lines in order every second while any are pending (and once at start, for a
//! journal left by an earlier run); the lines Redis accepted are dropped by rewriting the file
//! (write a sibling, fsync, rename). Replaying twice is harmless: a settlement changes money
//! only once per request id (its done-mark), and its lease part only once per lease.
//!
//! The file is locked for the process's lifetime, so two replicas never share one journal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{Charge, Ending, LedgerPolicy, ScopeSpec, Store, StoreError};

/// One settlement, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The request's scopes (its leases and buckets).
    pub scopes: Vec<ScopeSpec>,
    /// The admission id.
    pub request_id: String,
    /// Tokens to give back.
    pub tokens_back: i64,
    /// Whether the request itself is given back.
    pub request_back: bool,
    /// The money part.
    pub charge: Option<Charge>,
}

/// Why the journal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file could not be opened or read.
    #[error("settlement journal {path}: {source}")]
    Io {
        /// The journal's path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process holds the journal.
    #[error(
        "settlement journal {0} is in use by another gateway process; give each replica its own GATEWAY_JOURNAL_PATH"
    )]
    Locked(String),
}

struct Inner {
    path: PathBuf,
    /// Held for the lock; appends and rewrites go through `path` under `io`.
    _lock: std::fs::File,
    /// Serialises appends and rewrites (only on the failure path, never per request).
    io: tokio::sync::Mutex<()>,
    backlog: prometheus::IntGauge,
}

/// The journal of one replica.
#[derive(Clone)]
pub struct Journal(Arc<Inner>);

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.0.path)
            .finish()
    }
}

fn io_err(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `<path>.<ext>`: a sibling file of the journal (lock, rewrite, set-aside lines).
fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl Journal {
    /// Opens (creating if needed) and locks the journal at `path`.
    pub fn open(path: &Path, backlog: prometheus::IntGauge) -> Result<Journal, JournalError> {
        let lock_path = sibling(path, "lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        lock.try_lock()
            .map_err(|_| JournalError::Locked(path.display().to_string()))?;
        let pending = read_lines(path).map_err(|e| io_err(path, e))?;
        backlog.set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        Ok(Journal(Arc::new(Inner {
            path: path.to_path_buf(),
            _lock: lock,
            io: tokio::sync::Mutex::new(()),
            backlog,
        })))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Appends one settlement and waits until it is on disk.
    pub async fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _g = self.0.io.lock().await;
        let path = self.0.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&line)?;
            f.sync_data()
        })
        .await
        .map_err(std::io::Error::other)??;
        self.0.backlog.inc();
        Ok(())
    }

    /// Settlements waiting.
    pub fn backlog(&self) -> u64 {
        u64::try_from(self.0.backlog.get()).unwrap_or(0)
    }

    /// Replays every pending line against `store`, in order, stopping at the first that fails
    /// for want of Redis; keeps that one and the rest. Returns how many were replayed.
    pub async fn replay(&self, store: &Store, policy: &LedgerPolicy) -> Result<usize, StoreError> {
        let _g = self.0.io.lock().await;
        let lines = read_lines(&self.0.path)
            .map_err(|e| StoreError::Unavailable(format!("journal unreadable: {e}")))?;
        if lines.is_empty() {
            return Ok(0);
        }
        let mut done = 0;
        let mut failure = None;
        // A line that can never succeed is kept aside, never dropped silently (and the
        // reconciliation shows the gap); it must not block the lines behind it.
        let set_aside = |line: &str, why: &dyn std::fmt::Display| {
            tracing::error!(error = %why, "journal line that cannot be replayed moved to the .bad file");
            let bad = sibling(&self.0.path, "bad");
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(bad)
                .and_then(|mut f| writeln!(f, "{line}").and_then(|_| f.sync_data()));
        };
        for line in &lines {
            let entry: Entry = match serde_json::from_str(line) {
                Ok(e) => e,
                Err(e) => {
                    set_aside(line, &e);
                    done += 1;
                    continue;
                }
            };
            match store
                .settle(
                    Ending {
                        scopes: &entry.scopes,
                        request_id: &entry.request_id,
                        tokens_back: entry.tokens_back,
                        request_back: entry.request_back,
                        charge: entry.charge.as_ref(),
                    },
                    policy,
                )
                .await
            {
                Ok(_) => done += 1,
                Err(e @ StoreError::Protocol(_)) => {
                    set_aside(line, &e);
                    done += 1;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let rest = &lines[done..];
        let tmp = sibling(&self.0.path, "tmp");
        let path = self.0.path.clone();
        let body: String = rest.iter().map(|l| format!("{l}\n")).collect();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(|e| StoreError::Unavailable(format!("journal rewrite failed: {e}")))?;
        self.0
            .backlog
            .set(i64::try_from(rest.len()).unwrap_or(i64::MAX));
        match failure {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// Replays every second while anything is pending (abort the task to stop it).
    pub fn spawn_replayer(
        &self,
        store: Store,
        policy: LedgerPolicy,
        settled: prometheus::IntCounterVec,
    ) -> tokio::task::JoinHandle<()> {
        let j = self.clone();
        tokio::spawn(async move {
            loop {
                if j.backlog() > 0 {
                    match j.replay(&store, &policy).await {
                        Ok(n) if n > 0 => {
                            settled.with_label_values(&["replayed"]).inc_by(n as u64);
                            tracing::info!(
                                replayed = n,
                                left = j.backlog(),
                                "settlement journal replayed"
                            );
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "journal replay waits for Redis"),
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }
}
