//! `xennet platform-check`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use xennet_ring::DomId;

#[derive(Args)]
pub(crate) struct CheckArgs {
    #[command(subcommand)]
    role: Role,
    /// Seconds to wait for the other domain.
    #[arg(long, default_value_t = 120)]
    wait: u64,
}

#[derive(Subcommand)]
enum Role {
    /// The plain-process reference: each case's GNTST status on the shm platform.
    Shm,
    /// In a domU: grant pages to the copier and count the events it sends.
    Grant {
        /// The copying domain.
        #[arg(long, default_value_t = 0)]
        copier: u16,
    },
    /// In dom0: copy through the granter's grants, compare with shm, send events.
    Copy {
        /// The granting domain.
        #[arg(long)]
        domid: u16,
    },
}

pub(crate) fn cli_check(a: CheckArgs) -> ExitCode {
    let within = Duration::from_secs(a.wait);
    let r = match a.role {
        Role::Shm => xennet::check::shm().map(|o| (o, true)),
        Role::Grant { copier } => xennet::check::grant(DomId(copier), within).map(|o| (o, true)),
        Role::Copy { domid } => xennet::check::copy(domid, within),
    };
    match r {
        Ok((out, same)) => {
            print!("{out}");
            if same {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xennet platform-check: {e}");
            ExitCode::FAILURE
        }
    }
}
