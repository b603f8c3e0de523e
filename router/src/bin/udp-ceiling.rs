//! `udp-ceiling`: measures this machine's ceiling for forwarding (receive, decrypt, and per
//! sink encrypt and send) with the router's own I/O backend; prints one JSON line.
//! See `router::ceiling` and docs/performance.md; `scripts/bench.sh` runs it.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use router::ceiling::{CeilingConfig, run};
use router::config::Backend;
use router_engine::srtp::SrtpProfile;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Profile {
    Aes128Gcm,
    Aes256Gcm,
    Aes128CmSha1,
}

#[derive(Debug, Parser)]
#[command(about = "Measure the forwarding ceiling of this machine with the router's I/O backend")]
struct Args {
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// Sinks each received packet goes to.
    #[arg(long, default_value_t = 10)]
    fanout: usize,
    /// Measured seconds (after a 0.5 s warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// RTP packet length before encryption.
    #[arg(long, default_value_t = 1200)]
    packet_len: usize,
    #[arg(long, value_enum, default_value = "aes256-gcm")]
    profile: Profile,
    /// Core of the measured loop.
    #[arg(long)]
    core: Option<usize>,
    /// Core of the feeder thread.
    #[arg(long)]
    feeder_core: Option<usize>,
    /// Incoming packets per second; 0 = as fast as the feeder can (saturates the loop).
    #[arg(long, default_value_t = 0)]
    input_rate: u64,
    /// Sends queued per receive pass before a flush (the router's `send_budget`).
    #[arg(long, default_value_t = router::io::IoOptions::default().send_budget)]
    send_budget: usize,
}

fn main() {
    let args = Args::parse();
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        eprintln!("udp-ceiling: --seconds must be in (0, 3600]");
        std::process::exit(2);
    }
    let cfg = CeilingConfig {
        backend: args.backend.into(),
        fanout: args.fanout,
        duration: Duration::from_secs_f64(args.seconds),
        packet_len: args.packet_len,
        profile: match args.profile {
            Profile::Aes128Gcm => SrtpProfile::AeadAes128Gcm,
            Profile::Aes256Gcm => SrtpProfile::AeadAes256Gcm,
            Profile::Aes128CmSha1 => SrtpProfile::Aes128CmHmacSha1_80,
        },
        core: args.core,
        feeder_core: args.feeder_core,
        input_rate: args.input_rate,
        send_budget: args.send_budget,
    };
    match run(&cfg) {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("udp-ceiling: {e}");
                std::process::exit(1);
            }
        },
        Err(e) => {
            eprintln!("udp-ceiling: {e}");
            std::process::exit(1);
        }
    }
}
