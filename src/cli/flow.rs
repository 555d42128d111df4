//! `flow`: the decision flow of the data as Mermaid, DOT, text or (through Graphviz) a picture,
//! with a device's path through it when answers are given. Running Graphviz happens here, at
//! the edge; the renderer only makes text.

use std::process::ExitCode;

use super::Context;
use super::args::FlowArgs;
use super::terminal::{emit, emit_bytes};
use crate::answers::Answers;
use crate::cli::error::{Error, Result};
use crate::render::{FlowFormat, flow as flow_render};

pub(super) fn flow(ctx: &Context, args: &FlowArgs) -> Result<ExitCode> {
    if args.format == FlowFormat::Png && ctx.terminal.stdout.terminal {
        return Err(Error::usage_with_help(
            "a PNG is binary and stdout is a terminal",
            "redirect it to a file: enos-connect flow -f png > flow.png",
        ));
    }
    let caps = ctx.capabilities()?;
    let a = &args.answers;
    let path = if a.answer.is_empty() && a.needs.need.is_empty() && a.answers.is_none() {
        None
    } else {
        // No prompt: a picture is made for a document, from answers written down.
        let mut answers = match &a.answers {
            Some(path) => Answers::from_file(caps, path)?,
            None => Answers::default(),
        };
        answers.apply_flags(caps, &a.answer, &a.needs.need)?;
        let d = super::recommend::decision(caps, &answers)?;
        let protocols: Vec<&str> = d.protocols.iter().map(|p| caps.protocol_title(p)).collect();
        let caption = if protocols.is_empty() {
            format!("recommendation: {}", d.recommendation)
        } else {
            format!("recommendation: {} ({})", d.recommendation, protocols.join(" + "))
        };
        Some(flow_render::Path {
            nodes: d.trace.iter().map(|s| s.node.clone()).collect(),
            caption,
        })
    };
    let text = flow_render::render(caps, args.format, path.as_ref());
    match args.format {
        FlowFormat::Svg => emit_bytes(&graphviz(&text, "svg")?)?,
        FlowFormat::Png => emit_bytes(&graphviz(&text, "png")?)?,
        _ => emit(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Draw DOT text with Graphviz (`dot -Tsvg` or `-Tpng`, found on PATH).
fn graphviz(dot_text: &str, format: &str) -> Result<Vec<u8>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("dot")
        .arg(format!("-T{format}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::usage_with_help(
                "Graphviz `dot` is not installed, and it draws the picture",
                "install the Debian package graphviz (apt-get install graphviz), or use --format mermaid or dot",
            ),
            _ => Error::io("cannot run Graphviz `dot`", e),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot_text.as_bytes())
            .map_err(|e| Error::io("cannot feed `dot`", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("`dot` failed", e))?;
    if !out.status.success() {
        return Err(Error::usage(format!(
            "`dot -T{format}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}
