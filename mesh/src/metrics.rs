//! Transport counters, exported by the agent in Prometheus format.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label set with one label.
pub type Labels = Vec<(String, String)>;

/// The mesh's counters. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Messages sent, by kind.
    pub messages_sent: Family<Labels, Counter>,
    /// Messages received and delivered to the node, by kind.
    pub messages_received: Family<Labels, Counter>,
    /// Messages dropped, by reason (`malformed`, `unsupported_version`, `unauthenticated`,
    /// `unreachable`, `queue_full`, `send_failed`).
    pub messages_dropped: Family<Labels, Counter>,
    /// Payload bytes sent in messages.
    pub bytes_sent: Counter,
    /// Payload bytes received in messages.
    pub bytes_received: Counter,
    /// Peers that failed to prove the cluster secret.
    pub auth_failures: Counter,
    /// Peers currently connected and authenticated.
    pub peers_authenticated: Gauge,
}

pub(crate) fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

impl Metrics {
    /// Registers every metric under the `liquid_mesh_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("liquid_mesh");
        r.register("messages_sent", "Messages sent, by kind", self.messages_sent.clone());
        r.register("messages_received", "Messages received, by kind", self.messages_received.clone());
        r.register("messages_dropped", "Messages dropped, by reason", self.messages_dropped.clone());
        r.register("bytes_sent", "Message payload bytes sent", self.bytes_sent.clone());
        r.register("bytes_received", "Message payload bytes received", self.bytes_received.clone());
        r.register("auth_failures", "Peers refused for lacking the cluster secret", self.auth_failures.clone());
        r.register("peers_authenticated", "Peers connected and authenticated", self.peers_authenticated.clone());
    }

    pub(crate) fn dropped(&self, reason: &str) {
        self.messages_dropped.get_or_create(&label("reason", reason)).inc();
    }
}
