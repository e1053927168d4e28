//! The documentation's tables that the code is the source of (variables, metrics): a test
//! compares each with the rows the code would write.

/// Asserts that the table under `header` in `docs/configuration.md` holds exactly `expected`.
pub fn assert_configuration_table(header: &str, what: &str, expected: &[String]) {
    let docs = include_str!("../../docs/configuration.md");
    let documented: Vec<&str> = docs
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(
        documented,
        expected,
        "docs/configuration.md's table of {what} differs from the code; the rows should read:\n{}",
        expected.join("\n")
    );
}
