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
//! - `run`: connections, the pacing thread, the workers and what they record.
//! - `histogram`: the log-linear latency histogram.
//! - `report`: the text and JSON output.
//!
//! Exit status: 0 when the run completed (even with failed requests: the report says how many),
//! 2 on bad arguments, 1 when the target cannot be reached at all.

mod cli;
mod histogram;
mod report;
mod run;
mod schedule;
mod target;

use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;

use crate::cli::Args;
use crate::report::Report;
use crate::schedule::Schedule;
use crate::target::Target;

fn main() -> ExitCode {
    let args = Args::parse();
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => Bytes::from(text.clone()),
        (None, Some(path)) => match std::fs::read(path) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                eprintln!("loadgen: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => Bytes::new(),
    };
    if args.duration.is_zero() {
        eprintln!("loadgen: --duration must be longer than zero");
        return ExitCode::from(2);
    }

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
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let schedule = Schedule::new(args.rate, args.warmup, args.duration);
    let result = runtime.block_on(async {
        let target = Target::new(&args.url, args.method.as_deref(), &args.headers, body)
            .await
            .map_err(|e| (2, e))?;
        let method = target.method().to_string();
        let outcome = run::run(Arc::new(target), schedule, args.connections, args.timeout)
            .await
            .map_err(|e| (1, e))?;
        Ok::<_, (u8, String)>(Report::new(
            &args.url,
            &method,
            args.rate,
            args.connections,
            &schedule,
            &outcome,
        ))
    });

    match result {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("loadgen: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("loadgen: {message}");
            ExitCode::from(code)
        }
    }
}
