//! Reading a tenant's audit log with filters, for the product API and exports: who set a
//! person's grade, what an AI grader did last week, every correction of one line item.

use crate::TenantStore;
use crate::audit::AuditEntry;
use crate::db::Backend;
use crate::error::StoreError;

/// What to select. Every filter is optional; entries come oldest first, after `after_seq`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries about this person (scores carry `person_id` in their detail).
    pub person_id: Option<String>,
    /// Entries about this grade target (line item).
    pub grade_target_id: Option<String>,
    /// `instructor`, `ai_grader`, `system`.
    pub actor_kind: Option<String>,
    /// Actions starting with this, e.g. `score.`.
    pub action_prefix: Option<String>,
    /// Microseconds since the epoch, inclusive.
    pub since: Option<i64>,
    /// Microseconds since the epoch, exclusive.
    pub until: Option<i64>,
    /// Continue after this sequence number (the cursor of the previous page).
    pub after_seq: Option<i64>,
    /// Page size, capped at 1,000.
    pub limit: Option<i64>,
}

/// Largest page.
pub const MAX_AUDIT_PAGE: i64 = 1000;

impl TenantStore<'_> {
    /// This tenant's audit entries matching `filter`, oldest first.
    pub async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let json_field = |field: &str| match self.db.backend() {
            Backend::Sqlite => format!("json_extract(detail, '$.{field}')"),
            Backend::Postgres => format!("(detail::jsonb ->> '{field}')"),
        };
        let limit = filter
            .limit
            .unwrap_or(MAX_AUDIT_PAGE)
            .clamp(1, MAX_AUDIT_PAGE);
        let escaped_prefix = filter.action_prefix.as_ref().map(|p| {
            let mut e = p
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            e.push('%');
            e
        });
        let person_expr = json_field("person_id");
        let target_expr = json_field("grade_target_id");
        Ok(on_db!(self.db, |pool| {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash, hash \
                 FROM audit_log WHERE chain = ",
            );
            q.push_bind(self.scope.tenant_id().to_string());
            q.push(" AND tenant_id = ");
            q.push_bind(self.scope.tenant_id().to_string());
            if let Some(p) = &filter.person_id {
                q.push(format!(" AND {person_expr} = "));
                q.push_bind(p.clone());
            }
            if let Some(t) = &filter.grade_target_id {
                q.push(format!(" AND {target_expr} = "));
                q.push_bind(t.clone());
            }
            if let Some(k) = &filter.actor_kind {
                q.push(" AND actor_kind = ");
                q.push_bind(k.clone());
            }
            if let Some(p) = &escaped_prefix {
                q.push(" AND action LIKE ");
                q.push_bind(p.clone());
                q.push(" ESCAPE '\\'");
            }
            if let Some(s) = filter.since {
                q.push(" AND at >= ");
                q.push_bind(s);
            }
            if let Some(u) = filter.until {
                q.push(" AND at < ");
                q.push_bind(u);
            }
            if let Some(a) = filter.after_seq {
                q.push(" AND seq > ");
                q.push_bind(a);
            }
            q.push(" ORDER BY seq LIMIT ");
            q.push_bind(limit);
            q.build_query_as::<AuditEntry>().fetch_all(pool).await?
        }))
    }
}
