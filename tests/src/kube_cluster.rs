//! A real Kubernetes API server for the cluster tests (`tests/tests/cluster*.rs`): the one
//! `KUBECONFIG` points at, a namespace of each test's own with the example's Secrets, the CRD,
//! and the operator running in process for one namespace.

use std::{sync::Arc, time::Duration};

use bulk_recorder_crds::BulkRecorder;
use bulk_recorder_operator::{context::Context, controller};
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::{postgres_admin_url, rabbitmq_url, wait_until};

/// A client for the cluster, or `None` (with a message) when there is none to test against.
pub async fn cluster() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        // To the terminal itself, past the test harness's capture, so that logs show the skip.
        use std::io::Write;
        let message =
            "skipped: KUBECONFIG is not set, so there is no cluster to test the operator against";
        match std::fs::OpenOptions::new().write(true).open("/dev/stderr") {
            Ok(mut stderr) => {
                let _ = writeln!(stderr, "{message}");
            }
            Err(_) => eprintln!("{message}"),
        }
        return None;
    }
    Some(
        Client::try_default()
            .await
            .expect("KUBECONFIG is set but the cluster is unreachable"),
    )
}

pub async fn install_crd(client: &Client) {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&bulk_recorder_crds::crd_yaml()).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "bulkrecorders.bulkrecorder.io",
        &PatchParams::apply("bulk-recorder-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD is accepted: its schema is structural");
    wait_until(Duration::from_secs(30), "the CRD to be established", || {
        let api = api.clone();
        async move {
            api.get("bulkrecorders.bulkrecorder.io")
                .await
                .ok()
                .and_then(|c| c.status?.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        }
    })
    .await;
}

/// A namespace with the two Secrets the example references.
pub async fn namespace(client: &Client) -> String {
    let name = format!("br-e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &name);
    for (secret, url) in [
        ("bulk-recorder-rabbitmq", rabbitmq_url()),
        ("bulk-recorder-postgres", postgres_admin_url()),
        ("bulk-recorder-mongodb", crate::mongo::mongodb_url()),
    ] {
        let body = json!({"metadata": {"name": secret}, "stringData": {"url": url}});
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(body).unwrap(),
            )
            .await
            .unwrap();
    }
    name
}

pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

pub fn example(name: &str) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_yaml::from_str(include_str!("../../examples/bulkrecorder.yaml")).unwrap();
    value["metadata"]["name"] = json!(name);
    value
}

pub fn start_operator(client: &Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let ctx = Arc::new(Context::new(
        client.clone(),
        "bulk-recorder:e2e".into(),
        "e2e".into(),
    ));
    tokio::spawn(controller::run(
        client.clone(),
        ctx,
        Some(ns.to_string()),
        std::future::pending(),
    ))
}

/// A namespace with the operator running for it and the example BulkRecorder named `orders`.
pub async fn orders_with_operator(
    client: &Client,
) -> (String, tokio::task::JoinHandle<()>, Api<BulkRecorder>) {
    install_crd(client).await;
    let ns = namespace(client).await;
    let operator = start_operator(client, &ns);
    let recorders: Api<BulkRecorder> = Api::namespaced(client.clone(), &ns);
    recorders
        .create(
            &PostParams::default(),
            &serde_json::from_value(example("orders")).unwrap(),
        )
        .await
        .unwrap();
    (ns, operator, recorders)
}
