//! `corral`: the command-line client.
fn main() -> std::process::ExitCode {
    corral::cli::main()
}
