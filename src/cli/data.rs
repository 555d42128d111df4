//! `compare`, `flow`, `questions`, `check`, `schema`, `completions` and `man`: show and
//! validate the data and the tool itself. Running Graphviz for a picture happens here, at the
//! edge; the renderers only make text.

use std::process::ExitCode;

use clap::CommandFactory;

use super::args::{
    CheckArgs, Cli, CompareArgs, CompletionsArgs, FlowArgs, FormatArgs, ManArgs, SchemaArgs, SchemaOf,
};
use super::terminal::{emit, emit_bytes};
use super::{Context, print};
use crate::answers::Answers;
use crate::capabilities::{self, CheckReport};
use crate::cli::error::{EXIT_USAGE, Error, Result};
use crate::render::{FlowFormat, Format, flow as flow_render};

pub fn compare(ctx: &Context, args: &CompareArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    let mut answers = Answers::default();
    answers.add_needs(caps, args.needs.need.iter().map(String::as_str), "--need")?;
    print(
        &ctx.renderer(args.format.format)
            .compare(caps, answers.need_list()),
    )
}

pub fn flow(ctx: &Context, args: &FlowArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    let text = flow_render::render(caps, args.format);
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

pub fn questions(ctx: &Context, args: FormatArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    print(&ctx.renderer(args.format).questions(caps))
}

pub fn check(ctx: &Context, args: &CheckArgs) -> Result<ExitCode> {
    let path = args.file.as_deref().or(ctx.capabilities.as_deref());
    let name = path.map_or(capabilities::EMBEDDED_NAME.to_string(), |p| {
        p.display().to_string()
    });
    let result = match path {
        Some(p) => capabilities::from_file(p),
        None => capabilities::embedded_checked(),
    };
    match (result, args.format.format) {
        // A person reading a terminal gets the problems on stderr, as every other command
        // reports bad input; CI asking for JSON gets them on stdout.
        (Err(e), Format::Table | Format::Markdown) => Err(e.into()),
        (result, format) => {
            let report = CheckReport::new(name, result);
            emit(&ctx.renderer(format).check(&report))?;
            Ok(ExitCode::from(if report.problems.is_empty() {
                0
            } else {
                EXIT_USAGE
            }))
        }
    }
}

pub fn schema(ctx: &Context, args: &SchemaArgs) -> Result<ExitCode> {
    print(&match args.of {
        SchemaOf::Capabilities => crate::schema::capabilities(),
        SchemaOf::Answers => crate::schema::answers(ctx.capabilities()?),
        SchemaOf::Registry => crate::schema::registry(),
    })
}

pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "enos-connect", &mut out);
    emit_bytes(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Man pages as git and cargo ship them: `enos-connect(1)` and one `enos-connect-COMMAND(1)`
/// per subcommand.
pub fn man(args: &ManArgs) -> Result<ExitCode> {
    let top = Cli::command();
    let page = |cmd: clap::Command| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(Error::Output)?;
        Ok(out)
    };
    // A subcommand's page is named and titled like git's: enos-connect-probe(1).
    let sub_page = |name: &str| -> Option<clap::Command> {
        let sub = top.find_subcommand(name)?.clone();
        let full = format!("enos-connect-{name}");
        Some(
            sub.name(full.clone())
                .display_name(full)
                .bin_name(format!("enos-connect {name}")),
        )
    };
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let mut names = vec![("enos-connect".to_string(), top.clone())];
        for sub in top.get_subcommands() {
            let name = sub.get_name().to_string();
            if let Some(cmd) = sub_page(&name) {
                names.push((format!("enos-connect-{name}"), cmd));
            }
        }
        for (name, cmd) in names {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, page(cmd)?)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            eprintln!("wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cmd = match &args.command {
        None => top.clone(),
        Some(name) => sub_page(name).ok_or_else(|| {
            let known: Vec<&str> = top.get_subcommands().map(|s| s.get_name()).collect();
            Error::usage_with_help(
                format!("no command `{name}`"),
                format!("man pages exist for {}", known.join(", ")),
            )
        })?,
    };
    emit_bytes(&page(cmd)?)?;
    Ok(ExitCode::SUCCESS)
}
