//! `xennet demo`.

use std::process::ExitCode;

use clap::Args;

use super::*;

#[derive(Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    switch: SwitchArgs,
    /// Number of guest domains.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    guests: u16,
    /// Pings per target.
    #[arg(long, default_value_t = 4)]
    count: u16,
    /// Run every domain as a thread of this process instead of separate processes.
    #[arg(long)]
    threads: bool,
}

pub(crate) fn demo(args: DemoArgs) -> ExitCode {
    let mode = parse_mode(&args.switch.mode);
    let uplink = match args.switch.uplink.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("xennet demo: --uplink: {e}");
            return ExitCode::from(2);
        }
    };
    let captures = match parse_captures("demo", &args.switch.capture) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = xennet::demo::DemoOptions {
        mode,
        proxy_arp: !args.switch.no_proxy_arp,
        uplink,
        captures,
        guests: args.guests,
        count: args.count,
    };
    if !args.threads {
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("xennet demo: cannot find my own executable: {e}");
                return ExitCode::FAILURE;
            }
        };
        return match xennet::demo::run_processes(&opts, &exe) {
            Ok((text, ok)) => {
                print!("{text}");
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("xennet demo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match xennet::demo::run(&opts) {
        Ok(report) => {
            print!("{}", report.text);
            let expect_loss = !opts.proxy_arp && opts.mode == xennet_switch::Mode::Route;
            let remote_ok =
                report
                    .remote_pings
                    .iter()
                    .all(|&(_, rx)| if expect_loss { rx == 0 } else { rx > 0 });
            let guests_ok = report.guest_pings.map_or(true, |(_, rx)| rx > 0);
            if remote_ok && guests_ok && (expect_loss || report.tcp_echo_ok) {
                ExitCode::SUCCESS
            } else {
                eprintln!("xennet demo: a claim did not hold");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xennet demo: {e}");
            ExitCode::FAILURE
        }
    }
}
