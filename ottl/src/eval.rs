//! Evaluation of parsed expressions and boolean expressions against a `View`.

use crate::ast::{Arg, BoolExpr, Expr, MathOp, PathExpr};
use crate::funcs;
use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

use crate::paths::{
    Found, Key, View, field_str, get_field, get_indexed, lookup, set_field, set_indexed,
};
use crate::value::{Value, compare, compare_str};

/// Evaluated index keys; one key (the usual case) needs no allocation, and literal
/// string keys are borrowed from the statement.
pub(crate) enum Keys<'e> {
    One([Key<'e>; 1]),
    Many(Vec<Key<'e>>),
}

impl<'e> std::ops::Deref for Keys<'e> {
    type Target = [Key<'e>];
    fn deref(&self) -> &[Key<'e>] {
        match self {
            Keys::One(k) => k,
            Keys::Many(k) => k,
        }
    }
}

fn eval_key<'e>(key: &'e Expr, view: &View<'_>) -> Result<Key<'e>, String> {
    match key {
        Expr::Lit(Value::Str(s)) => Ok(Key::Str(Cow::Borrowed(s))),
        Expr::Lit(Value::Int(i)) => Ok(Key::Int(*i)),
        _ => match eval(key, view)? {
            Value::Str(s) => Ok(Key::Str(Cow::Owned(s))),
            Value::Int(i) => Ok(Key::Int(i)),
            other => Err(format!(
                "a key must be a string or an int but got {}",
                other.type_name()
            )),
        },
    }
}

pub(crate) fn eval_keys<'e>(keys: &'e [Expr], view: &View<'_>) -> Result<Keys<'e>, String> {
    match keys {
        [one] => Ok(Keys::One([eval_key(one, view)?])),
        _ => keys
            .iter()
            .map(|k| eval_key(k, view))
            .collect::<Result<_, _>>()
            .map(Keys::Many),
    }
}

pub(crate) fn read_path(path: &PathExpr, view: &View<'_>) -> Result<Value, String> {
    if path.keys.is_empty() {
        return Ok(get_field(view, path.field));
    }
    let keys = eval_keys(&path.keys, view)?;
    get_indexed(view, path.field, &keys)
}

pub(crate) fn write_path(path: &PathExpr, view: &mut View<'_>, value: Value) -> Result<(), String> {
    if path.keys.is_empty() {
        return set_field(view, path.field, value);
    }
    let keys = eval_keys(&path.keys, view)?;
    set_indexed(view, path.field, &keys, value)
}

/// A value read for comparing or matching, borrowed from the item or the statement
/// where it can be (strings are the common case), owned otherwise.
pub(crate) enum Operand<'a> {
    Str(&'a str),
    Val(Cow<'a, Value>),
}

impl<'a> Operand<'a> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Operand::Str(s) => Some(s),
            Operand::Val(v) => match v.as_ref() {
                Value::Str(s) => Some(s),
                _ => None,
            },
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Operand::Str(s) => Value::Str(s.to_string()),
            Operand::Val(v) => v.into_owned(),
        }
    }
}

/// Evaluates `expr` as [`eval`] does, without copying strings out of the item.
pub(crate) fn operand<'a>(expr: &'a Expr, view: &'a View<'_>) -> Result<Operand<'a>, String> {
    match expr {
        Expr::Lit(Value::Str(s)) => Ok(Operand::Str(s)),
        Expr::Lit(v) => Ok(Operand::Val(Cow::Borrowed(v))),
        Expr::Path(p) if p.keys.is_empty() => Ok(match field_str(view, p.field) {
            Some(s) => Operand::Str(s),
            None => Operand::Val(Cow::Owned(get_field(view, p.field))),
        }),
        Expr::Path(p) => {
            let keys = eval_keys(&p.keys, view)?;
            Ok(match lookup(view, p.field, &keys)? {
                Found::Any(Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                })) => Operand::Str(s),
                Found::Any(any) => Operand::Val(Cow::Owned(Value::from_any_opt(any))),
                Found::Map(map) => Operand::Val(Cow::Owned(Value::Map(map.to_vec()))),
            })
        }
        other => Ok(Operand::Val(Cow::Owned(eval(other, view)?))),
    }
}

/// [`compare`] on operands: strings without copying them.
fn compare_operands(a: Operand<'_>, b: Operand<'_>, op: crate::value::CmpOp) -> bool {
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        return compare_str(x, y, op);
    }
    compare(&a.into_value(), &b.into_value(), op)
}

/// Indexes a value (converter results: `Split(x, ",")[0]`).
fn index_value(mut value: Value, keys: &[Key]) -> Result<Value, String> {
    for key in keys {
        value = match (value, key) {
            (Value::Map(m), Key::Str(k)) => crate::value::map_get(&m, k)
                .map_or(Value::Nil, |kv| Value::from_any_opt(kv.value.as_ref())),
            (Value::List(l), Key::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| l.get(i)) {
                    Some(v) => Value::from_any(v),
                    None => return Err(format!("index {i} out of bounds")),
                }
            }
            (Value::Map(_), Key::Int(_)) => {
                return Err("a map must be indexed by a string".to_string());
            }
            (Value::List(_), Key::Str(_)) => {
                return Err("a slice must be indexed by an int".to_string());
            }
            (Value::Nil, _) => Value::Nil,
            (other, _) => {
                return Err(format!(
                    "type {} does not support indexing",
                    other.type_name()
                ));
            }
        };
    }
    Ok(value)
}

pub(crate) fn eval(expr: &Expr, view: &View<'_>) -> Result<Value, String> {
    match expr {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Path(p) => read_path(p, view),
        Expr::Call(call, keys) => {
            let value = funcs::call_converter(call, view)?;
            if keys.is_empty() {
                Ok(value)
            } else {
                let keys = eval_keys(keys, view)?;
                index_value(value, &keys)
            }
        }
        Expr::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(eval(item, view)?.into_any()?);
            }
            Ok(Value::List(out))
        }
        Expr::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                crate::value::map_put(&mut out, k, eval(v, view)?.into_any()?);
            }
            Ok(Value::Map(out))
        }
        Expr::Neg(inner) => match eval(inner, view)? {
            Value::Int(i) => Ok(Value::Int(i.wrapping_neg())),
            Value::Double(d) => Ok(Value::Double(-d)),
            other => Err(format!("cannot negate a {}", other.type_name())),
        },
        Expr::Math(a, op, b) => math(eval(a, view)?, *op, eval(b, view)?),
        Expr::Name(name, _) => Err(format!("{name:?} is not a value")),
    }
}

/// Math with the Collector's rules: int with int, double with double, time and duration
/// arithmetic; mixing int and double is an error, as is dividing an int by zero.
pub(crate) fn math(a: Value, op: MathOp, b: Value) -> Result<Value, String> {
    use Value::*;
    Ok(match (a, b) {
        (Int(x), Int(y)) => Int(match op {
            MathOp::Add => x.wrapping_add(y),
            MathOp::Sub => x.wrapping_sub(y),
            MathOp::Mul => x.wrapping_mul(y),
            MathOp::Div => {
                if y == 0 {
                    return Err("attempted to divide by 0".to_string());
                }
                x.wrapping_div(y)
            }
        }),
        (Double(x), Double(y)) => Double(match op {
            MathOp::Add => x + y,
            MathOp::Sub => x - y,
            MathOp::Mul => x * y,
            MathOp::Div => x / y,
        }),
        (Time(t), Duration(d)) => match op {
            MathOp::Add => Time(t.wrapping_add(d)),
            MathOp::Sub => Time(t.wrapping_sub(d)),
            _ => return Err("only + and - apply to a time and a duration".to_string()),
        },
        (Time(t), Time(u)) => match op {
            MathOp::Sub => Duration(t.wrapping_sub(u)),
            _ => return Err("only - applies to two times".to_string()),
        },
        (Duration(x), Duration(y)) => match op {
            MathOp::Add => Duration(x.wrapping_add(y)),
            MathOp::Sub => Duration(x.wrapping_sub(y)),
            _ => return Err("only + and - apply to two durations".to_string()),
        },
        (x @ (Int(_) | Double(_)), y) => {
            return Err(format!(
                "a {} can only be combined with another {} (got {})",
                x.type_name(),
                x.type_name(),
                y.type_name()
            ));
        }
        (x, _) => return Err(format!("math is not defined on a {}", x.type_name())),
    })
}

pub(crate) fn eval_bool(expr: &BoolExpr, view: &View<'_>) -> Result<bool, String> {
    match expr {
        BoolExpr::Lit(b) => Ok(*b),
        BoolExpr::Cmp(a, op, b) => Ok(compare_operands(operand(a, view)?, operand(b, view)?, *op)),
        BoolExpr::Value(e) => match eval(e, view)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "a condition must be a bool but the converter returned {}",
                other.type_name()
            )),
        },
        BoolExpr::Not(inner) => Ok(!eval_bool(inner, view)?),
        BoolExpr::And(items) => {
            for item in items {
                if !eval_bool(item, view)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        BoolExpr::Or(items) => {
            for item in items {
                if eval_bool(item, view)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// The value of an argument that holds an expression (None when absent).
pub(crate) fn arg_value(arg: &Arg, view: &View<'_>) -> Result<Option<Value>, String> {
    match arg {
        Arg::Expr(e) => eval(e, view).map(Some),
        Arg::Absent => Ok(None),
        Arg::Str(s) => Ok(Some(Value::Str(s.clone()))),
        Arg::Int(i) => Ok(Some(Value::Int(*i))),
        Arg::Float(f) => Ok(Some(Value::Double(*f))),
        Arg::Bool(b) => Ok(Some(Value::Bool(*b))),
        Arg::StrList(_) | Arg::Regex(_) | Arg::Func(_) => {
            Err("internal: argument is not a value".to_string())
        }
    }
}
