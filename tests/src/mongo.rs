//! The ledger's document store in the tests: a database of this test's own on the shared
//! MongoDB-wire server (127.0.0.1:27017, or `TEST_MONGODB_URL`), dropped when dropped; and a
//! server of a test's own (SecantusDB, `TEST_SECANTUSD`), to stop and restart.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use mongodb::bson::{Document, doc};

use crate::{
    free_port,
    pg_cluster::{TempDir, wait_for_port},
    run_detached, skip,
};

pub fn mongodb_url() -> String {
    std::env::var("TEST_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

/// A database of this test's own.
pub struct TestMongo {
    pub url: String,
    pub name: String,
}

impl TestMongo {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            name: format!("br_test_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub async fn database(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.url)
            .await
            .expect("the document store's URL")
            .database(&self.name)
    }

    /// Every document of `collection`, by `entity_id`.
    pub async fn documents(&self, collection: &str) -> Vec<Document> {
        use futures::TryStreamExt;
        self.database()
            .await
            .collection::<Document>(collection)
            .find(doc! {})
            .sort(doc! {"entity_id": 1})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("documents")
    }

    /// The index keys of `collection`.
    pub async fn index_keys(&self, collection: &str) -> Vec<Document> {
        self.database()
            .await
            .collection::<Document>(collection)
            .list_index_names()
            .await
            .map(|names| names.into_iter().map(|n| doc! {"name": n}).collect())
            .unwrap_or_default()
    }
}

impl Drop for TestMongo {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        run_detached(async move {
            if let Ok(client) = mongodb::Client::with_uri_str(&url).await {
                let _ = client.database(&name).drop().await;
            }
        });
    }
}

/// A SecantusDB of this test's own, on a free port, keeping its data across a restart.
pub struct OwnMongo {
    pub port: u16,
    dir: TempDir,
    server: PathBuf,
    child: Option<Child>,
}

impl OwnMongo {
    /// `None` (with a message) without `TEST_SECANTUSD`.
    pub fn start() -> Option<Self> {
        let Some(server) = std::env::var_os("TEST_SECANTUSD").map(PathBuf::from) else {
            skip("TEST_SECANTUSD is not set: ./scripts/test.sh installs SecantusDB and sets it");
            return None;
        };
        let dir = TempDir::new("br-secantus");
        std::fs::write(dir.0.join("empty.toml"), "").expect("an empty configuration");
        let mut own = Self {
            port: free_port(),
            dir,
            server,
            child: None,
        };
        own.restart();
        Some(own)
    }

    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: as a crash; its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        let child = Command::new(&self.server)
            .arg("--config")
            .arg(self.dir.0.join("empty.toml"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir.0.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("secantusd-py starts");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(30)),
            "the test's document store answers"
        );
    }
}

impl Drop for OwnMongo {
    fn drop(&mut self) {
        self.stop();
    }
}
