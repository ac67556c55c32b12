//! The manager's Prometheus metrics (prefix `kruise_manager_`): plans, their duration, writes by
//! kind and result, writes still queued, rounds that failed. Labels are bounded: no object names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
    pub result: String,
}

pub struct Metrics {
    pub plans: Counter,
    pub plan_duration: Histogram,
    pub writes: Family<WriteLabels, Counter>,
    /// Writes the current round still has to send: the manager's queue depth.
    pub pending_writes: Family<KindLabels, Gauge>,
    /// Rounds that ended with a failed or conflicting write (and so plan again in 1 s).
    pub round_errors: Counter,
    pub jobs: Gauge,
    pub node_images: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            plans: Counter::default(),
            plan_duration: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            writes: Family::default(),
            pending_writes: Family::default(),
            round_errors: Counter::default(),
            jobs: Gauge::default(),
            node_images: Gauge::default(),
        };
        registry.register(
            "reconciles",
            "Planning rounds over the whole watched state",
            m.plans.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to plan (not to write)",
            m.plan_duration.clone(),
        );
        registry.register("writes", "API writes by kind and result", m.writes.clone());
        registry.register(
            "pending_writes",
            "Writes the current round has yet to send, by kind",
            m.pending_writes.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Rounds with a failed or conflicting write; they plan again after 1s",
            m.round_errors.clone(),
        );
        registry.register("imagepulljobs", "ImagePullJobs watched", m.jobs.clone());
        registry.register("nodeimages", "NodeImages watched", m.node_images.clone());
        m
    }

    /// The queue-depth gauge of `kind`, to set to a round's writes and count down as they go.
    pub fn pending(&self, kind: &str) -> Gauge {
        self.pending_writes
            .get_or_create(&KindLabels { kind: kind.into() })
            .clone()
    }

    pub fn write(&self, kind: &str, result: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    }
}
