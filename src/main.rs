//! `xennet`: the toolstack CLI (plays xl/libxl for the plain-process platform).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xennet", version, about = "Xen PV network split driver, in plain processes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main demonstration.
    Demo,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            println!("xennet demo: not yet implemented");
            std::process::ExitCode::SUCCESS
        }
    }
}
