//! The driver: runs the provisioning state machine ([`domain::provisioning`]) through the
//! [`ProvisioningEffects`], step after step, recording each outcome before the next step starts,
//! and turns the end of a run into the message's [`Outcome`].

use std::time::Instant;

use chrono::Utc;
use domain::provisioning::{
    Decision, OnFailure, Progress, Step, StepOutcome, StepStatus, TenantStatus, next, on_failure,
};
use shared::bus::Outcome;

use crate::effects::{Emitted, ProvisioningEffects};
use crate::error::StepError;
use crate::request::Request;

/// Provisions `request` as far as it goes now. `last_delivery`: this is the message's last
/// chance (the retry budget is spent after it).
pub async fn provision<E: ProvisioningEffects>(
    effects: &E,
    request: &Request,
    last_delivery: bool,
) -> Outcome {
    let mut progress = match effects.progress(request).await {
        Ok(progress) => progress,
        Err(error) => return retry_or_dead_letter(error, last_delivery),
    };
    if progress.status == Some(TenantStatus::Failed) {
        // A replayed or retried registration of a tenant that was given up: resume it.
        if let Err(error) = effects
            .set_status(request, TenantStatus::Provisioning)
            .await
        {
            return retry_or_dead_letter(error, last_delivery);
        }
        progress.status = Some(TenantStatus::Provisioning);
        tracing::info!("resuming a failed tenant");
    }
    loop {
        let step = match next(&progress) {
            Decision::Untouchable => {
                tracing::info!("the tenant is suspended or deleted; nothing to provision");
                return Outcome::Ack;
            }
            // Every step is recorded: (re)announce the result. The event has a fixed id, so a
            // redelivery does not make a second one.
            Decision::Done => {
                return match effects.emit(request, Emitted::Provisioned).await {
                    Ok(()) => Outcome::Ack,
                    Err(error) => retry_or_dead_letter(error, last_delivery),
                };
            }
            Decision::Run(step) => step,
        };
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = effects.run(step, request).await;
        let duration_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
        if let Err(error) = result {
            return fail_step(
                effects,
                request,
                &progress,
                step,
                error,
                started_at,
                duration_ms,
                last_delivery,
            )
            .await;
        }
        let attempt = match effects
            .record(
                request,
                step,
                &StepOutcome::Succeeded,
                started_at,
                duration_ms,
            )
            .await
        {
            Ok(attempt) => attempt,
            Err(error) => return retry_or_dead_letter(error, last_delivery),
        };
        let finished = Emitted::Step {
            step,
            status: StepStatus::Succeeded,
            attempt,
            duration_ms: u64::try_from(duration_ms).unwrap_or(0),
            error: None,
        };
        if let Err(error) = effects.emit(request, finished).await {
            return retry_or_dead_letter(error, last_delivery);
        }
        tracing::info!(step = step.as_str(), duration_ms, "provisioning step done");
        progress.steps.insert(step, StepStatus::Succeeded);
        if step == Step::Register {
            progress.status = Some(TenantStatus::Provisioning);
        }
    }
}

/// A step failed: record it, then retry later or give up (tenant `failed`, event, DLQ).
#[expect(clippy::too_many_arguments, reason = "the failed step's whole context")]
async fn fail_step<E: ProvisioningEffects>(
    effects: &E,
    request: &Request,
    progress: &Progress,
    step: Step,
    error: StepError,
    started_at: chrono::DateTime<Utc>,
    duration_ms: i64,
    last_delivery: bool,
) -> Outcome {
    let reason = error.reason.clone();
    // A registration refused before the row exists has nowhere to record the step: the
    // dead-letter queue and the event hold the reason.
    let has_row = progress.status.is_some() || step != Step::Register;
    let attempt = if has_row {
        effects.record(request, step, &StepOutcome::Failed { reason: reason.clone() }, started_at, duration_ms)
            .await
            .unwrap_or_else(|record| {
                tracing::warn!(step = step.as_str(), error = %record, "could not record the failed step");
                0
            })
    } else {
        0
    };
    let status = |status| Emitted::Step {
        step,
        status,
        attempt,
        duration_ms: u64::try_from(duration_ms).unwrap_or(0),
        error: Some(reason.clone()),
    };
    match on_failure(error.kind, last_delivery) {
        OnFailure::RetryLater => {
            tracing::warn!(step = step.as_str(), %reason, "provisioning step failed; it will be retried");
            let _ = effects.emit(request, status(StepStatus::Retrying)).await;
            Outcome::Retry { reason }
        }
        OnFailure::GiveUp => {
            if has_row {
                tracing::error!(step = step.as_str(), %reason, "provisioning failed; the tenant is marked failed");
                if let Err(mark) = effects.set_status(request, TenantStatus::Failed).await {
                    tracing::warn!(error = %mark, "could not mark the tenant failed; the step record and the dead-letter queue hold the reason");
                }
            } else {
                tracing::error!(step = step.as_str(), %reason, "registration refused; no tenant row was created: the reason is in the dead-letter queue and the tenant.provisioning_failed event");
            }
            let _ = effects.emit(request, status(StepStatus::Failed)).await;
            let _ = effects
                .emit(
                    request,
                    Emitted::Failed {
                        step,
                        reason: reason.clone(),
                        attempt,
                    },
                )
                .await;
            Outcome::DeadLetter {
                reason: format!("provisioning step {step} failed: {reason}"),
            }
        }
    }
}

/// Bookkeeping around a step failed (the database or the broker went away).
fn retry_or_dead_letter(error: StepError, last_delivery: bool) -> Outcome {
    match on_failure(error.kind, last_delivery) {
        OnFailure::RetryLater => Outcome::Retry {
            reason: error.reason,
        },
        OnFailure::GiveUp => Outcome::DeadLetter {
            reason: error.reason,
        },
    }
}

#[cfg(test)]
mod tests {
    //! The state machine exhaustively: every step × every failure, resumed as the consumer
    //! would (retries, redeliveries, a replay from the dead-letter queue), must converge on an
    //! active tenant with every side effect exactly once.
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::collections::{BTreeMap, BTreeSet};
    use std::panic::AssertUnwindSafe;
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};
    use domain::Isolation;
    use domain::provisioning::{Progress, Step, StepOutcome, StepStatus, TenantStatus};
    use domain::tenant::TenantSlug;
    use futures_util::FutureExt;
    use uuid::Uuid;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        /// Fails transiently once, then works.
        TransientOnce,
        /// Fails transiently on every attempt, until cleared.
        TransientForever,
        /// Fails permanently until an operator fixes the cause (cleared).
        Permanent,
        /// Does its work, then the process dies before the step is recorded.
        CrashBeforeRecord,
        /// Does its work and records it, then the process dies.
        CrashAfterRecord,
    }

    #[derive(Default)]
    struct World {
        status: Option<TenantStatus>,
        steps: BTreeMap<Step, StepStatus>,
        attempts: BTreeMap<Step, u32>,
        /// Distinct results of each step's effect (a set: steps are idempotent).
        effects: BTreeMap<Step, BTreeSet<String>>,
        /// Event ids published (the real effects derive them from the event's content).
        events: Vec<String>,
        fault: Option<(Step, Fault)>,
        crash_at_record: bool,
        crash_at_emit: bool,
    }

    /// The effects on an in-memory world, with the fault it is told to inject.
    #[derive(Default)]
    struct InMemoryEffects(Mutex<World>);

    fn crash() -> ! {
        panic!("the process died");
    }

    impl ProvisioningEffects for InMemoryEffects {
        async fn progress(&self, _: &Request) -> Result<Progress, StepError> {
            let world = self.0.lock().unwrap();
            Ok(Progress {
                status: world.status,
                steps: world.steps.clone(),
            })
        }

        async fn run(&self, step: Step, request: &Request) -> Result<(), StepError> {
            let mut world = self.0.lock().unwrap();
            match world.fault {
                Some((at, Fault::TransientOnce)) if at == step => {
                    world.fault = None;
                    return Err(StepError::transient("connection reset"));
                }
                Some((at, Fault::TransientForever)) if at == step => {
                    return Err(StepError::transient("database unreachable"));
                }
                Some((at, Fault::Permanent)) if at == step => {
                    return Err(StepError::permanent("broken migration"));
                }
                Some((at, Fault::CrashBeforeRecord)) if at == step => {
                    world.fault = None;
                    world.crash_at_record = true;
                }
                Some((at, Fault::CrashAfterRecord)) if at == step => {
                    world.fault = None;
                    world.crash_at_emit = true;
                }
                _ => {}
            }
            world
                .effects
                .entry(step)
                .or_default()
                .insert(format!("{step} of {}", request.slug));
            if step == Step::Register && world.status.is_none() {
                world.status = Some(TenantStatus::Provisioning);
            }
            if step == Step::Activate {
                world.status = Some(TenantStatus::Active);
            }
            Ok(())
        }

        async fn record(
            &self,
            _: &Request,
            step: Step,
            outcome: &StepOutcome,
            _: DateTime<Utc>,
            _: i64,
        ) -> Result<u32, StepError> {
            let mut world = self.0.lock().unwrap();
            if std::mem::take(&mut world.crash_at_record) {
                drop(world);
                crash();
            }
            world.steps.insert(step, outcome.status());
            let attempts = world.attempts.entry(step).or_default();
            *attempts += 1;
            Ok(*attempts)
        }

        async fn set_status(&self, _: &Request, status: TenantStatus) -> Result<(), StepError> {
            self.0.lock().unwrap().status = Some(status);
            Ok(())
        }

        async fn emit(&self, _: &Request, event: Emitted) -> Result<(), StepError> {
            let mut world = self.0.lock().unwrap();
            if std::mem::take(&mut world.crash_at_emit) {
                drop(world);
                crash();
            }
            // The real effects derive the id from the event's content: the same event twice is
            // one event.
            let id = match &event {
                Emitted::Step {
                    step,
                    status,
                    attempt,
                    ..
                } => format!("step/{step}/{status}/{attempt}"),
                Emitted::Provisioned => "provisioned".to_owned(),
                Emitted::Failed { step, attempt, .. } => format!("failed/{step}/{attempt}"),
            };
            if !world.events.contains(&id) {
                world.events.push(id);
            }
            Ok(())
        }
    }

    fn request() -> Request {
        Request {
            tenant_id: Uuid::new_v4(),
            slug: TenantSlug::parse("acme_towers").unwrap(),
            name: "Acme Towers".into(),
            plan: None,
            isolation: Isolation::Schema,
            server: None,
            admin_email: "ana@acme.example".into(),
            admin_name: "Ana Lima".into(),
        }
    }

    const DELIVERIES: u32 = 6;

    /// One message's life: up to `DELIVERIES` deliveries (a crash counts as one: the broker
    /// redelivers), several attempts each, until it is acknowledged or dead-lettered.
    async fn deliver(effects: &InMemoryEffects, request: &Request) -> Outcome {
        let mut outcome = Outcome::Retry {
            reason: "not run".into(),
        };
        for delivery in 1..=DELIVERIES {
            for _attempt in 0..3 {
                outcome = AssertUnwindSafe(provision(effects, request, delivery == DELIVERIES))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Outcome::Retry {
                        reason: "crashed".into(),
                    });
                if !matches!(outcome, Outcome::Retry { .. }) {
                    return outcome;
                }
            }
        }
        outcome
    }

    fn assert_converged(effects: &InMemoryEffects, context: &str) {
        let world = effects.0.lock().unwrap();
        assert_eq!(world.status, Some(TenantStatus::Active), "{context}");
        for step in Step::ALL {
            assert_eq!(
                world.steps.get(&step),
                Some(&StepStatus::Succeeded),
                "{context}: {step}"
            );
            assert_eq!(
                world.effects.get(&step).map(BTreeSet::len),
                Some(1),
                "{context}: {step} applied once"
            );
        }
        assert_eq!(
            world.events.iter().filter(|e| *e == "provisioned").count(),
            1,
            "{context}"
        );
    }

    #[tokio::test]
    async fn every_step_and_every_failure_converges() {
        for step in Step::ALL {
            for fault in [
                Fault::TransientOnce,
                Fault::TransientForever,
                Fault::Permanent,
                Fault::CrashBeforeRecord,
                Fault::CrashAfterRecord,
            ] {
                let context = format!("{fault:?} at {step}");
                let effects = InMemoryEffects::default();
                effects.0.lock().unwrap().fault = Some((step, fault));
                let request = request();
                let outcome = deliver(&effects, &request).await;
                match fault {
                    Fault::TransientOnce | Fault::CrashBeforeRecord | Fault::CrashAfterRecord => {
                        assert_eq!(outcome, Outcome::Ack, "{context}");
                    }
                    Fault::TransientForever | Fault::Permanent => {
                        let Outcome::DeadLetter { reason } = &outcome else {
                            panic!("{context}: {outcome:?}")
                        };
                        assert!(
                            reason.contains(step.as_str()),
                            "{context}: the reason names the step: {reason}"
                        );
                        {
                            let world = effects.0.lock().unwrap();
                            let expected = if step == Step::Register && fault == Fault::Permanent {
                                None // refused before any row existed: nothing was created
                            } else {
                                Some(TenantStatus::Failed)
                            };
                            if step != Step::Register {
                                assert_eq!(world.status, expected, "{context}");
                                assert_eq!(
                                    world.steps.get(&step),
                                    Some(&StepStatus::Failed),
                                    "{context}: the failure is recorded"
                                );
                                assert!(
                                    Step::ALL
                                        .iter()
                                        .filter(|s| **s < step)
                                        .all(|s| world.steps.get(s) == Some(&StepStatus::Succeeded)),
                                    "{context}"
                                );
                            }
                            assert!(
                                world
                                    .events
                                    .iter()
                                    .any(|e| e.starts_with(&format!("failed/{step}"))),
                                "{context}: provisioning_failed emitted"
                            );
                            assert!(
                                !world.events.contains(&"provisioned".to_owned()),
                                "{context}"
                            );
                        }
                        // The operator fixes the cause and replays the message.
                        effects.0.lock().unwrap().fault = None;
                        assert_eq!(
                            deliver(&effects, &request).await,
                            Outcome::Ack,
                            "{context}: after the replay"
                        );
                    }
                }
                assert_converged(&effects, &context);
            }
        }
    }

    /// A registration refused at the first step (a taken slug) leaves no tenant row, and the log
    /// says so instead of claiming the tenant was marked failed.
    #[tokio::test]
    async fn a_refused_registration_logs_that_nothing_was_created() {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let effects = InMemoryEffects::default();
        effects.0.lock().unwrap().fault = Some((Step::Register, Fault::Permanent));
        let outcome = provision(&effects, &request(), false).await;
        assert!(matches!(outcome, Outcome::DeadLetter { .. }), "{outcome:?}");
        assert_eq!(effects.0.lock().unwrap().status, None, "no row");
        let logged = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
        assert!(logged.contains("no tenant row was created"), "{logged}");
        assert!(!logged.contains("marked failed"), "{logged}");
    }

    #[tokio::test]
    async fn a_redelivery_of_an_active_tenant_changes_nothing() {
        let effects = InMemoryEffects::default();
        let request = request();
        assert_eq!(deliver(&effects, &request).await, Outcome::Ack);
        let events = effects.0.lock().unwrap().events.len();
        assert_eq!(deliver(&effects, &request).await, Outcome::Ack);
        assert_converged(&effects, "twice");
        assert_eq!(
            effects.0.lock().unwrap().events.len(),
            events,
            "no new event"
        );
        assert_eq!(
            effects
                .0
                .lock()
                .unwrap()
                .attempts
                .values()
                .copied()
                .collect::<Vec<_>>(),
            [1; 6],
            "no step ran again"
        );
    }

    #[tokio::test]
    async fn a_suspended_tenant_is_not_touched() {
        let effects = InMemoryEffects::default();
        effects.0.lock().unwrap().status = Some(TenantStatus::Suspended);
        assert_eq!(provision(&effects, &request(), false).await, Outcome::Ack);
        assert!(effects.0.lock().unwrap().effects.is_empty());
    }
}
