//! A throwaway PostgreSQL database for a benchmark run: named here, created by the first
//! `outbound serve` that opens it, dropped at the end.

use rand::Rng;
use sqlx::Connection;

pub struct ThrowawayDatabase {
    admin_url: String,
    name: String,
    /// What to pass as `--database`.
    pub url: String,
}

impl ThrowawayDatabase {
    /// A new database name on the server at `server_url` (`postgres://USER@HOST:PORT`), once the
    /// server answers.
    pub async fn new(server_url: &str, prefix: &str) -> Result<ThrowawayDatabase, String> {
        let server_url = server_url.trim_end_matches('/');
        let admin_url = format!("{server_url}/postgres");
        let admin =
            sqlx::PgConnection::connect(&admin_url).await.map_err(|e| format!("PostgreSQL is not reachable at {admin_url}: {e}"))?;
        let _ = admin.close().await;
        let name = format!("{prefix}_{:016x}", rand::rng().random::<u64>());
        Ok(ThrowawayDatabase { url: format!("{server_url}/{name}"), admin_url, name })
    }

    pub async fn drop_database(self) -> Result<(), String> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.map_err(|e| e.to_string())?;
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.map_err(|e| e.to_string())?;
        admin.close().await.map_err(|e| e.to_string())
    }
}
