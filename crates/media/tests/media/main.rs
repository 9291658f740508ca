//! media's integration tests: one binary, one module per area.

mod fixtures;

mod names;
mod rendering;
mod sniffing;
mod transforms;
mod uploads;
mod watermark;
