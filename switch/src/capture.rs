//! Packet captures: pcap files readable by tshark/Wireshark (`LINKTYPE_ETHERNET`,
//! microsecond timestamps from the real clock, snaplen 65535).
//!
//! `--capture PORT=FILE.pcap` attaches a capture to a port; it records the frames
//! crossing that port in both directions (into the fabric and out of it). A capture
//! on the bridge's name (`xenbr0=all.pcap`) records every frame entering the fabric
//! from any port. A capture whose file fails to write is closed with one warning;
//! the data path never fails because of a capture.
//!
//! Frames are buffered and written out once per data-plane pass
//! ([`Captures::end_pass`], which [`DriverDomain::poll`](crate::domain::DriverDomain::poll)
//! calls), so a running capture can be read as it grows (`tshark -r FILE`,
//! `tail -c +1 -f FILE | tshark -r -`): the file always ends on a whole record after
//! a pass, and a busy pass costs one write, not one per frame.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use crate::PortId;

/// Snapshot length written to the header; longer frames are truncated.
pub const SNAPLEN: u32 = 65535;

/// `PORT=FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    /// A port name, or the bridge name for everything entering the fabric.
    pub target: String,
    /// The pcap file to write.
    pub path: PathBuf,
}

/// Capture errors.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Not `PORT=FILE`.
    #[error("capture {0:?}: expected PORT=FILE, e.g. vif1.0=vif1.pcap")]
    Syntax(String),
    /// Creating or writing the file failed.
    #[error("capture file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl FromStr for CaptureSpec {
    type Err = CaptureError;
    fn from_str(s: &str) -> Result<Self, CaptureError> {
        match s.split_once('=') {
            Some((t, f)) if !t.trim().is_empty() && !f.trim().is_empty() => Ok(CaptureSpec {
                target: t.trim().to_string(),
                path: PathBuf::from(f.trim()),
            }),
            _ => Err(CaptureError::Syntax(s.to_string())),
        }
    }
}

/// The file behind a [`PcapWriter`], shared so that [`PcapSink::flush`] can reach it
/// (the writer owns its sink and offers no flush).
#[derive(Clone)]
struct SharedFile(Arc<Mutex<BufWriter<File>>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("capture file lock poisoned"))?
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("capture file lock poisoned"))?
            .flush()
    }
}

/// One pcap file being written.
pub struct PcapSink {
    path: PathBuf,
    file: SharedFile,
    writer: Option<PcapWriter<SharedFile>>,
    frames: u64,
    /// Frames written since the last flush.
    unflushed: bool,
}

impl std::fmt::Debug for PcapSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapSink")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .finish()
    }
}

impl PcapSink {
    /// Creates (truncates) `path` and writes the pcap header.
    pub fn create(path: &Path) -> Result<PcapSink, CaptureError> {
        let err = |message: String| CaptureError::File {
            path: path.to_path_buf(),
            message,
        };
        let file = File::create(path).map_err(|e| err(e.to_string()))?;
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::native(),
        };
        let shared = SharedFile(Arc::new(Mutex::new(BufWriter::new(file))));
        let writer =
            PcapWriter::with_header(shared.clone(), header).map_err(|e| err(e.to_string()))?;
        Ok(PcapSink {
            path: path.to_path_buf(),
            file: shared,
            writer: Some(writer),
            frames: 0,
            // The header is buffered too: a reader needs it before the first frame.
            unflushed: true,
        })
    }

    /// Appends one frame stamped with the current wall-clock time.
    pub fn write(&mut self, frame: &[u8]) {
        let Some(w) = &mut self.writer else { return };
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let data = &frame[..frame.len().min(SNAPLEN as usize)];
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if let Err(e) = w.write_packet(&PcapPacket::new(ts, orig_len, data)) {
            tracing::warn!(path = %self.path.display(), error = %e, "capture write failed; capture closed");
            self.writer = None;
            return;
        }
        self.frames += 1;
        self.unflushed = true;
    }

    /// Flushes buffered frames to the file.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.file.flush().map_err(|e| CaptureError::File {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        self.unflushed = false;
        Ok(())
    }

    /// Flushes what was written since the last flush; a capture whose file fails is
    /// closed with one warning (the data path carries on).
    fn end_pass(&mut self) {
        if !self.unflushed || self.writer.is_none() {
            return;
        }
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "capture flush failed; capture closed");
            self.writer = None;
        }
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PcapSink {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "capture flush failed");
        }
    }
}

/// The captures of a driver domain, by port.
#[derive(Debug, Default)]
pub struct Captures {
    by_port: HashMap<PortId, Vec<PcapSink>>,
    all_ingress: Vec<PcapSink>,
}

impl Captures {
    /// Records frames crossing `port` in both directions into `sink`.
    pub fn attach_port(&mut self, port: PortId, sink: PcapSink) {
        self.by_port.entry(port).or_default().push(sink);
    }

    /// Records every frame entering the fabric into `sink` (a capture on the bridge).
    pub fn attach_all(&mut self, sink: PcapSink) {
        self.all_ingress.push(sink);
    }

    /// Closes the captures of a port.
    pub fn detach_port(&mut self, port: PortId) {
        self.by_port.remove(&port);
    }

    /// True if nothing is captured.
    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty() && self.all_ingress.is_empty()
    }

    /// A frame entering the fabric from `port`.
    pub fn ingress(&mut self, port: PortId, frame: &[u8]) {
        if let Some(sinks) = self.by_port.get_mut(&port) {
            sinks.iter_mut().for_each(|s| s.write(frame));
        }
        self.all_ingress.iter_mut().for_each(|s| s.write(frame));
    }

    /// A frame leaving the fabric through `port`.
    pub fn egress(&mut self, port: PortId, frame: &[u8]) {
        if let Some(sinks) = self.by_port.get_mut(&port) {
            sinks.iter_mut().for_each(|s| s.write(frame));
        }
    }

    /// Ends a data-plane pass: the frames captured in it go to their files (a write
    /// per capture that saw frames, none otherwise).
    pub fn end_pass(&mut self) {
        self.by_port
            .values_mut()
            .flatten()
            .chain(self.all_ingress.iter_mut())
            .for_each(PcapSink::end_pass);
    }

    /// Flushes every capture file.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        for s in self
            .by_port
            .values_mut()
            .flatten()
            .chain(self.all_ingress.iter_mut())
        {
            s.flush()?;
        }
        Ok(())
    }
}
