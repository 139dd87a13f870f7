//! Replays a pcap file into the uplink: each frame is sent into the fabric at its
//! recorded offset from the first frame, relative to the first poll. Frames the
//! fabric delivers to the replay are counted and discarded.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;
use xennet_ring::time::{Duration, Instant};

use super::Endpoint;

/// Most frames loaded from one file.
const MAX_FRAMES: usize = 1_000_000;

/// Replay errors.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Could not open or parse the file.
    #[error("pcap {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

/// A pcap replay endpoint.
#[derive(Debug)]
pub struct PcapReplay {
    frames: VecDeque<(Duration, Vec<u8>)>,
    start: Option<Instant>,
    received: u64,
}

impl PcapReplay {
    /// Loads an Ethernet pcap file.
    pub fn load(path: &Path) -> Result<PcapReplay, ReplayError> {
        let err = |m: String| ReplayError::File {
            path: path.display().to_string(),
            message: m,
        };
        let file = File::open(path).map_err(|e| err(e.to_string()))?;
        let mut reader = PcapReader::new(BufReader::new(file)).map_err(|e| err(e.to_string()))?;
        if reader.header().datalink != DataLink::ETHERNET {
            return Err(err(format!(
                "link type {:?} is not Ethernet",
                reader.header().datalink
            )));
        }
        let mut frames = VecDeque::new();
        let mut first = None;
        while let Some(p) = reader.next_packet() {
            let p = p.map_err(|e| err(e.to_string()))?;
            if frames.len() >= MAX_FRAMES {
                return Err(err(format!("more than {MAX_FRAMES} frames")));
            }
            let ts = p.timestamp;
            let base = *first.get_or_insert(ts);
            let off = ts.checked_sub(base).unwrap_or_default();
            frames.push_back((
                Duration::from_micros(off.as_micros().min(u128::from(u64::MAX)) as u64),
                p.data.into_owned(),
            ));
        }
        Ok(PcapReplay {
            frames,
            start: None,
            received: 0,
        })
    }

    /// Frames not yet sent.
    pub fn remaining(&self) -> usize {
        self.frames.len()
    }

    /// Frames the fabric delivered to the replay.
    pub fn received(&self) -> u64 {
        self.received
    }
}

impl Endpoint for PcapReplay {
    fn receive(&mut self, _now: Instant, _frame: &[u8]) {
        self.received += 1;
    }

    fn poll(&mut self, now: Instant, tx: &mut dyn FnMut(&[u8])) {
        let start = *self.start.get_or_insert(now);
        while let Some((off, _)) = self.frames.front() {
            if now < start + *off {
                break;
            }
            if let Some((_, f)) = self.frames.pop_front() {
                tx(&f);
            }
        }
    }

    fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let start = self.start.unwrap_or(now);
        self.frames.front().map(|(off, _)| start + *off)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
