use std::process::ExitCode;

fn main() -> ExitCode {
    enos_connect::cli::main()
}
