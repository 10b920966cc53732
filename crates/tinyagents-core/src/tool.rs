//! Tools: typed, serde-derived arguments with a derived JSON Schema.
//!
//! Implement [`Tool`] on a struct, or turn a plain async function into a tool
//! with [`tool_fn`]. The harness calls tools through the object-safe
//! [`DynTool`], where typed errors are erased into a classified
//! [`ToolError`].
//!
//! ```
//! use tinyagents_core::tool::{tool_fn, DynTool};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Add { a: i64, b: i64 }
//!
//! let add = tool_fn("add", "Adds two integers", |args: Add| async move {
//!     Ok::<_, std::convert::Infallible>(args.a + args.b)
//! });
//! assert_eq!(add.spec().name.as_ref(), "add");
//! assert_eq!(add.spec().parameters["properties"]["a"]["type"], "integer");
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ToolError;
use crate::model::BoxFuture;
use crate::run::RunContext;

/// What a model is told about a tool.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    /// Name the model calls it by.
    pub name: Arc<str>,
    /// What it does.
    pub description: Arc<str>,
    /// JSON Schema of the arguments object.
    pub parameters: Arc<serde_json::Value>,
}

impl ToolSpec {
    /// The spec of a tool whose arguments are `A`.
    pub fn for_args<A: JsonSchema>(name: &str, description: &str) -> Self {
        let schema = schemars::schema_for!(A);
        let mut value = schema.to_value();
        if let Some(obj) = value.as_object_mut() {
            obj.remove("$schema");
        }
        Self {
            name: name.into(),
            description: description.into(),
            parameters: Arc::new(value),
        }
    }
}

/// What a tool call gets besides its arguments.
#[derive(Clone, Debug)]
pub struct ToolContext {
    /// The run that called the tool (a sub-agent tool spawns its child here).
    pub run: RunContext,
    /// The call's id.
    pub call_id: Arc<str>,
}

/// A typed tool.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tool",
    label = "implement `Tool`, or wrap an async fn with `tool_fn(name, description, f)`",
    note = "the arguments type must derive `serde::Deserialize` and `schemars::JsonSchema`"
)]
pub trait Tool: Send + Sync + 'static {
    /// The arguments; their JSON Schema is what the model sees.
    type Args: DeserializeOwned + JsonSchema + Send + 'static;
    /// The output, serialized for the model (a `String` is passed as is).
    type Output: Serialize + Send + 'static;
    /// The error, classified on the way out.
    type Error: Into<ToolError> + Send + 'static;
    /// The tool's name.
    fn name(&self) -> &str;
    /// What it does.
    fn description(&self) -> &str;
    /// Runs the tool.
    fn call(
        &self,
        ctx: ToolContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// The object-safe form the harness calls.
pub trait DynTool: Send + Sync + 'static {
    /// The spec shown to models.
    fn spec(&self) -> &ToolSpec;
    /// Parses `arguments` (raw JSON) and runs the tool.
    fn call_json<'a>(&'a self, ctx: ToolContext, arguments: &'a str) -> BoxFuture<'a, Result<Arc<str>, ToolError>>;
}

/// A shared, type-erased tool.
pub type SharedTool = Arc<dyn DynTool>;

/// Renders a tool output for the model: strings as is, anything else as JSON.
pub fn output_text<O: Serialize>(output: &O) -> Result<Arc<str>, ToolError> {
    match serde_json::to_value(output) {
        Ok(serde_json::Value::String(s)) => Ok(s.into()),
        Ok(v) => Ok(v.to_string().into()),
        Err(e) => Err(ToolError::failed(format!("output is not serializable: {e}"))),
    }
}

/// Parses tool arguments, naming the problem for the model. `A` may borrow
/// from `arguments` (a `Cow<str>` field parses without a copy when the text
/// has no escapes).
pub fn parse_args<'de, A: serde::Deserialize<'de>>(arguments: &'de str) -> Result<A, ToolError> {
    let text = if arguments.trim().is_empty() { "{}" } else { arguments };
    serde_json::from_str(text).map_err(|e| ToolError::InvalidArguments {
        message: format!("{e}; arguments were {}", truncate(arguments, 200)),
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

struct Erased<T: Tool> {
    tool: T,
    spec: ToolSpec,
}

impl<T: Tool> DynTool for Erased<T> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call_json<'a>(&'a self, ctx: ToolContext, arguments: &'a str) -> BoxFuture<'a, Result<Arc<str>, ToolError>> {
        Box::pin(async move {
            let args: T::Args = parse_args(arguments)?;
            let out = self.tool.call(ctx, args).await.map_err(Into::into)?;
            // Fast path for text outputs (every sub-agent tool): the same
            // text `output_text` would produce, without two copies.
            if let Some(text) = (&out as &dyn std::any::Any).downcast_ref::<Arc<str>>() {
                return Ok(text.clone());
            }
            output_text(&out)
        })
    }
}

/// Erases a typed tool, deriving its spec once.
pub fn into_dyn<T: Tool>(tool: T) -> SharedTool {
    let spec = ToolSpec::for_args::<T::Args>(tool.name(), tool.description());
    Arc::new(Erased { tool, spec })
}

/// A tool made of an async function of its arguments (see [`tool_fn`]).
pub struct FnTool<F, A> {
    name: String,
    description: String,
    f: F,
    _args: PhantomData<fn(A)>,
}

impl<F, A, Fut, O, E> Tool for FnTool<F, A>
where
    F: Fn(ToolContext, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: Serialize + Send + 'static,
    E: Into<ToolError> + Send + 'static,
{
    type Args = A;
    type Output = O;
    type Error = E;
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn call(&self, ctx: ToolContext, args: A) -> impl Future<Output = Result<O, E>> + Send {
        (self.f)(ctx, args)
    }
}

/// A tool from an async function of its typed arguments.
pub fn tool_fn<A, O, E, Fut, F>(name: &str, description: &str, f: F) -> SharedTool
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: Serialize + Send + 'static,
    E: Into<ToolError> + Send + 'static,
{
    tool_fn_with_context(name, description, move |_ctx, args| f(args))
}

/// A tool from an async function that also receives the [`ToolContext`].
pub fn tool_fn_with_context<A, O, E, Fut, F>(name: &str, description: &str, f: F) -> SharedTool
where
    F: Fn(ToolContext, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: Serialize + Send + 'static,
    E: Into<ToolError> + Send + 'static,
{
    into_dyn(FnTool {
        name: name.to_string(),
        description: description.to_string(),
        f,
        _args: PhantomData,
    })
}
