#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = strongroom::cli::Cli::parse();
    match strongroom::cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("strongroom: {e:#}");
            std::process::exit(2);
        }
    }
}
