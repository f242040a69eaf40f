//! ApiVersions: the supported table (versions above ours are answered in `protocol::frame`).

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::RequestContext;
use crate::protocol::frame::api_version_entries;

pub fn handle(_ctx: &RequestContext, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_version_entries())
}
