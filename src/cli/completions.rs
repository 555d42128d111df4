//! `completions`: clap_complete's shell scripts, with what they lack added: the ids of the data
//! in use as values, bash's values after `=` and a command's positional values, fish's
//! positional values.

use std::process::ExitCode;

use clap::CommandFactory;

use super::Context;
use super::args::{Cli, CompletionsArgs};
use super::terminal::emit_bytes;
use crate::capabilities;
use crate::cli::error::Result;

pub(super) fn completions(ctx: &Context, args: &CompletionsArgs) -> Result<ExitCode> {
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
