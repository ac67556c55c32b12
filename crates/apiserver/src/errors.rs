//! API errors as kube-apiserver returns them: a `metav1.Status` body with code, reason, message
//! and, for invalid objects, one cause per field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kruise_crd_validate::FieldError;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn not_found(resource: &str, name: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"));
        e.details = Some(json!({"name": name, "kind": resource}));
        e
    }
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }
    pub fn already_exists(resource: &str, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        );
        e.details = Some(json!({"name": name, "kind": resource}));
        e
    }
    pub fn conflict(resource: &str, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        );
        e.details = Some(json!({"name": name, "kind": resource}));
        e
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }
    /// 504, as a watch cache answers a read of a resourceVersion it has not reached.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, "TooManyRequests", message)
    }

    /// 422 with one cause per field error; `kind_group` is e.g. `NodeImage.apps.kruise.io`.
    pub fn invalid(
        kind_group: &str,
        kind: &str,
        group: &str,
        name: &str,
        errors: &[FieldError],
    ) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.to_string().split_once(": ").map(|(_, m)| m.to_string()).unwrap_or_default(), "field": e.field}))
            .collect();
        let mut err = Self::new(
            422,
            "Invalid",
            kruise_crd_validate::invalid_message(kind_group, name, errors),
        );
        // Empty strings are left out, as Go's `omitempty` leaves them out.
        let mut details = json!({"causes": causes});
        for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
            if !value.is_empty() {
                details[key] = json!(value);
            }
        }
        err.details = Some(details);
        err
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, axum::Json(self.to_status())).into_response();
        // kube-apiserver sends `Retry-After` for 429, and for any error saying when to retry.
        let retry_after = self
            .details
            .as_ref()
            .and_then(|d| d["retryAfterSeconds"].as_u64());
        if self.code == 429 || retry_after.is_some() {
            let seconds = retry_after.unwrap_or(1).to_string();
            if let Ok(v) = axum::http::HeaderValue::from_str(&seconds) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}
