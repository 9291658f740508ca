//! The first-time transform benchmark of issue 14: a 12-megapixel JPEG
//! (4000×3000, made here: a gradient with noise, quality 90) rendered to a
//! 400-pixel-wide WebP, one render after another, then several at once.
//! Reports p50/p99 latency and peak RSS; not a test, nothing is asserted.
//!
//! ```text
//! cargo run --release -p media --example transform_bench -- [ITERATIONS] [THREADS]
//! ```
//! Defaults: 60 sequential renders; 2 threads (this machine's cores) for the
//! concurrent part, 20 renders each.

use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, RgbImage};
use media::{Limits, Transform, render};

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);

    let source = photo_jpeg(4000, 3000, 90);
    println!(
        "source: 4000x3000 JPEG q90, {:.1} MB; RSS {:.0} MB",
        source.len() as f64 / 1e6,
        rss_mb("VmRSS")
    );
    let transform = Transform::parse([("w", "400"), ("f", "webp")]).unwrap();
    let limits = Limits::default();

    let first = render(&source, &transform, None, &limits).expect("render");
    println!(
        "output: {}x{} {} {:.1} KB (variant {})",
        first.width,
        first.height,
        first.mime(),
        first.bytes.len() as f64 / 1e3,
        transform.variant_key()
    );

    let full_decode = time(|| {
        image::load_from_memory(&source).expect("decode");
    });
    println!("for comparison, a full-size decode of the source: {full_decode:.1?}");

    reset_peak_rss();
    let baseline = rss_mb("VmRSS");
    let mut sequential: Vec<Duration> = (0..iterations)
        .map(|_| time(|| drop(render(&source, &transform, None, &limits).expect("render"))))
        .collect();
    report(
        &format!("sequential, {iterations} renders"),
        &mut sequential,
    );
    println!(
        "  peak RSS {:.0} MB (baseline {baseline:.0} MB)",
        rss_mb("VmHWM")
    );

    reset_peak_rss();
    let per_thread = iterations.div_ceil(threads).max(10);
    let wall = Instant::now();
    let mut concurrent: Vec<Duration> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    (0..per_thread)
                        .map(|_| {
                            time(|| {
                                drop(render(&source, &transform, None, &limits).expect("render"))
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let wall = wall.elapsed();
    report(
        &format!("{threads} at once, {} renders", concurrent.len()),
        &mut concurrent,
    );
    println!(
        "  {:.1} renders/s; peak RSS {:.0} MB (baseline {baseline:.0} MB)",
        concurrent.len() as f64 / wall.as_secs_f64(),
        rss_mb("VmHWM")
    );
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let rank =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "{label}: p50 {:.1?}  p99 {:.1?}  max {:.1?}",
        rank(0.50),
        rank(0.99),
        samples[samples.len() - 1]
    );
}

/// A photo-like image: smooth gradients, a few shapes, per-pixel noise.
fn photo_jpeg(width: u32, height: u32, quality: u8) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 24) as i32 - 12
    };
    let image = RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let circle = ((fx - 0.6).powi(2) + (fy - 0.4).powi(2)).sqrt() < 0.2;
        let base = [
            255.0 * fx,
            255.0 * fy,
            if circle {
                230.0
            } else {
                128.0 + 100.0 * (fx * 12.0).sin() * (fy * 9.0).cos()
            },
        ];
        image::Rgb(base.map(|v| (v as i32 + noise()).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .expect("encode the source");
    out
}

/// A line of /proc/self/status, in MB (0 where there is no procfs).
fn rss_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets VmHWM to the current RSS (Linux: `5` into clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
