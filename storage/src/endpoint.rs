//! Storage endpoints as a config names them: a directory, or `file://`, `s3://`, `gs://`, `az://` URLs.

use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

/// A problem with an endpoint or its options: which config key (`endpoint`, `storage_options.KEY`) and
/// what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct EndpointError {
    pub key: String,
    pub message: String,
}

impl EndpointError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> EndpointError {
        EndpointError { key: key.into(), message: message.into() }
    }
}

/// A parsed `endpoint`.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    Local(PathBuf),
    Remote { service: Service, bucket: String, prefix: String },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Service {
    S3,
    Gcs,
    Azure,
}

impl Endpoint {
    /// Parses `endpoint`, checking that every storage option is one the service knows.
    pub fn parse(endpoint: &str, options: &BTreeMap<String, String>) -> Result<Endpoint, EndpointError> {
        let bad = |m: String| EndpointError::new("endpoint", m);
        let Some((scheme, rest)) = endpoint.split_once("://") else {
            if endpoint.is_empty() {
                return Err(bad("is empty; give a directory or a file://, s3://, gs:// or az:// URL".into()));
            }
            return Ok(Endpoint::Local(PathBuf::from(endpoint)));
        };
        let service = match scheme.to_ascii_lowercase().as_str() {
            "file" => return Ok(Endpoint::Local(PathBuf::from(rest))),
            "s3" | "s3a" => Service::S3,
            "gs" | "gcs" => Service::Gcs,
            "az" | "azure" | "abfs" => Service::Azure,
            other => {
                return Err(bad(format!(
                    "unsupported scheme {other:?} in {endpoint:?}: use a directory, file://, s3://, gs:// or az://"
                )));
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad(format!("{endpoint:?} names no bucket or container (expected {scheme}://NAME/prefix)")));
        }
        for key in options.keys() {
            let known = match service {
                Service::S3 => AmazonS3ConfigKey::from_str(key).is_ok(),
                Service::Gcs => GoogleConfigKey::from_str(key).is_ok(),
                Service::Azure => AzureConfigKey::from_str(key).is_ok(),
            };
            if !known {
                return Err(EndpointError::new(
                    format!("storage_options.{key}"),
                    format!(
                        "is not a {service:?} setting of object_store (for example aws_endpoint, aws_allow_http, google_service_account, azure_storage_account_name)"
                    ),
                ));
            }
        }
        Ok(Endpoint::Remote { service, bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(e: &str) -> Endpoint {
        Endpoint::parse(e, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn endpoints_name_a_directory_or_a_bucket_and_prefix() {
        assert_eq!(parse("/var/lib/openwit"), Endpoint::Local("/var/lib/openwit".into()));
        assert_eq!(parse("file:///data/x"), Endpoint::Local("/data/x".into()));
        assert_eq!(parse("relative/dir"), Endpoint::Local("relative/dir".into()));
        assert_eq!(
            parse("s3://telemetry/edge/a/"),
            Endpoint::Remote { service: Service::S3, bucket: "telemetry".into(), prefix: "edge/a".into() }
        );
        assert_eq!(parse("s3a://b"), Endpoint::Remote { service: Service::S3, bucket: "b".into(), prefix: "".into() });
        assert_eq!(
            parse("gs://b/p"),
            Endpoint::Remote { service: Service::Gcs, bucket: "b".into(), prefix: "p".into() }
        );
        assert_eq!(
            parse("az://c/p"),
            Endpoint::Remote { service: Service::Azure, bucket: "c".into(), prefix: "p".into() }
        );
        let opts = BTreeMap::from([("aws_endpoint".to_string(), "http://x".to_string())]);
        assert!(Endpoint::parse("s3://b", &opts).is_ok());
    }
}
