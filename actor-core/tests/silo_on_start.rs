//! `SiloBuilder::on_start`: plug-ins get the running silo once, in order,
//! and a failing hook fails the start with its message and halts the silo.

use std::sync::{Arc, Mutex};

use actor_core::prelude::*;
use actor_core::{Error, SiloBuilder};
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Echo;
impl Grain for Echo {
    const TYPE_NAME: &'static str = "echo";
}

impl GrainMethods for Echo {
    fn register(m: &mut Methods<Self>) {
        m.add::<Say, _>();
    }
}

#[derive(Serialize, Deserialize)]
struct Say(u32);
impl Message for Say {
    type Reply = u32;
    const NAME: &'static str = "say";
}
impl Handler<Say> for Echo {
    async fn handle(&mut self, Say(n): Say, _: &GrainContext<Self>) -> u32 {
        n
    }
}

#[tokio::test]
async fn hooks_run_once_in_order_with_the_running_silo() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = (seen.clone(), seen.clone());
    let silo = SiloBuilder::new()
        .name("hooked")
        .grain::<Echo>()
        .on_start(move |silo| {
            a.lock().unwrap().push(format!("first {}", silo.name()));
            Ok(())
        })
        .on_start(move |silo| {
            // The silo is usable from a hook: spawn work that calls a grain.
            let silo = silo.clone();
            let b = b.clone();
            tokio::spawn(async move {
                let n = silo.get_grain::<Echo>("x").ask(Say(7)).await.unwrap();
                b.lock().unwrap().push(format!("called {n}"));
            });
            Ok(())
        })
        .start()
        .await
        .unwrap();
    for _ in 0..100 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(*seen.lock().unwrap(), vec!["first hooked", "called 7"]);
    silo.shutdown().await;
}

#[tokio::test]
async fn a_failing_hook_fails_the_start_and_halts_the_silo() {
    let kept = Arc::new(Mutex::new(None::<Silo>));
    let k = kept.clone();
    let later_ran = Arc::new(Mutex::new(false));
    let l = later_ran.clone();
    let err = SiloBuilder::new()
        .grain::<Echo>()
        .on_start(move |silo| {
            *k.lock().unwrap() = Some(silo.clone());
            Err("port 8080 is taken".into())
        })
        .on_start(move |_| {
            *l.lock().unwrap() = true;
            Ok(())
        })
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("port 8080 is taken"), "{err}");
    assert!(
        !*later_ran.lock().unwrap(),
        "hooks after a failure do not run"
    );
    let silo = kept.lock().unwrap().take().unwrap();
    assert!(silo.is_stopping(), "the half-started silo is halted");
    assert!(silo.get_grain::<Echo>("x").ask(Say(1)).await.is_err());
}
