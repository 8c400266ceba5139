//! Command line: flags and the parsers clap cannot derive (durations, headers).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Open-loop, constant-rate HTTP/1.1 load generator.
///
/// Request i is due at start + i/rate whatever happened before; its latency is measured from
/// that due time to the last byte of the response body, so a slow or stalled server shows up
/// as latency instead of as a lower request rate.
///
/// With a command after `--` instead of `--url`, loadgen sends nothing: it runs the command
/// (another load tool) and reports what `--gateway-pid` and `--redis-url` spent meanwhile.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct Args {
    /// The only URL requests go to (`http://host:port/path`; no TLS).
    #[arg(long, required_unless_present = "command")]
    pub url: Option<String>,
    /// HTTP method [default: POST with a body, GET without].
    #[arg(long)]
    pub method: Option<String>,
    /// Request body (sent with `Content-Type: application/json` unless a header says otherwise).
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the request body from this file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Extra request header `name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Requests per second, offered whatever the server does.
    #[arg(long, default_value_t = 1000.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Measured time (`15s`, `500ms`, `2m`; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time before the measured part, at the same rate, whose requests are not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Keep-alive connections, opened before the first request; caps requests in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Give up on a request this long after its due time (counted as a `timeout` error); also
    /// bounds how long the run lasts after the last request is due.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Tokio worker threads of the load generator itself; 1 keeps it off the cores the servers
    /// under test need (the pacing runs on its own thread either way).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Write the report to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Responses are SSE streams: also report the time to the first `data:` field, and count
    /// a 2xx answer without one as an error. (The body must ask for a stream itself.)
    #[arg(long)]
    pub stream: bool,
    /// Sign every request with btauth/1 as this sr25519 key: a `0x` hex seed or a secret URI
    /// such as `//Alice`. Dev keys only: the value is visible to other local users.
    #[arg(
        long,
        value_name = "SECRET",
        env = "LOADGEN_SIGN_BTAUTH",
        hide_env_values = true
    )]
    pub sign_btauth: Option<String>,
    /// The gateway's hotkey signed requests are bound to (`X-Bittensor-Receiver`).
    #[arg(long, value_name = "SS58", default_value = crate::sign::DEV_RECEIVER)]
    pub btauth_receiver: String,
    /// Print one signed request's headers (`name: value` lines) for `--url` and exit; for
    /// scripts that make a single signed call (`POST /v1/auth/session`) with curl.
    #[arg(long, requires = "sign_btauth", requires = "url")]
    pub print_signed_headers: bool,
    /// Report this process's CPU time (from /proc/PID/stat) and resident memory over the
    /// measured window.
    #[arg(long, value_name = "PID")]
    pub gateway_pid: Option<i32>,
    /// Report Redis commands and CPU over the measured window, from `INFO` on each node:
    /// `redis://host:port` or `host:port`, comma-separated (all masters of a cluster).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub redis_url: Vec<String>,
    /// A command to run instead of sending load (see above), after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Parses `15s`, `500ms`, `250us`, `2m`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 15s or 500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use us, ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// Parses a positive, finite request rate.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a positive number of requests per second"
        )),
    }
}

/// Parses `name: value` (whitespace around both trimmed).
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not a header like `name: value`"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}` has an empty header name"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_all_units() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_rejected() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1..2s").is_err());
    }

    #[test]
    fn rates_must_be_positive() {
        assert_eq!(parse_rate("2000"), Ok(2000.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("inf").is_err());
        assert!(parse_rate("NaN").is_err());
    }

    #[test]
    fn headers_split_at_the_first_colon() {
        assert_eq!(
            parse_header("Authorization: Bearer a:b"),
            Ok(("Authorization".to_owned(), "Bearer a:b".to_owned()))
        );
        assert_eq!(
            parse_header("x-empty:"),
            Ok(("x-empty".to_owned(), String::new()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": value").is_err());
    }

    #[test]
    fn command_line_parses_the_documented_form() {
        let args = Args::try_parse_from([
            "loadgen",
            "--url",
            "http://127.0.0.1:8080/v1/reason",
            "--method",
            "POST",
            "--body",
            "{}",
            "--header",
            "x-a: 1",
            "--header",
            "x-b: 2",
            "--rate",
            "2000",
            "--duration",
            "10s",
            "--warmup",
            "2s",
            "--connections",
            "64",
            "--json",
        ])
        .expect("documented command line parses");
        assert_eq!(args.rate, 2000.0);
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.headers.len(), 2);
        assert!(args.json);
        assert!(
            Args::try_parse_from(["loadgen", "--url", "u", "--body", "{}", "--body-file", "f"])
                .is_err(),
            "--body and --body-file conflict"
        );
    }

    #[test]
    fn accounting_flags_and_the_wrapped_command_parse() {
        let args = Args::try_parse_from([
            "loadgen",
            "--gateway-pid",
            "42",
            "--redis-url",
            "127.0.0.1:7001,127.0.0.1:7002",
            "--output",
            "x.json",
            "--",
            "oha",
            "-q",
            "2000",
        ])
        .expect("wrapped command parses");
        assert_eq!(args.url, None);
        assert_eq!(args.gateway_pid, Some(42));
        assert_eq!(args.redis_url, ["127.0.0.1:7001", "127.0.0.1:7002"]);
        assert_eq!(args.command, ["oha", "-q", "2000"]);
        assert!(
            Args::try_parse_from(["loadgen", "--json"]).is_err(),
            "either --url or a command"
        );
        assert!(
            Args::try_parse_from(["loadgen", "--url", "u", "--print-signed-headers"]).is_err(),
            "printing signed headers needs a key"
        );
    }
}
