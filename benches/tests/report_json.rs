//! A tiny run of every scenario (debug build, tiny counts) and the shape of
//! the JSON it writes: what CI and the checker read.

use serde_json::Value;

#[test]
fn a_tiny_run_writes_every_scenario_in_the_promised_shape() {
    let mut config = benches::Config::tiny();
    // The remote scenarios' second process is the benches binary itself.
    config.peer_exe = Some(env!("CARGO_BIN_EXE_benches").into());
    let report = benches::run(&config, "test");
    let json: Value = serde_json::from_str(&report.to_json()).expect("valid JSON");

    assert_eq!(json["mode"], "tiny");
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(json["duration_s"].as_f64().unwrap() > 0.0);

    let scenarios = json["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // Built with mimalloc, no counting allocator measures idle memory.
    let memory_measured = !cfg!(feature = "mimalloc");
    assert_eq!(
        names.contains(&"activation/idle_memory_1k"),
        memory_measured,
        "{names:?}"
    );
    for want in [
        "ask_latency/current_thread",
        "ask_latency/multi_thread",
        "ask_throughput/64_callers_1_grain",
        "ask_throughput/1000_callers_1_grain",
        "ask_throughput/1_caller_1000_grains",
        "ask_throughput/8_callers_1000_grains",
        "ask_throughput/64_callers_1000_grains",
        "ask_throughput/1000_callers_1000_grains",
        "tell_throughput/1_grain",
        "tell_throughput/100_grains",
        "activation/rate_640",
        "remote/ask_latency_p50",
        "remote/ask_latency_p99",
        "remote/ask_throughput_64_in_flight",
        "remote/ask_throughput_1000_in_flight",
        "remote/activation_rate",
        "remote/tls_ask_latency_p50",
        "remote/tls_ask_throughput_64_in_flight",
        "remote/cluster3_ask_throughput_64_in_flight",
        "remote/cluster3_ask_latency_p99_64_in_flight",
        "remote/cluster3_ask_throughput_1000_in_flight",
        "remote/cluster3_ask_latency_p99_1000_in_flight",
        "remote/cluster3_after_kill_ask_throughput_64_in_flight",
        "remote/cluster3_after_kill_ask_latency_p99_64_in_flight",
        "remote/cluster3_after_kill_ask_throughput_1000_in_flight",
        "remote/cluster3_after_kill_ask_latency_p99_1000_in_flight",
        "storage/write_sqlite",
        "storage/write_postgres",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }

    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        for key in ["unit", "group", "description", "subject"] {
            assert!(s[key].is_string(), "{name}: {key}");
        }
        let (median, min, max) = (
            s["median"].as_f64().unwrap(),
            s["min"].as_f64().unwrap(),
            s["max"].as_f64().unwrap(),
        );
        assert!(median > 0.0 && min <= median && median <= max, "{name}");
        assert!(s["runs"].as_u64().unwrap() >= 1, "{name}");

        let comparisons = s["comparisons"].as_array().unwrap();
        let against: Vec<&str> = comparisons
            .iter()
            .map(|c| c["against"].as_str().unwrap())
            .collect();
        // The TLS scenarios compare actor-core over mutual TLS with
        // itself over plain TCP (their baseline), not with a floor.
        let tls = name.starts_with("remote/tls_");
        assert!(
            tls || comparisons.iter().any(|c| c["kind"] == "floor"),
            "{name}: no floor"
        );
        // The cluster scenarios: their floor over the same processes, and
        // the 2-process figure beside it.
        let cluster = name.starts_with("remote/cluster3");
        let wanted: &[&str] = match s["group"].as_str().unwrap() {
            _ if tls => &["actor-core, plain TCP"],
            _ if cluster => &["floor: tonic bidi stream", "actor-core, 2 processes"],
            "local" => &["kameo 0.22", "ractor 0.16", "actix 0.13"],
            "remote" => &["floor: tonic bidi stream", "tonic unary", "rio-rs 0.7.2"],
            "storage" => &["floor: raw sqlx UPDATE"],
            other => panic!("{name}: unknown group {other}"),
        };
        for peer in wanted {
            assert!(against.contains(peer), "{name}: {peer} missing");
        }
        for c in comparisons {
            let theirs = c["median"].as_f64().unwrap();
            let ratio = c["ratio"].as_f64().unwrap();
            assert!(theirs > 0.0, "{name}");
            assert!(c["paired_ratio"].as_f64().unwrap() > 0.0, "{name}");
            // CPU time per operation, except for memory (not timed).
            assert_eq!(
                c["cpu_ratio"].is_number(),
                !name.contains("memory"),
                "{name}"
            );
            assert!(
                (ratio - median / theirs).abs() < 1e-9 * ratio.max(1.0),
                "{name}"
            );
            // Present even without a target (then null).
            assert!(c.get("target_ratio").is_some() && c.get("met").is_some());
            if c["target_ratio"].is_number() {
                assert!(c["met"].is_boolean(), "{name}");
            }
        }
    }

    let latency = &scenarios[names
        .iter()
        .position(|n| *n == "ask_latency/current_thread")
        .unwrap()];
    let floor = latency["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "floor")
        .unwrap();
    assert_eq!(floor["target_ratio"], 1.5);

    // Everything was measured (PostgreSQL is one of the project's
    // services), idle memory but in a build with mimalloc.
    if memory_measured {
        let memory = &scenarios[names
            .iter()
            .position(|n| *n == "activation/idle_memory_1k")
            .unwrap()];
        assert_eq!(memory["target"]["target"], 512.0);
        assert!(memory["target"]["met"].is_boolean());
        assert_eq!(json["not_measured"], serde_json::json!([]));
    } else {
        assert_eq!(
            json["not_measured"][0]["scenario"], "activation/idle_memory_1k",
            "{}",
            json["not_measured"]
        );
    }

    let remote = &scenarios[names
        .iter()
        .position(|n| *n == "remote/ask_throughput_64_in_flight")
        .unwrap()];
    let floor = remote["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "floor")
        .unwrap();
    assert_eq!(floor["target_ratio"], 0.6);

    assert!(report.to_table().contains("| scenario |"));
    assert!(
        report
            .to_markdown()
            .contains("### ask_latency/current_thread")
    );
}
