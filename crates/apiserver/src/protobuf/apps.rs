//! The JSON names of apps/v1's messages (Deployment, ReplicaSet, StatefulSet, DaemonSet,
//! ControllerRevision), coordination/v1's Lease and events.k8s.io/v1's Event.

use crate::protobuf::json::message;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::events::v1 as events;

message!(apps::Deployment {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(apps::StatefulSet {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(apps::DaemonSet {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(apps::ReplicaSet {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(apps::ControllerRevision {
    metadata => "metadata", data => "data", revision => "revision",
});
message!(apps::DeploymentSpec {
    replicas => "replicas", selector => "selector", template => "template",
    strategy => "strategy", min_ready_seconds => "minReadySeconds",
    revision_history_limit => "revisionHistoryLimit", paused => "paused",
    progress_deadline_seconds => "progressDeadlineSeconds",
});
message!(apps::DeploymentStatus {
    observed_generation => "observedGeneration", replicas => "replicas",
    updated_replicas => "updatedReplicas", ready_replicas => "readyReplicas",
    available_replicas => "availableReplicas", unavailable_replicas => "unavailableReplicas",
    terminating_replicas => "terminatingReplicas", conditions => "conditions",
    collision_count => "collisionCount",
});
message!(apps::StatefulSetSpec {
    replicas => "replicas", selector => "selector", template => "template",
    volume_claim_templates => "volumeClaimTemplates", service_name => "serviceName",
    pod_management_policy => "podManagementPolicy", update_strategy => "updateStrategy",
    revision_history_limit => "revisionHistoryLimit", min_ready_seconds => "minReadySeconds",
    persistent_volume_claim_retention_policy => "persistentVolumeClaimRetentionPolicy",
    ordinals => "ordinals",
});
message!(apps::StatefulSetStatus {
    observed_generation => "observedGeneration", replicas => "replicas",
    ready_replicas => "readyReplicas", current_replicas => "currentReplicas",
    updated_replicas => "updatedReplicas", current_revision => "currentRevision",
    update_revision => "updateRevision", collision_count => "collisionCount",
    conditions => "conditions", available_replicas => "availableReplicas",
});
message!(apps::DaemonSetSpec {
    selector => "selector", template => "template", update_strategy => "updateStrategy",
    min_ready_seconds => "minReadySeconds", revision_history_limit => "revisionHistoryLimit",
});
message!(apps::DaemonSetStatus {
    current_number_scheduled => "currentNumberScheduled",
    number_misscheduled => "numberMisscheduled",
    desired_number_scheduled => "desiredNumberScheduled", number_ready => "numberReady",
    observed_generation => "observedGeneration",
    updated_number_scheduled => "updatedNumberScheduled", number_available => "numberAvailable",
    number_unavailable => "numberUnavailable", collision_count => "collisionCount",
    conditions => "conditions",
});
message!(apps::ReplicaSetSpec {
    replicas => "replicas", min_ready_seconds => "minReadySeconds", selector => "selector",
    template => "template",
});
message!(apps::ReplicaSetStatus {
    replicas => "replicas", fully_labeled_replicas => "fullyLabeledReplicas",
    ready_replicas => "readyReplicas", available_replicas => "availableReplicas",
    terminating_replicas => "terminatingReplicas", observed_generation => "observedGeneration",
    conditions => "conditions",
});
message!(apps::DeploymentStrategy {
    r#type => "type", rolling_update => "rollingUpdate",
});
message!(apps::DeploymentCondition {
    r#type => "type", status => "status", last_update_time => "lastUpdateTime",
    last_transition_time => "lastTransitionTime", reason => "reason", message => "message",
});
message!(apps::StatefulSetUpdateStrategy {
    r#type => "type", rolling_update => "rollingUpdate",
});
message!(apps::StatefulSetPersistentVolumeClaimRetentionPolicy {
    when_deleted => "whenDeleted", when_scaled => "whenScaled",
});
message!(apps::StatefulSetOrdinals {
    start => "start",
});
message!(apps::StatefulSetCondition {
    r#type => "type", status => "status", last_transition_time => "lastTransitionTime",
    reason => "reason", message => "message",
});
message!(apps::DaemonSetUpdateStrategy {
    r#type => "type", rolling_update => "rollingUpdate",
});
message!(apps::DaemonSetCondition {
    r#type => "type", status => "status", last_transition_time => "lastTransitionTime",
    reason => "reason", message => "message",
});
message!(apps::ReplicaSetCondition {
    r#type => "type", status => "status", last_transition_time => "lastTransitionTime",
    reason => "reason", message => "message",
});
message!(apps::RollingUpdateDeployment {
    max_unavailable => "maxUnavailable", max_surge => "maxSurge",
});
message!(apps::RollingUpdateStatefulSetStrategy {
    partition => "partition", max_unavailable => "maxUnavailable",
});
message!(apps::RollingUpdateDaemonSet {
    max_unavailable => "maxUnavailable", max_surge => "maxSurge",
});
message!(coordination::Lease {
    metadata => "metadata", spec => "spec",
});
message!(coordination::LeaseSpec {
    holder_identity => "holderIdentity", lease_duration_seconds => "leaseDurationSeconds",
    acquire_time => "acquireTime", renew_time => "renewTime",
    lease_transitions => "leaseTransitions", strategy => "strategy",
    preferred_holder => "preferredHolder",
});
message!(events::Event {
    metadata => "metadata", event_time => "eventTime", series => "series",
    reporting_controller => "reportingController", reporting_instance => "reportingInstance",
    action => "action", reason => "reason", regarding => "regarding", related => "related",
    note => "note", r#type => "type", deprecated_source => "deprecatedSource",
    deprecated_first_timestamp => "deprecatedFirstTimestamp",
    deprecated_last_timestamp => "deprecatedLastTimestamp", deprecated_count => "deprecatedCount",
});
message!(events::EventSeries {
    count => "count", last_observed_time => "lastObservedTime",
});
