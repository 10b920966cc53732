//! State: named channels, each with a reducer, and the updates nodes write.
//!
//! A graph's state is a set of channels (the fields of a serde struct, or
//! channels declared one by one). Each channel holds a JSON value and has a
//! [`Reducer`] that folds writes into it. Nodes never mutate state: they
//! return an [`Update`] (a list of channel writes), and after a superstep
//! the runtime applies every task's writes *in task order* (the order the
//! tasks were scheduled, never the order they finished), so the result of a
//! step is deterministic however its tasks interleave.
//!
//! A channel's version changes only when a write changes it; checkpoints
//! store only the channels whose version changed.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::de::value::MapDeserializer;
use serde_json::Value;

/// A custom reducer: folds one write into the current value, or says why the
/// write does not fit.
pub type ReduceFn = dyn Fn(&mut Value, Value) -> Result<(), String> + Send + Sync;

/// How writes to a channel are folded into its value.
#[derive(Clone, Default)]
pub enum Reducer {
    /// The write replaces the value. Two tasks writing the channel in the
    /// same superstep is an error (which one should win?).
    #[default]
    LastValue,
    /// The channel holds an array: an array write is appended element by
    /// element, `null` is ignored, any other write is pushed.
    Append,
    /// The channel holds a number; writes are added.
    Add,
    /// The channel holds an object; written objects are merged key by key
    /// (shallow; the write wins).
    Merge,
    /// A function of the current value and the write.
    Custom(Arc<ReduceFn>),
}

impl std::fmt::Debug for Reducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Reducer {
    /// A reducer from a function over JSON values.
    pub fn custom(f: impl Fn(&mut Value, Value) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    /// A reducer over a typed value: the current value and the write are
    /// deserialized as `T` (a mismatch is a clear error), folded by `f`, and
    /// the result serialized back.
    pub fn typed<T>(f: impl Fn(&mut T, T) + Send + Sync + 'static) -> Self
    where
        T: serde::Serialize + DeserializeOwned + 'static,
    {
        Self::custom(move |cur, write| {
            let mut acc: T = serde_json::from_value(std::mem::take(cur))
                .map_err(|e| format!("current value is not a {}: {e}", std::any::type_name::<T>()))?;
            let w: T = serde_json::from_value(write)
                .map_err(|e| format!("write is not a {}: {e}", std::any::type_name::<T>()))?;
            f(&mut acc, w);
            *cur = serde_json::to_value(acc).map_err(|e| e.to_string())?;
            Ok(())
        })
    }

    /// The reducer's name, for errors and exports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::LastValue => "last_value",
            Self::Append => "append",
            Self::Add => "add",
            Self::Merge => "merge",
            Self::Custom(_) => "custom",
        }
    }

    /// Folds `write` into `cur`.
    pub(crate) fn apply(&self, cur: &mut Value, write: Value) -> Result<(), String> {
        match self {
            Self::LastValue => {
                *cur = write;
                Ok(())
            }
            Self::Append => {
                if cur.is_null() {
                    *cur = Value::Array(Vec::new());
                }
                let Value::Array(items) = cur else {
                    return Err(format!(
                        "append reducer needs an array, the channel holds {}",
                        kind(cur)
                    ));
                };
                match write {
                    Value::Array(more) => items.extend(more),
                    Value::Null => {}
                    other => items.push(other),
                }
                Ok(())
            }
            Self::Add => {
                if cur.is_null() {
                    *cur = Value::from(0);
                }
                let sum = match (&*cur, &write) {
                    (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                        (Some(a), Some(b)) => a.checked_add(b).map(Value::from),
                        _ => None,
                    }
                    .or_else(|| match (a.as_f64(), b.as_f64()) {
                        (Some(a), Some(b)) => serde_json::Number::from_f64(a + b).map(Value::Number),
                        _ => None,
                    }),
                    _ => {
                        return Err(format!(
                            "add reducer needs numbers, got {} + {}",
                            kind(cur),
                            kind(&write)
                        ));
                    }
                };
                *cur = sum.ok_or("add reducer overflowed")?;
                Ok(())
            }
            Self::Merge => {
                if cur.is_null() {
                    *cur = Value::Object(serde_json::Map::new());
                }
                match (cur, write) {
                    (Value::Object(a), Value::Object(b)) => {
                        a.extend(b);
                        Ok(())
                    }
                    (cur, write) => Err(format!(
                        "merge reducer needs objects, got {} <- {}",
                        kind(cur),
                        kind(&write)
                    )),
                }
            }
            Self::Custom(f) => f(cur, write),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes to channels, made by a node (or given as graph input).
///
/// ```
/// use tinyagents_graph::Update;
/// let u = Update::new().set("count", 1).set("notes", vec!["a", "b"]);
/// assert_eq!(u.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    pub(crate) writes: Vec<(Arc<str>, Value)>,
    pub(crate) error: Option<String>,
}

impl Update {
    /// No writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write of `value` to `channel`.
    #[must_use]
    pub fn set(mut self, channel: impl Into<Arc<str>>, value: impl serde::Serialize) -> Self {
        let channel = channel.into();
        match serde_json::to_value(value) {
            Ok(v) => {
                // Most updates hold one write: no room for four.
                if self.writes.capacity() == 0 {
                    self.writes.reserve_exact(1);
                }
                self.writes.push((channel, v));
            }
            Err(e) => {
                self.error
                    .get_or_insert_with(|| format!("write to channel `{channel}` is not serializable: {e}"));
            }
        }
        self
    }

    /// Adds a write of a JSON value.
    pub fn push(&mut self, channel: impl Into<Arc<str>>, value: Value) {
        self.writes.push((channel.into(), value));
    }

    /// One write per field of `partial` (a struct or map that serializes to
    /// an object; `null` fields are skipped, so `Option` fields left `None`
    /// write nothing).
    pub fn from_struct(partial: &impl serde::Serialize) -> Self {
        match serde_json::to_value(partial) {
            Ok(Value::Object(map)) => Self {
                writes: map
                    .into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (Arc::from(k), v))
                    .collect(),
                error: None,
            },
            Ok(other) => Self {
                writes: Vec::new(),
                error: Some(format!("an update must serialize to an object, got {}", kind(&other))),
            },
            Err(e) => Self {
                writes: Vec::new(),
                error: Some(format!("update is not serializable: {e}")),
            },
        }
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// True when there is no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The writes, in order.
    pub fn writes(&self) -> &[(Arc<str>, Value)] {
        &self.writes
    }
}

/// A channel as declared.
#[derive(Clone, Debug)]
pub(crate) struct ChannelSpec {
    pub name: Arc<str>,
    pub reducer: Reducer,
    pub default: Value,
}

/// The state as a node sees it: channel names and values, shared (not
/// copied) by every task of a step.
pub(crate) type Snapshot = Vec<(Arc<str>, Arc<Value>)>;

/// Deserializes `T` from a snapshot, as if the channels were the fields of
/// a JSON object, without building that object.
pub(crate) fn from_snapshot<T: DeserializeOwned>(snap: &Snapshot) -> Result<T, serde_json::Error> {
    let de = MapDeserializer::<_, serde_json::Error>::new(snap.iter().map(|(k, v)| (&**k, &**v)));
    T::deserialize(de)
}

/// The snapshot as a JSON object.
pub(crate) fn snapshot_object(snap: &Snapshot) -> Value {
    Value::Object(snap.iter().map(|(k, v)| (k.to_string(), (**v).clone())).collect())
}

/// Live channel values of one graph run.
pub(crate) struct Channels {
    pub specs: Arc<[ChannelSpec]>,
    pub index: Arc<HashMap<Arc<str>, usize>>,
    pub values: Vec<Arc<Value>>,
    pub versions: Vec<u64>,
}

/// Why a write could not be applied.
pub(crate) enum ApplyError {
    UnknownChannel(Arc<str>),
    Reducer { channel: Arc<str>, message: String },
}

impl Channels {
    pub fn new(specs: Arc<[ChannelSpec]>, index: Arc<HashMap<Arc<str>, usize>>) -> Self {
        let values = specs.iter().map(|c| Arc::new(c.default.clone())).collect();
        let versions = vec![0; specs.len()];
        Self {
            specs,
            index,
            values,
            versions,
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::new(
            self.specs
                .iter()
                .zip(&self.values)
                .map(|(c, v)| (c.name.clone(), v.clone()))
                .collect(),
        )
    }

    /// The state as an object, moving the values out (the channels are
    /// left empty).
    pub fn take_object(&mut self) -> Value {
        let values = std::mem::take(&mut self.values);
        Value::Object(
            self.specs
                .iter()
                .zip(values)
                .map(|(c, v)| (c.name.to_string(), Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone())))
                .collect(),
        )
    }

    pub fn to_object(&self) -> Value {
        Value::Object(
            self.specs
                .iter()
                .zip(&self.values)
                .map(|(c, v)| (c.name.to_string(), (**v).clone()))
                .collect(),
        )
    }

    /// Applies one step's writes: `batches` in task order, each a task's
    /// writes in the order it made them. Returns the indices of channels
    /// that changed. `who` names the task of each batch, for LastValue
    /// conflicts.
    pub fn apply(
        &mut self,
        batches: impl Iterator<Item = (u32, Vec<(Arc<str>, Value)>)>,
        version: u64,
    ) -> Result<Vec<usize>, (u32, ApplyError)> {
        let mut written_by: Vec<Option<u32>> = vec![None; self.specs.len()];
        let mut changed = Vec::new();
        let mut last: Option<(Arc<str>, usize)> = None;
        for (task, writes) in batches {
            for (name, value) in writes {
                let i = match &last {
                    Some((n, i)) if **n == *name => *i,
                    _ => {
                        let Some(&i) = self.index.get(&name) else {
                            return Err((task, ApplyError::UnknownChannel(name.clone())));
                        };
                        last = Some((name.clone(), i));
                        i
                    }
                };
                let spec = &self.specs[i];
                if matches!(spec.reducer, Reducer::LastValue)
                    && let Some(other) = written_by[i]
                    && other != task
                {
                    return Err((
                        task,
                        ApplyError::Reducer {
                            channel: name.clone(),
                            message: format!(
                                "last_value channel written by two tasks in one superstep (tasks {other} and {task}); give it an append, add, merge or custom reducer"
                            ),
                        },
                    ));
                }
                let cur = Arc::make_mut(&mut self.values[i]);
                spec.reducer.apply(cur, value).map_err(|message| {
                    (
                        task,
                        ApplyError::Reducer {
                            channel: name.clone(),
                            message,
                        },
                    )
                })?;
                if written_by[i].is_none() {
                    changed.push(i);
                }
                written_by[i] = Some(task);
            }
        }
        for &i in &changed {
            self.versions[i] = version;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reducers_fold_and_reject_mismatches() {
        let mut v = Value::Null;
        Reducer::Append.apply(&mut v, serde_json::json!([1, 2])).unwrap();
        Reducer::Append.apply(&mut v, serde_json::json!(3)).unwrap();
        assert_eq!(v, serde_json::json!([1, 2, 3]));
        let mut n = serde_json::json!(2);
        Reducer::Add.apply(&mut n, serde_json::json!(3)).unwrap();
        assert_eq!(n, 5);
        let err = Reducer::Add.apply(&mut n, serde_json::json!("x")).unwrap_err();
        assert!(err.contains("add reducer needs numbers"), "{err}");
        let mut s = serde_json::json!("text");
        assert!(Reducer::Append.apply(&mut s, serde_json::json!(1)).is_err());
        let r = Reducer::typed(|a: &mut Vec<u32>, b: Vec<u32>| a.extend(b));
        let mut t = serde_json::json!([1]);
        r.apply(&mut t, serde_json::json!([2])).unwrap();
        assert_eq!(t, serde_json::json!([1, 2]));
        let err = r.apply(&mut t, serde_json::json!("no")).unwrap_err();
        assert!(err.contains("write is not a"), "{err}");
    }
}
