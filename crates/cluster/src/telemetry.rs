//! Prometheus telemetry shared by the services: `/metrics` over HTTP (text
//! exposition format; `promtool check metrics` passes on it), the process
//! collector, and the spike exchange's own metrics.

use anyhow::{Context as _, Result};
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder};
use std::net::SocketAddr;

/// Latency buckets for per-epoch figures: 10 µs to 1 s.
pub const EPOCH_BUCKETS: &[f64] =
    &[1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0];

/// Metrics of the node-to-node spike exchange (the transport's own).
#[derive(Clone)]
pub struct ExchangeMetrics {
    /// Wall time of one epoch's exchange call, including waiting for peers.
    pub epoch_exchange: Histogram,
    /// Time spent waiting for the peers' messages of an epoch.
    pub exchange_wait: Histogram,
    /// Bytes of epoch messages, by direction (sent, received).
    pub exchange_bytes: IntCounterVec,
    /// Exchange streams this node opened to peers, by transport (tcp, unix).
    pub exchange_streams: IntCounterVec,
}

impl ExchangeMetrics {
    /// The exchange metrics, not yet in any registry.
    pub fn new() -> Result<ExchangeMetrics> {
        Ok(ExchangeMetrics {
            epoch_exchange: Histogram::with_opts(
                HistogramOpts::new(
                    "epoch_exchange_duration_seconds",
                    "Wall time from sending an epoch's spikes to having every peer's (Poisson draws overlap it)",
                )
                .buckets(EPOCH_BUCKETS.to_vec()),
            )?,
            exchange_wait: Histogram::with_opts(
                HistogramOpts::new("exchange_wait_seconds", "Time waiting for the peers' messages of an epoch")
                    .buckets(EPOCH_BUCKETS.to_vec()),
            )?,
            exchange_bytes: IntCounterVec::new(
                Opts::new("exchange_bytes_total", "Bytes of epoch messages exchanged with peers"),
                &["direction"],
            )?,
            exchange_streams: IntCounterVec::new(
                Opts::new("exchange_streams_opened_total", "Spike exchange streams this node opened, by transport"),
                &["transport"],
            )?,
        })
    }

    /// Register them in `r`.
    pub fn register(&self, r: &Registry) -> Result<()> {
        r.register(Box::new(self.epoch_exchange.clone()))?;
        r.register(Box::new(self.exchange_wait.clone()))?;
        r.register(Box::new(self.exchange_bytes.clone()))?;
        r.register(Box::new(self.exchange_streams.clone()))?;
        Ok(())
    }
}

/// The process collector (CPU, memory, file descriptors) in `r`, on Linux.
pub fn register_process(r: &Registry) {
    #[cfg(target_os = "linux")]
    {
        let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = r;
}

/// The text exposition of a registry.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Serve `/metrics` (and `/healthz`) on `addr` in the background; returns the bound
/// address (port 0 picks a free one).
pub async fn serve(addr: SocketAddr, registry: Registry) -> Result<SocketAddr> {
    use axum::routing::get;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics {addr}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        render(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}
