//! The whole flow with exactly the users and roles of the repository: deploy/postgres/roles.sql
//! run on a PostgreSQL cluster of the test's own, deploy/rabbitmq/definitions.json imported into
//! a RabbitMQ node of its own, `tenantctl setup` as the owners, each service as its own process
//! with its own user (`tenantctl up --only …`), the deploy as the deploy job's user, rollback,
//! replay and audit as the SRE's and the reader's. Then each process is refused what it should
//! not do. The servers are private because roles and vhosts belong to a whole server.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sqlx::{ConnectOptions as _, Connection as _};
use testkit::ScratchDir;
use testkit::broker::PrivateBroker;
use testkit::cluster::PrivatePostgres;
use testkit::output_text as text;

/// The deploy's migration: a new table, and its down script.
const NOTICE_BOARD: &str = "20270101000000_create_notice_board";
const PASSWORD: &str = "test-only";

/// The install: the two servers with the repository's users and roles, the migration sets.
struct Install {
    postgres: PrivatePostgres,
    broker: PrivateBroker,
    sets: ScratchDir,
    services: Vec<Child>,
    /// The services' logs, shown when the test fails.
    logs: ScratchDir,
}

impl Install {
    async fn new() -> Install {
        let (postgres, broker) = tokio::join!(PrivatePostgres::start(), PrivateBroker::start());
        let psql = Command::new("psql")
            .arg(postgres.url())
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-f"])
            .arg(testkit::workspace_path("deploy/postgres/roles.sql"))
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        assert!(psql.status.success(), "roles.sql: {}", text(&psql));
        let definitions = testkit::workspace_path("deploy/rabbitmq/definitions.json");
        broker
            .rabbitmqctl(&["import_definitions", &definitions.to_string_lossy()])
            .await;
        // The file's users have no password (each install sets its own).
        for user in rabbitmq_users() {
            broker
                .rabbitmqctl(&["change_password", &user, PASSWORD])
                .await;
        }
        let sets = testkit::migration_sets_with(&[(
            NOTICE_BOARD,
            "CREATE TABLE notice_board (id bigint PRIMARY KEY, body text NOT NULL);\n",
            Some("DROP TABLE notice_board;\n"),
        )]);
        Install {
            postgres,
            broker,
            sets,
            services: Vec::new(),
            logs: ScratchDir::new(),
        }
    }

    fn database_url(&self, role: &str) -> String {
        format!(
            "postgres://{role}:{PASSWORD}@127.0.0.1:{}/tenancy",
            self.postgres.port()
        )
    }

    fn amqp_url(&self, user: &str) -> String {
        format!(
            "amqp://{user}:{PASSWORD}@127.0.0.1:{}/tenancy",
            self.broker.amqp_port()
        )
    }

    /// `tenantctl ARGS` as PostgreSQL role `role` and RabbitMQ user `user`.
    fn command(&self, role: &str, user: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command
            .args(args)
            .env("DATABASE_URL", self.database_url(role))
            .env("AMQP_URL", self.amqp_url(user))
            .env("MIGRATIONS_DIR", self.sets.path())
            .env("TENANT_OWNER_ROLE", "tenancy_tenants")
            .env("HEALTH_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("TENANCY_OPERATOR", "sre-test")
            .env_remove("TENANCY_NAMESPACE")
            .env_remove("TENANT_DATABASE_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        command
    }

    async fn tenantctl(&self, role: &str, user: &str, args: &[&str]) -> Output {
        let mut command = self.command(role, user, args);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// One service in a process of its own, as its own role and user.
    fn start(&mut self, service: &str) {
        let child = self
            .command(
                &format!("tenancy_{service}"),
                &format!("tenancy-{service}"),
                &["up", "--only", service],
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.logs.path().join(format!("{service}.log")))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        self.services.push(child);
    }

    /// As the server's superuser, in the platform database.
    async fn admin(&self) -> sqlx::PgConnection {
        self.postgres
            .options()
            .database("tenancy")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn status_of(&self, slug: &str) -> Option<String> {
        sqlx::query_scalar("SELECT status FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut self.admin().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn wait_for_status(&self, slug: &str, status: &str) {
        let wanted = Some(status.to_owned());
        testkit::wait_until(
            Duration::from_secs(120),
            &format!("{slug} is {status}"),
            || {
                let wanted = wanted.clone();
                async move { self.status_of(slug).await == wanted }
            },
        )
        .await;
    }

    /// Runs `sql` as `role` in the platform database; the SQLSTATE when it is refused.
    async fn sql_as(&self, role: &str, sql: &str) -> Result<(), String> {
        let mut conn = self
            .postgres
            .options()
            .username(role)
            .database("tenancy")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        let outcome = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        outcome.map(drop).map_err(|e| match e {
            sqlx::Error::Database(db) => db.code().unwrap_or_default().into_owned(),
            other => other.to_string(),
        })
    }

    /// A channel on a connection of its own, as RabbitMQ user `user` (a refusal closes the
    /// channel, not the connection, which the caller keeps open while it uses the channel).
    async fn channel_as(&self, user: &str) -> (Connection, Channel) {
        let connection = Connection::connect(&self.amqp_url(user), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let channel = connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        (connection, channel)
    }

    /// Where the scenario is, with where the services' logs are (shown in the test's output).
    fn reached(&self, step: &str) {
        eprintln!(
            "least privilege: {step}; logs in {}",
            self.logs.path().display()
        );
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        for child in &mut self.services {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for service in ["auditor", "provisioner", "migrator"] {
                let log = std::fs::read_to_string(self.logs.path().join(format!("{service}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {service}, last lines:");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn rabbitmq_users() -> Vec<String> {
    let text = std::fs::read_to_string(testkit::workspace_path("deploy/rabbitmq/definitions.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let definitions: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    definitions["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users"))
        .iter()
        .filter_map(|user| user["name"].as_str().map(str::to_owned))
        .collect()
}

fn expect_ok(what: &str, output: &Output) {
    assert!(output.status.success(), "{what}: {}", text(output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_runs_with_least_privilege_and_each_process_is_refused_the_rest() {
    let mut install = Install::new().await;

    let setup = install
        .tenantctl("tenancy_owner", "tenancy-setup", &["setup"])
        .await;
    expect_ok("setup", &setup);
    install.reached("setup done");
    for service in ["auditor", "provisioner", "migrator"] {
        install.start(service);
    }

    // Provisioning, schema and database isolation, registered as the platform backend would
    // (the SRE's user may publish events).
    let tenants = [
        ("lp_alpha", "schema"),
        ("lp_beta", "database"),
        ("lp_gamma", "schema"),
    ];
    for (slug, isolation) in tenants {
        let register = install
            .tenantctl(
                "tenancy_sre",
                "tenancy-sre",
                &[
                    "tenant",
                    "register",
                    "--slug",
                    slug,
                    "--name",
                    "Least",
                    "--isolation",
                    isolation,
                    "--admin-email",
                    "admin@least.example",
                    "--admin-name",
                    "Least Admin",
                ],
            )
            .await;
        expect_ok("register", &register);
    }
    for (slug, _) in tenants {
        install.wait_for_status(slug, "active").await;
    }

    install.reached("provisioned");
    // The database tenant is a copy of the template database, which the least-privileged
    // provisioner built: its history written by one statement, its tables the owner's, its
    // role granted what the template's role was, and the template's role nothing.
    let mut beta = install
        .postgres
        .options()
        .database("tenant_lp_beta")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (starts, owners, granted, template_granted): (i64, Vec<String>, bool, bool) =
        sqlx::query_as(
            "SELECT (SELECT count(DISTINCT started_at) FROM public._tenancy_history WHERE migration_set = 'tenant'),
                    (SELECT array_agg(DISTINCT tableowner::text) FROM pg_tables WHERE schemaname = 'public'),
                    has_table_privilege('tenant_lp_beta', 'public.users', 'INSERT'),
                    EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
                             WHERE pg_get_userbyid(a.grantee) LIKE 'tenant\\_template\\_%')",
        )
        .fetch_one(&mut beta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = beta.close().await;
    assert_eq!(
        (starts, owners, granted, template_granted),
        (1, vec!["tenancy_tenants".to_owned()], true, false),
        "lp_beta: copied from the template database"
    );
    // The schema tenants took the schema template (one statement wrote their history too).
    let schema_starts: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT started_at) FROM tenant_lp_gamma._tenancy_history WHERE migration_set = 'tenant'",
    )
    .fetch_one(&mut install.admin().await)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema_starts, 1, "lp_gamma: built from the schema template");
    // A rollback by an SRE, then a deploy by the deploy job that fails on one tenant.
    let base = testkit::latest_tenant_version();
    let rollback = install
        .tenantctl(
            "tenancy_sre",
            "tenancy-sre",
            &[
                "rollback",
                "--all",
                "--to",
                &base,
                "--allow-data-loss",
                "--wait",
                "--timeout",
                "120",
            ],
        )
        .await;
    expect_ok("rollback", &rollback);
    install.reached("rolled back");
    let mut admin = install.admin().await;
    sqlx::raw_sql("CREATE TABLE tenant_lp_gamma.notice_board (id int)")
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deploy = install
        .tenantctl(
            "tenancy_deploy",
            "tenancy-deploy",
            &["deploy", "--wait", "--timeout", "120"],
        )
        .await;
    assert!(
        !deploy.status.success() && text(&deploy).contains("lp_gamma"),
        "the deploy fails on lp_gamma only: {}",
        text(&deploy)
    );

    install.reached("deployed");
    // Repaired, and replayed from the dead-letter queue by an SRE.
    sqlx::raw_sql("DROP TABLE tenant_lp_gamma.notice_board")
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let replay = install
        .tenantctl(
            "tenancy_sre",
            "tenancy-sre",
            &["dlq", "replay", "migrator", "--all"],
        )
        .await;
    expect_ok("dlq replay", &replay);
    testkit::wait_until(
        Duration::from_secs(120),
        "every tenant at the deploy's version",
        || {
            let install = &install;
            async move {
                let behind: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM tenants WHERE schema_version <> 20270101000000",
                )
                .fetch_one(&mut install.admin().await)
                .await
                .unwrap_or(-1);
                behind == 0
            }
        },
    )
    .await;

    install.reached("replayed");
    // The audit trail, read by the reader: every event once.
    testkit::wait_until(Duration::from_secs(60), "the migrations audited", || {
        let install = &install;
        async move {
            let audit = install
                .tenantctl(
                    "tenancy_reader",
                    "tenancy-monitor",
                    &["audit", "--limit", "1000", "--output", "json"],
                )
                .await;
            if !audit.status.success() {
                eprintln!("audit: {}", text(&audit));
            }
            audit.status.success()
                && String::from_utf8_lossy(&audit.stdout)
                    .lines()
                    .filter(|line| line.contains("\"migration.completed\""))
                    .count()
                    >= 3
        }
    })
    .await;
    let duplicated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT id FROM audit_events GROUP BY id HAVING count(*) > 1) d",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(duplicated, 0);

    install.reached("audited");
    // PostgreSQL refuses each role what it does not need (42501: insufficient privilege;
    // 25006: read-only transaction).
    for (role, statement, refusal) in [
        ("tenancy_auditor", "UPDATE tenants SET plan = plan", "42501"),
        ("tenancy_auditor", "DELETE FROM audit_events", "42501"),
        ("tenancy_migrator", "CREATE ROLE intruder", "42501"),
        ("tenancy_migrator", "CREATE DATABASE intruder", "42501"),
        (
            "tenancy_migrator",
            "INSERT INTO audit_events (id) VALUES (gen_random_uuid())",
            "42501",
        ),
        ("tenancy_provisioner", "DELETE FROM audit_events", "42501"),
        (
            "tenancy_provisioner",
            "SELECT * FROM platform_users",
            "42501",
        ),
        (
            "tenancy_deploy",
            "UPDATE tenants SET status = 'deleted'",
            "42501",
        ),
        ("tenancy_deploy", "CREATE TABLE intruder (id int)", "42501"),
        ("tenancy_reader", "DELETE FROM deploys", "25006"),
        ("tenancy_reader", "SELECT * FROM invoices", "42501"),
    ] {
        assert_eq!(
            install.sql_as(role, statement).await,
            Err(refusal.to_owned()),
            "{role}: {statement}"
        );
    }
    // The tenants' storage belongs to their owner, not to whichever service created it.
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname LIKE 'tenant_lp_%'
         UNION SELECT DISTINCT pg_get_userbyid(datdba) FROM pg_database WHERE datname LIKE 'tenant_lp_%'
         UNION SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname LIKE 'tenant_lp_%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(owners, ["tenancy_tenants"]);

    // RabbitMQ refuses each user what it does not need (403 ACCESS_REFUSED closes the channel).
    let refused = |outcome: Result<(), lapin::Error>| {
        outcome.is_err_and(|e| e.to_string().contains("ACCESS_REFUSED"))
    };
    for (user, exchange) in [
        ("tenancy-auditor", "tenancy.commands"),
        ("tenancy-auditor", "tenancy.events"),
        ("tenancy-deploy", "tenancy.events"),
        ("tenancy-monitor", "tenancy.commands"),
    ] {
        let (_connection, channel) = install.channel_as(user).await;
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let published = match channel
            .basic_publish(
                exchange.into(),
                "migrate.tenant".into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default(),
            )
            .await
        {
            Ok(confirm) => confirm.await.map(drop),
            Err(e) => Err(e),
        };
        // A refused publish closes the channel asynchronously: the next call sees it.
        let after = channel
            .queue_declare(
                "auditor.events".into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map(drop);
        assert!(
            refused(published) || refused(after),
            "{user} may not publish to {exchange}"
        );
    }
    for (user, queue) in [
        ("tenancy-migrator", "provisioner.tenant-registered"),
        ("tenancy-deploy", "migrator.migrate-tenant.dlq"),
        ("tenancy-provisioner", "auditor.events"),
    ] {
        let (_connection, channel) = install.channel_as(user).await;
        let taken = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .map(drop);
        assert!(refused(taken), "{user} may not read {queue}");
    }
    let (_connection, channel) = install.channel_as("tenancy-provisioner").await;
    let declared = channel
        .queue_declare(
            "provisioner.intruder".into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .map(drop);
    assert!(refused(declared), "a service may not declare queues");

    // The queues' limits come from the definitions file's policies (its dead-letter exchange
    // already carried the failed deploy's command to the dead-letter queue above).
    let listed = install
        .broker
        .rabbitmqctl(&[
            "list_queues",
            "-p",
            "tenancy",
            "name",
            "policy",
            "--no-table-headers",
        ])
        .await;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for line in listed.lines().filter(|line| !line.trim().is_empty()) {
        let (queue, policy) = line.split_once('\t').unwrap_or((line, ""));
        let wanted = if queue.ends_with(".dlq") {
            "tenancy-dead-letter-queues".to_owned()
        } else {
            format!("tenancy-{queue}")
        };
        assert_eq!(policy.trim(), wanted, "{listed}");
    }
    assert_eq!(
        listed.lines().filter(|l| !l.trim().is_empty()).count(),
        8,
        "{listed}"
    );

    // Setup needs the owners, and a process without configure rights does not invent topology.
    let setup = install
        .tenantctl("tenancy_sre", "tenancy-sre", &["setup"])
        .await;
    assert!(
        !setup.status.success() && text(&setup).contains("only their owner may do"),
        "{}",
        text(&setup)
    );
    install
        .broker
        .rabbitmqctl(&["delete_queue", "-p", "tenancy", "auditor.events.dlq"])
        .await;
    let list = install
        .tenantctl("tenancy_sre", "tenancy-sre", &["dlq", "list", "auditor"])
        .await;
    assert!(
        !list.status.success()
            && text(&list).contains("auditor.events.dlq missing")
            && text(&list).contains("tenantctl setup"),
        "{}",
        text(&list)
    );
}
