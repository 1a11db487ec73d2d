//! Connection pool gauges in the Prometheus text format, sampled when `/metrics` is read:
//! connections idle and in use, and the most each pool may hold. SQLite has a single writer,
//! a sqlx reader for cold reads and the rusqlite readers of hot reads (`hot_readers`);
//! PostgreSQL its sqlx pool (`main`) and the read connections of its own (`hot_readers`).
//! A pool's size is its idle and in-use connections together.

use super::{Db, Store};
use sqlx::Database;

/// One pool's connections now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    pub idle: u64,
    pub in_use: u64,
    /// The most connections it may hold.
    pub max: u64,
}

impl PoolStats {
    fn of<DB: Database>(pool: &sqlx::Pool<DB>) -> Self {
        let size = u64::from(pool.size());
        let idle = pool.num_idle() as u64;
        Self {
            idle,
            in_use: size.saturating_sub(idle),
            max: u64::from(pool.options().get_max_connections()),
        }
    }
}

impl Store {
    /// Each pool by name, with its connections now.
    pub fn pool_stats(&self) -> Vec<(&'static str, PoolStats)> {
        match &self.db {
            Db::Sqlite(db) => vec![
                ("writer", PoolStats::of(&db.write)),
                ("reader", PoolStats::of(&db.read)),
                ("hot_readers", db.readers.stats()),
            ],
            Db::Postgres(db) => vec![
                ("main", PoolStats::of(&db.pool)),
                ("hot_readers", db.readers.stats()),
            ],
        }
    }

    /// The pool gauges, `leadgate_db_pool_connections{backend, pool, state}` and
    /// `leadgate_db_pool_max_connections{backend, pool}`.
    pub fn render_pool_metrics(&self) -> String {
        let backend = self.backend();
        let stats = self.pool_stats();
        let mut out = String::from(
            "# HELP leadgate_db_pool_connections Database connections by pool and state (idle, in_use).\n\
             # TYPE leadgate_db_pool_connections gauge\n",
        );
        for (pool, s) in &stats {
            for (state, n) in [("idle", s.idle), ("in_use", s.in_use)] {
                out.push_str(&format!(
                    "leadgate_db_pool_connections{{backend=\"{backend}\",pool=\"{pool}\",state=\"{state}\"}} {n}\n"
                ));
            }
        }
        out.push_str(
            "# HELP leadgate_db_pool_max_connections The most connections each pool may hold.\n\
             # TYPE leadgate_db_pool_max_connections gauge\n",
        );
        for (pool, s) in &stats {
            out.push_str(&format!(
                "leadgate_db_pool_max_connections{{backend=\"{backend}\",pool=\"{pool}\"}} {}\n",
                s.max
            ));
        }
        out
    }
}
