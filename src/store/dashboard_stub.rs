// TEMPORARY (not committed): until the dash-store branch lands.
use super::*;
use async_trait::async_trait;
use jiff::Timestamp;
macro_rules! stub {
    ($t:ty) => {
        #[async_trait]
        impl DashboardStore for $t {
            async fn create_session(&self, _s: &NewSession) -> StoreResult<()> {
                todo!()
            }
            async fn find_session(&self, _h: &str) -> StoreResult<Option<SessionRecord>> {
                todo!()
            }
            async fn touch_session(&self, _h: &str, _at: Timestamp) -> StoreResult<()> {
                todo!()
            }
            async fn delete_session(&self, _h: &str) -> StoreResult<()> {
                todo!()
            }
            async fn purge_sessions(&self, _a: Timestamp, _b: Timestamp) -> StoreResult<u64> {
                todo!()
            }
            async fn list_org_api_keys(&self, _o: OrgId) -> StoreResult<Vec<ApiKeyInfo>> {
                todo!()
            }
            async fn create_org_api_key(&self, _o: OrgId, _k: &NewApiKey, _at: Timestamp) -> StoreResult<()> {
                todo!()
            }
            async fn revoke_org_api_key(&self, _o: OrgId, _p: &str, _at: Timestamp) -> StoreResult<bool> {
                todo!()
            }
            async fn attempts_per_hour(&self, _o: OrgId, _c: i64, _s: Timestamp) -> StoreResult<Vec<(Timestamp, i64)>> {
                todo!()
            }
        }
    };
}
stub!(super::sqlite::SqliteStore);
stub!(super::postgres::PostgresStore);
