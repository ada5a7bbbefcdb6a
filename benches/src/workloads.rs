//! The workloads, written once over [`Subject`] and run against every
//! subject. Each returns one sample in its scenario's unit; setup
//! (spawning and warming the actors) is never timed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;

use crate::subjects::{Flavor, Subject};

/// One measurement: the figure in the scenario's unit and, where it
/// applies, the process CPU time per operation (every thread of the
/// process, in ns), which a busy machine disturbs less than wall time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) value: f64,
    pub(crate) cpu_ns_per_op: Option<f64>,
}

/// Wall and CPU time of one timed section.
struct Clocks {
    wall: Instant,
    cpu: ProcessTime,
}

impl Clocks {
    fn start() -> Clocks {
        Clocks {
            cpu: ProcessTime::now(),
            wall: Instant::now(),
        }
    }
    fn stop(self) -> (Duration, Duration) {
        let wall = self.wall.elapsed();
        (wall, self.cpu.elapsed())
    }
}

fn per_op(d: Duration, ops: u64) -> f64 {
    d.as_nanos() as f64 / ops as f64
}

/// Untimed calls before a latency sample.
const WARM_UP_CALLS: u64 = 1_000;

/// Sequential asks from one caller task to one actor: ns per call.
pub(crate) fn ask_latency<S: Subject>(flavor: Flavor, calls: u64) -> Sample {
    let exec = S::executor(flavor);
    exec.block_on(async {
        let env = S::env().await;
        let h = S::spawn(&env, 0).await;
        let caller = S::spawn_task(async move {
            // A fixed warm-up, so that a profiler can difference two runs.
            for i in 0..WARM_UP_CALLS {
                black_box(S::ask(&h, i).await);
            }
            let t = Clocks::start();
            for i in 0..calls {
                black_box(S::ask(&h, i).await);
            }
            t.stop()
        });
        let (wall, cpu) = caller.await.expect("caller task");
        drop(env);
        Sample {
            value: per_op(wall, calls),
            cpu_ns_per_op: Some(per_op(cpu, calls)),
        }
    })
}

/// `callers` tasks, each asking sequentially, spread over `actors` actors
/// (caller `c`'s `k`-th call goes to actor `(c + k * callers) % actors`):
/// calls per second for `total` calls.
pub(crate) fn ask_throughput<S: Subject>(
    flavor: Flavor,
    callers: u64,
    actors: u64,
    total: u64,
) -> Sample {
    let exec = S::executor(flavor);
    exec.block_on(async {
        let env = S::env().await;
        let mut hs = Vec::with_capacity(actors as usize);
        for i in 0..actors {
            let h = S::spawn(&env, i).await;
            black_box(S::ask(&h, 1).await);
            hs.push(h);
        }
        let hs = Arc::new(hs);
        let per = (total / callers).max(1);
        let t = Clocks::start();
        let tasks: Vec<_> = (0..callers)
            .map(|c| {
                let hs = hs.clone();
                S::spawn_task(async move {
                    for k in 0..per {
                        let a = ((c + k * callers) % actors) as usize;
                        black_box(S::ask(&hs[a], k).await);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("caller task");
        }
        let (wall, cpu) = t.stop();
        drop(env);
        let calls = per * callers;
        Sample {
            value: calls as f64 / wall.as_secs_f64(),
            cpu_ns_per_op: Some(per_op(cpu, calls)),
        }
    })
}

/// One sender task tells `messages` one-way messages round-robin to
/// `actors` actors (message `i` to actor `i % actors`; one actor is the
/// plain one-sender-one-receiver case, 100 the shape of
/// tqwewe/actor-benchmarks), then asks each actor once (answered after
/// every tell to it, mailboxes being FIFO): messages per second, until
/// every actor has processed all of its messages.
pub(crate) fn tell_throughput<S: Subject>(flavor: Flavor, messages: u64, actors: u64) -> Sample {
    let exec = S::executor(flavor);
    exec.block_on(async {
        let env = S::env().await;
        let mut hs = Vec::with_capacity(actors as usize);
        for i in 0..actors {
            let h = S::spawn(&env, i).await;
            black_box(S::ask(&h, 0).await);
            hs.push(h);
        }
        let sender = S::spawn_task(async move {
            let t = Clocks::start();
            // The next actor, wrapped by hand: no division per message.
            let mut a = 0;
            for _ in 0..messages {
                S::tell(&hs[a], 1);
                a += 1;
                if a == hs.len() {
                    a = 0;
                }
            }
            let mut total = 0;
            for h in &hs {
                total += S::ask(h, 0).await;
            }
            let times = t.stop();
            assert_eq!(total, messages, "every tell was processed");
            times
        });
        let (wall, cpu) = sender.await.expect("sender task");
        drop(env);
        Sample {
            value: messages as f64 / wall.as_secs_f64(),
            cpu_ns_per_op: Some(per_op(cpu, messages)),
        }
    })
}

/// `creators` tasks create `count` new actors between them, each with its
/// first ask answered (for actor-core: the first call to a new grain id,
/// which activates it): activations per second. The actors stay alive
/// until the run ends.
pub(crate) fn activation_rate<S: Subject>(flavor: Flavor, count: u64, creators: u64) -> Sample {
    let exec = S::executor(flavor);
    exec.block_on(async {
        let env = S::env().await;
        let per = (count / creators).max(1);
        let t = Clocks::start();
        let tasks: Vec<_> = (0..creators)
            .map(|c| {
                let env = env.clone();
                S::spawn_task(async move {
                    let mut keep = Vec::with_capacity(per as usize);
                    for i in 0..per {
                        let h = S::spawn(&env, c * per + i).await;
                        black_box(S::ask(&h, 1).await);
                        keep.push(h);
                    }
                    keep
                })
            })
            .collect();
        let mut kept = Vec::with_capacity(creators as usize);
        for task in tasks {
            kept.push(task.await.expect("creator task"));
        }
        let (wall, cpu) = t.stop();
        drop(kept);
        drop(env);
        let made = per * creators;
        Sample {
            value: made as f64 / wall.as_secs_f64(),
            cpu_ns_per_op: Some(per_op(cpu, made)),
        }
    })
}

/// Creates `count` actors one after another on a current-thread executor,
/// each with one ask answered, lets them go idle, and counts the bytes
/// still allocated on the thread: bytes per idle actor. The handles' own
/// slots (a pre-sized `Vec`) are not counted; what they point to is.
#[cfg(not(feature = "mimalloc"))]
pub(crate) fn idle_memory<S: Subject>(count: u64) -> Sample {
    let exec = S::executor(Flavor::CurrentThread);
    let env = exec.block_on(S::env());
    // One actor outside the count, so that lazily built shared structures
    // (type tables, metrics entries, thread-locals) are not charged.
    let warm = exec.block_on(async {
        let h = S::spawn(&env, u64::MAX / 2).await;
        black_box(S::ask(&h, 1).await);
        settle().await;
        h
    });
    let mut handles = Vec::with_capacity(count as usize);
    let info = allocation_counter::measure(|| {
        exec.block_on(async {
            for i in 0..count {
                let h = S::spawn(&env, i).await;
                black_box(S::ask(&h, 1).await);
                handles.push(h);
            }
            settle().await;
        })
    });
    // Every actor must still be alive and answering.
    exec.block_on(async {
        for h in handles.iter().step_by((count as usize / 100).max(1)) {
            black_box(S::ask(h, 0).await);
        }
    });
    drop(handles);
    drop(warm);
    drop(env);
    drop(exec);
    Sample {
        value: info.bytes_current as f64 / count as f64,
        cpu_ns_per_op: None,
    }
}

/// Lets tasks that finished their last turn go idle (an actor-core drain
/// task yields once before it gives the grain back).
#[cfg(not(feature = "mimalloc"))]
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}
