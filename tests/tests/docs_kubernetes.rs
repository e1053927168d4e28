//! What a newcomer types from the README and docs/kubernetes.md is what the repository holds:
//! the minimal BulkRecorder is a file, Secrets and applies name a namespace, manifests applied
//! again leave `replicas` out, the columns shown are the CRD's, the operator's metrics are the
//! ones documented, and the walk-through script finds every step of the walk-through.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use bulk_recorder_crds::BulkRecorder;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fenced blocks of `language` in `markdown`, in order.
fn blocks(markdown: &str, language: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line == format!("```{language}") => current = Some(String::new()),
            Some(_) if line == "```" => out.push(current.take().expect("open")),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading}"));
    let rest = &markdown[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn the_readmes_minimal_bulk_recorder_is_the_file_it_applies() {
    let readme = read("README.md");
    let minimal = section(&readme, "## A minimal BulkRecorder");
    assert_eq!(blocks(minimal, "yaml"), [read("examples/minimal.yaml")]);
    assert!(
        minimal.contains("apply -f examples/minimal.yaml"),
        "{minimal}"
    );
    let br: BulkRecorder = serde_yaml::from_str(&read("examples/minimal.yaml")).unwrap();
    assert!(br.spec.problems().is_empty());
}

/// Secrets live in the BulkRecorder's namespace: a command without one creates them wherever the
/// reader's context points.
#[test]
fn every_secret_and_bulk_recorder_command_names_a_namespace() {
    for doc in ["README.md", "docs/kubernetes.md"] {
        for block in blocks(&read(doc), "sh") {
            for line in block.lines() {
                let namespaced = line.contains(" -n ") || line.contains("--namespace");
                let creates_secret = line.contains("kubectl create secret");
                let applies_example = line.contains("kubectl") && line.contains("examples/");
                assert!(
                    namespaced || !(creates_secret || applies_example),
                    "{doc}: {line}"
                );
            }
        }
    }
}

#[test]
fn every_file_the_docs_apply_exists() {
    for doc in ["README.md", "docs/kubernetes.md"] {
        for block in blocks(&read(doc), "sh") {
            let words: Vec<&str> = block.split_whitespace().collect();
            for pair in words.windows(2).filter(|w| w[0] == "-f") {
                assert!(root().join(pair[1]).exists(), "{doc}: {}", pair[1]);
            }
        }
    }
}

/// A manifest that sets `replicas` undoes `kubectl scale` (and an autoscaler) when applied
/// again, and deletes the PodDisruptionBudget that came with the scale.
#[test]
fn bulk_recorders_people_apply_again_leave_replicas_out() {
    let mut files = vec!["examples/minimal.yaml".to_string()];
    for dir in ["examples", "examples/dev"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".yaml") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    let mut checked = 0;
    for file in files {
        for doc in read(&file).split("\n---") {
            let value: serde_json::Value = serde_yaml::from_str(doc).unwrap_or_default();
            if value["kind"] == "BulkRecorder" {
                checked += 1;
                assert!(value["spec"].get("replicas").is_none(), "{file}");
            }
        }
    }
    let notes = read("charts/bulk-recorder-operator/templates/NOTES.txt");
    assert!(!notes.contains("replicas:"), "the chart's NOTES");
    assert!(checked >= 3, "{checked} BulkRecorders");
}

/// The listing the README shows has the CRD's columns, in its order.
#[test]
fn the_listing_shown_has_the_crds_columns() {
    let crd = serde_json::to_value(bulk_recorder_crds::crd()).unwrap();
    let mut wanted = vec!["NAME".to_string()];
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
    {
        if column.get("priority").is_none_or(|p| p == 0) {
            wanted.push(column["name"].as_str().unwrap().to_uppercase());
        }
    }
    let readme = read("README.md");
    let listing = blocks(section(&readme, "## A minimal BulkRecorder"), "text");
    let header: Vec<String> = listing[0]
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(header, wanted);
}

/// The operator's own metrics, as its registry renders them, are the documented ones.
#[test]
fn the_operators_metrics_are_documented() {
    let rendered = bulk_recorder_operator::metrics::Metrics::default().render();
    let registered: BTreeSet<&str> = rendered
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let docs = read("docs/kubernetes.md");
    let documented: BTreeSet<&str> = docs
        .lines()
        .filter(|l| l.starts_with("| `bulk_recorder_operator_"))
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    assert!(!registered.is_empty());
    assert_eq!(registered, documented);
}

/// `scripts/walkthrough.sh --print` shows the commands it would run: every step of the
/// walk-through, in order, as shell that parses.
#[test]
fn the_walkthrough_script_runs_every_step_of_the_walkthrough() {
    let out = Command::new(root().join("scripts/walkthrough.sh"))
        .arg("--print")
        .output()
        .expect("bash runs the script");
    assert!(out.status.success(), "{out:?}");
    let script = String::from_utf8(out.stdout).unwrap();
    let docs = read("docs/kubernetes.md");
    let walkthrough = section(
        &docs,
        "## Walk-through: install, a first BulkRecorder, publish, scale, uninstall",
    );
    assert_eq!(script, blocks(walkthrough, "sh").concat(), "as written");
    let mut at = 0;
    for step in [
        "helm install bulk-recorder",
        "create secret generic bulk-recorder-rabbitmq",
        "apply -f examples/bulkrecorder.yaml",
        "--for=condition=Ready",
        "bulk-recorder-publish -- --count 1000",
        "{.status.counts.transactions.inserted}'=1000",
        "scale bulkrecorder ledger --replicas=2",
        "apply -f examples/bulkrecorder.yaml",
        "{.spec.replicas}'=2",
        "kubectl delete bulkrecorders --all",
        "helm uninstall bulk-recorder",
        "kubectl delete crd bulkrecorders.bulkrecorder.io",
    ] {
        let found = script[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} missing after byte {at}:\n{script}"));
        at += found + step.len();
    }
    let parses = Command::new("bash")
        .args(["-n", "-c", &script])
        .status()
        .unwrap();
    assert!(parses.success(), "bash -n");
}
