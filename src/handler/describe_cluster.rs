//! DescribeCluster (API 60, v0–2): the cluster id, the unfenced brokers (fenced ones too,
//! marked, when a v2 request asks), and the active controller's id as this node knows it (KRaft
//! brokers answer with a node id there, since clients cannot reach controllers through brokers).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::MetadataImage;

/// Kafka's `EndpointType` ids (v1+).
const ENDPOINT_TYPE_BROKERS: i8 = 1;
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;

/// Kafka's "not requested" value for authorized-operation bitfields.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Every operation Kafka supports on the CLUSTER resource, as an `AclOperation` bitfield
/// (ALTER 7, CLUSTER_ACTION 9, CREATE 5, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
/// IDEMPOTENT_WRITE 12). Sluice has no authorizer, so every client may do all of them, which is
/// what Kafka answers without one.
const CLUSTER_OPERATIONS_ALL: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub fn handle(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let controller = ctx.shard.controller();
    describe(&ctx.shard.metadata(), controller, ctx.api_version, &req)
}

fn describe(
    image: &MetadataImage,
    controller_id: i32,
    version: i16,
    req: &DescribeClusterRequest,
) -> DescribeClusterResponse {
    // The response's `endpoint_type` stays BROKERS: that is what answered.
    let resp = DescribeClusterResponse::default();
    if version >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // Kafka: MISMATCHED_ENDPOINT_TYPE for CONTROLLER, UNSUPPORTED_ENDPOINT_TYPE otherwise.
        let error = if req.endpoint_type == ENDPOINT_TYPE_CONTROLLERS {
            code::MISMATCHED_ENDPOINT_TYPE
        } else {
            code::UNSUPPORTED_ENDPOINT_TYPE
        };
        let message = match req.endpoint_type {
            ENDPOINT_TYPE_CONTROLLERS => {
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                    .to_string()
            }
            other => format!("Unsupported endpoint type {other}"),
        };
        return resp
            .with_error_code(error)
            .with_error_message(Some(str_bytes(message)));
    }
    let with_fenced = version >= 2 && req.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|b| with_fenced || !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(str_bytes))
                .with_is_fenced(b.fenced)
        })
        .collect();
    resp.with_error_code(code::NONE)
        .with_error_message(None)
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        .with_controller_id(BrokerId(controller_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS_ALL
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::BrokerRegistration;

    fn broker(node_id: i32, rack: Option<&str>, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            node_id,
            incarnation_id: uuid::Uuid::nil(),
            epoch: 1,
            host: "h".into(),
            port: 9092,
            rack: rack.map(str::to_string),
            fenced,
            in_controlled_shutdown: false,
        }
    }

    fn image() -> MetadataImage {
        MetadataImage {
            cluster_id: "cid".into(),
            version: 1,
            brokers: BTreeMap::from([(2, broker(2, Some("r1"), false))]),
            topics: BTreeMap::new(),
            next_producer_id: 0,
            broker_defaults: Default::default(),
        }
    }

    #[test]
    fn lists_every_unfenced_broker_and_fenced_ones_on_request() {
        let mut img = image();
        img.brokers.insert(3, broker(3, None, false));
        img.brokers.insert(4, broker(4, None, true));
        let r = describe(&img, 3, 2, &DescribeClusterRequest::default());
        let ids: Vec<i32> = r.brokers.iter().map(|b| b.broker_id.0).collect();
        assert_eq!((ids, r.controller_id.0), (vec![2, 3], 3));
        let asked = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let r = describe(&img, 3, 2, &asked);
        let fenced: Vec<(i32, bool)> = r
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.is_fenced))
            .collect();
        assert_eq!(fenced, vec![(2, false), (3, false), (4, true)]);
    }

    #[test]
    fn this_node_is_the_cluster() {
        let r = describe(&image(), 2, 2, &DescribeClusterRequest::default());
        assert_eq!(
            (r.error_code, r.cluster_id.as_str(), r.controller_id.0),
            (0, "cid", 2)
        );
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(
            (r.brokers[0].port, r.brokers[0].rack.as_deref()),
            (9092, Some("r1"))
        );
        assert_eq!(r.cluster_authorized_operations, i32::MIN);
        let asked =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        assert_eq!(
            describe(&image(), 2, 0, &asked).cluster_authorized_operations,
            8096
        );
    }

    #[test]
    fn controller_endpoints_are_refused() {
        let req = DescribeClusterRequest::default().with_endpoint_type(2);
        let r = describe(&image(), 2, 1, &req);
        assert_eq!(
            (r.error_code, r.endpoint_type),
            (code::MISMATCHED_ENDPOINT_TYPE, 1)
        );
        assert!(r.error_message.unwrap().contains("CONTROLLER"));
        assert!(r.brokers.is_empty());
        let r = describe(
            &image(),
            2,
            1,
            &DescribeClusterRequest::default().with_endpoint_type(9),
        );
        assert_eq!(r.error_code, code::UNSUPPORTED_ENDPOINT_TYPE);
    }

    #[test]
    fn encodes_at_every_served_version() {
        use kafka_protocol::protocol::Encodable;
        for version in 0..=2 {
            for endpoint_type in [1, 2] {
                let req = DescribeClusterRequest::default().with_endpoint_type(endpoint_type);
                let mut buf = bytes::BytesMut::new();
                describe(&image(), 2, version, &req)
                    .encode(&mut buf, version)
                    .unwrap();
            }
        }
    }
}
