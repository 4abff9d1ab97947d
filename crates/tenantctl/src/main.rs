//! `tenantctl`: the operator CLI of the tenant fleet. See `tenantctl --help`.

mod cmd;
mod out;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    out::use_colors(cli.color());
    match cmd::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
