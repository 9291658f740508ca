use std::process::ExitCode;

fn main() -> ExitCode {
    service_kit::cli::run::<spaces_service::SpacesService>()
}
