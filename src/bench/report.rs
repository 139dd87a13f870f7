//! Printing the study: a table per path with ratios to the peers, JSON, SVG charts.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use super::Sample;

/// The peer a xennet path is compared against (same frame size and batch).
fn peer_of<'a>(samples: &'a [Sample], peer: &str, s: &Sample) -> Option<&'a Sample> {
    samples
        .iter()
        .find(|p| p.path == peer && p.frame_bytes == s.frame_bytes && p.batch == s.batch)
}

/// Render the table for every path, xennet paths with their ratios to each peer.
pub fn table(samples: &[Sample]) -> String {
    let mut out = String::new();
    let mut paths: Vec<&str> = Vec::new();
    for s in samples {
        if !paths.contains(&s.path.as_str()) {
            paths.push(&s.path);
        }
    }
    for path in paths {
        let _ = writeln!(out, "\npath {path}");
        let _ = writeln!(
            out,
            "{:>7} {:>5} {:>12} {:>9} {:>10} {:>9} {:>8} {:>6} {:>10} {:>10}",
            "bytes",
            "batch",
            "packets/s",
            "Gbit/s",
            "cpu ns/pkt",
            "notif/pkt",
            "drops",
            "intact",
            "x sockpair",
            "x veth"
        );
        for s in samples.iter().filter(|s| s.path == path) {
            let ratio = |peer: &str| match peer_of(samples, peer, s) {
                Some(p) if p.path != s.path && p.packets_per_sec > 0.0 => {
                    format!("{:.2}x", s.packets_per_sec / p.packets_per_sec)
                }
                _ => "-".to_string(),
            };
            let _ = writeln!(
                out,
                "{:>7} {:>5} {:>12.0} {:>9.3} {:>10.1} {:>9.4} {:>8} {:>6} {:>10} {:>10}",
                s.frame_bytes,
                s.batch,
                s.packets_per_sec,
                s.gbit_per_sec,
                s.cpu_ns_per_packet,
                s.notifications_per_packet,
                s.drops,
                if s.intact { "yes" } else { "NO" },
                ratio("socketpair"),
                ratio("veth"),
            );
        }
    }
    out
}

/// Single-core memcpy bandwidth for frames of `frame` bytes, in bytes per second:
/// frames copied one by one between two regions of `region` bytes, each frame at the
/// start of its page in both, for `time`. 32 MiB regions stream from memory; 1 MiB
/// regions (the size of one queue's buffer pool) stay in the caches.
pub fn memcpy_bytes_per_sec(frame: usize, region: usize, time: std::time::Duration) -> f64 {
    let slot = frame.next_multiple_of(4096);
    let n = (region / slot).max(1);
    let src = vec![0x5au8; n * slot];
    let mut dst = vec![0u8; n * slot];
    let pass = |dst: &mut [u8]| {
        for i in 0..n {
            let at = i * slot;
            dst[at..at + frame].copy_from_slice(&src[at..at + frame]);
        }
        std::hint::black_box(&*dst);
    };
    pass(&mut dst); // fault the pages in, untimed
    let t0 = std::time::Instant::now();
    let mut bytes = 0u64;
    while t0.elapsed() < time {
        pass(&mut dst);
        bytes += (n * frame) as u64;
    }
    bytes as f64 / t0.elapsed().as_secs_f64()
}

/// The memcpy reference of the 1514-byte target: per frame size of 512 bytes or more,
/// single-core memcpy bandwidth (streaming and cache-resident) and each xennet path's
/// end-to-end bytes per second as a share of both.
pub fn memcpy_section(samples: &[Sample], time: std::time::Duration) -> String {
    let mut out = String::new();
    let ours = |s: &&Sample| !matches!(s.path.as_str(), "socketpair" | "veth");
    let mut sizes: Vec<usize> = samples
        .iter()
        .filter(ours)
        .map(|s| s.frame_bytes)
        .filter(|&b| b >= 512)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nmemcpy reference (one core, frame by frame between two regions: 32 MiB streams \
         from memory, 1 MiB stays in cache)"
    );
    let _ = writeln!(
        out,
        "{:>7} {:>11} {:>11} {:>10} {:>5} {:>10} {:>8} {:>8}",
        "bytes", "32MiB GB/s", "1MiB GB/s", "path", "batch", "path GB/s", "/32MiB", "/1MiB"
    );
    for size in sizes {
        let stream = memcpy_bytes_per_sec(size, 32 << 20, time);
        let cached = memcpy_bytes_per_sec(size, 1 << 20, time);
        for s in samples
            .iter()
            .filter(ours)
            .filter(|s| s.frame_bytes == size)
        {
            let b = s.packets_per_sec * size as f64;
            let _ = writeln!(
                out,
                "{:>7} {:>11.2} {:>11.2} {:>10} {:>5} {:>10.2} {:>7.0}% {:>7.0}%",
                size,
                stream / 1e9,
                cached / 1e9,
                s.path,
                s.batch,
                b / 1e9,
                100.0 * b / stream,
                100.0 * b / cached
            );
        }
    }
    out
}

/// Write every sample as a JSON array.
pub fn write_json(path: &Path, samples: &[Sample]) -> io::Result<()> {
    let text = serde_json::to_string_pretty(samples).map_err(io::Error::other)?;
    std::fs::write(path, text)
}

/// Write SVG charts: ns/packet against frame size (at the largest batch measured) and
/// against batch size (at 64-byte frames), one line per path.
pub fn write_plots(dir: &Path, samples: &[Sample]) -> io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let max_batch = samples.iter().map(|s| s.batch).max().unwrap_or(1);
    let by_size = dir.join("ns_per_packet_vs_frame_size.svg");
    chart(
        &by_size,
        &format!("CPU ns per packet vs frame size (batch {max_batch})"),
        "frame bytes (log2)",
        samples,
        |s| (s.batch == max_batch).then(|| ((s.frame_bytes as f64).log2(), s.cpu_ns_per_packet)),
    )?;
    written.push(by_size);
    let by_batch = dir.join("ns_per_packet_vs_batch.svg");
    chart(
        &by_batch,
        "CPU ns per packet vs batch size (64-byte frames)",
        "batch (log2)",
        samples,
        |s| (s.frame_bytes == 64).then(|| ((s.batch as f64).log2(), s.cpu_ns_per_packet)),
    )?;
    written.push(by_batch);
    Ok(written)
}

fn chart(
    file: &Path,
    title: &str,
    x_label: &str,
    samples: &[Sample],
    point: impl Fn(&Sample) -> Option<(f64, f64)>,
) -> io::Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| io::Error::other(format!("plot {}: {e}", file.display()));
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for s in samples {
        if let Some(p) = point(s) {
            match series.iter_mut().find(|(name, _)| *name == s.path) {
                Some((_, pts)) => pts.push(p),
                None => series.push((s.path.clone(), vec![p])),
            }
        }
    }
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y1 = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1.0f64, f64::max);
    let (x0, x1) = if x0 <= x1 {
        (x0 - 0.5, x1 + 0.5)
    } else {
        (0.0, 1.0)
    };
    let root = SVGBackend::new(file, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0.0..y1 * 1.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("CPU ns / packet")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
