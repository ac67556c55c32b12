//! The JSON names of core/v1's volume messages (Volume and every volume source, and the
//! PersistentVolumeClaim a StatefulSet's claim templates hold).

use crate::protobuf::json::message;
use k8s_pb::api::core::v1 as core;

message!(core::Volume {
    name => "name", volume_source => inline,
});
message!(core::LocalObjectReference {
    name => "name",
});
message!(core::PersistentVolumeClaim {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(core::VolumeSource {
    host_path => "hostPath", empty_dir => "emptyDir", gce_persistent_disk => "gcePersistentDisk",
    aws_elastic_block_store => "awsElasticBlockStore", git_repo => "gitRepo", secret => "secret",
    nfs => "nfs", iscsi => "iscsi", glusterfs => "glusterfs",
    persistent_volume_claim => "persistentVolumeClaim", rbd => "rbd", flex_volume => "flexVolume",
    cinder => "cinder", cephfs => "cephfs", flocker => "flocker", downward_api => "downwardAPI",
    fc => "fc", azure_file => "azureFile", config_map => "configMap",
    vsphere_volume => "vsphereVolume", quobyte => "quobyte", azure_disk => "azureDisk",
    photon_persistent_disk => "photonPersistentDisk", projected => "projected",
    portworx_volume => "portworxVolume", scale_io => "scaleIO", storageos => "storageos",
    csi => "csi", ephemeral => "ephemeral", image => "image",
});
message!(core::PersistentVolumeClaimSpec {
    access_modes => "accessModes", selector => "selector", resources => "resources",
    volume_name => "volumeName", storage_class_name => "storageClassName",
    volume_mode => "volumeMode", data_source => "dataSource", data_source_ref => "dataSourceRef",
    volume_attributes_class_name => "volumeAttributesClassName",
});
message!(core::PersistentVolumeClaimStatus {
    phase => "phase", access_modes => "accessModes", capacity => "capacity",
    conditions => "conditions", allocated_resources => "allocatedResources",
    allocated_resource_statuses => "allocatedResourceStatuses",
    current_volume_attributes_class_name => "currentVolumeAttributesClassName",
    modify_volume_status => "modifyVolumeStatus",
});
message!(core::HostPathVolumeSource {
    path => "path", r#type => "type",
});
message!(core::EmptyDirVolumeSource {
    medium => "medium", size_limit => "sizeLimit",
});
message!(core::GcePersistentDiskVolumeSource {
    pd_name => "pdName", fs_type => "fsType", partition => "partition", read_only => "readOnly",
});
message!(core::AwsElasticBlockStoreVolumeSource {
    volume_id => "volumeID", fs_type => "fsType", partition => "partition",
    read_only => "readOnly",
});
message!(core::GitRepoVolumeSource {
    repository => "repository", revision => "revision", directory => "directory",
});
message!(core::SecretVolumeSource {
    secret_name => "secretName", items => "items", default_mode => "defaultMode",
    optional => "optional",
});
message!(core::NfsVolumeSource {
    server => "server", path => "path", read_only => "readOnly",
});
message!(core::IscsiVolumeSource {
    target_portal => "targetPortal", iqn => "iqn", lun => "lun",
    iscsi_interface => "iscsiInterface", fs_type => "fsType", read_only => "readOnly",
    portals => "portals", chap_auth_discovery => "chapAuthDiscovery",
    chap_auth_session => "chapAuthSession", secret_ref => "secretRef",
    initiator_name => "initiatorName",
});
message!(core::GlusterfsVolumeSource {
    endpoints => "endpoints", path => "path", read_only => "readOnly",
});
message!(core::PersistentVolumeClaimVolumeSource {
    claim_name => "claimName", read_only => "readOnly",
});
message!(core::RbdVolumeSource {
    monitors => "monitors", image => "image", fs_type => "fsType", pool => "pool", user => "user",
    keyring => "keyring", secret_ref => "secretRef", read_only => "readOnly",
});
message!(core::FlexVolumeSource {
    driver => "driver", fs_type => "fsType", secret_ref => "secretRef", read_only => "readOnly",
    options => "options",
});
message!(core::CinderVolumeSource {
    volume_id => "volumeID", fs_type => "fsType", read_only => "readOnly",
    secret_ref => "secretRef",
});
message!(core::CephFsVolumeSource {
    monitors => "monitors", path => "path", user => "user", secret_file => "secretFile",
    secret_ref => "secretRef", read_only => "readOnly",
});
message!(core::FlockerVolumeSource {
    dataset_name => "datasetName", dataset_uuid => "datasetUUID",
});
message!(core::DownwardAPIVolumeSource {
    items => "items", default_mode => "defaultMode",
});
message!(core::FcVolumeSource {
    target_ww_ns => "targetWWNs", lun => "lun", fs_type => "fsType", read_only => "readOnly",
    wwids => "wwids",
});
message!(core::AzureFileVolumeSource {
    secret_name => "secretName", share_name => "shareName", read_only => "readOnly",
});
message!(core::ConfigMapVolumeSource {
    local_object_reference => inline, items => "items", default_mode => "defaultMode",
    optional => "optional",
});
message!(core::VsphereVirtualDiskVolumeSource {
    volume_path => "volumePath", fs_type => "fsType", storage_policy_name => "storagePolicyName",
    storage_policy_id => "storagePolicyID",
});
message!(core::QuobyteVolumeSource {
    registry => "registry", volume => "volume", read_only => "readOnly", user => "user",
    group => "group", tenant => "tenant",
});
message!(core::AzureDiskVolumeSource {
    disk_name => "diskName", disk_uri => "diskURI", caching_mode => "cachingMode",
    fs_type => "fsType", read_only => "readOnly", kind => "kind",
});
message!(core::PhotonPersistentDiskVolumeSource {
    pd_id => "pdID", fs_type => "fsType",
});
message!(core::ProjectedVolumeSource {
    sources => "sources", default_mode => "defaultMode",
});
message!(core::PortworxVolumeSource {
    volume_id => "volumeID", fs_type => "fsType", read_only => "readOnly",
});
message!(core::ScaleIoVolumeSource {
    gateway => "gateway", system => "system", secret_ref => "secretRef",
    ssl_enabled => "sslEnabled", protection_domain => "protectionDomain",
    storage_pool => "storagePool", storage_mode => "storageMode", volume_name => "volumeName",
    fs_type => "fsType", read_only => "readOnly",
});
message!(core::StorageOsVolumeSource {
    volume_name => "volumeName", volume_namespace => "volumeNamespace", fs_type => "fsType",
    read_only => "readOnly", secret_ref => "secretRef",
});
message!(core::CSIVolumeSource {
    driver => "driver", read_only => "readOnly", fs_type => "fsType",
    volume_attributes => "volumeAttributes", node_publish_secret_ref => "nodePublishSecretRef",
});
message!(core::EphemeralVolumeSource {
    volume_claim_template => "volumeClaimTemplate",
});
message!(core::ImageVolumeSource {
    reference => "reference", pull_policy => "pullPolicy",
});
message!(core::VolumeResourceRequirements {
    limits => "limits", requests => "requests",
});
message!(core::TypedLocalObjectReference {
    api_group => "apiGroup", kind => "kind", name => "name",
});
message!(core::TypedObjectReference {
    api_group => "apiGroup", kind => "kind", name => "name", namespace => "namespace",
});
message!(core::PersistentVolumeClaimCondition {
    r#type => "type", status => "status", last_probe_time => "lastProbeTime",
    last_transition_time => "lastTransitionTime", reason => "reason", message => "message",
});
message!(core::ModifyVolumeStatus {
    target_volume_attributes_class_name => "targetVolumeAttributesClassName", status => "status",
});
message!(core::KeyToPath {
    key => "key", path => "path", mode => "mode",
});
message!(core::DownwardAPIVolumeFile {
    path => "path", field_ref => "fieldRef", resource_field_ref => "resourceFieldRef",
    mode => "mode",
});
message!(core::VolumeProjection {
    secret => "secret", downward_api => "downwardAPI", config_map => "configMap",
    service_account_token => "serviceAccountToken", cluster_trust_bundle => "clusterTrustBundle",
    pod_certificate => "podCertificate",
});
message!(core::PersistentVolumeClaimTemplate {
    metadata => "metadata", spec => "spec",
});
message!(core::ObjectFieldSelector {
    api_version => "apiVersion", field_path => "fieldPath",
});
message!(core::ResourceFieldSelector {
    container_name => "containerName", resource => "resource", divisor => "divisor",
});
message!(core::SecretProjection {
    local_object_reference => inline, items => "items", optional => "optional",
});
message!(core::DownwardAPIProjection {
    items => "items",
});
message!(core::ConfigMapProjection {
    local_object_reference => inline, items => "items", optional => "optional",
});
message!(core::ServiceAccountTokenProjection {
    audience => "audience", expiration_seconds => "expirationSeconds", path => "path",
});
message!(core::ClusterTrustBundleProjection {
    name => "name", signer_name => "signerName", label_selector => "labelSelector",
    optional => "optional", path => "path",
});
message!(core::PodCertificateProjection {
    signer_name => "signerName", key_type => "keyType",
    max_expiration_seconds => "maxExpirationSeconds",
    credential_bundle_path => "credentialBundlePath", key_path => "keyPath",
    certificate_chain_path => "certificateChainPath", user_annotations => "userAnnotations",
});
