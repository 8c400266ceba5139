//! A throwaway Redis the test owns, with its data on disk: it can be killed, restarted and
//! frozen (the outage tests and the chaos suite).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sends `signal` to `pid` with kill(1): the tests have no libc binding, and a stall needs
/// SIGSTOP/SIGCONT, which `Child` cannot send.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A redis-server on a free port with its append-only file fsynced on every write, so a
/// SIGKILL and a restart lose nothing that was acknowledged (as a production Redis with AOF).
pub struct DurableRedis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl DurableRedis {
    /// Starts it and waits until it accepts connections.
    pub fn start() -> DurableRedis {
        let mut r = DurableRedis {
            child: None,
            port: std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            dir: tempfile::tempdir().unwrap(),
        };
        r.start_again();
        r
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and data directory (after [`DurableRedis::kill`]),
    /// and waits until it answers PING.
    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir.path().to_str().unwrap(),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Connecting is not enough: a restarted server refuses commands while it loads the AOF.
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "throwaway redis did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// SIGKILL, `down` without a server, then a fresh one on the same port and data directory.
    pub fn restart(&mut self, down: Duration) {
        self.kill();
        // The outage's length, not a wait for anything.
        std::thread::sleep(down);
        self.start_again();
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the server keeps its connections but answers nothing until [`DurableRedis::resume`].
    pub fn freeze(&self) {
        signal(self.child.as_ref().expect("running").id(), "-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running").id(), "-CONT");
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A frozen server ignores SIGKILL only until it is continued; continue it first.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}
