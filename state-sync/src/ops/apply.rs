//! Applying one [`Op`] inside an open automerge transaction.
//!
//! Walking a path: every segment but the last names a map key or a list index inside a map
//! or list; the last segment names the *slot* the operation acts on. `set`, `inc` and
//! `insert` create missing maps on the way; the others require the path to exist.

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ObjType, Prop, ROOT, ScalarValue, Value};
use serde_json::Value as Json;

use super::{COUNTER_ABS_MAX, INC_ABS_MAX, Op, OpError, VALUE_DEPTH_MAX};
use crate::object::{Path, segment_index};

/// What an operation created because its path was missing (as opposed to what it wrote).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Made {
    /// A map on the way to a deeper path.
    Map,
    /// The list an `insert` needed.
    List,
    /// The counter an `inc` needed.
    Counter,
}

/// A container created at a missing path, recorded so [`crate::doc::Document::apply`] can
/// replace the creation by one every replica makes identically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Created {
    /// Where.
    pub path: Path,
    /// What.
    pub made: Made,
}

/// Applies `op` to `tx`, recording in `created` every container it creates at a missing
/// path. On error the caller rolls the whole transaction back.
pub(crate) fn apply<T: Transactable>(tx: &mut T, op: &Op, created: &mut Vec<Created>) -> Result<(), OpError> {
    match op {
        Op::Set { path, value, text } => {
            let (parent, prop) = slot(tx, path, true, created)?;
            match get(tx, &parent, &prop, path)? {
                Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Counter(_)) => {
                    return Err(OpError::SetOnCounter { path: path.clone() });
                }
                None if is_index(&prop) => return Err(out_of_range(tx, &parent, &prop, path)),
                _ => {}
            }
            if *text {
                let Json::String(s) = value else {
                    let reason = "\"text\": true needs a string value".to_owned();
                    return Err(OpError::InvalidValue { path: path.clone(), reason });
                };
                let id = tx.put_object(&parent, prop, ObjType::Text).map_err(am(path))?;
                tx.splice_text(&id, 0, 0, s).map_err(am(path))
            } else {
                write(tx, Place::Put(parent, prop), value, path, 0)
            }
        }
        Op::Del { path } => {
            let (parent, prop) = slot(tx, path, false, created)?;
            match get(tx, &parent, &prop, path)? {
                Some(_) => tx.delete(&parent, prop).map_err(am(path)),
                None if is_index(&prop) => Err(out_of_range(tx, &parent, &prop, path)),
                None => Err(OpError::NotFound { path: path.clone() }),
            }
        }
        Op::Inc { path, by } => {
            if by.unsigned_abs() > INC_ABS_MAX {
                let reason =
                    format!("an increment is at most ±{INC_ABS_MAX} (2^53), so counters stay exact in JavaScript");
                return Err(OpError::InvalidValue { path: path.clone(), reason });
            }
            let (parent, prop) = slot(tx, path, true, created)?;
            // Fast path: try the increment first; it fails without a trace on anything but a
            // counter, and the slow path below finds out what is there.
            if tx.increment(&parent, prop.clone(), *by).is_ok() {
                return counter_in_range(tx, &parent, &prop, path, *by);
            }
            match get(tx, &parent, &prop, path)? {
                Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Counter(_)) => {
                    tx.increment(&parent, prop.clone(), *by).map_err(am(path))?;
                    counter_in_range(tx, &parent, &prop, path, *by)
                }
                Some((v, _)) => Err(OpError::NotACounter { path: path.clone(), found: kind(&v) }),
                None if is_index(&prop) => Err(out_of_range(tx, &parent, &prop, path)),
                None => {
                    created.push(Created { path: path.clone(), made: Made::Counter });
                    tx.put(&parent, prop, ScalarValue::counter(*by)).map_err(am(path))
                }
            }
        }
        Op::Insert { path, index, value } => {
            let (parent, prop) = slot(tx, path, true, created)?;
            let list = match get(tx, &parent, &prop, path)? {
                Some((Value::Object(ObjType::List), id)) => id,
                Some((v, _)) => return Err(OpError::NotAList { path: path.clone(), found: kind(&v) }),
                None if is_index(&prop) => return Err(out_of_range(tx, &parent, &prop, path)),
                None => {
                    created.push(Created { path: path.clone(), made: Made::List });
                    tx.put_object(&parent, prop, ObjType::List).map_err(am(path))?
                }
            };
            let len = tx.length(&list);
            let index = index.unwrap_or(len);
            if index > len {
                return Err(OpError::IndexOutOfRange { path: path.clone(), index, len });
            }
            write(tx, Place::Insert(list, index), value, path, 0)
        }
        Op::Splice { path, index, delete, insert } => {
            let (parent, prop) = slot(tx, path, false, created)?;
            let text = match get(tx, &parent, &prop, path)? {
                Some((Value::Object(ObjType::Text), id)) => id,
                Some((v, _)) => return Err(OpError::NotText { path: path.clone(), found: kind(&v) }),
                None => return Err(OpError::NotFound { path: path.clone() }),
            };
            let len = tx.length(&text);
            let end = index.saturating_add(*delete);
            if end > len {
                return Err(OpError::IndexOutOfRange { path: path.clone(), index: end, len });
            }
            let delete = isize::try_from(*delete).unwrap_or(isize::MAX);
            tx.splice_text(&text, *index, delete, insert).map_err(am(path))
        }
    }
}

/// Resolves every segment but the last to a map or list, and the last to a property in it.
fn slot<T: Transactable>(
    tx: &mut T,
    path: &Path,
    create: bool,
    created: &mut Vec<Created>,
) -> Result<(ObjId, Prop), OpError> {
    let segments = path.segments();
    let (mut obj, mut ty) = (ROOT, ObjType::Map);
    for (depth, segment) in segments.iter().enumerate() {
        let here = path.prefix(depth);
        let prop = prop_in(ty, segment, &here, depth)?;
        if depth + 1 == segments.len() {
            return Ok((obj, prop));
        }
        let inner = path.prefix(depth + 1);
        (obj, ty) = match get(tx, &obj, &prop, &inner)? {
            Some((Value::Object(t @ (ObjType::Map | ObjType::Table | ObjType::List)), id)) => (id, t),
            Some((v, _)) => return Err(OpError::NotAContainer { path: inner, found: kind(&v) }),
            None if create && !is_index(&prop) => {
                created.push(Created { path: inner.clone(), made: Made::Map });
                (tx.put_object(&obj, prop, ObjType::Map).map_err(am(&inner))?, ObjType::Map)
            }
            None if is_index(&prop) => return Err(out_of_range(tx, &obj, &prop, &inner)),
            None => return Err(OpError::NotFound { path: inner }),
        };
    }
    Err(OpError::NotFound { path: path.clone() }) // unreachable: a path has at least one segment
}

/// A segment as a property of an object of type `ty` (`here` is the object's path).
fn prop_in(ty: ObjType, segment: &str, here: &Path, depth: usize) -> Result<Prop, OpError> {
    match ty {
        ObjType::Map | ObjType::Table => Ok(Prop::Map(segment.to_owned())),
        ObjType::List => segment_index(segment)
            .map(Prop::Seq)
            .ok_or_else(|| OpError::BadIndex { path: here.clone(), segment: segment.to_owned() }),
        // `slot` never descends into texts; keep the error honest anyway.
        ObjType::Text => Err(OpError::NotAContainer { path: here.prefix(depth), found: "text" }),
    }
}

fn get<T: Transactable>(
    tx: &T,
    obj: &ObjId,
    prop: &Prop,
    path: &Path,
) -> Result<Option<(Value<'static>, ObjId)>, OpError> {
    if let Prop::Seq(i) = prop
        && *i >= tx.length(obj)
    {
        return Ok(None);
    }
    let got = tx.get(obj, prop.clone()).map_err(am(path))?;
    Ok(got.map(|(v, id)| (v.into_owned(), id)))
}

/// Refuses an increment (already made in `tx`, which the caller rolls back) that took the
/// counter out of ±[`COUNTER_ABS_MAX`].
fn counter_in_range<T: Transactable>(tx: &T, obj: &ObjId, prop: &Prop, path: &Path, by: i64) -> Result<(), OpError> {
    let value = match get(tx, obj, prop, path)? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Counter(c) => i64::from(c),
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    if value.unsigned_abs() > COUNTER_ABS_MAX {
        return Err(OpError::CounterOutOfRange { path: path.clone(), by, before: value.wrapping_sub(by) });
    }
    Ok(())
}

fn is_index(prop: &Prop) -> bool {
    matches!(prop, Prop::Seq(_))
}

fn out_of_range<T: Transactable>(tx: &T, list: &ObjId, prop: &Prop, path: &Path) -> OpError {
    let index = if let Prop::Seq(i) = prop { *i } else { 0 };
    OpError::IndexOutOfRange { path: path.prefix(path.segments().len().saturating_sub(1)), index, len: tx.length(list) }
}

fn am(path: &Path) -> impl Fn(AutomergeError) -> OpError + '_ {
    move |e| OpError::Automerge { path: path.clone(), message: e.to_string() }
}

/// What a value is, for error messages.
pub(crate) fn kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Object(ObjType::Map | ObjType::Table) => "map",
        Value::Object(ObjType::List) => "list",
        Value::Object(ObjType::Text) => "text",
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(_) => "string",
            ScalarValue::Int(_) | ScalarValue::Uint(_) | ScalarValue::F64(_) => "number",
            ScalarValue::Counter(_) => "counter",
            ScalarValue::Boolean(_) => "boolean",
            ScalarValue::Null => "null",
            ScalarValue::Bytes(_) => "bytes",
            ScalarValue::Timestamp(_) => "timestamp",
            ScalarValue::Unknown { .. } => "value of an unknown type",
        },
    }
}

/// Where a value goes: over a map key or list element, or inserted into a list.
enum Place {
    Put(ObjId, Prop),
    Insert(ObjId, usize),
}

fn write<T: Transactable>(tx: &mut T, place: Place, value: &Json, path: &Path, depth: usize) -> Result<(), OpError> {
    if depth > VALUE_DEPTH_MAX {
        let reason = format!("nested more than {VALUE_DEPTH_MAX} levels deep");
        return Err(OpError::InvalidValue { path: path.clone(), reason });
    }
    let object = match value {
        Json::Object(_) => Some(ObjType::Map),
        Json::Array(_) => Some(ObjType::List),
        _ => None,
    };
    let Some(ty) = object else {
        let scalar = scalar(value);
        return match place {
            Place::Put(obj, prop) => tx.put(&obj, prop, scalar),
            Place::Insert(obj, i) => tx.insert(&obj, i, scalar),
        }
        .map_err(am(path));
    };
    let id = match place {
        Place::Put(obj, prop) => tx.put_object(&obj, prop, ty),
        Place::Insert(obj, i) => tx.insert_object(&obj, i, ty),
    }
    .map_err(am(path))?;
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                write(tx, Place::Put(id.clone(), Prop::Map(k.clone())), v, path, depth + 1)?;
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                write(tx, Place::Insert(id.clone(), i), v, path, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn scalar(value: &Json) -> ScalarValue {
    match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ScalarValue::Int(i),
            (None, Some(u)) => ScalarValue::Uint(u),
            _ => ScalarValue::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Object(_) | Json::Array(_) => ScalarValue::Null, // handled by `write`
    }
}
