//! `ask`: the guided questionnaire, then the same renderers as `recommend`, and an answers file
//! that `recommend --answers` replays to the identical result.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dialoguer::{Confirm, Input, theme::ColorfulTheme};

use super::args::AskArgs;
use super::terminal::emit;
use super::{Context, recommend};
use crate::answers::Answers;
use crate::cli::error::{Error, Result};
use crate::cli::questionnaire;

pub(super) fn run(ctx: &Context, args: &AskArgs) -> Result<ExitCode> {
    if !ctx.interactive {
        return Err(Error::usage_with_help(
            "`ask` needs a terminal (stdin and stderr), and CI and --no-input turn prompts off",
            "use `enos-connect recommend --answer ID=VALUE --need FEATURE` or `recommend --answers FILE`; `enos-connect questions` lists the ids",
        ));
    }
    let caps = ctx.capabilities()?;
    let mut answers = Answers::default();
    let asked = questionnaire::ask(caps, &mut answers, false)?;
    let decision = recommend::decision(caps, &answers)?;
    emit(&ctx.renderer(args.format.format).decision(caps, &decision))?;
    let skipped = asked.skipped(caps, &answers);
    let mut err = std::io::stderr();
    if !skipped.is_empty() {
        let _ = writeln!(
            err,
            "Skipped (could not change the outcome): {}",
            skipped.join(", ")
        );
    }
    let path = match &args.save {
        Some(p) => Some(p.clone()),
        None => offer_save()?,
    };
    if let Some(path) = path {
        save(&path, &answers.to_toml(caps))?;
        let _ = writeln!(
            err,
            "Saved the answers to {}; replay with: enos-connect recommend --answers {}",
            path.display(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn offer_save() -> Result<Option<PathBuf>> {
    let theme = ColorfulTheme::default();
    let yes = Confirm::with_theme(&theme)
        .with_prompt("Save these answers to a file?")
        .default(false)
        .interact_opt()?
        .ok_or(Error::Interrupted)?;
    if !yes {
        return Ok(None);
    }
    let path: String = Input::with_theme(&theme)
        .with_prompt("File")
        .default("enos-answers.toml".to_string())
        .interact_text()?;
    Ok(Some(PathBuf::from(path)))
}

/// Write through a temporary file in the same folder and rename it into place, so an
/// interrupted save never leaves a half-written answers file. A target that exists and is not
/// a regular file (`/dev/stdout`, a FIFO) is written in place: renaming over it would replace it.
fn save(path: &Path, text: &str) -> Result<()> {
    let fail = |e: std::io::Error| Error::io(format!("cannot save the answers to {}", path.display()), e);
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return std::fs::write(path, text).map_err(fail);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(test)]
mod tests {
    use super::save;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn save_replaces_regular_files_atomically_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.toml");
        std::fs::write(&path, "old").expect("write");
        save(&path, "network = \"tcp\"\n").expect("saves");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "network = \"tcp\"\n"
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn save_writes_through_a_special_file_instead_of_replacing_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).expect("read fifo"))
        };
        save(&fifo, "x = \"1\"\n").expect("saves");
        // Checked before joining: had save renamed over the FIFO, the reader would wait forever.
        let kind = std::fs::symlink_metadata(&fifo).expect("meta").file_type();
        assert!(kind.is_fifo(), "the FIFO is still a FIFO");
        assert_eq!(reader.join().expect("reader"), "x = \"1\"\n");
    }
}
