//! The lints as a specification: one case per behaviour, by rule family, each with the exact
//! `(code, line)` findings it must give; then the messages and the ordering across rules.

use super::*;
use crate::dialect::Dialect;
use crate::source::SetKind;

/// One lint case: a script, how it is run, and the exact `(code, line)` findings expected.
struct Case {
    name: &'static str,
    sql: &'static str,
    dialect: Dialect,
    set: SetKind,
    no_transaction: bool,
    batched: bool,
    want: &'static [(&'static str, usize)],
}

/// A PostgreSQL platform migration that runs in a transaction.
fn pg(name: &'static str, sql: &'static str, want: &'static [(&'static str, usize)]) -> Case {
    Case {
        name,
        sql,
        dialect: Dialect::Postgres,
        set: SetKind::Platform,
        no_transaction: false,
        batched: false,
        want,
    }
}

impl Case {
    fn tenant(self) -> Self {
        Case {
            set: SetKind::Tenant,
            ..self
        }
    }
    fn seeds(self) -> Self {
        Case {
            set: SetKind::TenantSeeds,
            ..self
        }
    }
    fn sqlite(self) -> Self {
        Case {
            dialect: Dialect::Sqlite,
            ..self
        }
    }
    fn no_tx(self) -> Self {
        Case {
            no_transaction: true,
            ..self
        }
    }
    fn batched(self) -> Self {
        Case {
            batched: true,
            ..self
        }
    }
    fn input(&self) -> LintInput<'static> {
        LintInput {
            sql: self.sql,
            dialect: self.dialect,
            set: self.set,
            no_transaction: self.no_transaction,
            batched: self.batched,
        }
    }
}

pub(super) const CD: &str = "cross-schema";
pub(super) const DE: &str = "destructive";
pub(super) const IX: &str = "index-without-concurrently";
pub(super) const TY: &str = "column-type-change";
pub(super) const NN: &str = "not-null-on-existing-table";
pub(super) const CV: &str = "constraint-validation";
pub(super) const TC: &str = "transaction-control";
pub(super) const CT: &str = "concurrently-in-transaction";
pub(super) const NI: &str = "no-transaction-not-idempotent";
pub(super) const BS: &str = "batch-statement";
pub(super) const BP: &str = "batch-placeholder";

fn cases() -> Vec<Case> {
    vec![
        // cross-schema
        pg("public qualifier", "SELECT * FROM public.users", &[(CD, 1)]).tenant(),
        pg(
            "public qualifier, seeds",
            "INSERT INTO public.users VALUES (1)",
            &[(CD, 1)],
        )
        .seeds(),
        pg(
            "platform may name public",
            "SELECT * FROM public.users",
            &[],
        ),
        pg(
            "another tenant",
            "SELECT 1;\nINSERT INTO tenant_acme.orders VALUES (1)",
            &[(CD, 2)],
        )
        .tenant(),
        pg(
            "pg_temp",
            "CREATE TABLE pg_temp.scratch (id int)",
            &[(CD, 1)],
        )
        .tenant(),
        pg(
            "quoted qualifier",
            "SELECT \"public\".users.id FROM x",
            &[(CD, 1)],
        )
        .tenant(),
        pg("quoted both", "SELECT * FROM \"Public\".\"T\"", &[(CD, 1)]).tenant(),
        pg(
            "three-part name",
            "SELECT * FROM otherdb.app.users",
            &[(CD, 1)],
        )
        .tenant(),
        pg(
            "a chain is reported once",
            "SELECT * FROM otherdb.public.users",
            &[(CD, 1)],
        )
        .tenant(),
        pg(
            "cast to a type in public",
            "SELECT x::public.mood",
            &[(CD, 1)],
        )
        .tenant(),
        pg(
            "qualified name on a later line of the statement",
            "UPDATE orders o\nSET total = 0\nFROM public.rates r\nWHERE o.id = r.id",
            &[(CD, 3)],
        )
        .tenant(),
        pg(
            "table.column, alias.column, catalogs are fine",
            "SELECT orders.id, o.total, pg_catalog.now(), x::int\nFROM orders o JOIN \
             information_schema.tables t ON t.table_name = 'public.orders'\nWHERE \
             pg_catalog.pg_class.relname = o.name",
            &[],
        )
        .tenant(),
        pg(
            "schema names in strings and comments are fine",
            "COMMENT ON TABLE t IS 'copied from public.t and tenant_a.t'; -- public.t\n\
             /* SET search_path TO public */ SELECT 1",
            &[],
        )
        .tenant(),
        pg("create schema", "CREATE SCHEMA reports", &[(CD, 1)]).tenant(),
        pg(
            "alter schema",
            "ALTER SCHEMA reports RENAME TO r",
            &[(CD, 1)],
        )
        .tenant(),
        pg(
            "drop schema is also destructive",
            "DROP SCHEMA IF EXISTS tenant_b CASCADE",
            &[(CD, 1), (DE, 1)],
        )
        .tenant(),
        pg("set search_path", "SET search_path TO public", &[(CD, 1)]).tenant(),
        pg(
            "set local search_path",
            "SET LOCAL search_path = x",
            &[(CD, 1)],
        )
        .tenant(),
        pg("set schema", "SET SCHEMA 'reports'", &[(CD, 1)]).tenant(),
        pg(
            "set_config",
            "SELECT pg_catalog.set_config('search_path', 'x', true)",
            &[(CD, 1)],
        )
        .tenant(),
        pg("show search_path is fine", "SHOW search_path", &[]).tenant(),
        pg(
            "set_config of another setting is fine",
            "SELECT set_config('app.user', 'x', true)",
            &[],
        )
        .tenant(),
        pg(
            "alter set schema",
            "ALTER TABLE t SET SCHEMA archive",
            &[(CD, 1)],
        )
        .tenant(),
        pg(
            "grant on schema public",
            "GRANT USAGE ON SCHEMA public TO app",
            &[(CD, 1)],
        )
        .tenant(),
        pg(
            "qualified name in a DO body",
            "DO $$\nBEGIN\n  UPDATE public.x SET a = 1;\nEND\n$$",
            &[(CD, 3)],
        )
        .tenant(),
        pg(
            "plain string is opaque",
            "INSERT INTO notes VALUES ('UPDATE public.x SET a = 1')",
            &[],
        )
        .tenant(),
        pg(
            "sqlite attach",
            "ATTACH DATABASE 'other.db' AS other",
            &[(CD, 1)],
        )
        .tenant()
        .sqlite(),
        pg("sqlite detach", "DETACH other", &[(CD, 1)])
            .tenant()
            .sqlite(),
        pg("sqlite main.t is fine", "SELECT * FROM main.t", &[])
            .tenant()
            .sqlite(),
        // destructive
        pg("drop table", "DROP TABLE legacy_flags", &[(DE, 1)]),
        pg(
            "drop table list",
            "DROP TABLE IF EXISTS a, b CASCADE",
            &[(DE, 1)],
        ),
        pg("drop table sqlite", "DROP TABLE legacy_flags", &[(DE, 1)]).sqlite(),
        pg("drop schema", "DROP SCHEMA reports", &[(DE, 1)]),
        pg("drop column", "ALTER TABLE t DROP COLUMN c", &[(DE, 1)]),
        pg(
            "drop without COLUMN",
            "ALTER TABLE t DROP IF EXISTS c",
            &[(DE, 1)],
        ),
        pg(
            "drop column as second action",
            "ALTER TABLE t ADD COLUMN x int,\n  DROP COLUMN y",
            &[(DE, 2)],
        ),
        pg("drop constraint", "ALTER TABLE t DROP CONSTRAINT t_fk", &[]),
        pg(
            "drop default",
            "ALTER TABLE t ALTER COLUMN c DROP DEFAULT",
            &[],
        ),
        pg("drop not null", "ALTER TABLE t ALTER c DROP NOT NULL", &[]),
        pg("drop index", "DROP INDEX idx", &[]),
        pg("truncate", "TRUNCATE TABLE a, b", &[(DE, 1)]),
        pg("delete", "DELETE FROM orders WHERE id = 1", &[(DE, 1)]),
        pg("delete sqlite", "DELETE FROM orders", &[(DE, 1)]).sqlite(),
        pg(
            "delete in a data-modifying WITH",
            "WITH d AS (\n  DELETE FROM a RETURNING *\n) INSERT INTO b SELECT * FROM d",
            &[(DE, 2)],
        ),
        pg(
            "keywords inside a string",
            "COMMENT ON TABLE x IS 'drop table y; delete from z; truncate w'",
            &[],
        ),
        pg(
            "ON DELETE CASCADE",
            "CREATE TABLE c (id int REFERENCES p ON DELETE CASCADE)",
            &[],
        ),
        pg(
            "delete inside a trigger body",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM u; END",
            &[],
        )
        .sqlite(),
        pg(
            "quoted drop is an identifier",
            "SELECT \"drop\" FROM \"table\"",
            &[],
        ),
        // index-without-concurrently
        pg(
            "index on existing table",
            "CREATE INDEX idx ON reservations (starts_at)",
            &[(IX, 1)],
        ),
        pg(
            "unique index on existing table",
            "\ncreate unique index idx on only t (a)",
            &[(IX, 2)],
        ),
        pg(
            "index on a table created in the same file",
            "CREATE TABLE r (id int);\nCREATE INDEX i ON r (id)",
            &[],
        ),
        pg(
            "index on a table created IF NOT EXISTS",
            "CREATE TABLE IF NOT EXISTS \"R\" (id int);\nCREATE INDEX i ON r (id)",
            &[],
        ),
        pg(
            "concurrent index in a no-transaction file",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
            &[],
        )
        .no_tx(),
        pg("index in sqlite", "CREATE INDEX idx ON t (a)", &[]).sqlite(),
        // column-type-change
        pg(
            "type change",
            "ALTER TABLE t ALTER COLUMN c TYPE bigint",
            &[(TY, 1)],
        ),
        pg(
            "set data type",
            "ALTER TABLE t ALTER c SET DATA TYPE text",
            &[(TY, 1)],
        ),
        pg(
            "type change on a new table",
            "CREATE TABLE t (c int);\nALTER TABLE t ALTER COLUMN c TYPE bigint",
            &[],
        ),
        pg(
            "set default",
            "ALTER TABLE t ALTER COLUMN c SET DEFAULT 0",
            &[],
        ),
        pg(
            "type change sqlite",
            "ALTER TABLE t ALTER COLUMN c TYPE text",
            &[],
        )
        .sqlite(),
        // not-null-on-existing-table
        pg(
            "set not null",
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
            &[(NN, 1)],
        ),
        pg(
            "add not null column",
            "ALTER TABLE t ADD COLUMN c int NOT NULL",
            &[(NN, 1)],
        ),
        pg(
            "add not null column without COLUMN",
            "ALTER TABLE IF EXISTS t\n  ADD c int NOT NULL REFERENCES p",
            &[(NN, 2)],
        ),
        pg(
            "add not null column with default",
            "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0",
            &[],
        ),
        pg(
            "add serial column",
            "ALTER TABLE t ADD COLUMN id bigserial NOT NULL",
            &[],
        ),
        pg("add nullable column", "ALTER TABLE t ADD c int", &[]),
        pg(
            "NOT NULL inside a check",
            "ALTER TABLE t ADD COLUMN c int CHECK (c IS NOT NULL)",
            &[],
        ),
        pg(
            "not null on a new table",
            "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN c int NOT NULL",
            &[],
        ),
        pg(
            "not null sqlite",
            "ALTER TABLE t ADD COLUMN c int NOT NULL",
            &[],
        )
        .sqlite(),
        // constraint-validation
        pg(
            "foreign key",
            "ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (p) REFERENCES p (id)",
            &[(CV, 1)],
        ),
        pg("check", "ALTER TABLE t ADD CHECK (a > 0)", &[(CV, 1)]),
        pg(
            "foreign key NOT VALID",
            "ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (p) REFERENCES p (id) NOT VALID",
            &[],
        ),
        pg("validate", "ALTER TABLE t VALIDATE CONSTRAINT t_fk", &[]),
        pg(
            "unique constraint",
            "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
            &[],
        ),
        pg(
            "check on a new table",
            "CREATE TABLE t (a int);\nALTER TABLE t ADD CHECK (a > 0)",
            &[],
        ),
        // transaction-control
        pg(
            "begin and commit",
            "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;",
            &[(TC, 1), (TC, 3)],
        ),
        pg(
            "other transaction statements",
            "START TRANSACTION;\nSAVEPOINT s;\nRELEASE SAVEPOINT s;\nROLLBACK;\nEND",
            &[(TC, 1), (TC, 2), (TC, 3), (TC, 4), (TC, 5)],
        ),
        pg("sqlite begin immediate", "BEGIN IMMEDIATE", &[(TC, 1)]).sqlite(),
        pg(
            "trigger body BEGIN ... END",
            "CREATE TRIGGER tr AFTER INSERT ON t\nBEGIN\n  UPDATE u SET n = 1;\nEND;",
            &[],
        )
        .sqlite(),
        pg(
            "BEGIN ATOMIC body",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\nEND;",
            &[],
        ),
        // concurrently-in-transaction
        pg(
            "concurrently inside a transaction",
            "CREATE INDEX\n  CONCURRENTLY IF NOT EXISTS i ON t (a)",
            &[(CT, 2)],
        ),
        pg(
            "concurrently in a no-transaction file",
            "DROP INDEX CONCURRENTLY IF EXISTS i",
            &[],
        )
        .no_tx(),
        pg(
            "refresh concurrently may run in a transaction",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            &[],
        ),
        pg(
            "concurrently in a string",
            "COMMENT ON INDEX i IS 'built concurrently'",
            &[],
        ),
        // no-transaction-not-idempotent
        pg(
            "create without IF NOT EXISTS",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            &[(NI, 1)],
        )
        .no_tx(),
        pg(
            "drop without IF EXISTS",
            "SELECT 1;\nDROP INDEX CONCURRENTLY i",
            &[(NI, 2)],
        )
        .no_tx(),
        pg(
            "drop table without IF EXISTS",
            "DROP TABLE t",
            &[(DE, 1), (NI, 1)],
        )
        .no_tx(),
        pg(
            "guarded statements",
            "CREATE TABLE IF NOT EXISTS t (id int);\nDROP INDEX IF EXISTS i;\n\
             CREATE OR REPLACE VIEW v AS SELECT 1;\nUPDATE t SET id = 1 WHERE id = 0",
            &[],
        )
        .no_tx(),
        pg(
            "sqlite no-transaction",
            "CREATE TABLE t (id int)",
            &[(NI, 1)],
        )
        .sqlite()
        .no_tx(),
        pg(
            "create in a transactional file",
            "CREATE TABLE t (id int)",
            &[],
        ),
        // batch-statement
        pg(
            "batched update",
            "-- batch-size: 1000\nUPDATE t SET c = 0\nWHERE id IN (SELECT id FROM t WHERE c \
             IS NULL LIMIT :batch_size)",
            &[],
        )
        .batched(),
        pg(
            "batched update behind WITH",
            "WITH b AS (SELECT id FROM t WHERE c IS NULL LIMIT :batch_size)\nUPDATE t SET \
             c = 0 FROM b WHERE t.id = b.id",
            &[],
        )
        .batched(),
        pg(
            "batched insert",
            "INSERT INTO t2 SELECT * FROM t WHERE NOT EXISTS (SELECT 1 FROM t2 WHERE t2.id \
             = t.id) LIMIT :batch_size",
            &[],
        )
        .batched(),
        pg(
            "batched delete is still destructive",
            "\nDELETE FROM t WHERE id IN (SELECT id FROM t WHERE old LIMIT :batch_size)",
            &[(DE, 2)],
        )
        .batched(),
        pg(
            "two statements",
            "UPDATE t SET c = 0 WHERE id IN (SELECT id FROM t WHERE c IS NULL LIMIT \
             :batch_size);\nSELECT 1;",
            &[(BS, 2)],
        )
        .batched(),
        pg("not DML", "CREATE TABLE x (id int)", &[(BS, 1)]).batched(),
        pg(
            "WITH ... SELECT",
            "WITH b AS (SELECT 1) SELECT * FROM b WHERE :batch_size > 0",
            &[(BS, 1)],
        )
        .batched(),
        pg(
            "no placeholder",
            "UPDATE t SET c = 0 WHERE c IS NULL",
            &[(BS, 1)],
        )
        .batched(),
        pg(
            "placeholder only in a string and a comment",
            "UPDATE t SET c = ':batch_size' WHERE c IS NULL -- :batch_size",
            &[(BS, 1)],
        )
        .batched(),
        pg(
            "cast is not the placeholder",
            "UPDATE t SET c = 0::batch_size WHERE c IS NULL",
            &[(BS, 1)],
        )
        .batched(),
        pg(
            "update without top-level WHERE",
            "UPDATE t SET c = (SELECT x FROM s WHERE s.id = t.id LIMIT :batch_size)",
            &[(BS, 1)],
        )
        .batched(),
        pg(
            "insert without WHERE",
            "INSERT INTO t SELECT * FROM s LIMIT :batch_size",
            &[(BS, 1)],
        )
        .batched(),
        pg(
            "empty batched file",
            "-- batch-size: 10\n-- nothing here\n",
            &[(BS, 1)],
        )
        .batched(),
        // batch-placeholder
        pg(
            "placeholder in an unbatched file",
            "UPDATE t SET a = 1\nWHERE id < :batch_size",
            &[(BP, 2)],
        ),
        pg(
            "placeholder look-alikes in an unbatched file",
            "SELECT ':batch_size', x::int, y ::batch_size -- :batch_size",
            &[],
        ),
    ]
}

#[test]
fn lint_cases() {
    let mut failures = Vec::new();
    for case in cases() {
        let got: Vec<(&str, usize)> = lint(&case.input())
            .iter()
            .map(|f| (f.code.as_str(), f.line))
            .collect();
        if got != case.want {
            failures.push(format!(
                "{}: expected {:?}, got {got:?}",
                case.name, case.want
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn findings_are_ordered_by_line_across_rules() {
    let sql = "-- no-transaction\nBEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\n\
               DROP TABLE public.old;\nUPDATE t SET a = :batch_size WHERE true;";
    let input = LintInput {
        sql,
        dialect: Dialect::Postgres,
        set: SetKind::Tenant,
        no_transaction: true,
        batched: false,
    };
    let got: Vec<(&str, usize)> = lint(&input)
        .iter()
        .map(|f| (f.code.as_str(), f.line))
        .collect();
    assert_eq!(got, [(TC, 2), (NI, 3), (CD, 4), (DE, 4), (NI, 4), (BP, 5)]);
}

#[test]
fn index_message_is_actionable() {
    let input = LintInput {
        sql: "CREATE INDEX reservations_starts_at ON reservations (starts_at)",
        dialect: Dialect::Postgres,
        set: SetKind::Tenant,
        no_transaction: false,
        batched: false,
    };
    let findings = lint(&input);
    assert_eq!(findings.len(), 1);
    assert_eq!(
        findings[0].message,
        "CREATE INDEX on existing table `reservations` without CONCURRENTLY blocks writes for \
         the whole build: move it to a `-- no-transaction` file and use CREATE INDEX \
         CONCURRENTLY IF NOT EXISTS"
    );
    assert_eq!(findings[0].severity(), Severity::Warning);
}

#[test]
fn messages_name_the_objects() {
    let cases: &[(&str, &str)] = &[
        (
            "DROP TABLE IF EXISTS a, b",
            "DROP TABLE `a` and `b` permanently deletes",
        ),
        (
            "ALTER TABLE orders DROP COLUMN note",
            "ALTER TABLE `orders` DROP COLUMN `note`",
        ),
        (
            "TRUNCATE ONLY events",
            "TRUNCATE `events` deletes every row",
        ),
        (
            "DELETE FROM flags",
            "DELETE FROM `flags` has no WHERE clause",
        ),
        (
            "DELETE FROM flags WHERE a",
            "DELETE FROM `flags` deletes rows",
        ),
        ("DROP TABLE t CASCADE", "CASCADE also removes everything"),
    ];
    for (sql, expected) in cases {
        let findings = destructive_statements(sql, Dialect::Postgres);
        assert_eq!(findings.len(), 1, "{sql}");
        assert!(
            findings[0].message.contains(expected),
            "{sql}: {}",
            findings[0].message
        );
    }
    let alter = lint(&LintInput {
        sql: "ALTER TABLE accounts ALTER COLUMN balance TYPE numeric",
        dialect: Dialect::Postgres,
        set: SetKind::Platform,
        no_transaction: false,
        batched: false,
    });
    assert!(alter[0].message.contains("`accounts.balance`"), "{alter:?}");
    let cross = lint(&LintInput {
        sql: "SELECT * FROM tenant_acme.orders",
        dialect: Dialect::Postgres,
        set: SetKind::Tenant,
        no_transaction: false,
        batched: false,
    });
    assert!(
        cross[0]
            .message
            .starts_with("`tenant_acme.orders` names another tenant's schema `tenant_acme`"),
        "{cross:?}"
    );
}

#[test]
fn idempotency_message_names_the_statement_kind() {
    let findings = lint(&LintInput {
        sql: "DROP INDEX CONCURRENTLY reservations_idx",
        dialect: Dialect::Postgres,
        set: SetKind::Platform,
        no_transaction: true,
        batched: false,
    });
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0].message.starts_with(
            "`DROP INDEX CONCURRENTLY` without `IF EXISTS` in a `-- no-transaction` file"
        ),
        "{}",
        findings[0].message
    );
}

#[test]
fn destructive_statements_only_reports_destructive() {
    let sql = "BEGIN;\nCREATE INDEX i ON t (a);\nALTER TABLE t DROP COLUMN a, DROP CONSTRAINT \
               k;\nSELECT * FROM public.x;\nDELETE FROM t WHERE a;\nCOMMIT;";
    let got: Vec<(LintCode, usize)> = destructive_statements(sql, Dialect::Sqlite)
        .iter()
        .map(|f| (f.code, f.line))
        .collect();
    assert_eq!(
        got,
        [(LintCode::Destructive, 3), (LintCode::Destructive, 5)]
    );
    assert!(
        destructive_statements("DROP INDEX i; UPDATE t SET a = 1", Dialect::Postgres).is_empty()
    );
}

#[test]
fn never_panics_on_any_prefix() {
    let sql = "-- batch-size: 5\nALTER TABLE IF EXISTS ONLY t * ADD CONSTRAINT c FOREIGN KEY \
               (a) REFERENCES p, ALTER COLUMN b SET DATA TYPE int, DROP COLUMN IF EXISTS d;\n\
               CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY \"public\".t (a);\n\
               WITH x AS (DELETE FROM ONLY y RETURNING *) UPDATE z SET a = :batch_size \
               WHERE true; DO $$ SELECT set_config('search_path', 'x'); $$; TRUNCATE TABLE \
               ONLY a, b; DROP SCHEMA IF EXISTS s; SET SCHEMA 'é'";
    for (end, _) in sql.char_indices().chain([(sql.len(), ' ')]) {
        for dialect in Dialect::ALL {
            for set in SetKind::ALL {
                for (no_transaction, batched) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let input = LintInput {
                        sql: &sql[..end],
                        dialect,
                        set,
                        no_transaction,
                        batched,
                    };
                    for finding in lint(&input) {
                        assert!(finding.line >= 1 && finding.line <= 5, "{finding}");
                    }
                }
            }
            let _ = destructive_statements(&sql[..end], dialect);
        }
    }
}
