//! Label selectors of ImagePullJob (`selector`, `podSelector`) as predicates over labels.

use std::collections::BTreeMap;

use kruise_api::{LabelSelectorOperator, LabelSelectorRequirement};

/// A predicate for `matchLabels` and `matchExpressions` together (both must hold).
pub fn matcher<'a>(
    match_labels: &'a Option<BTreeMap<String, String>>,
    match_expressions: &'a Option<Vec<LabelSelectorRequirement>>,
) -> impl Fn(&BTreeMap<String, String>) -> bool + 'a {
    move |labels| {
        match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
            && match_expressions.iter().flatten().all(|e| {
                let values = e.values.as_deref().unwrap_or_default();
                let got = labels.get(&e.key);
                match e.operator {
                    LabelSelectorOperator::In => got.is_some_and(|v| values.contains(v)),
                    LabelSelectorOperator::NotIn => got.is_none_or(|v| !values.contains(v)),
                    LabelSelectorOperator::Exists => got.is_some(),
                    LabelSelectorOperator::DoesNotExist => got.is_none(),
                }
            })
    }
}
