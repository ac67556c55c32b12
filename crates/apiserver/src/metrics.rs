//! `/metrics`: `apiserver_request_total` in the Prometheus text format, with kube-apiserver's
//! labels and values (upper-case verbs, `scope` of `resource`, `namespace` or `cluster`, the
//! response code), so that tests and benchmarks count requests the same way on this server and on
//! a real one.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The labels of one request, but its code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: &'static str,
    pub dry_run: bool,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: &'static str,
}

impl Request {
    /// `verb` as the handlers name it (`get`, `create`, ...); `named` when the path names one
    /// object, `namespace` when it names a namespace.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        verb: &str,
        apply: bool,
        dry_run: bool,
        group: &str,
        version: &str,
        resource: &str,
        subresource: &str,
        named: bool,
        namespace: bool,
    ) -> Self {
        let verb = match verb {
            "get" => "GET",
            "list" => "LIST",
            "watch" => "WATCH",
            "create" => "POST",
            "update" => "PUT",
            "patch" if apply => "APPLY",
            "patch" => "PATCH",
            "delete" => "DELETE",
            "deletecollection" => "DELETECOLLECTION",
            _ => "other",
        };
        // kube-apiserver's CleanScope: a create is about one object even without a name.
        let scope = if named || verb == "POST" {
            "resource"
        } else if namespace {
            "namespace"
        } else {
            "cluster"
        };
        Self {
            verb,
            dry_run,
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            scope,
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(Request, u16), u64>>,
}

impl Metrics {
    pub fn record(&self, request: Request, code: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((request, code))
            .or_default() += 1;
    }

    /// The exposition text, labels in the order Prometheus' Go client writes them.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.\n# TYPE apiserver_request_total counter\n",
        );
        for ((r, code), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",component=\"apiserver\",dry_run=\"{}\",group=\"{}\",resource=\"{}\",scope=\"{}\",subresource=\"{}\",verb=\"{}\",version=\"{}\"}} {n}",
                if r.dry_run { "All" } else { "" },
                r.group,
                r.resource,
                r.scope,
                r.subresource,
                r.verb,
                r.version,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_with_kube_apiservers_labels() {
        let m = Metrics::default();
        let create = || {
            Request::new(
                "create",
                false,
                false,
                "apps.kruise.io",
                "v1beta1",
                "imagepulljobs",
                "",
                false,
                true,
            )
        };
        m.record(create(), 201);
        m.record(create(), 201);
        m.record(
            Request::new("list", false, false, "", "v1", "nodes", "", false, false),
            200,
        );
        let text = m.render();
        assert!(text.contains("apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"apps.kruise.io\",resource=\"imagepulljobs\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1beta1\"} 2\n"), "{text}");
        assert!(
            text.contains("resource=\"nodes\",scope=\"cluster\",subresource=\"\",verb=\"LIST\"")
        );
    }
}
