//! `corral edit UNIT...`: a drop-in (or with `--full` a copy of the whole
//! unit file) in the first units directory, written with the user's editor,
//! then the manager reloads, as `systemctl --user edit` does.
//!
//! The text the editor gets is systemd 252's: for a drop-in, the file's
//! current contents between two marker lines, and below them the unit's
//! files commented out for reference; what is left between the markers
//! (trimmed) becomes the file, and nothing left cancels the edit. The
//! editor is `$SYSTEMD_EDITOR`, `$EDITOR` or `$VISUAL` (run by `sh`, so
//! `code --wait` works), else the first of `editor`, `nano`, `vim`, `vi`.
//! Unlike systemctl, no terminal is required: an editor that needs none
//! (a script) may edit from a pipeline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use super::enable::{loader_for, reload_manager};
use super::exit;
use crate::supervisor::atomic_file::write_atomic;
use crate::unit::{Loader, Unit, UnitError, UnitName, UnitSource};

/// Arguments of `corral edit`.
#[derive(Debug, Args)]
#[command(
    after_help = "The editor is $SYSTEMD_EDITOR, $EDITOR or $VISUAL, else the first of \
editor, nano, vim and vi. For a drop-in it gets the file's current contents between two \
marker lines, and the unit's files commented out below them; what is left between the \
markers becomes the file (NAME.d/override.conf in the first units directory, or \
--drop-in's name). An empty result cancels the edit; a failing editor changes nothing. \
Then the running manager reloads, so `corral restart UNIT` applies the change.\n\n\
Exit status: 0 when every unit was edited or its edit canceled; 1 when a unit has no file \
(without --force), is masked or a runit service, or the editor failed; 2 on bad arguments."
)]
pub struct EditArgs {
    /// Unit names ("memcached@11212" means memcached@11212.service).
    #[arg(required = true, value_name = "UNIT")]
    pub units: Vec<String>,
    /// Edit a copy of the whole unit file in the units directory (it then
    /// takes the place of the packaged one) instead of a drop-in.
    #[arg(long)]
    pub full: bool,
    /// The drop-in's name: NAME.d/DROPIN.conf (default: override).
    #[arg(long = "drop-in", value_name = "DROPIN")]
    pub drop_in: Option<String>,
    /// Edit a unit that has no file yet (a new unit file with --full).
    #[arg(long)]
    pub force: bool,
    /// Unit directories, highest priority first; the file goes into the
    /// first (default: the running manager's search path, else
    /// $XDG_CONFIG_HOME/corral/units, /etc/corral/user, /usr/lib/corral/user).
    #[arg(long = "units-dir", value_name = "DIR")]
    pub units_dir: Vec<PathBuf>,
}

/// The line above the text that becomes the drop-in.
const KEEP: &str =
    "### Anything between here and the comment below will become the new contents of the file";
/// The line below it; it and everything after it are dropped.
const DISCARD: &str = "### Lines below this comment will be discarded";

/// Runs `corral edit`.
pub fn run(args: &EditArgs, socket: Option<PathBuf>) -> u8 {
    let loader = match loader_for(&args.units_dir, socket.clone()) {
        Ok(l) => l,
        Err(e) => return super::common::report(&e),
    };
    let Some(dir) = loader.unit_paths().first().cloned() else {
        eprintln!("corral edit: no units directory to write into");
        return exit::ERROR;
    };
    let mut code = exit::OK;
    let mut changed = false;
    for u in &args.units {
        match edit_one(&loader, &dir, u, args) {
            Ok(true) => changed = true,
            Ok(false) => {}
            Err(msg) => {
                eprintln!("{msg}");
                code = exit::NEGATIVE;
            }
        }
    }
    if changed && let Err(e) = reload_manager(socket) {
        return super::common::report(&e);
    }
    code
}

/// Edits one unit's file; `Ok(true)` when a file was written.
fn edit_one(loader: &Loader, dir: &Path, unit: &str, args: &EditArgs) -> Result<bool, String> {
    let name = UnitName::parse(unit).map_err(|e| e.to_string())?;
    let loaded = match loader.load(&name) {
        Ok(u) => Some(u),
        Err(UnitError::NotFound { .. }) if args.force => None,
        Err(UnitError::NotFound { .. }) => {
            return Err(format!(
                "No files found for {name}; --force edits a new one."
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    if let Some(u) = &loaded {
        if u.masked {
            return Err(format!("Cannot edit {name}: unit is masked."));
        }
        if matches!(u.source, UnitSource::Runit(_)) {
            return Err(format!(
                "Cannot edit {name}: it is a runit service directory; edit its run script."
            ));
        }
    }
    // What the unit is made of now, for the text below the markers.
    let sources: Vec<PathBuf> = loaded.iter().flat_map(|u| u.files()).collect();
    let target = if args.full {
        dir.join(name.as_str())
    } else {
        let dropin = args.drop_in.as_deref().unwrap_or("override");
        if dropin.is_empty() || dropin.contains('/') {
            return Err(format!("'{dropin}' is not a drop-in name"));
        }
        let file = if dropin.ends_with(".conf") {
            dropin.to_string()
        } else {
            format!("{dropin}.conf")
        };
        dir.join(format!("{name}.d")).join(file)
    };
    let current = std::fs::read_to_string(&target).ok();
    let text = if args.full {
        // The copy starts from the file in effect (this one if it exists).
        match (&current, loaded.as_ref().and_then(Unit::fragment)) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(&f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?,
            (None, None) => String::new(),
        }
    } else {
        dropin_text(&target, current.as_deref().unwrap_or(""), &sources)
    };
    let parent = target.parent().expect("a file below the units directory");
    let made_dir = !parent.exists();
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let cleanup = |tmp: &Path| {
        let _ = std::fs::remove_file(tmp);
        if made_dir {
            let _ = std::fs::remove_dir(parent);
        }
    };
    let file_name = target.file_name().expect("a file name").to_string_lossy();
    let tmp = parent.join(format!(".#{file_name}.{}", std::process::id()));
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    if let Err(msg) = run_editor(&tmp) {
        cleanup(&tmp);
        return Err(msg);
    }
    let edited = match std::fs::read_to_string(&tmp) {
        Ok(t) => t,
        Err(e) => {
            cleanup(&tmp);
            return Err(format!("cannot read {}: {e}", tmp.display()));
        }
    };
    let kept = if args.full {
        edited.trim().to_string()
    } else {
        kept_text(&edited)
    };
    if kept.is_empty() {
        cleanup(&tmp);
        eprintln!(
            "Editing \"{}\" canceled: temporary file is empty.",
            target.display()
        );
        return Ok(false);
    }
    // The editor's copy goes; the file itself is replaced as the manager's
    // state files are, so a crash leaves the old text or the new.
    let written = write_atomic(&target, format!("{kept}\n").as_bytes(), |_| Ok(()));
    cleanup(&tmp);
    written.map_err(|(op, path, e)| format!("cannot {op} {}: {e}", path.display()))?;
    Ok(true)
}

/// The text the editor gets for a drop-in: its contents between the
/// markers, the unit's files commented out below.
fn dropin_text(target: &Path, current: &str, sources: &[PathBuf]) -> String {
    let mut t = format!("### Editing {}\n{KEEP}\n\n{current}", target.display());
    if !current.is_empty() && !current.ends_with('\n') {
        t.push('\n');
    }
    t.push_str(&format!("\n{DISCARD}\n"));
    for s in sources.iter().filter(|s| s.as_path() != target) {
        t.push_str(&format!("\n### {}\n", s.display()));
        for line in std::fs::read_to_string(s).unwrap_or_default().lines() {
            if line.is_empty() {
                t.push_str("#\n");
            } else {
                t.push_str(&format!("# {line}\n"));
            }
        }
    }
    t
}

/// What the user left between the markers, trimmed (all of it, trimmed,
/// when they removed the markers).
fn kept_text(edited: &str) -> String {
    let start = edited.find(KEEP).map_or(0, |i| i + KEEP.len());
    let rest = &edited[start..];
    let end = rest.find(DISCARD).unwrap_or(rest.len());
    rest[..end].trim().to_string()
}

/// Runs the user's editor on `file` and waits for it.
fn run_editor(file: &Path) -> Result<(), String> {
    let chosen = ["SYSTEMD_EDITOR", "EDITOR", "VISUAL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()));
    let status = match chosen {
        // Through sh: the variable may carry arguments ("code --wait").
        Some(editor) => Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{editor} \"$@\""))
            .arg("editor")
            .arg(file)
            .status()
            .map_err(|e| format!("cannot run the editor '{editor}': {e}"))?,
        None => {
            let found = ["editor", "nano", "vim", "vi"]
                .iter()
                .find_map(|e| Command::new(e).arg(file).status().ok());
            found.ok_or_else(|| {
                "Cannot edit files: no editor found; set $EDITOR (or $SYSTEMD_EDITOR, $VISUAL)"
                    .to_string()
            })?
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("the editor failed ({status}); nothing was changed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_text_between_the_markers_is_kept() {
        let t = dropin_text(
            Path::new("/u/x.service.d/override.conf"),
            "[Service]\nNice=3\n",
            &[],
        );
        assert!(t.starts_with("### Editing /u/x.service.d/override.conf\n"));
        assert_eq!(kept_text(&t), "[Service]\nNice=3");
        let edited = t.replace("Nice=3", "Nice=5\nEnvironment=A=1");
        assert_eq!(kept_text(&edited), "[Service]\nNice=5\nEnvironment=A=1");
        assert_eq!(kept_text(&dropin_text(Path::new("/o"), "", &[])), "");
        // Markers removed: everything is the file.
        assert_eq!(
            kept_text("  [Unit]\nDescription=x\n"),
            "[Unit]\nDescription=x"
        );
    }
}
