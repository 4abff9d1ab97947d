//! What to do with a command, decided without I/O: the migrator's policy, one for migrate and
//! rollback.
//!
//! The handlers gather the facts (the tenant row, how the engine's run ended, the delivery,
//! shutdown), ask here, and carry the answer out: write the result row, publish the event, then
//! acknowledge, retry or dead-letter the message ([`Decision::settle`]).
//!
//! - A run that reached its target (or had nothing to do) is recorded `succeeded`, which clears
//!   the tenant's `migration_error`, and acknowledged.
//! - A permanent failure, or a transient one on the message's last delivery, is final: recorded
//!   `failed` (the tenant needs reprocessing), announced, dead-lettered. A rollback the engine
//!   refused before running anything leaves the tenant as it was: nothing is recorded.
//! - A transient failure before the last delivery is announced as retried and given back; a
//!   migrate records it `retrying` on its deploy row (a rollback has none).
//! - A transient failure during shutdown is the shutdown's doing: given back, nothing recorded.
//! - A message leaves the queue (acknowledged or dead-lettered) only once its result is on
//!   record; a result that could not be written gives the message back.

use domain::Version;
use domain::provisioning::TenantStatus;
use domain::server::ServerName;
use engine::{EngineError, MigrationSet};
use shared::bus::Outcome;
use shared::platform::deploys::{MigrationTenant, ResultStatus};

/// Which command is being handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// `migrate.tenant`: up to a deploy's target.
    Migrate,
    /// `rollback.tenant`: down to an operator's version.
    Rollback,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Migrate => "migrate",
            Command::Rollback => "rollback",
        }
    }

    /// How a transient failure before the last delivery is recorded: on a migrate's deploy row;
    /// a rollback has no deploy row.
    fn retry_record(self) -> Option<ResultStatus> {
        match self {
            Command::Migrate => Some(ResultStatus::Retrying),
            Command::Rollback => None,
        }
    }
}

/// How the engine's run on the tenant ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// The tenant was at the target and healthy: nothing ran.
    NothingToDo,
    /// The engine reached the target (applied or reverted).
    Reached,
    Failed(Failure),
}

/// An engine failure, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub reason: String,
    /// A retry may succeed (a lock timeout, a lost connection).
    pub transient: bool,
    /// Refused before anything ran (a plan that cannot be made, data loss not allowed).
    pub refused: bool,
}

impl Failure {
    /// `error`, on the tenant server `server`: named in the reason unless it is the only one
    /// a fleet may have (`default`), so that an operator sees which server failed.
    pub(crate) fn of(error: &EngineError, server: &ServerName) -> Self {
        Failure {
            reason: if server.is_default() {
                error.to_string()
            } else {
                format!("{error} (on tenant server {server})")
            },
            transient: error.is_transient(),
            refused: matches!(
                error,
                EngineError::Plan { .. } | EngineError::DataLoss { .. }
            ),
        }
    }
}

/// Everything the policy looks at once a command's run is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Situation {
    pub command: Command,
    pub run: RunEnd,
    /// A failure now would be final: the message's retry budget is spent.
    pub last_delivery: bool,
    pub shutting_down: bool,
}

/// What the handler does, in order: record, announce, then settle the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The result row to write (`deploy_tenants`, and on `tenants` the version reached and
    /// `migration_error`: cleared by `succeeded`, set by `failed`, kept by `retrying`).
    pub record: Option<ResultStatus>,
    pub announce: Announce,
    /// What becomes of the message once the result is on record.
    pub outcome: Outcome,
}

/// The lifecycle event a command ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce {
    Nothing,
    /// `migration.completed`, or `migration.rollback` for a rollback.
    Completed,
    /// `migration.failed`; `retried`: the command is given back for another attempt.
    Failed {
        retried: bool,
    },
}

impl Decision {
    /// A decision that ends the command before the engine runs: `outcome`, after `record`.
    fn before_running(record: Option<ResultStatus>, outcome: Outcome) -> Self {
        Decision {
            record,
            announce: Announce::Nothing,
            outcome,
        }
    }

    /// The message's fate once the record was attempted (`Ok` as well when there was nothing
    /// to record): it leaves the queue only with its result on record.
    pub(crate) fn settle(self, recorded: Result<(), String>) -> Outcome {
        match (self.outcome, recorded) {
            (outcome, Ok(())) => outcome,
            (retry @ Outcome::Retry { .. }, Err(_)) => retry,
            (Outcome::Ack, Err(record_error)) => Outcome::Retry {
                reason: record_error,
            },
            (Outcome::DeadLetter { reason }, Err(record_error)) => Outcome::Retry {
                reason: format!("{reason}; {record_error}"),
            },
        }
    }
}

/// The decision once the engine's run is over (or found nothing to do).
pub(crate) fn decide(situation: Situation) -> Decision {
    let Situation {
        command,
        run,
        last_delivery,
        shutting_down,
    } = situation;
    let failure = match run {
        RunEnd::NothingToDo => {
            return Decision::before_running(Some(ResultStatus::Succeeded), Outcome::Ack);
        }
        RunEnd::Reached => {
            return Decision {
                record: Some(ResultStatus::Succeeded),
                announce: Announce::Completed,
                outcome: Outcome::Ack,
            };
        }
        RunEnd::Failed(failure) => failure,
    };
    if failure.transient && shutting_down {
        return Decision::before_running(
            None,
            Outcome::Retry {
                reason: format!("interrupted by shutdown: {}", failure.reason),
            },
        );
    }
    let reason = failure.reason;
    if failure.transient && !last_delivery {
        return Decision {
            record: command.retry_record(),
            announce: Announce::Failed { retried: true },
            outcome: Outcome::Retry { reason },
        };
    }
    let leaves_tenant_as_it_was = command == Command::Rollback && failure.refused;
    Decision {
        record: (!leaves_tenant_as_it_was).then_some(ResultStatus::Failed),
        announce: Announce::Failed { retried: false },
        outcome: Outcome::DeadLetter { reason },
    }
}

/// A command names a version this build does not know (an older build during a rolling
/// upgrade): it is given back for a build that knows it, never acknowledged. Rolling back to
/// 0 (before every migration) is always known.
pub(crate) fn check_known(
    command: Command,
    set: &MigrationSet,
    version: Version,
) -> Result<(), Decision> {
    let known = set.migrations.iter().any(|m| m.version == version)
        || (command == Command::Rollback && version.is_zero());
    if known {
        return Ok(());
    }
    let latest = set.latest().unwrap_or(Version::ZERO);
    let reason = match command {
        Command::Migrate => format!(
            "target version {version} is unknown to this migrator (it knows up to {latest}): a newer build must apply it"
        ),
        Command::Rollback => format!(
            "version {version} is unknown to this migrator (it knows up to {latest}): a newer build must roll back to it"
        ),
    };
    Err(Decision::before_running(
        command.retry_record(),
        Outcome::Retry { reason },
    ))
}

/// What a migrate command does with its tenant, from the tenant row alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Below the target, or needing reprocessing: run the engine.
    Run,
    /// At the target and healthy: acknowledged without touching the tenant server.
    NothingToDo,
}

/// Whether a migrate command runs for `tenant`, or how it ends at once: a tenant still
/// provisioning is waited for (its activation enqueues it into the latest deploy); a failed or
/// deleted one has nothing to migrate, which is final.
pub(crate) fn admit(tenant: &MigrationTenant, target: Version) -> Result<Admission, Decision> {
    match tenant.status {
        TenantStatus::Active | TenantStatus::Suspended => {}
        TenantStatus::Provisioning => {
            return Err(Decision::before_running(
                None,
                Outcome::Retry {
                    reason: "the tenant is still provisioning".into(),
                },
            ));
        }
        other @ (TenantStatus::Failed | TenantStatus::Deleted) => {
            return Err(Decision::before_running(
                Some(ResultStatus::Failed),
                Outcome::DeadLetter {
                    reason: format!("the tenant is {other}: there is nothing to migrate"),
                },
            ));
        }
    }
    if tenant.schema_version >= target && tenant.migration_error.is_none() {
        Ok(Admission::NothingToDo)
    } else {
        Ok(Admission::Run)
    }
}

#[cfg(test)]
mod tests {
    //! The policy as a table: every command × how its run ended × first or last delivery ×
    //! shutdown or not, each with the one decision it must get.
    #![expect(clippy::unwrap_used, reason = "tests")]

    use domain::Isolation;
    use domain::tenant::TenantSlug;
    use engine::SetKind;

    use super::*;

    /// How a run ended, for the table (the reason is always `boom`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ran {
        NothingToDo,
        Reached,
        Transient,
        Permanent,
        /// Permanent, and refused before anything ran.
        Refused,
    }

    impl Ran {
        const ALL: [Ran; 5] = [
            Ran::NothingToDo,
            Ran::Reached,
            Ran::Transient,
            Ran::Permanent,
            Ran::Refused,
        ];

        fn run_end(self) -> RunEnd {
            let failed = |transient, refused| {
                RunEnd::Failed(Failure {
                    reason: "boom".into(),
                    transient,
                    refused,
                })
            };
            match self {
                Ran::NothingToDo => RunEnd::NothingToDo,
                Ran::Reached => RunEnd::Reached,
                Ran::Transient => failed(true, false),
                Ran::Permanent => failed(false, false),
                Ran::Refused => failed(false, true),
            }
        }
    }

    /// The message's fate, for the table.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Then {
        Ack,
        Retry,
        /// Given back with "interrupted by shutdown: boom".
        RetryAfterShutdown,
        DeadLetter,
    }

    const ANY: Option<bool> = None;
    const YES: Option<bool> = Some(true);
    const NO: Option<bool> = Some(false);
    const RETRIED: Announce = Announce::Failed { retried: true };
    const FINAL: Announce = Announce::Failed { retried: false };
    use Announce::{Completed, Nothing};
    use ResultStatus::{Failed, Retrying, Succeeded};

    /// A situation: command (`None`: either), how the run ended, last delivery, shutting down.
    type When = (Option<Command>, Ran, Option<bool>, Option<bool>);
    /// Its decision: the result row, the event, the message's fate.
    type Expected = (Option<ResultStatus>, Announce, Then);

    /// The policy; the first matching row applies.
    #[rustfmt::skip]
    fn specification() -> Vec<(When, Expected)> {
        use Command::{Migrate, Rollback};
        vec![
            // Success, whatever the delivery: on record, then acknowledged.
            ((None,           Ran::NothingToDo, ANY, ANY), (Some(Succeeded), Nothing,   Then::Ack)),
            ((None,           Ran::Reached,     ANY, ANY), (Some(Succeeded), Completed, Then::Ack)),
            // A transient failure while shutting down: the shutdown's doing, nothing recorded.
            ((None,           Ran::Transient,   ANY, YES), (None,            Nothing,   Then::RetryAfterShutdown)),
            // A transient failure with deliveries left: retried, on a migrate's deploy row.
            ((Some(Migrate),  Ran::Transient,   NO,  NO),  (Some(Retrying),  RETRIED,   Then::Retry)),
            ((Some(Rollback), Ran::Transient,   NO,  NO),  (None,            RETRIED,   Then::Retry)),
            // Final failures: marked on the tenant, dead-lettered (shutdown or not)...
            ((None,           Ran::Transient,   YES, NO),  (Some(Failed),    FINAL,     Then::DeadLetter)),
            ((None,           Ran::Permanent,   ANY, ANY), (Some(Failed),    FINAL,     Then::DeadLetter)),
            ((Some(Migrate),  Ran::Refused,     ANY, ANY), (Some(Failed),    FINAL,     Then::DeadLetter)),
            // ...except a refused rollback, which left the tenant as it was.
            ((Some(Rollback), Ran::Refused,     ANY, ANY), (None,            FINAL,     Then::DeadLetter)),
        ]
    }

    fn then_of(outcome: &Outcome) -> Then {
        match outcome {
            Outcome::Ack => Then::Ack,
            Outcome::Retry { reason } if reason == "interrupted by shutdown: boom" => {
                Then::RetryAfterShutdown
            }
            Outcome::Retry { reason } => {
                assert_eq!(reason, "boom");
                Then::Retry
            }
            Outcome::DeadLetter { reason } => {
                assert_eq!(reason, "boom");
                Then::DeadLetter
            }
        }
    }

    #[test]
    fn every_situation_gets_the_decision_of_the_specification() {
        let spec = specification();
        let matches = |wanted: Option<bool>, actual: bool| wanted.is_none_or(|w| w == actual);
        for command in [Command::Migrate, Command::Rollback] {
            for ran in Ran::ALL {
                for last_delivery in [false, true] {
                    for shutting_down in [false, true] {
                        let context = format!(
                            "{command:?}, {ran:?}, last delivery {last_delivery}, shutting down {shutting_down}"
                        );
                        let (_, (record, announce, then)) = spec
                            .iter()
                            .find(|((c, r, last, shutdown), _)| {
                                c.is_none_or(|c| c == command)
                                    && *r == ran
                                    && matches(*last, last_delivery)
                                    && matches(*shutdown, shutting_down)
                            })
                            .unwrap_or_else(|| panic!("the specification misses {context}"));
                        let decision = decide(Situation {
                            command,
                            run: ran.run_end(),
                            last_delivery,
                            shutting_down,
                        });
                        assert_eq!(&decision.record, record, "{context}: record");
                        assert_eq!(&decision.announce, announce, "{context}: announce");
                        assert_eq!(then_of(&decision.outcome), *then, "{context}: outcome");
                    }
                }
            }
        }
    }

    fn ending(outcome: Outcome) -> Decision {
        Decision {
            record: Some(Succeeded),
            announce: Nothing,
            outcome,
        }
    }

    #[test]
    fn a_message_leaves_the_queue_only_with_its_result_on_record() {
        let recorded = || Ok(());
        let not_recorded = || Err("the platform database is down".to_owned());
        let dead_letter = || Outcome::DeadLetter {
            reason: "boom".into(),
        };
        let retry = || Outcome::Retry {
            reason: "boom".into(),
        };

        assert_eq!(ending(Outcome::Ack).settle(recorded()), Outcome::Ack);
        assert_eq!(ending(dead_letter()).settle(recorded()), dead_letter());
        assert_eq!(ending(retry()).settle(recorded()), retry());

        assert_eq!(
            ending(Outcome::Ack).settle(not_recorded()),
            Outcome::Retry {
                reason: "the platform database is down".into()
            }
        );
        assert_eq!(
            ending(dead_letter()).settle(not_recorded()),
            Outcome::Retry {
                reason: "boom; the platform database is down".into()
            },
            "both reasons"
        );
        assert_eq!(
            ending(retry()).settle(not_recorded()),
            retry(),
            "given back anyway"
        );
    }

    fn tenant(status: &str, schema_version: u8, needs_reprocessing: bool) -> MigrationTenant {
        MigrationTenant {
            server: domain::server::ServerName::default_server(),
            slug: TenantSlug::parse("acme_towers").unwrap(),
            status: status.parse().unwrap(),
            isolation: Isolation::Schema,
            schema_version: v(schema_version),
            migration_error: needs_reprocessing.then(|| "an earlier failure".to_owned()),
        }
    }

    fn v(n: u8) -> Version {
        if n == 0 {
            return Version::ZERO;
        }
        format!("202601010000{n:02}").parse().unwrap()
    }

    #[test]
    fn a_healthy_tenant_at_the_target_has_nothing_to_do() {
        for status in ["active", "suspended"] {
            assert_eq!(
                admit(&tenant(status, 2, false), v(2)),
                Ok(Admission::NothingToDo)
            );
            assert_eq!(
                admit(&tenant(status, 3, false), v(2)),
                Ok(Admission::NothingToDo),
                "beyond the target: a newer deploy came first"
            );
            assert_eq!(admit(&tenant(status, 1, false), v(2)), Ok(Admission::Run));
            assert_eq!(
                admit(&tenant(status, 2, true), v(2)),
                Ok(Admission::Run),
                "a tenant needing reprocessing runs again, to clear its mark"
            );
        }
    }

    #[test]
    fn a_provisioning_tenant_is_waited_for_and_a_gone_one_is_final() {
        assert_eq!(
            admit(&tenant("provisioning", 0, false), v(2)),
            Err(Decision {
                record: None,
                announce: Nothing,
                outcome: Outcome::Retry {
                    reason: "the tenant is still provisioning".into()
                },
            })
        );
        for status in ["failed", "deleted"] {
            assert_eq!(
                admit(&tenant(status, 1, false), v(2)),
                Err(Decision {
                    record: Some(Failed),
                    announce: Nothing,
                    outcome: Outcome::DeadLetter {
                        reason: format!("the tenant is {status}: there is nothing to migrate")
                    },
                })
            );
        }
    }

    fn set_of(n: u8) -> MigrationSet {
        let files: Vec<_> = (1..=n)
            .map(|i| (format!("{}_m{i}.up.sql", v(i)), format!("SELECT {i};")))
            .collect();
        MigrationSet::from_files(SetKind::Tenant, "test", files).unwrap()
    }

    #[test]
    fn a_version_unknown_to_this_build_is_given_back_never_acknowledged() {
        let set = set_of(2);
        for command in [Command::Migrate, Command::Rollback] {
            assert_eq!(check_known(command, &set, v(2)), Ok(()));
            let Err(decision) = check_known(command, &set, v(3)) else {
                panic!("{command:?}: version 3 is not in the set");
            };
            let Outcome::Retry { reason } = &decision.outcome else {
                panic!("{command:?}: {decision:?}");
            };
            assert!(
                reason.contains(&format!("it knows up to {}", v(2))),
                "{reason}"
            );
            assert_eq!(decision.record, command.retry_record(), "{command:?}");
        }
        assert_eq!(
            check_known(Command::Rollback, &set, Version::ZERO),
            Ok(()),
            "back to before every migration"
        );
        assert!(check_known(Command::Migrate, &set, Version::ZERO).is_err());
    }
}
