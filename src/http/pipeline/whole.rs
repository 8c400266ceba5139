//! The non-streamed call: one answer from the provider, read by the route, settled, rendered.

use std::time::Instant;

use axum::body::Bytes;
use axum::response::Response;

use super::admission::Admitted;
use super::{Job, Surface, metered_headers, ms};
use crate::error::ApiError;
use crate::metering::{Outcome, Status};

/// Reads the provider's whole answer (`bytes`, its headers received at `headers_at`) with
/// `surface`, settles it and renders it.
pub(super) fn respond<S: Surface>(
    job: Job,
    bytes: Bytes,
    headers_at: Instant,
    admitted: Admitted,
    surface: S,
) -> Result<Response, ApiError> {
    let (whole, usage, estimated) = surface.read_whole(&job, &bytes).inspect_err(|e| {
        tracing::warn!(request_id = %job.request_id, error = %e, "upstream answer rejected");
    })?;
    let cost = admitted.settle(Outcome::measured(
        usage,
        estimated,
        job.input_estimate,
        Status::Ok,
    ));
    let ttft_ms = ms(headers_at.duration_since(job.started));
    let model = job.model().id;
    let mut res = surface.render_whole(&job, whole, bytes, cost, ttft_ms);
    metered_headers(&mut res, &model, Some(cost));
    Ok(res)
}
