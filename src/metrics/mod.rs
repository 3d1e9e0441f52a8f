//! The metrics endpoint (`ferry serve --metrics-listen HOST:PORT`, `ferry.metrics.listen`;
//! off by default): Prometheus text on `GET /metrics`. This module owns the endpoint: the
//! registry with the broker's collector (`collector.rs`, which decides what is exported)
//! and the HTTP server (`http.rs`, which decides how much a client may ask of it). The
//! server binds the address before recovery (so a taken port stops startup at once) and
//! stops the endpoint at shutdown (`server.rs`).
//!
//! Depends downward only: it reads counters the broker, the network layer, the group
//! coordinator and storage keep anyway; nothing there knows it exists, and with the
//! endpoint off nothing reads them.

pub mod collector;
pub mod http;

use std::sync::Arc;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::network::NetworkStats;
use collector::BrokerCollector;

/// The registry's metrics in the Prometheus text format (version 0.0.4).
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// Serves the broker's metrics on `listener` until `stopped` fires.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    network: Arc<NetworkStats>,
    mirror: std::sync::Weak<crate::mirror::Mirror>,
    stopped: watch::Receiver<bool>,
) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BrokerCollector::new(broker, network)));
    registry.register_collector(Box::new(crate::mirror::metrics::MirrorCollector(mirror)));
    let render_metrics: http::Render = Arc::new(move || render(&registry));
    http::run(listener, render_metrics, stopped).await;
}
