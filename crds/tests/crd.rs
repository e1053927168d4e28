//! The generated CRD: committed, structural, and carrying the rules users rely on.

use bulk_recorder_crds::{BulkRecorder, BulkRecorderSpec, crd, crd_yaml, name_problem};
use serde_json::Value;

#[test]
fn the_committed_yaml_is_what_the_type_generates() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bulkrecorder.yaml")).unwrap();
    assert!(
        committed == crd_yaml(),
        "crds/bulkrecorder.yaml is stale: run `cargo run -p bulk-recorder-crds --bin crdgen > crds/bulkrecorder.yaml`"
    );
}

fn schema() -> Value {
    let crd = serde_json::to_value(crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// A structural schema: every node says its type (or preserves unknown fields / is
/// int-or-string), which a real API server requires of a CRD.
fn assert_structural(node: &Value, path: &str) {
    let obj = node
        .as_object()
        .unwrap_or_else(|| panic!("{path} is not an object"));
    let typed = obj.contains_key("type")
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    assert!(typed, "{path} has no type: {node}");
    for forbidden in ["$ref", "allOf", "anyOf", "oneOf", "definitions", "$defs"] {
        assert!(
            !obj.contains_key(forbidden)
                || forbidden == "anyOf" && obj.contains_key("x-kubernetes-int-or-string"),
            "{path} uses {forbidden}"
        );
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            assert_structural(child, &format!("{path}.{name}"));
        }
    }
    if let Some(items) = obj.get("items") {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(additional) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        assert_structural(additional, &format!("{path}{{}}"));
    }
}

#[test]
fn the_schema_is_structural() {
    assert_structural(&schema(), "");
}

#[test]
fn defaults_ranges_and_the_cel_rule_are_in_the_schema() {
    let spec = &schema()["properties"]["spec"];
    let props = &spec["properties"];
    for (field, default) in [
        ("replicas", 1),
        ("workers", 5),
        ("prefetch", 10),
        ("flushTimeoutMs", 100),
        ("maxRowsPerInsert", 1000),
    ] {
        assert_eq!(props[field]["default"], default, "{field}");
    }
    assert_eq!(props["fallbackEnabled"]["default"], true);
    assert_eq!(props["postgres"]["properties"]["migrate"]["default"], true);
    assert_eq!(props["maxRowsPerInsert"]["maximum"].as_f64(), Some(2000.0));
    assert_eq!(props["workers"]["maximum"].as_f64(), Some(256.0));
    let rules = spec["x-kubernetes-validations"].as_array().unwrap();
    assert_eq!(
        rules[0]["rule"],
        "!has(self.size) || self.size <= self.workers * self.prefetch"
    );
    assert!(rules[0]["message"].as_str().unwrap().contains("lower size"));
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"rabbitmq") && required.contains(&"postgres"));
    assert_eq!(props["messageFormat"]["default"], "auto");
    assert_eq!(
        props["messageFormat"]["enum"],
        serde_json::json!(["auto", "json", "msgpack", "midaz"])
    );
    assert!(
        props["messageFormat"]["description"]
            .as_str()
            .unwrap()
            .contains("BULK_RECORDER_MESSAGE_FORMAT"),
        "documented for kubectl explain"
    );
    let secret_ref = &props["rabbitmq"]["properties"]["urlSecretRef"];
    assert_eq!(secret_ref["properties"]["name"]["minLength"], 1);
}

#[test]
fn the_printer_columns_match_the_design() {
    let crd = serde_json::to_value(crd()).unwrap();
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Workers",
            "Prefetch",
            "Size",
            "Ready",
            "Backlog",
            "Attempted",
            "Inserted",
            "Ignored",
            "Updated",
            "Rejected",
            "Conflicting",
            "Reconciled",
            "Age"
        ]
    );
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "br");
    assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
}

/// `kubectl explain` wraps descriptions itself: a line break kept from a doc comment prints as
/// a ragged line, so only paragraph breaks remain.
#[test]
fn descriptions_flow_without_hard_line_breaks() {
    fn check(node: &Value, path: &str, seen: &mut usize) {
        match node {
            Value::Object(map) => {
                for (key, value) in map {
                    if let (true, Some(text)) = (key == "description", value.as_str()) {
                        *seen += 1;
                        assert!(!text.replace("\n\n", "").contains('\n'), "{path}: {text:?}");
                    } else {
                        check(value, &format!("{path}.{key}"), seen);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| check(v, path, seen)),
            _ => {}
        }
    }
    let mut seen = 0;
    check(&serde_json::to_value(crd()).unwrap(), "", &mut seen);
    assert!(seen > 100, "only {seen} descriptions");
    let spec = &schema()["properties"]["spec"]["properties"];
    assert!(
        spec["prefetch"]["description"]
            .as_str()
            .unwrap()
            .contains("a bulk holds at most workers * prefetch messages. In bulk mode"),
        "a doc comment's lines joined by a space"
    );
}

#[test]
fn the_shutdown_budget_defaults_to_25_seconds_within_1_to_3600() {
    let shutdown = &schema()["properties"]["spec"]["properties"]["shutdownTimeoutSeconds"];
    assert_eq!(shutdown["default"], 25);
    assert_eq!(shutdown["minimum"].as_f64(), Some(1.0));
    assert_eq!(shutdown["maximum"].as_f64(), Some(3600.0));
    assert!(
        shutdown["description"]
            .as_str()
            .unwrap()
            .contains("BULK_RECORDER_SHUTDOWN_TIMEOUT_MS")
    );
}

#[test]
fn the_effective_size_is_the_size_or_workers_times_prefetch() {
    let example: BulkRecorder =
        serde_yaml::from_str(include_str!("../../examples/bulkrecorder.yaml")).unwrap();
    let spec: BulkRecorderSpec = example.spec;
    assert_eq!(
        spec.effective_size(),
        i64::from(spec.workers) * i64::from(spec.prefetch)
    );
    let sized = BulkRecorderSpec {
        size: Some(7),
        ..spec.clone()
    };
    assert_eq!(sized.effective_size(), 7);
    assert!(sized.problems().is_empty());
    let too_big = BulkRecorderSpec {
        size: Some(10_000),
        ..spec
    };
    assert!(
        too_big.problems()[0].contains("outside 1..=50"),
        "{:?}",
        too_big.problems()
    );
}

/// The examples users copy: the good one passes every rule; each one under `examples/invalid/`
/// breaks one (a missing required field, or a range or CEL rule that `problems()` mirrors).
#[test]
fn the_good_example_is_valid_and_every_invalid_example_breaks_a_rule() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let good: BulkRecorder = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{root}/bulkrecorder.yaml")).unwrap(),
    )
    .unwrap();
    assert!(
        good.spec.problems().is_empty(),
        "{:?}",
        good.spec.problems()
    );
    let mut checked = 0;
    for file in std::fs::read_dir(format!("{root}/invalid")).unwrap() {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        match serde_yaml::from_str::<BulkRecorder>(&text) {
            Err(missing) => assert!(
                missing.to_string().contains("missing field"),
                "{}: {missing}",
                path.display()
            ),
            Ok(br) => assert!(
                !br.spec.problems().is_empty()
                    || name_problem(br.metadata.name.as_deref().unwrap_or_default()).is_some(),
                "{} is accepted by every rule",
                path.display()
            ),
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} invalid examples");
}

/// Status objects written before `updated` and `conflicting` existed still parse, and the
/// schema does not require the new counters.
#[test]
fn counts_without_updated_and_conflicting_still_parse() {
    let old: bulk_recorder_crds::RowCounts =
        serde_json::from_value(serde_json::json!({"attempted": 3, "inserted": 2, "ignored": 1}))
            .unwrap();
    assert_eq!((old.updated, old.conflicting), (0, 0));
    let rows =
        &schema()["properties"]["status"]["properties"]["counts"]["properties"]["transactions"];
    let required: Vec<&str> = rows["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["attempted", "ignored", "inserted"]);
    assert_eq!(rows["properties"]["updated"]["default"], 0);
}

#[test]
fn a_spec_without_message_format_is_auto() {
    let example: BulkRecorder =
        serde_yaml::from_str(include_str!("../../examples/bulkrecorder.yaml")).unwrap();
    assert_eq!(
        example.spec.message_format,
        bulk_recorder_crds::MessageFormat::Auto
    );
    assert_eq!(bulk_recorder_crds::MessageFormat::Midaz.as_str(), "midaz");
}

/// Names the schema accepts must be usable for the Service `<name>-metrics` (a DNS-1035 label
/// of at most 63 characters): the schema caps the length and a CEL rule, with a message that
/// says why, refuses the rest. The operator mirrors the rule for names stored before it.
#[test]
fn names_that_cannot_name_a_service_are_refused_with_the_reason() {
    let root = schema();
    assert_eq!(
        root["properties"]["metadata"]["properties"]["name"]["maxLength"],
        55
    );
    let rule = &root["x-kubernetes-validations"][0];
    assert_eq!(
        rule["rule"],
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    );
    assert!(rule["message"].as_str().unwrap().contains("<name>-metrics"));
    for bad in [
        "orders.v2",
        "2024-ledger",
        "Orders",
        "ledger-",
        &"a".repeat(56),
    ] {
        assert!(name_problem(bad).is_some(), "{bad} accepted");
    }
    for good in ["ledger", "orders-v2", "a", &"a".repeat(55)] {
        assert_eq!(name_problem(good), None, "{good} refused");
        assert!(format!("{good}-metrics").len() <= 63);
    }
}

#[test]
fn the_crd_describes_itself_and_has_a_category() {
    let crd = serde_json::to_value(crd()).unwrap();
    assert_eq!(
        crd["spec"]["names"]["categories"],
        serde_json::json!(["bulk-recorder"])
    );
    let description = schema()["description"].as_str().unwrap().to_string();
    assert!(!description.contains("Auto-generated"), "{description}");
    assert!(description.contains("RabbitMQ"));
}

/// What private registries and placement need, documented for `kubectl explain`.
#[test]
fn pods_can_be_placed_pulled_from_private_registries_and_given_a_ca_bundle() {
    let props = &schema()["properties"]["spec"]["properties"];
    for field in [
        "imagePullSecrets",
        "podAnnotations",
        "podLabels",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "volumes",
    ] {
        assert!(
            props[field]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{field} is undocumented"
        );
    }
    let volume = &props["volumes"]["items"];
    assert_eq!(
        volume["x-kubernetes-validations"][0]["rule"],
        "has(self.secret) != has(self.configMap)"
    );
    let size = crd_yaml().len();
    assert!(
        size < 200_000,
        "the CRD is {size} bytes: kubectl apply (client-side) stores it in an annotation limited to 256 KiB"
    );
}

/// `kubectl scale`, HorizontalPodAutoscalers and KEDA read and write spec.replicas through the
/// scale subresource; an HPA refuses a scale without a selector, so the status carries one.
#[test]
fn the_scale_subresource_maps_replicas_and_the_pod_selector() {
    let crd = serde_json::to_value(crd()).unwrap();
    let scale = &crd["spec"]["versions"][0]["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.replicas");
    assert_eq!(scale["statusReplicasPath"], ".status.replicas");
    assert_eq!(scale["labelSelectorPath"], ".status.selector");
    let status = &schema()["properties"]["status"]["properties"];
    assert_eq!(status["selector"]["type"], "string");
    assert_eq!(status["backlog"]["type"], "integer");
    let entry = &status["recorders"]["items"]["properties"]["backlog"];
    assert_eq!(entry["type"], "integer");
    assert_eq!(entry["minimum"].as_f64(), Some(0.0));
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap();
    let backlog = columns.iter().find(|c| c["name"] == "Backlog").unwrap();
    assert_eq!(backlog["jsonPath"], ".status.backlog");
}

/// Reports written before recorders measured the queue still parse.
#[test]
fn a_recorder_entry_without_a_backlog_still_parses() {
    let entry: bulk_recorder_crds::RecorderReport = serde_json::from_value(serde_json::json!({
        "pod": "p", "startId": "s", "lastReport": "2026-01-01T00:00:00Z",
        "transactions": {"attempted": 1, "inserted": 1, "ignored": 0},
        "operations": {"attempted": 1, "inserted": 1, "ignored": 0}}))
    .unwrap();
    assert_eq!(entry.backlog, None);
}

/// The fields of this round, with their defaults and a description for `kubectl explain`.
#[test]
fn disruption_budget_monitoring_redis_and_dead_letter_fields_are_documented() {
    let props = &schema()["properties"]["spec"]["properties"];
    assert_eq!(props["podDisruptionBudget"]["default"], true);
    assert_eq!(
        props["monitoring"]["properties"]["podMonitor"]["default"],
        false
    );
    let redis = &props["redis"]["properties"]["urlSecretRef"];
    assert_eq!(redis["required"], serde_json::json!(["key", "name"]));
    let dead_letter = &props["rabbitmq"]["properties"]["deadLetter"];
    assert_eq!(dead_letter["required"], serde_json::json!(["exchange"]));
    assert_eq!(dead_letter["properties"]["exchange"]["minLength"], 1);
    for (path, field) in [
        ("podDisruptionBudget", &props["podDisruptionBudget"]),
        ("monitoring", &props["monitoring"]),
        (
            "monitoring.podMonitor",
            &props["monitoring"]["properties"]["podMonitor"],
        ),
        ("redis", &props["redis"]),
        ("redis.urlSecretRef", redis),
        ("rabbitmq.deadLetter", dead_letter),
        (
            "rabbitmq.deadLetter.exchange",
            &dead_letter["properties"]["exchange"],
        ),
        (
            "rabbitmq.deadLetter.routingKey",
            &dead_letter["properties"]["routingKey"],
        ),
    ] {
        let text = field["description"].as_str().unwrap_or_default();
        assert!(text.len() > 20, "spec.{path} is undocumented: {text:?}");
    }
    let example: BulkRecorder =
        serde_yaml::from_str(include_str!("../../examples/bulkrecorder.yaml")).unwrap();
    assert!(example.spec.pod_disruption_budget, "on unless turned off");
    assert!(!example.spec.monitoring.pod_monitor, "off unless turned on");
}
