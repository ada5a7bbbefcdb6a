//! Misuse of `#[grain_methods]` fails to compile with a message that says
//! what is wrong and what to do; the expected messages are the `.stderr`
//! files beside each case in `tests/ui/`. Regenerate them after a wording
//! change with `TRYBUILD=overwrite cargo test -p actor-core-macros --test ui`
//! and read the diff.

#[test]
fn misuse_is_a_compile_error() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
