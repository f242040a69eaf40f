//! ApiVersions: the supported table (versions above ours are answered in `protocol::frame`),
//! and the features (KIP-584) clients look for: `transaction.version` 2, so clients that know
//! transactions v2 (KIP-890 part 2: the Java client 4.x) use it — implicit partition adds by
//! the partition leader, an epoch bump at every EndTxn.

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{str_bytes, RequestContext};
use crate::protocol::frame::api_version_entries;

/// The transaction versions served: 0-1 (classic) and 2 (KIP-890 part 2).
const TRANSACTION_VERSION_MAX: i16 = 2;
/// The features' epoch: fixed, since the finalized levels never change at run time.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

pub fn handle(ctx: &RequestContext, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    let resp = ApiVersionsResponse::default().with_api_keys(api_version_entries());
    if ctx.api_version < 3 {
        return resp;
    }
    resp.with_supported_features(vec![SupportedFeatureKey::default()
        .with_name(str_bytes("transaction.version"))
        .with_min_version(0)
        .with_max_version(TRANSACTION_VERSION_MAX)])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(str_bytes("transaction.version"))
            .with_min_version_level(TRANSACTION_VERSION_MAX)
            .with_max_version_level(TRANSACTION_VERSION_MAX)])
}
