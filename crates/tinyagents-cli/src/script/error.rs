//! What can be wrong with a script. Every message names the agent, field or
//! file position at fault; [`ScriptError::hint`] says what to do.

/// A script could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read script {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The text is not valid JSON or does not match the format.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// The file (or `<embedded demo>`, `<stdin>`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
        /// The offending line with a caret under the column.
        snippet: Option<String>,
    },
    /// `agents` is empty.
    #[error("the script defines no agents")]
    NoAgents,
    /// `root` names no agent.
    #[error("root agent {root:?} is not defined; agents: {}", known.join(", "))]
    UnknownRoot {
        /// The name given.
        root: String,
        /// The agents defined.
        known: Vec<String>,
    },
    /// `root` is absent and not exactly one agent is free of parents.
    #[error("no \"root\" given and {} agents are nobody's sub-agent: {}", candidates.len(), candidates.join(", "))]
    NoRoot {
        /// Agents nobody delegates to.
        candidates: Vec<String>,
    },
    /// A sub-agent name is not defined.
    #[error("agent {agent:?} lists unknown sub-agent {subagent:?}; agents: {}", known.join(", "))]
    UnknownSubAgent {
        /// The agent listing it.
        agent: String,
        /// The unknown name.
        subagent: String,
        /// The agents defined.
        known: Vec<String>,
    },
    /// A sub-agent is listed twice.
    #[error("agent {agent:?} lists sub-agent {subagent:?} twice")]
    DuplicateSubAgent {
        /// The agent.
        agent: String,
        /// The repeated name.
        subagent: String,
    },
    /// Delegation loops back on itself.
    #[error("delegation cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The loop, first name repeated at the end.
        cycle: Vec<String>,
    },
    /// An agent has no responses.
    #[error("agent {agent:?} has no responses")]
    NoResponses {
        /// The agent.
        agent: String,
    },
    /// A response has neither content, tool calls nor error.
    #[error("agent {agent:?}, responses[{index}]: needs \"content\", \"tool_calls\" or \"error\"")]
    EmptyResponse {
        /// The agent.
        agent: String,
        /// Index in `responses`.
        index: usize,
    },
    /// A response has an error and also content or tool calls.
    #[error("agent {agent:?}, responses[{index}]: \"error\" cannot be combined with \"content\" or \"tool_calls\"")]
    ErrorWithReply {
        /// The agent.
        agent: String,
        /// Index in `responses`.
        index: usize,
    },
    /// A scripted tool call names something that is not a sub-agent.
    #[error(
        "agent {agent:?}, responses[{index}]: calls {tool:?}, which is not one of its sub-agents ({})",
        if subagents.is_empty() { "it has none".to_string() } else { subagents.join(", ") }
    )]
    UnknownTool {
        /// The agent.
        agent: String,
        /// Index in `responses`.
        index: usize,
        /// The tool called.
        tool: String,
        /// The agent's sub-agents.
        subagents: Vec<String>,
    },
    /// Neither the script nor the command line gives an input.
    #[error("the script has no \"input\" and none was given on the command line")]
    MissingInput,
}

impl ScriptError {
    pub(crate) fn parse(origin: &str, text: &str, e: &serde_json::Error) -> Self {
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        let snippet = line
            .checked_sub(1)
            .and_then(|i| text.lines().nth(i))
            .map(|l| snippet(line, column, l));
        Self::Parse {
            origin: origin.to_string(),
            line,
            column,
            message,
            snippet,
        }
    }

    /// Extra lines to show under the message (the offending source line).
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Parse { snippet, .. } => snippet.as_deref(),
            _ => None,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Io { .. } => "check the path given to --script",
            Self::Parse { .. } => {
                "the script format is described in `tinyagents run --help` and in the tinyagents-cli README"
            }
            Self::NoAgents => "add at least one agent under \"agents\"",
            Self::UnknownRoot { .. } | Self::NoRoot { .. } => "set \"root\" to the name of the top-level agent",
            Self::UnknownSubAgent { .. } => "define the sub-agent under \"agents\" or fix the name",
            Self::DuplicateSubAgent { .. } => "list each sub-agent once",
            Self::Cycle { .. } => "delegation must form a DAG: remove one of the sub-agent links in the loop",
            Self::NoResponses { .. } => "give the agent at least one response, e.g. {\"content\": \"done\"}",
            Self::EmptyResponse { .. } | Self::ErrorWithReply { .. } => {
                "a response is a reply (\"content\" and/or \"tool_calls\") or a failure (\"error\")"
            }
            Self::UnknownTool { .. } => "add the callee to the agent's \"subagents\" or fix the name",
            Self::MissingInput => {
                "add \"input\" to the script or pass INPUT: tinyagents run --script FILE \"your task\""
            }
        }
    }
}

fn snippet(line: usize, column: usize, text: &str) -> String {
    // Keep long lines readable: show at most 60 characters before the column.
    let chars: Vec<char> = text.chars().collect();
    let col = column.saturating_sub(1).min(chars.len());
    let start = col.saturating_sub(60);
    let end = chars.len().min(col + 40);
    let shown: String = chars.get(start..end).map(|c| c.iter().collect()).unwrap_or_default();
    let gutter = line.to_string();
    format!(
        "{gutter} | {shown}\n{pad} | {caret:>width$}",
        pad = " ".repeat(gutter.len()),
        caret = "^",
        width = col - start + 1
    )
}
