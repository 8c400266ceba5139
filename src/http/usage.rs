//! Usage reads: `GET /v1/usage` (the caller's days), `GET /v1/stats` (public aggregates) and
//! `GET /admin/v1/usage/export` (every event of a month, streamed, for invoicing).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::{Date, Duration as Days, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Operator};
use crate::error::{ApiError, ErrorCode};
use crate::http::AppState;
use crate::metering::UsageEvent;
use crate::metering::event::CSV_HEADER;
use crate::store::{DayRollup, Rollup, StoreError, UsageEntry};

/// Longest range `/v1/usage` and `/v1/stats` answer for, in days.
pub const MAX_RANGE_DAYS: i64 = 366;

/// Events read from the store per page of an export.
const EXPORT_PAGE: usize = 1000;

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD` (UTC days, both included). `from` after `to` is refused
/// (400); a range longer than [`MAX_RANGE_DAYS`] is cut to its last days (the answer's `from`
/// says where it starts).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Range {
    /// First day; default: 29 days before `to`. Must not be after `to`.
    #[param(format = Date, example = "2026-11-01")]
    pub from: Option<String>,
    /// Last day; default: today (UTC).
    #[param(format = Date, example = "2026-11-30")]
    pub to: Option<String>,
}

const DAY: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

fn parse_day(s: &str, name: &str) -> Result<Date, ApiError> {
    Date::parse(s, DAY).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`{name}` must be a date as YYYY-MM-DD, got `{s}`"),
        )
    })
}

fn fmt_day(d: Date) -> String {
    d.format(DAY).unwrap_or_default()
}

impl Range {
    /// The days of the range, in order.
    fn days(&self) -> Result<Vec<String>, ApiError> {
        let to = match &self.to {
            Some(s) => parse_day(s, "to")?,
            None => OffsetDateTime::now_utc().date(),
        };
        let from = match &self.from {
            Some(s) => parse_day(s, "from")?,
            None => to - Days::days(29),
        };
        if from > to {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "`from` must not be after `to`",
            ));
        }
        let n = ((to - from).whole_days() + 1).min(MAX_RANGE_DAYS);
        let from = to - Days::days(n - 1);
        Ok((0..n).map(|i| fmt_day(from + Days::days(i))).collect())
    }
}

/// A query string that does not fit its parameters is a 400 problem like any bad input (axum
/// would answer in plain text).
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("bad query string: {}", e.body_text()),
        )
    })
}

fn unavailable(e: StoreError) -> ApiError {
    ApiError::from_store(&e, "usage records could not be read")
}

/// One day of the caller's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// The day's totals.
    #[serde(flatten)]
    pub usage: Rollup,
}

/// `GET /v1/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// The account.
    pub account: String,
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Every day of the range, in order (days without requests are zeros).
    pub days: Vec<UsageDay>,
    /// The range's totals.
    pub total: Rollup,
}

/// The caller's daily usage: requests, tokens and rao, by the day each request was settled.
#[utoipa::path(get, path = "/v1/usage", tag = "reason", params(Range),
    responses(
        (status = 200, description = "the caller's usage per day", body = UsageReport),
        (status = 400, description = "invalid_request: a bad date or range", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "store_unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn usage(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    range: Result<Query<Range>, QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let days = query(range)?.days()?;
    let tag = crate::store::keys::account_tag(&caller.account_id);
    let rows = st
        .store
        .rollups(&tag, &days, false)
        .await
        .map_err(unavailable)?;
    let mut total = Rollup::default();
    let days: Vec<UsageDay> = days
        .into_iter()
        .zip(rows)
        .map(|(date, DayRollup { rollup: usage, .. })| {
            total.requests += usage.requests;
            total.input_tokens += usage.input_tokens;
            total.output_tokens += usage.output_tokens;
            total.rao += usage.rao;
            UsageDay { date, usage }
        })
        .collect();
    Ok(Json(UsageReport {
        account: caller.account_id.clone(),
        from: days.first().map(|d| d.date.clone()).unwrap_or_default(),
        to: days.last().map(|d| d.date.clone()).unwrap_or_default(),
        days,
        total,
    }))
}

/// One day of public serving statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Requests settled.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Distinct callers (accounts) that day.
    pub unique_callers: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Every day of the range, in order.
    pub days: Vec<StatsDay>,
}

/// Public aggregate serving usage per day: requests, tokens and unique callers. No identities
/// and no money.
#[utoipa::path(get, path = "/v1/stats", tag = "public", params(Range),
    responses(
        (status = 200, description = "serving statistics per day", body = Stats),
        (status = 400, description = "invalid_request: a bad date or range", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "store_unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn stats(
    State(st): State<AppState>,
    range: Result<Query<Range>, QueryRejection>,
) -> Result<Json<Stats>, ApiError> {
    let days = query(range)?.days()?;
    let rows = st.stats_days.rollups(&st.store, &days).await?;
    let days: Vec<StatsDay> = days
        .into_iter()
        .zip(rows)
        .map(|(date, DayRollup { rollup: r, callers })| StatsDay {
            date,
            requests: r.requests,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            unique_callers: callers,
        })
        .collect();
    Ok(Json(Stats {
        from: days.first().map(|d| d.date.clone()).unwrap_or_default(),
        to: days.last().map(|d| d.date.clone()).unwrap_or_default(),
        days,
    }))
}

/// After a UTC day ends, settlements of requests that finished just before midnight may still
/// be on their way to the store: the day is treated as final only this long after its end.
const SETTLE_GRACE: Days = Days::minutes(5);

/// How long a final day stays cached. Final days do not change, except when a replica
/// replays its settlement journal after a Redis outage (those settlements keep the day they
/// finished on): re-reading now and then bounds how long such a late settlement stays
/// invisible, at the cost of one range read per hour.
const PAST_DAY_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The `/v1/stats` rollups of days that are over, kept in process: a past day's totals are
/// final, so a 366-day range costs Redis only the days not cached (normally just today), in
/// one pipelined round trip, instead of two commands per day on every request.
#[derive(Debug, Default)]
pub struct PastDays {
    days: std::sync::Mutex<std::collections::HashMap<String, CachedDay>>,
}

#[derive(Debug, Clone, Copy)]
struct CachedDay {
    rollup: Rollup,
    callers: u64,
    at: std::time::Instant,
}

impl PastDays {
    /// The `{stats}` rollups of `days` (in order): cached final days from memory, the rest
    /// from the store in one round trip.
    pub async fn rollups(
        &self,
        store: &crate::store::Store,
        days: &[String],
    ) -> Result<Vec<DayRollup>, ApiError> {
        let now = std::time::Instant::now();
        let mut out: Vec<Option<DayRollup>> = {
            let cached = self.days.lock().unwrap_or_else(|e| e.into_inner());
            days.iter()
                .map(|d| {
                    cached
                        .get(d)
                        .filter(|c| now.duration_since(c.at) < PAST_DAY_TTL)
                        .map(|c| DayRollup {
                            rollup: c.rollup,
                            callers: c.callers,
                        })
                })
                .collect()
        };
        let missing: Vec<String> = days
            .iter()
            .zip(&out)
            .filter(|(_, c)| c.is_none())
            .map(|(d, _)| d.clone())
            .collect();
        if missing.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
        let rows = store
            .rollups(crate::store::keys::STATS_TAG, &missing, true)
            .await
            .map_err(unavailable)?;
        let last_final = last_final_day(OffsetDateTime::now_utc());
        {
            let mut cached = self.days.lock().unwrap_or_else(|e| e.into_inner());
            for (d, &DayRollup { rollup, callers }) in missing.iter().zip(&rows) {
                if d.as_str() <= last_final.as_str() {
                    cached.insert(
                        d.clone(),
                        CachedDay {
                            rollup,
                            callers,
                            at: now,
                        },
                    );
                }
            }
            // Bounded: only days a range can still ask for are kept (days sort as text).
            if cached.len() > 2 * MAX_RANGE_DAYS as usize {
                let oldest = fmt_day(OffsetDateTime::now_utc().date() - Days::days(MAX_RANGE_DAYS));
                cached.retain(|d, _| d.as_str() >= oldest.as_str());
            }
        }
        let mut fetched = rows.into_iter();
        for slot in out.iter_mut().filter(|c| c.is_none()) {
            *slot = fetched.next();
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// The latest day whose totals are final at `now`: yesterday once [`SETTLE_GRACE`] has passed
/// since midnight, else the day before.
fn last_final_day(now: OffsetDateTime) -> String {
    fmt_day((now - SETTLE_GRACE).date() - Days::days(1))
}

/// `?month=YYYY-MM&format=jsonl|csv`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The month (UTC) whose events to export, by settlement time.
    #[param(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$", example = "2026-11")]
    pub month: String,
    /// `jsonl` (default) or `csv`.
    #[param(value_type = Option<ExportFormat>)]
    pub format: Option<String>,
}

/// The export's format.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per line (`application/x-ndjson`).
    Jsonl,
    /// CSV with a header row (`text/csv`).
    Csv,
}

fn valid_month(m: &str) -> bool {
    m.len() == 7 && parse_day(&format!("{m}-01"), "month").is_ok() && m.as_bytes()[4] == b'-'
}

/// Every usage event of a month, streamed: JSON lines or CSV (same columns, `metadata` as JSON
/// text). An event belongs to the month of its `finished_at`.
#[utoipa::path(get, path = "/admin/v1/usage/export", tag = "admin", params(ExportQuery),
    responses(
        (status = 200, description = "the month's events", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "invalid_request: a bad month or format", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "store_unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    if !valid_month(&q.month) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`month` must be YYYY-MM, got `{}`", q.month),
        ));
    }
    let csv = match q.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(f) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`format` must be `jsonl` or `csv`, got `{f}`"),
            ));
        }
    };
    // Read the accounts and the first page before answering, so a store outage is a clean
    // 503, not a cut body.
    let accounts = st
        .store
        .usage_accounts(&q.month)
        .await
        .map_err(unavailable)?;
    let first = match accounts.first() {
        Some(a) => st
            .store
            .usage_events(&q.month, a, None, EXPORT_PAGE)
            .await
            .map_err(unavailable)?,
        None => Vec::new(),
    };
    tracing::info!(by = %op.sub, month = %q.month, csv, accounts = accounts.len(), "usage export");
    /// Where the export is: the account being read and the cursor in its stream.
    struct Walk {
        accounts: Vec<String>,
        at: usize,
        cursor: Option<String>,
        first: Option<Vec<UsageEntry>>,
        header: bool,
    }
    let store = st.store.clone();
    let month = q.month.clone();
    let walk = Walk {
        accounts,
        at: 0,
        cursor: None,
        first: Some(first),
        header: true,
    };
    let pages = futures_util::stream::unfold(Some(walk), move |walk| {
        let (store, month) = (store.clone(), month.clone());
        async move {
            let mut w = walk?;
            loop {
                let page = match w.first.take() {
                    Some(p) => p,
                    None => {
                        let Some(account) = w.accounts.get(w.at) else {
                            // A month without events is still a CSV with its header.
                            return w.header.then(|| {
                                (Ok::<Bytes, std::io::Error>(render(&[], csv, true)), None)
                            });
                        };
                        match store
                            .usage_events(&month, account, w.cursor.as_deref(), EXPORT_PAGE)
                            .await
                        {
                            Ok(p) => p,
                            Err(e) => {
                                // Headers are gone: cutting the body is the only honest signal.
                                tracing::error!(error = %e, "usage export cut short");
                                return Some((
                                    Err(std::io::Error::other("usage store failed")),
                                    None,
                                ));
                            }
                        }
                    }
                };
                if page.is_empty() {
                    w.at += 1;
                    w.cursor = None;
                    continue;
                }
                w.cursor = page.last().map(|e| e.cursor.clone());
                let bytes = render(&page, csv, w.header);
                w.header = false;
                return Some((Ok(bytes), Some(w)));
            }
        }
    });
    let (ctype, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "jsonl")
    };
    let disposition = format!("attachment; filename=\"usage-{}.{ext}\"", q.month);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}

/// One page of events: JSON lines as stored (no re-serialisation), or CSV records.
fn render(page: &[UsageEntry], csv: bool, header: bool) -> Bytes {
    if !csv {
        let mut out = Vec::with_capacity(page.iter().map(|e| e.json.len() + 1).sum());
        for UsageEntry { json: e, .. } in page {
            out.extend_from_slice(e.as_bytes());
            out.push(b'\n');
        }
        return Bytes::from(out);
    }
    let mut w = csv::Writer::from_writer(Vec::with_capacity(page.len() * 256));
    if header {
        let _ = w.write_record(CSV_HEADER);
    }
    for UsageEntry { json: e, .. } in page {
        match serde_json::from_str::<UsageEvent>(e) {
            Ok(ev) => {
                let _ = w.write_record(ev.csv_record());
            }
            Err(err) => {
                tracing::error!(error = %err, "unreadable usage event skipped in CSV export")
            }
        }
    }
    Bytes::from(w.into_inner().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_final_a_grace_after_it_ends() {
        let at = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
        };
        assert_eq!(last_final_day(at("2026-03-10T00:04:59Z")), "2026-03-08");
        assert_eq!(last_final_day(at("2026-03-10T00:05:00Z")), "2026-03-09");
        assert_eq!(last_final_day(at("2026-03-10T23:59:59Z")), "2026-03-09");
    }
}
