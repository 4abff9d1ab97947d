//! What benchmarks share: the CPU time of this machine's processes by command name, from
//! `/proc` (how much PostgreSQL, RabbitMQ and our own processes spent on a phase), and a quiet
//! start for every measured phase, in a database of the benchmark's own.

use std::collections::HashMap;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

/// CPU seconds used so far by every process, keyed by command name and pid. Processes that end
/// between two snapshots are not counted (PostgreSQL backends live as long as their
/// connections, which outlive a phase).
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(HashMap<(String, u32), f64>);

impl CpuSnapshot {
    pub fn now() -> Self {
        let mut seen = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat[open + 1..close].to_owned();
            // utime and stime: the 12th and 13th fields after the name, in 1/100 s.
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks: f64 = fields
                .get(11..13)
                .unwrap_or_default()
                .iter()
                .filter_map(|f| f.parse::<f64>().ok())
                .sum();
            seen.insert((name, pid), ticks / 100.0);
        }
        CpuSnapshot(seen)
    }

    /// What each process used between `before` and this snapshot.
    pub fn since(&self, before: &CpuSnapshot) -> CpuSnapshot {
        CpuSnapshot(
            self.0
                .iter()
                .map(|(key, now)| (key.clone(), now - before.0.get(key).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// CPU seconds of the processes named `name`.
    pub fn of(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, s)| s)
            .sum()
    }

    /// `PostgreSQL 1.23 ms, RabbitMQ 0.45 ms, {label} 0.67 ms` per unit of work, with `ours`
    /// the command name of this project's processes in the phase.
    pub fn per_unit(&self, units: usize, ours: &str, label: &str) -> String {
        let ms = |name: &str| 1000.0 * self.of(name) / units.max(1) as f64;
        format!(
            "PostgreSQL {:.2} ms, RabbitMQ {:.2} ms, {label} {:.2} ms",
            ms("postgres"),
            ms("beam.smp"),
            ms(ours)
        )
    }
}

/// Waits until PostgreSQL has written out what earlier phases left dirty and the disks are idle
/// (at most two minutes), so that a measured phase does not pay for the previous one's
/// write-back: `CHECKPOINT`, `sync`, then disks busy less than 5% of half a second.
///
/// # Errors
/// The checkpoint failed.
pub async fn settle(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("CHECKPOINT").execute(&mut *conn).await?;
    let _ = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await;
    let window = std::time::Duration::from_millis(500);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut busy = disk_busy_ms();
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(window).await;
        let now = disk_busy_ms();
        if now.saturating_sub(busy) * 20 <= window.as_millis() as u64 {
            break;
        }
        busy = now;
    }
    Ok(())
}

/// Milliseconds the busiest whole disk has spent doing I/O (`/proc/diskstats`' io_ticks).
fn disk_busy_ms() -> u64 {
    std::fs::read_to_string("/proc/diskstats")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields.get(2)?;
            // Whole disks only: partitions repeat their disk's ticks.
            let whole = !name.starts_with("loop")
                && !name.starts_with("ram")
                && std::path::Path::new(&format!("/sys/block/{name}")).exists();
            whole.then(|| fields.get(12)?.parse::<u64>().ok()).flatten()
        })
        .max()
        .unwrap_or(0)
}

/// Creates the database `name` on `server` (a benchmark's own; drop it with
/// [`crate::pg::drop_database`]).
///
/// # Errors
/// The server is unreachable or refused.
pub async fn create_database(server: &PgConnectOptions, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = server.connect().await?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut admin)
        .await?;
    admin.close().await
}
