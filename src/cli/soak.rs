//! `xennet soak`.

use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub(crate) struct SoakArgs {
    /// How long to run (fractions allowed: CI runs 0.25).
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
}

pub(crate) fn cli_soak(a: &SoakArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xennet soak: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !(a.minutes > 0.0 && a.minutes <= 24.0 * 60.0) {
        eprintln!("xennet soak: --minutes must be in (0, 1440]");
        return ExitCode::from(2);
    }
    let opts = xennet::soak::SoakOptions {
        duration: std::time::Duration::from_secs_f64(a.minutes * 60.0),
        exe,
        dir: xennet_platform::shm::RuntimeDir::default_path()
            .join(format!("soak-{}", std::process::id())),
    };
    match xennet::soak::run(&opts) {
        Ok(rep) => {
            print!("{}", rep.text);
            if rep.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xennet soak: {e}");
            ExitCode::FAILURE
        }
    }
}
