use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

fn main() -> ExitCode {
    service_kit::cli::run::<events_service::EventsService>()
}
