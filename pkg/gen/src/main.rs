//! `bm-relay-gen OUT_DIR`: writes `bm-relay`'s man pages (`man1/*.1`) and
//! shell completions (`completions/{bm-relay.bash,_bm-relay,bm-relay.fish}`)
//! from the very clap definitions the relay parses its arguments with, so
//! the packaged documentation cannot drift from the binary.
//!
//! Why a separate binary: the man page must not be a runtime feature of the
//! relay, and the `Cli` type lives in the relay's `main.rs` (a binary, not
//! importable). That file is compiled in here as a module; its `main` is
//! never called.

#[allow(dead_code)]
#[path = "../../../relay/src/main.rs"]
mod relay_cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

/// Writes `bm-relay.1` and one `bm-relay-<sub>.1` per subcommand into `dir`.
fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(dir.join("bm-relay.1"), buf)?;
    // Not clap's own `help` subcommand: `bm-relay help X` is `man bm-relay-X` here.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        // The page's name and title are "bm-relay-<sub>", as man(1) looks it up.
        // clap's builder takes &'static str without its `string` feature;
        // this one-shot tool leaks a few short strings rather than enabling
        // the feature (which would change the relay's clap build).
        let name: &'static str = Box::leak(format!("bm-relay-{}", sub.get_name()).into_boxed_str());
        let version: &'static str = Box::leak(cmd.get_version().unwrap_or_default().to_owned().into_boxed_str());
        let sub = sub.clone().name(name).version(version);
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub).render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.1")), buf)?;
    }
    Ok(())
}

/// Writes bash, zsh and fish completions into `dir`, named as each shell's
/// vendor directory expects.
fn completions(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    use clap_complete::{generate_to, Shell};
    std::fs::create_dir_all(dir)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        generate_to(shell, &mut cmd.clone(), "bm-relay", dir)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: bm-relay-gen OUT_DIR");
        return ExitCode::from(2);
    };
    let mut cmd = relay_cli::Cli::command();
    cmd.build();
    let result = man_pages(&cmd, &out.join("man1")).and_then(|()| completions(&cmd, &out.join("completions")));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bm-relay-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
