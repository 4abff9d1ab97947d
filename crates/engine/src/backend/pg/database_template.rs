//! Database templates on PostgreSQL: a database the set's migrations built, which new tenant
//! databases are copied from (`CREATE DATABASE … TEMPLATE`), and what turns a copy into the
//! tenant's: its role's grants instead of the template's, and its history rows.
//!
//! A template database keeps its history rows aside, in [`PENDING_TABLE`], and its history
//! table empty. A copy therefore holds the set's objects and no history until
//! [`instantiate`] commits: its grants moved to the tenant's role, the rows written into the
//! history table, the side table dropped, and the fingerprint checked, in one transaction. A
//! copy interrupted before that commit still has the side table: it is instantiated again, or,
//! when the template is not used after all, dropped and created empty, never migrated as it is.

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row as _};

use super::fingerprint::read_fingerprints;
use super::sql_string;
use super::template::{history_insert, history_rows, rows_left};
use crate::backend::{BackendError, Timeouts};
use crate::fingerprint::Fingerprint;
use crate::history::HISTORY_TABLE;
use crate::source::SetKind;
use crate::sql::quote_ident;
use crate::template::{Instantiation, TemplateRow};

/// Where a template database keeps its history rows, and the mark of a copy not yet
/// instantiated. Its name starts with the history table's, so fingerprints leave it out.
pub(crate) const PENDING_TABLE: &str = "_tenancy_history_template";

/// The schema a database tenant's objects live in.
const SCHEMA: &str = "public";

/// Statements that give `$2` (the tenant's role) every privilege `$1` (the template's role)
/// holds in the current database, then take them from `$1`: on relations, columns, routines,
/// schemas, types, and default privileges. Grants first, then revocations, so that nothing is
/// lost in between.
const MOVE_GRANTS: &str = "
WITH old AS (SELECT oid FROM pg_roles WHERE rolname = $1),
ns AS (
  SELECT oid, nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
),
held AS (
  SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
         format('%I.%I', n.nspname, c.relname) AS object, NULL::name AS col,
         a.privilege_type, a.is_grantable
    FROM pg_class c JOIN ns n ON n.oid = c.relnamespace CROSS JOIN LATERAL aclexplode(c.relacl) a
   WHERE a.grantee = (SELECT oid FROM old)
  UNION ALL
  SELECT 'TABLE', format('%I.%I', n.nspname, c.relname), at.attname, a.privilege_type, a.is_grantable
    FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid JOIN ns n ON n.oid = c.relnamespace
   CROSS JOIN LATERAL aclexplode(at.attacl) a
   WHERE a.grantee = (SELECT oid FROM old)
  UNION ALL
  SELECT 'ROUTINE', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
         NULL, a.privilege_type, a.is_grantable
    FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace CROSS JOIN LATERAL aclexplode(p.proacl) a
   WHERE a.grantee = (SELECT oid FROM old)
  UNION ALL
  SELECT 'SCHEMA', quote_ident(n.nspname), NULL, a.privilege_type, a.is_grantable
    FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
   WHERE n.oid IN (SELECT oid FROM ns) AND a.grantee = (SELECT oid FROM old)
  UNION ALL
  SELECT 'TYPE', format('%I.%I', n.nspname, t.typname), NULL, a.privilege_type, a.is_grantable
    FROM pg_type t JOIN ns n ON n.oid = t.typnamespace CROSS JOIN LATERAL aclexplode(t.typacl) a
   WHERE a.grantee = (SELECT oid FROM old)
),
defaults AS (
  SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s', pg_get_userbyid(d.defaclrole),
                CASE WHEN d.defaclnamespace = 0 THEN '' ELSE ' IN SCHEMA ' || quote_ident(n.nspname) END) AS scope,
         CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                              WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END AS kind,
         a.privilege_type, a.is_grantable
    FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
   CROSS JOIN LATERAL aclexplode(d.defaclacl) a
   WHERE a.grantee = (SELECT oid FROM old)
)
SELECT 1, format('GRANT %s%s ON %s %s TO %I%s', string_agg(privilege_type, ', '),
                 coalesce(' (' || quote_ident(col) || ')', ''), kind, object, $2,
                 CASE WHEN is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM held GROUP BY kind, object, col, is_grantable
UNION ALL
SELECT 1, format('%s GRANT %s ON %s TO %I%s', scope, string_agg(privilege_type, ', '), kind, $2,
                 CASE WHEN is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM defaults GROUP BY scope, kind, is_grantable
UNION ALL
SELECT DISTINCT 2, format('REVOKE ALL%s ON %s %s FROM %I', coalesce(' (' || quote_ident(col) || ')', ''), kind, object, $1)
  FROM held
UNION ALL
SELECT DISTINCT 2, format('%s REVOKE ALL ON %s FROM %I', scope, kind, $1)
  FROM defaults
ORDER BY 1, 2";

/// Makes the freshly migrated template database `conn` is on a template: its history rows
/// (of `set`) moved into [`PENDING_TABLE`], in one transaction. Returns why it cannot be one
/// (rows the migrations left, a migration that did not finish); nothing is moved then.
///
/// # Errors
/// A database error.
pub(crate) async fn set_aside_history(
    conn: &mut PgConnection,
    set: SetKind,
) -> Result<Vec<String>, BackendError> {
    let mut unsupported = rows_left(conn, SCHEMA).await?;
    history_rows(conn, SCHEMA, HISTORY_TABLE, set, &mut unsupported).await?;
    if !unsupported.is_empty() {
        return Ok(unsupported);
    }
    let history = format!("{SCHEMA}.{}", quote_ident(HISTORY_TABLE));
    let pending = format!("{SCHEMA}.{}", quote_ident(PENDING_TABLE));
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN;
         CREATE TABLE {pending} AS SELECT migration_set, version, description, checksum, success
           FROM {history} ORDER BY version;
         DELETE FROM {history};
         COMMIT"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(Vec::new())
}

/// A template database's history rows of `set` (set aside) and its fingerprint, its objects'
/// grants naming `role`, the template's role.
///
/// # Errors
/// A database error.
pub(crate) async fn read(
    conn: &mut PgConnection,
    role: &str,
    set: SetKind,
) -> Result<(Vec<TemplateRow>, Fingerprint), BackendError> {
    let mut unfinished = Vec::new();
    let rows = history_rows(conn, SCHEMA, PENDING_TABLE, set, &mut unfinished).await?;
    let fingerprint = read_fingerprints(conn, &[(SCHEMA.to_owned(), role.to_owned())])
        .await?
        .remove(SCHEMA)
        .unwrap_or_default();
    Ok((rows, fingerprint))
}

/// Whether the database `conn` is on is a copy of a template not yet instantiated.
///
/// # Errors
/// A database error.
pub(crate) async fn is_pending_copy(conn: &mut PgConnection) -> Result<bool, BackendError> {
    let pending: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{SCHEMA}.{}", quote_ident(PENDING_TABLE)))
        .fetch_one(&mut *conn)
        .await?;
    Ok(pending)
}

/// What a copy must become: the template's history rows and fingerprint, the template's role
/// (whose grants move) and the tenant's.
pub(crate) struct Copy<'a> {
    pub(crate) set: SetKind,
    pub(crate) history: &'a [TemplateRow],
    pub(crate) fingerprint: &'a Fingerprint,
    pub(crate) template_role: &'a str,
    pub(crate) tenant_role: &'a str,
}

/// Instantiates the copy of a template `conn` is on, in one transaction under the tenant's
/// migration lock (`lock_key`): grants moved to the tenant's role, history rows written, the
/// side table dropped, then the fingerprint compared with the template's; committed only when
/// equal. A database that is not a pending copy is left alone ([`Instantiation::NotEmpty`]).
///
/// # Errors
/// A database error: the transaction is rolled back, or the connection dropped by the caller.
pub(crate) async fn instantiate(
    conn: &mut PgConnection,
    lock_key: i64,
    copy: &Copy<'_>,
    timeouts: Timeouts,
) -> Result<Instantiation, BackendError> {
    let done = instantiate_in_transaction(conn, lock_key, copy, timeouts).await;
    let end = match &done {
        Ok(Instantiation::Applied) => "COMMIT",
        _ => "ROLLBACK",
    };
    sqlx::raw_sql(end).execute(&mut *conn).await?;
    done
}

async fn instantiate_in_transaction(
    conn: &mut PgConnection,
    lock_key: i64,
    copy: &Copy<'_>,
    timeouts: Timeouts,
) -> Result<Instantiation, BackendError> {
    // The session's search_path stays: the fingerprint is compared with one read as the
    // template's was, and every name below is qualified.
    let pending = format!("{SCHEMA}.{}", quote_ident(PENDING_TABLE));
    let begin = format!(
        "BEGIN;
         SET LOCAL lock_timeout = '{lock}ms';
         SET LOCAL statement_timeout = '{statement}ms';
         SELECT pg_try_advisory_xact_lock({lock_key}) AS locked,
                to_regclass({pending_name}) IS NOT NULL AS pending",
        lock = timeouts.lock.as_millis(),
        statement = timeouts.statement.as_millis(),
        pending_name = sql_string(&pending),
    );
    let rows = sqlx::raw_sql(AssertSqlSafe(begin))
        .fetch_all(&mut *conn)
        .await?;
    let row = rows.last().ok_or_else(|| {
        BackendError::InvalidScript("the pending-copy check returned no row".into())
    })?;
    if !row.try_get::<bool, _>("locked")? {
        return Ok(Instantiation::Busy);
    }
    if !row.try_get::<bool, _>("pending")? {
        return Ok(Instantiation::NotEmpty);
    }

    let moves: Vec<String> = sqlx::query(MOVE_GRANTS)
        .bind(copy.template_role)
        .bind(copy.tenant_role)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(1))
        .collect::<Result<_, _>>()?;
    let mut script = moves.join(";\n");
    script.push_str(";\n");
    let history = format!("{SCHEMA}.{}", quote_ident(HISTORY_TABLE));
    if let Some(insert) = history_insert(&history, copy.set, copy.history) {
        script.push_str(&insert);
        script.push_str(";\n");
    }
    script.push_str(&format!("DROP TABLE {pending}"));
    sqlx::raw_sql(AssertSqlSafe(script))
        .execute(&mut *conn)
        .await?;

    let actual = read_fingerprints(conn, &[(SCHEMA.to_owned(), copy.tenant_role.to_owned())])
        .await?
        .remove(SCHEMA)
        .unwrap_or_default();
    let differences = actual.diff(copy.fingerprint);
    if differences.is_empty() {
        Ok(Instantiation::Applied)
    } else {
        Ok(Instantiation::Mismatch { differences })
    }
}
