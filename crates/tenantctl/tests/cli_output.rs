//! How `tenantctl` prints, as an operator's shell sees it: the real binary into a pipe that
//! closes early, shell completions, colours on a terminal and off it.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};

use engine::{Catalog, Engine, EngineOptions, PgSchemaBackend, Target};
use testkit::output_text as text;
use testkit::pg::TestDatabase;

fn tenantctl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    command
        .args(args)
        .env_remove("MIGRATIONS_DIR")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE");
    command
}

/// A platform database of the test's own, migrated, with `events` rows in its audit trail.
async fn platform_with_events(events: usize) -> TestDatabase {
    let database = TestDatabase::create().await;
    let pool = sqlx::PgPool::connect_with(database.options())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let catalog = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(PgSchemaBackend::new(pool.clone()), EngineOptions::default())
        .apply(&Target::Platform, &catalog.platform, None, &())
        .await
        .unwrap_or_else(|e| panic!("platform migrations: {e}"));
    sqlx::query(
        "INSERT INTO audit_events (id, type, tenant_id, source, occurred_at, data) \
         SELECT gen_random_uuid(), 'tenant.provisioning_step', gen_random_uuid(), 'provisioner', \
                now() - n * interval '1 second', jsonb_build_object('step', 'seed', 'attempt', n) \
         FROM generate_series(1, $1::int) AS n",
    )
    .bind(i32::try_from(events).unwrap_or(i32::MAX))
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    pool.close().await;
    database
}

/// Runs `command` with stdout a pipe whose reader takes `lines` lines and then closes it.
fn read_lines_then_close(mut command: Command, lines: usize) -> (Vec<String>, Output) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("stdout is piped"));
    let read: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(lines)
        .map(|l| l.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // The reader is dropped here: the pipe is closed while tenantctl still has lines to write.
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    (read, output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_closed_after_one_line_ends_the_command_quietly_with_success() {
    // 2,000 rows, ~150 bytes each: far more than a pipe holds, so tenantctl is still writing
    // when the reader goes away.
    let database = platform_with_events(2000).await;
    for format in ["text", "json"] {
        let mut command = tenantctl(&["audit", "--limit", "2000", "--output", format]);
        command.env("DATABASE_URL", database.url());
        let (read, output) = read_lines_then_close(command, 1);
        assert_eq!(read.len(), 1);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{format}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{format}: {stderr}"
        );
    }
}

#[test]
fn completions_into_a_closed_pipe_end_quietly_with_success() {
    for shell in ["bash", "zsh", "fish"] {
        // The reader is gone before the first byte is written.
        let mut child = tenantctl(&["completions", shell])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stderr.is_empty(), "{shell}: {stderr}");
    }
}

#[test]
fn completions_for_each_shell_know_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = tenantctl(&["completions", shell])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(output.status.success(), "{shell}: {}", text(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        for word in [
            "deploy",
            "rollback",
            "dlq",
            "migrations",
            "status",
            "completions",
            "output",
            "color",
        ] {
            assert!(script.contains(word), "{shell} completion without {word}");
        }
    }
    let refused = tenantctl(&["completions", "tcsh"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
}

/// Runs `command_line` (shell words) under `script`, so that tenantctl's stdout is a terminal.
fn on_a_terminal(command_line: &str, env: &[(&str, &str)]) -> String {
    let mut command = Command::new("script");
    command
        .args(["-qec", command_line, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running script(1): {e}"));
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_on_a_terminal_only_unless_no_color_or_the_flag_says_otherwise() {
    let database = platform_with_events(3).await;
    let url = database.url();
    const ESC: char = '\x1b';

    // Into a pipe: no colour by default, colour when asked.
    let piped = |args: &[&str]| {
        let output = tenantctl(args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let plain = piped(&["audit"]);
    assert!(
        plain.contains("tenant.provisioning_step") && !plain.contains(ESC),
        "{plain:?}"
    );
    let forced = piped(&["audit", "--color", "always"]);
    assert!(forced.contains(ESC), "{forced:?}");
    assert!(!piped(&["--color", "never", "audit"]).contains(ESC));

    // On a terminal: colour by default, none with NO_COLOR or --color never.
    let binary = env!("CARGO_BIN_EXE_tenantctl");
    let env = [("DATABASE_URL", url.as_str())];
    let coloured = on_a_terminal(&format!("{binary} audit"), &env);
    assert!(coloured.contains(ESC), "{coloured:?}");
    let no_color = on_a_terminal(
        &format!("{binary} audit"),
        &[("DATABASE_URL", url.as_str()), ("NO_COLOR", "1")],
    );
    assert!(
        no_color.contains("tenant.provisioning_step") && !no_color.contains(ESC),
        "{no_color:?}"
    );
    let never = on_a_terminal(&format!("{binary} audit --color never"), &env);
    assert!(!never.contains(ESC), "{never:?}");
}
