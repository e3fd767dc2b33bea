//! Load benchmark of `GET /v1/graph` on the real stable data, over loopback, with
//! the server in a second process.
//!
//! `cargo bench -p update-server --bench graph_load` starts this same binary again
//! as the server (env `GRAPH_LOAD_SERVE=<data dir>`), then drives it with keep-alive
//! HTTP/1.1 connections from a small load generator and prints requests/s and
//! latency percentiles. Knobs (env): `GRAPH_LOAD_SECS` (default 5),
//! `GRAPH_LOAD_CONNS` (default 32), `GRAPH_LOAD_THREADS` (server worker threads,
//! default 1: the client needs the other core of a 2-core machine). Without
//! `--bench` (i.e. `cargo test --benches`) it is a 1 s smoke run on 4 connections.
//!
//! Queries use Zincati's full parameter set with a spread of node UUIDs (so the
//! wariness hash and the rollout ramp run per request), at the middle of the real
//! 44.20260707.3.1 rollout, so half the clients see it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn serve(dir: &str) {
    let threads = env_or("GRAPH_LOAD_THREADS", 1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = update_server::Config::new(dir);
        cfg.clock = Arc::new(update_server::FixedClock::at(
            common::STABLE_START + common::STABLE_MINUTES * 30,
        ));
        let server = update_server::Server::start(cfg).await.unwrap();
        println!("{}", server.local_addr());
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await;
        server.stop().await.unwrap();
    });
}

/// Reads one HTTP/1.1 response with Content-Length; returns the status code.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
            let status: u16 = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn main() {
    if let Ok(dir) = std::env::var("GRAPH_LOAD_SERVE") {
        return serve(&dir);
    }
    // `cargo bench` passes `--bench`; under `cargo test --benches` (debug build) only
    // a one-second smoke run is worth doing.
    let bench = std::env::args().any(|a| a == "--bench");
    let secs = env_or("GRAPH_LOAD_SECS", if bench { 5 } else { 1 });
    let conns = env_or("GRAPH_LOAD_CONNS", if bench { 32 } else { 4 });
    let dir = tempfile::tempdir().unwrap();
    common::data_dir(dir.path());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("GRAPH_LOAD_SERVE", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line.trim().parse().expect("server address");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (lat, errors, bytes) = rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..conns {
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let (mut lat, mut errors, mut bytes, mut buf) = (Vec::new(), 0u64, 0u64, Vec::new());
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let req = format!(
                        "GET /v1/graph?basearch=x86_64&stream=stable&os_version=43.20260413.3.2&os_checksum=x&group=default&node_uuid={:032x}&platform=metal HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n",
                        (c << 40) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    );
                    let t0 = Instant::now();
                    s.write_all(req.as_bytes()).await.unwrap();
                    match read_response(&mut s, &mut buf).await {
                        Ok(200) => {
                            lat.push(t0.elapsed().as_micros() as u32);
                            bytes += buf.len() as u64;
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors, bytes)
            }));
        }
        let (mut all, mut errors, mut bytes) = (Vec::new(), 0, 0);
        for t in tasks {
            let (l, e, b) = t.await.unwrap();
            all.extend(l);
            errors += e;
            bytes += b;
        }
        (all, errors, bytes)
    });
    drop(child.stdin.take());
    let _ = child.wait();

    let mut lat = lat;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let n = lat.len() as f64;
    println!(
        "graph_load: {} ok, {errors} errors in {secs} s over {conns} connections: {:.0} req/s, {:.1} MB/s; latency p50 {} us, p90 {} us, p99 {} us, max {} us",
        lat.len(),
        n / secs as f64,
        bytes as f64 / secs as f64 / 1e6,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
    assert_eq!(errors, 0, "failed requests");
}
