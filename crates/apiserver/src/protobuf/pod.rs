//! The JSON names of a pod's messages in core/v1 (PodSpec, containers, probes, affinity,
//! PodStatus) other than its volumes'.

use crate::protobuf::json::message;
use k8s_pb::api::core::v1 as core;

message!(core::PodSpec {
    volumes => "volumes", init_containers => "initContainers", containers => "containers",
    ephemeral_containers => "ephemeralContainers", restart_policy => "restartPolicy",
    termination_grace_period_seconds => "terminationGracePeriodSeconds",
    active_deadline_seconds => "activeDeadlineSeconds", dns_policy => "dnsPolicy",
    node_selector => "nodeSelector", service_account_name => "serviceAccountName",
    service_account => "serviceAccount",
    automount_service_account_token => "automountServiceAccountToken", node_name => "nodeName",
    host_network => "hostNetwork", host_pid => "hostPID", host_ipc => "hostIPC",
    share_process_namespace => "shareProcessNamespace", security_context => "securityContext",
    image_pull_secrets => "imagePullSecrets", hostname => "hostname", subdomain => "subdomain",
    affinity => "affinity", scheduler_name => "schedulerName", tolerations => "tolerations",
    host_aliases => "hostAliases", priority_class_name => "priorityClassName",
    priority => "priority", dns_config => "dnsConfig", readiness_gates => "readinessGates",
    runtime_class_name => "runtimeClassName", enable_service_links => "enableServiceLinks",
    preemption_policy => "preemptionPolicy", overhead => "overhead",
    topology_spread_constraints => "topologySpreadConstraints",
    set_hostname_as_fqdn => "setHostnameAsFQDN", os => "os", host_users => "hostUsers",
    scheduling_gates => "schedulingGates", resource_claims => "resourceClaims",
    resources => "resources", hostname_override => "hostnameOverride",
    workload_ref => "workloadRef",
});
message!(core::PodStatus {
    observed_generation => "observedGeneration", phase => "phase", conditions => "conditions",
    message => "message", reason => "reason", nominated_node_name => "nominatedNodeName",
    host_ip => "hostIP", host_ips => "hostIPs", pod_ip => "podIP", pod_ips => "podIPs",
    start_time => "startTime", init_container_statuses => "initContainerStatuses",
    container_statuses => "containerStatuses", qos_class => "qosClass",
    ephemeral_container_statuses => "ephemeralContainerStatuses", resize => "resize",
    resource_claim_statuses => "resourceClaimStatuses",
    extended_resource_claim_status => "extendedResourceClaimStatus",
    allocated_resources => "allocatedResources", resources => "resources",
});
message!(core::Container {
    name => "name", image => "image", command => "command", args => "args",
    working_dir => "workingDir", ports => "ports", env_from => "envFrom", env => "env",
    resources => "resources", resize_policy => "resizePolicy", restart_policy => "restartPolicy",
    restart_policy_rules => "restartPolicyRules", volume_mounts => "volumeMounts",
    volume_devices => "volumeDevices", liveness_probe => "livenessProbe",
    readiness_probe => "readinessProbe", startup_probe => "startupProbe",
    lifecycle => "lifecycle", termination_message_path => "terminationMessagePath",
    termination_message_policy => "terminationMessagePolicy",
    image_pull_policy => "imagePullPolicy", security_context => "securityContext",
    stdin => "stdin", stdin_once => "stdinOnce", tty => "tty",
});
message!(core::EphemeralContainer {
    ephemeral_container_common => inline, target_container_name => "targetContainerName",
});
message!(core::PodSecurityContext {
    se_linux_options => "seLinuxOptions", windows_options => "windowsOptions",
    run_as_user => "runAsUser", run_as_group => "runAsGroup", run_as_non_root => "runAsNonRoot",
    supplemental_groups => "supplementalGroups",
    supplemental_groups_policy => "supplementalGroupsPolicy", fs_group => "fsGroup",
    sysctls => "sysctls", fs_group_change_policy => "fsGroupChangePolicy",
    seccomp_profile => "seccompProfile", app_armor_profile => "appArmorProfile",
    se_linux_change_policy => "seLinuxChangePolicy",
});
message!(core::Affinity {
    node_affinity => "nodeAffinity", pod_affinity => "podAffinity",
    pod_anti_affinity => "podAntiAffinity",
});
message!(core::Toleration {
    key => "key", operator => "operator", value => "value", effect => "effect",
    toleration_seconds => "tolerationSeconds",
});
message!(core::HostAlias {
    ip => "ip", hostnames => "hostnames",
});
message!(core::PodDnsConfig {
    nameservers => "nameservers", searches => "searches", options => "options",
});
message!(core::PodReadinessGate {
    condition_type => "conditionType",
});
message!(core::TopologySpreadConstraint {
    max_skew => "maxSkew", topology_key => "topologyKey",
    when_unsatisfiable => "whenUnsatisfiable", label_selector => "labelSelector",
    min_domains => "minDomains", node_affinity_policy => "nodeAffinityPolicy",
    node_taints_policy => "nodeTaintsPolicy", match_label_keys => "matchLabelKeys",
});
message!(core::PodOs {
    name => "name",
});
message!(core::PodSchedulingGate {
    name => "name",
});
message!(core::PodResourceClaim {
    name => "name", resource_claim_name => "resourceClaimName",
    resource_claim_template_name => "resourceClaimTemplateName",
});
message!(core::ResourceRequirements {
    limits => "limits", requests => "requests", claims => "claims",
});
message!(core::WorkloadReference {
    name => "name", pod_group => "podGroup", pod_group_replica_key => "podGroupReplicaKey",
});
message!(core::PodCondition {
    r#type => "type", observed_generation => "observedGeneration", status => "status",
    last_probe_time => "lastProbeTime", last_transition_time => "lastTransitionTime",
    reason => "reason", message => "message",
});
message!(core::HostIp {
    ip => "ip",
});
message!(core::PodIp {
    ip => "ip",
});
message!(core::ContainerStatus {
    name => "name", state => "state", last_state => "lastState", ready => "ready",
    restart_count => "restartCount", image => "image", image_id => "imageID",
    container_id => "containerID", started => "started",
    allocated_resources => "allocatedResources", resources => "resources",
    volume_mounts => "volumeMounts", user => "user",
    allocated_resources_status => "allocatedResourcesStatus", stop_signal => "stopSignal",
});
message!(core::PodResourceClaimStatus {
    name => "name", resource_claim_name => "resourceClaimName",
});
message!(core::PodExtendedResourceClaimStatus {
    request_mappings => "requestMappings", resource_claim_name => "resourceClaimName",
});
message!(core::PodTemplateSpec {
    metadata => "metadata", spec => "spec",
});
message!(core::ContainerPort {
    name => "name", host_port => "hostPort", container_port => "containerPort",
    protocol => "protocol", host_ip => "hostIP",
});
message!(core::EnvFromSource {
    prefix => "prefix", config_map_ref => "configMapRef", secret_ref => "secretRef",
});
message!(core::EnvVar {
    name => "name", value => "value", value_from => "valueFrom",
});
message!(core::ContainerResizePolicy {
    resource_name => "resourceName", restart_policy => "restartPolicy",
});
message!(core::ContainerRestartRule {
    action => "action", exit_codes => "exitCodes",
});
message!(core::VolumeMount {
    name => "name", read_only => "readOnly", recursive_read_only => "recursiveReadOnly",
    mount_path => "mountPath", sub_path => "subPath", mount_propagation => "mountPropagation",
    sub_path_expr => "subPathExpr",
});
message!(core::VolumeDevice {
    name => "name", device_path => "devicePath",
});
message!(core::Probe {
    handler => inline, initial_delay_seconds => "initialDelaySeconds",
    timeout_seconds => "timeoutSeconds", period_seconds => "periodSeconds",
    success_threshold => "successThreshold", failure_threshold => "failureThreshold",
    termination_grace_period_seconds => "terminationGracePeriodSeconds",
});
message!(core::Lifecycle {
    post_start => "postStart", pre_stop => "preStop", stop_signal => "stopSignal",
});
message!(core::SecurityContext {
    capabilities => "capabilities", privileged => "privileged",
    se_linux_options => "seLinuxOptions", windows_options => "windowsOptions",
    run_as_user => "runAsUser", run_as_group => "runAsGroup", run_as_non_root => "runAsNonRoot",
    read_only_root_filesystem => "readOnlyRootFilesystem",
    allow_privilege_escalation => "allowPrivilegeEscalation", proc_mount => "procMount",
    seccomp_profile => "seccompProfile", app_armor_profile => "appArmorProfile",
});
message!(core::EphemeralContainerCommon {
    name => "name", image => "image", command => "command", args => "args",
    working_dir => "workingDir", ports => "ports", env_from => "envFrom", env => "env",
    resources => "resources", resize_policy => "resizePolicy", restart_policy => "restartPolicy",
    restart_policy_rules => "restartPolicyRules", volume_mounts => "volumeMounts",
    volume_devices => "volumeDevices", liveness_probe => "livenessProbe",
    readiness_probe => "readinessProbe", startup_probe => "startupProbe",
    lifecycle => "lifecycle", termination_message_path => "terminationMessagePath",
    termination_message_policy => "terminationMessagePolicy",
    image_pull_policy => "imagePullPolicy", security_context => "securityContext",
    stdin => "stdin", stdin_once => "stdinOnce", tty => "tty",
});
message!(core::SeLinuxOptions {
    user => "user", role => "role", r#type => "type", level => "level",
});
message!(core::WindowsSecurityContextOptions {
    gmsa_credential_spec_name => "gmsaCredentialSpecName",
    gmsa_credential_spec => "gmsaCredentialSpec", run_as_user_name => "runAsUserName",
    host_process => "hostProcess",
});
message!(core::Sysctl {
    name => "name", value => "value",
});
message!(core::SeccompProfile {
    r#type => "type", localhost_profile => "localhostProfile",
});
message!(core::AppArmorProfile {
    r#type => "type", localhost_profile => "localhostProfile",
});
message!(core::NodeAffinity {

    required_during_scheduling_ignored_during_execution => "requiredDuringSchedulingIgnoredDuringExecution",
    preferred_during_scheduling_ignored_during_execution => "preferredDuringSchedulingIgnoredDuringExecution",
});
message!(core::PodAffinity {

    required_during_scheduling_ignored_during_execution => "requiredDuringSchedulingIgnoredDuringExecution",
    preferred_during_scheduling_ignored_during_execution => "preferredDuringSchedulingIgnoredDuringExecution",
});
message!(core::PodAntiAffinity {

    required_during_scheduling_ignored_during_execution => "requiredDuringSchedulingIgnoredDuringExecution",
    preferred_during_scheduling_ignored_during_execution => "preferredDuringSchedulingIgnoredDuringExecution",
});
message!(core::PodDnsConfigOption {
    name => "name", value => "value",
});
message!(core::ResourceClaim {
    name => "name", request => "request",
});
message!(core::ContainerState {
    waiting => "waiting", running => "running", terminated => "terminated",
});
message!(core::VolumeMountStatus {
    name => "name", mount_path => "mountPath", read_only => "readOnly",
    recursive_read_only => "recursiveReadOnly",
});
message!(core::ContainerUser {
    linux => "linux",
});
message!(core::ResourceStatus {
    name => "name", resources => "resources",
});
message!(core::ContainerExtendedResourceRequest {
    container_name => "containerName", resource_name => "resourceName",
    request_name => "requestName",
});
message!(core::ConfigMapEnvSource {
    local_object_reference => inline, optional => "optional",
});
message!(core::SecretEnvSource {
    local_object_reference => inline, optional => "optional",
});
message!(core::EnvVarSource {
    field_ref => "fieldRef", resource_field_ref => "resourceFieldRef",
    config_map_key_ref => "configMapKeyRef", secret_key_ref => "secretKeyRef",
    file_key_ref => "fileKeyRef",
});
message!(core::ContainerRestartRuleOnExitCodes {
    operator => "operator", values => "values",
});
message!(core::ProbeHandler {
    exec => "exec", http_get => "httpGet", tcp_socket => "tcpSocket", grpc => "grpc",
});
message!(core::LifecycleHandler {
    exec => "exec", http_get => "httpGet", tcp_socket => "tcpSocket", sleep => "sleep",
});
message!(core::Capabilities {
    add => "add", drop => "drop",
});
message!(core::NodeSelector {
    node_selector_terms => "nodeSelectorTerms",
});
message!(core::PreferredSchedulingTerm {
    weight => "weight", preference => "preference",
});
message!(core::PodAffinityTerm {
    label_selector => "labelSelector", namespaces => "namespaces", topology_key => "topologyKey",
    namespace_selector => "namespaceSelector", match_label_keys => "matchLabelKeys",
    mismatch_label_keys => "mismatchLabelKeys",
});
message!(core::WeightedPodAffinityTerm {
    weight => "weight", pod_affinity_term => "podAffinityTerm",
});
message!(core::ContainerStateWaiting {
    reason => "reason", message => "message",
});
message!(core::ContainerStateRunning {
    started_at => "startedAt",
});
message!(core::ContainerStateTerminated {
    exit_code => "exitCode", signal => "signal", reason => "reason", message => "message",
    started_at => "startedAt", finished_at => "finishedAt", container_id => "containerID",
});
message!(core::LinuxContainerUser {
    uid => "uid", gid => "gid", supplemental_groups => "supplementalGroups",
});
message!(core::ResourceHealth {
    resource_id => "resourceID", health => "health",
});
message!(core::ConfigMapKeySelector {
    local_object_reference => inline, key => "key", optional => "optional",
});
message!(core::SecretKeySelector {
    local_object_reference => inline, key => "key", optional => "optional",
});
message!(core::FileKeySelector {
    volume_name => "volumeName", path => "path", key => "key", optional => "optional",
});
message!(core::ExecAction {
    command => "command",
});
message!(core::HttpGetAction {
    path => "path", port => "port", host => "host", scheme => "scheme",
    http_headers => "httpHeaders",
});
message!(core::TcpSocketAction {
    port => "port", host => "host",
});
message!(core::GrpcAction {
    port => "port", service => "service",
});
message!(core::SleepAction {
    seconds => "seconds",
});
message!(core::NodeSelectorTerm {
    match_expressions => "matchExpressions", match_fields => "matchFields",
});
message!(core::HttpHeader {
    name => "name", value => "value",
});
message!(core::NodeSelectorRequirement {
    key => "key", operator => "operator", values => "values",
});
