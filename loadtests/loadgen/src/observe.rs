//! What the servers spent on the measured window: the gateway process's CPU time and memory
//! (`--gateway-pid`, from /proc) and Redis's commands and CPU (`--redis-url`, `INFO` on every
//! node given).
//!
//! A snapshot is taken when the first measured request is due and another when the last one
//! has finished; the differences, divided by the requests answered in between, are the
//! per-request figures. Between the two, a thread samples the gateway's resident memory every
//! 100 ms for its maximum. Everything here is blocking and runs on that thread, outside the
//! runtime that sends the load.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use procfs::process::Process;
use serde::Serialize;

/// How often the gateway's resident memory is read during the window.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How long connecting to a Redis node or waiting for its `INFO` may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The processes and nodes to account, connected up front so a typo fails before the load.
pub struct Observer {
    gateway: Option<Process>,
    redis: Vec<RedisNode>,
}

/// One Redis node (a single server or one master of a cluster).
struct RedisNode {
    url: String,
    connection: redis::Connection,
}

/// A point-in-time reading of everything observed.
struct Snapshot {
    /// utime + stime of the gateway, in clock ticks.
    gateway_ticks: Option<u64>,
    /// Per node: (commands by name, used CPU in µs).
    redis: Vec<(BTreeMap<String, CommandStat>, u64)>,
}

/// Calls and server-side time of one Redis command (from `INFO commandstats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommandStat {
    /// Times it ran.
    pub calls: u64,
    /// Microseconds Redis spent in it.
    pub usec: u64,
}

/// The gateway's share of a window.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayUsage {
    /// The process observed.
    pub pid: i32,
    /// User + system CPU over the window, µs.
    pub cpu_us: u64,
    /// Resident memory when the window ended, KiB.
    pub rss_kib_end: u64,
    /// Largest resident memory seen during the window (sampled every 100 ms), KiB.
    pub rss_kib_max: u64,
    /// The kernel's high-water mark of resident memory since the process started, KiB.
    pub rss_kib_peak_lifetime: u64,
}

/// Redis's share of a window, summed over the nodes.
#[derive(Clone, Debug, Serialize)]
pub struct RedisUsage {
    /// The nodes asked.
    pub nodes: Vec<String>,
    /// Commands run (the observer's own `INFO` calls left out).
    pub calls: u64,
    /// Microseconds spent inside commands.
    pub usec: u64,
    /// used_cpu_sys + used_cpu_user over the window, µs (the whole server process).
    pub cpu_us: u64,
    /// The same by command name (lowercase, as Redis names them), only those that ran.
    pub commands: BTreeMap<String, CommandStat>,
}

/// What [`Running::finish`] measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Observed {
    /// With `--gateway-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayUsage>,
    /// With `--redis-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisUsage>,
}

impl Observer {
    /// Checks that `pid` exists and connects to every Redis URL (`redis://host:port` or
    /// `host:port`).
    pub fn connect(pid: Option<i32>, redis_urls: &[String]) -> Result<Self, String> {
        let gateway = pid
            .map(|pid| Process::new(pid).map_err(|e| format!("--gateway-pid {pid}: {e}")))
            .transpose()?;
        let mut redis = Vec::with_capacity(redis_urls.len());
        for url in redis_urls {
            let url = if url.contains("://") {
                url.clone()
            } else {
                format!("redis://{url}")
            };
            // Only the address goes into errors: a URL may carry a password.
            let shown = redact(&url);
            let client = redis::Client::open(url.as_str()).map_err(|e| format!("{shown}: {e}"))?;
            let connection = client
                .get_connection_with_timeout(REDIS_TIMEOUT)
                .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
            connection
                .set_read_timeout(Some(REDIS_TIMEOUT))
                .map_err(|e| format!("{shown}: {e}"))?;
            redis.push(RedisNode {
                url: shown,
                connection,
            });
        }
        Ok(Self { gateway, redis })
    }

    /// Whether there is anything to observe.
    pub fn is_empty(&self) -> bool {
        self.gateway.is_none() && self.redis.is_empty()
    }

    /// Starts a thread that takes the first snapshot at `at` and samples memory until
    /// [`Running::finish`].
    pub fn start(self, at: Instant) -> Result<Running, String> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("loadgen-observer".into())
            .spawn(move || self.observe(at, &stopped))
            .map_err(|e| format!("cannot start the observer thread: {e}"))?;
        Ok(Running { stop, thread })
    }

    fn observe(mut self, at: Instant, stopped: &mpsc::Receiver<()>) -> Result<Observed, String> {
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let before = self.snapshot()?;
        let mut rss_max = self.rss_kib()?.unwrap_or(0);
        // Until told to stop (or the sender is gone), read the resident memory on a period.
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(RSS_SAMPLE_EVERY) {
            rss_max = rss_max.max(self.rss_kib()?.unwrap_or(0));
        }
        let after = self.snapshot()?;
        let status = self
            .gateway
            .as_ref()
            .map(|p| p.status().map_err(|e| format!("gateway status: {e}")))
            .transpose()?;
        let gateway = match (&self.gateway, before.gateway_ticks, after.gateway_ticks) {
            (Some(process), Some(t0), Some(t1)) => {
                let rss_end = status.as_ref().and_then(|s| s.vmrss).unwrap_or(0);
                Some(GatewayUsage {
                    pid: process.pid,
                    cpu_us: ticks_to_us(t1.saturating_sub(t0)),
                    rss_kib_end: rss_end,
                    rss_kib_max: rss_max.max(rss_end),
                    rss_kib_peak_lifetime: status.as_ref().and_then(|s| s.vmhwm).unwrap_or(0),
                })
            }
            _ => None,
        };
        let redis = (!self.redis.is_empty()).then(|| {
            let nodes = self.redis.iter().map(|n| n.url.clone()).collect();
            redis_delta(nodes, &before.redis, &after.redis)
        });
        Ok(Observed { gateway, redis })
    }

    fn snapshot(&mut self) -> Result<Snapshot, String> {
        let gateway_ticks = self
            .gateway
            .as_ref()
            .map(|p| {
                p.stat()
                    .map(|s| s.utime + s.stime)
                    .map_err(|e| format!("gateway stat: {e}"))
            })
            .transpose()?;
        let mut redis = Vec::with_capacity(self.redis.len());
        for node in &mut self.redis {
            // One call for both sections (Redis 7), so the window holds exactly one of ours.
            let text: String = redis::cmd("INFO")
                .arg("cpu")
                .arg("commandstats")
                .query(&mut node.connection)
                .map_err(|e| format!("INFO on {}: {e}", node.url))?;
            redis.push(parse_info(&text));
        }
        Ok(Snapshot {
            gateway_ticks,
            redis,
        })
    }

    fn rss_kib(&self) -> Result<Option<u64>, String> {
        self.gateway
            .as_ref()
            .map(|p| p.status().map_err(|e| format!("gateway status: {e}")))
            .transpose()
            .map(|s| s.and_then(|s| s.vmrss))
    }
}

/// An observation in progress.
pub struct Running {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Result<Observed, String>>,
}

impl Running {
    /// Takes the closing snapshot and returns the differences.
    pub fn finish(self) -> Result<Observed, String> {
        // The thread may already have failed and dropped its receiver; its error is below.
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| "the observer thread panicked".to_owned())?
    }
}

fn ticks_to_us(ticks: u64) -> u64 {
    let per_second = procfs::ticks_per_second().max(1);
    ticks.saturating_mul(1_000_000) / per_second
}

/// `redis://user:secret@host:port/db` → `redis://host:port/db`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Reads `cmdstat_<name>:calls=N,usec=N,...` lines and `used_cpu_sys`/`used_cpu_user`
/// (seconds with a fraction) from an `INFO` reply.
fn parse_info(text: &str) -> (BTreeMap<String, CommandStat>, u64) {
    let mut commands = BTreeMap::new();
    let mut cpu_us = 0u64;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(name) = key.strip_prefix("cmdstat_") {
            let mut stat = CommandStat::default();
            for field in value.split(',') {
                match field.split_once('=') {
                    Some(("calls", n)) => stat.calls = n.parse().unwrap_or(0),
                    Some(("usec", n)) => stat.usec = n.parse().unwrap_or(0),
                    _ => {}
                }
            }
            commands.insert(name.to_owned(), stat);
        } else if key == "used_cpu_sys" || key == "used_cpu_user" {
            cpu_us += seconds_to_us(value);
        }
    }
    (commands, cpu_us)
}

/// `1.234567` seconds → 1234567 µs, without going through a float.
fn seconds_to_us(text: &str) -> u64 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole: u64 = whole.parse().unwrap_or(0);
    let digits: String = fraction.chars().chain("000000".chars()).take(6).collect();
    whole * 1_000_000 + digits.parse::<u64>().unwrap_or(0)
}

type NodeReading = (BTreeMap<String, CommandStat>, u64);

fn redis_delta(nodes: Vec<String>, before: &[NodeReading], after: &[NodeReading]) -> RedisUsage {
    let mut commands: BTreeMap<String, CommandStat> = BTreeMap::new();
    let mut cpu_us = 0;
    for ((b_cmds, b_cpu), (a_cmds, a_cpu)) in before.iter().zip(after) {
        cpu_us += a_cpu.saturating_sub(*b_cpu);
        for (name, a) in a_cmds {
            let b = b_cmds.get(name).copied().unwrap_or_default();
            let entry = commands.entry(name.clone()).or_default();
            entry.calls += a.calls.saturating_sub(b.calls);
            entry.usec += a.usec.saturating_sub(b.usec);
        }
    }
    // The opening snapshot's INFO (one per node) falls inside the window; it is ours.
    if let Some(info) = commands.get_mut("info") {
        info.calls = info.calls.saturating_sub(before.len() as u64);
    }
    commands.retain(|_, stat| stat.calls > 0);
    RedisUsage {
        nodes,
        calls: commands.values().map(|s| s.calls).sum(),
        usec: commands.values().map(|s| s.usec).sum(),
        cpu_us,
        commands,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO_BEFORE: &str = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.25\r\n\
        used_cpu_sys_children:9.000000\r\n\r\n# Commandstats\r\n\
        cmdstat_evalsha:calls=10,usec=300,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=4,usec=40,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n";
    const INFO_AFTER: &str = "# CPU\r\nused_cpu_sys:1.600000\r\nused_cpu_user:2.300001\r\n\
        used_cpu_sys_children:99.000000\r\n\r\n# Commandstats\r\n\
        cmdstat_evalsha:calls=30,usec=900,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_hincrby:calls=7,usec=7,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=5,usec=52,usec_per_call=10.40,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn info_replies_parse_into_commands_and_cpu() {
        let (commands, cpu) = parse_info(INFO_BEFORE);
        assert_eq!(cpu, 3_750_000, "children's CPU is not the server's");
        assert_eq!(
            commands["evalsha"],
            CommandStat {
                calls: 10,
                usec: 300
            }
        );
        assert_eq!(seconds_to_us("0.0000019"), 1);
        assert_eq!(seconds_to_us("12"), 12_000_000);
    }

    #[test]
    fn deltas_sum_over_nodes_and_leave_out_our_own_info() {
        let before = vec![parse_info(INFO_BEFORE), parse_info(INFO_BEFORE)];
        let after = vec![parse_info(INFO_AFTER), parse_info(INFO_BEFORE)];
        let usage = redis_delta(vec!["a".into(), "b".into()], &before, &after);
        // Node a: 20 EVALSHA + 7 HINCRBY + 1 INFO (ours); node b: nothing.
        assert_eq!(usage.commands["evalsha"].calls, 20);
        assert_eq!(usage.commands["hincrby"].calls, 7);
        assert!(!usage.commands.contains_key("info"));
        assert_eq!(usage.calls, 27);
        assert_eq!(usage.usec, 607);
        assert_eq!(usage.cpu_us, 150_001);
    }

    #[test]
    fn passwords_stay_out_of_shown_urls() {
        assert_eq!(
            redact("redis://user:hunter2@127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn observes_this_process_cpu_and_memory() {
        let pid = i32::try_from(std::process::id()).expect("pid");
        let mut observer = Observer::connect(Some(pid), &[]).expect("own process");
        let before = observer
            .snapshot()
            .expect("snapshot")
            .gateway_ticks
            .expect("ticks");
        // Burn CPU until the kernel has charged five more ticks (busy machines stretch this).
        let mut x = 0u64;
        while observer
            .snapshot()
            .expect("snapshot")
            .gateway_ticks
            .expect("ticks")
            < before + 5
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let after = observer
            .snapshot()
            .expect("snapshot")
            .gateway_ticks
            .expect("ticks");
        assert!(ticks_to_us(after - before) >= 5 * 1_000_000 / procfs::ticks_per_second());

        let running = observer.start(Instant::now()).expect("start");
        let observed = running.finish().expect("finish");
        let gateway = observed.gateway.expect("gateway usage");
        assert_eq!(gateway.pid, pid);
        assert!(gateway.rss_kib_end > 0 && gateway.rss_kib_max >= gateway.rss_kib_end);
        assert!(gateway.rss_kib_peak_lifetime >= gateway.rss_kib_end);
        assert!(observed.redis.is_none());
    }

    #[test]
    fn a_missing_process_fails_up_front() {
        assert!(Observer::connect(Some(i32::MAX), &[]).is_err());
    }

    #[test]
    fn counts_commands_on_a_real_redis() {
        // The tests' Redis (scripts/test.sh sets AGW_TEST_REDIS_URL, starting one if none answers).
        let url =
            std::env::var("AGW_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut observer = Observer::connect(None, std::slice::from_ref(&url)).expect("redis");
        let before = observer.snapshot().expect("snapshot");
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut con = client.get_connection().expect("connection");
        let key = format!("loadgen-test-{}:ping", std::process::id());
        for _ in 0..5 {
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg("1")
                .query(&mut con)
                .expect("SET");
        }
        let _: () = redis::cmd("DEL").arg(&key).query(&mut con).expect("DEL");
        let after = observer.snapshot().expect("snapshot");
        let usage = redis_delta(vec![url], &before.redis, &after.redis);
        // Other clients may use the same server at the same time: at least ours are there.
        assert!(usage.commands["set"].calls >= 5, "{:?}", usage.commands);
        assert!(usage.commands["del"].calls >= 1);
    }
}
