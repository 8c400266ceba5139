//! `loadgen`: an open-loop, constant-rate HTTP/1.1 load generator.
//!
//! It exists to check the gateway's budget ("≤ 1 ms added at p99 at 2,000 req/s"): run it once
//! against the simulated upstream and once through the gateway, at the same rate, and compare
//! the same percentile. Closed-loop tools (wrk, hey) send the next request only when a
//! connection is free, so a server stall lowers the offered load and hides itself; here every
//! request has a due time fixed in advance and its latency starts there.
//!
//! Layout:
//! - `cli`: flags and their parsers.
//! - `schedule`: due times and the warm-up/measured split (pure arithmetic).
//! - `target`: the one URL, resolved once, and the request sent every time.
//! - `sign`: btauth/1 headers, signed afresh for every request (`--sign-btauth`).
//! - `run`: connections, the pacing thread, the workers and what they record (latency, time
//!   to the first SSE `data:` field with `--stream`).
//! - `observe`: what the gateway process (`--gateway-pid`) and Redis (`--redis-url`) spent
//!   over the measured window.
//! - `histogram`: the log-linear latency histogram.
//! - `report`: the text and JSON output.
//!
//! Besides sending load, loadgen can wrap another load tool (`loadgen --gateway-pid P -- oha
//! ...`): it runs the command and reports what the servers spent while it ran.
//!
//! Exit status: 0 when the run completed (even with failed requests: the report says how many),
//! 2 on bad arguments, 1 when the target cannot be reached at all.

mod cli;
mod histogram;
mod observe;
mod report;
mod run;
mod schedule;
mod sign;
mod target;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;

use crate::cli::Args;
use crate::observe::Observer;
use crate::report::{Report, WatchReport};
use crate::schedule::Schedule;
use crate::sign::Signer;
use crate::target::Target;

/// A failure with the exit status it maps to (2: bad arguments, 1: the run failed).
type Failure = (u8, String);

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.command.is_empty() {
        load(&args)
    } else {
        watch(&args)
    };
    match result {
        Ok(text) => emit(&args, &text),
        Err((code, message)) => {
            eprintln!("loadgen: {message}");
            ExitCode::from(code)
        }
    }
}

/// Prints `text` or writes it to `--output`.
fn emit(args: &Args, text: &str) -> ExitCode {
    match &args.output {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value)
        .map(|json| json + "\n")
        .map_err(|e| (1, format!("cannot encode the report: {e}")))
}

fn observer(args: &Args) -> Result<Option<Observer>, Failure> {
    let observer = Observer::connect(args.gateway_pid, &args.redis_url).map_err(|e| (2, e))?;
    Ok((!observer.is_empty()).then_some(observer))
}

/// Runs `args.command` and reports what the observed servers spent while it ran.
fn watch(args: &Args) -> Result<String, Failure> {
    let observer = observer(args)?;
    let started = Instant::now();
    let running = observer
        .map(|o| o.start(started))
        .transpose()
        .map_err(|e| (1, e))?;
    let status = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .status()
        .map_err(|e| (2, format!("cannot run {}: {e}", args.command[0])))?;
    let elapsed = started.elapsed();
    let observed = running
        .map(|r| r.finish())
        .transpose()
        .map_err(|e| (1, e))?
        .unwrap_or_default();
    encode(&WatchReport {
        command: args.command.clone(),
        exit_code: status.code(),
        elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        observed,
    })
}

/// Sends the load and reports it (or, with `--print-signed-headers`, one request's headers).
fn load(args: &Args) -> Result<String, Failure> {
    // clap makes --url required when there is no command.
    let url = args.url.clone().unwrap_or_default();
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => Bytes::from(text.clone()),
        (None, Some(path)) => Bytes::from(
            std::fs::read(path).map_err(|e| (2, format!("cannot read {}: {e}", path.display())))?,
        ),
        (None, None) => Bytes::new(),
    };
    if args.duration.is_zero() {
        return Err((2, "--duration must be longer than zero".to_owned()));
    }
    let signer = args
        .sign_btauth
        .as_deref()
        .map(|secret| Signer::new(secret, &args.btauth_receiver).map(Arc::new))
        .transpose()
        .map_err(|e| (2, e))?;

    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads as usize)
            .enable_all()
            .build()
    };
    let runtime = runtime.map_err(|e| (1, format!("cannot start the runtime: {e}")))?;

    let schedule = Schedule::new(args.rate, args.warmup, args.duration);
    runtime.block_on(async {
        let target = Target::new(&url, args.method.as_deref(), &args.headers, body)
            .await
            .map_err(|e| (2, e))?;
        if args.print_signed_headers {
            return Ok(signed_headers(&target, signer.as_deref()));
        }
        let observer = observer(args)?;
        let method = target.method().to_string();
        let signed_as = signer.as_ref().map(|s| s.sender().to_owned());
        let options = run::Options {
            signer,
            stream: args.stream,
        };
        let outcome = run::run(
            Arc::new(target),
            schedule,
            args.connections,
            args.timeout,
            options,
            observer,
        )
        .await
        .map_err(|e| (1, e))?;
        let mut report = Report::new(
            &url,
            &method,
            args.rate,
            args.connections,
            &schedule,
            &outcome,
        );
        report.signed_as = signed_as;
        if args.json {
            encode(&report)
        } else {
            Ok(report.to_text())
        }
    })
}

/// The btauth/1 headers of one request to `target`, one `name: value` line each.
fn signed_headers(target: &Target, signer: Option<&Signer>) -> String {
    let Some(signer) = signer else {
        return String::new();
    };
    let request = target.signed_request(signer);
    request
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-bittensor-"))
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap_or_default()))
        .collect()
}
