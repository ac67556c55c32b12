//! The chart's Grafana dashboard and Prometheus alerts (`monitoring.*`): the dashboard is JSON
//! Grafana can load, every PromQL expression in it and in the PrometheusRule parses (with
//! `promql-parser`; promtool is in no Debian, PyPI or npm package), each alert links a runbook
//! section of the chart README, and every metric the expressions name is one the real
//! kruise-manager and kruise-daemon export, checked against their `/metrics` after a job ran.

use std::collections::BTreeSet;

use e2e::chart::{find, render, repo};
use e2e::{manifest, System};
use promql_parser::parser::{self, Expr};
use serde_json::{json, Value};

const MONITORING: &[&str] = &[
    "--set=monitoring.dashboard.enabled=true",
    "--set=monitoring.rules.enabled=true",
];

/// Every PromQL expression the chart renders, with where it is: `(panel or alert, expr)`.
fn expressions() -> Vec<(String, String)> {
    let objects = render(MONITORING);
    let mut out = Vec::new();
    for panel in dashboard(&objects)["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            out.push((format!("panel {title:?}"), expr.to_string()));
        }
    }
    for rule in alerts(&objects) {
        let name = rule["alert"].as_str().unwrap_or("?");
        let expr = rule["expr"]
            .as_str()
            .unwrap_or_else(|| panic!("alert {name}: no expr"));
        out.push((format!("alert {name}"), expr.to_string()));
    }
    out
}

/// The dashboard JSON of the rendered ConfigMap.
fn dashboard(objects: &[Value]) -> Value {
    let cm = find(objects, "ConfigMap", "kruise-prewarm-dashboard");
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"], "1",
        "the Grafana sidecar's label"
    );
    let text = cm["data"]["kruise-prewarm.json"]
        .as_str()
        .expect("the dashboard's JSON");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}"))
}

fn alerts(objects: &[Value]) -> Vec<Value> {
    let rule = find(objects, "PrometheusRule", "kruise-prewarm");
    rule["spec"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Grafana's interval variables, as Grafana substitutes them before querying.
fn parse(expr: &str) -> Result<Expr, String> {
    parser::parse(
        &expr
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m"),
    )
}

/// The metric names an expression selects.
fn metric_names(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Aggregate(a) => {
            metric_names(&a.expr, out);
            if let Some(p) = &a.param {
                metric_names(p, out);
            }
        }
        Expr::Unary(u) => metric_names(&u.expr, out),
        Expr::Binary(b) => {
            metric_names(&b.lhs, out);
            metric_names(&b.rhs, out);
        }
        Expr::Paren(p) => metric_names(&p.expr, out),
        Expr::Subquery(s) => metric_names(&s.expr, out),
        Expr::VectorSelector(v) => selector_name(v, out),
        Expr::MatrixSelector(m) => selector_name(&m.vs, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| metric_names(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector_name(v: &promql_parser::parser::VectorSelector, out: &mut BTreeSet<String>) {
    let by_matcher = v.matchers.matchers.iter().find(|m| m.name == "__name__");
    match (&v.name, by_matcher) {
        (Some(n), _) => {
            out.insert(n.clone());
        }
        (None, Some(m)) => {
            out.insert(m.value.clone());
        }
        (None, None) => panic!("a selector without a metric name: {v}"),
    }
}

/// The sample names a scrape holds or announces (`# TYPE` lines, with the suffixes Prometheus
/// stores: `_total` for counters, `_bucket`, `_sum`, `_count` for histograms).
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "counter" => out.insert(format!("{name}_total")),
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        out.insert(format!("{name}{s}"));
                    }
                    true
                }
                _ => out.insert(name.to_string()),
            };
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            out.insert(name.to_string());
        }
    }
    out
}

#[test]
fn the_dashboard_is_grafana_json_and_every_expression_parses_with_a_runbook_per_alert() {
    let objects = render(MONITORING);
    let d = dashboard(&objects);
    assert_eq!(d["uid"], "kruise-prewarm");
    assert!(d["panels"].as_array().is_some_and(|p| p.len() >= 15), "{d}");
    let mut bad = Vec::new();
    for (place, expr) in expressions() {
        if let Err(e) = parse(&expr) {
            bad.push(format!("{place}: {expr}: {e}"));
        }
    }
    assert!(
        bad.is_empty(),
        "PromQL that does not parse:\n{}",
        bad.join("\n")
    );
    let readme = std::fs::read_to_string(repo().join("charts/kruise/README.md")).unwrap();
    for rule in alerts(&objects) {
        let name = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        assert!(
            url.ends_with(&format!("#{}", name.to_lowercase())),
            "{name}: {url}"
        );
        assert!(
            readme.contains(&format!("### {name}\n")),
            "no runbook section `### {name}` in charts/kruise/README.md"
        );
    }
    // Off by default: neither object without the values.
    let defaults = render(&[]);
    assert!(!defaults
        .iter()
        .any(|o| o["kind"] == "PrometheusRule" || o["kind"] == "ConfigMap"));
}

#[tokio::test]
async fn dashboard_and_alerts_name_only_metrics_the_binaries_export() {
    let mut env = System::start().await;
    let img = env.push("monitoring/app", 193);
    env.add_node("metrics", json!({})).await;
    env.apply_job(manifest("v1beta1", "m", &img.reference, json!({})))
        .await;
    env.wait_job("m", "completed", |s| s.completion_time.is_some())
        .await;
    let manager = env
        .manager
        .as_ref()
        .expect("the manager runs")
        .metrics()
        .await;
    let daemon = env.daemons[0].metrics().await;
    let mut have = exported(&manager);
    have.extend(exported(&daemon));
    assert!(have.contains("kruise_manager_leader"), "{manager}");
    let mut unknown = Vec::new();
    for (place, expr) in expressions() {
        let mut names = BTreeSet::new();
        metric_names(&parse(&expr).expect("parses"), &mut names);
        assert!(!names.is_empty(), "{place} names no metric: {expr}");
        unknown.extend(
            names
                .into_iter()
                .filter(|n| !have.contains(n))
                .map(|n| format!("{place}: {n}")),
        );
    }
    assert!(
        unknown.is_empty(),
        "metrics neither binary exports:\n{}\n\nexported: {have:?}",
        unknown.join("\n")
    );
}
