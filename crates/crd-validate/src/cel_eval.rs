//! CEL evaluation of one rule against JSON values, with Kubernetes' value mapping: objects and
//! maps are CEL maps with string keys, integers are `int`, other numbers `double`.

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Program, Value as CelValue};
use serde_json::Value;

pub fn evaluate(rule: &str, value: &Value, old: Option<&Value>) -> Result<bool, String> {
    let program = Program::compile(rule).map_err(|e| format!("compilation error: {e}"))?;
    let mut ctx = Context::default();
    ctx.add_variable_from_value("self", to_cel(value));
    if let Some(old) = old {
        ctx.add_variable_from_value("oldSelf", to_cel(old));
    }
    match program.execute(&ctx) {
        Ok(CelValue::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("rule returned {other:?}, not a bool")),
        Err(e) => Err(e.to_string()),
    }
}

fn to_cel(v: &Value) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => CelValue::Int(i),
            None => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let m: HashMap<String, CelValue> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            CelValue::Map(m.into())
        }
    }
}
