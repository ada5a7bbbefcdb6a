//! Each secret provider finds its secrets, refuses what is unsafe, and
//! never shows a value: not in `Debug`, not in an error, not in a log.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use actor_cluster::{
    CommandSecrets, EnvSecrets, FileSecrets, Secret, SecretProvider, TlsConfig, read_private_file,
};

/// A value no message of the runtime contains by chance.
const VALUE: &str = "Xq7-very-secret-Zt9";

fn write(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn env_secrets_come_from_prefixed_variables() {
    // Setting a variable in this process is `unsafe` (edition 2024) and
    // the workspace forbids unsafe code: the test runs itself again as a
    // child process with the variable set.
    let env = EnvSecrets::new("GRAINS_SECRETS_TEST_");
    let var = env.variable("db_password");
    assert_eq!(var, "GRAINS_SECRETS_TEST_DB_PASSWORD");
    match std::env::var(&var) {
        Ok(_) => {
            // The child run below: the variable is there.
            let s = env.secret("db_password").unwrap();
            assert_eq!(s.expose(), VALUE);
            assert_eq!(format!("{s:?} {s}"), "*** ***");
        }
        Err(_) => {
            let err = env.secret("db_password").unwrap_err().to_string();
            assert!(
                err.contains("GRAINS_SECRETS_TEST_DB_PASSWORD is not set"),
                "{err}"
            );
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "env_secrets_come_from_prefixed_variables",
                    "--nocapture",
                ])
                .env(&var, VALUE)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "the run with the variable set failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            let printed = String::from_utf8_lossy(&out.stdout);
            assert!(printed.contains("1 passed"), "{printed}");
            assert!(!printed.contains(VALUE), "{printed}");
        }
    }
}

#[test]
fn file_secrets_are_read_from_private_files_only() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("db_password"),
        &format!("{VALUE}\n"),
        0o600,
    );
    write(&dir.path().join("open"), VALUE, 0o644);
    write(&dir.path().join("group"), VALUE, 0o640);
    let files = FileSecrets::new(dir.path());

    let s = files.secret("db_password").unwrap();
    assert_eq!(s.expose(), VALUE, "the trailing newline is dropped");
    // Group-readable is allowed (a secrets mount shared with a group).
    assert_eq!(files.secret("group").unwrap().expose(), VALUE);

    let err = files.secret("open").unwrap_err().to_string();
    assert!(err.contains("can be read or written by any user"), "{err}");
    assert!(err.contains("chmod"), "the error says what to do: {err}");
    assert!(!err.contains(VALUE), "{err}");

    for bad in ["../db_password", "a/b", "", ".."] {
        let err = files.secret(bad).unwrap_err().to_string();
        assert!(
            err.contains("names a file in the secrets directory"),
            "{bad}: {err}"
        );
    }
    let err = files.secret("missing").unwrap_err().to_string();
    assert!(err.contains("cannot open the secret file"), "{err}");
}

#[test]
fn command_secrets_run_a_program_and_report_its_failures() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("vault");
    // A stand-in for a password manager's CLI: `vault get <name>`.
    write(
        &script,
        &format!(
            "#!/bin/sh\nif [ \"$1\" = get ] && [ \"$2\" = db_password ]; then echo '{VALUE}'; exit 0; fi\n\
             if [ \"$2\" = slow ]; then sleep 30; fi\n\
             echo \"no such item: $2\" >&2\nexit 3\n"
        ),
        0o700,
    );
    let vault = CommandSecrets::new(&script, ["get"]).with_timeout(Duration::from_secs(2));
    assert_eq!(vault.secret("db_password").unwrap().expose(), VALUE);

    let err = vault.secret("nothing").unwrap_err().to_string();
    assert!(err.contains("no such item: nothing"), "{err}");
    assert!(err.contains("exit status: 3"), "{err}");

    let err = vault.secret("slow").unwrap_err().to_string();
    assert!(err.contains("did not finish within"), "{err}");

    let missing = CommandSecrets::new(dir.path().join("no-such-program"), Vec::<String>::new());
    let err = missing.secret("x").unwrap_err().to_string();
    assert!(err.contains("cannot run"), "{err}");
}

#[test]
fn tls_keys_in_world_readable_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["silo.test".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let (ca, crt, pem) = (
        dir.path().join("ca.pem"),
        dir.path().join("silo.pem"),
        dir.path().join("silo.key"),
    );
    write(&ca, &cert.pem(), 0o644);
    write(&crt, &cert.pem(), 0o644);
    write(&pem, &key.serialize_pem(), 0o644);
    let err = TlsConfig::from_pem_files(&ca, &crt, &pem)
        .unwrap_err()
        .to_string();
    assert!(err.contains("can be read or written by any user"), "{err}");
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tls = TlsConfig::from_pem_files(&ca, &crt, &pem).unwrap();
    let shown = format!("{tls:?}");
    assert!(shown.contains("key: \"***\""), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert_eq!(
        read_private_file(&pem).unwrap().expose(),
        key.serialize_pem()
    );
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    #[derive(Debug)]
    #[allow(dead_code)]
    struct Config {
        url: String,
        password: Secret,
    }
    let c = Config {
        url: "postgres://app@127.0.0.1/db".into(),
        password: Secret::new(VALUE),
    };
    let shown = format!("{c:?} {c:#?}");
    assert!(!shown.contains(VALUE), "{shown}");
    let url = actor_cluster::url_with_password(&c.url, &c.password).unwrap();
    assert!(!format!("{url:?} {url}").contains(VALUE));
    assert_eq!(
        actor_core::redact_url(url.expose()),
        "postgres://app:***@127.0.0.1/db"
    );
}
