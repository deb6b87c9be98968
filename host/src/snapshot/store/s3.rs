//! An S3-compatible object store as a snapshot store, through
//! `object_store`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{ObjectInfo, SnapshotStore, StoreError, check_name};

/// Where an S3-compatible store is and how to reach it. Unset fields come
/// from the standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
}

impl S3Config {
    /// Parses `s3://bucket/prefix`.
    pub fn from_url(url: &str) -> Option<S3Config> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            ..S3Config::default()
        })
    }
}

/// Any S3-compatible object store, through the `object_store` crate.
/// Manifests are written with a conditional put (create only).
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Connects (lazily: the first request does the I/O).
    ///
    /// # Errors
    /// If the configuration is incomplete.
    pub fn new(config: &S3Config) -> Result<Self, StoreError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_allow_http(true);
        let env = |k: &str| std::env::var(k).ok();
        if let Some(e) = config.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")) {
            b = b.with_endpoint(e);
        }
        b = b.with_region(
            config
                .region
                .clone()
                .or_else(|| env("AWS_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
        );
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &config.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        let store = b.build().map_err(|e| StoreError::Other {
            store: format!("s3://{}", config.bucket),
            key: String::new(),
            reason: e.to_string(),
        })?;
        Ok(S3Store {
            inner: Arc::new(store),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        })
    }

    fn path(&self, kind: &str, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(format!("{kind}/{name}"))
        } else {
            ObjectPath::from(format!("{}/{kind}/{name}", self.prefix))
        }
    }

    fn err(&self, key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                store: self.describe(),
                key: key.to_string(),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => StoreError::AlreadyExists {
                store: self.describe(),
                key: key.to_string(),
            },
            other => StoreError::Other {
                store: self.describe(),
                key: key.to_string(),
                reason: other.to_string(),
            },
        }
    }

    async fn list(&self, kind: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let base = self.path(kind, "");
        let base_str = format!("{}/", base.as_ref().trim_end_matches('/'));
        let metas: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&ObjectPath::from(base_str.trim_end_matches('/'))))
            .try_collect()
            .await
            .map_err(|e| self.err(kind, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.as_ref();
                let name = full.strip_prefix(&base_str)?.to_string();
                Some(ObjectInfo {
                    name,
                    size: m.size,
                    modified: m.last_modified.into(),
                })
            })
            .collect())
    }

    async fn put_create(&self, kind: &str, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&self.path(kind, name), PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.err(name, e))
    }
}

impl S3Store {
    /// The failpoint `point` for the object `kind/name`, armed for the
    /// path `s3://BUCKET/PREFIX` (see [`crate::failpoint`]).
    fn failpoint(&self, point: &str, kind: &str, name: &str) -> Result<(), StoreError> {
        let at = format!("{}/{kind}/{name}", self.describe());
        crate::failpoint::check(point, std::path::Path::new(&at)).map_err(|e| StoreError::Other {
            store: self.describe(),
            key: name.to_string(),
            reason: e.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl SnapshotStore for S3Store {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    async fn put_segment(&self, name: &str, bytes: Bytes) -> Result<bool, StoreError> {
        check_name(&self.describe(), name, false)?;
        self.failpoint("snapshot.put-segment", "segments", name)?;
        match self.put_create("segments", name, bytes.clone()).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => {
                // Reused: write it again (same content, by its name) so its
                // age restarts and a collection elsewhere spares it until
                // the manifest that reuses it is written.
                self.inner
                    .put(&self.path("segments", name), PutPayload::from(bytes))
                    .await
                    .map_err(|e| self.err(name, e))?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn get_segment(&self, name: &str) -> Result<Bytes, StoreError> {
        check_name(&self.describe(), name, false)?;
        let r = self
            .inner
            .get(&self.path("segments", name))
            .await
            .map_err(|e| self.err(name, e))?;
        r.bytes().await.map_err(|e| self.err(name, e))
    }

    async fn has_segment(&self, name: &str) -> Result<bool, StoreError> {
        check_name(&self.describe(), name, false)?;
        match self.inner.head(&self.path("segments", name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(name, e)),
        }
    }

    async fn list_segments(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list("segments").await
    }

    async fn delete_segment(&self, name: &str) -> Result<(), StoreError> {
        check_name(&self.describe(), name, false)?;
        match self.inner.delete(&self.path("segments", name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }

    async fn put_manifest(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        check_name(&self.describe(), name, true)?;
        self.failpoint("snapshot.put-manifest", "manifests", name)?;
        self.put_create("manifests", name, bytes).await
    }

    async fn get_manifest(&self, name: &str) -> Result<Bytes, StoreError> {
        check_name(&self.describe(), name, true)?;
        let r = self
            .inner
            .get(&self.path("manifests", name))
            .await
            .map_err(|e| self.err(name, e))?;
        r.bytes().await.map_err(|e| self.err(name, e))
    }

    async fn list_manifests(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list("manifests").await
    }

    async fn delete_manifest(&self, name: &str) -> Result<(), StoreError> {
        check_name(&self.describe(), name, true)?;
        match self.inner.delete(&self.path("manifests", name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }
}
