use std::process::ExitCode;

fn main() -> ExitCode {
    outbound::cli::main()
}
