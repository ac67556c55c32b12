//! The JSON names of core/v1's messages other than a pod's (Namespace, Node, Secret, ConfigMap,
//! Event and their parts), and of metav1's ObjectMeta and LabelSelector. Listed from k8s-pb's types,
//! JSON names from the Kubernetes API (k8s-openapi's serde names).

use crate::protobuf::json::message;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;

message!(core::Namespace {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(core::Node {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(core::Pod {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(core::Secret {
    metadata => "metadata", immutable => "immutable", data => "data", string_data => "stringData",
    r#type => "type",
});
message!(core::ConfigMap {
    metadata => "metadata", immutable => "immutable", data => "data", binary_data => "binaryData",
});
message!(core::Event {
    metadata => "metadata", involved_object => "involvedObject", reason => "reason",
    message => "message", source => "source", first_timestamp => "firstTimestamp",
    last_timestamp => "lastTimestamp", count => "count", r#type => "type",
    event_time => "eventTime", series => "series", action => "action", related => "related",
    reporting_component => "reportingComponent", reporting_instance => "reportingInstance",
});
message!(core::NamespaceSpec {
    finalizers => "finalizers",
});
message!(core::NamespaceStatus {
    phase => "phase", conditions => "conditions",
});
message!(core::NodeSpec {
    pod_cidr => "podCIDR", pod_cid_rs => "podCIDRs", provider_id => "providerID",
    unschedulable => "unschedulable", taints => "taints", config_source => "configSource",
    external_id => "externalID",
});
message!(core::NodeStatus {
    capacity => "capacity", allocatable => "allocatable", phase => "phase",
    conditions => "conditions", addresses => "addresses", daemon_endpoints => "daemonEndpoints",
    node_info => "nodeInfo", images => "images", volumes_in_use => "volumesInUse",
    volumes_attached => "volumesAttached", config => "config",
    runtime_handlers => "runtimeHandlers", features => "features",
    declared_features => "declaredFeatures",
});
message!(core::ObjectReference {
    kind => "kind", namespace => "namespace", name => "name", uid => "uid",
    api_version => "apiVersion", resource_version => "resourceVersion", field_path => "fieldPath",
});
message!(core::EventSource {
    component => "component", host => "host",
});
message!(core::EventSeries {
    count => "count", last_observed_time => "lastObservedTime",
});
message!(core::NamespaceCondition {
    r#type => "type", status => "status", last_transition_time => "lastTransitionTime",
    reason => "reason", message => "message",
});
message!(core::Taint {
    key => "key", value => "value", effect => "effect", time_added => "timeAdded",
});
message!(core::NodeConfigSource {
    config_map => "configMap",
});
message!(core::NodeCondition {
    r#type => "type", status => "status", last_heartbeat_time => "lastHeartbeatTime",
    last_transition_time => "lastTransitionTime", reason => "reason", message => "message",
});
message!(core::NodeAddress {
    r#type => "type", address => "address",
});
message!(core::NodeDaemonEndpoints {
    kubelet_endpoint => "kubeletEndpoint",
});
message!(core::NodeSystemInfo {
    machine_id => "machineID", system_uuid => "systemUUID", boot_id => "bootID",
    kernel_version => "kernelVersion", os_image => "osImage",
    container_runtime_version => "containerRuntimeVersion", kubelet_version => "kubeletVersion",
    kube_proxy_version => "kubeProxyVersion", operating_system => "operatingSystem",
    architecture => "architecture", swap => "swap",
});
message!(core::ContainerImage {
    names => "names", size_bytes => "sizeBytes",
});
message!(core::AttachedVolume {
    name => "name", device_path => "devicePath",
});
message!(core::NodeConfigStatus {
    assigned => "assigned", active => "active", last_known_good => "lastKnownGood",
    error => "error",
});
message!(core::NodeRuntimeHandler {
    name => "name", features => "features",
});
message!(core::NodeFeatures {
    supplemental_groups_policy => "supplementalGroupsPolicy",
});
message!(core::ConfigMapNodeConfigSource {
    namespace => "namespace", name => "name", uid => "uid", resource_version => "resourceVersion",
    kubelet_config_key => "kubeletConfigKey",
});
message!(core::DaemonEndpoint {
    port => "Port",
});
message!(core::NodeSwapStatus {
    capacity => "capacity",
});
message!(core::NodeRuntimeHandlerFeatures {
    recursive_read_only_mounts => "recursiveReadOnlyMounts", user_namespaces => "userNamespaces",
});
message!(meta::ObjectMeta {
    name => "name", generate_name => "generateName", namespace => "namespace",
    self_link => "selfLink", uid => "uid", resource_version => "resourceVersion",
    generation => "generation", creation_timestamp => "creationTimestamp",
    deletion_timestamp => "deletionTimestamp",
    deletion_grace_period_seconds => "deletionGracePeriodSeconds", labels => "labels",
    annotations => "annotations", owner_references => "ownerReferences",
    finalizers => "finalizers", managed_fields => "managedFields",
});
message!(meta::OwnerReference {
    api_version => "apiVersion", kind => "kind", name => "name", uid => "uid",
    controller => "controller", block_owner_deletion => "blockOwnerDeletion",
});
message!(meta::ManagedFieldsEntry {
    manager => "manager", operation => "operation", api_version => "apiVersion", time => "time",
    fields_type => "fieldsType", fields_v1 => "fieldsV1", subresource => "subresource",
});
message!(meta::LabelSelector {
    match_labels => "matchLabels", match_expressions => "matchExpressions",
});
message!(meta::LabelSelectorRequirement {
    key => "key", operator => "operator", values => "values",
});
