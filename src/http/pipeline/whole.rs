//! The non-streamed call: one answer from the provider, read by the route, settled, rendered.

use std::time::Instant;

use axum::response::Response;

use super::admission::Admitted;
use super::{Job, Surface, metered_headers, ms, observe_upstream};
use crate::error::ApiError;
use crate::http::AppState;
use crate::metering::{Outcome, Status};

/// Calls the provider for the whole answer and renders it with `surface`.
pub(super) async fn respond<S: Surface>(
    st: &AppState,
    mut job: Job,
    upstream_body: Vec<u8>,
    mut admitted: Admitted,
    surface: S,
) -> Result<Response, ApiError> {
    let up_started = Instant::now();
    // Failed attempts (and fail-overs) are counted by the upstream set; on a failure the
    // admission drops here and gives the whole estimate back.
    let (bytes, headers_at, served) = st.upstream.complete(&job.winner, upstream_body).await?;
    observe_upstream(st, &served.upstream, up_started, None);
    if served.fallback {
        let m = served.model_info(&job.winner);
        admitted.served_by(&m);
        job.served = Some(m);
    }
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
