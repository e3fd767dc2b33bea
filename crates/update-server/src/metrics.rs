//! Prometheus text exposition for `/metrics`, with upstream's metric names where the
//! meaning is the same (`fcos_cincinnati_pe_*`, `fcos_cincinnati_gb_*`).

use crate::reports::Outcome;
use crate::source::Snapshot;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the wariness histogram: 0.0, 0.1, ... 1.0 (upstream's buckets).
const BUCKETS: usize = 11;

/// Counters updated by the request handlers.
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) start_time: i64,
    graph_requests: AtomicU64,
    graph_by_code: [AtomicU64; 4],
    wariness_buckets: [AtomicU64; BUCKETS],
    wariness_count: AtomicU64,
    wariness_sum_bits: AtomicU64,
    pub(crate) reloads: AtomicU64,
    pub(crate) reload_failures: AtomicU64,
    reports: [AtomicU64; 3],
}

const CODES: [u16; 4] = [200, 400, 404, 500];

impl Metrics {
    pub(crate) fn new(start_time: i64) -> Metrics {
        Metrics {
            start_time,
            ..Default::default()
        }
    }

    pub(crate) fn graph_request(&self) {
        self.graph_requests.fetch_add(1, Relaxed);
    }

    pub(crate) fn graph_response(&self, code: u16) {
        if let Some(i) = CODES.iter().position(|&c| c == code) {
            self.graph_by_code[i].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn observe_wariness(&self, w: f64) {
        let bucket = (0..BUCKETS)
            .find(|&k| w <= k as f64 / 10.0)
            .unwrap_or(BUCKETS - 1);
        self.wariness_buckets[bucket].fetch_add(1, Relaxed);
        self.wariness_count.fetch_add(1, Relaxed);
        let _ = self
            .wariness_sum_bits
            .fetch_update(Relaxed, Relaxed, |bits| {
                Some((f64::from_bits(bits) + w).to_bits())
            });
    }

    pub(crate) fn report(&self, o: Outcome) {
        self.reports[o as usize].fetch_add(1, Relaxed);
    }

    /// Renders all metrics; gauges about graphs and pauses come from `snap`/`paused`.
    pub(crate) fn render(&self, snap: &Snapshot, paused: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP fcos_cincinnati_pe_v1_graph_incoming_requests_total Total number of incoming HTTP client request to /v1/graph\n# TYPE fcos_cincinnati_pe_v1_graph_incoming_requests_total counter");
        let _ = writeln!(
            out,
            "fcos_cincinnati_pe_v1_graph_incoming_requests_total {}",
            self.graph_requests.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP ferrocore_update_server_graph_responses_total /v1/graph responses by status code\n# TYPE ferrocore_update_server_graph_responses_total counter");
        for (i, code) in CODES.iter().enumerate() {
            let _ = writeln!(
                out,
                "ferrocore_update_server_graph_responses_total{{code=\"{code}\"}} {}",
                self.graph_by_code[i].load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP fcos_cincinnati_pe_v1_graph_rollout_wariness Per-request rollout wariness.\n# TYPE fcos_cincinnati_pe_v1_graph_rollout_wariness histogram");
        let mut cumulative = 0;
        for k in 0..BUCKETS {
            cumulative += self.wariness_buckets[k].load(Relaxed);
            let _ = writeln!(
                out,
                "fcos_cincinnati_pe_v1_graph_rollout_wariness_bucket{{le=\"{:.1}\"}} {cumulative}",
                k as f64 / 10.0
            );
        }
        let count = self.wariness_count.load(Relaxed);
        let _ = writeln!(
            out,
            "fcos_cincinnati_pe_v1_graph_rollout_wariness_bucket{{le=\"+Inf\"}} {count}\nfcos_cincinnati_pe_v1_graph_rollout_wariness_sum {}\nfcos_cincinnati_pe_v1_graph_rollout_wariness_count {count}",
            f64::from_bits(self.wariness_sum_bits.load(Relaxed))
        );
        let _ = writeln!(out, "# HELP fcos_cincinnati_gb_scraper_graph_final_releases Number of releases in the final graph\n# TYPE fcos_cincinnati_gb_scraper_graph_final_releases gauge");
        let scopes = || {
            snap.streams.iter().flat_map(|(stream, d)| {
                d.graphs.iter().map(move |((arch, oci), g)| {
                    let kind = if *oci { "oci" } else { "checksum" };
                    (
                        format!("basearch=\"{arch}\",stream=\"{stream}\",type=\"{kind}\""),
                        g,
                    )
                })
            })
        };
        for (labels, g) in scopes() {
            let _ = writeln!(
                out,
                "fcos_cincinnati_gb_scraper_graph_final_releases{{{labels}}} {}",
                g.graph.nodes.len()
            );
        }
        let _ = writeln!(out, "# HELP fcos_cincinnati_gb_scraper_graph_final_edges Number of edges in the final graph\n# TYPE fcos_cincinnati_gb_scraper_graph_final_edges gauge");
        for (labels, g) in scopes() {
            let _ = writeln!(
                out,
                "fcos_cincinnati_gb_scraper_graph_final_edges{{{labels}}} {}",
                g.graph.edges.len()
            );
        }
        let _ = writeln!(
            out,
            "# HELP fcos_cincinnati_gb_scraper_graph_last_refresh_timestamp Unix time of the last successful input load\n# TYPE fcos_cincinnati_gb_scraper_graph_last_refresh_timestamp gauge\nfcos_cincinnati_gb_scraper_graph_last_refresh_timestamp {}",
            snap.loaded_at
        );
        let _ = writeln!(
            out,
            "# HELP ferrocore_update_server_reloads_total Input reloads after a file change\n# TYPE ferrocore_update_server_reloads_total counter\nferrocore_update_server_reloads_total {}\n# HELP ferrocore_update_server_reload_failures_total Reloads that failed (previous inputs kept)\n# TYPE ferrocore_update_server_reload_failures_total counter\nferrocore_update_server_reload_failures_total {}",
            self.reloads.load(Relaxed),
            self.reload_failures.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP ferrocore_update_server_reports_total Update outcome reports received\n# TYPE ferrocore_update_server_reports_total counter");
        for o in [
            Outcome::Success,
            Outcome::RolledBack,
            Outcome::FailedToDeploy,
        ] {
            let _ = writeln!(
                out,
                "ferrocore_update_server_reports_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                self.reports[o as usize].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ferrocore_update_server_paused_rollouts Rollouts paused after failure reports\n# TYPE ferrocore_update_server_paused_rollouts gauge\nferrocore_update_server_paused_rollouts {paused}\n# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
            self.start_time
        );
        out
    }
}
