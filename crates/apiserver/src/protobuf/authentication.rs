//! The JSON names of authentication/v1's messages (TokenRequest, which `kubectl create token`
//! sends to a ServiceAccount's `/token`, and TokenReview) and of core/v1's ServiceAccount.

use crate::protobuf::json::{message, ToJson};
use k8s_pb::api::authentication::v1 as authentication;
use k8s_pb::api::core::v1 as core;
use serde_json::{json, Value};

message!(core::ServiceAccount {
    metadata => "metadata", secrets => "secrets", image_pull_secrets => "imagePullSecrets",
    automount_service_account_token => "automountServiceAccountToken",
});
message!(authentication::TokenRequest {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(authentication::TokenRequestSpec {
    audiences => "audiences", expiration_seconds => "expirationSeconds",
    bound_object_ref => "boundObjectRef",
});
message!(authentication::TokenRequestStatus {
    token => "token", expiration_timestamp => "expirationTimestamp",
});
message!(authentication::BoundObjectReference {
    kind => "kind", api_version => "apiVersion", name => "name", u_id => "uid",
});
message!(authentication::TokenReview {
    metadata => "metadata", spec => "spec", status => "status",
});
message!(authentication::TokenReviewSpec {
    token => "token", audiences => "audiences",
});
message!(authentication::TokenReviewStatus {
    authenticated => "authenticated", user => "user", audiences => "audiences", error => "error",
});
message!(authentication::UserInfo {
    username => "username", uid => "uid", groups => "groups", extra => "extra",
});

/// `ExtraValue`: a list of strings in JSON, not a message.
impl ToJson for authentication::ExtraValue {
    fn to_json(&self) -> Option<Value> {
        Some(json!(self.items))
    }
}
