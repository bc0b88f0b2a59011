//! `corrald`: the corral daemon.
fn main() -> std::process::ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "--system") {
        return corral::system::cli::main();
    }
    std::process::ExitCode::SUCCESS
}
