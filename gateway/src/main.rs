use std::process::ExitCode;

fn main() -> ExitCode {
    service_kit::cli::run::<gateway::GatewayPart>()
}
