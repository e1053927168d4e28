//! The operator and a recorder against a real Kubernetes API server: the one `KUBECONFIG`
//! points at. Without `KUBECONFIG` every test here says so and passes without doing anything.
//!
//! Each test works in a namespace of its own, deleted at the end. The CRD is applied from
//! `crds/bulkrecorder.yaml`; the operator runs in this process; the recorder runs locally
//! against the local RabbitMQ and PostgreSQL and reports into the cluster. The helpers are in
//! `tests/src/kube_cluster.rs`; issue 32's operations (counts within seconds, idle recorders,
//! apply after scale, the chart's refusals) are in `cluster_operations.rs`.

use std::time::Duration;

use bulk_recorder::{config::ReportTarget, telemetry::status_report::Reporter};
use bulk_recorder_crds::BulkRecorder;
use bulk_recorder_e2e::{kube_cluster::*, *};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::json;

#[tokio::test]
async fn a_bulk_recorder_becomes_a_deployment_with_the_derived_size() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crd(&client).await;
    let ns = namespace(&client).await;
    let operator = start_operator(&client, &ns);
    let recorders: Api<BulkRecorder> = Api::namespaced(client.clone(), &ns);
    let mut resource = example("orders");
    resource["spec"]["prefetch"] = json!(20);
    resource["spec"]["mongodb"] =
        json!({"urlSecretRef": {"name": "bulk-recorder-mongodb", "key": "url"}});
    resource["spec"]["events"] = json!({"transactions": "transaction.transaction_events.exchange"});
    resource["spec"]["tracing"] =
        json!({"endpoint": "http://otel-collector:4318", "protocol": "http/protobuf"});
    recorders
        .create(
            &PostParams::default(),
            &serde_json::from_value(resource).unwrap(),
        )
        .await
        .expect("created");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_until(Duration::from_secs(60), "the Deployment", || {
        let deployments = deployments.clone();
        async move { deployments.get_opt("orders").await.ok().flatten().is_some() }
    })
    .await;
    let deployment = deployments.get("orders").await.unwrap();
    let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
    let size = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "BULK_RECORDER_SIZE")
        .unwrap();
    assert_eq!(
        size.value.as_deref(),
        Some("100"),
        "5 workers x 20 prefetch"
    );
    let env = container.env.as_ref().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        value("MONGODB_DATABASE").as_deref(),
        Some("transaction"),
        "the schema's default, applied by the API server"
    );
    assert!(
        env.iter()
            .any(|e| e.name == "MONGODB_URL" && e.value_from.is_some())
    );
    assert_eq!(
        value("RABBITMQ_TRANSACTION_EVENTS_EXCHANGE").as_deref(),
        Some("transaction.transaction_events.exchange")
    );
    assert_eq!(
        (
            value("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            value("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref()
        ),
        (Some("http://otel-collector:4318"), Some("http/protobuf"))
    );
    assert_eq!(
        deployment.metadata.owner_references.unwrap()[0].kind,
        "BulkRecorder"
    );
    wait_until(Duration::from_secs(60), "status.effectiveSize", || {
        let recorders = recorders.clone();
        async move {
            recorders
                .get("orders")
                .await
                .ok()
                .and_then(|r| r.status?.effective_size)
                == Some(100)
        }
    })
    .await;

    // Deleting the resource deletes what it owns (owner references; the garbage collector).
    recorders
        .delete("orders", &Default::default())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(60),
        "the Deployment to be garbage-collected",
        || {
            let deployments = deployments.clone();
            async move { deployments.get_opt("orders").await.ok().flatten().is_none() }
        },
    )
    .await;
    operator.abort();
    delete_namespace(&client, &ns).await;
}

/// Sends `value` as it is (untyped), so that the API server, not the client, judges it.
async fn create_untyped(
    client: &Client,
    ns: &str,
    value: serde_json::Value,
) -> Result<DynamicObject, kube::Error> {
    let resource = ApiResource::erase::<BulkRecorder>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object: DynamicObject = serde_json::from_value(value).expect("an object");
    api.create(&PostParams::default(), &object).await
}

#[tokio::test]
async fn invalid_resources_are_rejected_with_the_rule_that_says_how_to_fix_them() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crd(&client).await;
    let ns = namespace(&client).await;
    for (file, expected) in [
        (
            include_str!("../../examples/invalid/size-above-unacked-limit.yaml"),
            "spec.size must not exceed",
        ),
        (
            include_str!("../../examples/invalid/max-rows-over-limit.yaml"),
            "maxRowsPerInsert",
        ),
        (
            include_str!("../../examples/invalid/missing-secret-ref-key.yaml"),
            "key",
        ),
        (
            include_str!("../../examples/invalid/name-not-a-dns-label.yaml"),
            "<name>-metrics",
        ),
        (
            include_str!("../../examples/invalid/lock-timeout-over-statement-timeout.yaml"),
            "spec.lockTimeoutMs must not exceed spec.statementTimeoutMs",
        ),
    ] {
        let value: serde_json::Value = serde_yaml::from_str(file).unwrap();
        let error = create_untyped(&client, &ns, value)
            .await
            .expect_err("the API server refuses it");
        assert!(error.to_string().contains(expected), "{error}");
    }
    // Names that cannot name the Service <name>-metrics (issue 11, item 3).
    let long = "a".repeat(56);
    for (name, expected) in [
        ("orders.v2", "<name>-metrics"),
        ("2024-ledger", "<name>-metrics"),
        (long.as_str(), "55"),
    ] {
        let error = create_untyped(&client, &ns, example(name))
            .await
            .expect_err("the API server refuses the name");
        assert!(error.to_string().contains(expected), "{name}: {error}");
    }
    create_untyped(&client, &ns, example(&"a".repeat(55)))
        .await
        .expect("55 characters are accepted");
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_reported_by_a_recorder_appear_in_the_status() {
    let Some(client) = cluster().await else {
        return;
    };
    let (ns, operator, recorders) = orders_with_operator(&client).await;

    // A recorder running here, reporting as a pod of that resource would.
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    queue
        .publish(&bulk_recorder_publish::PublishPlan {
            count: 20,
            ..Default::default()
        })
        .await;
    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    wait_until(Duration::from_secs(60), "20 committed", || async {
        recorder.committed_transactions() == 20
    })
    .await;
    let target = ReportTarget {
        name: "orders".into(),
        namespace: ns.clone(),
        pod: "orders-local".into(),
    };
    let reporter = Reporter::new(client.clone(), target, recorder.metrics.clone());
    reporter
        .report()
        .await
        .expect("the recorder may write its own entry");

    wait_until(Duration::from_secs(60), "counts in the status", || {
        let recorders = recorders.clone();
        async move {
            recorders
                .get("orders")
                .await
                .ok()
                .and_then(|r| r.status?.counts)
                .is_some_and(|c| c.transactions.inserted == 20 && c.operations.inserted == 100)
        }
    })
    .await;
    let status = recorders.get("orders").await.unwrap().status.unwrap();
    assert_eq!(status.recorders[0].pod, "orders-local");
    recorder.stop().await;
    operator.abort();
    delete_namespace(&client, &ns).await;
}

/// `kubectl scale bulkrecorder orders --replicas=2` (a merge patch of the scale subresource) with
/// the operator running: the Deployment follows, a PodDisruptionBudget appears, and both go back
/// when scaled to 1.
#[tokio::test]
async fn kubectl_scale_scales_the_recorders_and_their_disruption_budget() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let Some(client) = cluster().await else {
        return;
    };
    let (ns, operator, recorders) = orders_with_operator(&client).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let replicas = |n: i32| {
        let deployments = deployments.clone();
        async move {
            deployments
                .get_opt("orders")
                .await
                .ok()
                .flatten()
                .and_then(|d| d.spec?.replicas)
                == Some(n)
        }
    };
    wait_until(Duration::from_secs(60), "the Deployment", || replicas(1)).await;
    wait_until(Duration::from_secs(60), "status.selector", || {
        let recorders = recorders.clone();
        async move {
            let scale = recorders.get_scale("orders").await.ok();
            scale.and_then(|s| s.status?.selector).as_deref()
                == Some("app.kubernetes.io/instance=orders,app.kubernetes.io/name=bulk-recorder")
        }
    })
    .await;
    assert!(
        budgets.get_opt("orders").await.unwrap().is_none(),
        "1 replica: no budget"
    );

    for (n, budget) in [(2, true), (1, false)] {
        recorders
            .patch_scale(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": n}})),
            )
            .await
            .expect("the scale subresource");
        wait_until(Duration::from_secs(60), "the Deployment's replicas", || {
            replicas(n)
        })
        .await;
        wait_until(Duration::from_secs(60), "the budget to follow", || {
            let budgets = budgets.clone();
            async move { budgets.get_opt("orders").await.ok().flatten().is_some() == budget }
        })
        .await;
    }
    operator.abort();
    delete_namespace(&client, &ns).await;
}
