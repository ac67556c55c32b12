//! The daemon's Prometheus metrics (prefix `kruise_daemon_`). Labels are bounded: results and
//! error kinds, never image names or messages.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    /// `succeeded` or `failed`.
    pub result: String,
    /// How it succeeded (`pulled`, `present`, `repulled`) or why it failed (an error kind).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// `present`, `repull_missing`, `repull_always` or `retry_failed`.
    pub result: String,
}

pub struct Metrics {
    pub pulls: Family<PullLabels, Counter>,
    pub pull_duration: Family<ResultLabels, Histogram>,
    pub in_flight: Gauge,
    pub waiting: Gauge,
    pub status_writes: Family<ResultLabels, Counter>,
    pub checks: Family<CheckLabels, Counter>,
    /// Pull workers that panicked (each failed its own tag).
    pub worker_panics: Counter,
    /// Status updates waiting for the status writer (its channel is bounded).
    pub status_queue: Gauge,
    /// 1 while the container runtime answers CRI calls, 0 while it does not.
    pub runtime_up: Gauge,
    /// CRI pull attempts by result: `succeeded` or the error kind (a round has one or more).
    pub attempts: Family<ResultLabels, Counter>,
    /// Images this daemon pinned that the runtime reports pinned, and their bytes.
    pub pinned_images: Gauge,
    pub pinned_bytes: Gauge,
    /// Tags waiting for disk space under `--image-fs-max-percent`.
    pub waiting_for_space: Gauge,
    /// Pins by outcome: `pinned` or `not_protected`.
    pub pins: Family<ResultLabels, Counter>,
    /// Bytes of finished pulls by where they came from: `registry` or `peer`.
    pub pulled_bytes: Family<SourceLabels, Counter>,
    /// Bytes copied from peers (counted as each blob is committed).
    pub peer_copied_bytes: Counter,
    /// Blob copies from peers by result: `copied`, `busy`, `refused`, `unreachable`, `failed`,
    /// `corrupt`.
    pub peer_copy_results: Family<ResultLabels, Counter>,
    /// Blob requests of peers by answer: `served`, `unauthenticated`, `forbidden`, `not_found`,
    /// `busy`, `bad_request`, `error`.
    pub peer_request_results: Family<ResultLabels, Counter>,
    /// Bytes served to peers.
    pub peer_served_bytes: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            pulls: Family::default(),
            pull_duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                ])
            }),
            in_flight: Gauge::default(),
            waiting: Gauge::default(),
            status_writes: Family::default(),
            checks: Family::default(),
            worker_panics: Counter::default(),
            status_queue: Gauge::default(),
            runtime_up: Gauge::default(),
            attempts: Family::default(),
            pinned_images: Gauge::default(),
            pinned_bytes: Gauge::default(),
            waiting_for_space: Gauge::default(),
            pins: Family::default(),
            pulled_bytes: Family::default(),
            peer_copied_bytes: Counter::default(),
            peer_copy_results: Family::default(),
            peer_request_results: Family::default(),
            peer_served_bytes: Counter::default(),
        };
        // Every result shows from the start (at 0), so rates and alerts work before the first.
        for result in [
            "copied",
            "busy",
            "refused",
            "unreachable",
            "failed",
            "corrupt",
        ] {
            m.peer_copies_at(result);
        }
        for result in [
            "served",
            "unauthenticated",
            "forbidden",
            "not_found",
            "busy",
            "bad_request",
            "error",
        ] {
            m.peer_requests_at(result);
        }
        for source in ["registry", "peer"] {
            let _ = m.pulled_bytes.get_or_create(&SourceLabels {
                source: source.into(),
            });
        }
        registry.register(
            "pulled_bytes",
            "Bytes of successful pulls by source: registry (fetched by the runtime) or peer (copied from other nodes)",
            m.pulled_bytes.clone(),
        );
        registry.register(
            "peer_copied_bytes",
            "Bytes copied from peers into the runtime's content store",
            m.peer_copied_bytes.clone(),
        );
        registry.register(
            "peer_copies",
            "Blob copies from peers by result (copied, busy, refused, unreachable, failed, corrupt)",
            m.peer_copy_results.clone(),
        );
        registry.register(
            "peer_requests",
            "Blob requests from peers by answer (served, unauthenticated, forbidden, not_found, busy, bad_request, error)",
            m.peer_request_results.clone(),
        );
        registry.register(
            "peer_served_bytes",
            "Bytes served to peers",
            m.peer_served_bytes.clone(),
        );
        registry.register(
            "pinned_images",
            "Images this daemon pinned against the kubelet's image GC that the runtime reports pinned",
            m.pinned_images.clone(),
        );
        registry.register(
            "pinned_bytes",
            "Bytes of the images counted by kruise_daemon_pinned_images",
            m.pinned_bytes.clone(),
        );
        registry.register(
            "pulls_waiting_for_space",
            "Tags waiting because the pull would take the image filesystem above --image-fs-max-percent",
            m.waiting_for_space.clone(),
        );
        registry.register(
            "pins",
            "Pins of pulled images by outcome (pinned, not_protected)",
            m.pins.clone(),
        );
        registry.register(
            "worker_panics",
            "Pull workers that panicked; each failed its tag with the panic's message",
            m.worker_panics.clone(),
        );
        registry.register(
            "queue_depth_status",
            "Status updates waiting for the NodeImage status writer",
            m.status_queue.clone(),
        );
        registry.register(
            "runtime_up",
            "1 while the container runtime answers CRI calls, 0 while it does not",
            m.runtime_up.clone(),
        );
        registry.register(
            "pulls",
            "Finished pull rounds by result and reason",
            m.pulls.clone(),
        );
        registry.register(
            "pull_duration_seconds",
            "Time from the first attempt to the result",
            m.pull_duration.clone(),
        );
        registry.register(
            "pulls_in_flight",
            "CRI pulls running now",
            m.in_flight.clone(),
        );
        registry.register(
            "pulls_waiting",
            "Tags waiting for a pull slot",
            m.waiting.clone(),
        );
        registry.register(
            "status_writes",
            "NodeImage status patches by result",
            m.status_writes.clone(),
        );
        registry.register(
            "image_checks",
            "Periodic presence checks of pulled images by result",
            m.checks.clone(),
        );
        registry.register(
            "pull_attempts",
            "CRI pull attempts by result (succeeded, or the error kind)",
            m.attempts.clone(),
        );
        m
    }

    pub fn count_attempt(&self, result: &str) {
        self.attempts
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn observe_pull(&self, result: &str, reason: &str, elapsed: Duration) {
        self.pulls
            .get_or_create(&PullLabels {
                result: result.into(),
                reason: reason.into(),
            })
            .inc();
        if !elapsed.is_zero() {
            self.pull_duration
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    pub fn count_pin(&self, result: &str) {
        self.pins
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn peer_copies(&self, result: &str) {
        self.peer_copies_at(result).inc();
    }

    fn peer_copies_at(&self, result: &str) -> Counter {
        let labels = ResultLabels {
            result: result.into(),
        };
        self.peer_copy_results.get_or_create(&labels).clone()
    }

    pub fn peer_requests(&self, result: &str) {
        self.peer_requests_at(result).inc();
    }

    fn peer_requests_at(&self, result: &str) -> Counter {
        let labels = ResultLabels {
            result: result.into(),
        };
        self.peer_request_results.get_or_create(&labels).clone()
    }

    pub fn pulled_from(&self, source: &str, bytes: u64) {
        self.pulled_bytes
            .get_or_create(&SourceLabels {
                source: source.into(),
            })
            .inc_by(bytes);
    }

    pub fn status_write(&self, result: &str) {
        self.status_writes
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }
}
