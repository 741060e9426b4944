//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format, unauthenticated like
//! `/healthz` (an operator keeps it off the public network). What is read at each scrape:
//! runs by tenant and state and the queue depth per tenant (from the store), steps in
//! flight per tenant and the engine's counters (step durations, fuel, errors and limit hits
//! by kind), and the API's requests by status class.
//!
//! Tenants are labels: their number is the operator's to bound, and no label comes from a
//! request (a path or a body), so a client cannot make the series grow.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use coda_flow::{MetricsSnapshot, STEP_DURATION_BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{ApiError, AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Requests answered, by status class (1xx … 5xx).
#[derive(Debug, Default)]
pub(crate) struct HttpCounts {
    by_class: [AtomicU64; 5],
}

impl HttpCounts {
    fn count(&self, status: StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.by_class[i].load(Ordering::Relaxed))
    }
}

/// Counts every response by its status class.
pub(crate) async fn count_request(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    state.inner.http.count(response.status());
    response
}

/// One scrape's figures, read before encoding.
#[derive(Debug)]
struct Scrape {
    runs: Vec<(String, String, u64)>,
    queue: Vec<(String, u64)>,
    in_flight: Vec<(String, usize)>,
    engine: MetricsSnapshot,
    writes: coda_store::WriteStats,
    http: [u64; 5],
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text (Prometheus reads it)", body = String, content_type = "application/openmetrics-text")))]
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine();
    let scrape = Scrape {
        runs: state.store().runs_by_state()?,
        queue: state.store().queue_depths(coda_types::time::now_ms())?,
        in_flight: engine.steps_in_flight(),
        engine: engine.metrics(),
        writes: state.store().write_stats(),
        http: state.inner.http.get(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn gauge(value: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut runs = encoder.encode_descriptor(
            "coda_runs",
            "Runs by tenant and state (ready, parked, waiting, done, failed, cancelled)",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, state, count) in &self.runs {
            let labels = [("tenant", tenant.as_str()), ("state", state.as_str())];
            gauge(*count).encode(runs.encode_family(&labels)?)?;
        }

        let mut queue = encoder.encode_descriptor(
            "coda_queue_depth",
            "Due runs waiting for a step, by tenant",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, count) in &self.queue {
            gauge(*count).encode(queue.encode_family(&[("tenant", tenant.as_str())])?)?;
        }

        let mut in_flight = encoder.encode_descriptor(
            "coda_steps_in_flight",
            "Steps running now, by tenant",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, count) in &self.in_flight {
            gauge(*count as u64)
                .encode(in_flight.encode_family(&[("tenant", tenant.as_str())])?)?;
        }

        let e = &self.engine;
        for (name, help, value) in [
            ("coda_steps", "Steps committed", e.steps),
            (
                "coda_invocations",
                "Steps that ran an applet",
                e.invocations,
            ),
            ("coda_fuel_used", "Fuel used by applets", e.fuel_used),
            (
                "coda_scheduler_picks",
                "Times the scheduler read the queue and claimed due runs",
                e.picks,
            ),
            (
                "coda_steps_continued",
                "Steps run under the claim of their run's previous step, without a pick",
                e.continued,
            ),
            (
                "coda_store_commits",
                "Transactions the store's writer committed (group commits)",
                self.writes.batches,
            ),
            (
                "coda_store_writes",
                "Writes folded into the store's transactions",
                self.writes.writes,
            ),
            (
                "coda_store_write_round_trips",
                "Round trips of the store's writer to PostgreSQL (0 on SQLite)",
                self.writes.write_round_trips,
            ),
            (
                "coda_store_read_round_trips",
                "Round trips of the store's reads to PostgreSQL (0 on SQLite)",
                self.writes.read_round_trips,
            ),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }

        // prometheus-client takes each bucket's own count and adds them up as it writes.
        let buckets: Vec<(f64, u64)> = STEP_DURATION_BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(e.duration_buckets.iter().copied())
            .collect();
        let count = e.duration_buckets.iter().sum();
        encoder
            .encode_descriptor(
                "coda_step_duration_seconds",
                "How long applets ran, per step",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(e.duration_sum_secs, count, &buckets, None)?;

        for (name, help, by_kind) in [
            (
                "coda_step_errors",
                "Steps that ended in an error, by kind",
                &e.errors,
            ),
            (
                "coda_limit_hits",
                "Steps a sandbox limit ended, by limit (fuel, memory, deadline, ...)",
                &e.limit_hits,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (kind, value) in by_kind {
                ConstCounter::new(*value)
                    .encode(family.encode_family(&[("kind", kind.as_str())])?)?;
            }
        }

        let mut http = encoder.encode_descriptor(
            "coda_http_requests",
            "API requests answered, by status class",
            None,
            MetricType::Counter,
        )?;
        for (i, value) in self.http.iter().enumerate() {
            let class = ["1xx", "2xx", "3xx", "4xx", "5xx"][i];
            ConstCounter::new(*value).encode(http.encode_family(&[("class", class)])?)?;
        }
        Ok(())
    }
}
