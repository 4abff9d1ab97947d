//! `tenantctl`: the operator CLI of the tenant fleet. See `tenantctl --help`.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
