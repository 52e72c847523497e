//! `roster ctl`: the administrators' command line over the HTTP API.
//!
//! Every mutation becomes one domain [`Change`]; it is applied at once (`POST /v1/commands`)
//! or, with `--changeset ID`, staged in that changeset. Writes carry a generated idempotency
//! key, so failing over to another endpoint after an unknown outcome never applies twice.

pub mod args;
pub mod client;
mod commands;
mod declare;
mod output;

pub use args::{ConnArgs, CtlArgs, DevToken, Output, DEV_SECURE_DIR};
pub use client::{exit_code, Client, ClientOptions, HttpError, Transport, Unavailable, CTL_REQUEST_TIMEOUT_MS};
pub use commands::run;
pub use output::{format_ms, parse_utc_ms, print_table, terminal_safe};
