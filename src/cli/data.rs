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
use crate::cli::error::{EXIT_CODES_HELP, EXIT_USAGE, Error, Result};
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
        // reports bad input; CI asking for JSON, or a ticket asking for Markdown, gets them
        // on stdout.
        (Err(e), Format::Table) => Err(e.into()),
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
        SchemaOf::Decision => crate::schema::decision(),
    })
}

pub fn completions(ctx: &Context, args: &CompletionsArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    let mut cmd = with_candidates(Cli::command(), caps);
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "enos-connect", &mut out);
    match args.shell {
        clap_complete::Shell::Bash => {
            out = bash_values(&fix_bash_names(&out), &answer_pairs(caps)).into_bytes();
        }
        clap_complete::Shell::Fish => out.extend_from_slice(fish_positionals(&cmd).as_bytes()),
        _ => {}
    }
    emit_bytes(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The feature ids (`--need`) and `ID=VALUE` answers (`--answer`) of the data in use (built in,
/// or `--capabilities FILE`) as the values a shell offers. Only the completion script gets
/// them: parsing stays open to a file with other ids, which the answers module checks.
fn with_candidates(cmd: clap::Command, caps: &capabilities::Capabilities) -> clap::Command {
    let needs: Vec<String> = caps.features.iter().map(|f| f.id.clone()).collect();
    let answers = answer_pairs(caps);
    let recipes: Vec<String> = caps.credentials.keys().cloned().collect();
    // Built first: with `defer`, a subcommand has no arguments until it is built.
    let mut cmd = cmd;
    cmd.build();
    cmd.mut_subcommands(|sc| {
        let has = |id: &str| sc.get_arguments().any(|a| a.get_id() == id);
        let (need, answer) = (has("need"), has("answer"));
        let protocol = sc.get_name() == "credentials" && has("protocol");
        let mut sc = sc;
        if protocol {
            let values = recipes.clone();
            sc = sc.mut_arg("protocol", |a| {
                a.value_parser(clap::builder::PossibleValuesParser::new(values))
            });
        }
        if need {
            let values = needs.clone();
            sc = sc.mut_arg("need", |a| {
                a.value_parser(clap::builder::PossibleValuesParser::new(values))
            });
        }
        if answer {
            let values = answers.clone();
            sc = sc.mut_arg("answer", |a| {
                a.value_parser(clap::builder::PossibleValuesParser::new(values))
            });
        }
        sc
    })
}

/// Every `ID=VALUE` answer of the capabilities in use.
fn answer_pairs(caps: &capabilities::Capabilities) -> Vec<String> {
    caps.questions
        .iter()
        .flat_map(|q| q.values().map(move |v| format!("{}={v}", q.id)))
        .collect()
}

/// What clap_complete's static bash script does not: values after `=` and positional values.
/// Bash splits the word being completed at `=` (it is in COMP_WORDBREAKS), so after
/// `-a network=` the script saw the word `=` and offered flags; `-a ` now offers each question
/// id with its `=`, and after the `=` that question's values. A word that does not start with
/// `-` where a command takes values (`credentials <Tab>`: its protocols) gets those values, not
/// the flags. `tests/it/rough_edges.rs` types these in an interactive bash.
fn bash_values(script: &str, pairs: &[String]) -> String {
    let mut ids: Vec<String> = Vec::new();
    for p in pairs {
        let id = format!("{}=", p.split('=').next().unwrap_or_default());
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let helpers = format!(
        r#"# enos-connect: `-a ID=VALUE`. Before a `=`, the question ids with their `=`; with a `=`
# in the word (COMP_WORDBREAKS without it), the pairs.
__enos_connect_answer() {{
    if [[ "$1" == *=* ]]; then
        COMPREPLY=($(compgen -W "{pairs}" -- "$1"))
    else
        COMPREPLY=($(compgen -W "{ids}" -- "$1"))
        compopt -o nospace 2>/dev/null
    fi
}}

# enos-connect: bash split `-a ID=VALUE` at the `=` (COMP_WORDBREAKS): the values of ID.
__enos_connect_answer_value() {{
    local i=$COMP_CWORD id flag value p values=""
    if [[ $i -ge 2 && "${{COMP_WORDS[i]}}" == "=" ]]; then
        id="${{COMP_WORDS[i-1]}}" flag="${{COMP_WORDS[i-2]}}" value=""
    elif [[ $i -ge 3 && "${{COMP_WORDS[i-1]}}" == "=" ]]; then
        id="${{COMP_WORDS[i-2]}}" flag="${{COMP_WORDS[i-3]}}" value="${{COMP_WORDS[i]}}"
    else
        return 1
    fi
    [[ "$flag" == "-a" || "$flag" == "--answer" ]] || return 1
    for p in {pairs}; do
        [[ "${{p%%=*}}" == "$id" ]] && values+="${{p#*=}} "
    done
    COMPREPLY=($(compgen -W "$values" -- "$value"))
    return 0
}}

# enos-connect: a word that is not a flag gets the values a command takes, when it takes some.
__enos_connect_opts() {{
    local words=() w
    if [[ "$2" != -* ]]; then
        for w in $1; do
            [[ "$w" != -* ]] && words+=("$w")
        done
    fi
    [[ ${{#words[@]}} -eq 0 ]] && words=($1)
    COMPREPLY=($(compgen -W "${{words[*]}}" -- "$2"))
}}

"#,
        pairs = pairs.join(" "),
        ids = ids.join(" "),
    );
    let generated = format!(r#"COMPREPLY=($(compgen -W "{}" -- "${{cur}}"))"#, pairs.join(" "));
    let mut out = script.replace(&generated, r#"__enos_connect_answer "${cur}""#);
    out = out.replacen(
        "    prev=\"$3\"\n",
        "    prev=\"$3\"\n    if __enos_connect_answer_value; then\n        return 0\n    fi\n",
        1,
    );
    for n in 1..=3 {
        out = out.replace(
            &format!(
                "if [[ ${{cur}} == -* || ${{COMP_CWORD}} -eq {n} ]] ; then\n                COMPREPLY=( $(compgen -W \"${{opts}}\" -- \"${{cur}}\") )"
            ),
            &format!(
                "if [[ ${{cur}} == -* || ${{COMP_CWORD}} -eq {n} ]] ; then\n                __enos_connect_opts \"${{opts}}\" \"${{cur}}\""
            ),
        );
    }
    format!("{helpers}{out}")
}

/// What clap_complete's fish script leaves out: a subcommand's positional values
/// (`credentials <Tab>`: its protocols; `schema <Tab>`: the kinds), until one is given.
fn fish_positionals(cmd: &clap::Command) -> String {
    let mut out = String::new();
    for sc in cmd.get_subcommands() {
        for arg in sc.get_positionals() {
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            if values.is_empty() {
                continue;
            }
            let list = values.join(" ");
            out.push_str(&format!(
                "complete -c enos-connect -n \"__fish_enos_connect_using_subcommand {}; and not __fish_seen_subcommand_from {list}\" -f -a \"{list}\"\n",
                sc.get_name()
            ));
        }
    }
    out
}

/// clap_complete 4.6.11 (the newest) names a subcommand's case label after its bin name with
/// `-` turned into `__subcmd__` (`enos__subcmd__connect__subcmd__recommend`), while the
/// variable it matches is built from `enos__connect`, so nothing after a subcommand completed.
/// The labels are renamed to what the variable holds; `tests/it/cli.rs` completes in a real bash.
fn fix_bash_names(script: &[u8]) -> String {
    String::from_utf8_lossy(script).replace("enos__subcmd__connect__subcmd__", "enos__connect__subcmd__")
}

/// Man pages as git and cargo ship them: `enos-connect(1)` and one `enos-connect-COMMAND(1)`
/// per subcommand, each with the global flags that apply to it and an EXIT STATUS section.
pub fn man(args: &ManArgs) -> Result<ExitCode> {
    // No `help` subcommand: it would be listed as enos-connect-help(1), a page nobody writes.
    let mut top = Cli::command().disable_help_subcommand(true);
    // Building propagates the global flags into the subcommands, so their pages list them.
    top.build();
    let page = |cmd: clap::Command| -> Result<Vec<u8>> { man_page(cmd).map_err(Error::Output) };
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

/// One man page: clap_mangen's sections, except that the text after the options is not left
/// under clap_mangen's heading EXTRA: the exit codes go under EXIT STATUS, as man-pages(7)
/// names it, and any other text under NOTES.
fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let after = cmd
        .get_after_long_help()
        .or(cmd.get_after_help())
        .map(|t| t.to_string());
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    out.extend_from_slice(synopsis(&cmd).as_bytes());
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    let notes = after
        .as_deref()
        .map(|t| t.replace(EXIT_CODES_HELP, "").trim().to_string())
        .filter(|t| !t.is_empty());
    if let Some(notes) = notes {
        out.extend_from_slice(b".SH NOTES\n");
        out.extend_from_slice(roff_preformatted(&notes).as_bytes());
    }
    out.extend_from_slice(b".SH \"EXIT STATUS\"\n");
    let codes = EXIT_CODES_HELP.trim_start_matches("Exit codes:\n");
    out.extend_from_slice(roff_preformatted(codes).as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// The SYNOPSIS section with each option's value placeholder (`--timeout SECONDS`), which
/// clap_mangen's own leaves out (`[--timeout]`): optional parts in brackets, alternatives
/// joined by `|`, a repeatable positional followed by `...`.
fn synopsis(cmd: &clap::Command) -> String {
    let roff = |t: &str| t.replace('\\', "\\e").replace('-', "\\-");
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut line = format!("\\fB{}\\fR", roff(name));
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let values: Vec<String> = arg
            .get_value_names()
            .map(|v| v.iter().map(|n| format!("\\fI{}\\fR", roff(n))).collect())
            .unwrap_or_else(|| vec![format!("\\fI{}\\fR", roff(&arg.get_id().as_str().to_uppercase()))]);
        let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
        let mut text = if arg.is_positional() {
            values.join(" ")
        } else {
            let mut names = Vec::new();
            if let Some(short) = arg.get_short() {
                names.push(format!("\\fB\\-{}\\fR", roff(&short.to_string())));
            }
            if let Some(long) = arg.get_long() {
                names.push(format!("\\fB\\-\\-{}\\fR", roff(long)));
            }
            let mut text = names.join("|");
            if arg.get_action().takes_values() {
                let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
                let value = values.join(" ");
                text.push_str(&if optional {
                    format!(" [{value}]")
                } else {
                    format!(" {value}")
                });
            }
            text
        };
        if arg.is_positional() && many {
            text.push_str("...");
        }
        line.push(' ');
        line.push_str(&if arg.is_required_set() {
            text
        } else {
            format!("[{text}]")
        });
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        line.push_str(" <\\fIsubcommands\\fR>");
    }
    format!(".SH SYNOPSIS\n{line}\n")
}

/// Text kept as it is laid out (`.nf`), escaped for roff: a backslash, a hyphen (a minus in
/// option names) and a control character at the start of a line.
fn roff_preformatted(text: &str) -> String {
    let mut out = String::from(".nf\n");
    for line in text.lines() {
        let line = line.replace('\\', "\\e").replace('-', "\\-");
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(".fi\n");
    out
}
