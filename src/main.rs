//! The `lmsbridge` command.

fn main() -> std::process::ExitCode {
    lmsbridge::cli::main()
}
