//! Durable reminders: they activate their grain, stop when cancelled,
//! survive a silo restart, and move to a survivor when their silo dies.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable};
use actor_core::prelude::*;
use actor_persistence::{
    ReminderService, ReminderTable, ReminderTick, SiloBuilderRemindersExt, SqlReminders,
};
use tokio::net::TcpListener;

/// Ticks seen: (silo, reminder name).
type Log = Arc<Mutex<Vec<(String, String)>>>;

/// A grain that arms reminders and logs their ticks.
pub struct Alarm {
    log: Log,
}

impl Grain for Alarm {
    const TYPE_NAME: &'static str = "alarm";
}

#[grain_methods(also_handles(ReminderTick))]
impl Alarm {
    /// Arms reminder `name`, due after `due_ms`, every `period_ms`.
    pub async fn arm(
        &mut self,
        name: String,
        due_ms: u64,
        period_ms: u64,
        ctx: &GrainContext<Self>,
    ) -> Result<(), String> {
        let service = ReminderService::of(ctx.silo()).map_err(|e| e.to_string())?;
        service
            .register(
                ctx.id(),
                &name,
                Duration::from_millis(due_ms),
                Duration::from_millis(period_ms),
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// Cancels reminder `name`.
    pub async fn disarm(&mut self, name: String, ctx: &GrainContext<Self>) -> Result<bool, String> {
        let service = ReminderService::of(ctx.silo()).map_err(|e| e.to_string())?;
        service
            .cancel(ctx.id(), &name)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Handler<ReminderTick> for Alarm {
    async fn handle(&mut self, tick: ReminderTick, ctx: &GrainContext<Self>) {
        self.log
            .lock()
            .unwrap()
            .push((ctx.silo().name().to_owned(), tick.name));
    }
}

fn count(log: &Log, silo: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| s == silo)
        .count()
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sqlite_table(dir: &tempfile::TempDir) -> Arc<dyn ReminderTable> {
    let url = format!("sqlite://{}", dir.path().join("reminders.db").display());
    Arc::new(SqlReminders::connect(&url).await.unwrap())
}

async fn silo(
    name: &str,
    table: Arc<dyn ReminderTable>,
    log: &Log,
) -> (Silo, tokio::task::JoinHandle<()>) {
    let l = log.clone();
    let silo = Silo::builder()
        .name(name)
        .with_reminders(table)
        .grain_with(move |_| Alarm { log: l.clone() })
        .start()
        .await
        .unwrap();
    let service = ReminderService::of(&silo).unwrap().clone();
    let task = service.start(silo.clone(), Arc::new(|_| true), Duration::from_millis(20));
    (silo, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_activate_their_grain_and_stop_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let (silo, _task) = silo("one", sqlite_table(&dir).await, &log).await;
    let alarm = silo.get_grain::<Alarm>("wake");
    alarm.arm("beep".into(), 50, 100).await.unwrap().unwrap();
    assert!(silo.deactivate_all(Duration::from_secs(5)).await);
    assert!(!silo.is_active(alarm.id()));
    eventually("three ticks", Duration::from_secs(5), || {
        count(&log, "one") >= 3
    })
    .await;
    assert!(silo.is_active(alarm.id()), "a tick activates its grain");
    assert_eq!(alarm.disarm("beep".into()).await.unwrap(), Ok(true));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = count(&log, "one");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        count(&log, "one"),
        stopped,
        "a cancelled reminder stays quiet"
    );
    assert_eq!(alarm.disarm("beep".into()).await.unwrap(), Ok(false));

    // A one-shot reminder fires once.
    alarm.arm("once".into(), 10, 0).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let once = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, n)| n == "once")
        .count();
    assert_eq!(once, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_survive_a_silo_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let (first, task) = silo("first", sqlite_table(&dir).await, &log).await;
    first
        .get_grain::<Alarm>(7)
        .arm("daily".into(), 20, 100)
        .await
        .unwrap()
        .unwrap();
    eventually("ticks on the first silo", Duration::from_secs(5), || {
        count(&log, "first") >= 1
    })
    .await;
    task.abort();
    first.shutdown().await;
    // A new silo on the same file picks the reminder up.
    let (_second, _t) = silo("second", sqlite_table(&dir).await, &log).await;
    eventually(
        "ticks on the restarted silo",
        Duration::from_secs(5),
        || count(&log, "second") >= 2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_move_to_a_survivor_when_their_silo_dies() {
    let dir = tempfile::tempdir().unwrap();
    let reminders = sqlite_table(&dir).await;
    let membership: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let log = Log::default();
    let mut members = Vec::new();
    for name in ["a", "b"] {
        let l = log.clone();
        let member = Arc::new(
            ClusterSilo::start(
                Silo::builder()
                    .name(name)
                    .with_reminders(reminders.clone())
                    .grain_with(move |_| Alarm { log: l.clone() }),
                TcpListener::bind("127.0.0.1:0").await.unwrap(),
                membership.clone(),
                ClusterConfig::fast(),
            )
            .await
            .unwrap(),
        );
        let m = member.clone();
        let owns: actor_persistence::Ownership =
            Arc::new(move |id: &GrainId| m.owner_of(id) == m.address().endpoint);
        let service = ReminderService::of(member.silo()).unwrap().clone();
        let task = service.start(member.silo().clone(), owns, Duration::from_millis(20));
        members.push((member, task));
    }
    let (a, b) = (&members[0].0, &members[1].0);
    eventually("both see two", Duration::from_secs(10), || {
        a.active_members().len() == 2 && b.active_members().len() == 2
    })
    .await;
    let key = (0..1000i64)
        .find(|k| a.owner_of(&GrainId::new("alarm", *k)) == b.address().endpoint)
        .unwrap();
    a.silo()
        .get_grain::<Alarm>(key)
        .arm("tick".into(), 20, 100)
        .await
        .unwrap()
        .unwrap();
    eventually("ticks on b", Duration::from_secs(5), || {
        count(&log, "b") >= 2
    })
    .await;
    assert_eq!(count(&log, "a"), 0, "only the owner fires");

    b.kill();
    members[1].1.abort();
    eventually("ticks move to a", Duration::from_secs(15), || {
        count(&log, "a") >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_reminder_table_keeps_reminders() {
    let table = match SqlReminders::connect("postgres://postgres@127.0.0.1:5432/test").await {
        Ok(t) => t,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            return eprintln!("skipping the PostgreSQL reminder table: {e}");
        }
        Err(e) => panic!("CI=true and PostgreSQL is unavailable: {e}"),
    };
    let grain = GrainId::new("alarm", uuid::Uuid::new_v4());
    let r = actor_persistence::Reminder {
        grain: grain.clone(),
        name: "x".into(),
        due_millis: 5,
        period_millis: 10,
    };
    table.upsert(r.clone()).await.unwrap();
    table
        .upsert(actor_persistence::Reminder {
            due_millis: 7,
            ..r.clone()
        })
        .await
        .unwrap();
    let mine = table.of_grain(&grain).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].due_millis, 7);
    assert!(table.due(7).await.unwrap().iter().any(|x| x.grain == grain));
    assert!(!table.due(6).await.unwrap().iter().any(|x| x.grain == grain));
    assert!(table.remove(&grain, "x").await.unwrap());
    assert!(table.of_grain(&grain).await.unwrap().is_empty());
    let err = SqlReminders::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}
