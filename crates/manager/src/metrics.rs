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
pub struct QueueLabels {
    pub queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
    pub result: String,
}

pub struct Metrics {
    pub plans: Counter,
    pub plan_duration: Histogram,
    /// Watch events and write results the engine took in, by kind.
    pub inputs: Family<KindLabels, Counter>,
    /// Jobs replanned from scratch, and cells (one job on one node) looked at again.
    pub jobs_replanned: Counter,
    pub cells_refreshed: Counter,
    /// What the engine holds, by kind (nodes, nodeimages, jobs, pods, cells, tags, planned).
    pub index: Family<KindLabels, Gauge>,
    /// Time one Lease renewal took (the leader's heartbeat; it must not wait behind planning).
    pub lease_renewal: Histogram,
    pub writes: Family<WriteLabels, Counter>,
    /// Writes the current round still has to send: the manager's queue depth.
    pub pending_writes: Family<KindLabels, Gauge>,
    /// What waits in the bounded channels between tasks: `engine_inputs` (watch events and
    /// write results for the engine), `writes` (batches of writes for the writer).
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// Rounds that ended with a failed or conflicting write (and so plan again in 1 s).
    pub round_errors: Counter,
    pub jobs: Gauge,
    pub node_images: Gauge,
    /// 1 while this replica holds the leader Lease (alerts: no replica at 1 means no leader).
    pub leader: Gauge,
    /// Images in the fullest NodeImage (the CRD allows 256).
    pub fullest_node_image: Gauge,
    /// Rollout pre-download: workloads watched by kind, and what it did by result
    /// (created, deleted, marked, create_failed, delete_failed, mark_failed, invalid).
    pub predownload_workloads: Family<KindLabels, Gauge>,
    pub predownload_actions: Family<KindLabels, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            plans: Counter::default(),
            plan_duration: Histogram::new([
                0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0,
            ]),
            inputs: Family::default(),
            jobs_replanned: Counter::default(),
            cells_refreshed: Counter::default(),
            index: Family::default(),
            lease_renewal: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            writes: Family::default(),
            pending_writes: Family::default(),
            queue_depth: Family::default(),
            round_errors: Counter::default(),
            jobs: Gauge::default(),
            node_images: Gauge::default(),
            leader: Gauge::default(),
            fullest_node_image: Gauge::default(),
            predownload_workloads: Family::default(),
            predownload_actions: Family::default(),
        };
        registry.register(
            "reconciles",
            "Planning rounds (each replans only what changed since the last)",
            m.plans.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to plan a round (not to write)",
            m.plan_duration.clone(),
        );
        registry.register(
            "inputs",
            "Watch events and write results taken in, by kind",
            m.inputs.clone(),
        );
        registry.register(
            "jobs_replanned",
            "Jobs replanned from scratch (created, edited, or after a leader change)",
            m.jobs_replanned.clone(),
        );
        registry.register(
            "cells_refreshed",
            "A job's standing on a node looked at again",
            m.cells_refreshed.clone(),
        );
        registry.register(
            "engine_objects",
            "What the engine holds, by kind",
            m.index.clone(),
        );
        registry.register(
            "lease_renewal_seconds",
            "Time one leader-election Lease renewal took",
            m.lease_renewal.clone(),
        );
        registry.register("writes", "API writes by kind and result", m.writes.clone());
        registry.register(
            "pending_writes",
            "Writes the current round has yet to send, by kind",
            m.pending_writes.clone(),
        );
        registry.register(
            "queue_depth",
            "Items waiting in a bounded channel between two tasks, by queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Rounds with a failed or conflicting write; they plan again after 1s",
            m.round_errors.clone(),
        );
        registry.register("imagepulljobs", "ImagePullJobs watched", m.jobs.clone());
        registry.register("nodeimages", "NodeImages watched", m.node_images.clone());
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and plans and writes, 0 on standby",
            m.leader.clone(),
        );
        registry.register(
            "nodeimage_images_max",
            "Images listed by the fullest NodeImage; at 256 (the CRD's limit) jobs fail on that node",
            m.fullest_node_image.clone(),
        );
        registry.register(
            "predownload_workloads",
            "Workloads the rollout pre-download controller watches, by kind",
            m.predownload_workloads.clone(),
        );
        registry.register(
            "predownload_actions",
            "What rollout pre-download did, by result in the kind label (created, deleted, marked, create_failed, delete_failed, mark_failed, invalid)",
            m.predownload_actions.clone(),
        );
        m
    }

    /// Counts one input by kind.
    /// Counts one thing rollout pre-download did (`created`, `marked`, `create_failed`, …).
    pub fn predownload_action(&self, result: &str) {
        self.predownload_actions
            .get_or_create(&KindLabels {
                kind: result.into(),
            })
            .inc();
    }

    /// `depth` items wait in `queue`.
    pub fn queued(&self, queue: &'static str, depth: usize) {
        self.queue_depth
            .get_or_create(&QueueLabels { queue })
            .set(depth as i64);
    }

    pub fn input(&self, input: &crate::engine::Input) {
        use crate::engine::Input;
        let kind = match input {
            Input::Node(_) => "node",
            Input::NodeImage(_) => "nodeimage",
            Input::Job(_) => "imagepulljob",
            Input::ListJob(_) => "imagelistpulljob",
            Input::Pod(_) => "pod",
            Input::DockerConfigJson(_) | Input::DockerCfg(_) => "secret",
            Input::Copy(_) => "secret_copy",
            Input::Done(_) => "write_result",
            Input::Lead(_) => "lease",
        };
        self.inputs
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// Records a round.
    pub fn round(&self, engine: &crate::engine::Engine, took: std::time::Duration) {
        self.plans.inc();
        self.plan_duration.observe(took.as_secs_f64());
        let stats = engine.last_round;
        self.jobs_replanned.inc_by(stats.jobs_rebuilt as u64);
        self.cells_refreshed.inc_by(stats.cells_refreshed as u64);
        let sizes = engine.sizes();
        self.jobs.set(sizes.jobs as i64);
        self.node_images.set(sizes.node_images as i64);
        let fullest = engine.images.values().map(|n| n.spec.len()).max();
        self.fullest_node_image.set(fullest.unwrap_or(0) as i64);
        for (kind, n) in [
            ("node", sizes.nodes),
            ("nodeimage", sizes.node_images),
            ("imagepulljob", sizes.jobs),
            ("pod", sizes.pods),
            ("cell", sizes.cells),
            ("tag", sizes.tags),
            ("planned", sizes.planned),
            ("timer", sizes.timers),
            ("interned", sizes.interned),
        ] {
            self.index
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(n as i64);
        }
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
