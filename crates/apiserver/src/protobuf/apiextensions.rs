//! The JSON names of apiextensions/v1's messages (CustomResourceDefinition and its schema).

use crate::protobuf::json::message;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;

message!(apiextensions::CustomResourceDefinition {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(apiextensions::CustomResourceDefinitionSpec {
    group => "group", names => "names", scope => "scope", versions => "versions",
    conversion => "conversion", preserve_unknown_fields => "preserveUnknownFields",
});
message!(apiextensions::CustomResourceDefinitionStatus {
    conditions => "conditions", accepted_names => "acceptedNames",
    stored_versions => "storedVersions", observed_generation => "observedGeneration",
});
message!(apiextensions::CustomResourceDefinitionNames {
    plural => "plural", singular => "singular", short_names => "shortNames", kind => "kind",
    list_kind => "listKind", categories => "categories",
});
message!(apiextensions::CustomResourceDefinitionVersion {
    name => "name", served => "served", storage => "storage", deprecated => "deprecated",
    deprecation_warning => "deprecationWarning", schema => "schema",
    subresources => "subresources", additional_printer_columns => "additionalPrinterColumns",
    selectable_fields => "selectableFields",
});
message!(apiextensions::CustomResourceConversion {
    strategy => "strategy", webhook => "webhook",
});
message!(apiextensions::CustomResourceDefinitionCondition {
    r#type => "type", status => "status", last_transition_time => "lastTransitionTime",
    reason => "reason", message => "message", observed_generation => "observedGeneration",
});
message!(apiextensions::CustomResourceValidation {
    open_apiv3_schema => "openAPIV3Schema",
});
message!(apiextensions::CustomResourceSubresources {
    status => "status", scale => "scale",
});
message!(apiextensions::CustomResourceColumnDefinition {
    name => "name", r#type => "type", format => "format", description => "description",
    priority => "priority", json_path => "jsonPath",
});
message!(apiextensions::SelectableField {
    json_path => "jsonPath",
});
message!(apiextensions::WebhookConversion {
    client_config => "clientConfig", conversion_review_versions => "conversionReviewVersions",
});
message!(apiextensions::JsonSchemaProps {
    id => "id", schema => "$schema", r#ref => "$ref", description => "description",
    r#type => "type", format => "format", title => "title", default => "default",
    maximum => "maximum", exclusive_maximum => "exclusiveMaximum", minimum => "minimum",
    exclusive_minimum => "exclusiveMinimum", max_length => "maxLength", min_length => "minLength",
    pattern => "pattern", max_items => "maxItems", min_items => "minItems",
    unique_items => "uniqueItems", multiple_of => "multipleOf", r#enum => "enum",
    max_properties => "maxProperties", min_properties => "minProperties", required => "required",
    items => "items", all_of => "allOf", one_of => "oneOf", any_of => "anyOf", not => "not",
    properties => "properties", additional_properties => "additionalProperties",
    pattern_properties => "patternProperties", dependencies => "dependencies",
    additional_items => "additionalItems", definitions => "definitions",
    external_docs => "externalDocs", example => "example", nullable => "nullable",
    x_kubernetes_preserve_unknown_fields => "x-kubernetes-preserve-unknown-fields",
    x_kubernetes_embedded_resource => "x-kubernetes-embedded-resource",
    x_kubernetes_int_or_string => "x-kubernetes-int-or-string",
    x_kubernetes_list_map_keys => "x-kubernetes-list-map-keys",
    x_kubernetes_list_type => "x-kubernetes-list-type",
    x_kubernetes_map_type => "x-kubernetes-map-type",
    x_kubernetes_validations => "x-kubernetes-validations",
});
message!(apiextensions::CustomResourceSubresourceStatus {});
message!(apiextensions::CustomResourceSubresourceScale {
    spec_replicas_path => "specReplicasPath", status_replicas_path => "statusReplicasPath",
    label_selector_path => "labelSelectorPath",
});
message!(apiextensions::WebhookClientConfig {
    url => "url", service => "service", ca_bundle => "caBundle",
});
message!(apiextensions::ExternalDocumentation {
    description => "description", url => "url",
});
message!(apiextensions::ValidationRule {
    rule => "rule", message => "message", message_expression => "messageExpression",
    reason => "reason", field_path => "fieldPath", optional_old_self => "optionalOldSelf",
});
message!(apiextensions::ServiceReference {
    namespace => "namespace", name => "name", path => "path", port => "port",
});
