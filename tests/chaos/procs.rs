//! The gateway replicas of a chaos run, from the built binary, each with its own journal and
//! log file (the durable Redis the test owns is [`crate::common::durable_redis`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The gateway binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_affine-gateway");

/// A free loopback port (released at once; the caller binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One gateway replica: `affine-gateway serve` on its own port, journal and log.
pub struct Replica {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    config: PathBuf,
    env: Vec<(String, String)>,
    /// stdout and stderr of every run of this replica, appended.
    pub log: PathBuf,
}

impl Replica {
    /// Starts `serve --config config` with `env` (secrets, listen address, journal) on `port`.
    pub fn start(
        dir: &Path,
        name: &str,
        port: u16,
        config: &Path,
        env: Vec<(String, String)>,
    ) -> Replica {
        let mut r = Replica {
            child: None,
            port,
            config: config.to_path_buf(),
            env,
            log: dir.join(format!("{name}.log")),
        };
        r.spawn();
        r
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = Command::new(BIN);
        c.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        self.child = Some(c.spawn().expect("the gateway binary starts"));
    }

    /// SIGKILL: no drain, no journal flush, in-flight streams cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, config and journal.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// Whether the process is still running (a panic that aborts it ends it).
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Everything it logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}
