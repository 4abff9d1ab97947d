//! Templates on PostgreSQL: a migrated schema read back from the catalogs as DDL
//! ([`read_template`]), and that DDL run on a new tenant's empty schema in one transaction that
//! checks its own result ([`instantiate`]).
//!
//! Both run with `search_path` set to `pg_catalog` alone, so that every name in the schema comes
//! out of `pg_get_*def` qualified: the schema's name is then a whole identifier that becomes the
//! placeholder, and nothing unqualified can resolve into another schema when the DDL runs.

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Postgres, Row as _};

use super::fingerprint::read_fingerprints;
use super::sql_string;
use crate::backend::{BackendError, Timeouts};
use crate::fingerprint::{Fingerprint, Names};
use crate::history::HISTORY_TABLE;
use crate::source::SetKind;
use crate::sql::quote_ident;
use crate::template::{Instantiation, Template, TemplateRow};
use domain::version::Version;

/// Why a schema cannot be templated, one row per reason: objects the DDL below does not
/// recreate, which the fingerprint would not all notice either. `$1` is the schema.
const UNSUPPORTED: &str = "
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1)
SELECT 'a partitioned or foreign table, ' || relname FROM pg_class
 WHERE relnamespace = (SELECT oid FROM ns) AND relkind IN ('p', 'f', 'c')
UNION ALL
SELECT 'a table that inherits, ' || c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE c.relnamespace = (SELECT oid FROM ns)
UNION ALL
SELECT 'row-level security on ' || c.relname FROM pg_class c
 WHERE c.relnamespace = (SELECT oid FROM ns)
   AND (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
UNION ALL
SELECT 'a rule on ' || c.relname FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
 WHERE c.relnamespace = (SELECT oid FROM ns) AND r.rulename <> '_RETURN'
UNION ALL
SELECT 'a type other than an enum, ' || typname FROM pg_type
 WHERE typnamespace = (SELECT oid FROM ns) AND typrelid = 0 AND typelem = 0 AND typtype <> 'e'
UNION ALL
SELECT 'an aggregate, ' || proname FROM pg_proc
 WHERE pronamespace = (SELECT oid FROM ns) AND prokind NOT IN ('f', 'p')
UNION ALL
SELECT 'a constraint trigger, ' || conname FROM pg_constraint
 WHERE connamespace = (SELECT oid FROM ns) AND contype = 't'
UNION ALL
SELECT 'column privileges on ' || c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = (SELECT oid FROM ns) AND a.attacl IS NOT NULL
UNION ALL
SELECT 'extended statistics, ' || stxname FROM pg_statistic_ext
 WHERE stxnamespace = (SELECT oid FROM ns)
UNION ALL
SELECT 'an extension''s object' FROM pg_depend d
 WHERE d.deptype = 'e'
   AND ((d.classid = 'pg_class'::regclass AND d.objid IN (SELECT oid FROM pg_class WHERE relnamespace = (SELECT oid FROM ns)))
     OR (d.classid = 'pg_proc'::regclass AND d.objid IN (SELECT oid FROM pg_proc WHERE pronamespace = (SELECT oid FROM ns))))";

/// The schema's DDL, in the order it must run: `(section, order, statement)`. `$1` is the
/// schema, `$2` the tenant's role, `$3` the history table's name (left out, with what hangs off
/// it: the tenant's storage already has it). Within a section, objects come in creation order
/// (their oids), which is the order their dependencies allow.
const DDL: &str = "
WITH ns AS (SELECT oid, nspname, nspowner, nspacl FROM pg_namespace WHERE nspname = $1),
rel AS (
  SELECT c.*, format('%I.%I', (SELECT nspname FROM ns), c.relname) AS qname
    FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns) AND left(c.relname, length($3)) <> $3
),
-- Sequences a column owns (identity: created with it; serial: OWNED BY after the tables).
owned AS (
  SELECT d.objid AS seq, d.deptype, d.refobjid AS tbl, d.refobjsubid AS col
    FROM pg_depend d
   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
     AND d.deptype IN ('a', 'i') AND d.objid IN (SELECT oid FROM rel WHERE relkind = 'S')
),
seqdef AS (
  SELECT s.seqrelid, ' INCREMENT ' || s.seqincrement || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax
         || ' START ' || s.seqstart || ' CACHE ' || s.seqcache
         || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END AS options
    FROM pg_sequence s
),
acl AS (
  SELECT r.oid, r.qname, r.relkind, r.relowner, a.grantee, a.is_grantable,
         string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) AS privileges
    FROM rel r CROSS JOIN LATERAL aclexplode(r.relacl) a
   WHERE r.relkind IN ('r', 'v', 'm', 'S') AND a.grantee <> r.relowner
   GROUP BY r.oid, r.qname, r.relkind, r.relowner, a.grantee, a.is_grantable
),
fn AS (
  SELECT p.*, format('%I.%I(%s)', (SELECT nspname FROM ns), p.proname, pg_get_function_identity_arguments(p.oid)) AS signature
    FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns)
)
SELECT 1 AS section, t.oid::bigint AS ord,
       format('CREATE TYPE %I.%I AS ENUM (%s)', (SELECT nspname FROM ns), t.typname,
              coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                          FROM pg_enum e WHERE e.enumtypid = t.oid), ''))
  FROM pg_type t WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typtype = 'e'
UNION ALL
SELECT 2, r.oid::bigint,
       'CREATE ' || CASE r.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END || 'SEQUENCE ' || r.qname
       || ' AS ' || format_type(s.seqtypid, NULL) || d.options
  FROM rel r JOIN pg_sequence s ON s.seqrelid = r.oid JOIN seqdef d ON d.seqrelid = r.oid
 WHERE NOT EXISTS (SELECT 1 FROM owned o WHERE o.seq = r.oid AND o.deptype = 'i')
UNION ALL
SELECT 3, r.oid::bigint,
       'CREATE ' || CASE r.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END || 'TABLE ' || r.qname || ' ('
       || coalesce((
            SELECT string_agg(
                     quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                     || CASE WHEN a.attcollation <> ty.typcollation
                             THEN ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname) ELSE '' END
                     || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                             WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
                             ELSE '' END
                     || CASE WHEN a.attidentity IN ('a', 'd')
                             THEN ' GENERATED ' || CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END
                                  || ' AS IDENTITY (SEQUENCE NAME ' || format('%I.%I', (SELECT nspname FROM ns), sc.relname)
                                  || sd.options || ')'
                             ELSE '' END
                     || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                     ', ' ORDER BY a.attnum)
              FROM pg_attribute a
              JOIN pg_type ty ON ty.oid = a.atttypid
              LEFT JOIN pg_collation co ON co.oid = a.attcollation
              LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
              LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
              LEFT JOIN owned o ON o.tbl = a.attrelid AND o.col = a.attnum AND o.deptype = 'i'
              LEFT JOIN pg_class sc ON sc.oid = o.seq
              LEFT JOIN seqdef sd ON sd.seqrelid = o.seq
             WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
       || ')' || coalesce(' WITH (' || array_to_string(r.reloptions, ', ') || ')', '')
  FROM rel r WHERE r.relkind = 'r'
UNION ALL
-- Keys, uniques, exclusions and checks, then foreign keys once every key they point at exists.
SELECT CASE k.contype WHEN 'f' THEN 5 ELSE 4 END, k.oid::bigint,
       format('ALTER TABLE %s ADD CONSTRAINT %I ', r.qname, k.conname) || pg_get_constraintdef(k.oid)
  FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
 WHERE k.contype IN ('p', 'u', 'x', 'c', 'f')
UNION ALL
-- Functions may be used by views, and their bodies are not checked (check_function_bodies).
SELECT 6, p.oid::bigint, pg_get_functiondef(p.oid) FROM fn p WHERE p.prokind IN ('f', 'p')
UNION ALL
SELECT 7, r.oid::bigint,
       CASE r.relkind WHEN 'm' THEN 'CREATE MATERIALIZED VIEW ' ELSE 'CREATE VIEW ' END || r.qname
       || coalesce(' WITH (' || array_to_string(r.reloptions, ', ') || ')', '')
       || ' AS ' || rtrim(pg_get_viewdef(r.oid), '; ' || chr(10))
       || CASE WHEN r.relkind = 'm' AND NOT r.relispopulated THEN ' WITH NO DATA' ELSE '' END
  FROM rel r WHERE r.relkind IN ('v', 'm')
UNION ALL
SELECT 8, i.indexrelid::bigint, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN rel r ON r.oid = i.indrelid
 WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
UNION ALL
SELECT 9, t.oid::bigint, pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
UNION ALL
SELECT 10, t.oid::bigint,
       format('ALTER TABLE %s %s TRIGGER %I', r.qname,
              CASE t.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END, t.tgname)
  FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal AND t.tgenabled <> 'O'
UNION ALL
SELECT 11, o.seq::bigint,
       format('ALTER SEQUENCE %s OWNED BY %s.%I', s.qname, t.qname, a.attname)
  FROM owned o JOIN rel s ON s.oid = o.seq JOIN rel t ON t.oid = o.tbl
  JOIN pg_attribute a ON a.attrelid = o.tbl AND a.attnum = o.col
 WHERE o.deptype = 'a'
UNION ALL
-- Owners other than the role running the migrations (who owns the rest either way).
SELECT 12, r.oid::bigint,
       format('ALTER %s %s OWNER TO %I',
              CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
              r.qname, pg_get_userbyid(r.relowner))
  FROM rel r
 WHERE r.relkind IN ('r', 'v', 'm', 'S') AND r.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
   AND NOT EXISTS (SELECT 1 FROM owned o WHERE o.seq = r.oid)
UNION ALL
SELECT 12, p.oid::bigint, format('ALTER ROUTINE %s OWNER TO %I', p.signature, pg_get_userbyid(p.proowner))
  FROM fn p WHERE p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
UNION ALL
-- Grants: what default privileges gave the tenant's role and PUBLIC is taken back first, so a
-- grant the migrations revoked stays revoked.
SELECT 13, r.oid::bigint,
       format('REVOKE ALL ON %s %s FROM PUBLIC, %I', CASE r.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.qname, $2)
  FROM rel r WHERE r.relkind IN ('r', 'v', 'm', 'S') AND r.relacl IS NOT NULL
UNION ALL
SELECT 14, g.oid::bigint,
       format('GRANT %s ON %s %s TO %s%s', g.privileges, CASE g.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, g.qname,
              CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
              CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM acl g
UNION ALL
SELECT 13, p.oid::bigint, format('REVOKE ALL ON ROUTINE %s FROM PUBLIC, %I', p.signature, $2)
  FROM fn p WHERE p.proacl IS NOT NULL
UNION ALL
SELECT 14, p.oid::bigint,
       format('GRANT %s ON ROUTINE %s TO %s%s', string_agg(a.privilege_type, ', '), p.signature,
              CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
              CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM fn p CROSS JOIN LATERAL aclexplode(p.proacl) a
 WHERE a.grantee <> p.proowner
 GROUP BY p.oid, p.signature, a.grantee, a.is_grantable
UNION ALL
SELECT 15, 0,
       format('GRANT %s ON SCHEMA %I TO %s', string_agg(a.privilege_type, ', '), n.nspname,
              CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
  FROM ns n CROSS JOIN LATERAL aclexplode(n.nspacl) a
 WHERE a.grantee <> n.nspowner
 GROUP BY n.nspname, a.grantee
ORDER BY 1, 2, 3";

/// What a migrated scratch schema gives a template: its DDL (names generalized), its history
/// rows, its fingerprint, and why it cannot be templated (empty when it can).
pub(crate) struct ReadTemplate {
    pub(crate) statements: Vec<String>,
    pub(crate) history: Vec<TemplateRow>,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) unsupported: Vec<String>,
}

/// Reads `schema` (whose role is `role`), migrated by `set`, in one read-only transaction.
///
/// # Errors
/// A database error.
pub(crate) async fn read_template(
    conn: &mut PgConnection,
    schema: &str,
    role: &str,
    set: SetKind,
) -> Result<ReadTemplate, BackendError> {
    sqlx::raw_sql(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL search_path TO pg_catalog",
    )
    .execute(&mut *conn)
    .await?;
    let read = read_in_transaction(conn, schema, role, set).await;
    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
    read
}

async fn read_in_transaction(
    conn: &mut PgConnection,
    schema: &str,
    role: &str,
    set: SetKind,
) -> Result<ReadTemplate, BackendError> {
    let names = Names::new(schema, role);
    let mut unsupported: Vec<String> = sqlx::query_scalar(UNSUPPORTED)
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;
    let statements = sqlx::query(DDL)
        .bind(schema)
        .bind(role)
        .bind(HISTORY_TABLE)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(2))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .map(|statement| names.generalize(statement))
        .collect();

    // The DDL carries no rows: a template of migrations that leave rows (or used a sequence)
    // would give tenants less than the migrations do, and the fingerprint would not say so.
    unsupported.extend(rows_left(conn, schema).await?);

    let template_rows = history_rows(conn, schema, HISTORY_TABLE, set, &mut unsupported).await?;

    let fingerprint = read_fingerprints(conn, &[(schema.to_owned(), role.to_owned())])
        .await?
        .remove(schema)
        .unwrap_or_default();
    Ok(ReadTemplate {
        statements,
        history: template_rows,
        fingerprint,
        unsupported,
    })
}

/// The history rows of `set` in `schema`'s table `table`, by version, for a template to write
/// again; a migration that did not finish is a reason (in `unsupported`) not to template.
///
/// # Errors
/// A database error, or a version out of range.
pub(super) async fn history_rows(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    set: SetKind,
    unsupported: &mut Vec<String>,
) -> Result<Vec<TemplateRow>, BackendError> {
    let history = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT version, description, checksum, success FROM {history} WHERE migration_set = $1 ORDER BY version"
    )))
    .bind(set.dir_name())
    .fetch_all(&mut *conn)
    .await?;
    let mut template_rows = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i64 = row.try_get(0)?;
        let success: bool = row.try_get(3)?;
        let version = Version::new(version)
            .map_err(|e| BackendError::InvalidScript(format!("history version {version}: {e}")))?;
        if !success {
            unsupported.push(format!("migration {version} did not finish"));
        }
        template_rows.push(TemplateRow {
            version,
            description: row.try_get(1)?,
            checksum: row.try_get(2)?,
        });
    }
    Ok(template_rows)
}

/// Why a migrated scratch schema's rows rule a template out, one reason per table that has rows
/// or sequence that was used. A DDL template carries no rows, and a copied database would give
/// every tenant the same ones (the same random ids, the same timestamps) where the migrations
/// give each its own: either way the fingerprint would not say so. (A materialized view's rows
/// are recomputed by its creation.)
///
/// # Errors
/// A database error.
pub(super) async fn rows_left(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<String>, BackendError> {
    let relations: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname, c.relkind::text FROM pg_class c
          WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
            AND c.relkind IN ('r', 'S') AND left(c.relname, length($2)) <> $2",
    )
    .bind(schema)
    .bind(HISTORY_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    if relations.is_empty() {
        return Ok(Vec::new());
    }
    let probes = relations
        .iter()
        .map(|(name, kind)| {
            let qualified = format!("{}.{}", quote_ident(schema), quote_ident(name));
            let used = if kind == "S" {
                format!("(SELECT is_called FROM {qualified})")
            } else {
                format!("EXISTS (SELECT 1 FROM {qualified})")
            };
            format!("SELECT {} WHERE {used}", sql_string(name))
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let used: Vec<String> = sqlx::query_scalar(AssertSqlSafe(probes))
        .fetch_all(&mut *conn)
        .await?;
    Ok(used
        .into_iter()
        .map(|name| format!("rows in {name}"))
        .collect())
}

/// Instantiates `template` on the schema `schema` (whose role has the same name) of the
/// database `conn` is on, in one transaction: the DDL and the history rows, then the schema's
/// fingerprint, read inside the transaction, compared with the template's. Only an empty schema
/// takes it (no history row, no object), under the tenant's migration lock (`lock_key`), taken
/// for the transaction only.
///
/// # Errors
/// A database error, or a template statement that fails; the transaction is rolled back (or the
/// connection closed) and nothing stays.
pub(crate) async fn instantiate(
    mut conn: PoolConnection<Postgres>,
    schema: &str,
    lock_key: i64,
    set: SetKind,
    template: &Template,
    timeouts: Timeouts,
) -> Result<Instantiation, BackendError> {
    let done =
        instantiate_in_transaction(&mut conn, schema, lock_key, set, template, timeouts).await;
    let end = match &done {
        Ok(Instantiation::Applied) => "COMMIT",
        _ => "ROLLBACK",
    };
    if let Err(error) = sqlx::raw_sql(end).execute(&mut *conn).await {
        // The transaction's state is unknown: never hand this connection to the pool's next user.
        conn.close_on_drop();
        return Err(error.into());
    }
    done
}

async fn instantiate_in_transaction(
    conn: &mut PgConnection,
    schema: &str,
    lock_key: i64,
    set: SetKind,
    template: &Template,
    timeouts: Timeouts,
) -> Result<Instantiation, BackendError> {
    let quoted = quote_ident(schema);
    let history = format!("{quoted}.{}", quote_ident(HISTORY_TABLE));
    let namespace = format!("{}::regnamespace", sql_string(&quoted));
    // One round trip: the transaction, its settings, the lock, and whether the schema is empty.
    // A missing history table fails here, and the migration path creates it.
    let begin = format!(
        "BEGIN;
         SET LOCAL search_path TO pg_catalog;
         SET LOCAL check_function_bodies = off;
         SET LOCAL lock_timeout = '{lock}ms';
         SET LOCAL statement_timeout = '{statement}ms';
         SELECT pg_try_advisory_xact_lock({lock_key}) AS locked,
                NOT EXISTS (SELECT 1 FROM {history})
                AND NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = {namespace} AND left(relname, {len}) <> {table})
                AND NOT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = {namespace})
                AND NOT EXISTS (SELECT 1 FROM pg_type WHERE typnamespace = {namespace} AND typrelid = 0 AND typelem = 0) AS empty",
        lock = timeouts.lock.as_millis(),
        statement = timeouts.statement.as_millis(),
        len = HISTORY_TABLE.len(),
        table = sql_string(HISTORY_TABLE),
    );
    let rows = sqlx::raw_sql(AssertSqlSafe(begin))
        .fetch_all(&mut *conn)
        .await?;
    let row = rows
        .last()
        .ok_or_else(|| BackendError::InvalidScript("the emptiness check returned no row".into()))?;
    if !row.try_get::<bool, _>("locked")? {
        return Ok(Instantiation::Busy);
    }
    if !row.try_get::<bool, _>("empty")? {
        return Ok(Instantiation::NotEmpty);
    }

    // The whole DDL and the history rows in one message: one round trip.
    let mut script = template.script_for(schema);
    if let Some(insert) = history_insert(&history, set, &template.history) {
        script.push_str(&insert);
    }
    sqlx::raw_sql(AssertSqlSafe(script))
        .execute(&mut *conn)
        .await?;

    let actual = read_fingerprints(conn, &[(schema.to_owned(), schema.to_owned())])
        .await?
        .remove(schema)
        .unwrap_or_default();
    let differences = actual.diff(&template.fingerprint);
    if differences.is_empty() {
        Ok(Instantiation::Applied)
    } else {
        Ok(Instantiation::Mismatch { differences })
    }
}

/// The `INSERT` of `rows` into the history table `history` (qualified), as the migrations would
/// have written them (successful, now); `None` when there are none.
pub(super) fn history_insert(history: &str, set: SetKind, rows: &[TemplateRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let values = rows
        .iter()
        .map(|row| {
            format!(
                "({}, {}, {}, {}, true, statement_timestamp(), clock_timestamp(), 0)",
                sql_string(set.dir_name()),
                row.version.get(),
                sql_string(&row.description),
                sql_string(&row.checksum)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "INSERT INTO {history} (migration_set, version, description, checksum, success, started_at, finished_at, duration_ms) VALUES {values}"
    ))
}
